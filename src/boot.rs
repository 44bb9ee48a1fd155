//! The pre-init's boot, stage by stage. Facts are gathered here (devices,
//! probes, fsck results), decisions are asked of `plan`, and every change to
//! the system goes through [`Sys`]. Each stage is timed for `overlay-status`.
//!
//! Layout while booting from an initramfs (switch_root):
//! ```text
//! /rom            root= squashfs, read-only (the lowest lower layer)
//! /run/overlay-init/lower/N   overlay.lower= layers, read-only
//! /overlay        the upper filesystem (flash or tmpfs) with upper/ and work/
//! /newroot        the merged overlay, switched into
//! ```
//! Started as `init=` on a real root (pivot_root), `/` is the lower, and the
//! upper and merged root are staged under /run/overlay-init.

use crate::config::{Config, DataSource};
use crate::devices::{self, BlockDev, DeviceSpec};
use crate::error::BootError;
use crate::modules::ModuleLoader;
use crate::paths::{self, SysRoot};
use crate::plan::{self, FsckVerdict, UpperAction};
use crate::probe;
use crate::reset::wipe::{Pending, ResetArea};
use crate::reset::{self, KEEP_FILE};
use crate::state::{BootState, Layer, Upper, WholeMillis};
use crate::sys::{Command, MountFlags, Sys};
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
            Mode::Pivot => "/run/overlay-init/overlay",
        }
    }

    /// Where the merged root is assembled.
    fn newroot(self) -> &'static str {
        match self {
            Mode::Initramfs => paths::NEWROOT,
            Mode::Pivot => "/run/overlay-init/root",
        }
    }
}

/// What to exec once in the new root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitExec {
    pub path: String,
    pub argv: Vec<String>,
    pub envp: Vec<String>,
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
    upper_on_flash: bool,
    /// The filesystem holding upper/ and work/: the upper's mount point, or
    /// a RAM one when the flash is protected from wear (boot/wear.rs).
    upper_base: PathBuf,
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

/// How long a boot may spend deleting a reset's trash; the rest is deleted by
/// a background process at the lowest priority (and, after a power cut, by
/// the next boot). Bounds the boot delay of resetting a huge upper.
pub const TRASH_BUDGET: Duration = Duration::from_secs(1);

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
            upper_on_flash: false,
            upper_base: PathBuf::from(mode.overlay()),
        }
    }

    /// Closes the current stage under `name`.
    fn stage_done(&mut self, name: &str) {
        let now = self.sys.now();
        self.state
            .stages
            .push((name.into(), now.saturating_sub(self.stage_mark)));
        self.stage_mark = now;
    }

    fn warn(&mut self, msg: String) {
        log::warn!("{msg}");
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
                Ok(()) => log::debug!("mount -t {} {} {}", m.fstype, m.source, m.target),
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
            log::error!("bad setting {e}");
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
            log::info!(
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
        if known {
            return;
        }
        let wanted = self.cfg.modules_for(fstype).to_vec();
        if let Some(loader) = &self.modules {
            for p in loader.load(self.sys, &wanted) {
                self.warn(p);
            }
        }
    }

    /// Polls sysfs until `spec` appears or `wait` has passed.
    fn wait_for(&self, spec: &DeviceSpec, wait: Duration) -> Option<BlockDev> {
        let start = self.sys.now();
        loop {
            let devs = devices::read_block_devices(&self.root);
            if let Some(d) = devices::find(&devs, spec) {
                return Some(d);
            }
            if self.sys.now().saturating_sub(start) >= wait {
                return None;
            }
            self.sys.sleep(POLL);
        }
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
        log::info!(
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
        for (i, spec) in self.cfg.lowers.clone().iter().enumerate() {
            let target = PathBuf::from(format!("{}/{i}", paths::LOWER_DIR));
            layers.push(self.mount_lower("lower layer", spec, &target, None)?);
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

    /// Finds a program in the lower root; returns its path inside that root.
    fn find_tool(&self, names: &[&str]) -> Option<String> {
        let rom = self.root.path(self.mode.rom());
        for name in names {
            for dir in plan::TOOL_DIRS {
                let p = format!("{dir}/{name}");
                if crate::switch::check_runnable(&rom, &p).is_ok() {
                    return Some(p);
                }
            }
        }
        None
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
        log::info!("{cmd}");
        let result = self.sys.run(&cmd);
        for t in bound.iter().rev() {
            if let Err(e) = self.sys.unmount(t, true) {
                self.warn(format!("cannot unmount {}: {e}", t.display()));
            }
        }
        result
    }

    /// Tries the flash upper; `Err` is the reason to run on RAM instead.
    fn try_flash(&mut self, spec: &DeviceSpec) -> Result<Upper, String> {
        let wait = self.cfg.data_wait;
        let dev = self
            .wait_for(spec, wait)
            .ok_or_else(|| format!("no data partition {spec} (waited {} ms)", WholeMillis(wait)))?;
        let node = dev.node.to_string_lossy().into_owned();
        let (kind, head) = probe::read_kind(&self.root.join(&dev.node), dev.size)
            .map_err(|e| format!("cannot read {node}: {e}"))?;
        log::debug!("{node}: {kind:?}");
        let mut wear = None;
        let fstype = match plan::decide_upper(self.cfg.fstype, kind, &node) {
            UpperAction::Tmpfs { reason } => return Err(reason),
            UpperAction::Format { fstype } => {
                let mkfs = format!("mkfs.{fstype}");
                let prog = self.find_tool(&[&mkfs]).ok_or_else(|| {
                    format!("{node} is blank, and the lower root has no {mkfs} to format it")
                })?;
                log::info!("first boot: formatting blank {node} as {fstype}");
                match self.run_in_lower(plan::mkfs_argv(fstype, &prog, &node)) {
                    Ok(0) => {}
                    Ok(c) => return Err(format!("{mkfs} {node} failed (exit {c})")),
                    Err(e) => return Err(format!("cannot run {mkfs}: {e}")),
                }
                fstype
            }
            UpperAction::CheckAndMount { fstype } => {
                wear = self.wear_assess(&node, fstype, &head);
                if let Some(w) = &wear {
                    if Self::wear_action(w)? {
                        let why = w.assessment.decision.summary().to_string();
                        return self.protect(&node, fstype, why);
                    }
                }
                self.check_upper(&dev, fstype, &head)?;
                fstype
            }
        };
        self.mount_upper_fs(&node, fstype)?;
        if let Some(w) = &wear {
            self.wear_log(w);
        }
        Ok(Upper::Flash {
            device: node,
            fstype: fstype.into(),
        })
    }

    /// Mounts the data filesystem at the upper's place, carries out a pending
    /// factory reset, and makes upper/ and work/. `Err` is the reason to run
    /// on RAM instead (the filesystem is unmounted again).
    fn mount_upper_fs(&mut self, source: &str, fstype: &str) -> Result<(), String> {
        self.ensure_fs(fstype);
        let target = Path::new(self.mode.overlay());
        let _ = self.sys.mkdir(target, 0o755);
        let flags = MountFlags {
            noatime: true,
            ..MountFlags::NONE
        };
        self.sys
            .mount(source, target, fstype, flags, "")
            .map_err(|e| format!("cannot mount {source} ({fstype}): {e}"))?;
        self.upper_on_flash = true;
        if let Err(reason) = self.factory_reset() {
            self.unmount_upper();
            return Err(format!(
                "{reason}; the factory reset resumes at the next boot"
            ));
        }
        if let Err(reason) = self.make_upper_dirs() {
            self.unmount_upper();
            return Err(format!("{reason} on {source}"));
        }
        log::info!("upper: {source} ({fstype}) at {}", paths::OVERLAY);
        Ok(())
    }

    /// Checks an existing upper before mounting it, with the lower root's fsck.
    /// e2fsck -p skips a filesystem whose superblock says it is clean; reading
    /// that superblock here spares starting e2fsck at all (a dynamic program:
    /// ~0.6 s of a 1 s boot on a slow CPU). `Err` is the reason not to mount.
    /// `head` holds the device's first bytes, as read by the probe.
    fn check_upper(&mut self, dev: &BlockDev, fstype: &str, head: &[u8]) -> Result<(), String> {
        let node = dev.node.to_string_lossy().into_owned();
        let due = match fstype {
            "ext4" => probe::ext4_needs_check(head),
            _ => Some("always checked"),
        };
        let Some(due) = due else {
            log::debug!("{node}: clean, no check needed");
            return Ok(());
        };
        let names: &[&str] = if fstype == "f2fs" {
            &["fsck.f2fs"]
        } else {
            &["e2fsck", "fsck.ext4"]
        };
        let Some(prog) = self.find_tool(names) else {
            log::info!(
                "no {} in the lower root: mounting {node} unchecked",
                names.join(" or ")
            );
            return Ok(());
        };
        log::info!("{node}: {due}: checking");
        match self.run_in_lower(plan::fsck_argv(fstype, &prog, &node)) {
            Err(e) => self.warn(format!("cannot run {prog}: {e}; mounting {node} unchecked")),
            Ok(code) => match plan::fsck_verdict(fstype, code) {
                FsckVerdict::Clean => {}
                FsckVerdict::Repaired => self.warn(format!("{prog} repaired errors on {node}")),
                FsckVerdict::Refuse(why) => return Err(format!("{node}: {why}")),
            },
        }
        Ok(())
    }

    /// Carries out a pending factory reset (or one asked for on the command
    /// line) on the mounted data filesystem, before upper/ is used; then
    /// deletes what earlier resets left in the trash, within [`TRASH_BUDGET`].
    fn factory_reset(&mut self) -> Result<(), String> {
        let data = self.root.join(Path::new(self.mode.overlay()));
        if !self.cfg.reset && !data.join(reset::RESET_DIR).is_dir() {
            return Ok(());
        }
        let area =
            ResetArea::open(&data, true).map_err(|e| format!("cannot open the reset area: {e}"))?;
        let mut pending = area
            .pending()
            .map_err(|e| format!("cannot read the reset request: {e}"))?;
        if self.cfg.reset && !matches!(pending, Pending::Request(_)) {
            let keep = self.keep_list(&data);
            let req = area
                .write_request(keep)
                .map_err(|e| format!("cannot record the reset request: {e}"))?;
            log::warn!(
                "factory reset #{} asked for on the kernel command line",
                req.seq
            );
            pending = Pending::Request(req);
        }
        // The power-cut test hook (feature test-hooks): reboot, unsynced,
        // after the N-th change of a step. A no-op in the release build.
        #[cfg(feature = "test-hooks")]
        let (sys, crash) = (self.sys, self.cfg.test_crash.clone());
        #[cfg(not(feature = "test-hooks"))]
        let (sys, crash) = (self.sys, None::<(String, u32)>);
        // Changes of the one configured step seen so far.
        let mut count = 0;
        let mut hook = |step: &str| {
            let Some((at, n)) = &crash else { return };
            if at != step {
                return;
            }
            count += 1;
            if count == *n {
                log::warn!("test hook: power cut after {step} #{n}");
                let err = sys.reboot();
                log::warn!("test hook: reboot failed: {err}");
            }
        };
        match pending {
            Pending::None => {}
            Pending::Corrupt(e) => {
                self.warn(format!(
                    "factory reset: the request record is unusable ({e}): ignored, nothing wiped"
                ));
                area.remove_request()
                    .map_err(|e| format!("cannot remove the unusable request: {e}"))?;
            }
            Pending::Stale(seq) => {
                log::info!(
                    "factory reset #{seq} was already completed; removing its leftover request"
                );
                area.finish_stale(seq, &mut hook)
                    .map_err(|e| format!("cannot finish reset #{seq}: {e}"))?;
            }
            Pending::Request(req) => {
                log::warn!(
                    "factory reset #{}: wiping the upper layer (keeping {} path(s))",
                    req.seq,
                    req.keep.len()
                );
                let t = self.sys.now();
                let report = area
                    .carry_out(&req, &mut hook)
                    .map_err(|e| format!("factory reset #{} failed: {e}", req.seq))?;
                let ms = WholeMillis(self.sys.now().saturating_sub(t));
                let kept = if report.kept.is_empty() {
                    "nothing".to_string()
                } else {
                    report.kept.join(", ")
                };
                log::warn!("factory reset #{}: done in {ms} ms; kept: {kept}", req.seq);
                self.state.reset =
                    Some(format!("reset #{} done in {ms} ms, kept: {kept}", req.seq));
            }
        }
        if area.has_trash() {
            let t = std::time::Instant::now();
            let mut removed = 0;
            let done = area
                .delete_trash(Some(t + TRASH_BUDGET), &mut removed, &mut hook)
                .map_err(|e| format!("cannot delete the reset trash: {e}"))?;
            if done {
                log::info!(
                    "factory reset: trash deleted ({removed} entries in {} ms)",
                    WholeMillis(t.elapsed())
                );
            } else {
                log::info!("factory reset: {removed} entries deleted in {} ms; the rest goes in the background", WholeMillis(t.elapsed()));
                let started = self
                    .sys
                    .background(&mut || match area.delete_trash(None, &mut removed, &mut |_| {}) {
                        Ok(_) => log::info!("factory reset: background trash deletion done ({removed} entries in {} ms)", WholeMillis(t.elapsed())),
                        Err(e) => log::warn!("factory reset: background trash deletion stopped: {e}; the next boot goes on"),
                    });
                if let Err(e) = started {
                    self.warn(format!(
                        "cannot start the background trash deletion: {e}; the next boot goes on"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The keep list for a reset asked for on the command line: the root's
    /// /etc/overlay-reset.keep as the booted system would see it (the
    /// upper's copy, else the lower's). Invalid lines are skipped and said.
    fn keep_list(&mut self, data: &Path) -> Vec<String> {
        let upper = data.join("upper");
        let rom = self.root.path(self.mode.rom());
        let text = match crate::switch::read_in_root(&upper, KEEP_FILE, reset::MAX_PAYLOAD) {
            Ok(b) => Some(b),
            // Absent from the upper: the lower's. Present but unreadable (a
            // whiteout: the user deleted it): no keep list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::switch::read_in_root(&rom, KEEP_FILE, reset::MAX_PAYLOAD).ok()
            }
            Err(_) => None,
        };
        let text = String::from_utf8_lossy(&text.unwrap_or_default()).into_owned();
        let mut keep = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match reset::validate_pattern(line) {
                Ok(()) => keep.push(line.to_string()),
                Err(e) => self.warn(format!("{KEEP_FILE}: {line}: {e}; not kept")),
            }
        }
        keep
    }

    /// upper/ and work/ on the upper filesystem: overlayfs needs both on the
    /// same filesystem (work/ is used for atomic copy-up and whiteouts).
    fn make_upper_dirs(&mut self) -> Result<(), String> {
        for d in ["upper", "work"] {
            let p = self.upper_base.join(d);
            self.sys
                .mkdir(&p, 0o755)
                .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        }
        Ok(())
    }

    /// Undoes [`Boot::protect`]'s RAM upper and its flash layer.
    fn unprotect(&mut self) {
        let ram = Path::new(wear::PROTECT_RAM);
        if self.upper_base == ram {
            if let Err(e) = self.sys.unmount(ram, true) {
                log::warn!("cannot unmount {}: {e}", ram.display());
            }
            self.upper_base = PathBuf::from(self.mode.overlay());
            let flash_layer = format!("{}/upper", paths::OVERLAY);
            self.state.lowers.retain(|l| l.mountpoint != flash_layer);
        }
    }

    fn unmount_upper(&mut self) {
        if self.upper_on_flash {
            let target = Path::new(self.mode.overlay());
            if let Err(e) = self.sys.unmount(target, false) {
                log::warn!("cannot unmount {}: {e}; detaching it", target.display());
                if let Err(e) = self.sys.unmount(target, true) {
                    log::warn!("cannot detach {}: {e}", target.display());
                }
            }
            self.upper_on_flash = false;
        }
    }

    /// A tmpfs bounded by overlay.tmpfs_size at `target`; `what` names it in
    /// the error ("cannot mount a tmpfs upper: ...").
    fn mount_ram(&self, target: &Path, what: &str) -> Result<(), String> {
        let _ = self.sys.mkdir(target, 0o755);
        let data = format!("mode=0755,size={}", self.cfg.tmpfs_size);
        self.sys
            .mount("tmpfs", target, "tmpfs", MountFlags::NONE, &data)
            .map_err(|e| format!("cannot mount a tmpfs {what}: {e}"))
    }

    /// A bounded tmpfs as the upper. If even that fails, the root is the
    /// lower alone, read-only: the last rung of the ladder.
    fn tmpfs_upper(&mut self, reason: Option<String>) {
        if let Some(r) = &reason {
            log::error!("running on RAM: {r}");
        }
        let size = self.cfg.tmpfs_size.to_string();
        let mounted = self
            .mount_ram(Path::new(self.mode.overlay()), "upper")
            .and_then(|()| self.make_upper_dirs());
        self.state.upper = match mounted {
            Ok(()) => Upper::Tmpfs { reason, size },
            Err(e) => {
                log::error!("{e}; the root will be read-only");
                Upper::None {
                    reason: Some(format!(
                        "{}{e}",
                        reason.map(|r| format!("{r}; ")).unwrap_or_default()
                    )),
                }
            }
        };
    }

    /// Stage 5: the upper layer.
    pub fn setup_upper(&mut self) {
        // Pivot mode keeps the upper and the new root under it.
        let _ = self.sys.mkdir(Path::new(paths::RUN_DIR), 0o755);
        match self.cfg.data.clone() {
            DataSource::Disabled => {
                log::info!("overlay disabled: the root is the lower layer alone, read-only");
                self.state.upper = Upper::None { reason: None };
            }
            DataSource::Tmpfs => self.tmpfs_upper(None),
            DataSource::Named(name) => match self.upper_by_name(&name) {
                Ok(u) => self.state.upper = u,
                Err(reason) => self.tmpfs_upper(Some(reason)),
            },
            DataSource::Device(spec) => match self.try_flash(&spec) {
                Ok(u) => self.state.upper = u,
                Err(reason) => self.tmpfs_upper(Some(reason)),
            },
            DataSource::Flash(spec) => match self.upper_by_flash_spec(&spec) {
                Ok(u) => self.state.upper = u,
                Err(reason) => self.tmpfs_upper(Some(reason)),
            },
        }
        self.stage_done("upper");
    }

    /// The lower directories for overlayfs, highest precedence first.
    fn lowerdirs(&self) -> Vec<String> {
        self.state
            .lowers
            .iter()
            .map(|l| l.mountpoint.clone())
            .collect()
    }

    fn mount_overlay(&mut self) -> Result<(), BootError> {
        let newroot = PathBuf::from(self.mode.newroot());
        let _ = self.sys.mkdir(&newroot, 0o755);
        let lowers = self.lowerdirs();
        let base = self.upper_base.display();
        let (upper, work) = (format!("{base}/upper"), format!("{base}/work"));
        let opts = match self.state.upper {
            Upper::None { .. } if lowers.len() == 1 => {
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
            Upper::None { .. } => plan::overlay_options(&lowers, None),
            _ => plan::overlay_options(&lowers, Some((&upper, &work))),
        };
        let flags = if matches!(self.state.upper, Upper::None { .. }) {
            MountFlags::RDONLY
        } else {
            MountFlags::NONE
        };
        log::info!("mount -t overlay overlay -o {opts} {}", newroot.display());
        self.sys
            .mount("overlay", &newroot, "overlay", flags, &opts)
            .map_err(|err| BootError::MountOverlay {
                options: opts.clone(),
                err,
            })?;
        self.newroot_mounted = true;
        Ok(())
    }

    /// Drops the flash upper for a tmpfs one (overlay unmounted first).
    fn fall_back(&mut self, reason: String) {
        if self.newroot_mounted {
            let nr = Path::new(self.mode.newroot());
            if let Err(e) = self
                .sys
                .unmount(nr, false)
                .or_else(|_| self.sys.unmount(nr, true))
            {
                log::warn!("cannot unmount {}: {e}", nr.display());
            }
            self.newroot_mounted = false;
        }
        self.unprotect();
        self.unmount_upper();
        self.tmpfs_upper(Some(reason));
    }

    /// Stage 6: the merged root, checked to be writable and to hold a
    /// runnable init; a flash upper that breaks either is dropped for tmpfs.
    pub fn assemble(&mut self) -> Result<(), BootError> {
        loop {
            let on_flash = matches!(self.state.upper, Upper::Flash { .. });
            if let Err(e) = self.mount_overlay() {
                if on_flash {
                    self.fall_back(e.to_string());
                    continue;
                }
                return Err(e);
            }
            let newroot = PathBuf::from(self.mode.newroot());
            if on_flash && self.sys.is_readonly(&newroot).unwrap_or(false) {
                self.fall_back("the kernel mounted the overlay read-only (the upper filesystem could not hold its work directory)".into());
                continue;
            }
            match crate::switch::check_runnable(&self.root.join(&newroot), &self.cfg.init) {
                Ok(()) => break,
                Err(why) if on_flash => {
                    self.fall_back(format!("the upper layer breaks the init: {} {why}; booting the lower layers with a RAM upper", self.cfg.init));
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

mod raw;
#[cfg(test)]
mod tests;
pub(crate) mod wear;
