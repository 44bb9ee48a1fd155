//! The real [`Sys`]: thin wrappers over rustix (and std's process spawning).

use super::flash_abi as abi;
use super::spawn::Program;
use super::{Command, FlashIo, MountFlags, MtdGeometry, Sys};
use rustix::fs::{Mode, StatVfsMountFlags};
use rustix::mount::{MountFlags as MsFlags, UnmountFlags};
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The system as it is.
pub struct LinuxSys;

/// What kind of kernel work a call is, for the time accounts below.
#[derive(Clone, Copy)]
pub enum Spent {
    /// mount(2) of a filesystem, bind mounts, umount(2).
    Mount = 0,
    /// finit_module(2), with the open of the .ko.
    Module = 1,
    /// Moving into the new root: MS_MOVE mounts, chroot, pivot_root.
    Switch = 2,
    /// Child programs (mkfs, e2fsck), from fork to exit.
    Child = 3,
    /// Sleeping while waiting for a device.
    Wait = 4,
    /// Opening and reading the head of the real init in the new root (the
    /// check that it can run): from a compressed lower the kernel
    /// decompresses the init's first blocks here (57 ms instruction-counted
    /// for busybox on xz), which its exec then finds in the page cache.
    InitRead = 5,
}

/// Time (µs) and number of calls per [`Spent`] kind, since the start. They
/// show the floor of a boot, the time the kernel and the children take, and
/// so how much the pre-init itself adds (issue 5's benchmark reads them from
/// the log).
static SPENT_US: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static SPENT_N: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// `f`, timed as [`Spent::InitRead`].
pub fn reading_the_init<T>(f: impl FnOnce() -> T) -> T {
    timed(Spent::InitRead, f)
}

fn timed<T>(kind: Spent, f: impl FnOnce() -> T) -> T {
    let t0 = monotonic();
    let r = f();
    account(kind, t0);
    r
}

/// The accounting of [`timed`], once in the binary rather than in each of
/// its instances (one per call site).
#[inline(never)]
fn account(kind: Spent, t0: Duration) {
    let d = monotonic().saturating_sub(t0);
    // The u128 of as_micros(), saturated, without 128-bit arithmetic.
    let us = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()));
    if let (Some(t), Some(n)) = (SPENT_US.get(kind as usize), SPENT_N.get(kind as usize)) {
        t.fetch_add(us, Ordering::Relaxed);
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// (µs, calls) spent so far in `kind`.
pub fn spent(kind: Spent) -> (Duration, u64) {
    let get = |a: &[AtomicU64; 6]| {
        a.get(kind as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    };
    (Duration::from_micros(get(&SPENT_US)), get(&SPENT_N))
}

/// musl's `clock_gettime` (through the vDSO when there is one), not
/// rustix's: rustix finds the vDSO with `getauxval`, which it looks up with
/// `dlsym`; a static binary has no `dlsym`, only musl's stub, whose error
/// message drags printf in (~7 KiB). It then fell back to the syscall.
/// (The libc crate's armv7 musl `timespec` has a 32-bit `time_t`: musl's
/// time32 entry point, good for 68 years of uptime.) CLOCK_MONOTONIC cannot
/// fail; zero if it ever did.
fn monotonic() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let Ok(t) = clock_gettime(ClockId::CLOCK_MONOTONIC) else {
        return Duration::ZERO;
    };
    Duration::new(
        u64::try_from(t.tv_sec()).unwrap_or(0),
        u32::try_from(t.tv_nsec()).unwrap_or(0),
    )
}

fn ms_flags(f: MountFlags) -> MsFlags {
    let mut ms = MsFlags::empty();
    if f.readonly {
        ms |= MsFlags::RDONLY;
    }
    if f.noatime {
        ms |= MsFlags::NOATIME;
    }
    if f.nosuid {
        ms |= MsFlags::NOSUID;
    }
    if f.nodev {
        ms |= MsFlags::NODEV;
    }
    if f.noexec {
        ms |= MsFlags::NOEXEC;
    }
    ms
}

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        timed(Spent::Mount, || {
            rustix::mount::mount(source, target, fstype, ms_flags(flags), data)
        })
        .map_err(os)
    }

    fn mount_bind(&self, from: &Path, to: &Path) -> io::Result<()> {
        timed(Spent::Mount, || rustix::mount::mount_bind(from, to)).map_err(os)
    }

    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        timed(Spent::Switch, || rustix::mount::mount_move(from, to)).map_err(os)
    }

    fn remount(&self, target: &Path, flags: MountFlags) -> io::Result<()> {
        timed(Spent::Mount, || {
            rustix::mount::mount_remount(target, ms_flags(flags), "")
        })
        .map_err(os)
    }

    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()> {
        let flags = if detach {
            UnmountFlags::DETACH
        } else {
            UnmountFlags::empty()
        };
        timed(Spent::Mount, || rustix::mount::unmount(target, flags)).map_err(os)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) if path.is_dir() => Ok(()),
            Err(e) => Err(os(e)),
        }
    }

    fn load_module(&self, path: &Path) -> io::Result<()> {
        // Modules compressed by the kernel build are decompressed by the kernel itself
        // when asked to (MODULE_INIT_COMPRESSED_FILE, Linux 6.0+).
        const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
        let name = path.to_string_lossy();
        let flags = if name.ends_with(".ko") {
            0
        } else {
            MODULE_INIT_COMPRESSED_FILE
        };
        timed(Spent::Module, || {
            let file = std::fs::File::open(path)?;
            match rustix::system::finit_module(&file, c"", flags) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                Err(e) => Err(os(e)),
            }
        })
    }

    fn run(&self, cmd: &Command) -> io::Result<i32> {
        let (prog, args) = cmd
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let p = Program::new(prog)
            .args(args)
            .env([("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]);
        let root = match &cmd.chroot {
            Some(root) => Some(
                CString::new(root.as_os_str().as_encoded_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?,
            ),
            None => None,
        };
        let mut enter = || -> io::Result<()> {
            if let Some(root) = &root {
                rustix::process::chroot(root.as_c_str()).map_err(os)?;
                rustix::process::chdir(c"/").map_err(os)?;
            }
            Ok(())
        };
        let hook: Option<&mut dyn FnMut() -> io::Result<()>> = if cmd.chroot.is_some() {
            Some(&mut enter)
        } else {
            None
        };
        // SAFETY: PID 1 is single-threaded; the hook runs in the forked child
        // before exec and only makes the raw chroot/chdir syscalls, which are
        // async-signal-safe.
        let status = timed(Spent::Child, || unsafe { p.status(hook) })?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn is_readonly(&self, path: &Path) -> io::Result<bool> {
        let st = rustix::fs::statvfs(path).map_err(os)?;
        Ok(st.f_flag.contains(StatVfsMountFlags::RDONLY))
    }

    fn fs_space(&self, path: &Path) -> io::Result<(u64, u64)> {
        let st = rustix::fs::statvfs(path).map_err(os)?;
        let unit = st.f_frsize.max(1);
        Ok((
            st.f_bavail.saturating_mul(unit),
            st.f_blocks.saturating_mul(unit),
        ))
    }

    fn fs_magic(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::statfs(path).map_err(os)?;
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Ok(st.f_type as u64)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        rustix::process::chdir(path).map_err(os)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        timed(Spent::Switch, || rustix::process::chroot(path)).map_err(os)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        timed(Spent::Switch, || {
            rustix::process::pivot_root(new_root, put_old)
        })
        .map_err(os)
    }

    fn remove_tree_same_fs(&self, dir: &Path) -> io::Result<()> {
        let dev = std::fs::symlink_metadata(dir)?.dev();
        remove_children(dir, dev)
    }

    fn background(&self, job: &mut dyn FnMut()) -> io::Result<()> {
        // SAFETY: the pre-init is single-threaded, so the child gets a
        // consistent copy of all state; it never returns into the caller.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Parent { .. } => Ok(()),
            nix::unistd::ForkResult::Child => {
                // The parent is about to move /dev away: keep kmsg reachable.
                crate::kmsg::hold_kmsg();
                // Not the watchdog: the child neither feeds it nor keeps
                // it open past the hand-over (recovery/watchdog.rs).
                crate::recovery::watchdog::leave_in_child();
                let _ = rustix::process::setpriority_process(None, 19);
                job();
                std::process::exit(0)
            }
        }
    }

    fn exec(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
        match nix::unistd::execve(path, argv, envp) {
            Err(e) => e.into(),
            Ok(never) => match never {},
        }
    }

    fn reap_children(&self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
    }

    fn reset_signals(&self) {
        use nix::sys::signal::{
            sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
        };
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        for sig in Signal::iterator() {
            if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
                continue;
            }
            // SAFETY: installing SIG_DFL runs no handler code; nothing else
            // runs concurrently (single-threaded, about to exec).
            let _ = unsafe { sigaction(sig, &dfl) };
        }
        let _ =
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    }

    fn cloexec_stray_fds(&self) {
        let Ok(names) = crate::fsio::dir_names(Path::new("/proc/self/fd")) else {
            return;
        };
        let fds: Vec<i32> = names
            .iter()
            .filter_map(|n| n.to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: the fd number came from /proc/self/fd; it is only
            // borrowed for one fcntl call, and an fd closed meanwhile just
            // fails with EBADF.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC);
        }
    }

    fn console_stdio(&self) {
        let Ok(c) = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
        else {
            return;
        };
        let _ = rustix::stdio::dup2_stdin(&c);
        let _ = rustix::stdio::dup2_stdout(&c);
        let _ = rustix::stdio::dup2_stderr(&c);
    }

    fn kernel_release(&self) -> String {
        rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned()
    }

    fn now(&self) -> Duration {
        monotonic()
    }

    fn sleep(&self, d: Duration) {
        // Every device wait sleeps here: the watchdog is fed around it.
        crate::recovery::watchdog::feed();
        timed(Spent::Wait, || std::thread::sleep(d));
        crate::recovery::watchdog::feed();
    }

    fn sync(&self) {
        rustix::fs::sync();
    }

    fn reboot(&self) -> io::Error {
        match rustix::system::reboot(rustix::system::RebootCommand::Restart) {
            Ok(()) => io::Error::other("reboot returned"),
            Err(e) => os(e),
        }
    }
}

impl FlashIo for LinuxSys {
    fn mtd_geometry(&self, dev: &Path) -> io::Result<MtdGeometry> {
        let f = File::open(dev)?;
        let mut info = abi::MtdInfoUser::default();
        // SAFETY: MEMGETINFO writes one `struct mtd_info_user` (32 bytes, the
        // layout checked in flash_abi) through the pointer, which points to a
        // live, writable value of that type; `f` stays open for the call.
        unsafe { abi::memgetinfo(f.as_raw_fd(), &mut info) }.map_err(io::Error::from)?;
        Ok(MtdGeometry {
            kind: info.kind,
            writeable: info.flags & abi::MTD_WRITEABLE != 0,
            size: u64::from(info.size),
            erasesize: info.erasesize,
            writesize: info.writesize,
        })
    }

    fn mtd_is_bad(&self, dev: &Path, offset: u64) -> io::Result<bool> {
        let f = File::open(dev)?;
        let off = i64::try_from(offset).map_err(|_| invalid("offset past 2^63"))?;
        // SAFETY: MEMGETBADBLOCK reads one `loff_t` (i64) through the pointer,
        // which points to `off`, alive for the call; `f` stays open.
        match unsafe { abi::memgetbadblock(f.as_raw_fd(), &off) } {
            Ok(r) => Ok(r > 0),
            // Drivers without a bad-block table (some NOR, RAM) may refuse the
            // question: no table, no bad blocks.
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOTTY) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn mtd_erase(&self, dev: &Path, offset: u64, len: u64) -> io::Result<()> {
        // mtdchar refuses MEMERASE on a descriptor not open for writing (EPERM).
        let f = OpenOptions::new().read(true).write(true).open(dev)?;
        match (
            u32::try_from(offset),
            u32::try_from(offset.saturating_add(len)),
        ) {
            (Ok(start), Ok(_)) => {
                let length = u32::try_from(len).map_err(|_| invalid("erase length past 4 GiB"))?;
                let req = abi::EraseInfoUser { start, length };
                // SAFETY: MEMERASE reads one `struct erase_info_user` through
                // the pointer, which points to `req`, alive for the call.
                unsafe { abi::memerase(f.as_raw_fd(), &req) }.map_err(io::Error::from)?;
            }
            _ => {
                let req = abi::EraseInfoUser64 {
                    start: offset,
                    length: len,
                };
                // SAFETY: MEMERASE64 reads one `struct erase_info_user64`
                // through the pointer, which points to `req`, alive for the call.
                unsafe { abi::memerase64(f.as_raw_fd(), &req) }.map_err(io::Error::from)?;
            }
        }
        Ok(())
    }

    fn mtd_write(&self, dev: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        // O_SYNC as fstools' mtd.c opens it: the write is on flash on return.
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_SYNC)
            .open(dev)?;
        f.write_all_at(data, offset)
    }

    fn ubi_attach(&self, ctrl: &Path, mtd: u32) -> io::Result<u32> {
        let f = File::open(ctrl)?;
        let mut req = abi::UbiAttachReq {
            ubi_num: abi::UBI_DEV_NUM_AUTO,
            mtd_num: i32::try_from(mtd).map_err(|_| invalid("MTD number too large"))?,
            vid_hdr_offset: 0,
            max_beb_per1024: 0,
            disable_fm: 0,
            need_resv_pool: 0,
            padding: [0; 8],
        };
        // SAFETY: UBI_IOCATT reads one `struct ubi_attach_req` (24 bytes, layout
        // checked in flash_abi) and writes the new device number back into its
        // first field (cdev.c: `put_user(err, (__user int32_t *)argp)`); the
        // pointer comes from `&mut req`, so writing through it is allowed, and
        // `req` outlives the call.
        unsafe { abi::ubi_iocatt(f.as_raw_fd(), std::ptr::addr_of_mut!(req).cast_const()) }
            .map_err(io::Error::from)?;
        u32::try_from(req.ubi_num).map_err(|_| invalid("kernel returned a negative UBI number"))
    }

    fn ubi_mkvol(&self, dev: &Path, name: &str, bytes: u64) -> io::Result<u32> {
        let (name_buf, name_len) = ubi_name(name)?;
        let mut req = abi::UbiMkvolReq {
            vol_id: abi::UBI_VOL_NUM_AUTO,
            alignment: 1,
            bytes: i64::try_from(bytes).map_err(|_| invalid("volume size past 2^63"))?,
            vol_type: abi::UBI_DYNAMIC_VOLUME,
            flags: 0,
            name_len,
            padding2: [0; 4],
            name: name_buf,
        };
        let f = File::open(dev)?;
        // SAFETY: UBI_IOCMKVOL reads one packed `struct ubi_mkvol_req` (152
        // bytes, layout checked in flash_abi; the name NUL-terminated at
        // `name_len` as verify_mkvol_req demands) and writes the volume id back
        // into its first field; the pointer comes from `&mut req`, so writing
        // through it is allowed, and `req` outlives the call.
        unsafe { abi::ubi_iocmkvol(f.as_raw_fd(), std::ptr::addr_of_mut!(req).cast_const()) }
            .map_err(io::Error::from)?;
        let id = req.vol_id;
        u32::try_from(id).map_err(|_| invalid("kernel returned a negative volume id"))
    }

    fn ubi_rename(&self, dev: &Path, vol_id: u32, name: &str) -> io::Result<()> {
        let (name_buf, name_len) = ubi_name(name)?;
        let unused = abi::UbiRnvolEnt {
            vol_id: 0,
            name_len: 0,
            padding2: [0; 2],
            name: [0; abi::UBI_MAX_VOLUME_NAME + 1],
        };
        let mut req = Box::new(abi::UbiRnvolReq {
            count: 1,
            padding1: [0; 12],
            ents: [unused; abi::UBI_MAX_RNVOL],
        });
        req.ents[0] = abi::UbiRnvolEnt {
            vol_id: i32::try_from(vol_id).map_err(|_| invalid("volume id too large"))?,
            name_len,
            padding2: [0; 2],
            name: name_buf,
        };
        let f = File::open(dev)?;
        // SAFETY: UBI_IOCRNVOL reads one packed `struct ubi_rnvol_req` (4368
        // bytes, layout checked in flash_abi; `count` entries used, each name
        // NUL-terminated at `name_len` as cdev.c `rename_volumes` demands)
        // and writes nothing back; the pointer comes from the box, alive for
        // the call.
        unsafe { abi::ubi_iocrnvol(f.as_raw_fd(), &*req) }.map_err(io::Error::from)?;
        Ok(())
    }

    fn ubi_leb_unmap(&self, vol: &Path, lnum: u32) -> io::Result<()> {
        let f = OpenOptions::new().read(true).write(true).open(vol)?;
        let lnum = i32::try_from(lnum).map_err(|_| invalid("LEB number too large"))?;
        // SAFETY: UBI_IOCEBUNMAP reads one `int32_t` through the pointer
        // (cdev.c: `get_user(lnum, (__user int32_t *)argp)`), which points to
        // `lnum`, alive for the call.
        unsafe { abi::ubi_ioc_ebunmap(f.as_raw_fd(), &lnum) }.map_err(io::Error::from)?;
        Ok(())
    }
}

/// A UBI volume name as the requests carry it: NUL-padded to 128 bytes,
/// and its length; 1-127 bytes without NUL, as UBI accepts.
fn ubi_name(name: &str) -> io::Result<([u8; abi::UBI_MAX_VOLUME_NAME + 1], i16)> {
    let mut buf = [0u8; abi::UBI_MAX_VOLUME_NAME + 1];
    let raw = name.as_bytes();
    if raw.is_empty() || raw.len() > abi::UBI_MAX_VOLUME_NAME || raw.contains(&0) {
        return Err(invalid("UBI volume name must be 1-127 bytes without NUL"));
    }
    buf.get_mut(..raw.len())
        .ok_or_else(|| invalid("UBI volume name too long"))?
        .copy_from_slice(raw);
    let len = i16::try_from(raw.len()).map_err(|_| invalid("UBI volume name too long"))?;
    Ok((buf, len))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// Unlinks everything below `dir` that lives on device `dev`; never follows
/// symlinks (lstat) and never descends into another mount (a different st_dev).
fn remove_children(dir: &Path, dev: u64) -> io::Result<()> {
    for name in crate::fsio::dir_names(dir)? {
        let path = dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            // Best effort: a directory we cannot empty stays, the rest is freed.
            let _ = remove_children(&path, dev);
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}
