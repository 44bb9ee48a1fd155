//! The boot's plan for the upper layer, as data (u-root's `Creator` steps,
//! the kata agent's mount table): what the data location is, what will be
//! done to it and in which order, what that writes to the flash, where each
//! mount is before and after the switch into the new root, and the ladder
//! of fallbacks. Made by pure functions ([`decide`]) from the facts the
//! boot gathered (boot/facts.rs); carried out by one executor
//! (boot/exec.rs), which logs each step as the shell command it amounts to
//! and, when a step fails, takes the plan's next fallback.
//!
//! Every policy (wear today; failsafe and upgrades tomorrow) is applied in
//! [`decide`], before the first step that writes the flash runs.

pub mod decide;
#[cfg(test)]
pub(crate) mod tests;

use crate::config::TmpfsSize;
use crate::reason::Reason;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A mount point as the pre-init sees it while booting, and as the booted
/// system sees the same mount after the switch (moved into the new root,
/// or left in /run which moves whole). Never one path for both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub at_boot: PathBuf,
    pub after: PathBuf,
}

impl Place {
    pub fn new(at_boot: impl Into<PathBuf>, after: impl Into<PathBuf>) -> Place {
        Place {
            at_boot: at_boot.into(),
            after: after.into(),
        }
    }

    /// The same place below this one (`upper/` of the data filesystem).
    pub fn join(&self, rel: &str) -> Place {
        Place {
            at_boot: self.at_boot.join(rel),
            after: self.after.join(rel),
        }
    }
}

/// The members of the backend table (backend/), in priority order, and
/// `None`: no upper at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendId {
    Ubi,
    Mtd,
    Block,
    Tmpfs,
    None,
}

impl BackendId {
    pub fn name(self) -> &'static str {
        match self {
            BackendId::Ubi => "ubi",
            BackendId::Mtd => "mtd",
            BackendId::Block => "block",
            BackendId::Tmpfs => "tmpfs",
            BackendId::None => "none",
        }
    }
}

/// What the plan does with the upper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mount the data filesystem as it is.
    Mount,
    /// Check it with the lower's fsck, then mount it.
    CheckMount,
    /// Make a filesystem (mkfs, a new UBI volume, UBIFS's own format), then mount it.
    FormatMount,
    /// Erase the partition (OpenWrt's format marker), then mount JFFS2.
    EraseMount,
    /// Attach an MTD partition holding UBI, then look again.
    Attach,
    /// The data read-only, its `upper/` the top lower layer, under a RAM upper.
    Protect,
    /// A tmpfs upper; the flash is not used.
    Tmpfs,
    /// A failsafe boot: the lowers under a RAM upper, the data read-only at
    /// /overlay for rescue (where it mounts), nothing written.
    Failsafe,
    /// No upper: the lower root alone, read-only.
    None,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Mount => "mount",
            Action::CheckMount => "check+mount",
            Action::FormatMount => "format+mount",
            Action::EraseMount => "erase+mount",
            Action::Attach => "attach",
            Action::Protect => "protect",
            Action::Tmpfs => "tmpfs",
            Action::Failsafe => "failsafe",
            Action::None => "none",
        }
    }
}

/// What a step writes to the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing.
    None,
    /// A filesystem's own mount (ext4's superblock mount count, JFFS2's
    /// clean markers): what any read-write mount writes.
    FsMount,
    /// Data written on purpose: a format, an erase, a volume, a repair, a
    /// record, a wipe.
    Data,
}

/// One step of a plan. Its `Display` is the shell command it amounts to,
/// logged before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Load the modules a filesystem needs, unless the kernel knows it.
    LoadFs { fstype: &'static str },
    /// `ubiattach -m N`: attach an MTD partition holding UBI. UBI writes
    /// only to repair what it finds (as a mount does); then the facts are
    /// gathered again and the plan made anew.
    Attach { mtd: u32 },
    /// `ubimkvol /dev/ubiN -N NAME -s BYTES`.
    CreateVolume { ubi: u32, name: String, bytes: u64 },
    /// `ubirename /dev/ubiN FROM TO`: an existing volume that UBIFS is to
    /// format takes its formatting name first (flash/ubi.rs
    /// `formatting_name`), so that a cut in the format is known as one.
    MarkFormatting {
        ubi: u32,
        id: u32,
        from: String,
        to: String,
    },
    /// `ubirename /dev/ubiN FROM TO`, after the mount that formatted the
    /// volume: it takes its own name, the format's end (the one step of a
    /// backend's preparation that follows the mount).
    NameVolume {
        ubi: u32,
        id: u32,
        from: String,
        to: String,
    },
    /// Unmap every LEB of a volume holding no finished UBIFS, for UBIFS to
    /// format it at the mount.
    ClearVolume {
        vol: PathBuf,
        lebs: u64,
        why: String,
    },
    /// `flash_erase /dev/mtdN 0 0`, the marker block last; past `budget` the
    /// rest is left to a background process and the boot runs on RAM.
    Erase {
        mtd: u32,
        name: String,
        budget: Duration,
    },
    /// The lower root's mkfs on the data device.
    Mkfs {
        fstype: &'static str,
        device: String,
        prog: String,
    },
    /// The lower root's fsck on the data device.
    Fsck {
        fstype: &'static str,
        device: String,
        prog: String,
        due: &'static str,
    },
    /// `mount [-o ro] -t FSTYPE SOURCE PLACE`; with `or_rw`, a read-only
    /// mount that fails is tried again read-write (`|| mount -t ...`): a
    /// filesystem cut short in its own writes (a UBIFS log head, a JFFS2
    /// being written) recovers only in a read-write mount, which is then the
    /// first write, as any mount of it would be.
    Mount {
        source: String,
        fstype: &'static str,
        place: Place,
        read_only: bool,
        data: &'static str,
        or_rw: bool,
    },
    /// The data filesystem is mounted: read its records (reset request,
    /// wear log, layout; `fresh`: made at this boot, none to read) and plan
    /// the rest ([`decide::data`]).
    ReadRecords { place: Place, fresh: bool },
    /// `mount -o remount,rw PLACE`: the first write of a boot that found the
    /// filesystem as it is.
    RemountRw { place: Place },
    /// The factory reset the records ask for (or the command line).
    Reset(ResetStep),
    /// Delete what resets left in the trash, for at most `budget`.
    DeleteTrash { budget: Duration },
    /// `mkdir BASE/upper BASE/work`.
    UpperDirs { base: Place, on_flash: bool },
    /// Append this boot's wear record to `.wear/log`.
    WearLog,
    /// `mount -t tmpfs -o size=SIZE tmpfs PLACE`.
    MountRam { place: Place, size: TmpfsSize },
    /// `mount -o ro` of the data for rescue (failsafe): when it does not
    /// mount, the boot goes on without it.
    RescueMount {
        source: String,
        fstype: &'static str,
        place: Place,
        data: &'static str,
    },
    /// Count this boot in `.boot/count` (boot counting on); `restart`: the
    /// count starts again (a filesystem made at this boot, or a reset).
    CountBoot { restart: bool },
    /// The firmware-upgrade handling of this boot (upgrade/merge.rs).
    Upgrade(UpgradeStep),
    /// Fork the background job of the upgrade handling: the manifest of
    /// a new image, the check of an image without one.
    UpgradeBackground,
    /// `ln -sfn 2 .fs_state`, atomically: fstools' READY.
    FsStateReady,
    /// Restore OpenWrt's `sysupgrade.tgz` into the new root (once the
    /// overlay is mounted, before the switch), then remove it.
    RestoreSettings,
}

/// The firmware-upgrade steps, from `upgrade::merge::decide`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// The first boot: record the lowers' identities.
    Record,
    /// Classify the upper against the old and new images; remove the
    /// unchanged copies (policy merge) or report only (keep).
    Merge(crate::upgrade::merge::Upgrade),
    /// Policy reset, first step: the pending record.
    BeginReset(crate::upgrade::merge::Upgrade),
    /// Policy reset, last step, after the factory reset.
    FinishReset(crate::upgrade::merge::Upgrade),
}

/// The factory reset at this boot, from what the records say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetStep {
    /// Carry out the recorded request.
    Request { seq: u64, keep: usize },
    /// `overlay.reset=1`: record a request with the root's keep list, then
    /// carry it out.
    FromCommandLine,
    /// A request not newer than the last completed reset: remove it.
    Stale { seq: u64 },
    /// A request that does not check out: report it, remove it, wipe nothing.
    Corrupt,
    /// fstools' `.fs_state` says PENDING (a reset it began, cut short):
    /// record a request with the root's keep list and `/sysupgrade.tgz`,
    /// then carry it out.
    FsToolsPending,
    /// `overlay.upgrade=reset` on a new image: record a request with the
    /// root's keep list (unless one is pending), then carry it out.
    ForUpgrade,
}

impl Step {
    /// Whether the step comes after the mount of the filesystem it
    /// prepares: naming a volume at the end of its format.
    pub fn follows_the_mount(&self) -> bool {
        matches!(self, Step::NameVolume { .. })
    }

    /// What this step writes to the flash.
    pub fn writes(&self) -> Write {
        match self {
            Step::LoadFs { .. }
            | Step::Attach { .. }
            | Step::ReadRecords { .. }
            | Step::RescueMount { .. }
            | Step::MountRam { .. } => Write::None,
            Step::Mount { read_only, .. } => {
                if *read_only {
                    Write::None
                } else {
                    Write::FsMount
                }
            }
            Step::RemountRw { .. } => Write::FsMount,
            Step::UpperDirs { on_flash, .. } => {
                if *on_flash {
                    Write::Data
                } else {
                    Write::None
                }
            }
            Step::CreateVolume { .. }
            | Step::MarkFormatting { .. }
            | Step::NameVolume { .. }
            | Step::ClearVolume { .. }
            | Step::Erase { .. }
            | Step::Mkfs { .. }
            | Step::Fsck { .. }
            | Step::Reset(_)
            | Step::DeleteTrash { .. }
            | Step::CountBoot { .. }
            | Step::Upgrade(_)
            | Step::UpgradeBackground
            | Step::FsStateReady
            | Step::RestoreSettings
            | Step::WearLog => Write::Data,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::LoadFs { fstype } => write!(f, "modprobe {fstype}"),
            Step::Attach { mtd } => write!(f, "ubiattach -m {mtd}"),
            Step::CreateVolume { ubi, name, bytes } => {
                write!(f, "ubimkvol /dev/ubi{ubi} -N {name} -s {bytes}")
            }
            Step::MarkFormatting { ubi, from, to, .. } | Step::NameVolume { ubi, from, to, .. } => {
                write!(f, "ubirename /dev/ubi{ubi} {from} {to}")
            }
            Step::ClearVolume { vol, lebs, .. } => {
                write!(f, "ubiupdatevol --truncate {} ({lebs} LEBs)", vol.display())
            }
            Step::Erase { mtd, .. } => write!(f, "flash_erase /dev/mtd{mtd} 0 0"),
            Step::Mkfs { prog, device, .. } => write!(f, "{prog} {device}"),
            Step::Fsck { prog, device, .. } => write!(f, "{prog} {device}"),
            Step::Mount {
                source,
                fstype,
                place,
                read_only,
                data,
                or_rw,
            } => {
                let mut opts: Vec<&str> = Vec::new();
                if *read_only {
                    opts.push("ro");
                }
                if !data.is_empty() {
                    opts.push(data);
                }
                let at = place.at_boot.display();
                if opts.is_empty() {
                    write!(f, "mount -t {fstype} {source} {at}")?;
                } else {
                    write!(f, "mount -o {} -t {fstype} {source} {at}", opts.join(","))?;
                }
                if *or_rw {
                    write!(f, " || mount -t {fstype} {source} {at}")?;
                }
                Ok(())
            }
            Step::ReadRecords { place, fresh } => {
                if *fresh {
                    write!(
                        f,
                        "# {}: a new filesystem, no records",
                        place.at_boot.display()
                    )
                } else {
                    write!(f, "# read the records in {}", place.at_boot.display())
                }
            }
            Step::RemountRw { place } => {
                write!(f, "mount -o remount,rw {}", place.at_boot.display())
            }
            Step::Reset(r) => match r {
                ResetStep::Request { seq, keep } => {
                    write!(f, "# factory reset #{seq}, keeping {keep} path(s)")
                }
                ResetStep::FromCommandLine => write!(f, "# factory reset (command line)"),
                ResetStep::Stale { seq } => write!(f, "# remove the finished request #{seq}"),
                ResetStep::Corrupt => write!(f, "# remove the unusable reset request"),
                ResetStep::ForUpgrade => write!(f, "# factory reset (overlay.upgrade=reset)"),
                ResetStep::FsToolsPending => {
                    write!(f, "# factory reset (fstools' .fs_state says PENDING)")
                }
            },
            Step::DeleteTrash { budget } => write!(
                f,
                "# delete the reset trash for at most {} ms",
                crate::state::WholeMillis(*budget)
            ),
            Step::UpperDirs { base, .. } => write!(
                f,
                "mkdir {}/upper {}/work",
                base.at_boot.display(),
                base.at_boot.display()
            ),
            Step::WearLog => write!(f, "# append the wear record to .wear/log"),
            Step::MountRam { place, size } => write!(
                f,
                "mount -t tmpfs -o size={size} tmpfs {}",
                place.at_boot.display()
            ),
            Step::RescueMount {
                source,
                fstype,
                place,
                data,
            } => write!(
                f,
                "mount -o ro{}{data} -t {fstype} {source} {} || true",
                if data.is_empty() { "" } else { "," },
                place.at_boot.display()
            ),
            Step::CountBoot { restart } => write!(
                f,
                "# count this boot in .boot/count{}",
                if *restart { " (from 0)" } else { "" }
            ),
            Step::Upgrade(u) => match u {
                UpgradeStep::Record => write!(f, "# record the images' identities in .upgrade"),
                UpgradeStep::Merge(up) => write!(
                    f,
                    "# new image: classify the upper (overlay.upgrade={})",
                    up.policy.name()
                ),
                UpgradeStep::BeginReset(_) => write!(f, "# new image: begin its factory reset"),
                UpgradeStep::FinishReset(_) => write!(f, "# new image: record its factory reset"),
            },
            Step::UpgradeBackground => {
                write!(f, "# in the background: the images' manifests and checks")
            }
            Step::FsStateReady => write!(f, "ln -sfn 2 .fs_state"),
            Step::RestoreSettings => write!(f, "# restore sysupgrade.tgz into the new root"),
        }
    }
}

/// The upper as one rung of the ladder: a backend and an action, why (when
/// it is not the flash as asked), its steps in order, and the layers it
/// gives the overlay.
#[derive(Debug)]
pub struct UpperPlan {
    pub backend: BackendId,
    pub action: Action,
    /// Why the upper is not the flash, read-write (`None` when it is, or
    /// when tmpfs or no overlay was asked for).
    pub reason: Option<Reason>,
    pub steps: Vec<Step>,
    /// The filesystem holding `upper/` and `work/`: the data filesystem, or
    /// a RAM one. `None`: no upper.
    pub upper_base: Option<Place>,
    /// Protect: the flash's `upper/`, a read-only layer above the lowers.
    pub top_lower: Option<Place>,
    /// The data filesystem: its device (for messages and the state) and type.
    pub data: Option<DataFs>,
}

/// The data filesystem of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFs {
    /// `/dev/vda2`, `mtd:rootfs_data`, `/dev/ubi0_0`.
    pub device: String,
    pub fstype: &'static str,
    /// Where it is mounted.
    pub place: Place,
    /// Read-write at the end of the plan (not protect, not failsafe).
    pub read_write: bool,
    /// `vda2`, `mtd2`, `ubi0`: the name its wear sources go by.
    pub sysfs_name: String,
}

impl UpperPlan {
    /// Every write the plan makes to the flash, in order.
    pub fn writes(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|s| s.writes() != Write::None)
            .collect()
    }

    /// Whether the executor gathers facts again after the steps (an attach).
    pub fn rescans(&self) -> bool {
        self.action == Action::Attach
    }
}

/// The upper and its fallbacks, taken in order when a step fails.
#[derive(Debug)]
pub struct Plan {
    pub upper: UpperPlan,
    /// Each with its `reason` left empty: the executor puts the failure in.
    pub fallbacks: Vec<UpperPlan>,
}

/// The overlayfs mount options; `lowers` in precedence order (leftmost wins,
/// as in the kernel's `lowerdir=a:b`). Without `upper` the overlay is read-only.
pub fn overlay_options(lowers: &[String], upper: Option<(&Path, &Path)>) -> String {
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let Some((u, w)) = upper {
        o.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    o
}
