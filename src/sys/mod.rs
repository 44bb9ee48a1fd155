//! The syscall seam: every call that changes the system goes through [`Sys`].
//!
//! The boot code receives a `&dyn Sys` explicitly. [`linux::LinuxSys`] makes the
//! real calls (rustix first, nix only where rustix has no wrapper); the test fake
//! in `fake.rs` records them as [`Call`] values and injects failures. Reading files
//! (sysfs, /proc, block devices) is not part of the seam: those reads go through
//! a root path (see `paths::SysRoot`) so tests point them at fixture trees.

pub mod linux;
pub mod spawn;

mod flash_abi;

#[cfg(test)]
pub mod fake;

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

/// The system calls overlay-init needs, and nothing more.
pub trait Sys {
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
    /// `execve(path, argv, envp)`; returns only on failure.
    fn exec(&self, path: &str, argv: &[String], envp: &[String]) -> io::Error;
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    fn now(&self) -> Duration;
    /// `nanosleep`.
    fn sleep(&self, d: Duration);
    /// `sync()`.
    fn sync(&self);
    /// `reboot(RB_AUTOBOOT)`; returns only on failure.
    fn reboot(&self) -> io::Error;

    // Raw flash (MTD and UBI character devices). Each call opens the device
    // node, makes one ioctl and closes it: the boot issues a few hundred at
    // most, each far cheaper than the erase it asks for.

    /// `ioctl(open(dev, O_RDONLY), MEMGETINFO, &info)`: the geometry of an MTD
    /// character device (`/dev/mtdN`).
    fn mtd_geometry(&self, dev: &Path) -> io::Result<MtdGeometry>;
    /// `ioctl(open(dev, O_RDONLY), MEMGETBADBLOCK, &offset)`: whether the erase
    /// block at `offset` is marked bad. Flash without bad blocks (NOR) says
    /// `false` (the kernel returns 0, or EOPNOTSUPP from some drivers).
    fn mtd_is_bad(&self, dev: &Path, offset: u64) -> io::Result<bool>;
    /// `ioctl(open(dev, O_RDWR), MEMERASE, {offset, len})` (`MEMERASE64` past
    /// 4 GiB): erases whole erase blocks.
    fn mtd_erase(&self, dev: &Path, offset: u64, len: u64) -> io::Result<()>;
    /// `pwrite(open(dev, O_RDWR | O_SYNC), data, offset)`: programs erased
    /// flash; `data` must be a whole number of write units.
    fn mtd_write(&self, dev: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// `ioctl(open(ctrl), UBI_IOCATT, {UBI_DEV_NUM_AUTO, mtd, defaults})` on
    /// `/dev/ubi_ctrl`: attaches MTD device `mtd` to UBI and returns the new
    /// UBI device number (ubiattach(8) does the same).
    fn ubi_attach(&self, ctrl: &Path, mtd: u32) -> io::Result<u32>;
    /// `ioctl(open(dev), UBI_IOCMKVOL, {UBI_VOL_NUM_AUTO, alignment 1, bytes,
    /// UBI_DYNAMIC_VOLUME, name})` on `/dev/ubiN`: creates a dynamic volume and
    /// returns its id (ubimkvol(8) does the same).
    fn ubi_mkvol(&self, dev: &Path, name: &str, bytes: u64) -> io::Result<u32>;
    /// `ioctl(open(vol, O_RDWR), UBI_IOCEBUNMAP, &lnum)` on `/dev/ubiN_M`:
    /// unmaps logical eraseblock `lnum` of a dynamic volume (its PEB is
    /// erased in the background); an unmapped LEB stays unmapped.
    fn ubi_leb_unmap(&self, vol: &Path, lnum: u32) -> io::Result<()>;
}
