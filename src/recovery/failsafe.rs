//! Whether this boot is a failsafe boot, and what one looks like.
//!
//! A failsafe boot boots the firmware as shipped, without the user's
//! changes (they are what may be broken), and never writes the flash:
//! no factory reset, no upgrade merge, no wear-log write, no boot count,
//! no format, no fsck repair; the root is the lower layers under a tmpfs
//! upper (the user's `upper/` is *not* one of its layers); the user's data
//! filesystem is mounted read-only at `/overlay` where it mounts (so files
//! can be rescued from `/overlay/upper`), and not at all where it does not;
//! the real init gets `FAILSAFE=1` (OpenWrt's procd reads it); a banner says
//! so; `overlay-status` says `failsafe`, why, and exits 2.
//!
//! Entry, in this order (the first that holds decides; nothing after it is
//! read): `overlay.failsafe=1`, the GPIO button (read once, no wait), the
//! console key (only with `overlay.failsafe_wait=MS` above 0), all before
//! any device is touched ([`early`]); then the boot counter, once the data
//! filesystem's records have been read ([`from_count`]).

use super::bootcount::{CountCorrupt, CountState};
use super::console::{self, ConsoleError, KeyReader};
use super::gpio::{GpioError, GpioReader, GpioSpec};
use super::RecoveryConfig;
use std::fmt;

/// Why this boot is a failsafe boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailsafeReason {
    /// `overlay.failsafe=1` on the command line (or in the board file).
    CommandLine,
    /// The button was held at boot.
    Button(GpioSpec),
    /// The key was pressed on the console during the window.
    ConsoleKey,
    /// `attempts` boots (the limit is `limit`) used the flash without a
    /// mark-good.
    BootCount { attempts: u32, limit: u32 },
    /// Boot counting is on and its record cannot be read: not trusted, so
    /// not taken as a success either.
    CounterUnreadable(CountCorrupt),
}

impl fmt::Display for FailsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailsafeReason::CommandLine => f.write_str("overlay.failsafe=1 on the command line"),
            FailsafeReason::Button(g) => write!(f, "the failsafe button ({g}) was held at boot"),
            FailsafeReason::ConsoleKey => write!(
                f,
                "the [{}] key was pressed on the console",
                console::FAILSAFE_KEY as char
            ),
            FailsafeReason::BootCount { attempts, .. } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(f, "{attempts} boot{s} without mark-good")
            }
            FailsafeReason::CounterUnreadable(e) => {
                write!(f, "the boot counter record is unreadable ({e})")
            }
        }
    }
}

/// Something that went wrong while looking for an entry; the boot goes on
/// (not failsafe because of it), with the warning logged and in the state.
#[derive(Debug)]
pub enum EntryWarning {
    Button(GpioSpec, GpioError),
    Console(ConsoleError),
}

impl fmt::Display for EntryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryWarning::Button(g, e) => write!(f, "failsafe button {g}: {e}"),
            EntryWarning::Console(e) => write!(f, "failsafe key: {e}"),
        }
    }
}

/// The entries known before any device is used: the command line, the
/// button, the key window. Each reader is used only when asked for and
/// only if no earlier entry already decided; the key window (the one that
/// costs time) comes last. A key read when the terminal could not be put
/// back still counts.
pub fn early(
    cfg: &RecoveryConfig,
    gpio: &mut dyn GpioReader,
    keys: &mut dyn KeyReader,
) -> (Option<FailsafeReason>, Vec<EntryWarning>) {
    let mut warnings = Vec::new();
    if cfg.failsafe {
        return (Some(FailsafeReason::CommandLine), warnings);
    }
    if let Some(spec) = &cfg.failsafe_gpio {
        match gpio.is_active(spec) {
            Ok(true) => return (Some(FailsafeReason::Button(spec.clone())), warnings),
            Ok(false) => {}
            Err(e) => warnings.push(EntryWarning::Button(spec.clone(), e)),
        }
    }
    if !cfg.failsafe_wait.is_zero() {
        let prompt = console::prompt(cfg.failsafe_wait);
        match keys.wait_key(&prompt, console::FAILSAFE_KEY, cfg.failsafe_wait) {
            Ok(true) => return (Some(FailsafeReason::ConsoleKey), warnings),
            Ok(false) => {}
            Err(e) => warnings.push(EntryWarning::Console(e)),
        }
    }
    (None, warnings)
}

/// The boot counter's entry (pure), from the record read on the data
/// filesystem before anything is written. `limit` is
/// `overlay.boot_attempts` (0: off, never failsafe). `reset_now`: a factory
/// reset runs at this boot (`overlay.reset=1` or a pending request): it
/// removes what may be broken and starts the count again, so it is not
/// held back by the counter (an explicit failsafe still wins over it).
pub fn from_count(limit: u32, count: &CountState, reset_now: bool) -> Option<FailsafeReason> {
    if limit == 0 || reset_now {
        return None;
    }
    match count {
        CountState::Missing => None,
        CountState::Ok(r) if r.attempts >= limit => Some(FailsafeReason::BootCount {
            attempts: r.attempts,
            limit,
        }),
        CountState::Ok(_) => None,
        CountState::Corrupt(e) => Some(FailsafeReason::CounterUnreadable(*e)),
    }
}

/// How the data filesystem is mounted in a failsafe boot (read-only,
/// without journal replay or recovery: nothing reaches the flash), as the
/// wear policy's protect mode does: `(fstype, mount data)`. The mount
/// flags are `MS_RDONLY` (+ `MS_NOATIME`).
pub fn readonly_mount_data(fstype: &str) -> &'static str {
    match fstype {
        "ext4" => "noload",
        "f2fs" => "norecovery",
        // UBIFS mounted read-only writes nothing (verified: the flash image
        // is byte for byte the same); JFFS2 read-only neither erases nor
        // writes clean markers.
        _ => "",
    }
}

/// The console banner of a failsafe boot, one line each (log them at
/// warning level). `data`: the data filesystem's device when it is mounted
/// read-only at /overlay, `None` when it did not mount.
pub fn banner(reason: &FailsafeReason, data: Option<&str>) -> Vec<String> {
    let mut v = vec![
        "*** FAILSAFE BOOT ***".to_string(),
        format!("*** why: {reason}"),
        "*** the firmware runs as shipped, without your changes; nothing is written to the flash"
            .to_string(),
    ];
    v.push(match data {
        Some(dev) => format!(
            "*** your data ({dev}) is read-only at /overlay: your files are in /overlay/upper"
        ),
        None => "*** your data filesystem did not mount: it is not available".to_string(),
    });
    v.push("*** changes made now live in RAM and are lost at reboot".to_string());
    if matches!(
        reason,
        FailsafeReason::BootCount { .. } | FailsafeReason::CounterUnreadable(_)
    ) {
        v.push(
            "*** `overlay-status --mark-good` makes the next boot a normal one again".to_string(),
        );
    }
    v
}

/// The variable the real init gets in a failsafe boot.
pub const FAILSAFE_ENV: &str = "FAILSAFE=1";

/// Adds `FAILSAFE=1` to the init's environment, replacing any `FAILSAFE=`
/// the kernel passed on.
pub fn add_env(envp: &mut Vec<std::ffi::CString>) {
    envp.retain(|e| !e.as_bytes().starts_with(b"FAILSAFE="));
    envp.extend(std::ffi::CString::new(FAILSAFE_ENV).ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::bootcount::{CountRecord, SlotError};
    use crate::recovery::console::FakeConsole;
    use crate::recovery::gpio::FakeGpio;
    use std::time::Duration;

    fn fakes(button: Option<Result<bool, i32>>, key: Option<u8>) -> (FakeGpio, FakeConsole) {
        (
            FakeGpio {
                result: button,
                asked: vec![],
            },
            FakeConsole {
                pressed: key,
                error: false,
                asked: vec![],
            },
        )
    }

    fn cfg(failsafe: bool, gpio: Option<&str>, wait_ms: u64) -> RecoveryConfig {
        RecoveryConfig {
            failsafe,
            failsafe_wait: Duration::from_millis(wait_ms),
            failsafe_gpio: gpio.map(|g| GpioSpec::parse(g).unwrap()),
            ..RecoveryConfig::default()
        }
    }

    #[test]
    fn by_default_nothing_is_read_and_no_time_is_spent() {
        let (mut g, mut k) = fakes(Some(Ok(true)), Some(b'f'));
        let (r, w) = early(&RecoveryConfig::default(), &mut g, &mut k);
        assert_eq!(r, None);
        assert!(w.is_empty());
        assert!(g.asked.is_empty(), "no GPIO read");
        assert!(
            k.asked.is_empty(),
            "no key window: a wait of 0 costs nothing"
        );
    }

    #[test]
    fn the_command_line_decides_before_any_reader() {
        let (mut g, mut k) = fakes(Some(Ok(true)), Some(b'f'));
        let (r, _) = early(&cfg(true, Some("gpiochip0:1"), 2000), &mut g, &mut k);
        assert_eq!(r, Some(FailsafeReason::CommandLine));
        assert!(g.asked.is_empty() && k.asked.is_empty());
    }

    #[test]
    fn a_held_button_skips_the_key_window() {
        let (mut g, mut k) = fakes(Some(Ok(true)), None);
        let (r, _) = early(
            &cfg(false, Some("gpiochip0:4:active-low"), 2000),
            &mut g,
            &mut k,
        );
        let spec = GpioSpec::parse("gpiochip0:4:active-low").unwrap();
        assert_eq!(r, Some(FailsafeReason::Button(spec.clone())));
        assert_eq!(g.asked, vec![spec]);
        assert!(k.asked.is_empty());
        assert_eq!(
            r.unwrap().to_string(),
            "the failsafe button (gpiochip0:4:active-low) was held at boot"
        );
    }

    #[test]
    fn the_key_window_prompts_and_waits_as_configured() {
        let (mut g, mut k) = fakes(Some(Ok(false)), Some(b'F'));
        let (r, w) = early(&cfg(false, Some("gpiochip0:4"), 1500), &mut g, &mut k);
        assert_eq!(r, Some(FailsafeReason::ConsoleKey));
        assert!(w.is_empty());
        assert_eq!(k.asked.len(), 1);
        assert_eq!(k.asked[0].1, Duration::from_millis(1500));
        assert!(
            k.asked[0].0.contains("press [f] within 1500 ms"),
            "{}",
            k.asked[0].0
        );
        let (mut g, mut k) = fakes(None, Some(b'x'));
        let (r, _) = early(&cfg(false, None, 100), &mut g, &mut k);
        assert_eq!(r, None, "another key is no failsafe");
    }

    #[test]
    fn a_broken_reader_is_a_warning_not_a_failsafe_nor_a_stop() {
        let (mut g, mut k) = fakes(Some(Err(nix::libc::EBUSY)), None);
        k.error = true;
        let (r, w) = early(&cfg(false, Some("gpiochip3:9"), 500), &mut g, &mut k);
        assert_eq!(r, None);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].to_string()
                .starts_with("failsafe button gpiochip3:9: cannot request the line"),
            "{}",
            w[0]
        );
        assert_eq!(w[1].to_string(), "failsafe key: the console hung up");
    }

    #[test]
    fn the_counter_decides_after_n_attempts() {
        let ok = |attempts| {
            CountState::Ok(CountRecord {
                seq: 9,
                attempts,
                good_boot: 0,
            })
        };
        assert_eq!(from_count(3, &ok(2), false), None);
        assert_eq!(
            from_count(3, &ok(3), false),
            Some(FailsafeReason::BootCount {
                attempts: 3,
                limit: 3
            })
        );
        assert_eq!(
            from_count(3, &ok(3), false).unwrap().to_string(),
            "3 boots without mark-good"
        );
        assert_eq!(
            from_count(3, &ok(7), false).map(|r| r.to_string()).unwrap(),
            "7 boots without mark-good"
        );
        assert_eq!(
            from_count(1, &ok(1), false).unwrap().to_string(),
            "1 boot without mark-good"
        );
        assert_eq!(from_count(0, &ok(99), false), None, "off by default");
        assert_eq!(
            from_count(3, &ok(3), true),
            None,
            "a reset at this boot starts afresh"
        );
        assert_eq!(from_count(3, &CountState::Missing, false), None);
        let corrupt =
            CountState::Corrupt(CountCorrupt::NoRecord(SlotError::Magic, SlotError::Empty));
        assert!(matches!(
            from_count(3, &corrupt, false),
            Some(FailsafeReason::CounterUnreadable(_))
        ));
        assert_eq!(from_count(0, &corrupt, false), None);
    }

    #[test]
    fn the_shape_of_a_failsafe_boot() {
        assert_eq!(readonly_mount_data("ext4"), "noload");
        assert_eq!(readonly_mount_data("f2fs"), "norecovery");
        assert_eq!(readonly_mount_data("ubifs"), "");
        let b = banner(&FailsafeReason::CommandLine, Some("/dev/vda2"));
        assert_eq!(b[0], "*** FAILSAFE BOOT ***");
        assert_eq!(b[1], "*** why: overlay.failsafe=1 on the command line");
        assert!(b
            .iter()
            .any(|l| l.contains("read-only at /overlay: your files are in /overlay/upper")));
        assert!(!b.iter().any(|l| l.contains("--mark-good")));
        let b = banner(
            &FailsafeReason::BootCount {
                attempts: 3,
                limit: 3,
            },
            None,
        );
        assert!(b.iter().any(|l| l.contains("did not mount")));
        assert!(b.iter().any(|l| l.contains("--mark-good")));
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let mut env = vec![c("HOME=/"), c("FAILSAFE=0"), c("TERM=linux")];
        add_env(&mut env);
        assert_eq!(env, [c("HOME=/"), c("TERM=linux"), c("FAILSAFE=1")]);
    }
}
