//! Gathering the facts the plan is made from: where the data is and what it
//! holds (the backend table), its wear, the tools of the lower root; then,
//! with the data filesystem mounted read-only, its records. Only reads here:
//! device contents and sysfs through [`SysRoot`], the MTD/UBI ioctls that
//! only ask (geometry, bad blocks) through `Sys`.

use super::{Boot, POLL};
use crate::backend::{self, block, Content, Inventory, Location, Tools, Wanted};
use crate::flash::jffs2::RawKind;
use crate::plan::decide::{DataFacts, Facts, PendingReset, Records};
use crate::plan::DataFs;
use crate::reason::Reason;
use crate::reset::wipe::{Pending, ResetArea};
use crate::wear::boot::{self as wboot, Extra};
use std::os::unix::fs::FileTypeExt;

impl Boot<'_> {
    /// Where the data is (waiting up to `overlay.datawait` for it), what it
    /// holds and how worn it is.
    pub(super) fn gather(&mut self) -> Facts {
        let places = self.mode.places();
        let lower_devices = self
            .state
            .lowers
            .iter()
            .map(|l| l.device.clone())
            .chain(self.lower_conflicts.iter().cloned())
            .collect();
        let Some(wanted) = Wanted::from_config(&self.cfg) else {
            return Facts {
                places,
                data: DataFacts::Disabled,
                wear: None,
                lower_devices,
                failsafe: self.failsafe.clone(),
            };
        };
        let mut missing = None;
        let found =
            crate::sys::wait_until(
                self.sys,
                self.cfg.data_wait,
                POLL,
                || match backend::locate(&wanted, &Inventory::read(&self.root)) {
                    Ok(loc) => Some(loc),
                    Err(e) => {
                        missing = Some(e);
                        None
                    }
                },
            );
        let Some(loc) = found else {
            let what = missing.unwrap_or_else(|| crate::reason::NotFound::Partition(String::new()));
            return Facts {
                places,
                data: DataFacts::Missing(Reason::NotFound {
                    what,
                    waited: self.cfg.data_wait,
                }),
                wear: None,
                lower_devices,
                failsafe: self.failsafe.clone(),
            };
        };
        if matches!(
            loc.backend(),
            crate::plan::BackendId::Ubi | crate::plan::BackendId::Mtd
        ) {
            crate::detail!("data on raw flash: {}", loc.describe());
        }
        let content = backend::backend_of(&loc).probe(self.sys, &self.root, &loc);
        // A failsafe boot writes nothing, so there is no wear to weigh.
        let wear = match self.failsafe {
            Some(_) => None,
            None => self.assess_wear(&loc, content.as_ref().ok()),
        };
        Facts {
            places,
            data: DataFacts::Found { loc, content },
            wear,
            lower_devices,
            failsafe: self.failsafe.clone(),
        }
    }

    /// Reads the wear sources for the data location (before anything of it
    /// is prepared or mounted) and keeps them for the wear log.
    fn assess_wear(
        &mut self,
        loc: &Location,
        content: Option<&Content>,
    ) -> Option<crate::wear::policy::Decision> {
        if !self.cfg.wear.enabled || *loc == Location::Ram {
            self.wear = None;
            return None;
        }
        let extra = Extra {
            head: match content {
                Some(Content::Block { head, .. }) => Some(head.as_slice()),
                _ => None,
            },
            unattached_ubi: match (loc, content) {
                // UBI's erase counters are still on a partition marked for
                // formatting since (jffs2mark on a UBI flash): how worn it is.
                (
                    Location::Mtd { mtd, .. },
                    Some(Content::Raw(RawKind::Ubi | RawKind::FormatMarker)),
                ) => Some(mtd.index),
                _ => None,
            },
        };
        let w = wboot::assess(&self.root, &self.cfg.wear, &loc.sysfs_name(), extra);
        w.log();
        self.state.wear = Some(w.line());
        let decision = w.assessment.decision;
        self.wear = Some(w);
        Some(decision)
    }

    /// The lower root's mkfs and fsck programs (for a block upper): found by
    /// their directory entries, not read (switch::check_executable).
    pub(super) fn tools(&self) -> Tools {
        let rom = self.root.path(self.mode.rom());
        let find = |names: &[&str]| {
            names.iter().find_map(|name| {
                block::TOOL_DIRS.iter().find_map(|dir| {
                    let p = format!("{dir}/{name}");
                    crate::switch::check_executable(&rom, &p)
                        .is_ok()
                        .then_some(p)
                })
            })
        };
        Tools {
            mkfs_ext4: find(&[block::MKFS[0].1]),
            mkfs_f2fs: find(&[block::MKFS[1].1]),
            fsck_ext4: find(&block::FSCK_EXT4),
            fsck_f2fs: find(&block::FSCK_F2FS),
        }
    }

    /// A filesystem made at this boot holds no records, and keeps no wear
    /// record yet: the log starts at the next boot, with a history to
    /// compare against. The images it starts with are recorded (and their
    /// manifests made) now: an upper written at this boot follows them.
    pub(super) fn fresh_records(&mut self, fs: &DataFs) -> crate::plan::decide::Records {
        let data = self.root.join(&fs.place.at_boot);
        crate::plan::decide::Records {
            upgrade: Some(self.upgrade_facts(&data)),
            ..Default::default()
        }
    }

    /// The records of the data filesystem `fs`, mounted read-only: the
    /// reset request and trash, the layout of `upper/` and `work/`, the
    /// wear log. Reads only.
    pub(super) fn read_records(&mut self, fs: &DataFs) -> Records {
        let data = self.root.join(&fs.place.at_boot);
        let mut records = Records::default();
        for d in ["upper", "work"] {
            let p = data.join(d);
            let is = match std::fs::symlink_metadata(&p) {
                Err(_) => continue,
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => "a symbolic link",
                Ok(m) if m.is_file() => "a regular file",
                Ok(m) if m.file_type().is_fifo() => "a FIFO",
                Ok(_) => "a special file",
            };
            records.layout = Some(Reason::Layout {
                path: fs.place.after.join(d).display().to_string(),
                is,
            });
            return records;
        }
        // An upper that breaks the init is found now, before anything is
        // written to the flash it would then be dropped from.
        if let Some(r) = self.init_shadowed(&data) {
            records.layout = Some(r);
            return records;
        }
        if data.join(crate::reset::RESET_DIR).is_dir() {
            match ResetArea::open(&data, false) {
                Ok(area) => {
                    records.trash = area.has_trash();
                    records.reset = match area.pending() {
                        Ok(Pending::None) => PendingReset::None,
                        // A factory reset on the command line replaces a
                        // pending per-path revert (reset/boot.rs).
                        Ok(Pending::Request(r)) if self.cfg.reset && !r.revert.is_empty() => {
                            PendingReset::None
                        }
                        Ok(Pending::Request(r)) => PendingReset::Request {
                            seq: r.seq,
                            keep: r.keep.len(),
                        },
                        Ok(Pending::Stale(seq)) => PendingReset::Stale(seq),
                        Ok(Pending::Corrupt(_)) => PendingReset::Corrupt,
                        Err(e) => {
                            records.layout =
                                Some(Reason::Reset(format!("cannot read the reset request: {e}")));
                            PendingReset::None
                        }
                    };
                }
                Err(e) => {
                    records.layout =
                        Some(Reason::Reset(format!("cannot open the reset area: {e}")));
                }
            }
        }
        if self.cfg.recovery.boot_attempts > 0 {
            records.count = Some(match crate::recovery::bootcount::read(&data) {
                Ok(c) => c,
                Err(e) => {
                    // Unreadable (an I/O error, not a bad record): the boot
                    // is not counted, and says so.
                    self.warn(format!("boot counter: {e}"));
                    crate::recovery::bootcount::CountState::Missing
                }
            });
        }
        records.upgrade = Some(self.upgrade_facts(&data));
        records.fs_state = crate::openwrt::fs_state::read(&data);
        records.sysupgrade = crate::openwrt::restore::waiting(&data);
        if let Some(w) = &self.wear {
            if w.assessment.decision.writes_flash() {
                let mut warnings = Vec::new();
                if let Some((state, due)) =
                    wboot::read_log(&self.root, &data, w, &self.cfg.wear, &mut warnings)
                {
                    records.wear_log_due = due;
                    self.wear_log = Some(state);
                }
                self.state.warnings.extend(warnings);
            }
        }
        records
    }
}

impl Boot<'_> {
    /// The lowers' roots and devices, top first, as this process reaches
    /// them now: for the upgrade handling.
    pub(super) fn lower_roots(&self) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
        self.state
            .lowers
            .iter()
            .map(|l| {
                let mut dev = std::path::PathBuf::from(&l.device);
                // Pivot mode: the kernel's root shows as /dev/root, which
                // devtmpfs does not have: root= names it.
                if l.mountpoint == "/" || !self.root.join(&dev).exists() {
                    if let Some(d) = self.cfg.root.as_ref().and_then(|spec| {
                        crate::devices::find(&crate::devices::read_block_devices(&self.root), spec)
                    }) {
                        dev = d.node;
                    }
                }
                (self.root.path(&l.mountpoint), self.root.join(&dev))
            })
            .collect()
    }

    /// What the upgrade handling decides from: its records on the data
    /// filesystem at `data`, and the identity of each lower (cheap: the
    /// superblock and the metadata tables, or a shipped manifest's header).
    fn upgrade_facts(
        &mut self,
        data: &std::path::Path,
    ) -> Result<
        (
            crate::upgrade::merge::Facts,
            Vec<crate::upgrade::identity::Identity>,
        ),
        String,
    > {
        use crate::upgrade::{identity, merge};
        let facts = merge::read_facts(data).map_err(|e| e.to_string())?;
        let mut ids = Vec::new();
        for (root, dev) in self.lower_roots() {
            let fd = rustix::fs::open(
                root.as_path(),
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ok();
            let id =
                identity::read(&dev, fd.as_ref().map(std::os::fd::AsFd::as_fd)).map_err(|e| {
                    format!(
                        "firmware upgrade: the image's identity: {e}; nothing decided at this boot"
                    )
                })?;
            ids.push(id);
        }
        self.upgrade_ids = ids.clone();
        Ok((facts, ids))
    }
}

/// Follows `init` through the symlinks of the tree at `root` (at most 40),
/// as the kernel's exec would inside it: every path it visits, absolute.
fn visited(root: &std::path::Path, init: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo: Vec<String> = init
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .rev()
        .collect();
    let mut at = String::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == "." {
            continue;
        }
        if c == ".." {
            at.truncate(at.rfind('/').unwrap_or(0));
            continue;
        }
        let next = format!("{at}/{c}");
        out.push(next.clone());
        match std::fs::read_link(root.join(next.trim_start_matches('/'))) {
            Ok(t) if hops < 40 => {
                hops += 1;
                let t = t.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    at.clear();
                }
                todo.extend(
                    t.split('/')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .rev(),
                );
            }
            _ => at = next,
        }
        if out.len() > 256 {
            break;
        }
    }
    out
}

impl Boot<'_> {
    /// Whether the upper shadows the init with something that cannot run
    /// (checked before the flash is written). Most boots see at once that
    /// the upper holds nothing on the init's way (its path and the symlinks
    /// it follows in the lowers: no entry, or plain directories only); the
    /// others are checked in a read-only overlay of the upper over the
    /// lowers, mounted for the check alone.
    fn init_shadowed(&mut self, data: &std::path::Path) -> Option<Reason> {
        use std::os::unix::fs::FileTypeExt;
        let upper = data.join("upper");
        let init = self.cfg.init.clone();
        let mut ways: Vec<String> = Vec::new();
        for l in &self.state.lowers {
            for p in visited(&self.root.path(&l.mountpoint), &init) {
                if !ways.contains(&p) {
                    ways.push(p);
                }
            }
        }
        let touched = ways.iter().any(|p| {
            match std::fs::symlink_metadata(upper.join(p.trim_start_matches('/'))) {
                Err(_) => false,
                Ok(m) => {
                    !m.is_dir()
                        || m.file_type().is_char_device()
                        || rustix::fs::getxattr(
                            upper.join(p.trim_start_matches('/')),
                            "trusted.overlay.opaque",
                            &mut [0u8; 4],
                        )
                        .is_ok()
                }
            }
        });
        if !touched {
            return None;
        }
        let newroot = std::path::PathBuf::from(self.mode.newroot());
        let _ = self.sys.mkdir(&newroot, 0o755);
        let top = data.strip_prefix(self.root.path("/")).map_or_else(
            |_| data.display().to_string(),
            |rel| format!("/{}", rel.display()),
        );
        let lowers: Vec<String> = std::iter::once(format!("{top}/upper"))
            .chain(self.state.lowers.iter().map(|l| l.mountpoint.clone()))
            .collect();
        let opts = crate::plan::overlay_options(&lowers, None);
        if let Err(e) = self.sys.mount(
            "overlay",
            &newroot,
            "overlay",
            crate::sys::MountFlags::RDONLY,
            &opts,
        ) {
            crate::debug!("cannot check the init in a read-only overlay ({e}): checked later");
            return None;
        }
        let broken = crate::switch::check_runnable(&self.root.join(&newroot), &init).err();
        if let Err(e) = self.sys.unmount(&newroot, true) {
            crate::warn!("cannot unmount {}: {e}", newroot.display());
        }
        match broken {
            Some(why) if self.init_runs_in_a_lower() => Some(Reason::InitBroken { init, why }),
            _ => None,
        }
    }
}
