//! The boot record left in `/run/overlay-init/state` for `overlay-status` and
//! for applications that need to know whether their changes persist.
//!
//! Format: one `key=value` per line, values on one line, unknown keys ignored
//! (so later versions can add keys). Shell-readable with `grep`/`cut`:
//! ```text
//! version=1
//! persistent=yes|no
//! upper=flash|tmpfs|none
//! upper_device=/dev/vda2
//! upper_fstype=ext4
//! upper_reason=why the upper is tmpfs (empty when asked for)
//! data_sysfs=vda2|mtd2|ubi0          (the data device, as sysfs names it)
//! lower=DEVICE FSTYPE MOUNTPOINT      (repeated, highest precedence first)
//! stage=NAME MICROSECONDS             (repeated, in order)
//! complete=1                          (last line: a cut-short file is refused)
//! ```

use std::fmt::Write as _;
use std::time::Duration;

/// A duration shown in milliseconds with one decimal ("12.3"), in integer
/// arithmetic: float formatting would add ~10 KiB to the binary.
pub struct Millis(pub Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // u64, not the u128 of as_micros(): 128-bit division is ~3 KiB on ARM.
        let us = self.0.as_secs().saturating_mul(1_000_000) + u64::from(self.0.subsec_micros());
        let tenths = us.saturating_add(50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// `Duration::as_micros()` as text, without the u128 (whose formatting and
/// arithmetic cost ~1 KiB on 32-bit ARM): the seconds, then the
/// microseconds on six digits. The same digits for every duration.
pub struct Micros(pub Duration);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, us) = (self.0.as_secs(), self.0.subsec_micros());
        if s == 0 {
            write!(f, "{us}")
        } else {
            write!(f, "{s}{us:06}")
        }
    }
}

/// `Duration::as_millis()` as text, as [`Micros`] does it.
pub struct WholeMillis(pub Duration);

impl std::fmt::Display for WholeMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, ms) = (self.0.as_secs(), self.0.subsec_millis());
        if s == 0 {
            write!(f, "{ms}")
        } else {
            write!(f, "{s}{ms:03}")
        }
    }
}

/// One read-only layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub device: String,
    pub fstype: String,
    pub mountpoint: String,
}

/// What the writable layer ended up being.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upper {
    Flash {
        device: String,
        fstype: String,
    },
    /// `reason` is `None` when tmpfs was asked for, `Some` when it is a fallback.
    Tmpfs {
        reason: Option<String>,
        size: String,
    },
    /// No overlay: the lower root alone, read-only.
    None {
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootState {
    pub mode: String,
    pub init: String,
    pub lowers: Vec<Layer>,
    pub upper: Upper,
    /// Things that went wrong but did not change the outcome.
    pub warnings: Vec<String>,
    /// The flash wear level and what the boot did about it (issue 4).
    pub wear: Option<String>,
    /// The wear settings in effect, in `overlay.wear=` syntax, for
    /// `overlay-status --wear` and the monitor (the board file stays in the
    /// initramfs).
    pub wear_config: Option<String>,
    pub stages: Vec<(String, Duration)>,
    /// CLOCK_BOOTTIME when the pre-init started: the kernel's own boot time.
    pub started_at: Duration,
    /// What a factory reset did at this boot.
    pub reset: Option<String>,
    /// The data device's name as sysfs and its wear sources know it (`vda2`,
    /// `mtd2`, `ubi0`): the backend's answer, for overlay-status and the
    /// wear monitor.
    pub data_sysfs: Option<String>,
    /// Failsafe, boot counting, watchdog (recovery/state.rs).
    pub recovery: crate::recovery::state::RecoveryState,
}

pub const VERSION: u32 = 1;
/// The largest state file written or read (warnings and lowers are few;
/// every line is bounded by the logger's own limit).
pub const MAX_STATE: usize = 256 * 1024;

impl Default for BootState {
    fn default() -> Self {
        BootState {
            mode: String::new(),
            init: String::new(),
            lowers: Vec::new(),
            upper: Upper::None { reason: None },
            warnings: Vec::new(),
            stages: Vec::new(),
            started_at: Duration::ZERO,
            reset: None,
            data_sysfs: None,
            recovery: Default::default(),
            wear: None,
            wear_config: None,
        }
    }
}

/// A state file that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum StateError {
    /// `version=` missing or not one we read.
    Version(Option<String>),
    /// A line without `=`, or a value that does not parse.
    Line(usize),
    /// No `complete=1` line: the file was cut short.
    Incomplete,
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Version(None) => write!(f, "no version line"),
            StateError::Version(Some(v)) => write!(f, "unknown version {v}"),
            StateError::Line(n) => write!(f, "malformed line {n}"),
            StateError::Incomplete => write!(f, "cut short (no complete=1 line)"),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl BootState {
    pub fn persistent(&self) -> bool {
        matches!(self.upper, Upper::Flash { .. })
    }

    /// The flash upper's device name as sysfs names it (`vda2`, `mtd2`,
    /// `ubi0`: the backend's answer, `data_sysfs`; a state written before it
    /// existed gives the device's last component): what the wear sources are
    /// keyed by. `None` when the upper is not on flash.
    pub fn data_dev(&self) -> Option<&str> {
        match &self.upper {
            Upper::Flash { device, .. } => self
                .data_sysfs
                .as_deref()
                .or_else(|| device.rsplit('/').next()),
            _ => None,
        }
    }

    pub fn total(&self) -> Duration {
        self.stages.iter().map(|(_, d)| *d).sum()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "version={VERSION}");
        let _ = writeln!(
            s,
            "persistent={}",
            if self.persistent() { "yes" } else { "no" }
        );
        let _ = writeln!(s, "mode={}", one_line(&self.mode));
        let _ = writeln!(s, "init={}", one_line(&self.init));
        match &self.upper {
            Upper::Flash { device, fstype } => {
                let _ = writeln!(
                    s,
                    "upper=flash\nupper_device={}\nupper_fstype={}",
                    one_line(device),
                    one_line(fstype)
                );
            }
            Upper::Tmpfs { reason, size } => {
                let _ = writeln!(s, "upper=tmpfs\nupper_size={}", one_line(size));
                let _ = writeln!(
                    s,
                    "upper_reason={}",
                    one_line(reason.as_deref().unwrap_or(""))
                );
            }
            Upper::None { reason } => {
                let _ = writeln!(
                    s,
                    "upper=none\nupper_reason={}",
                    one_line(reason.as_deref().unwrap_or(""))
                );
            }
        }
        for l in &self.lowers {
            let _ = writeln!(
                s,
                "lower={} {} {}",
                one_line(&l.device),
                one_line(&l.fstype),
                one_line(&l.mountpoint)
            );
        }
        if let Some(d) = &self.data_sysfs {
            let _ = writeln!(s, "data_sysfs={}", one_line(d));
        }
        if let Some(r) = &self.reset {
            let _ = writeln!(s, "reset={}", one_line(r));
        }
        if let Some(w) = &self.wear {
            let _ = writeln!(s, "wear={}", one_line(w));
        }
        if let Some(w) = &self.wear_config {
            let _ = writeln!(s, "wear_config={}", one_line(w));
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning={}", one_line(w));
        }
        let _ = writeln!(s, "started_at_us={}", Micros(self.started_at));
        for (name, d) in &self.stages {
            let _ = writeln!(
                s,
                "stage={} {}",
                one_line(name).replace(' ', "_"),
                Micros(*d)
            );
        }
        self.recovery.render_into(&mut s);
        s.push_str("complete=1\n");
        s
    }

    pub fn parse(text: &str) -> Result<BootState, StateError> {
        let mut st = BootState::default();
        let mut version = None;
        let mut complete = false;
        let (mut upper, mut device, mut fstype, mut reason, mut size) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(StateError::Line(i + 1))?;
            let us = |x: &str| {
                x.parse::<u64>()
                    .map(Duration::from_micros)
                    .map_err(|_| StateError::Line(i + 1))
            };
            match k {
                "version" => version = Some(v.to_string()),
                "complete" => complete = v == "1",
                "mode" => st.mode = v.into(),
                "init" => st.init = v.into(),
                "upper" => upper = v.into(),
                "upper_device" => device = v.into(),
                "upper_fstype" => fstype = v.into(),
                "upper_reason" => reason = v.into(),
                "upper_size" => size = v.into(),
                "warning" => st.warnings.push(v.into()),
                "reset" => st.reset = Some(v.into()),
                "data_sysfs" => st.data_sysfs = Some(v.into()),
                k if crate::recovery::state::RecoveryState::owns(k) => st.recovery.parse_line(k, v),
                "wear" => st.wear = Some(v.into()),
                "wear_config" => st.wear_config = Some(v.into()),
                "started_at_us" => st.started_at = us(v)?,
                "lower" => {
                    let mut f = v.splitn(3, ' ');
                    let (Some(d), Some(t), Some(m)) = (f.next(), f.next(), f.next()) else {
                        return Err(StateError::Line(i + 1));
                    };
                    st.lowers.push(Layer {
                        device: d.into(),
                        fstype: t.into(),
                        mountpoint: m.into(),
                    });
                }
                "stage" => {
                    let (name, t) = v.split_once(' ').ok_or(StateError::Line(i + 1))?;
                    st.stages.push((name.into(), us(t)?));
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("1") {
            return Err(StateError::Version(version));
        }
        if !complete {
            return Err(StateError::Incomplete);
        }
        let reason = (!reason.is_empty()).then_some(reason);
        st.upper = match upper.as_str() {
            "flash" => Upper::Flash { device, fstype },
            "tmpfs" => Upper::Tmpfs { reason, size },
            _ => Upper::None { reason },
        };
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_and_millis_print_as_the_u128_does() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999),
            Duration::from_micros(1),
            Duration::from_micros(999_999),
            Duration::from_micros(1_000_000),
            Duration::from_micros(1_000_001),
            Duration::from_millis(1_234_567),
            Duration::new(u64::MAX, 999_999_999),
            Duration::new(18_446_744_073_709, 551_616_000),
        ] {
            assert_eq!(Micros(d).to_string(), d.as_micros().to_string());
            assert_eq!(WholeMillis(d).to_string(), d.as_millis().to_string());
        }
    }

    #[test]
    fn millis_one_decimal_rounded() {
        let m = |us| Millis(Duration::from_micros(us)).to_string();
        assert_eq!(m(0), "0.0");
        assert_eq!(m(1_234), "1.2");
        assert_eq!(m(1_250), "1.3");
        assert_eq!(m(99_960), "100.0");
        assert_eq!(m(612_049), "612.0");
    }

    fn sample() -> BootState {
        BootState {
            mode: "switch_root".into(),
            init: "/sbin/init".into(),
            data_sysfs: Some("vda2".into()),
            recovery: Default::default(),
            lowers: vec![
                Layer {
                    device: "/dev/vda3".into(),
                    fstype: "squashfs".into(),
                    mountpoint: "/run/overlay-init/lower/0".into(),
                },
                Layer {
                    device: "/dev/vda1".into(),
                    fstype: "squashfs".into(),
                    mountpoint: "/rom".into(),
                },
            ],
            upper: Upper::Tmpfs {
                reason: Some("no partition\nnamed x".into()),
                size: "25%".into(),
            },
            warnings: vec!["module f2fs: not found".into()],
            stages: vec![
                ("mounts".into(), Duration::from_micros(1500)),
                ("modules".into(), Duration::from_micros(90_000)),
            ],
            started_at: Duration::from_millis(700),
            reset: Some("reset #1 done".into()),
            wear: Some("flash wear ok (device level ok)".into()),
            wear_config: Some("warn:80,critical:95,pe_cycles:3000".into()),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let back = BootState::parse(&s.render()).unwrap();
        assert_eq!(
            back.upper,
            Upper::Tmpfs {
                reason: Some("no partition named x".into()),
                size: "25%".into()
            }
        );
        assert_eq!(back.lowers, s.lowers);
        assert_eq!(back.stages, s.stages);
        assert_eq!(back.total(), Duration::from_micros(91_500));
        assert!(!back.persistent());
        let flash = BootState {
            upper: Upper::Flash {
                device: "/dev/vda2".into(),
                fstype: "ext4".into(),
            },
            ..s
        };
        let back = BootState::parse(&flash.render()).unwrap();
        assert!(back.persistent());
        assert!(flash.render().contains("persistent=yes\n"));
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(
            BootState::parse("upper=flash\n"),
            Err(StateError::Version(None))
        );
        assert_eq!(
            BootState::parse("version=9\n"),
            Err(StateError::Version(Some("9".into())))
        );
        assert_eq!(
            BootState::parse("version=1\nupper=flash\n"),
            Err(StateError::Incomplete)
        );
        assert_eq!(
            BootState::parse("version=1\ngarbage\n"),
            Err(StateError::Line(2))
        );
        assert_eq!(
            BootState::parse("version=1\nstage=x notanumber\n"),
            Err(StateError::Line(2))
        );
        assert_eq!(
            BootState::parse("version=1\nlower=onlyone\n"),
            Err(StateError::Line(2))
        );
        let truncated = &sample().render()[..30];
        assert!(BootState::parse(truncated).is_err());
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let s = BootState::parse("version=1\nfuture_key=1\nupper=none\ncomplete=1\n").unwrap();
        assert_eq!(s.upper, Upper::None { reason: None });
    }
}
