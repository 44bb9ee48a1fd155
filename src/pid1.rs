//! Running as PID 1: the boot from start to the exec of the real init, the
//! fatal path, and a clean hand-over.
//!
//! PID 1 must never exit or panic (the kernel panics when init dies): every
//! failure ends in [`fatal`], which logs, syncs, offers an emergency shell if
//! the current root has one, and reboots.

use crate::boot::{Boot, Mode};
use crate::error::BootError;
use crate::kmsg;
use crate::paths::{self, SysRoot};
use crate::state::{Millis, Upper};
use crate::sys::linux::LinuxSys;
use crate::sys::spawn::Program;
use crate::sys::Sys;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The pre-init. Never returns.
pub fn main() -> ! {
    let sys = LinuxSys;
    // The pre-init's clock starts here, its first statement (a vDSO read:
    // nothing to fault); CLOCK_MONOTONIC counts from the kernel's start.
    let started_at = sys.now();
    // Then, first of all, so that a fault anywhere after this (a stack
    // overflow included) ends in the fatal path instead of a kernel panic.
    install_fault_handler();
    kmsg::init("overlay-init", log::LevelFilter::Trace);
    let root = SysRoot::host();
    let mode = Mode::from_root_magic(sys.fs_magic(Path::new("/")).unwrap_or(0));
    let mut boot = Boot::new(&sys, root.clone(), mode);
    boot.start_clock(started_at);

    let dev_ok = boot.early_mounts();
    sys.console_stdio();
    boot.read_config();
    let delay = boot.cfg.fatal_delay;
    FAULT_DELAY_SECS.store(
        u32::try_from(delay.as_secs()).unwrap_or(u32::MAX),
        Ordering::Relaxed,
    );
    if dev_ok {
        kmsg::reinit(&root, boot.cfg.debug);
    } else {
        kmsg::flush_early_to_console();
    }
    crate::detail!(
        "overlay-init {} ({}), started {} ms after the kernel",
        env!("CARGO_PKG_VERSION"),
        mode_name(mode),
        Millis(started_at)
    );
    let release = sys.kernel_release();
    #[cfg(feature = "test-hooks")]
    test_fault(&root);
    boot.load_modules(&release);
    // The watchdog, found running or armed, is fed from here on.
    boot.open_watchdog();
    #[cfg(feature = "test-hooks")]
    if boot.cfg.test_hang {
        crate::recovery::watchdog::test_hang("the lowers stage");
    }

    match run(&mut boot) {
        Ok(init) => {
            let err = hand_over(&sys, &init, boot.is_failsafe());
            fatal(&sys, delay, &BootError::Exec { init, err }.to_string())
        }
        Err(e) => fatal(&sys, delay, &e.to_string()),
    }
}

/// `overlay.test_fault=stack|trap` (test build only, feature test-hooks):
/// a stack overflow or a trap (what a panic is in the ARM build) in PID 1,
/// to prove in QEMU that any fault ends in the fatal path, never in a
/// kernel panic. Read here from /proc/cmdline, after the config (whose
/// `panic=` sets the reboot delay), before anything touches the flash.
#[cfg(feature = "test-hooks")]
#[allow(clippy::panic)]
fn test_fault(root: &SysRoot) {
    let Ok(line) = std::fs::read(root.path(paths::PROC_CMDLINE)) else {
        return;
    };
    let Some(p) = crate::cmdline::parse(&line)
        .filter(|p| p.key == b"overlay.test_fault")
        .last()
    else {
        return;
    };
    match p.value {
        Some(b"stack") => {
            crate::warn!("test hook: overlay.test_fault=stack: overflowing the stack now");
            crate::warn!("test hook: recursed {} times", overflow(0));
        }
        Some(b"trap") => {
            crate::warn!("test hook: overlay.test_fault=trap: panicking now");
            panic!("test hook: a panic in PID 1");
        }
        _ => crate::warn!("test hook: overlay.test_fault= wants stack or trap"),
    }
}

/// Recurses with 4 KiB frames until the stack runs out (the kernel's guard
/// gap: SIGSEGV). `black_box` keeps the frames and the recursion real.
#[cfg(feature = "test-hooks")]
#[inline(never)]
fn overflow(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 4096]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    overflow(depth + 1).wrapping_add(u64::from(frame.iter().fold(0u8, |a, b| a ^ b)))
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Initramfs => "from the initramfs, switch_root",
        Mode::Pivot => "on the kernel's root, pivot_root",
    }
}

/// The stages after the modules, up to the path of the init to exec.
fn run(boot: &mut Boot) -> Result<String, BootError> {
    boot.mount_lowers()?;
    boot.setup_upper();
    let stay = boot.mode == Mode::Pivot && matches!(boot.state.upper, Upper::None { .. });
    if stay {
        crate::info!(
            "no overlay: starting {} on the kernel's root as it is",
            boot.cfg.init
        );
    } else {
        boot.assemble()?;
        boot.switch()?;
    }
    install_tools(boot);
    if !boot.is_failsafe() {
        for line in boot.ram_banner() {
            crate::warn!("{line}");
        }
    }
    boot.finish_recovery();
    // The tools, the banner and the recovery's last records count too: the
    // total runs from the first clock read to here, the state's write and
    // the execve of the real init (microseconds) being all that follows.
    boot.stage_done("finish");
    let total: Duration = boot.state.total();
    let stages: Vec<String> = boot
        .state
        .stages
        .iter()
        .map(|(n, d)| format!("{n} {}", Millis(*d)))
        .collect();
    crate::detail!(
        "pre-init done in {} ms ({} ms); starting {}",
        Millis(total),
        stages.join(", "),
        boot.cfg.init
    );
    log_floor(total);
    write_state(boot);

    Ok(boot.cfg.init.clone())
}

/// argv and envp for the real init: `path`, then the words the kernel
/// passed to init (`single`, what follows `--`), and the environment the
/// kernel gave init (HOME, TERM, its unknown key=value words), all as the
/// bytes they are. The kernel passes the command line's bytes unchecked: a
/// word need not be UTF-8 (std::env::args() panicked on one: issue 11
/// defect 2), and the real init gets exactly what it would have got.
/// A word cannot hold a NUL (it came from a C string); one would be dropped.
pub fn init_words(
    path: &str,
    args: impl IntoIterator<Item = OsString>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> (Vec<CString>, Vec<CString>) {
    let argv = std::iter::once(path.as_bytes().to_vec())
        .chain(args.into_iter().map(OsString::into_vec))
        .filter_map(|w| CString::new(w).ok())
        .collect();
    let envp = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    (argv, envp)
}

/// Where the pre-init's time went: the kernel's part (mounts, module loads,
/// moves), children (mkfs, e2fsck), waiting for devices, and the rest, our
/// own work. The benchmark (qemu/bench.sh) reads this line.
fn log_floor(total: Duration) {
    use crate::sys::linux::{spent, Spent};
    let kinds = [
        (Spent::Mount, "mounts"),
        (Spent::Module, "module loads"),
        (Spent::Switch, "moves"),
        (Spent::Child, "children"),
        (Spent::Wait, "device waits"),
        (Spent::InitRead, "reading the init"),
    ];
    let mut inside = Duration::ZERO;
    let parts: Vec<String> = kinds
        .iter()
        .map(|&(k, name)| {
            let (t, n) = spent(k);
            inside = inside.saturating_add(t);
            format!("{name} {} ms ({n})", Millis(t))
        })
        .collect();
    crate::detail!(
        "time in syscalls and children: {}; own work {} ms",
        parts.join(", "),
        Millis(total.saturating_sub(inside))
    );
}

/// A field of /proc/self/status in kB: `VmHWM` (peak resident memory so
/// far) or `VmStk` (the stack mapping, which grows with the deepest use
/// and never shrinks: the peak stack).
fn status_kb(field: &str) -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

/// A `kB` field of a `/proc/PID/status` text: `VmHWM:\t     452 kB`, the
/// first word after the colon (one parser for both readers, and no
/// substring searcher for a `trim_end_matches("kB")`).
pub(crate) fn kb_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Puts this binary at /run/overlay-init/bin/overlay-init, with the
/// `overlay-status`, `overlay-reset` and `overlay-wear-monitor` links, so
/// that the commands exist whatever the root filesystem ships.
///
/// Where the binary stays reachable after the switch (started as `init=`
/// on a real root: it is under /rom now, or on the root itself), a symlink
/// to it: nothing copied, no RAM spent. From an initramfs, which the switch
/// has freed (`/proc/self/exe` says "(deleted)"), a copy: sendfile(2) from
/// `/proc/self/exe`, in the kernel.
fn install_tools(boot: &mut Boot) {
    let dir = Path::new(paths::RUN_BIN_DIR);
    let result = install_binary(dir).and_then(|()| {
        for link in ["overlay-status", "overlay-reset", "overlay-wear-monitor"] {
            let l = dir.join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink("overlay-init", l)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        let msg = format!(
            "cannot install overlay-status in {}: {e}",
            paths::RUN_BIN_DIR
        );
        crate::warn!("{msg}");
        boot.state.warnings.push(msg);
    }
}

/// `dir/overlay-init`: a link to the running binary's file when the
/// current root reaches it (same device and inode), else a copy.
fn install_binary(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    // /run/overlay-init exists (the upper stage made it); EEXIST is fine.
    let _ = rustix::fs::mkdir(Path::new(paths::RUN_DIR), Mode::from_raw_mode(0o755));
    let _ = rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755));
    let bin = dir.join("overlay-init");
    let _ = std::fs::remove_file(&bin);
    let exe = rustix::fs::open(
        Path::new("/proc/self/exe"),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&exe)?;
    if let Ok(path) = rustix::fs::readlink("/proc/self/exe", Vec::new()) {
        let same = rustix::fs::stat(path.as_c_str())
            .is_ok_and(|p| p.st_dev == st.st_dev && p.st_ino == st.st_ino);
        if same && path.as_bytes().starts_with(b"/") {
            return std::os::unix::fs::symlink(OsStr::from_bytes(path.as_bytes()), &bin);
        }
    }
    let out = rustix::fs::open(
        bin.as_path(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o755),
    )?;
    let mut left = u64::try_from(st.st_size).unwrap_or(0);
    while left > 0 {
        let n = rustix::fs::sendfile(&out, &exe, None, usize::try_from(left).unwrap_or(1 << 20))?;
        if n == 0 {
            break;
        }
        left = left.saturating_sub(n as u64);
    }
    Ok(())
}

/// Writes the state file atomically in /run (fsio's one atomic write:
/// temp file, fsync, rename), readable by everyone (applications read
/// `persistent=`).
fn write_state(boot: &Boot) {
    use rustix::fs::{Mode, OFlags};
    // /run/overlay-init exists (the upper stage made it); EEXIST is fine.
    let _ = rustix::fs::mkdir(Path::new(paths::RUN_DIR), Mode::from_raw_mode(0o755));
    let r = rustix::fs::open(
        Path::new(paths::RUN_DIR),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| crate::fsio::RecordIoError::Io { step: "open", err })
    .and_then(|dir| {
        crate::fsio::write_atomic_mode(
            std::os::fd::AsFd::as_fd(&dir),
            "state",
            boot.state.render().as_bytes(),
            crate::state::MAX_STATE,
            0o644,
        )
    });
    if let Err(e) = r {
        crate::warn!("cannot write {}: {e}", paths::STATE_FILE);
    }
}

/// Leaves the process as the kernel would start an init: no zombies of
/// ours, default signal dispositions and nothing blocked, only fds 0-2
/// across the exec; then execs `path` with our argv and environment as
/// bytes ([`init_words`]), plus `FAILSAFE=1` in a failsafe boot (OpenWrt's
/// procd reads it). Returns only if exec failed.
pub fn hand_over(sys: &dyn Sys, path: &str, failsafe: bool) -> std::io::Error {
    sys.reap_children();
    // The resources PID 1 lives within (README, "Robustness").
    if let (Some(hwm), Some(stk)) = (status_kb("VmHWM"), status_kb("VmStk")) {
        crate::detail!("peak memory (VmHWM) {hwm} kB, stack {stk} kB; exec {path}");
    }
    let (argv, mut envp) = init_words(path, std::env::args_os().skip(1), std::env::vars_os());
    if failsafe {
        crate::recovery::failsafe::add_env(&mut envp);
    }
    let Ok(file) = CString::new(path) else {
        return std::io::Error::from(std::io::ErrorKind::InvalidInput);
    };
    sys.reset_signals();
    sys.cloexec_stray_fds();
    sys.exec(&file, &argv, &envp)
}

/// The end of a boot that cannot go on: log, sync, emergency shell if the
/// current root has one, then reboot after `delay`. Never returns.
pub fn fatal(sys: &dyn Sys, delay: Duration, msg: &str) -> ! {
    crate::error!("FATAL: {msg}");
    sys.sync();
    if Path::new("/bin/sh").exists() {
        crate::error!(
            "starting an emergency shell on the console; the system reboots when it exits"
        );
        let mut own_terminal = || {
            let _ = rustix::process::setsid();
            let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
            Ok(())
        };
        // SAFETY: PID 1 is single-threaded; setsid and the TIOCSCTTY ioctl
        // are async-signal-safe raw syscalls.
        let sh = unsafe { Program::new("/bin/sh").status(Some(&mut own_terminal)) };
        if let Err(e) = sh {
            crate::error!("cannot start /bin/sh: {e}");
        }
        sys.sync();
    } else {
        crate::error!(
            "no emergency shell here; rebooting in {} s",
            delay.as_secs()
        );
        sys.sleep(delay);
    }
    let err = sys.reboot();
    crate::error!("reboot failed: {err}; halting here");
    loop {
        sys.sleep(Duration::from_secs(3600));
    }
}

/// Seconds to wait before the reboot that ends a fault (the kernel's `panic=`).
static FAULT_DELAY_SECS: AtomicU32 =
    AtomicU32::new(crate::config::DEFAULT_FATAL_DELAY.as_secs() as u32);

/// The ARM binary is built with `-C panic=immediate-abort` (qemu/build-binary.sh;
/// it saves ~40 KiB of panic formatting), so a panic, which clippy's lints
/// should make impossible, is a trap instruction: SIGILL, no panic hook.
/// Without a handler the kernel would panic ("Attempted to kill init") and,
/// with the default `panic=0`, hang for ever. This handler keeps PID 1's
/// promise instead, the documented fatal path: a line on the console and in
/// dmesg, sync, an emergency shell if the root has `/bin/sh`, else the
/// `panic=` delay; then reboot. Only raw syscalls run in it
/// (async-signal-safe: no lock, no allocation, no std state).
///
/// It runs on a stack of its own ([`ALT_STACK`], sigaltstack(2) +
/// SA_ONSTACK): a stack overflow leaves no stack to run a handler on, and
/// a fault signal the kernel cannot deliver kills the task, which for PID 1
/// is a kernel panic (issue 11 defect 12). Installed first thing in
/// [`main`] (after one clock read), before the arguments are read.
fn install_fault_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let stack = nix::libc::stack_t {
        ss_sp: ALT_STACK.0.get().cast(),
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: the memory is a static reserved for this one use, alive for
    // the whole process; the kernel only writes signal frames into it.
    let _ = unsafe { nix::libc::sigaltstack(&stack, std::ptr::null_mut()) };
    let act = SigAction::new(
        SigHandler::Handler(on_fault),
        SaFlags::SA_RESETHAND | SaFlags::SA_ONSTACK,
        SigSet::all(),
    );
    for sig in [
        Signal::SIGILL,
        Signal::SIGABRT,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        // SAFETY: on_fault only makes raw syscalls and reads an atomic; it
        // touches no lock, allocator or std state.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// Size of the fault handler's stack. The handler needs well under 1 KiB
/// (a 160-byte record, a few syscalls); the kernel wants at least
/// MINSIGSTKSZ (2 KiB on ARM) plus room for its signal frame (with the
/// VFP registers). In .bss: it costs no file size and, untouched, no RAM.
const ALT_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct AltStack(std::cell::UnsafeCell<[u8; ALT_STACK_SIZE]>);

// SAFETY: only the kernel writes it (signal frames); no Rust code takes a
// reference to its contents.
unsafe impl Sync for AltStack {}

static ALT_STACK: AltStack = AltStack(std::cell::UnsafeCell::new([0; ALT_STACK_SIZE]));

extern "C" fn on_fault(sig: nix::libc::c_int) {
    let what: &[u8] = match sig {
        nix::libc::SIGILL => b"SIGILL: a panic or an illegal instruction",
        nix::libc::SIGABRT => b"SIGABRT: abort",
        nix::libc::SIGSEGV => b"SIGSEGV: bad memory access or stack overflow",
        nix::libc::SIGBUS => b"SIGBUS: bus error",
        nix::libc::SIGFPE => b"SIGFPE: arithmetic fault",
        nix::libc::SIGSYS => b"SIGSYS: bad system call",
        _ => b"a fault signal",
    };
    fault_line(&[
        b"overlay-init: FATAL: internal fault (",
        what,
        b"); syncing, then the emergency shell or a reboot after the panic= delay\n",
    ]);
    rustix::fs::sync();
    if emergency_shell_in_fault() {
        fault_line(&[b"overlay-init: the emergency shell exited: rebooting\n"]);
        rustix::fs::sync();
    } else {
        // sleep(3) is async-signal-safe (POSIX).
        let _ = nix::unistd::sleep(FAULT_DELAY_SECS.load(Ordering::Relaxed));
    }
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        let _ = nix::unistd::sleep(3600);
    }
}

/// Writes one line as one record at level "crit" to /dev/kmsg, which the
/// kernel echoes on the console (console_loglevel is above 2 unless
/// `loglevel=` said otherwise), or, without /dev/kmsg, to the console (fd
/// 2) ourselves. Raw syscalls and a stack buffer only.
fn fault_line(parts: &[&[u8]]) {
    if let Ok(kmsg) = rustix::fs::open(
        Path::new("/dev/kmsg"),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        // One write is one record: assemble it on the stack.
        let mut rec = [0u8; 192];
        let mut n = 0;
        for p in std::iter::once(b"<2>".as_slice()).chain(parts.iter().copied()) {
            for &b in p {
                if let Some(slot) = rec.get_mut(n) {
                    *slot = b;
                    n += 1;
                }
            }
        }
        if rustix::io::write(&kmsg, rec.get(..n).unwrap_or_default()).is_ok() {
            return;
        }
    }
    // SAFETY: fd 2 is the console that PID 1 was given; a write to a closed
    // fd just fails.
    let console = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
    for p in parts {
        let _ = rustix::io::write(console, p);
    }
}

/// The fatal path's emergency shell, from inside the fault handler: when
/// `/bin/sh` exists, a raw fork (clone(SIGCHLD): libc's fork(3) takes the
/// allocator's lock, which the fault may have left held), the child gets
/// its own session with the console as its terminal, no blocked signal, a
/// minimal environment, and execs /bin/sh; we reap children until it has
/// exited. Whether a shell ran.
fn emergency_shell_in_fault() -> bool {
    use nix::libc;
    let sh = c"/bin/sh".as_ptr();
    // SAFETY: access(2) reads a NUL-terminated static string.
    if unsafe { libc::access(sh, libc::X_OK) } != 0 {
        return false;
    }
    fault_line(&[b"overlay-init: starting an emergency shell on the console; the system reboots when it exits\n"]);
    // SAFETY: a raw clone without a new stack is fork(2) without libc's
    // atfork work; the child only makes raw syscalls before execve/_exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    if pid < 0 {
        return false;
    }
    if pid == 0 {
        let argv: [*const libc::c_char; 2] = [sh, std::ptr::null()];
        let envp: [*const libc::c_char; 4] = [
            c"HOME=/".as_ptr(),
            c"TERM=linux".as_ptr(),
            c"PATH=/sbin:/bin:/usr/sbin:/usr/bin".as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: raw syscalls in the child on NUL-terminated statics and
        // arrays that end with a null pointer; _exit never returns.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            libc::execve(sh, argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes the status into a local.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid as libc::pid_t || r < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR
        {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    /// Before the exec: no zombies, default signals, only fds 0-2; then the
    /// init with `FAILSAFE=1` in a failsafe boot (what the kernel passed on
    /// replaced).
    #[test]
    fn the_hand_over_goes_through_sys_in_order() {
        use crate::sys::fake::{Call, FakeSys};
        let sys = FakeSys::default();
        let _ = super::hand_over(&sys, "/sbin/init", true);
        let calls = sys.calls();
        assert_eq!(
            calls[..3],
            [
                Call::ReapChildren,
                Call::ResetSignals,
                Call::CloexecStrayFds
            ]
        );
        let Call::Exec { path, argv, envp } = &calls[3] else {
            panic!("{calls:?}")
        };
        assert_eq!(path, b"/sbin/init");
        assert_eq!(argv[0], b"/sbin/init");
        assert_eq!(
            envp.iter().filter(|e| e.starts_with(b"FAILSAFE=")).count(),
            1
        );
        assert_eq!(envp.last().unwrap(), b"FAILSAFE=1");
        let sys = FakeSys::default();
        let _ = super::hand_over(&sys, "/sbin/init", false);
        let Call::Exec { envp, .. } = &sys.calls()[3] else {
            panic!()
        };
        assert!(!envp.iter().any(|e| e == b"FAILSAFE=1"));
    }

    use super::*;

    fn os(b: &[u8]) -> OsString {
        OsString::from_vec(b.to_vec())
    }

    /// Issue 11 defect 2: a word that is not UTF-8 reaches the real init
    /// byte for byte, in argv and in the environment.
    #[test]
    fn init_gets_argv_and_envp_as_bytes() {
        let (argv, envp) = init_words(
            "/sbin/init",
            [os(b"single"), os(b"caf\xe9"), os(b"")],
            [
                (os(b"HOME"), os(b"/")),
                (os(b"x\xff"), os(b"v\xfe=w")),
                (os(b"TERM"), os(b"linux")),
            ],
        );
        let bytes = |v: &[CString]| v.iter().map(|c| c.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            bytes(&argv),
            [
                b"/sbin/init".to_vec(),
                b"single".to_vec(),
                b"caf\xe9".to_vec(),
                b"".to_vec()
            ]
        );
        assert_eq!(
            bytes(&envp),
            [
                b"HOME=/".to_vec(),
                b"x\xff=v\xfe=w".to_vec(),
                b"TERM=linux".to_vec()
            ]
        );
    }

    #[test]
    fn a_word_with_a_nul_is_dropped_not_fatal() {
        let (argv, envp) = init_words("/init", [os(b"a\0b"), os(b"c")], [(os(b"K"), os(b"\0"))]);
        assert_eq!(argv.len(), 2);
        assert_eq!(argv[1].as_bytes(), b"c");
        assert!(envp.is_empty());
    }

    /// The real process's arguments, whatever they are, can be read as
    /// bytes without a panic (std::env::args() panics on a non-UTF-8 word).
    #[test]
    fn the_process_arguments_are_read_as_bytes() {
        let (argv, _) = init_words(
            "/sbin/init",
            std::env::args_os().skip(1),
            std::env::vars_os(),
        );
        assert!(!argv.is_empty());
    }
}
