//! The failsafe key: the console is watched for one key for a bounded time
//! (`overlay.failsafe_wait=MS`; at the default, 0, nothing here runs).
//!
//! The prompt names the key. The console is read without blocking past the
//! deadline: `poll(2)` with the time left, and, on a terminal, the line
//! discipline switched to non-canonical mode with `VMIN = VTIME = 0` (the
//! key counts without Enter, and a `read` returns at once), then restored
//! to exactly what it was, whatever happened. The file status flags are not
//! touched: fds 0-2 share one open console, and `O_NONBLOCK` on it would
//! make the init's writes fail with EAGAIN.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

/// The key that asks for a failsafe boot, as OpenWrt's preinit uses it.
pub const FAILSAFE_KEY: u8 = b'f';

/// Why the console could not be watched (the boot goes on, not failsafe).
#[derive(Debug)]
pub enum ConsoleError {
    /// Writing the prompt failed.
    Prompt(io::Error),
    /// `poll(2)` failed.
    Poll(io::Error),
    /// `read(2)` failed.
    Read(io::Error),
    /// The console hung up (POLLHUP/POLLERR/POLLNVAL without data).
    HangUp,
    /// The terminal settings could not be put back (after the window).
    Restore(io::Error),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, e) = match self {
            ConsoleError::Prompt(e) => ("cannot write the prompt", e),
            ConsoleError::Poll(e) => ("poll on the console failed", e),
            ConsoleError::Read(e) => ("cannot read the console", e),
            ConsoleError::HangUp => return f.write_str("the console hung up"),
            ConsoleError::Restore(e) => ("cannot restore the terminal settings", e),
        };
        write!(f, "{what}: {e}")
    }
}

/// Watches a console for one key.
pub trait KeyReader {
    /// Shows `prompt`, then waits at most `window` for `key` (either case
    /// for a letter). `Ok(true)` as soon as it is seen; other keys are
    /// ignored and consumed.
    fn wait_key(&mut self, prompt: &str, key: u8, window: Duration) -> Result<bool, ConsoleError>;
}

/// The prompt for a window of `window`.
pub fn prompt(window: Duration) -> String {
    format!(
        "overlay-init: press [{}] within {} ms for a failsafe boot (the firmware as shipped, without your changes)\n",
        FAILSAFE_KEY as char,
        crate::state::WholeMillis(window)
    )
}

/// Whether a byte is the key (letters in either case).
fn matches(byte: u8, key: u8) -> bool {
    byte == key || (key.is_ascii_alphabetic() && byte.eq_ignore_ascii_case(&key))
}

/// The real console: reads `input`, prompts on `output` (PID 1: fds 0 and 1,
/// both /dev/console).
pub struct Console<'a> {
    pub input: BorrowedFd<'a>,
    pub output: BorrowedFd<'a>,
}

impl Console<'static> {
    /// stdin and stdout.
    pub fn stdio() -> Console<'static> {
        Console {
            input: rustix::stdio::stdin(),
            output: rustix::stdio::stdout(),
        }
    }
}

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Milliseconds for poll(2), rounded up so that a wait never ends early,
/// at most a minute (the window is bounded far below).
fn poll_ms(d: Duration) -> i32 {
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
    i32::try_from(ms.min(60_000)).unwrap_or(60_000)
}

/// `tcgetattr(3)`: `None` when `fd` is not a terminal.
fn get_termios(fd: BorrowedFd) -> Option<nix::libc::termios> {
    // SAFETY: an all-zero `struct termios` is a valid value of plain integers.
    let mut t: nix::libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a live `struct termios` that tcgetattr fills in; `fd`
    // is a borrowed, open descriptor.
    (unsafe { nix::libc::tcgetattr(fd.as_raw_fd(), &mut t) } == 0).then_some(t)
}

/// `tcsetattr(3)` with `TCSANOW`.
fn set_termios(fd: BorrowedFd, t: &nix::libc::termios) -> io::Result<()> {
    // SAFETY: `t` is a valid `struct termios` (from tcgetattr); `fd` is open.
    if unsafe { nix::libc::tcsetattr(fd.as_raw_fd(), nix::libc::TCSANOW, t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl KeyReader for Console<'_> {
    fn wait_key(&mut self, prompt: &str, key: u8, window: Duration) -> Result<bool, ConsoleError> {
        write_all(self.output, prompt.as_bytes()).map_err(ConsoleError::Prompt)?;
        // Non-canonical, no echo, reads that never block: only on a
        // terminal (a pipe or file reads as it is). (musl's tcgetattr, not
        // rustix's: a plain TCGETS, no baud-rate decoding linked in.)
        let saved = get_termios(self.input);
        if let Some(t) = &saved {
            let mut raw = *t;
            raw.c_lflag &= !(nix::libc::ICANON | nix::libc::ECHO);
            if let Some(c) = raw.c_cc.get_mut(nix::libc::VMIN) {
                *c = 0;
            }
            if let Some(c) = raw.c_cc.get_mut(nix::libc::VTIME) {
                *c = 0;
            }
            // A terminal that refuses the change is still polled: in
            // canonical mode a key counts once Enter is pressed.
            let _ = set_termios(self.input, &raw);
        }
        let result = watch(self.input, key, window);
        if let Some(t) = &saved {
            if let Err(e) = set_termios(self.input, t) {
                // The key decision stands; the caller logs this.
                return match result {
                    Ok(_) => Err(ConsoleError::Restore(e)),
                    Err(e) => Err(e),
                };
            }
        }
        result
    }
}

/// Polls `fd` until `key` is read or `window` has passed, feeding the
/// watchdog (when one is open) as the wait goes: the window may be longer
/// than its timeout (found in QEMU: a 16 s window under a 5 s softdog reset
/// the board).
fn watch(fd: BorrowedFd, key: u8, window: Duration) -> Result<bool, ConsoleError> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = super::watchdog::monotonic().saturating_add(window);
    let mut buf = [0u8; 64];
    loop {
        let due = super::watchdog::with_feeder(|f| {
            f.feed();
            f.until_due()
        });
        let left = deadline.saturating_sub(super::watchdog::monotonic());
        if left.is_zero() {
            return Ok(false);
        }
        let wait = due.map_or(left, |d| left.min(d.max(Duration::from_millis(1))));
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, poll_ms(wait)) {
            // The window is over, or only the next feed is due.
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ConsoleError::Poll(os(e))),
        }
        let ev = fds.first().map_or(PollFlags::empty(), |p| p.revents());
        if !ev.contains(PollFlags::IN) {
            if ev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
                return Err(ConsoleError::HangUp);
            }
            continue;
        }
        match rustix::io::read(fd, &mut buf) {
            // Readable but empty: end of file (a pipe whose writer left),
            // or a terminal with nothing after all: wait out the window
            // without spinning.
            Ok(0) => {
                std::thread::sleep(left.min(Duration::from_millis(20)));
            }
            Ok(n) => {
                if buf.iter().take(n).any(|&b| matches(b, key)) {
                    return Ok(true);
                }
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(ConsoleError::Read(os(e))),
        }
    }
}

fn write_all(fd: BorrowedFd, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        match rustix::io::write(fd.as_fd(), b) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => b = b.get(n..).unwrap_or_default(),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(os(e)),
        }
    }
    Ok(())
}

/// A scripted console for tests: `pressed` after `after` (or never),
/// recording each window and prompt it was given.
#[cfg(test)]
pub struct FakeConsole {
    pub pressed: Option<u8>,
    pub error: bool,
    pub asked: Vec<(String, Duration)>,
}

#[cfg(test)]
impl KeyReader for FakeConsole {
    fn wait_key(&mut self, prompt: &str, key: u8, window: Duration) -> Result<bool, ConsoleError> {
        self.asked.push((prompt.to_string(), window));
        if self.error {
            return Err(ConsoleError::HangUp);
        }
        Ok(self.pressed.is_some_and(|b| matches(b, key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::time::Instant;

    fn pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
        std::io::pipe().unwrap()
    }

    #[test]
    fn the_prompt_names_the_key_and_the_window() {
        assert_eq!(
            prompt(Duration::from_millis(2500)),
            "overlay-init: press [f] within 2500 ms for a failsafe boot (the firmware as shipped, without your changes)\n"
        );
        assert!(matches(b'F', b'f') && matches(b'f', b'f') && !matches(b'g', b'f'));
        assert!(!matches(b'\r', b'\n'));
    }

    #[test]
    fn a_key_in_the_window_is_seen_at_once() {
        let (r, mut w) = pipe();
        let (_out_r, out_w) = pipe();
        w.write_all(b"xyzF").unwrap();
        let mut c = Console {
            input: r.as_fd(),
            output: out_w.as_fd(),
        };
        let t = Instant::now();
        assert!(c.wait_key("p\n", b'f', Duration::from_secs(5)).unwrap());
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "no wait once the key is there"
        );
    }

    #[test]
    fn a_key_typed_during_the_window_counts() {
        let (r, mut w) = pipe();
        let (_out_r, out_w) = pipe();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            w.write_all(b"a").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            w.write_all(b"f").unwrap();
            w
        });
        let mut c = Console {
            input: r.as_fd(),
            output: out_w.as_fd(),
        };
        let t = Instant::now();
        assert!(c.wait_key("p\n", b'f', Duration::from_secs(5)).unwrap());
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(writer.join());
    }

    #[test]
    fn no_key_waits_the_window_and_no_longer() {
        let (r, mut w) = pipe();
        let (mut out_r, out_w) = pipe();
        w.write_all(b"other keys\n").unwrap();
        let mut c = Console {
            input: r.as_fd(),
            output: out_w.as_fd(),
        };
        let t = Instant::now();
        let window = Duration::from_millis(300);
        assert!(!c.wait_key("the prompt\n", b'f', window).unwrap());
        let took = t.elapsed();
        assert!(
            took >= window && took < window + Duration::from_millis(400),
            "{took:?}"
        );
        // The other end gone (a hung-up console): no key can come; said
        // at once, not after the window.
        drop(w);
        let t = Instant::now();
        assert!(matches!(
            c.wait_key("", b'f', window),
            Err(ConsoleError::HangUp)
        ));
        assert!(t.elapsed() < window);
        drop(out_w);
        let mut shown = String::new();
        std::io::Read::read_to_string(&mut out_r, &mut shown).unwrap();
        assert_eq!(shown, "the prompt\n");
    }

    #[test]
    fn a_terminal_is_put_back_as_it_was() {
        use rustix::termios::{tcgetattr, LocalModes};
        // A pseudo-terminal: the slave is what a console would be.
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let before = tcgetattr(&slave).unwrap();
        assert!(before.local_modes.contains(LocalModes::ICANON));
        let mut m = std::fs::File::from(master);
        // Without Enter: counts only because the window is non-canonical.
        m.write_all(b"f").unwrap();
        let mut c = Console {
            input: slave.as_fd(),
            output: slave.as_fd(),
        };
        assert!(c.wait_key("p\n", b'f', Duration::from_secs(5)).unwrap());
        let after = tcgetattr(&slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes);
        use rustix::termios::SpecialCodeIndex as I;
        for i in [I::VMIN, I::VTIME, I::VINTR, I::VEOF] {
            assert_eq!(after.special_codes[i], before.special_codes[i]);
        }
        // And a window with no key on a terminal ends on time.
        let t = Instant::now();
        assert!(!c.wait_key("", b'f', Duration::from_millis(200)).unwrap());
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(tcgetattr(&slave).unwrap().local_modes, before.local_modes);
    }

    #[test]
    fn the_watchdog_is_fed_through_a_window_longer_than_its_timeout() {
        use crate::recovery::watchdog::{self, fake::FakeWatchdog, Feeder};
        // A 1 s watchdog (fed every 0.5 s) on the real clock; a 1.3 s window.
        let (mut dog, log) = FakeWatchdog::new(Some(1));
        dog.real_clock = true;
        watchdog::install(Feeder::new(dog, watchdog::monotonic));
        let (r, _w) = pipe();
        let (_out_r, out_w) = pipe();
        let mut c = Console {
            input: r.as_fd(),
            output: out_w.as_fd(),
        };
        let window = Duration::from_millis(1300);
        let t = Instant::now();
        assert!(!c.wait_key("p\n", b'f', window).unwrap());
        let took = t.elapsed();
        let _ = watchdog::take();
        assert!(
            took >= window && took < window + Duration::from_millis(400),
            "the window is the same with a watchdog: {took:?}"
        );
        let feeds = log.borrow().feeds.clone();
        assert!(feeds.len() >= 3, "fed while waiting: {feeds:?}");
        let gap = feeds.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(gap <= Duration::from_millis(650), "longest gap {gap:?}");
    }

    #[test]
    fn poll_timeouts_round_up_and_are_bounded() {
        assert_eq!(poll_ms(Duration::from_micros(1)), 1);
        assert_eq!(poll_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(poll_ms(Duration::from_secs(3600)), 60_000);
        assert_eq!(poll_ms(Duration::MAX), 60_000);
    }
}
