//! Board config + kernel command line → [`Config`] (pure).
//!
//! The board file is read first, the command line after it, and for every key
//! the last value wins, so the command line overrides the board. A value that
//! does not parse is reported as a [`ConfigError`] and the previous (safe)
//! value is kept: bad input never stops the boot.

use crate::cmdline::{self, Param};
use crate::devices::{parse_spec, DeviceSpec, SpecError};
use crate::flash::{parse_flash_spec, FlashSpec};
use crate::wear::config::WearConfig;
use std::fmt;
use std::time::Duration;

/// Where the upper (writable) layer comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// No `overlay.data=` (name `rootfs_data`), or `fstools_overlay_name=NAME`:
    /// searched as fstools does, a UBI volume of that name, else an MTD
    /// partition, else a GPT partition (`PARTLABEL=NAME`).
    Named(String),
    /// A block device holding ext4 or f2fs.
    Device(DeviceSpec),
    /// `mtd:NAME`, `ubi:VOLUME`, `ubi:ubiN:VOLUME`: raw flash (JFFS2, UBIFS).
    Flash(FlashSpec),
    /// RAM only: changes are lost at reboot.
    Tmpfs,
    /// No overlay: boot the lower root alone, read-only.
    Disabled,
}

/// Filesystem for the upper on flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsChoice {
    /// Detect by superblock; blank flash gets ext4.
    Auto,
    Ext4,
    F2fs,
}

impl FsChoice {
    /// The type used to format blank flash.
    pub fn format_type(self) -> &'static str {
        match self {
            FsChoice::F2fs => "f2fs",
            FsChoice::Auto | FsChoice::Ext4 => "ext4",
        }
    }
}

/// A bound on the tmpfs upper: a share of RAM or a byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmpfsSize {
    Percent(u8),
    Bytes(u64),
}

impl fmt::Display for TmpfsSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmpfsSize::Percent(p) => write!(f, "{p}%"),
            TmpfsSize::Bytes(b) => write!(f, "{b}"),
        }
    }
}

/// Everything the pre-init was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `root=`: the squashfs (lowest lower layer). `None` only when the kernel
    /// already mounted root (we run as `init=` on it).
    pub root: Option<DeviceSpec>,
    /// `rootfstype=`; `None` = detect.
    pub rootfstype: Option<String>,
    /// How long to wait for root (and extra lowers) to appear.
    pub root_wait: Duration,
    /// `overlay.lower=`: extra lower layers, highest precedence first.
    pub lowers: Vec<DeviceSpec>,
    pub data: DataSource,
    /// How long to wait for the data device once root is there.
    pub data_wait: Duration,
    pub fstype: FsChoice,
    /// `init=`: the real init.
    pub init: String,
    /// `overlay.init=`: the real init, whatever `init=` says (with `init=`
    /// naming overlay-init itself, OpenWrt style, this names the next one).
    pub overlay_init: Option<String>,
    pub debug: bool,
    pub tmpfs_size: TmpfsSize,
    /// Modules loaded at start, in order.
    pub modules: Vec<String>,
    /// Modules loaded before mounting a filesystem of a type: (fstype, modules).
    pub fs_modules: Vec<(String, Vec<String>)>,
    /// Delay before rebooting after a fatal error (from the kernel's `panic=`).
    pub fatal_delay: Duration,
    /// `overlay.reset=1` / `systemd.factory_reset=1`: reset at this boot.
    pub reset: bool,
    /// `overlay.test_crash=STEP[:N]`: for power-cut tests only (feature
    /// test-hooks; the release binary does not know the key), reboot
    /// without syncing right after the N-th change of that reset step.
    #[cfg(feature = "test-hooks")]
    pub test_crash: Option<(String, u32)>,
    /// `overlay.wear=` and `overlay.wear_policy=`: flash wear thresholds,
    /// rated endurance, intervals and what to do when the flash is worn out.
    pub wear: WearConfig,
    /// `overlay.failsafe*=`, `overlay.boot_attempts=`, `overlay.watchdog=`.
    pub recovery: crate::recovery::RecoveryConfig,
    /// `overlay.upgrade=merge|keep|reset`: what the first boot of a new
    /// image does to the upper.
    pub upgrade: crate::upgrade::Policy,
    /// `overlay.test_hang=1` (feature test-hooks): the pre-init hangs at
    /// the upper stage without feeding the watchdog.
    #[cfg(feature = "test-hooks")]
    pub test_hang: bool,
    /// `overlay.test_slow=SECONDS` (feature test-hooks): every long
    /// operation (format, erase, reset, merge) is stretched by this much,
    /// feeding the watchdog as a real one does.
    #[cfg(feature = "test-hooks")]
    pub test_slow: Option<Duration>,
}

pub const DEFAULT_DATA_NAME: &str = "rootfs_data";
pub const DEFAULT_INIT: &str = "/sbin/init";
pub const DEFAULT_TMPFS_SIZE: TmpfsSize = TmpfsSize::Percent(25);
/// Without rootwait/rootdelay a device that is not there within this bound is absent.
pub const DEFAULT_ROOT_WAIT: Duration = Duration::from_secs(10);
/// `rootwait` with no value: the kernel waits forever; we bound it.
pub const ROOTWAIT_BOUND: Duration = Duration::from_secs(30);
pub const DEFAULT_DATA_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_FATAL_DELAY: Duration = Duration::from_secs(10);

impl Default for Config {
    fn default() -> Self {
        Config {
            root: None,
            rootfstype: None,
            root_wait: DEFAULT_ROOT_WAIT,
            lowers: Vec::new(),
            data: DataSource::Named(DEFAULT_DATA_NAME.into()),
            data_wait: DEFAULT_DATA_WAIT,
            fstype: FsChoice::Auto,
            init: DEFAULT_INIT.into(),
            overlay_init: None,
            debug: false,
            tmpfs_size: DEFAULT_TMPFS_SIZE,
            modules: Vec::new(),
            fs_modules: Vec::new(),
            fatal_delay: DEFAULT_FATAL_DELAY,
            reset: false,
            #[cfg(feature = "test-hooks")]
            test_crash: None,
            recovery: Default::default(),
            upgrade: Default::default(),
            #[cfg(feature = "test-hooks")]
            test_hang: false,
            #[cfg(feature = "test-hooks")]
            test_slow: None,
            wear: WearConfig::default(),
        }
    }
}

/// The configuration this system booted with, for the tools of the running
/// system (`overlay-reset --format`, the wear monitor): the command line,
/// and the board file, which stays in the initramfs after the switch: the
/// root's `/etc/overlay-init.conf` where there is one (pivot mode, or a copy),
/// else the lower's at /rom. Bytes ([`cmdline::read_text`]): one word that is
/// not UTF-8 must not lose the whole command line.
pub fn read_configured(root: &crate::paths::SysRoot) -> Config {
    use crate::paths;
    let read = crate::cmdline::read_text;
    let cmdline = read(&root.path(paths::PROC_CMDLINE)).unwrap_or_default();
    let board = read(&root.path(paths::BOARD_CONFIG))
        .or_else(|_| read(&root.path("/rom/etc/overlay-init.conf")))
        .ok();
    Config::from_bytes(board.as_deref(), &cmdline).0
}

/// A value that was refused, and what is used instead. `key` and `value`
/// are as shown to people ([`cmdline::shown`]: control characters and
/// bytes that are not UTF-8 escaped, long values shortened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: Option<String>,
    pub problem: String,
    pub kept: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}: {}; using {}", self.key, self.problem, self.kept),
            None => write!(f, "{}: {}; using {}", self.key, self.problem, self.kept),
        }
    }
}

/// The most bad settings reported one by one; the rest are counted in one
/// last error, so that a board file of thousands of bad lines costs neither
/// memory nor a flood of console lines.
pub const MAX_ERRORS: usize = 16;
/// The most items of a list value (`overlay.lower=`, `overlay.modules=`):
/// bounds the memory a hostile list can take (every real board has a
/// handful).
pub const MAX_ITEMS: usize = 128;
/// The most `overlay.modules.FSTYPE=` keys (filesystem types).
pub const MAX_FS_TYPES: usize = 16;
/// A value is shown in a message up to this many bytes, then shortened
/// around an ellipsis ([`cmdline::shown`]).
const SHOWN: usize = 96;

/// The keys this config reads (besides `overlay.*`): a value that is not
/// UTF-8 is refused for these, and ignored for any other key (it is the
/// kernel's or init's business).
const KEYS: [&str; 10] = [
    "root",
    "rootfstype",
    "rootwait",
    "rootdelay",
    "init",
    "panic",
    "overlayroot",
    "fstools_overlay_name",
    "fstools_overlay_fstype",
    "systemd.factory_reset",
];

impl Config {
    /// Builds the config from the board file text (if any) and /proc/cmdline.
    pub fn from_sources(
        board_file: Option<&str>,
        cmdline_text: &str,
    ) -> (Config, Vec<ConfigError>) {
        Config::from_bytes(board_file.map(str::as_bytes), cmdline_text.as_bytes())
    }

    /// [`Config::from_sources`] on the bytes as read: any byte, any length
    /// (past [`cmdline::MAX_TEXT`] the rest is ignored, and said), any
    /// number of words; never panics, and its memory is bounded.
    pub fn from_bytes(
        board_file: Option<&[u8]>,
        cmdline_text: &[u8],
    ) -> (Config, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let board = board_file.map(|b| within_limit(b, "the board file", true, &mut errors));
        let line = within_limit(cmdline_text, "the kernel command line", false, &mut errors);
        let params = board
            .into_iter()
            .flat_map(cmdline::parse_file)
            .chain(cmdline::parse(line));
        let mut cfg = Config::default();
        let mut more = 0usize;
        for p in params {
            if let Err(problem) = cfg.apply(&p) {
                if errors.len() < MAX_ERRORS {
                    let key = cmdline::shown(p.key, SHOWN);
                    errors.push(ConfigError {
                        kept: cfg.current(&key),
                        key,
                        value: p.value.map(|v| cmdline::shown(v, SHOWN)),
                        problem,
                    });
                } else {
                    more = more.saturating_add(1);
                }
            }
        }
        if more > 0 {
            errors.push(ConfigError {
                key: "...".into(),
                value: None,
                problem: format!("{more} more bad settings, not listed"),
                kept: "the earlier values".into(),
            });
        }
        (cfg, errors)
    }

    /// The current value of a key, for error messages.
    fn current(&self, key: &str) -> String {
        match key {
            "root" => self
                .root
                .as_ref()
                .map_or("no root device".into(), |r| r.to_string()),
            "rootwait" | "rootdelay" => format!("a {} s wait", self.root_wait.as_secs()),
            "overlay.datawait" => format!("a {} s wait", self.data_wait.as_secs()),
            "overlay.lower" => format!("{} extra lower layer(s)", self.lowers.len()),
            "overlay.data" | "overlayroot" | "fstools_overlay_name" => match &self.data {
                DataSource::Named(n) => {
                    format!("{n} (a UBI volume, MTD or GPT partition of that name)")
                }
                DataSource::Device(d) => d.to_string(),
                DataSource::Flash(f) => f.to_string(),
                DataSource::Tmpfs => "tmpfs".into(),
                DataSource::Disabled => "no overlay".into(),
            },
            // The variant's name in lower case (was `{:?}` + to_lowercase(),
            // which linked the Unicode case tables: ~2 KiB).
            "overlay.fstype" | "fstools_overlay_fstype" => match self.fstype {
                FsChoice::Auto => "auto",
                FsChoice::Ext4 => "ext4",
                FsChoice::F2fs => "f2fs",
            }
            .into(),
            "init" => self.init.clone(),
            "overlay.init" => self.overlay_init.clone().unwrap_or_default(),
            "overlay.tmpfs_size" => self.tmpfs_size.to_string(),
            "panic" => format!("a {} s delay", self.fatal_delay.as_secs()),
            "overlay.wear" => self.wear.to_string(),
            "overlay.wear_policy" => self.wear.policy.to_string(),
            "overlay.upgrade" => self.upgrade.name().into(),
            k if crate::recovery::RecoveryConfig::owns(k) => self.recovery.current(k),
            _ => "the default".into(),
        }
    }

    /// One word: the key and the value must be UTF-8 text for a key of
    /// ours; a word for the kernel or init is none of our business.
    fn apply(&mut self, p: &Param) -> Result<(), String> {
        let ours = |k: &[u8]| k.starts_with(b"overlay.") || KEYS.iter().any(|o| o.as_bytes() == k);
        if !ours(p.key) {
            return Ok(());
        }
        let Ok(key) = std::str::from_utf8(p.key) else {
            return Err("the key is not UTF-8 text".into());
        };
        let v = match p.value.map(std::str::from_utf8) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err("not UTF-8 text".into()),
        };
        self.apply_text(key, v)
    }

    fn apply_text(&mut self, key: &str, v: Option<&str>) -> Result<(), String> {
        match key {
            "root" => self.root = Some(spec(v)?),
            "rootfstype" => self.rootfstype = Some(word(v)?.into()),
            "rootwait" => {
                self.root_wait = match v {
                    None => ROOTWAIT_BOUND,
                    Some(s) => secs(Some(s))?,
                }
            }
            "rootdelay" => self.root_wait = secs(v)?,
            "overlay.datawait" => self.data_wait = secs(v)?,
            "overlay.lower" => {
                let list = word(v)?;
                if list.split(',').nth(MAX_ITEMS).is_some() {
                    return Err(format!("more than {MAX_ITEMS} layers"));
                }
                self.lowers = list
                    .split(',')
                    .map(|s| parse_spec(s).map_err(|e| format!("{s}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "overlay.data" => {
                self.data = match word(v)? {
                    "tmpfs" => DataSource::Tmpfs,
                    "none" | "disabled" => DataSource::Disabled,
                    s => match parse_flash_spec(s) {
                        Some(flash) => DataSource::Flash(flash.map_err(|e| e.to_string())?),
                        None => DataSource::Device(parse_spec(s).map_err(|e| match e {
                            SpecError::UnknownForm => "not a device (use /dev/NAME, PARTLABEL=NAME, PARTUUID=UUID, mtd:NAME or ubi:[ubiN:]VOLUME)".to_string(),
                            e => e.to_string(),
                        })?),
                    },
                }
            }
            "fstools_overlay_name" => self.data = DataSource::Named(word(v)?.into()),
            "overlay.fstype" | "fstools_overlay_fstype" => {
                self.fstype = match word(v)? {
                    "auto" => FsChoice::Auto,
                    "ext4" => FsChoice::Ext4,
                    "f2fs" => FsChoice::F2fs,
                    _ => return Err("unsupported filesystem (use auto, ext4 or f2fs)".into()),
                }
            }
            "overlayroot" => self.apply_overlayroot(word(v)?)?,
            "init" => self.init = init_path(v)?,
            "overlay.init" => self.overlay_init = Some(init_path(v)?),
            "overlay.debug" => self.debug = flag(v)?,
            "overlay.reset" | "systemd.factory_reset" => self.reset = flag(v)?,
            #[cfg(feature = "test-hooks")]
            "overlay.test_crash" => {
                let s = word(v)?;
                let (step, n) = s.split_once(':').unwrap_or((s, "1"));
                // The reset's steps (reset/wipe.rs), the upgrade merge's
                // (upgrade/merge.rs, prefixed), the boot counter's.
                const STEPS: [&str; 18] = [
                    "keep",
                    "trash",
                    "fresh",
                    "restore",
                    "done",
                    "clear",
                    "delete",
                    "upgrade-pending",
                    "upgrade-remove",
                    "upgrade-dir",
                    "upgrade-last",
                    "upgrade-state",
                    "upgrade-done",
                    "sysupgrade",
                    "count-write",
                    "count-sync",
                    "mark-write",
                    "mark-sync",
                ];
                if !STEPS.contains(&step) {
                    return Err(format!("unknown step (one of {})", STEPS.join(", ")));
                }
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("the count must be a positive number")?;
                self.test_crash = Some((step.into(), n));
            }
            // Read by pid1 itself (pid1::test_fault).
            #[cfg(feature = "test-hooks")]
            "overlay.test_fault" => {}
            "overlay.tmpfs_size" => self.tmpfs_size = parse_size(word(v)?)?,
            "overlay.modules" => self.modules = list(v)?,
            "panic" => {
                let n: i64 = word(v)?
                    .trim()
                    .parse()
                    .map_err(|_| "not a number".to_string())?;
                self.fatal_delay = match n {
                    n if n < 0 => Duration::ZERO,
                    0 => DEFAULT_FATAL_DELAY,
                    n => Duration::from_secs(n.unsigned_abs()),
                };
            }
            #[cfg(feature = "test-hooks")]
            "overlay.test_hang" => self.test_hang = flag(v)?,
            #[cfg(feature = "test-hooks")]
            "overlay.test_slow" => self.test_slow = Some(secs(v)?),
            "overlay.upgrade" => {
                self.upgrade = crate::upgrade::Policy::parse(word(v)?)?;
            }
            k if crate::recovery::RecoveryConfig::owns(k) => {
                self.recovery.apply(k, v).map_err(|e| e.to_string())?
            }
            "overlay.wear" => self.wear.apply_list(v)?,
            "overlay.wear_policy" => self.wear.apply_policy(v)?,
            k if k.starts_with("overlay.modules.") => {
                // Every leading "overlay.modules." off, as trim_start_matches
                // did (strip_prefix needs no substring searcher).
                let mut fs = k;
                while let Some(rest) = fs.strip_prefix("overlay.modules.") {
                    fs = rest;
                }
                let fs = fs.to_string();
                let mods = list(v)?;
                self.fs_modules.retain(|(f, _)| *f != fs);
                if self.fs_modules.len() >= MAX_FS_TYPES {
                    return Err(format!("more than {MAX_FS_TYPES} filesystem types"));
                }
                self.fs_modules.push((fs, mods));
            }
            k if k.starts_with("overlay.") => return Err("unknown overlay-init key".into()),
            _ => {} // a key for the kernel or for init
        }
        Ok(())
    }

    /// Ubuntu's `overlayroot=`: `tmpfs[:opts]`, `device:dev=SPEC[,timeout=N,...]`, `disabled`.
    fn apply_overlayroot(&mut self, v: &str) -> Result<(), String> {
        let (kind, opts) = v.split_once(':').unwrap_or((v, ""));
        match kind {
            "tmpfs" => self.data = DataSource::Tmpfs,
            "disabled" => self.data = DataSource::Disabled,
            "device" => {
                let mut dev = None;
                let mut wait = None;
                for opt in opts.split(',').filter(|o| !o.is_empty()) {
                    match opt.split_once('=') {
                        Some(("dev", d)) => dev = Some(parse_spec(d).map_err(|e| e.to_string())?),
                        Some(("timeout", t)) => wait = Some(secs(Some(t))?),
                        _ => {} // mkfs=, recurse=, swap=: options we do not need
                    }
                }
                self.data = DataSource::Device(dev.ok_or("device: needs dev=DEVICE")?);
                if let Some(w) = wait {
                    self.data_wait = w;
                }
            }
            _ => return Err("unsupported (use tmpfs, device:dev=DEVICE or disabled)".into()),
        }
        Ok(())
    }

    /// The modules to load before mounting `fstype`.
    pub fn modules_for(&self, fstype: &str) -> &[String] {
        self.fs_modules
            .iter()
            .find(|(f, _)| f == fstype)
            .map_or(&[], |(_, m)| m.as_slice())
    }
}

/// `text`, or its first [`cmdline::MAX_TEXT`] bytes (for a file, up to
/// the last whole line in them) with an error saying so.
fn within_limit<'a>(
    text: &'a [u8],
    what: &str,
    lines: bool,
    errors: &mut Vec<ConfigError>,
) -> &'a [u8] {
    if text.len() <= cmdline::MAX_TEXT {
        return text;
    }
    let mut cut = text.get(..cmdline::MAX_TEXT).unwrap_or_default();
    if lines {
        let whole = cut.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        cut = cut.get(..whole).unwrap_or_default();
    }
    errors.push(ConfigError {
        key: what.into(),
        value: None,
        problem: format!("longer than {} bytes", cmdline::MAX_TEXT),
        kept: format!("its first {} bytes", cut.len()),
    });
    cut
}

fn word(v: Option<&str>) -> Result<&str, String> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s.trim()),
        _ => Err("needs a value".into()),
    }
}

fn spec(v: Option<&str>) -> Result<DeviceSpec, String> {
    parse_spec(word(v)?).map_err(|e| e.to_string())
}

fn secs(v: Option<&str>) -> Result<Duration, String> {
    let n: u64 = word(v)?
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if n > 3600 {
        return Err("more than an hour".into());
    }
    Ok(Duration::from_secs(n))
}

fn flag(v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("1" | "y" | "yes" | "on" | "true") => Ok(true),
        Some("0" | "n" | "no" | "off" | "false") => Ok(false),
        Some(_) => Err("not a yes/no value".into()),
    }
}

fn list(v: Option<&str>) -> Result<Vec<String>, String> {
    if word(v)?
        .split(',')
        .filter(|s| !s.is_empty())
        .nth(MAX_ITEMS)
        .is_some()
    {
        return Err(format!("more than {MAX_ITEMS} modules"));
    }
    let items: Vec<String> = word(v)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.iter().any(|m| {
        !m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err("module names are letters, digits, - and _".into());
    }
    Ok(items)
}

/// `N%` (1..=90) of RAM, or `N[k|m|g]` bytes (at least 1 MiB).
pub fn parse_size(s: &str) -> Result<TmpfsSize, String> {
    if let Some(p) = s.strip_suffix('%') {
        return match p.parse::<u8>() {
            Ok(n @ 1..=90) => Ok(TmpfsSize::Percent(n)),
            _ => Err("a share of RAM must be 1% to 90%".into()),
        };
    }
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "not a size (use N%, or N with k, m or g)".to_string())?;
    let bytes = n.checked_mul(mult).ok_or("too large")?;
    if bytes < 1 << 20 {
        return Err("smaller than 1 MiB (0 would mean unbounded)".into());
    }
    Ok(TmpfsSize::Bytes(bytes))
}

/// An init path: absolute, no `..`.
fn init_path(v: Option<&str>) -> Result<String, String> {
    let s = word(v)?;
    if !s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return Err("not an absolute path".into());
    }
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(line: &str) -> (Config, Vec<ConfigError>) {
        Config::from_sources(None, line)
    }

    #[test]
    fn defaults() {
        let (c, e) = cfg("console=ttyAMA0");
        assert!(e.is_empty());
        assert_eq!(c.data, DataSource::Named("rootfs_data".into()));
        assert_eq!(c.init, "/sbin/init");
        assert_eq!(c.tmpfs_size, TmpfsSize::Percent(25));
        assert_eq!(c.root, None);
    }

    #[test]
    fn main_keys() {
        let (c, e) = cfg("root=PARTLABEL=rootfs rootwait overlay.lower=PARTLABEL=a,/dev/vdc overlay.data=/dev/vdb1 overlay.fstype=f2fs init=/bin/sh overlay.debug overlay.tmpfs_size=64m rootfstype=squashfs");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.root, Some(DeviceSpec::PartLabel("rootfs".into())));
        assert_eq!(c.root_wait, ROOTWAIT_BOUND);
        assert_eq!(
            c.lowers,
            vec![
                DeviceSpec::PartLabel("a".into()),
                DeviceSpec::Path("/dev/vdc".into())
            ]
        );
        assert_eq!(
            c.data,
            DataSource::Device(DeviceSpec::Path("/dev/vdb1".into()))
        );
        assert_eq!(c.fstype, FsChoice::F2fs);
        assert_eq!(c.init, "/bin/sh");
        assert!(c.debug);
        assert_eq!(c.tmpfs_size, TmpfsSize::Bytes(64 << 20));
        assert_eq!(c.rootfstype.as_deref(), Some("squashfs"));
    }

    #[test]
    fn rootwait_and_rootdelay_bound_the_wait() {
        assert_eq!(cfg("rootwait=5").0.root_wait, Duration::from_secs(5));
        assert_eq!(cfg("rootdelay=3").0.root_wait, Duration::from_secs(3));
        assert_eq!(cfg("").0.root_wait, DEFAULT_ROOT_WAIT);
    }

    #[test]
    fn openwrt_aliases() {
        let (c, e) = cfg("fstools_overlay_name=mydata fstools_overlay_fstype=f2fs");
        assert!(e.is_empty());
        assert_eq!(c.data, DataSource::Named("mydata".into()));
        assert_eq!(c.fstype, FsChoice::F2fs);
    }

    #[test]
    fn raw_flash_data() {
        let data = |line: &str| cfg(line).0.data;
        assert_eq!(
            data("overlay.data=mtd:rootfs_data"),
            DataSource::Flash(FlashSpec::Mtd("rootfs_data".into()))
        );
        assert_eq!(
            data("overlay.data=ubi:rootfs_data"),
            DataSource::Flash(FlashSpec::Ubi {
                device: None,
                volume: "rootfs_data".into()
            })
        );
        assert_eq!(
            data("overlay.data=ubi:ubi1:data"),
            DataSource::Flash(FlashSpec::Ubi {
                device: Some(1),
                volume: "data".into()
            })
        );
        // The last value wins, whatever its form.
        assert_eq!(
            data("overlay.data=mtd:a overlay.data=PARTLABEL=b"),
            DataSource::Device(DeviceSpec::PartLabel("b".into()))
        );
        assert_eq!(
            data("overlay.data=ubi:v fstools_overlay_name=x"),
            DataSource::Named("x".into())
        );
        let (c, e) = cfg("overlay.data=mtd:x overlay.data=mtd: overlay.data=ubi:ubi0:");
        assert_eq!(c.data, DataSource::Flash(FlashSpec::Mtd("x".into())));
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].to_string(),
            "overlay.data=mtd:: no name after mtd: or ubi:; using mtd:x"
        );
        let (_, e) = cfg("overlay.data=sda2");
        assert_eq!(
            e[0].to_string(),
            "overlay.data=sda2: not a device (use /dev/NAME, PARTLABEL=NAME, PARTUUID=UUID, mtd:NAME or ubi:[ubiN:]VOLUME); using rootfs_data (a UBI volume, MTD or GPT partition of that name)"
        );
    }

    #[test]
    fn ubuntu_aliases() {
        assert_eq!(cfg("overlayroot=tmpfs").0.data, DataSource::Tmpfs);
        assert_eq!(
            cfg("overlayroot=tmpfs:swap=1,recurse=0").0.data,
            DataSource::Tmpfs
        );
        assert_eq!(cfg("overlayroot=disabled").0.data, DataSource::Disabled);
        let (c, e) = cfg("overlayroot=device:dev=PARTLABEL=other,timeout=7,mkfs=1");
        assert!(e.is_empty());
        assert_eq!(
            c.data,
            DataSource::Device(DeviceSpec::PartLabel("other".into()))
        );
        assert_eq!(c.data_wait, Duration::from_secs(7));
    }

    #[test]
    fn command_line_wins_over_board_file() {
        let board = "# board\noverlay.data=tmpfs\noverlay.modules=virtio_blk,ext4\noverlay.modules.ext4=jbd2,ext4\n";
        let (c, e) = Config::from_sources(Some(board), "overlay.data=PARTLABEL=x");
        assert!(e.is_empty());
        assert_eq!(
            c.data,
            DataSource::Device(DeviceSpec::PartLabel("x".into()))
        );
        assert_eq!(c.modules, vec!["virtio_blk", "ext4"]);
        assert_eq!(c.modules_for("ext4"), ["jbd2", "ext4"]);
        assert!(c.modules_for("f2fs").is_empty());
    }

    #[test]
    fn bad_values_keep_safe_defaults_and_say_why() {
        let (c, e) = cfg("overlay.tmpfs_size=0 overlay.fstype=btrfs init=sbin/init overlayroot=crypt:x overlay.data=vda2 rootwait=soon overlay.bogus=1 overlay.lower=PARTLABEL=a,junk panic=x root=");
        assert_eq!(c, Config::default());
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "overlay.tmpfs_size",
                "overlay.fstype",
                "init",
                "overlayroot",
                "overlay.data",
                "rootwait",
                "overlay.bogus",
                "overlay.lower",
                "panic",
                "root"
            ]
        );
        assert_eq!(
            e[0].to_string(),
            "overlay.tmpfs_size=0: smaller than 1 MiB (0 would mean unbounded); using 25%"
        );
        assert_eq!(e[1].kept, "auto");
        assert_eq!(e[2].kept, "/sbin/init");
    }

    #[test]
    fn a_bad_value_keeps_the_earlier_good_one() {
        let (c, e) = cfg("overlay.tmpfs_size=10% overlay.tmpfs_size=200%");
        assert_eq!(e.len(), 1);
        assert_eq!(c.tmpfs_size, TmpfsSize::Percent(10));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50%"), Ok(TmpfsSize::Percent(50)));
        assert_eq!(parse_size("2G"), Ok(TmpfsSize::Bytes(2 << 30)));
        assert_eq!(parse_size("2048k"), Ok(TmpfsSize::Bytes(2 << 20)));
        assert!(parse_size("0%").is_err());
        assert!(parse_size("95%").is_err());
        assert!(parse_size("100").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn reset_keys() {
        assert!(cfg("overlay.reset=1").0.reset);
        assert!(cfg("systemd.factory_reset=1").0.reset);
        assert!(!cfg("systemd.factory_reset=0").0.reset);
    }

    #[cfg(feature = "test-hooks")]
    #[test]
    fn test_crash_key() {
        assert_eq!(
            cfg("overlay.test_crash=trash:2").0.test_crash,
            Some(("trash".into(), 2))
        );
        assert_eq!(
            cfg("overlay.test_crash=keep").0.test_crash,
            Some(("keep".into(), 1))
        );
        assert_eq!(cfg("overlay.test_crash=nope").1.len(), 1);
        assert_eq!(cfg("overlay.test_crash=keep:0").1.len(), 1);
    }

    /// The release build does not know the test-only key: it is refused
    /// like any unknown overlay.* key.
    #[cfg(not(feature = "test-hooks"))]
    #[test]
    fn test_crash_key_is_unknown_without_the_feature() {
        let (_, e) = cfg("overlay.test_crash=trash:2");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].problem, "unknown overlay-init key");
    }

    #[test]
    fn wear_keys_merge_board_and_command_line() {
        let board = "overlay.wear=pe_cycles:3000,capacity:128m\noverlay.wear_policy=tmpfs\n";
        let (c, e) = Config::from_sources(Some(board), "overlay.wear=warn:70,critical:90");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.wear.pe_cycles, Some(3000));
        assert_eq!(c.wear.capacity, Some(128 << 20));
        assert_eq!((c.wear.warn_pct, c.wear.critical_pct), (70, 90));
        assert_eq!(c.wear.policy, crate::wear::config::Policy::Tmpfs);
        let (c, _) = Config::from_sources(Some(board), "overlay.wear_policy=warn overlay.wear=off");
        assert_eq!(c.wear.policy, crate::wear::config::Policy::Warn);
        assert!(!c.wear.enabled);
    }

    #[test]
    fn bad_wear_values_are_reported_and_keep_the_previous_settings() {
        let (c, e) =
            cfg("overlay.wear=warn:70 overlay.wear=warn:75,nonsense:1 overlay.wear_policy=melt");
        assert_eq!(c.wear.warn_pct, 70);
        assert_eq!(c.wear.policy, crate::wear::config::Policy::Protect);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].to_string(),
            "overlay.wear=warn:75,nonsense:1: nonsense: unknown item (warn, critical, bad_warn, \
             bad_critical, pe_cycles, capacity, target_years, log_interval, sample, on, off); \
             using warn:70,critical:95,bad_warn:50,bad_critical:90,target_years:5,log_interval:1d,sample:10m"
        );
        assert_eq!(
            e[1].to_string(),
            "overlay.wear_policy=melt: unknown policy (use warn, protect or tmpfs); using protect"
        );
    }

    /// Issue 11: the command line and the board file are bytes. A value of
    /// ours that is not UTF-8 is a clear bad setting (escaped in the
    /// message); a word for the kernel or init is ignored, whatever it holds.
    #[test]
    fn bytes_that_are_not_utf8_are_a_bad_setting_not_a_lost_line() {
        let (c, e) = Config::from_bytes(
            Some(b"overlay.data=PARTLABEL=d\xe9\noverlay.debug\n"),
            b"root=PARTLABEL=r\xff init=/sbin/\x01x panic=2 caf\xe9=\xe9 \xe9 -- \xff",
        );
        assert_eq!(c.data, DataSource::Named(DEFAULT_DATA_NAME.into()));
        assert!(c.debug, "the good words around the bad ones count");
        assert_eq!(c.fatal_delay, Duration::from_secs(2));
        assert_eq!(c.init, "/sbin/\u{1}x");
        assert_eq!(c.root, None);
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "overlay.data=PARTLABEL=d\\xe9: not UTF-8 text; using rootfs_data (a UBI volume, MTD or GPT partition of that name)",
                "root=PARTLABEL=r\\xff: not UTF-8 text; using no root device",
            ]
        );
        let (_, e) = Config::from_bytes(None, b"overlay.\xff=1");
        assert_eq!(
            e[0].to_string(),
            "overlay.\\xff=1: the key is not UTF-8 text; using the default"
        );
    }

    #[test]
    fn a_long_value_is_shortened_in_its_message_with_the_reason_kept() {
        let line = format!("overlay.fstype={}", "B".repeat(400));
        let (_, e) = cfg(&line);
        let msg = e[0].to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.starts_with("overlay.fstype=BBBB"), "{msg}");
        assert!(msg.contains("BBB…BBB"), "{msg}");
        assert!(
            msg.ends_with("unsupported filesystem (use auto, ext4 or f2fs); using auto"),
            "{msg}"
        );
    }

    #[test]
    fn thousands_of_bad_settings_are_counted_not_each_kept() {
        let board = "overlay.nonsense=1\n".repeat(3000);
        let (_, e) = Config::from_sources(Some(&board), "overlay.bogus");
        assert_eq!(e.len(), MAX_ERRORS + 1);
        assert_eq!(
            e[MAX_ERRORS].to_string(),
            "...: 2985 more bad settings, not listed; using the earlier values"
        );
    }

    #[test]
    fn an_oversized_source_is_cut_at_a_line_and_said() {
        let mut board = "overlay.debug\n"
            .repeat(cmdline::MAX_TEXT / 14 + 10)
            .into_bytes();
        board.extend_from_slice(b"overlay.data=tmpfs\n");
        let (c, e) = Config::from_bytes(Some(&board), b"");
        assert!(c.debug);
        assert_eq!(
            c.data,
            DataSource::Named(DEFAULT_DATA_NAME.into()),
            "past the limit: ignored"
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, "the board file");
        let kept = cmdline::MAX_TEXT / 14 * 14;
        assert_eq!(e[0].kept, format!("its first {kept} bytes"));
        let line = vec![b'x'; cmdline::MAX_TEXT + 1];
        assert_eq!(
            Config::from_bytes(None, &line).1[0].key,
            "the kernel command line"
        );
    }

    #[test]
    fn lists_are_bounded() {
        let mods = vec!["m"; MAX_ITEMS + 1].join(",");
        let (c, e) = cfg(&format!("overlay.modules=a overlay.modules={mods}"));
        assert_eq!(c.modules, ["a"]);
        assert_eq!(e[0].problem, format!("more than {MAX_ITEMS} modules"));
        let lowers = vec!["/dev/x"; MAX_ITEMS + 1].join(",");
        let (c, e) = cfg(&format!("overlay.lower={lowers}"));
        assert!(c.lowers.is_empty());
        assert_eq!(e[0].problem, format!("more than {MAX_ITEMS} layers"));
        let fs: String = (0..MAX_FS_TYPES + 5)
            .map(|i| format!("overlay.modules.fs{i}=m "))
            .collect();
        let (c, e) = cfg(&fs);
        assert_eq!(c.fs_modules.len(), MAX_FS_TYPES);
        assert_eq!(e.len(), 5);
        // The same key again replaces, within the bound.
        let (c, e) = cfg(&"overlay.modules.ext4=a ".repeat(1000));
        assert_eq!((c.fs_modules.len(), e.len()), (1, 0));
    }

    #[test]
    fn the_words_after_a_double_dash_are_inits() {
        let (c, e) = cfg("overlay.debug -- overlay.data=tmpfs overlay.bogus");
        assert!(c.debug);
        assert_eq!(c.data, DataSource::Named(DEFAULT_DATA_NAME.into()));
        assert!(e.is_empty());
    }

    #[test]
    fn panic_delay() {
        assert_eq!(cfg("panic=-1").0.fatal_delay, Duration::ZERO);
        assert_eq!(cfg("panic=3").0.fatal_delay, Duration::from_secs(3));
        assert_eq!(cfg("panic=0").0.fatal_delay, DEFAULT_FATAL_DELAY);
    }
}
