//! Test build only (feature `test-hooks`): `overlay-init recovery-selftest
//! ...` runs this module's real device code from a QEMU test script, before
//! the boot's own use of it exists. Facts go to stdout as `T:key=value`
//! lines (tests/qemu/recovery.rs reads them).
//!
//! - `watchdog DEV TIMEOUT_S SECONDS`: arm DEV with the timeout, feed it
//!   through SECONDS of a busy loop and SECONDS of a child wait, then hand
//!   it over (closed without 'V') and exit; the script then stops feeding.
//! - `find`: the watchdog found running (sysfs `state`).
//! - `gpio CHIP:LINE[:active-low]`: the button's state.
//! - `early KEY=VALUE...`: the failsafe entry decision with the real GPIO
//!   and console readers, for the given `overlay.failsafe*` settings.
//! - `count DATA_DIR` / `read DATA_DIR`: count a boot / read the record.
//! - `mark-good STATE_FILE DATA_DIR`: the mark-good of `overlay-status`,
//!   with the data filesystem at DATA_DIR.

use super::watchdog::{self, Feeder, WatchdogDevice};
use crate::paths::SysRoot;
use std::path::Path;
use std::time::Duration;

fn fact(k: &str, v: impl std::fmt::Display) {
    println!("T:{k}={v}");
}

pub fn main(args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["watchdog", dev, timeout, secs] => watchdog_test(dev, timeout, secs),
        ["find"] => {
            fact(
                "found",
                watchdog::find_active(&SysRoot::host()).unwrap_or_else(|| "none".into()),
            );
            0
        }
        ["gpio", spec] => match super::gpio::GpioSpec::parse(spec) {
            Ok(s) => {
                use super::gpio::GpioReader;
                match super::gpio::LinuxGpio.is_active(&s) {
                    Ok(v) => fact("gpio", if v { "active" } else { "inactive" }),
                    Err(e) => fact("gpio", format!("error: {e}")),
                }
                0
            }
            Err(e) => {
                eprintln!("recovery-selftest: {spec}: {e}");
                2
            }
        },
        ["early", settings @ ..] => early(settings),
        ["count", dir] => match super::bootcount::count_boot(Path::new(dir), false) {
            Ok(r) => {
                fact("count", r.attempts);
                0
            }
            Err(e) => {
                fact("count", format!("error: {e}"));
                1
            }
        },
        ["read", dir] => {
            match super::bootcount::read(Path::new(dir)) {
                Ok(s) => fact("read", format!("{s:?}")),
                Err(e) => fact("read", format!("error: {e}")),
            }
            0
        }
        ["mark-good", state, dir] => mark_good(state, dir),
        _ => {
            eprintln!("usage: overlay-init recovery-selftest watchdog DEV TIMEOUT_S SECONDS | find | gpio SPEC | early KEY=VALUE... | count DIR | read DIR | mark-good STATE DIR");
            2
        }
    }
}

fn watchdog_test(dev: &str, timeout: &str, secs: &str) -> i32 {
    let (Ok(timeout), Ok(secs)) = (timeout.parse::<u32>(), secs.parse::<u64>()) else {
        eprintln!("recovery-selftest: watchdog: TIMEOUT_S and SECONDS are numbers");
        return 2;
    };
    let spec = match watchdog::WatchdogSpec::parse(dev) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("recovery-selftest: {dev}: {e}");
            return 2;
        }
    };
    let mut w = match watchdog::LinuxWatchdog::open(Path::new(&spec.dev), &spec.dev, Some(timeout))
    {
        Ok(w) => w,
        Err(e) => {
            fact("wdt_open", format!("error: {e}"));
            return 1;
        }
    };
    let root = SysRoot::host();
    fact("wdt_open", "ok");
    fact("wdt_timeout", w.timeout().map_or(0, |t| t));
    fact("wdt_magic_close", w.magic_close());
    fact(
        "wdt_state_armed",
        watchdog::read_state(&root, &spec.dev).map_or("unknown".into(), |a| a.to_string()),
    );
    let mut f = Feeder::new(Box::new(w), watchdog::monotonic);
    // A long operation that calls feed() often.
    let end = watchdog::monotonic() + Duration::from_secs(secs);
    while watchdog::monotonic() < end {
        f.feed();
        std::thread::sleep(Duration::from_millis(50));
    }
    fact("wdt_busy_gap_ms", f.take_longest_gap().as_millis());
    // A child that runs as long, waited for while feeding.
    // SAFETY: single-threaded; no hook.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            std::thread::sleep(Duration::from_secs(secs));
            // SAFETY: end the child at once, as a failed exec would.
            unsafe { nix::libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
        Err(e) => {
            fact("wdt_child", format!("error: {e}"));
            return 1;
        }
    };
    match watchdog::wait_child(child, &mut f) {
        Ok(st) => fact("wdt_child", st.code().unwrap_or(-1)),
        Err(e) => fact("wdt_child", format!("error: {e}")),
    }
    fact("wdt_child_gap_ms", f.take_longest_gap().as_millis());
    fact("wdt_feeds", f.feeds());
    match f.hand_over(&root) {
        Some(h) => {
            fact("wdt_handover", &h);
            fact("wdt_armed_after", h.armed());
        }
        None => fact("wdt_handover", "none"),
    }
    0
}

fn early(settings: &[&str]) -> i32 {
    let mut cfg = super::RecoveryConfig::default();
    for s in settings {
        let (k, v) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*s, None),
        };
        if let Err(e) = cfg.apply(k, v) {
            eprintln!("recovery-selftest: {s}: {e}");
            return 2;
        }
    }
    let t0 = watchdog::monotonic();
    let (reason, warnings) = super::failsafe::early(
        &cfg,
        &mut super::gpio::LinuxGpio,
        &mut super::console::Console::stdio(),
    );
    let took = watchdog::monotonic().saturating_sub(t0);
    for w in &warnings {
        fact("early_warning", w);
    }
    fact("early_ms", took.as_millis());
    match reason {
        Some(r) => fact("failsafe", r),
        None => fact("failsafe", "no"),
    }
    0
}

fn mark_good(state: &str, dir: &str) -> i32 {
    let text = match std::fs::read_to_string(state) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("recovery-selftest: {state}: {e}");
            return 2;
        }
    };
    let rec = super::state::RecoveryState::parse(&text);
    let data = Path::new(dir);
    let ctx = super::mark::MarkContext {
        readonly: rustix::fs::statvfs(data)
            .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
            .unwrap_or(false),
        failsafe_data: rec.failsafe_data,
        boot_id: crate::wear::read_boot_id(&SysRoot::host()).unwrap_or(0),
    };
    fact("mark_readonly_before", ctx.readonly);
    match super::mark::mark_good(data, &ctx, &mut super::mark::LinuxMounts) {
        Ok(o) => fact("mark", format!("{o:?}")),
        Err(e) => fact("mark", format!("error: {e}")),
    }
    0
}
