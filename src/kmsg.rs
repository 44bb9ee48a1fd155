//! `log::Log` for a pre-init: records go to `/dev/kmsg` (so `dmesg` has them,
//! with timestamps) and to the console.
//!
//! - Before devtmpfs is mounted there is no /dev/kmsg: records wait in a small
//!   fixed ring ([`EARLY_RECORDS`]) and are flushed by [`reinit`] (u-root's
//!   `Reinit`, kata's two-phase logger).
//! - Each record is one `write()` on a freshly opened /dev/kmsg: the kernel
//!   rate-limits writes per open file (`printk.devkmsg`, commit 750afe7babd1),
//!   so a long-lived fd would lose lines of a busy boot.
//! - The kernel itself echoes kmsg records below `console_loglevel` to the
//!   console; we print the others ourselves, so each line shows exactly once.
//!   Under `quiet` (loglevel 4) info lines stay off the console, as asked.
//! - In the command-line tools (not PID 1) records go to stderr only.

use crate::paths::{SysRoot, DEV_KMSG, PROC_PRINTK};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

const LINE: usize = 384;
pub const EARLY_RECORDS: usize = 32;
type Line = heapless::String<LINE>;

struct Inner {
    kmsg: bool,
    /// Command-line tool: print each record at once (stderr), never hold it.
    cli: bool,
    /// A /dev/kmsg kept open, for a process that outlives its /dev (the
    /// reset's background deleter, whose root is the freed initramfs).
    held: Option<std::fs::File>,
    console_loglevel: u8,
    debug: bool,
    tag: &'static str,
}

pub struct Logger(Mutex<Inner>);

static LOGGER: Logger = Logger(Mutex::new(Inner {
    kmsg: false,
    cli: false,
    held: None,
    console_loglevel: 7,
    debug: false,
    tag: "overlay-init",
}));

/// Records held until /dev/kmsg exists. A static of its own: all zeros, so
/// its 12 KiB sit in .bss instead of the binary's .data (LOGGER's fields are
/// not zero).
static EARLY: Mutex<heapless::Deque<(u8, Line), EARLY_RECORDS>> =
    Mutex::new(heapless::Deque::new());

fn take_early() -> Option<(u8, Line)> {
    EARLY.lock().ok()?.pop_front()
}

/// syslog priority of a log level.
pub fn priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether we print a record on the console ourselves.
pub fn console_prints(prio: u8, console_loglevel: u8, debug: bool) -> bool {
    let kernel_echoes = prio < console_loglevel;
    !kernel_echoes && (prio <= 4 || console_loglevel > 4 || debug)
}

/// First field of /proc/sys/kernel/printk.
pub fn parse_console_loglevel(text: &str) -> Option<u8> {
    text.split_whitespace().next()?.parse().ok()
}

/// Installs the logger. In PID-1 mode records are held until [`reinit`].
pub fn init(tag: &'static str, level: LevelFilter) {
    if let Ok(mut i) = LOGGER.0.lock() {
        i.tag = tag;
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// /dev is mounted: start writing to /dev/kmsg and flush the early records.
pub fn reinit(root: &SysRoot, debug: bool) {
    let Ok(mut i) = LOGGER.0.lock() else { return };
    i.debug = debug;
    if let Some(l) = std::fs::read_to_string(root.path(PROC_PRINTK))
        .ok()
        .as_deref()
        .and_then(parse_console_loglevel)
    {
        i.console_loglevel = l;
    }
    i.kmsg = std::path::Path::new(DEV_KMSG).exists();
    let tag = i.tag;
    while let Some((prio, line)) = take_early() {
        // Held before the config said whether debug is wanted.
        if prio < 7 || debug {
            emit(&i, tag, prio, &line);
        }
    }
    drop(i);
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Opens /dev/kmsg now and writes every later record through that fd.
pub fn hold_kmsg() {
    if let Ok(mut i) = LOGGER.0.lock() {
        i.held = std::fs::OpenOptions::new().write(true).open(DEV_KMSG).ok();
    }
}

/// No kmsg will come (devtmpfs failed): print what was held on the console.
pub fn flush_early_to_console() {
    let Ok(i) = LOGGER.0.lock() else { return };
    let tag = i.tag;
    while let Some((_, line)) = take_early() {
        let _ = writeln!(std::io::stderr(), "{tag}: {line}");
    }
}

fn emit(i: &Inner, tag: &str, prio: u8, msg: &str) {
    let mut kmsg_ok = false;
    if i.kmsg {
        let mut rec: heapless::String<{ LINE + 32 }> = heapless::String::new();
        let _ = writeln!(rec, "<{prio}>{tag}: {msg}");
        kmsg_ok = match &i.held {
            Some(f) => (&*f).write_all(rec.as_bytes()).is_ok(),
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(DEV_KMSG)
                .and_then(|mut f| f.write_all(rec.as_bytes()))
                .is_ok(),
        };
    }
    if !kmsg_ok || console_prints(prio, i.console_loglevel, i.debug) {
        let _ = writeln!(std::io::stderr(), "{tag}: {msg}");
    }
}

/// Stderr-only mode for the command-line tools.
pub fn init_cli(tag: &'static str) {
    if let Ok(mut i) = LOGGER.0.lock() {
        i.tag = tag;
        i.kmsg = false;
        i.console_loglevel = 0; // "kernel echoes nothing": print all
        i.cli = true;
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut line = Line::new();
        // A message longer than a line is cut, never lost entirely.
        let _ = write!(line, "{}", r.args());
        let prio = priority(r.level());
        let Ok(i) = self.0.lock() else { return };
        if i.kmsg || i.cli {
            let tag = i.tag;
            emit(&i, tag, prio, &line);
        } else if let Ok(mut early) = EARLY.lock() {
            if early.is_full() {
                early.pop_front();
            }
            let _ = early.push_back((prio, line));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_on_the_console_once() {
        // Default console_loglevel 7: the kernel echoes error..info; we print debug.
        assert!(!console_prints(6, 7, false));
        assert!(!console_prints(3, 7, false));
        assert!(console_prints(7, 7, true));
        // quiet (4): warnings and errors printed by us, info not (quiet was asked for),
        // unless overlay.debug asks for everything.
        assert!(console_prints(4, 4, false));
        assert!(console_prints(3, 1, false));
        assert!(!console_prints(6, 4, false));
        assert!(console_prints(6, 4, true));
    }

    #[test]
    fn printk_file() {
        assert_eq!(parse_console_loglevel("7\t4\t1\t7\n"), Some(7));
        assert_eq!(parse_console_loglevel(""), None);
        assert_eq!(parse_console_loglevel("x 4"), None);
    }
}
