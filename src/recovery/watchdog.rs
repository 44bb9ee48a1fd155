//! The hardware watchdog: armed (`overlay.watchdog=DEV[:TIMEOUT_S]`) or
//! found running (armed by the bootloader: sysfs `state` reads `active`),
//! fed through every long operation of the pre-init, and handed to the real
//! init still armed.
//!
//! - [`open`]: `open(2)` starts the watchdog (a running one stays running);
//!   `WDIOC_SETTIMEOUT` when a timeout is asked for; `WDIOC_GETTIMEOUT`
//!   tells what the driver really uses (it may round).
//! - [`Feeder`]: what the long operations call, as often as they like: it
//!   feeds (`WDIOC_KEEPALIVE`) once half the timeout has passed since the
//!   last feed, and is a clock read otherwise. It feeds only from those
//!   calls, never from a timer or a thread: a pre-init that hangs stops
//!   feeding and the board resets, which is the point.
//! - [`wait_child`]: waits for a child (mkfs, e2fsck) while feeding: poll(2)
//!   on a pidfd with the time to the next feed as the timeout.
//! - [`Feeder::hand_over`]: closes the device **without** the magic 'V'.
//!   It is closed rather than left open across exec because /dev/watchdogN
//!   opens once only (the kernel refuses a second open with EBUSY): the
//!   real init (procd, systemd's RuntimeWatchdogSec, busybox `watchdog`)
//!   must be able to open it. Closed without 'V', a driver with
//!   WDIOF_MAGICCLOSE keeps running: the kernel logs "watchdog did not
//!   stop!", pings it once (the init gets a whole timeout from the
//!   hand-over) and no longer feeds it (drivers/watchdog/watchdog_dev.c
//!   `watchdog_release`). A driver without WDIOF_MAGICCLOSE stops on any
//!   close unless it was built or loaded with `nowayout`: the hand-over
//!   reads sysfs `state` afterwards and says which happened.

use super::ParseError;
use crate::paths::SysRoot;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// `overlay.watchdog=DEV[:TIMEOUT_S]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchdogSpec {
    /// `/dev/watchdogN` (or `/dev/watchdog`, the first one).
    pub dev: String,
    /// Seconds; `None` keeps the driver's.
    pub timeout: Option<u32>,
}

impl WatchdogSpec {
    pub fn parse(s: &str) -> Result<WatchdogSpec, ParseError> {
        let (dev, timeout) = match s.split_once(':') {
            Some((d, t)) => (
                d,
                Some(
                    super::parse_number(Some(t), 1, u64::from(super::MAX_WATCHDOG_TIMEOUT))? as u32,
                ),
            ),
            None => (s, None),
        };
        Ok(WatchdogSpec {
            dev: super::parse_dev_node(dev)?,
            timeout,
        })
    }
}

impl fmt::Display for WatchdogSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dev)?;
        if let Some(t) = self.timeout {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

/// A failed watchdog operation: the device, the step, the error.
#[derive(Debug)]
pub struct WatchdogError {
    pub dev: String,
    pub step: WatchdogStep,
    pub err: io::Error,
}

/// The watchdog operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchdogStep {
    Open,
    /// `WDIOC_SETTIMEOUT` with these seconds.
    SetTimeout(u32),
    Keepalive,
}

impl WatchdogError {
    fn new(dev: &str, step: WatchdogStep) -> impl FnOnce(io::Error) -> WatchdogError + '_ {
        move |err| WatchdogError {
            dev: dev.into(),
            step,
            err,
        }
    }
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watchdog {}: cannot ", self.dev)?;
        match self.step {
            WatchdogStep::Open => f.write_str("open it")?,
            WatchdogStep::SetTimeout(s) => write!(f, "set a {s} s timeout")?,
            WatchdogStep::Keepalive => f.write_str("feed it")?,
        }
        write!(f, ": {}", self.err)
    }
}

/// An open watchdog. Dropping it closes it without the magic character
/// (it stays armed on a WDIOF_MAGICCLOSE driver).
pub trait WatchdogDevice {
    /// The device node.
    fn dev(&self) -> &str;
    /// `ioctl(WDIOC_KEEPALIVE)`.
    fn keepalive(&mut self) -> io::Result<()>;
    /// The timeout the driver uses, in seconds (`WDIOC_GETTIMEOUT`);
    /// `None` when it cannot say.
    fn timeout(&mut self) -> Option<u32>;
    /// Whether the driver stays armed when closed without 'V'
    /// (WDIOF_MAGICCLOSE).
    fn magic_close(&self) -> bool;
}

/// The clock the feeder reads: CLOCK_MONOTONIC (`Sys::now`'s clock).
pub type Clock = fn() -> Duration;

/// CLOCK_MONOTONIC through musl (its vDSO path; see sys/linux.rs).
pub fn monotonic() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Duration::ZERO, |t| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_nsec()).unwrap_or(0),
        )
    })
}

/// When the timeout is unknown, feed this often.
const UNKNOWN_TIMEOUT_INTERVAL: Duration = Duration::from_secs(1);

/// Feeds a watchdog from the pre-init's own progress. Threaded through the
/// long operations; [`Feeder::none`] when there is no watchdog, so the
/// callers never need to ask.
pub struct Feeder {
    dog: Option<Box<dyn WatchdogDevice>>,
    clock: Clock,
    /// The driver's timeout (s), when it says.
    timeout: Option<u32>,
    /// Half the timeout.
    interval: Duration,
    last: Duration,
    /// The longest time between two feeds since [`Feeder::take_longest_gap`].
    longest: Duration,
    feeds: u64,
    /// A keepalive failed (reported once).
    failed: bool,
}

impl Feeder {
    /// No watchdog: every call is a no-op.
    pub fn none() -> Feeder {
        Feeder {
            dog: None,
            clock: monotonic,
            timeout: None,
            interval: Duration::MAX,
            last: Duration::ZERO,
            longest: Duration::ZERO,
            feeds: 0,
            failed: false,
        }
    }

    /// Feeds `dog` at once, then every half timeout.
    pub fn new(mut dog: Box<dyn WatchdogDevice>, clock: Clock) -> Feeder {
        let timeout = dog.timeout();
        let interval = timeout.map_or(UNKNOWN_TIMEOUT_INTERVAL, |t| {
            Duration::from_millis(u64::from(t.max(1)) * 500)
        });
        let mut f = Feeder {
            dog: Some(dog),
            clock,
            timeout,
            interval,
            last: clock(),
            longest: Duration::ZERO,
            feeds: 0,
            failed: false,
        };
        f.feed_now();
        f
    }

    pub fn active(&self) -> bool {
        self.dog.is_some()
    }

    /// The device and the feeding interval, for the log.
    pub fn describe(&self) -> Option<(&str, Duration)> {
        self.dog.as_ref().map(|d| (d.dev(), self.interval))
    }

    /// Call often: feeds when half the timeout has passed since the last
    /// feed; otherwise one clock read.
    pub fn feed(&mut self) {
        if self.dog.is_some() && (self.clock)().saturating_sub(self.last) >= self.interval {
            self.feed_now();
        }
    }

    /// Feeds now.
    pub fn feed_now(&mut self) {
        let now = (self.clock)();
        let Some(dog) = self.dog.as_mut() else {
            return;
        };
        match dog.keepalive() {
            Ok(()) => {
                self.longest = self.longest.max(now.saturating_sub(self.last));
                self.last = now;
                self.feeds += 1;
            }
            Err(err) => {
                if !self.failed {
                    self.failed = true;
                    crate::warn!(
                        "{}",
                        WatchdogError::new(dog.dev(), WatchdogStep::Keepalive)(err)
                    );
                }
            }
        }
    }

    /// Time until the next feed is due (zero: due now); `None` without a
    /// watchdog. What a wait should use as its timeout.
    pub fn until_due(&self) -> Option<Duration> {
        self.dog.as_ref()?;
        Some(
            self.interval
                .saturating_sub((self.clock)().saturating_sub(self.last)),
        )
    }

    /// The longest interval between two feeds since the last call, and
    /// starts a new measurement: the executor logs it per long operation.
    pub fn take_longest_gap(&mut self) -> Duration {
        let since_last = (self.clock)().saturating_sub(self.last);
        std::mem::take(&mut self.longest).max(since_last)
    }

    pub fn feeds(&self) -> u64 {
        self.feeds
    }

    /// Closes the device without the magic character, just before the real
    /// init is exec'd (see the module's comment for why closed and not left
    /// open), after a last feed; then reads sysfs `state` to say whether the
    /// watchdog is still armed.
    pub fn hand_over(mut self, root: &SysRoot) -> Option<HandOver> {
        self.feed_now();
        let dog = self.dog.take()?;
        let dev = dog.dev().to_string();
        let magic_close = dog.magic_close();
        drop(dog);
        let state = read_state(root, &dev);
        Some(HandOver {
            dev,
            timeout: self.timeout,
            magic_close,
            state,
        })
    }
}

/// What [`Feeder::hand_over`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    pub dev: String,
    /// The timeout (s) the driver said it uses.
    pub timeout: Option<u32>,
    pub magic_close: bool,
    /// sysfs `state` after the close: `Some(true)` active.
    pub state: Option<bool>,
}

impl HandOver {
    /// Whether the init got it armed (as far as can be told).
    pub fn armed(&self) -> bool {
        self.state.unwrap_or(self.magic_close)
    }
}

impl fmt::Display for HandOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.state {
            Some(true) => "handed to the init armed: it must feed it",
            Some(false) => {
                "stopped when closed (no magic close, no nowayout): the init runs unguarded"
            }
            None if self.magic_close => "closed without the magic character: armed, it must be fed",
            None => "closed without the magic character (its driver may stop it)",
        };
        write!(f, "watchdog {} (", self.dev)?;
        match self.timeout {
            Some(t) => write!(f, "{t} s")?,
            None => f.write_str("timeout unknown")?,
        }
        write!(f, ") {how}")
    }
}

/// `/dev/watchdogN` → `watchdogN` in /sys/class/watchdog; `/dev/watchdog`
/// (the legacy node) is the first one, `watchdog0`.
fn sysfs_name(dev: &str) -> &str {
    match dev.rsplit('/').next().unwrap_or(dev) {
        "watchdog" => "watchdog0",
        n => n,
    }
}

/// sysfs `state` of the watchdog behind `dev`: `Some(true)` for `active`
/// (CONFIG_WATCHDOG_SYSFS; `None` without it).
pub fn read_state(root: &SysRoot, dev: &str) -> Option<bool> {
    let p = root.path(&format!("/sys/class/watchdog/{}/state", sysfs_name(dev)));
    // sysfs attributes are at most a page (the kernel bounds them).
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim() == "active")
}

/// The watchdogs looked at: `watchdog0` to `watchdog7` (a board has one or
/// two; the numbers are given in registration order from 0).
const MAX_SCAN: u32 = 8;

/// The first watchdog whose sysfs `state` reads `active` (a bootloader
/// armed it; the kernel feeds it until someone opens it), as
/// `/dev/watchdogN`. Opening it stops the kernel's feeding: from then on
/// the pre-init feeds it.
pub fn find_active(root: &SysRoot) -> Option<String> {
    (0..MAX_SCAN)
        .map(|n| format!("/dev/watchdog{n}"))
        .find(|dev| read_state(root, dev) == Some(true))
}

/// Opens the watchdog `choice` asks for: the named one (armed by the open,
/// with its timeout set), or with [`super::WatchdogChoice::Auto`] one found
/// running. `Ok(None)`: no watchdog to feed.
pub fn open(
    choice: &super::WatchdogChoice,
    root: &SysRoot,
) -> Result<Option<LinuxWatchdog>, WatchdogError> {
    let (dev, timeout) = match choice {
        super::WatchdogChoice::Off => return Ok(None),
        super::WatchdogChoice::Auto => match find_active(root) {
            Some(d) => (d, None),
            None => return Ok(None),
        },
        super::WatchdogChoice::Device(s) => (s.dev.clone(), s.timeout),
    };
    LinuxWatchdog::open(&root.path(&dev), &dev, timeout).map(Some)
}

// ---------------------------------------------------------------------------
// include/uapi/linux/watchdog.h
// ---------------------------------------------------------------------------

/// `struct watchdog_info { __u32 options; __u32 firmware_version; __u8 identity[32]; }`.
#[repr(C)]
#[derive(Clone, Copy)]
struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}
const _: () = assert!(std::mem::size_of::<WatchdogInfo>() == 40);

/// `WDIOF_SETTIMEOUT`, `WDIOF_MAGICCLOSE`.
const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_MAGICCLOSE: u32 = 0x0100;

// `#define WDIOC_GETSUPPORT _IOR('W', 0, struct watchdog_info)`
nix::ioctl_read!(
    /// `ioctl(fd, WDIOC_GETSUPPORT, struct watchdog_info *)`
    wdioc_getsupport,
    b'W',
    0,
    WatchdogInfo
);
// `#define WDIOC_KEEPALIVE _IOR('W', 5, int)` (the argument is not used)
nix::ioctl_read!(
    /// `ioctl(fd, WDIOC_KEEPALIVE, int *)`
    wdioc_keepalive,
    b'W',
    5,
    nix::libc::c_int
);
// `#define WDIOC_SETTIMEOUT _IOWR('W', 6, int)`: the kernel writes back the
// timeout it set.
nix::ioctl_readwrite!(
    /// `ioctl(fd, WDIOC_SETTIMEOUT, int *)`
    wdioc_settimeout,
    b'W',
    6,
    nix::libc::c_int
);
// `#define WDIOC_GETTIMEOUT _IOR('W', 7, int)`
nix::ioctl_read!(
    /// `ioctl(fd, WDIOC_GETTIMEOUT, int *)`
    wdioc_gettimeout,
    b'W',
    7,
    nix::libc::c_int
);

/// A watchdog character device, open (and so running).
pub struct LinuxWatchdog {
    fd: OwnedFd,
    dev: String,
    options: u32,
}

impl LinuxWatchdog {
    /// `open(path, O_WRONLY | O_CLOEXEC)` (this starts the watchdog), then
    /// `WDIOC_SETTIMEOUT` if `timeout` is given, then a first keepalive.
    /// `dev` is the name for messages. CLOEXEC: should the explicit
    /// hand-over be skipped, exec still closes it, without 'V'.
    pub fn open(
        path: &std::path::Path,
        dev: &str,
        timeout: Option<u32>,
    ) -> Result<LinuxWatchdog, WatchdogError> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| WatchdogError::new(dev, WatchdogStep::Open)(e.into()))?;
        let mut info = WatchdogInfo {
            options: 0,
            firmware_version: 0,
            identity: [0; 32],
        };
        // SAFETY: `info` is a live `struct watchdog_info` the kernel fills in.
        // A driver without the ioctl leaves it zero (no magic close known).
        let _ = unsafe { wdioc_getsupport(fd.as_raw_fd(), &mut info) };
        let mut w = LinuxWatchdog {
            fd,
            dev: dev.into(),
            options: info.options,
        };
        if let Some(secs) = timeout {
            let mut t = nix::libc::c_int::try_from(secs).unwrap_or(nix::libc::c_int::MAX);
            // SAFETY: `t` is a live int the kernel reads and writes back.
            unsafe { wdioc_settimeout(w.fd.as_raw_fd(), &mut t) }
                .map_err(|e| WatchdogError::new(dev, WatchdogStep::SetTimeout(secs))(e.into()))?;
        }
        w.keepalive()
            .map_err(WatchdogError::new(dev, WatchdogStep::Keepalive))?;
        Ok(w)
    }

    /// Whether the driver says it can set a timeout (WDIOF_SETTIMEOUT).
    pub fn settable(&self) -> bool {
        self.options & WDIOF_SETTIMEOUT != 0
    }
}

impl WatchdogDevice for LinuxWatchdog {
    fn dev(&self) -> &str {
        &self.dev
    }

    fn keepalive(&mut self) -> io::Result<()> {
        let mut dummy: nix::libc::c_int = 0;
        // SAFETY: the kernel ignores the argument; `dummy` is a live int.
        unsafe { wdioc_keepalive(self.fd.as_raw_fd(), &mut dummy) }
            .map(drop)
            .map_err(io::Error::from)
    }

    fn timeout(&mut self) -> Option<u32> {
        let mut t: nix::libc::c_int = 0;
        // SAFETY: `t` is a live int the kernel writes.
        unsafe { wdioc_gettimeout(self.fd.as_raw_fd(), &mut t) }.ok()?;
        u32::try_from(t).ok().filter(|&t| t > 0)
    }

    fn magic_close(&self) -> bool {
        self.options & WDIOF_MAGICCLOSE != 0
    }
}

/// Waits for child `pid` (`waitpid`, as `std::process::Child::wait`) while
/// feeding: with a watchdog, `poll(2)` on a pidfd (Linux 5.3; readable once
/// the child has exited) with the time to the next feed as the timeout;
/// without pidfds, `waitpid(WNOHANG)` at most every 50 ms. Without a
/// watchdog, a plain blocking `waitpid`. The status is the one std reports.
pub fn wait_child(pid: i32, feeder: &mut Feeder) -> io::Result<std::process::ExitStatus> {
    use rustix::process::{Pid, WaitOptions};
    use std::os::unix::process::ExitStatusExt;
    let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(nix::libc::ECHILD))?;
    let status =
        |st: rustix::process::WaitStatus| std::process::ExitStatus::from_raw(st.as_raw() as i32);
    if !feeder.active() {
        loop {
            match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
                Ok(Some(st)) => return Ok(status(st)),
                Ok(None) => return Err(io::Error::from_raw_os_error(nix::libc::ECHILD)),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok();
    loop {
        feeder.feed();
        match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
            Ok(Some(st)) => return Ok(status(st)),
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let due = feeder.until_due().unwrap_or(UNKNOWN_TIMEOUT_INTERVAL);
        match &pidfd {
            Some(fd) => {
                use rustix::event::{PollFd, PollFlags};
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let ms = due.as_secs().saturating_mul(1000) + u64::from(due.subsec_millis()) + 1;
                match rustix::event::poll(&mut fds, i32::try_from(ms).unwrap_or(i32::MAX)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                std::thread::sleep(due.clamp(Duration::from_millis(1), Duration::from_millis(50)))
            }
        }
    }
}

thread_local! {
    /// The pre-init's feeder, once a watchdog is open: PID 1 is one
    /// thread, and its long operations reach it here (the device waits,
    /// the children, the erase, the reset's deletion, the upgrade merge).
    static FEEDER: std::cell::RefCell<Option<Feeder>> = const { std::cell::RefCell::new(None) };
}

/// Makes `f` the feeder of this process.
pub fn install(f: Feeder) {
    FEEDER.with(|c| *c.borrow_mut() = Some(f));
}

/// Feeds the watchdog if one is open and half its timeout has passed.
pub fn feed() {
    FEEDER.with(|c| {
        if let Ok(mut f) = c.try_borrow_mut() {
            if let Some(f) = f.as_mut() {
                f.feed();
            }
        }
    });
}

/// Runs `f` with the feeder (or [`Feeder::none`] when there is none).
pub fn with_feeder<R>(f: impl FnOnce(&mut Feeder) -> R) -> R {
    FEEDER.with(|c| match c.try_borrow_mut() {
        Ok(mut slot) => match slot.as_mut() {
            Some(feeder) => f(feeder),
            None => f(&mut Feeder::none()),
        },
        Err(_) => f(&mut Feeder::none()),
    })
}

/// After each step of the boot: logs the longest interval between two
/// feeds since the step before, when `long` (a long operation) and a
/// watchdog is fed, and starts the next measurement. Out of line: the
/// executor's step loop stays small.
#[inline(never)]
pub fn log_longest_gap(what: &dyn fmt::Display, long: bool) {
    let gap = with_feeder(|f| f.active().then(|| f.take_longest_gap()));
    if let (Some(g), true) = (gap, long) {
        crate::info!(
            "watchdog: longest interval between feeds during `{what}`: {} ms",
            crate::state::WholeMillis(g)
        );
    }
}

/// In a child forked to work in the background (`Sys::background`: the
/// upgrade's manifest, an erase or a trash deletion that outlives the
/// boot): closes this process's copy of the watchdog. Kept, the child
/// would feed it (a hung pre-init kept alive by its own background job)
/// and hold the device open after the hand-over, so that the real init
/// could not open it (EBUSY; found in QEMU: busybox `watchdog` started by
/// the init failed while the upgrade's manifest was being computed, and
/// the board was reset) and the kernel's release, with its last ping,
/// came only when the child exited.
pub fn leave_in_child() {
    drop(take());
}

/// Takes the feeder out (for the hand-over).
pub fn take() -> Option<Feeder> {
    FEEDER.with(|c| c.borrow_mut().take())
}

/// Test build only: a pre-init that hangs (`overlay.test_hang=`): sleeps
/// for ever without feeding, so the watchdog must reset the board.
#[cfg(feature = "test-hooks")]
pub fn test_hang(what: &str) -> ! {
    crate::warn!("test hook: hanging at {what} without feeding the watchdog");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Test build only: stretches a long operation by `total`
/// (`overlay.test_slow=`), feeding as a real one does, in 100 ms steps.
#[cfg(feature = "test-hooks")]
pub fn test_slow(feeder: &mut Feeder, total: Duration) {
    let end = monotonic().saturating_add(total);
    while monotonic() < end {
        feeder.feed();
        std::thread::sleep(Duration::from_millis(100));
    }
    feeder.feed();
}

/// Test build only: a child (mkfs, fsck) stretched by `slow`
/// (`overlay.test_slow=`): run as `sh -c 'sleep S; exec "$@"' sh ARGV...`,
/// so that the boot's own child wait is what feeds the watchdog meanwhile.
#[cfg(feature = "test-hooks")]
pub fn slow_child(argv: Vec<String>, slow: Option<Duration>) -> Vec<String> {
    let Some(d) = slow else { return argv };
    crate::warn!(
        "test hook: stretching `{}` by {} ms (the child sleeps first)",
        argv.join(" "),
        crate::state::WholeMillis(d)
    );
    let mut v: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("sleep {}; exec \"$@\"", d.as_secs()),
        "sh".into(),
    ];
    v.extend(argv);
    v
}

/// A fake watchdog for tests: records the (fake) time of each feed.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    thread_local! {
        /// The fake clock of this test thread.
        pub static NOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    pub fn now() -> Duration {
        NOW.with(Cell::get)
    }

    pub fn advance(d: Duration) {
        NOW.with(|n| n.set(n.get() + d));
    }

    /// What the fake saw, shared with the test.
    #[derive(Default)]
    pub struct Log {
        pub feeds: Vec<Duration>,
        pub closed: bool,
    }

    pub struct FakeWatchdog {
        pub timeout: Option<u32>,
        pub fail: bool,
        pub log: Rc<RefCell<Log>>,
        /// Feeds use the real clock instead of the fake one.
        pub real_clock: bool,
    }

    impl FakeWatchdog {
        pub fn new(timeout: Option<u32>) -> (Box<FakeWatchdog>, Rc<RefCell<Log>>) {
            let log = Rc::new(RefCell::new(Log::default()));
            (
                Box::new(FakeWatchdog {
                    timeout,
                    fail: false,
                    log: log.clone(),
                    real_clock: false,
                }),
                log,
            )
        }
    }

    impl WatchdogDevice for FakeWatchdog {
        fn dev(&self) -> &str {
            "/dev/watchdog0"
        }
        fn keepalive(&mut self) -> io::Result<()> {
            if self.fail {
                return Err(io::Error::from_raw_os_error(nix::libc::EIO));
            }
            let t = if self.real_clock { monotonic() } else { now() };
            self.log.borrow_mut().feeds.push(t);
            Ok(())
        }
        fn timeout(&mut self) -> Option<u32> {
            self.timeout
        }
        fn magic_close(&self) -> bool {
            true
        }
    }

    impl Drop for FakeWatchdog {
        fn drop(&mut self) {
            self.log.borrow_mut().closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{advance, FakeWatchdog};
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn specs() {
        assert_eq!(
            WatchdogSpec::parse("watchdog1:45").unwrap(),
            WatchdogSpec {
                dev: "/dev/watchdog1".into(),
                timeout: Some(45)
            }
        );
        assert_eq!(WatchdogSpec::parse("/dev/watchdog").unwrap().timeout, None);
        assert_eq!(
            WatchdogSpec::parse("watchdog1:45").unwrap().to_string(),
            "/dev/watchdog1:45"
        );
        for bad in [
            "",
            ":5",
            "watchdog0:",
            "watchdog0:0",
            "watchdog0:3601",
            "watchdog0:5:5",
            "../x",
        ] {
            assert!(WatchdogSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_feeder_feeds_at_half_the_timeout_and_no_more() {
        let (dog, log) = FakeWatchdog::new(Some(10));
        let mut f = Feeder::new(dog, fake::now);
        assert_eq!(log.borrow().feeds.len(), 1, "fed at once");
        // Called every 100 ms for 60 s: fed every 5 s, never more.
        for _ in 0..600 {
            advance(Duration::from_millis(100));
            f.feed();
        }
        let feeds = log.borrow().feeds.clone();
        assert_eq!(feeds.len(), 13, "{feeds:?}");
        for w in feeds.windows(2) {
            assert_eq!(w[1] - w[0], secs(5));
        }
        assert_eq!(f.take_longest_gap(), secs(5));
        assert_eq!(f.until_due(), Some(secs(5)));
    }

    #[test]
    fn a_long_operation_that_calls_rarely_shows_its_longest_gap() {
        let (dog, log) = FakeWatchdog::new(Some(4));
        let mut f = Feeder::new(dog, fake::now);
        advance(Duration::from_millis(1500));
        f.feed();
        assert_eq!(log.borrow().feeds.len(), 1, "not due yet");
        advance(Duration::from_millis(3500));
        f.feed();
        assert_eq!(log.borrow().feeds.len(), 2);
        assert_eq!(
            f.take_longest_gap(),
            secs(5),
            "5 s > the 4 s timeout: a reset"
        );
        assert_eq!(f.take_longest_gap(), Duration::ZERO, "measured anew");
    }

    #[test]
    fn no_watchdog_costs_nothing() {
        let mut f = Feeder::none();
        f.feed();
        f.feed_now();
        assert!(!f.active());
        assert_eq!(f.until_due(), None);
        assert!(f.hand_over(&SysRoot::new("/nonexistent")).is_none());
    }

    #[test]
    fn an_unknown_timeout_feeds_every_second() {
        let (dog, log) = FakeWatchdog::new(None);
        let mut f = Feeder::new(dog, fake::now);
        advance(Duration::from_millis(999));
        f.feed();
        advance(Duration::from_millis(1));
        f.feed();
        assert_eq!(log.borrow().feeds.len(), 2);
    }

    #[test]
    fn a_failing_keepalive_is_reported_once_and_the_boot_goes_on() {
        let (mut dog, log) = FakeWatchdog::new(Some(2));
        dog.fail = true;
        let mut f = Feeder::new(dog, fake::now);
        for _ in 0..10 {
            advance(secs(1));
            f.feed();
        }
        assert!(log.borrow().feeds.is_empty());
        assert!(f.failed);
    }

    #[test]
    fn the_hand_over_closes_it_without_stopping_it() {
        let d = crate::testutil::TempDir::new("wdt-handover");
        d.write("sys/class/watchdog/watchdog0/state", "active\n");
        let (dog, log) = FakeWatchdog::new(Some(30));
        let f = Feeder::new(dog, fake::now);
        advance(secs(3));
        let h = f.hand_over(&SysRoot::new(d.path())).unwrap();
        assert!(log.borrow().closed);
        assert_eq!(log.borrow().feeds.len(), 2, "a last feed before the close");
        assert_eq!(h.state, Some(true));
        assert!(h.armed());
        assert_eq!(
            h.to_string(),
            "watchdog /dev/watchdog0 (30 s) handed to the init armed: it must feed it"
        );
        d.write("sys/class/watchdog/watchdog0/state", "inactive\n");
        let (dog, _) = FakeWatchdog::new(Some(30));
        let h = Feeder::new(dog, fake::now)
            .hand_over(&SysRoot::new(d.path()))
            .unwrap();
        assert!(!h.armed());
        assert!(h.to_string().contains("stopped when closed"));
        // An odd timeout is shown as it is (found in QEMU: 5 s showed as 4).
        let (dog, _) = FakeWatchdog::new(Some(5));
        let h = Feeder::new(dog, fake::now)
            .hand_over(&SysRoot::new(d.path()))
            .unwrap();
        assert!(
            h.to_string().starts_with("watchdog /dev/watchdog0 (5 s) "),
            "{h}"
        );
    }

    #[test]
    fn a_running_watchdog_is_found_by_its_sysfs_state() {
        let d = crate::testutil::TempDir::new("wdt-find");
        let root = SysRoot::new(d.path());
        assert_eq!(find_active(&root), None, "no sysfs class at all");
        d.write("sys/class/watchdog/watchdog0/state", "inactive\n");
        d.write("sys/class/watchdog/watchdog3/state", "active\n");
        d.write("sys/class/watchdog/watchdog2/state", "active\n");
        d.write("sys/class/watchdog/watchdog9/state", "active\n");
        d.write("sys/class/watchdog/watchdogx/state", "active\n");
        d.write("sys/class/watchdog/other/state", "active\n");
        assert_eq!(find_active(&root).as_deref(), Some("/dev/watchdog2"));
        assert_eq!(
            read_state(&root, "/dev/watchdog"),
            Some(false),
            "/dev/watchdog is watchdog0"
        );
        assert_eq!(
            open(&super::super::WatchdogChoice::Off, &root)
                .map(|o| o.is_some())
                .ok(),
            Some(false)
        );
        d.write("sys/class/watchdog/watchdog2/state", "inactive\n");
        d.write("sys/class/watchdog/watchdog3/state", "inactive\n");
        assert!(matches!(
            open(&super::super::WatchdogChoice::Auto, &root),
            Ok(None)
        ));
    }

    #[test]
    fn a_missing_device_is_an_open_error() {
        let root = SysRoot::new("/nonexistent-root");
        let c = super::super::WatchdogChoice::Device(WatchdogSpec::parse("watchdog7:5").unwrap());
        let e = open(&c, &root).err().unwrap();
        assert_eq!(e.step, WatchdogStep::Open);
        assert!(
            e.to_string()
                .starts_with("watchdog /dev/watchdog7: cannot open it:"),
            "{e}"
        );
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_child, the function tested
    fn a_child_is_waited_for_while_the_watchdog_is_fed() {
        // A real child that runs 1.2 s; a watchdog of 1 s (fed every 0.5 s)
        // on the real clock.
        let (mut dog, log) = FakeWatchdog::new(Some(1));
        dog.real_clock = true;
        let mut f = Feeder::new(dog, monotonic);
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 1.2; exit 7"])
            .spawn()
            .unwrap();
        let t0 = monotonic();
        let st = wait_child(child.id() as i32, &mut f).unwrap();
        let took = monotonic() - t0;
        assert_eq!(st.code(), Some(7));
        assert!(
            took >= Duration::from_millis(1150) && took < secs(3),
            "{took:?}"
        );
        let feeds = log.borrow().feeds.clone();
        assert!(feeds.len() >= 3, "fed while waiting: {feeds:?}");
        let gap = feeds.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(gap <= Duration::from_millis(650), "longest gap {gap:?}");
        // And without a watchdog, a plain wait.
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let st = wait_child(child.id() as i32, &mut Feeder::none()).unwrap();
        assert_eq!(st.code(), Some(3));
        assert!(
            wait_child(child.id() as i32, &mut Feeder::none()).is_err(),
            "reaped already"
        );
    }

    #[test]
    fn the_ioctl_numbers_are_the_headers() {
        // _IOR('W', 0, 40 bytes), _IOR('W', 5, int), _IOWR('W', 6, int),
        // _IOR('W', 7, int) on the generic encoding (arm, x86).
        assert_eq!(nix::request_code_read!(b'W', 0, 40) as u32, 0x8028_5700);
        assert_eq!(nix::request_code_read!(b'W', 5, 4) as u32, 0x8004_5705);
        assert_eq!(nix::request_code_readwrite!(b'W', 6, 4) as u32, 0xC004_5706);
        assert_eq!(nix::request_code_read!(b'W', 7, 4) as u32, 0x8004_5707);
    }
}
