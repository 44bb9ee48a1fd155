//! Recovery (issue 13): the failsafe boot, boot counting, the hardware
//! watchdog. Each is a decision taken before the first write to the flash,
//! or a promise kept while the pre-init runs.
//!
//! - [`failsafe`]: whether this boot is a failsafe boot and why
//!   ([`failsafe::FailsafeReason`]): `overlay.failsafe=1`, a GPIO button
//!   ([`gpio`]), a key on the console within `overlay.failsafe_wait=MS`
//!   ([`console`]), or the boot counter; and what a failsafe boot looks like
//!   (banner, state lines, `FAILSAFE=1` for the init).
//! - [`bootcount`]: the `.boot/count` record on the data filesystem (two
//!   slots, CRC-checked), counted by each boot that uses the flash
//!   read-write, reset by `overlay-status --mark-good`.
//! - [`watchdog`]: arming (or finding) the hardware watchdog, the
//!   [`watchdog::Feeder`] the long operations call, a child wait that feeds,
//!   and the hand-over to the real init, still armed.
//!
//! The settings are [`RecoveryConfig`], one field of the boot's `Config`.
//! Everything that touches a device goes through a small trait of its own
//! (GPIO, console, watchdog) with a real implementation and a fake.

pub mod bootcount;
pub mod console;
pub mod failsafe;
pub mod gpio;
pub mod mark;
pub mod state;
pub mod watchdog;

#[cfg(feature = "test-hooks")]
pub mod selftest;

use std::fmt;
use std::time::Duration;

/// The longest key window `overlay.failsafe_wait=` accepts, in ms.
pub const MAX_FAILSAFE_WAIT_MS: u64 = 30_000;
/// The most boots `overlay.boot_attempts=` can count to.
pub const MAX_BOOT_ATTEMPTS: u32 = 1000;
/// The longest watchdog timeout `overlay.watchdog=DEV:S` accepts, in s.
pub const MAX_WATCHDOG_TIMEOUT: u32 = 3600;

/// Which watchdog the pre-init feeds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum WatchdogChoice {
    /// No `overlay.watchdog=`: one already running (sysfs `state` reads
    /// `active`, armed by the bootloader) is found and fed; none is armed.
    #[default]
    Auto,
    /// `overlay.watchdog=off`: never touch a watchdog, even a running one.
    Off,
    /// `overlay.watchdog=DEV[:TIMEOUT_S]`: arm this one.
    Device(watchdog::WatchdogSpec),
}

/// The settings of this module, from the board file and the command line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecoveryConfig {
    /// `overlay.failsafe=1`.
    pub failsafe: bool,
    /// `overlay.failsafe_wait=MS`: how long the console is watched for the
    /// failsafe key. Zero (the default) reads nothing and costs nothing.
    pub failsafe_wait: Duration,
    /// `overlay.failsafe_gpio=CHIP:LINE[:active-low]`.
    pub failsafe_gpio: Option<gpio::GpioSpec>,
    /// `overlay.boot_attempts=N`: boots without mark-good before a failsafe
    /// boot; 0 (the default) is off and writes nothing.
    pub boot_attempts: u32,
    /// `overlay.watchdog=`.
    pub watchdog: WatchdogChoice,
}

/// A value of one of our keys that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    NeedsValue,
    NotYesNo,
    /// Not a whole number (or not one in range): the bounds.
    Number {
        min: u64,
        max: u64,
    },
    /// A device name: what is wrong with it.
    Device(&'static str),
    /// `CHIP:LINE[:active-low]` malformed: what is wrong.
    Gpio(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NeedsValue => f.write_str("needs a value"),
            ParseError::NotYesNo => f.write_str("not a yes/no value"),
            ParseError::Number { min, max } => write!(f, "not a number from {min} to {max}"),
            ParseError::Device(why) => write!(f, "not a device: {why}"),
            ParseError::Gpio(why) => write!(f, "{why} (use CHIP:LINE or CHIP:LINE:active-low)"),
        }
    }
}

impl RecoveryConfig {
    /// The keys this module reads.
    pub const KEYS: [&'static str; 5] = [
        "overlay.failsafe",
        "overlay.failsafe_wait",
        "overlay.failsafe_gpio",
        "overlay.boot_attempts",
        "overlay.watchdog",
    ];

    /// Whether `key` is one of ours.
    pub fn owns(key: &str) -> bool {
        Self::KEYS.contains(&key)
    }

    /// Applies `key=value`; on error nothing changes (the previous value
    /// stays, as for every key). Keys that are not ours are ignored.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), ParseError> {
        let v = value.map(str::trim);
        match key {
            "overlay.failsafe" => self.failsafe = parse_flag(v)?,
            "overlay.failsafe_wait" => {
                self.failsafe_wait =
                    Duration::from_millis(parse_number(v, 0, MAX_FAILSAFE_WAIT_MS)?)
            }
            "overlay.failsafe_gpio" => {
                self.failsafe_gpio = match word(v)? {
                    "off" | "none" => None,
                    s => Some(gpio::GpioSpec::parse(s)?),
                }
            }
            "overlay.boot_attempts" => {
                // Bounded by MAX_BOOT_ATTEMPTS, so it fits.
                self.boot_attempts = parse_number(v, 0, u64::from(MAX_BOOT_ATTEMPTS))? as u32
            }
            "overlay.watchdog" => {
                self.watchdog = match word(v)? {
                    "off" | "none" => WatchdogChoice::Off,
                    "auto" => WatchdogChoice::Auto,
                    s => WatchdogChoice::Device(watchdog::WatchdogSpec::parse(s)?),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The value in effect for `key`, for the "using ..." of a refused value.
    pub fn current(&self, key: &str) -> String {
        match key {
            "overlay.failsafe" => (if self.failsafe { "1" } else { "0" }).into(),
            "overlay.failsafe_wait" => {
                format!("{} ms", crate::state::WholeMillis(self.failsafe_wait))
            }
            "overlay.failsafe_gpio" => self
                .failsafe_gpio
                .as_ref()
                .map_or("no button".into(), |g| g.to_string()),
            "overlay.boot_attempts" => match self.boot_attempts {
                0 => "off".into(),
                n => n.to_string(),
            },
            "overlay.watchdog" => match &self.watchdog {
                WatchdogChoice::Auto => "auto (a running watchdog only)".into(),
                WatchdogChoice::Off => "off".into(),
                WatchdogChoice::Device(s) => s.to_string(),
            },
            _ => String::new(),
        }
    }
}

fn word(v: Option<&str>) -> Result<&str, ParseError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ParseError::NeedsValue),
    }
}

fn parse_flag(v: Option<&str>) -> Result<bool, ParseError> {
    match v {
        None | Some("1" | "y" | "yes" | "on" | "true") => Ok(true),
        Some("0" | "n" | "no" | "off" | "false") => Ok(false),
        Some(_) => Err(ParseError::NotYesNo),
    }
}

/// A decimal number in `min..=max` (at most 10 digits: no overflow).
fn parse_number(v: Option<&str>, min: u64, max: u64) -> Result<u64, ParseError> {
    let s = word(v)?;
    let bad = ParseError::Number { min, max };
    if s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad),
    }
}

/// A device node named on the command line: `/dev/NAME` or a bare `NAME`
/// (taken as `/dev/NAME`); one path component of `[A-Za-z0-9_.-]`, not `.`
/// or `..`. Returns the absolute path.
fn parse_dev_node(s: &str) -> Result<String, ParseError> {
    let name = s.strip_prefix("/dev/").unwrap_or(s);
    if name.is_empty() {
        return Err(ParseError::Device("empty name"));
    }
    if name.len() > 64 {
        return Err(ParseError::Device("name longer than 64 bytes"));
    }
    if name == "." || name == ".." {
        return Err(ParseError::Device("not a name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ParseError::Device(
            "a name under /dev of letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(format!("/dev/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(pairs: &[(&str, Option<&str>)]) -> (RecoveryConfig, Vec<ParseError>) {
        let mut c = RecoveryConfig::default();
        let mut errs = Vec::new();
        for (k, v) in pairs {
            if let Err(e) = c.apply(k, *v) {
                errs.push(e);
            }
        }
        (c, errs)
    }

    #[test]
    fn defaults_are_off_and_cost_nothing() {
        let c = RecoveryConfig::default();
        assert!(!c.failsafe);
        assert_eq!(c.failsafe_wait, Duration::ZERO);
        assert_eq!(c.failsafe_gpio, None);
        assert_eq!(c.boot_attempts, 0);
        assert_eq!(c.watchdog, WatchdogChoice::Auto);
    }

    #[test]
    fn keys_parse() {
        let (c, errs) = applied(&[
            ("overlay.failsafe", None),
            ("overlay.failsafe_wait", Some("2000")),
            ("overlay.failsafe_gpio", Some("gpiochip0:3:active-low")),
            ("overlay.boot_attempts", Some("3")),
            ("overlay.watchdog", Some("/dev/watchdog0:30")),
        ]);
        assert_eq!(errs, vec![]);
        assert!(c.failsafe);
        assert_eq!(c.failsafe_wait, Duration::from_secs(2));
        let g = c.failsafe_gpio.clone().unwrap();
        assert_eq!(
            (g.chip.as_str(), g.line, g.active_low),
            ("/dev/gpiochip0", 3, true)
        );
        assert_eq!(c.boot_attempts, 3);
        assert_eq!(
            c.watchdog,
            WatchdogChoice::Device(watchdog::WatchdogSpec {
                dev: "/dev/watchdog0".into(),
                timeout: Some(30)
            })
        );
        let (c, _) = applied(&[
            ("overlay.failsafe", Some("0")),
            ("overlay.watchdog", Some("off")),
        ]);
        assert!(!c.failsafe);
        assert_eq!(c.watchdog, WatchdogChoice::Off);
    }

    #[test]
    fn bad_values_keep_the_previous_one() {
        let (c, errs) = applied(&[
            ("overlay.boot_attempts", Some("3")),
            ("overlay.boot_attempts", Some("-1")),
            ("overlay.boot_attempts", Some("1001")),
            ("overlay.boot_attempts", Some("99999999999999999999")),
            ("overlay.boot_attempts", Some("")),
            ("overlay.failsafe", Some("maybe")),
            ("overlay.failsafe_wait", Some("30001")),
            ("overlay.failsafe_wait", Some("1e3")),
            ("overlay.watchdog", Some("../etc/passwd")),
            ("overlay.watchdog", Some("watchdog0:0")),
            ("overlay.watchdog", Some("watchdog0:x")),
            ("overlay.failsafe_gpio", Some("gpiochip0")),
            ("overlay.failsafe_gpio", Some("gpiochip0:3:sideways")),
        ]);
        assert_eq!(c.boot_attempts, 3);
        assert!(!c.failsafe);
        assert_eq!(c.failsafe_wait, Duration::ZERO);
        assert_eq!(c.watchdog, WatchdogChoice::Auto);
        assert_eq!(c.failsafe_gpio, None);
        assert_eq!(errs.len(), 12, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "not a number from 0 to 1000",
            "messages name the bounds"
        );
        assert_eq!(c.current("overlay.boot_attempts"), "3");
        assert_eq!(
            c.current("overlay.watchdog"),
            "auto (a running watchdog only)"
        );
    }

    #[test]
    fn hostile_device_names_are_refused() {
        for bad in [
            "",
            "/dev/",
            "..",
            "/dev/..",
            "a/b",
            "/dev/a/b",
            "/etc/watchdog",
            "x\0y",
            "wd\n",
            &"a".repeat(65),
        ] {
            assert!(parse_dev_node(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_dev_node("watchdog").unwrap(), "/dev/watchdog");
        assert_eq!(parse_dev_node("/dev/watchdog1").unwrap(), "/dev/watchdog1");
    }

    #[test]
    fn only_our_keys() {
        assert!(RecoveryConfig::owns("overlay.boot_attempts"));
        assert!(!RecoveryConfig::owns("overlay.reset"));
        let mut c = RecoveryConfig::default();
        assert_eq!(c.apply("overlay.reset", Some("1")), Ok(()));
        assert_eq!(c, RecoveryConfig::default());
    }
}
