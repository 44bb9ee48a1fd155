//! Running as PID 1: the boot from start to the exec of the real init, the
//! fatal path, and a clean hand-over.
//!
//! PID 1 must never exit or panic (the kernel panics when init dies): every
//! failure ends in [`fatal`], which logs, syncs, offers an emergency shell if
//! the current root has one, and reboots.

use crate::boot::{Boot, InitExec, Mode};
use crate::error::BootError;
use crate::kmsg;
use crate::paths::{self, SysRoot};
use crate::state::{Millis, Upper};
use crate::sys::linux::LinuxSys;
use crate::sys::spawn::Program;
use crate::sys::Sys;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The pre-init. Never returns.
pub fn main() -> ! {
    let sys = LinuxSys;
    install_fault_handler();
    kmsg::init("overlay-init", log::LevelFilter::Debug);
    let root = SysRoot::host();
    // CLOCK_MONOTONIC counts from the kernel's start.
    let started_at = sys.now();
    let mode = Mode::from_root_magic(sys.fs_magic(Path::new("/")).unwrap_or(0));
    let mut boot = Boot::new(&sys, root.clone(), mode);
    boot.state.started_at = started_at;

    let dev_ok = boot.early_mounts();
    setup_console();
    boot.read_config();
    if dev_ok {
        kmsg::reinit(&root, boot.cfg.debug);
    } else {
        kmsg::flush_early_to_console();
    }
    log::info!(
        "overlay-init {} ({}), started {} ms after the kernel",
        env!("CARGO_PKG_VERSION"),
        mode_name(mode),
        Millis(started_at)
    );
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    boot.load_modules(&release);

    let delay = boot.cfg.fatal_delay;
    FAULT_DELAY_SECS.store(
        u32::try_from(delay.as_secs()).unwrap_or(u32::MAX),
        Ordering::Relaxed,
    );
    match run(&mut boot) {
        Ok(init) => {
            let err = hand_over(&sys, &init);
            fatal(
                &sys,
                delay,
                &BootError::Exec {
                    init: init.path,
                    err,
                }
                .to_string(),
            )
        }
        Err(e) => fatal(&sys, delay, &e.to_string()),
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Initramfs => "from the initramfs, switch_root",
        Mode::Pivot => "on the kernel's root, pivot_root",
    }
}

/// The stages after the modules, up to what to exec.
fn run(boot: &mut Boot) -> Result<InitExec, BootError> {
    boot.mount_lowers()?;
    boot.setup_upper();
    let stay = boot.mode == Mode::Pivot && matches!(boot.state.upper, Upper::None { .. });
    if stay {
        log::info!(
            "no overlay: starting {} on the kernel's root as it is",
            boot.cfg.init
        );
    } else {
        boot.assemble()?;
        boot.switch()?;
    }
    install_tools(boot);
    for line in boot.ram_banner() {
        log::warn!("{line}");
    }
    let total: Duration = boot.state.total();
    let stages: Vec<String> = boot
        .state
        .stages
        .iter()
        .map(|(n, d)| format!("{n} {}", Millis(*d)))
        .collect();
    log::info!(
        "pre-init done in {} ms ({} ms); starting {}",
        Millis(total),
        stages.join(", "),
        boot.cfg.init
    );
    log_floor(total);
    write_state(boot);

    // The words the kernel passed to init (`single`, what follows `--`) go on.
    let mut argv = vec![boot.cfg.init.clone()];
    argv.extend(std::env::args().skip(1));
    // The environment the kernel gave init (HOME, TERM, its unknown key=value
    // words), passed on as it is: the real init gets what it would have got.
    // vars_os: std::env::vars() panics on a word that is not UTF-8, and the
    // kernel passes the command line's bytes as they are.
    let envp = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    Ok(InitExec {
        path: boot.cfg.init.clone(),
        argv,
        envp,
    })
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
    log::info!(
        "time in syscalls and children: {}; own work {} ms",
        parts.join(", "),
        Millis(total.saturating_sub(inside))
    );
}

/// Peak memory of this process so far (VmHWM in /proc/self/status), in kB.
fn peak_memory_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Copies this binary into /run so that `overlay-status` works in any root
/// filesystem, even one that does not ship it.
fn install_tools(boot: &mut Boot) {
    let dir = Path::new(paths::RUN_BIN_DIR);
    let bin = dir.join("overlay-init");
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::copy("/proc/self/exe", &bin))
        .and_then(|_| {
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
        log::warn!("{msg}");
        boot.state.warnings.push(msg);
    }
}

/// Writes the state file atomically (write, rename) in /run.
fn write_state(boot: &Boot) {
    let tmp = format!("{}.tmp", paths::STATE_FILE);
    let r = std::fs::create_dir_all(paths::RUN_DIR)
        .and_then(|()| std::fs::write(&tmp, boot.state.render()))
        .and_then(|()| std::fs::rename(&tmp, paths::STATE_FILE));
    if let Err(e) = r {
        log::warn!("cannot write {}: {e}", paths::STATE_FILE);
    }
}

/// stdin/stdout/stderr on /dev/console (the kernel opens it for init only
/// when the initramfs has the node; devtmpfs always has it).
fn setup_console() {
    let Ok(c) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(paths::DEV_CONSOLE)
    else {
        return;
    };
    let _ = rustix::stdio::dup2_stdin(&c);
    let _ = rustix::stdio::dup2_stdout(&c);
    let _ = rustix::stdio::dup2_stderr(&c);
}

/// Leaves the process as the kernel would start an init: default signal
/// dispositions, nothing blocked, only fds 0-2 across exec, no zombies of
/// ours left behind; then execs. Returns only if exec failed.
fn hand_over(sys: &dyn Sys, init: &InitExec) -> std::io::Error {
    reap_children();
    if let Some(kb) = peak_memory_kb() {
        log::info!("peak memory (VmHWM) {kb} kB; exec {}", init.path);
    }
    reset_signals();
    cloexec_stray_fds();
    sys.exec(&init.path, &init.argv, &init.envp)
}

fn reap_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code; nothing else runs
        // concurrently (single-threaded, about to exec).
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Marks every fd above 2 close-on-exec (closing would pull files from
/// under std's owners; CLOEXEC has the same effect at exec).
fn cloexec_stray_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: the fd number came from /proc/self/fd; it is only borrowed
        // for one fcntl call, and an fd closed meanwhile just fails with EBADF.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC);
    }
}

/// The end of a boot that cannot go on: log, sync, emergency shell if the
/// current root has one, then reboot after `delay`. Never returns.
pub fn fatal(sys: &dyn Sys, delay: Duration, msg: &str) -> ! {
    log::error!("FATAL: {msg}");
    sys.sync();
    if Path::new("/bin/sh").exists() {
        log::error!("starting an emergency shell on the console; the system reboots when it exits");
        let mut own_terminal = || {
            let _ = rustix::process::setsid();
            let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
            Ok(())
        };
        // SAFETY: PID 1 is single-threaded; setsid and the TIOCSCTTY ioctl
        // are async-signal-safe raw syscalls.
        let sh = unsafe { Program::new("/bin/sh").status(Some(&mut own_terminal)) };
        if let Err(e) = sh {
            log::error!("cannot start /bin/sh: {e}");
        }
        sys.sync();
    } else {
        log::error!(
            "no emergency shell here; rebooting in {} s",
            delay.as_secs()
        );
        sys.sleep(delay);
    }
    let err = sys.reboot();
    log::error!("reboot failed: {err}; halting here");
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
/// promise instead: a line on the console and in dmesg, sync, then reboot
/// after the `panic=` delay. Only raw syscalls run in it (async-signal-safe).
fn install_fault_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_fault),
        SaFlags::SA_RESETHAND,
        SigSet::all(),
    );
    for sig in [
        Signal::SIGILL,
        Signal::SIGABRT,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGTRAP,
    ] {
        // SAFETY: on_fault only makes raw syscalls through rustix and reads an
        // atomic; it touches no lock, allocator or std state.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

extern "C" fn on_fault(sig: nix::libc::c_int) {
    let what: &[u8] = match sig {
        nix::libc::SIGILL => b"SIGILL: a panic or an illegal instruction",
        nix::libc::SIGABRT => b"SIGABRT: abort",
        nix::libc::SIGSEGV => b"SIGSEGV: bad memory access or stack overflow",
        nix::libc::SIGBUS => b"SIGBUS: bus error",
        nix::libc::SIGFPE => b"SIGFPE: arithmetic fault",
        _ => b"a fault signal",
    };
    let parts: [&[u8]; 3] = [
        b"overlay-init: FATAL: internal fault (",
        what,
        b"); syncing and rebooting after the panic= delay\n",
    ];
    // SAFETY: fd 2 is the console that PID 1 was given; a write to a closed
    // fd just fails.
    let console = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
    for p in parts {
        let _ = rustix::io::write(console, p);
    }
    if let Ok(kmsg) = rustix::fs::open(
        "/dev/kmsg",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        // One write is one record: assemble it on the stack.
        let mut rec = [0u8; 160];
        let mut n = 0;
        for p in [b"<2>".as_slice(), parts[0], what, parts[2]] {
            for &b in p {
                if let Some(slot) = rec.get_mut(n) {
                    *slot = b;
                    n += 1;
                }
            }
        }
        let _ = rustix::io::write(&kmsg, rec.get(..n).unwrap_or_default());
    }
    rustix::fs::sync();
    let secs = FAULT_DELAY_SECS.load(Ordering::Relaxed);
    // sleep(3) is async-signal-safe (POSIX).
    let _ = nix::unistd::sleep(secs);
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
}
