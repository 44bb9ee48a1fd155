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
//! - The boot's details ([`crate::detail!`]: steps, figures) always go to
//!   /dev/kmsg at KERN_DEBUG, and to the console only when asked
//!   (`loglevel=8`, `overlay.debug=1`): at the default loglevel a normal
//!   boot prints one line, as OpenWrt's mount_root does. A serial console at
//!   115200 baud is written synchronously: 87 µs a byte of boot time.
//! - In the command-line tools (not PID 1) records go to stderr only.

use crate::paths::{SysRoot, DEV_KMSG, PROC_PRINTK};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

/// The longest message kept, in bytes. A longer one keeps its start and its
/// end around an ellipsis ([`format_message`]), so the reason, which ends a
/// message, is never lost. /dev/kmsg refuses a record over LOG_LINE_MAX
/// (1024 - 32 bytes) as a whole (EINVAL), so a record stays well under it.
pub const MESSAGE: usize = 480;
pub const EARLY_RECORDS: usize = 32;
type Line = heapless::String<MESSAGE>;
const ELLIPSIS: &str = "…";

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
/// its 15 KiB sit in .bss instead of the binary's .data (LOGGER's fields are
/// not zero).
static EARLY: Mutex<heapless::Deque<(u8, Line), EARLY_RECORDS>> =
    Mutex::new(heapless::Deque::new());

fn take_early() -> Option<(u8, Line)> {
    EARLY.lock().ok()?.pop_front()
}

/// Our priority of a log level: syslog's, and 8 for the records of
/// `overlay.debug=1` alone ([`crate::debug!`]), written as 7 (KERN_DEBUG)
/// like the details ([`crate::detail!`], 7).
pub fn priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug => 7,
        Level::Trace => DEBUG_ONLY,
    }
}

/// The priority of a record that exists only with `overlay.debug=1`.
const DEBUG_ONLY: u8 = 8;

/// The syslog priority a record is written with.
fn kernel_priority(prio: u8) -> u8 {
    prio.min(7)
}

/// Whether we print a record on the console ourselves: when the kernel does
/// not echo it, warnings and errors always, info unless `quiet` asked for
/// silence, the details only with `overlay.debug=1`.
pub fn console_prints(prio: u8, console_loglevel: u8, debug: bool) -> bool {
    let kernel_echoes = kernel_priority(prio) < console_loglevel;
    !kernel_echoes
        && match prio {
            0..=4 => true,
            5 | 6 => console_loglevel > 4 || debug,
            _ => debug,
        }
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
        if prio < DEBUG_ONLY || debug {
            emit(&i, tag, prio, &line);
        }
    }
    drop(i);
    log::set_max_level(if debug {
        LevelFilter::Trace
    } else {
        LevelFilter::Debug
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
        let mut rec: heapless::String<{ MESSAGE + 32 }> = heapless::String::new();
        let _ = writeln!(rec, "<{}>{tag}: {msg}", kernel_priority(prio));
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

/// A record at `level` to the logger, when the level is enabled: what the
/// crate's `info!`, `warn!`, `error!` and `debug!` call (lib.rs). No target
/// or module path: [`Logger`] prints neither.
#[inline(never)]
pub fn log(level: log::Level, args: std::fmt::Arguments<'_>) {
    if level <= log::max_level() {
        log::logger().log(&log::Record::builder().level(level).args(args).build());
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_message(*r.args());
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

/// Formats a message into a fixed line, never dropping it: one that does
/// not fit keeps its first half and its last bytes around an ellipsis (the
/// value in the middle is what gets shortened; the subject and the reason
/// stay). Control characters are written as `\xNN`, so that a hostile value
/// (a command-line word, a file name) cannot start a fake line on the
/// console or in dmesg, or send terminal escapes.
///
/// Two passes over `args` when the message is too long: the first counts
/// its length, the second knows where to cut. No heap, a bounded stack.
pub fn format_message(args: std::fmt::Arguments) -> Line {
    let mut line = Line::new();
    let mut all = Clip::new(&mut line, MESSAGE, usize::MAX);
    let _ = all.write_fmt(args);
    let total = all.pos;
    if total > MESSAGE {
        line.clear();
        let head = MESSAGE / 2;
        let tail = MESSAGE - head - ELLIPSIS.len();
        let mut cut = Clip::new(&mut line, head, total.saturating_sub(tail));
        cut.ellipsis = true;
        let _ = cut.write_fmt(args);
    }
    line
}

/// A `fmt::Write` into a [`Line`] that leaves out the output bytes from
/// `cut_from` to `cut_to` (whole characters only) and escapes controls.
struct Clip<'a> {
    out: &'a mut Line,
    cut_from: usize,
    cut_to: usize,
    /// Bytes of output so far, the left-out ones included.
    pos: usize,
    /// Put an ellipsis where the cut is.
    ellipsis: bool,
}

impl<'a> Clip<'a> {
    fn new(out: &'a mut Line, cut_from: usize, cut_to: usize) -> Clip<'a> {
        Clip {
            out,
            cut_from,
            cut_to,
            pos: 0,
            ellipsis: false,
        }
    }
}

impl std::fmt::Write for Clip<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            let mut buf = [0u8; 4];
            let unit: &str = if c.is_control() && c != '\t' {
                // U+0000-U+001F, U+007F-U+009F: one byte's worth.
                let hex = b"0123456789abcdef";
                let b = u32::from(c);
                let nib = |n: u32| hex.get((n & 15) as usize).copied().unwrap_or(b'?');
                buf = [b'\\', b'x', nib(b >> 4), nib(b)];
                std::str::from_utf8(&buf).unwrap_or("?")
            } else {
                c.encode_utf8(&mut buf)
            };
            let end = self.pos.saturating_add(unit.len());
            if end <= self.cut_from || self.pos >= self.cut_to {
                let _ = self.out.push_str(unit);
            } else if self.ellipsis {
                let _ = self.out.push_str(ELLIPSIS);
                self.ellipsis = false;
            }
            self.pos = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 defect 3: a message longer than a line kept nothing at all
    /// (heapless' write! fails as a whole), the fatal reason included.
    #[test]
    fn a_long_message_keeps_its_start_and_its_reason() {
        let value = "B".repeat(600);
        let line = format_message(format_args!(
            "FATAL: lower device PARTLABEL={value} did not appear within 1 s"
        ));
        assert!(
            line.starts_with("FATAL: lower device PARTLABEL=BBB"),
            "{line}"
        );
        assert!(line.ends_with("BBB did not appear within 1 s"), "{line}");
        assert!(line.contains("…"), "{line}");
        assert!(line.len() <= MESSAGE, "{}", line.len());
        // Each byte of the message is in the line or in the cut.
        assert!(line.len() > MESSAGE - 8, "{}", line.len());
    }

    #[test]
    fn a_message_that_fits_is_unchanged() {
        let m = "x".repeat(MESSAGE);
        assert_eq!(format_message(format_args!("{m}")).as_str(), m);
        assert_eq!(
            format_message(format_args!("a {} c", "b")).as_str(),
            "a b c"
        );
        let over = "é".repeat(MESSAGE); // 2 bytes each: cut on characters
        let line = format_message(format_args!("{over}!"));
        assert!(line.ends_with("éé!") && line.contains("é…é"), "{line}");
    }

    #[test]
    fn control_characters_cannot_fake_a_line() {
        let hostile = "x\noverlay-init: persistent: yes\x1b[2J\x7f\u{85}";
        let line = format_message(format_args!(
            "bad setting overlay.data={hostile}: not a device"
        ));
        assert_eq!(
            line.as_str(),
            "bad setting overlay.data=x\\x0aoverlay-init: persistent: yes\\x1b[2J\\x7f\\x85: not a device"
        );
        assert_eq!(format_message(format_args!("a\tb")).as_str(), "a\tb");
    }

    #[test]
    fn a_huge_message_stays_bounded() {
        let v = "\u{1}".repeat(100_000);
        let line = format_message(format_args!("start {v} end"));
        assert!(
            line.starts_with("start \\x01") && line.ends_with("\\x01 end"),
            "{line}"
        );
        assert!(line.len() <= MESSAGE);
    }

    #[test]
    fn each_line_on_the_console_once() {
        // Default console_loglevel 7: the kernel echoes error..info; the
        // details and the debug records are ours to print, with
        // overlay.debug=1 only.
        assert!(!console_prints(6, 7, false));
        assert!(!console_prints(3, 7, false));
        assert!(console_prints(7, 7, true));
        assert!(!console_prints(7, 7, false));
        assert!(console_prints(8, 7, true));
        assert!(!console_prints(8, 7, false));
        // loglevel=8: the kernel echoes the details (and debug records).
        assert!(!console_prints(7, 8, false));
        assert!(!console_prints(8, 8, true));
        // A console loglevel of 5 or 6: info printed by us.
        assert!(console_prints(6, 5, false));
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
