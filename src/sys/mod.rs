//! The syscall seam: every call that changes the system goes through [`Sys`]
//! (mounts, module loads, processes, the root switch, the exec and what PID 1
//! does before it, reboot), and the raw-flash ioctls through [`FlashIo`].
//!
//! Deliberately direct, in one list:
//! - file I/O: reading sysfs, /proc and device contents (joined onto a
//!   `SysRoot`, so tests point them at fixture trees), and the records and
//!   walks on the mounted data filesystem (the reset's wipe, the wear log,
//!   the upgrade records, the boot counter: fsio.rs, walk.rs), which the
//!   host tests run on real directories, stronger than any fake;
//! - the fault handler (pid1.rs), which runs in a signal handler and may
//!   only make raw async-signal-safe calls, and the emergency shell it
//!   starts;
//! - the GPIO, console and watchdog devices of recovery/, each behind a
//!   small trait of its own with a fake;
//! - the command-line tools (overlay-status, overlay-reset), which run in
//!   the booted system.
//!
//! The boot code receives a `&dyn Sys` explicitly. [`linux::LinuxSys`] makes the
//! real calls (rustix first, nix only where rustix has no wrapper); the test fake
//! in `fake.rs` records them as [`Call`] values and injects failures. Reading files
//! (sysfs, /proc, block devices) is not part of the seam: those reads go through
//! a root path (see `paths::SysRoot`) so tests point them at fixture trees.

pub mod flash;
pub mod linux;
pub mod spawn;

pub(crate) mod flash_abi;

#[cfg(test)]
pub mod fake;

pub use flash::FlashIo;
use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags a mount may take; a small typed subset of `MS_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub readonly: bool,
    pub noatime: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountFlags {
    pub const NONE: MountFlags = MountFlags {
        readonly: false,
        noatime: false,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    pub const RDONLY: MountFlags = MountFlags {
        readonly: true,
        ..MountFlags::NONE
    };
    /// proc, sysfs: no devices, no setuid, no executables.
    pub const KERNEL_FS: MountFlags = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
        ..MountFlags::NONE
    };
}

/// A program to run to completion (mkfs, fsck), optionally inside a chroot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Path of the program, as seen inside `chroot` when that is set.
    pub argv: Vec<String>,
    /// Directory to chroot(2) into before exec.
    pub chroot: Option<PathBuf>,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(root) = &self.chroot {
            write!(f, "chroot {} ", root.display())?;
        }
        write!(f, "{}", self.argv.join(" "))
    }
}

/// An MTD device's geometry as `MEMGETINFO` reports it (`struct mtd_info_user`,
/// include/uapi/mtd/mtd-abi.h), for the device node actually opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MtdGeometry {
    /// `MTD_NORFLASH` (3), `MTD_NANDFLASH` (4), `MTD_MLCNANDFLASH` (8), ...
    pub kind: u8,
    /// `MTD_WRITEABLE` (0x400) set.
    pub writeable: bool,
    /// Bytes.
    pub size: u64,
    pub erasesize: u32,
    /// Smallest programmable unit: 1 on NOR, a page on NAND.
    pub writesize: u32,
}

impl MtdGeometry {
    /// NAND can have bad blocks (mtd-abi.h `mtd_type_is_nand_user`); NOR cannot.
    pub fn has_bad_blocks(&self) -> bool {
        self.kind == flash_abi::MTD_NANDFLASH || self.kind == flash_abi::MTD_MLCNANDFLASH
    }
}

/// The system calls overlay-init needs, and nothing more. The raw-flash
/// ioctls are a trait of their own, [`FlashIo`], which every `Sys` also is.
pub trait Sys: FlashIo {
    /// `mount(source, target, fstype, flags, data)`.
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// `mount(from, to, NULL, MS_BIND, NULL)`.
    fn mount_bind(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `mount(from, to, NULL, MS_MOVE, NULL)`.
    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `mount(NULL, target, NULL, MS_REMOUNT | flags, NULL)`: read-write
    /// again (flags without `readonly`), keeping the filesystem's options.
    fn remount(&self, target: &Path, flags: MountFlags) -> io::Result<()>;
    /// `umount2(target, detach ? MNT_DETACH : 0)`.
    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()>;
    /// `mkdir(path, mode)`; an existing directory is not an error.
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// `finit_module(open(path), "", flags)`; `EEXIST` (already loaded) is not an error.
    fn load_module(&self, path: &Path) -> io::Result<()>;
    /// fork, optional chroot, exec, wait: returns the exit code (128+signal when killed).
    fn run(&self, cmd: &Command) -> io::Result<i32>;
    /// `statvfs(path).f_flag & ST_RDONLY`.
    fn is_readonly(&self, path: &Path) -> io::Result<bool>;
    /// `statvfs(path)`: (available bytes, what `df` calls available: the
    /// filesystem's reserve for root excluded; total bytes).
    fn fs_space(&self, path: &Path) -> io::Result<(u64, u64)>;
    /// `statfs(path).f_type`.
    fn fs_magic(&self, path: &Path) -> io::Result<u64>;
    /// `chdir(path)`.
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// `chroot(path)`.
    fn chroot(&self, path: &Path) -> io::Result<()>;
    /// `pivot_root(new_root, put_old)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// Delete the initramfs contents below `dir` without crossing into other mounts.
    fn remove_tree_same_fs(&self, dir: &Path) -> io::Result<()>;
    /// fork(); the child lowers its priority (nice 19), runs `job` and exits.
    /// The parent returns at once.
    fn background(&self, job: &mut dyn FnMut()) -> io::Result<()>;
    /// `execve(path, argv, envp)`, the arguments as the bytes they are;
    /// returns only on failure.
    fn exec(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error;
    /// What the process is left with before the real init is exec'd, as
    /// the kernel starts an init: `waitpid(-1, WNOHANG)` until no child of
    /// ours is a zombie.
    fn reap_children(&self);
    /// `sigaction(SIG_DFL)` for every signal, `sigprocmask(SIG_SETMASK, {})`.
    fn reset_signals(&self);
    /// `fcntl(fd, F_SETFD, FD_CLOEXEC)` on every fd above 2: only 0-2 cross
    /// the exec (closing would pull files from under their owners; CLOEXEC
    /// has the same effect).
    fn cloexec_stray_fds(&self);
    /// `dup2(open("/dev/console"), 0/1/2)`: stdin, stdout and stderr on the
    /// console (the kernel opens it for init only when the initramfs has
    /// the node; devtmpfs always has it).
    fn console_stdio(&self);
    /// `uname().release`: the kernel release (the module directory's name).
    fn kernel_release(&self) -> String;
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    fn now(&self) -> Duration;
    /// `nanosleep`.
    fn sleep(&self, d: Duration);
    /// `sync()`.
    fn sync(&self);
    /// `reboot(RB_AUTOBOOT)`; returns only on failure.
    fn reboot(&self) -> io::Error;
}

/// Polls `probe` every `every` until it gives a value, or `limit` has passed
/// by `sys`'s clock (it is tried at least once). The one loop behind every
/// wait for a device: block devices, raw flash, device nodes after a UBI
/// attach.
pub fn wait_until<T>(
    sys: &dyn Sys,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = sys.now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if sys.now().saturating_sub(start) >= limit {
            return None;
        }
        sys.sleep(every);
    }
}
