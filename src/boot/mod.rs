//! The pre-init's boot, stage by stage: early mounts, config, modules,
//! lowers, upper, overlay, switch. For the upper, facts are gathered
//! (facts.rs), the plan is asked of `plan::decide` (pure), and the executor
//! (exec.rs) carries it out; every change to the system goes through
//! [`Sys`]. Each stage is timed for `overlay-status`.
//!
//! Layout while booting from an initramfs (switch_root):
//! ```text
//! /rom            root= squashfs, read-only (the lowest lower layer)
//! /run/overlay-init/lower/N   overlay.lower= layers, read-only
//! /overlay        the upper filesystem (flash or tmpfs) with upper/ and work/
//! /newroot        the merged overlay, switched into
//! ```
//! Started as `init=` on a real root (pivot_root), `/` is the lower, and the
//! upper and merged root are staged under /run/overlay-init; after the
//! switch the upper is at /overlay and the old root at /rom.

mod exec;
mod facts;
mod recovery;
#[cfg(test)]
mod tests;
mod upgrade;

use crate::config::Config;
use crate::devices::{self, BlockDev, DeviceSpec};
use crate::error::BootError;
use crate::modules::ModuleLoader;
use crate::paths::{self, SysRoot};
use crate::plan::decide::Places;
use crate::plan::{Place, UpperPlan};
use crate::probe;
use crate::state::{BootState, Layer, Upper};
use crate::sys::{Command, MountFlags, Sys};
use crate::wear::boot::BootWear;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How we were started, hence how we enter the new root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `/` is the initramfs (rootfs/tmpfs): pivot_root(2) would fail with
    /// EINVAL there, so we move the new root onto / and chroot (switch_root).
    Initramfs,
    /// `/` is a real filesystem (the squashfs, kernel-mounted): pivot_root.
    Pivot,
}

impl Mode {
    pub fn from_root_magic(magic: u64) -> Mode {
        if magic == paths::RAMFS_MAGIC || magic == paths::TMPFS_MAGIC {
            Mode::Initramfs
        } else {
            Mode::Pivot
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Initramfs => "switch_root",
            Mode::Pivot => "pivot_root",
        }
    }

    /// Where the root lower is mounted.
    fn rom(self) -> &'static str {
        match self {
            Mode::Initramfs => paths::ROM,
            Mode::Pivot => "/",
        }
    }

    /// Where the upper filesystem is mounted while booting.
    fn overlay(self) -> &'static str {
        match self {
            Mode::Initramfs => paths::OVERLAY,
            Mode::Pivot => paths::STAGED_OVERLAY,
        }
    }

    /// Where the merged root is assembled.
    fn newroot(self) -> &'static str {
        match self {
            Mode::Initramfs => paths::NEWROOT,
            Mode::Pivot => "/run/overlay-init/root",
        }
    }

    /// The places of the upper's mounts, while booting and after the switch.
    pub fn places(self) -> Places {
        Places {
            data: Place::new(self.overlay(), paths::OVERLAY),
            ram: Place::new(paths::PROTECT_RAM, paths::PROTECT_RAM),
        }
    }
}

pub struct Boot<'a> {
    sys: &'a dyn Sys,
    root: SysRoot,
    pub cfg: Config,
    pub mode: Mode,
    pub state: BootState,
    modules: Option<ModuleLoader>,
    stage_mark: Duration,
    newroot_mounted: bool,
    /// The rung of the ladder in effect, once the upper stage has run.
    upper: Option<UpperPlan>,
    /// The rungs below it, taken in order when it fails.
    fallbacks: Vec<UpperPlan>,
    /// What the rung in effect mounted, in order (undone in reverse).
    mounted: Vec<PathBuf>,
    /// This boot's wear readings (for the wear log).
    wear: Option<BootWear>,
    /// The wear log as read while the data was read-only.
    wear_log: Option<crate::wear::log::LogState>,
    /// A failsafe boot asked for before any device was used.
    pub failsafe: Option<crate::recovery::failsafe::FailsafeReason>,
    /// The identity of each lower, as read for the upgrade handling.
    upgrade_ids: Vec<crate::upgrade::identity::Identity>,
    /// Lowers left out because they name the data partition.
    lower_conflicts: Vec<String>,
    /// The plan's `RestoreSettings`: done once the overlay is mounted.
    restore_settings: bool,
}

/// One of the kernel filesystems mounted first.
struct EarlyMount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static str,
}

const EARLY_MOUNTS: [EarlyMount; 4] = [
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: MountFlags::KERNEL_FS,
        data: "",
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: MountFlags::KERNEL_FS,
        data: "",
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags {
            nosuid: true,
            ..MountFlags::NONE
        },
        data: "mode=0755",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MountFlags {
            nosuid: true,
            nodev: true,
            ..MountFlags::NONE
        },
        data: "mode=0755,size=10%",
    },
];

/// Devices are polled this often while waiting for them.
const POLL: Duration = Duration::from_millis(20);

impl<'a> Boot<'a> {
    pub fn new(sys: &'a dyn Sys, root: SysRoot, mode: Mode) -> Boot<'a> {
        let now = sys.now();
        Boot {
            sys,
            root,
            cfg: Config::default(),
            mode,
            state: BootState {
                mode: mode.name().into(),
                ..BootState::default()
            },
            modules: None,
            stage_mark: now,
            newroot_mounted: false,
            upper: None,
            fallbacks: Vec::new(),
            mounted: Vec::new(),
            wear: None,
            wear_log: None,
            failsafe: None,
            upgrade_ids: Vec::new(),
            lower_conflicts: Vec::new(),
            restore_settings: false,
        }
    }

    /// The pre-init's clock starts at `at` (its first clock read): the
    /// first stage counts from there, and the stages add up to the total.
    pub fn start_clock(&mut self, at: Duration) {
        self.state.started_at = at;
        self.stage_mark = at;
    }

    /// Closes the current stage under `name`.
    pub fn stage_done(&mut self, name: &str) {
        let now = self.sys.now();
        self.state
            .stages
            .push((name.into(), now.saturating_sub(self.stage_mark)));
        self.stage_mark = now;
    }

    fn warn(&mut self, msg: String) {
        crate::warn!("{msg}");
        self.state.warnings.push(msg);
    }

    /// Stage 1: /proc, /sys, /dev, /run. Returns false when /dev is missing
    /// (then there is no /dev/kmsg and no device nodes).
    pub fn early_mounts(&mut self) -> bool {
        let mut dev_ok = true;
        for m in &EARLY_MOUNTS {
            let target = Path::new(m.target);
            let _ = self.sys.mkdir(target, 0o755); // exists on any sane root; mount says if not
            match self.sys.mount(m.source, target, m.fstype, m.flags, m.data) {
                Ok(()) => crate::debug!("mount -t {} {} {}", m.fstype, m.source, m.target),
                // Already mounted (the kernel's devtmpfs.mount, or a second run): fine.
                Err(e) if e.raw_os_error() == Some(16) => {}
                Err(e) => {
                    if m.target == "/dev" {
                        dev_ok = false;
                    }
                    let msg = format!("cannot mount {} on {}: {e}", m.fstype, m.target);
                    self.warn(msg);
                }
            }
        }
        self.stage_done("early-mounts");
        dev_ok
    }

    /// Stage 2: board file + command line.
    pub fn read_config(&mut self) {
        // Bytes, bounded, never blocking (cmdline::read_text): a word that
        // is not UTF-8 is one bad setting, not a lost command line.
        let read = crate::cmdline::read_text;
        let cmdline = read(&self.root.path(paths::PROC_CMDLINE)).unwrap_or_default();
        let board = read(&self.root.path(paths::BOARD_CONFIG)).ok();
        let (cfg, errors) = Config::from_bytes(board.as_deref(), &cmdline);
        self.cfg = cfg;
        for e in errors {
            crate::error!("bad setting {e}");
            self.state.warnings.push(format!("bad setting {e}"));
        }
        self.resolve_init();
        self.state.init = self.cfg.init.clone();
        self.state.wear_config = Some(self.cfg.wear.to_string());
        self.stage_done("config");
    }

    /// `overlay.init=` wins. Started as `init=` on a real root (OpenWrt
    /// style), `init=` names overlay-init itself: exec'ing it would start
    /// the pre-init again, for ever, so the real init is then /sbin/init.
    fn resolve_init(&mut self) {
        if let Some(i) = &self.cfg.overlay_init {
            self.cfg.init = i.clone();
            return;
        }
        if self.mode != Mode::Pivot {
            return;
        }
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let me = id(&self.root.path("/proc/self/exe"));
        if me.is_some() && id(&self.root.path(&self.cfg.init)) == me {
            crate::detail!(
                "init={} is overlay-init itself: the real init is {} (overlay.init= names another)",
                self.cfg.init,
                crate::config::DEFAULT_INIT
            );
            self.cfg.init = crate::config::DEFAULT_INIT.into();
        }
    }

    /// Stage 3: the board's modules.
    pub fn load_modules(&mut self, release: &str) {
        let loader = ModuleLoader::read(&self.root, release);
        let wanted = self.cfg.modules.clone();
        for p in loader.load(self.sys, &wanted) {
            self.warn(p);
        }
        self.modules = Some(loader);
        self.stage_done("modules");
    }

    /// Loads the modules for `fstype` unless the kernel already knows it.
    fn ensure_fs(&mut self, fstype: &str) {
        let known = std::fs::read_to_string(self.root.path(paths::PROC_FILESYSTEMS))
            .map(|t| {
                t.lines()
                    .any(|l| l.split_whitespace().last() == Some(fstype))
            })
            .unwrap_or(false);
        if !known {
            self.ensure_modules(fstype);
        }
    }

    /// Loads the modules `overlay.modules.WHAT=` names (a filesystem, or
    /// `watchdog`).
    fn ensure_modules(&mut self, what: &str) {
        let wanted = self.cfg.modules_for(what).to_vec();
        if let Some(loader) = &self.modules {
            for p in loader.load(self.sys, &wanted) {
                self.warn(p);
            }
        }
    }

    /// Polls sysfs until `spec` appears or `wait` has passed.
    fn wait_for(&self, spec: &DeviceSpec, wait: Duration) -> Option<BlockDev> {
        crate::sys::wait_until(self.sys, wait, POLL, || {
            devices::find(&devices::read_block_devices(&self.root), spec)
        })
    }

    /// Finds, identifies and mounts one read-only layer.
    fn mount_lower(
        &mut self,
        what: &'static str,
        spec: &DeviceSpec,
        target: &Path,
        fstype: Option<String>,
    ) -> Result<Layer, BootError> {
        let wait = self.cfg.root_wait;
        let dev = self
            .wait_for(spec, wait)
            .ok_or_else(|| BootError::DeviceNotFound {
                what,
                spec: spec.to_string(),
                waited: wait,
            })?;
        let fstype =
            match fstype {
                Some(t) => t,
                None => {
                    let (kind, _) = probe::read_kind(&self.root.join(&dev.node), dev.size)
                        .map_err(|err| BootError::ProbeLower {
                            device: dev.node.clone(),
                            err,
                        })?;
                    kind.fstype()
                        .ok_or_else(|| BootError::UnknownLowerFs {
                            device: dev.node.clone(),
                        })?
                        .to_string()
                }
            };
        self.ensure_fs(&fstype);
        let _ = self.sys.mkdir(target, 0o755);
        let node = dev.node.to_string_lossy();
        self.sys
            .mount(&node, target, &fstype, MountFlags::RDONLY, "")
            .map_err(|err| BootError::MountLower {
                device: dev.node.clone(),
                target: target.into(),
                fstype: fstype.clone(),
                err,
            })?;
        crate::detail!(
            "{what} {spec} = {node} ({fstype}) mounted read-only at {}",
            target.display()
        );
        Ok(Layer {
            device: node.into_owned(),
            fstype,
            mountpoint: target.to_string_lossy().into_owned(),
        })
    }

    /// Stage 4: the lower layers, highest precedence first, root= last.
    pub fn mount_lowers(&mut self) -> Result<(), BootError> {
        let mut layers = Vec::new();
        if !self.cfg.lowers.is_empty() {
            let _ = self.sys.mkdir(Path::new(paths::RUN_DIR), 0o755);
            let _ = self.sys.mkdir(Path::new(paths::LOWER_DIR), 0o755);
        }
        // The data partition is never read as a layer too (it may be
        // mid-journal, and the upper must not see itself below): a lower
        // naming it is left out, and the plan then leaves the data alone.
        // (Found only when there are lowers to check: a sysfs walk.)
        let data = if self.cfg.lowers.is_empty() {
            None
        } else {
            crate::backend::Wanted::from_config(&self.cfg).and_then(|w| {
                crate::backend::locate(&w, &crate::backend::Inventory::read(&self.root))
                    .ok()
                    .and_then(|l| l.block_node())
            })
        };
        let mut n = 0;
        for spec in self.cfg.lowers.clone() {
            if let Some(dev) = data.as_ref().filter(|d| {
                devices::find(&devices::read_block_devices(&self.root), &spec)
                    .is_some_and(|b| b.node.display().to_string() == **d)
            }) {
                self.warn(format!(
                    "overlay.lower={spec} is the data partition {dev}: that layer is left out, and the data partition is not used"
                ));
                self.lower_conflicts.push(dev.clone());
                continue;
            }
            let target = PathBuf::from(format!("{}/{n}", paths::LOWER_DIR));
            layers.push(self.mount_lower("lower layer", &spec, &target, None)?);
            n += 1;
        }
        match self.mode {
            Mode::Initramfs => {
                let spec = self.cfg.root.clone().ok_or(BootError::NoRootSpec)?;
                let fstype = self.cfg.rootfstype.clone();
                layers.push(self.mount_lower("root", &spec, Path::new(paths::ROM), fstype)?);
            }
            Mode::Pivot => {
                // The kernel's root (root=, rootfstype=), as mounted.
                let (device, fstype) =
                    std::fs::read_to_string(self.root.path("/proc/self/mountinfo"))
                        .ok()
                        .and_then(|t| devices::root_mount(&t))
                        .unwrap_or_else(|| ("/".into(), "root".into()));
                layers.push(Layer {
                    device,
                    fstype,
                    mountpoint: "/".into(),
                });
            }
        }
        self.state.lowers = layers;
        self.stage_done("lowers");
        Ok(())
    }

    /// Runs a tool of the lower root against the data device. From an
    /// initramfs the tool runs chrooted in /rom, with /dev, /proc and /sys
    /// bound in (the squashfs has the directories; binding onto them is
    /// allowed on a read-only filesystem) and unbound afterwards.
    fn run_in_lower(&mut self, argv: Vec<String>) -> std::io::Result<i32> {
        let cmd = match self.mode {
            Mode::Pivot => Command { argv, chroot: None },
            Mode::Initramfs => Command {
                argv,
                chroot: Some(PathBuf::from(paths::ROM)),
            },
        };
        let mut bound = Vec::new();
        if self.mode == Mode::Initramfs {
            for d in ["/dev", "/proc", "/sys"] {
                let target = PathBuf::from(format!("{}{d}", paths::ROM));
                if self.root.join(&target).is_dir()
                    && self.sys.mount_bind(Path::new(d), &target).is_ok()
                {
                    bound.push(target);
                }
            }
        }
        crate::detail!("{cmd}");
        let result = self.sys.run(&cmd);
        for t in bound.iter().rev() {
            if let Err(e) = self.sys.unmount(t, true) {
                self.warn(format!("cannot unmount {}: {e}", t.display()));
            }
        }
        result
    }

    /// Stage 5: the upper layer: facts, plan, execution (with its fallbacks).
    pub fn setup_upper(&mut self) {
        // Pivot mode keeps the upper and the new root under it.
        let _ = self.sys.mkdir(Path::new(paths::RUN_DIR), 0o755);
        self.failsafe_entry();
        self.run_upper_stage();
        self.stage_done("upper");
    }

    /// The lower directories for overlayfs, highest precedence first, as
    /// the pre-init sees them now: the top lower of a protected boot (the
    /// flash's `upper/`), then the lowers.
    fn lowerdirs(&self) -> Vec<String> {
        let top = self
            .upper
            .as_ref()
            .and_then(|u| u.top_lower.as_ref())
            .map(|p| p.at_boot.display().to_string());
        top.into_iter()
            .chain(self.state.lowers.iter().map(|l| l.mountpoint.clone()))
            .collect()
    }

    fn mount_overlay(&mut self) -> Result<(), BootError> {
        let newroot = PathBuf::from(self.mode.newroot());
        let _ = self.sys.mkdir(&newroot, 0o755);
        let lowers = self.lowerdirs();
        let base = self
            .upper
            .as_ref()
            .and_then(|u| u.upper_base.as_ref())
            .map(|p| p.at_boot.clone());
        let opts = match &base {
            None if lowers.len() == 1 => {
                // One read-only layer: no overlay needed (overlayfs wants two
                // lowers without an upper); the layer itself becomes the root.
                let rom = Path::new(paths::ROM);
                self.sys
                    .mount_move(rom, &newroot)
                    .map_err(|err| BootError::MoveMount {
                        from: rom.into(),
                        to: newroot.clone(),
                        err,
                    })?;
                if let Some(l) = self.state.lowers.last_mut() {
                    l.mountpoint = "/".into();
                }
                self.newroot_mounted = true;
                return Ok(());
            }
            None => crate::plan::overlay_options(&lowers, None),
            Some(b) => {
                crate::plan::overlay_options(&lowers, Some((&b.join("upper"), &b.join("work"))))
            }
        };
        let flags = if base.is_none() {
            MountFlags::RDONLY
        } else {
            MountFlags::NONE
        };
        crate::detail!("mount -t overlay overlay -o {opts} {}", newroot.display());
        self.sys
            .mount("overlay", &newroot, "overlay", flags, &opts)
            .map_err(|err| BootError::MountOverlay {
                options: opts.clone(),
                err,
            })?;
        self.newroot_mounted = true;
        Ok(())
    }

    /// Whether `init` can run from the lower layers alone: when it cannot,
    /// the upper is not to blame for a broken init.
    pub(super) fn init_runs_in_a_lower(&self) -> bool {
        self.state.lowers.iter().any(|l| {
            crate::switch::check_runnable(&self.root.path(&l.mountpoint), &self.cfg.init).is_ok()
        })
    }

    /// Stage 6: the merged root, checked to be writable and to hold a
    /// runnable init; a flash upper that breaks either is dropped for tmpfs.
    pub fn assemble(&mut self) -> Result<(), BootError> {
        loop {
            let on_flash = matches!(self.state.upper, Upper::Flash { .. });
            if let Err(e) = self.mount_overlay() {
                if on_flash {
                    self.fall_back(crate::reason::Reason::Overlay(e.to_string()));
                    continue;
                }
                return Err(e);
            }
            let newroot = PathBuf::from(self.mode.newroot());
            if on_flash && self.sys.is_readonly(&newroot).unwrap_or(false) {
                self.fall_back(crate::reason::Reason::OverlayReadOnly);
                continue;
            }
            if on_flash && std::mem::take(&mut self.restore_settings) {
                self.restore_sysupgrade(&newroot);
            }
            let runnable = crate::sys::linux::reading_the_init(|| {
                crate::switch::check_runnable(&self.root.join(&newroot), &self.cfg.init)
            });
            match runnable {
                Ok(()) => break,
                // The upper shadows the init: drop it. When no lower has a
                // runnable init either, the upper is not to blame: the
                // flash is kept and the boot ends below, saying why.
                Err(why) if on_flash && self.init_runs_in_a_lower() => {
                    self.fall_back(crate::reason::Reason::InitBroken {
                        init: self.cfg.init.clone(),
                        why,
                    });
                }
                Err(why) => {
                    return Err(BootError::NoInit {
                        init: self.cfg.init.clone(),
                        why,
                    })
                }
            }
        }
        self.stage_done("overlay");
        Ok(())
    }

    /// OpenWrt's `sysupgrade.tgz`, restored into the new root through the
    /// overlay (openwrt/restore.rs: contained, power-safe, once).
    fn restore_sysupgrade(&mut self, newroot: &Path) {
        let Some(at) = self
            .upper
            .as_ref()
            .and_then(|u| u.data.as_ref())
            .filter(|fs| fs.read_write)
            .map(|fs| fs.place.at_boot.clone())
        else {
            return;
        };
        let mut cut = crate::reset::boot::PowerCut::new(self.sys, &self.cfg);
        match crate::openwrt::restore::run(
            self.sys,
            &self.root.join(&at),
            &self.root.join(newroot),
            &self.root.path(self.mode.rom()),
            &mut cut,
        ) {
            Some(o) if o.is_warning() => self.warn(o.to_string()),
            Some(o) => crate::info!("{o}"),
            None => {}
        }
    }

    /// Stage 7: enter the new root, keeping the layers at /rom and /overlay.
    pub fn switch(&mut self) -> Result<(), BootError> {
        let newroot = self.mode.newroot();
        let writable = !matches!(self.state.upper, Upper::None { .. });
        // Mount points for the layers in the merged root (created in the upper
        // when the lower lacks them, which it can: the root is writable).
        let mut keep: Vec<&str> = Vec::new();
        if self
            .state
            .lowers
            .last()
            .is_some_and(|l| l.mountpoint == paths::ROM)
        {
            keep.push(paths::ROM);
        }
        if writable {
            keep.push(paths::OVERLAY);
        }
        for d in &keep {
            let p = PathBuf::from(format!("{newroot}{d}"));
            if !self.root.join(&p).is_dir() {
                if let Err(err) = self.sys.mkdir(&p, 0o755) {
                    return Err(BootError::Mkdir { path: p, err });
                }
            }
        }
        match self.mode {
            Mode::Initramfs => crate::switch::switch_root(
                self.sys,
                Path::new(newroot),
                &keep,
                &mut self.state.warnings,
            )?,
            Mode::Pivot => crate::switch::pivot_root(
                self.sys,
                Path::new(newroot),
                Path::new(self.mode.overlay()),
                writable,
                &mut self.state.warnings,
            )?,
        }
        if writable && self.mode == Mode::Pivot {
            if let Some(l) = self.state.lowers.last_mut() {
                l.mountpoint = paths::ROM.into();
            }
        }
        // The protected flash's upper/ is a lower layer too: listed by its
        // place in the booted system.
        if let Some(u) = &self.upper {
            if let (Some(top), Some(fs)) = (&u.top_lower, &u.data) {
                self.state.lowers.insert(
                    0,
                    Layer {
                        device: fs.device.clone(),
                        fstype: fs.fstype.into(),
                        mountpoint: top.after.display().to_string(),
                    },
                );
            }
        }
        self.stage_done("switch");
        Ok(())
    }

    /// The banner when changes will not persist.
    pub fn ram_banner(&self) -> Vec<String> {
        let (what, reason) = match &self.state.upper {
            Upper::Tmpfs {
                reason: Some(r), ..
            } => (
                "RUNNING ON RAM (tmpfs upper): changes will be LOST at reboot",
                r,
            ),
            Upper::None { reason: Some(r) } => ("READ-ONLY ROOT: changes cannot be saved", r),
            _ => return Vec::new(),
        };
        let rule = "*".repeat(72);
        vec![
            rule.clone(),
            format!("* {what}"),
            format!("* reason: {reason}"),
            "* details: overlay-status (or /run/overlay-init/state)".into(),
            rule,
        ]
    }
}
