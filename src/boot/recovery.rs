//! Recovery at boot (issue 13): the failsafe entries read before any device
//! is used, the watchdog opened after the modules, and what a failsafe
//! boot and the watchdog leave for the real init.

use super::Boot;
use crate::recovery::console::Console;
use crate::recovery::gpio::LinuxGpio;
use crate::recovery::{failsafe, watchdog, WatchdogChoice};

impl Boot<'_> {
    /// Opens (or finds running) the watchdog and makes it this process's
    /// feeder; loads `overlay.modules.watchdog=` first when one is asked for.
    pub fn open_watchdog(&mut self) {
        if self.cfg.recovery.watchdog == WatchdogChoice::Off {
            return;
        }
        if matches!(self.cfg.recovery.watchdog, WatchdogChoice::Device(_)) {
            self.ensure_modules("watchdog");
        }
        match watchdog::open(&self.cfg.recovery.watchdog, &self.root) {
            Ok(Some(dog)) => {
                let f = watchdog::Feeder::new(Box::new(dog), watchdog::monotonic);
                if let Some((dev, every)) = f.describe() {
                    crate::detail!(
                        "watchdog {dev}: fed every {} ms while the pre-init runs",
                        crate::state::WholeMillis(every)
                    );
                }
                watchdog::install(f);
            }
            Ok(None) => {}
            Err(e) => self.warn(e.to_string()),
        }
    }

    /// `overlay.failsafe=1`, the button, the console key: before any
    /// device of the data is used.
    pub(super) fn failsafe_entry(&mut self) {
        let t0 = self.sys.now();
        let (why, warnings) =
            failsafe::early(&self.cfg.recovery, &mut LinuxGpio, &mut Console::stdio());
        // What the entry cost this boot (0 µs at the defaults: nothing is
        // read; README "Failsafe").
        crate::debug!(
            "failsafe entry checked in {} µs",
            crate::state::Micros(self.sys.now().saturating_sub(t0))
        );
        for w in warnings {
            self.warn(w.to_string());
        }
        self.failsafe = why;
    }

    /// Whether this boot is a failsafe one (asked for, or by the boot
    /// counter).
    pub fn is_failsafe(&self) -> bool {
        self.state.recovery.failsafe.is_some()
    }

    /// The failsafe banner, and the watchdog's hand-over (closed without
    /// the magic character: the real init gets it armed). Last thing
    /// before the state is written.
    pub fn finish_recovery(&mut self) {
        // A failsafe boot with its data at /overlay does not count itself,
        // yet overlay-status shows the count it found there (and
        // `--mark-good` works from it): boot counting is on.
        if self.state.recovery.failsafe_data.is_some() {
            self.state.recovery.boot_attempts = self.cfg.recovery.boot_attempts;
        }
        if let (Some(why), true) = (&self.failsafe, self.is_failsafe()) {
            let data = self
                .state
                .recovery
                .failsafe_data
                .as_ref()
                .map(|d| d.0.clone());
            crate::warn!("{}", "*".repeat(72));
            for line in failsafe::banner(why, data.as_deref()) {
                crate::warn!("{line}");
            }
            crate::warn!("{}", "*".repeat(72));
        }
        if let Some(h) = watchdog::take().and_then(|f| f.hand_over(&self.root)) {
            let text = h.to_string();
            if h.armed() {
                crate::info!("{text}");
            } else {
                crate::warn!("{text}");
            }
            self.state.recovery.watchdog = Some(text);
        }
    }
}
