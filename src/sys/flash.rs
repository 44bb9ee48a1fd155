//! The raw-flash ioctls (MTD and UBI character devices), a trait of their
//! own: the flash code (src/flash/) needs these and nothing else of the
//! system. Each call opens the device node, makes one ioctl and closes it:
//! the boot issues a few hundred at most, each far cheaper than the erase it
//! asks for. [`super::linux::LinuxSys`] makes them; the test fake records them.

use super::MtdGeometry;
use std::io;
use std::path::Path;

/// MTD and UBI control, through their character devices.
pub trait FlashIo {
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
    /// `ioctl(open(dev), UBI_IOCRNVOL, {1, {vol_id, name}})` on `/dev/ubiN`:
    /// renames volume `vol_id` in one atomic volume-table update, mounted or
    /// not (ubirename(8) does the same).
    fn ubi_rename(&self, dev: &Path, vol_id: u32, name: &str) -> io::Result<()>;
    /// `ioctl(open(vol, O_RDWR), UBI_IOCEBUNMAP, &lnum)` on `/dev/ubiN_M`:
    /// unmaps logical eraseblock `lnum` of a dynamic volume (its PEB is
    /// erased in the background); an unmapped LEB stays unmapped.
    fn ubi_leb_unmap(&self, vol: &Path, lnum: u32) -> io::Result<()>;
}
