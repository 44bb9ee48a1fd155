//! What this module adds to `/run/overlay-init/state` (`key=value` lines,
//! unknown keys ignored by older readers), and what `overlay-status` shows
//! of it:
//!
//! ```text
//! failsafe=WHY                  a failsafe boot, and why (absent otherwise)
//! failsafe_data=SOURCE FSTYPE   in a failsafe boot: the data filesystem,
//!                               mounted read-only at /overlay (absent: it
//!                               did not mount)
//! boot_attempts=N               boot counting on, failsafe after N (absent: off)
//! boot_count=K                  the count this boot left (after counting itself)
//! watchdog=TEXT                 the watchdog and how it was handed over
//! ```

use super::bootcount::CountState;
use std::fmt::Write as _;

/// The recovery lines of a boot's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryState {
    /// Why this boot is failsafe.
    pub failsafe: Option<String>,
    /// (mount source, fstype) of the data filesystem mounted read-only at
    /// /overlay in a failsafe boot.
    pub failsafe_data: Option<(String, String)>,
    /// `overlay.boot_attempts`; 0: off.
    pub boot_attempts: u32,
    /// The count this boot left on the flash.
    pub boot_count: Option<u32>,
    /// The watchdog's hand-over, as logged.
    pub watchdog: Option<String>,
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl RecoveryState {
    pub const KEYS: [&'static str; 5] = [
        "failsafe",
        "failsafe_data",
        "boot_attempts",
        "boot_count",
        "watchdog",
    ];

    pub fn owns(key: &str) -> bool {
        Self::KEYS.contains(&key)
    }

    /// Appends this state's lines (none for a default state).
    pub fn render_into(&self, s: &mut String) {
        if let Some(r) = &self.failsafe {
            let _ = writeln!(s, "failsafe={}", one_line(r));
        }
        if let Some((src, fs)) = &self.failsafe_data {
            let _ = writeln!(
                s,
                "failsafe_data={} {}",
                one_line(src).replace(' ', "_"),
                one_line(fs)
            );
        }
        if self.boot_attempts > 0 {
            let _ = writeln!(s, "boot_attempts={}", self.boot_attempts);
        }
        if let Some(c) = self.boot_count {
            let _ = writeln!(s, "boot_count={c}");
        }
        if let Some(w) = &self.watchdog {
            let _ = writeln!(s, "watchdog={}", one_line(w));
        }
    }

    /// Applies one `key=value` line (ours; others are ignored). A value that
    /// does not parse is ignored too: the state is informational.
    pub fn parse_line(&mut self, key: &str, v: &str) {
        match key {
            "failsafe" => self.failsafe = Some(v.into()),
            "failsafe_data" => {
                if let Some((src, fs)) = v.split_once(' ') {
                    self.failsafe_data = Some((src.into(), fs.into()));
                }
            }
            "boot_attempts" => self.boot_attempts = v.parse().unwrap_or(0),
            "boot_count" => self.boot_count = v.parse().ok(),
            "watchdog" => self.watchdog = Some(v.into()),
            _ => {}
        }
    }

    /// The recovery lines of a whole state file.
    pub fn parse(text: &str) -> RecoveryState {
        let mut st = RecoveryState::default();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                st.parse_line(k, v);
            }
        }
        st
    }

    /// What `overlay-status` shows of a state file: these lines, with the
    /// record as it reads now at /overlay when boot counting is on.
    pub fn for_status(text: &str) -> StatusView {
        let st = RecoveryState::parse(text);
        let live = (st.boot_attempts > 0)
            .then(|| super::bootcount::read(std::path::Path::new(crate::paths::OVERLAY)).ok())
            .flatten();
        let boot_id = if st.boot_attempts > 0 {
            crate::wear::read_boot_id(&crate::paths::SysRoot::host()).unwrap_or(0)
        } else {
            0
        };
        StatusView { st, live, boot_id }
    }

    /// `overlay-status`'s lines (a failsafe boot's first). `live`: the
    /// record as it reads now on the data filesystem (None: not readable
    /// here); `boot_id`: this boot's.
    pub fn status_text(&self, live: Option<&CountState>, boot_id: u64) -> String {
        let mut s = String::new();
        if let Some(r) = &self.failsafe {
            let _ = writeln!(s, "failsafe:   YES: {r}");
            let _ = match &self.failsafe_data {
                Some((src, _)) => writeln!(
                    s,
                    "            your data ({src}) is read-only at /overlay; your files: /overlay/upper"
                ),
                None => writeln!(s, "            your data filesystem did not mount"),
            };
        }
        if self.boot_attempts > 0 {
            s.push_str("boot count: ");
            let _ = match live {
                Some(CountState::Corrupt(e)) => writeln!(s, "record unreadable ({e})"),
                _ => writeln!(
                    s,
                    "{} of {} boots without mark-good{}",
                    live.map_or(self.boot_count.unwrap_or(0), CountState::attempts),
                    self.boot_attempts,
                    match live {
                        Some(c) if c.marked_by(boot_id) => "; this boot is marked good",
                        Some(c) if c.attempts() > 0 => "; this boot is not marked good",
                        Some(_) => "",
                        None => " (at boot)",
                    }
                ),
            };
        }
        if let Some(w) = &self.watchdog {
            let _ = writeln!(s, "watchdog:   {w}");
        }
        s
    }

    /// JSON members (each preceded by a comma) for `overlay-status --json`.
    pub fn json_members(&self, live: Option<&CountState>, boot_id: u64) -> String {
        let js = crate::json::js;
        let mut s = String::new();
        let _ = write!(
            s,
            ",\"failsafe\":{}",
            self.failsafe.as_deref().map_or("null".into(), js)
        );
        if self.boot_attempts > 0 {
            let count = live.map_or(self.boot_count.unwrap_or(0), CountState::attempts);
            let _ = write!(
                s,
                ",\"boot_attempts\":{},\"boot_count\":{count},\"marked_good\":{}",
                self.boot_attempts,
                live.is_some_and(|c| c.marked_by(boot_id))
            );
        }
        s
    }
}

/// [`RecoveryState::for_status`].
pub struct StatusView {
    pub st: RecoveryState,
    pub live: Option<CountState>,
    pub boot_id: u64,
}

impl StatusView {
    /// A failsafe boot: `overlay-status` exits 2 (changes live in RAM).
    pub fn failsafe(&self) -> bool {
        self.st.failsafe.is_some()
    }

    /// The lines to show, before the others ("failsafe: YES" leads).
    pub fn text(&self) -> String {
        self.st.status_text(self.live.as_ref(), self.boot_id)
    }

    pub fn json(&self) -> String {
        self.st.json_members(self.live.as_ref(), self.boot_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::bootcount::{CountCorrupt, CountRecord};

    fn full() -> RecoveryState {
        RecoveryState {
            failsafe: Some("3 boots without\nmark-good".into()),
            failsafe_data: Some(("/dev/vda2".into(), "ext4".into())),
            boot_attempts: 3,
            boot_count: Some(3),
            watchdog: Some("watchdog /dev/watchdog0 (30 s) handed to the init armed".into()),
        }
    }

    #[test]
    fn lines_round_trip_and_default_adds_none() {
        let mut s = String::new();
        RecoveryState::default().render_into(&mut s);
        assert_eq!(s, "");
        full().render_into(&mut s);
        assert_eq!(
            s,
            "failsafe=3 boots without mark-good\nfailsafe_data=/dev/vda2 ext4\nboot_attempts=3\nboot_count=3\nwatchdog=watchdog /dev/watchdog0 (30 s) handed to the init armed\n"
        );
        let back = RecoveryState::parse(&format!("version=1\n{s}complete=1\n"));
        assert_eq!(back.failsafe.as_deref(), Some("3 boots without mark-good"));
        assert_eq!(back.failsafe_data, full().failsafe_data);
        assert_eq!((back.boot_attempts, back.boot_count), (3, Some(3)));
        assert_eq!(back.watchdog, full().watchdog);
        let junk = RecoveryState::parse("boot_attempts=x\nboot_count=-1\nfailsafe_data=nospace\n");
        assert_eq!(junk, RecoveryState::default());
    }

    #[test]
    fn status_says_failsafe_why_and_the_count() {
        let st = full();
        let live = CountState::Ok(CountRecord {
            seq: 4,
            attempts: 3,
            good_boot: 0,
        });
        let t = st.status_text(Some(&live), 42);
        let l: Vec<&str> = t.lines().collect();
        assert_eq!(l[0], "failsafe:   YES: 3 boots without");
        assert!(t.contains("(/dev/vda2) is read-only at /overlay"));
        assert!(
            t.contains(
                "\nboot count: 3 of 3 boots without mark-good; this boot is not marked good\n"
            ),
            "{t}"
        );
        assert!(
            t.ends_with("watchdog:   watchdog /dev/watchdog0 (30 s) handed to the init armed\n")
        );
        let marked = CountState::Ok(CountRecord {
            seq: 5,
            attempts: 0,
            good_boot: 42,
        });
        let t = st.status_text(Some(&marked), 42);
        assert!(
            t.contains("boot count: 0 of 3 boots without mark-good; this boot is marked good\n")
        );
        let t = st.status_text(Some(&CountState::Corrupt(CountCorrupt::Size(1))), 42);
        assert!(
            t.contains("boot count: record unreadable (1 bytes, not 4128)\n"),
            "{t}"
        );
        let t = st.status_text(None, 42);
        assert!(t.contains("boot count: 3 of 3 boots without mark-good (at boot)\n"));
        assert_eq!(RecoveryState::default().status_text(Some(&live), 1), "");
        let j = st.json_members(Some(&marked), 42);
        assert_eq!(
            j,
            r#","failsafe":"3 boots without\u000amark-good","boot_attempts":3,"boot_count":0,"marked_good":true"#
        );
        assert_eq!(
            RecoveryState::default().json_members(None, 1),
            r#","failsafe":null"#
        );
    }

    #[test]
    fn overlay_status_exits_2_in_a_failsafe_boot() {
        let d = crate::testutil::TempDir::new("status-failsafe");
        let mut text = String::from(
            "version=1\npersistent=no\nupper=tmpfs\nupper_size=25%\nupper_reason=failsafe boot\n",
        );
        // A flash upper would exit 0: failsafe wins.
        let flash = d.write(
            "flash",
            "version=1\nupper=flash\nupper_device=/dev/vda2\nupper_fstype=ext4\ncomplete=1\n",
        );
        assert_eq!(
            crate::status::main(&["--state".into(), flash.display().to_string()]),
            0
        );
        full().render_into(&mut text);
        text.push_str("complete=1\n");
        let f = d.write("state", text.replace("upper=tmpfs", "upper=flash"));
        assert_eq!(
            crate::status::main(&["--state".into(), f.display().to_string()]),
            crate::status::EXIT_RAM
        );
        assert_eq!(
            crate::status::main(&["--state".into(), f.display().to_string(), "--json".into()]),
            crate::status::EXIT_RAM
        );
    }
}
