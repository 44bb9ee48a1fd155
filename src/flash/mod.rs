//! The raw-flash upper: MTD partitions (JFFS2) and UBI volumes (UBIFS), the
//! two backends of fstools besides block devices (libfstools/mtd.c, ubi.c).
//!
//! - [`mtd`]: MTD partitions from sysfs or /proc/mtd; erasing.
//! - [`ubi`]: UBI devices and volumes from sysfs; attach, create a volume.
//! - [`jffs2`]: what a raw partition holds; OpenWrt's format marker.
//!
//! Reads (sysfs, /proc, device contents) are joined onto a
//! [`SysRoot`](crate::paths::SysRoot); every ioctl goes through `Sys`.
//!
//! Integration into the boot (boot.rs `setup_upper`) is pending: until then
//! only the tests use most of this module.
#![cfg_attr(not(test), allow(dead_code))]

pub mod jffs2;
pub mod mtd;
pub mod ubi;

use crate::paths::SysRoot;
use crate::sys::Sys;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A raw-flash step that failed: what it acted on and the OS error.
#[derive(Debug)]
pub enum FlashError {
    /// `MEMGETINFO`.
    Geometry {
        dev: PathBuf,
        err: io::Error,
    },
    BadGeometry {
        dev: PathBuf,
        why: &'static str,
    },
    /// `MTD_WRITEABLE` clear: nothing can be erased or written.
    ReadOnly {
        dev: PathBuf,
    },
    /// `MEMGETBADBLOCK`.
    BadBlockQuery {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// Every erase block is bad.
    NoGoodBlock {
        dev: PathBuf,
    },
    Read {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// `MEMERASE`.
    Erase {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    Write {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// `UBI_IOCATT`.
    Attach {
        ctrl: PathBuf,
        mtd: u32,
        err: io::Error,
    },
    /// devtmpfs did not show a device node in time.
    NodeMissing {
        node: PathBuf,
        waited: Duration,
    },
    /// Fewer free eraseblocks than UBIFS needs.
    NoSpace {
        dev: PathBuf,
        avail: u64,
    },
    /// `UBI_IOCMKVOL`.
    MakeVolume {
        dev: PathBuf,
        name: String,
        err: io::Error,
    },
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Geometry { dev, err } => write!(
                f,
                "cannot read the geometry of {} (MEMGETINFO): {err}",
                dev.display()
            ),
            FlashError::BadGeometry { dev, why } => {
                write!(f, "{} has an unusable geometry: {why}", dev.display())
            }
            FlashError::ReadOnly { dev } => write!(f, "{} is read-only", dev.display()),
            FlashError::BadBlockQuery { dev, offset, err } => write!(
                f,
                "cannot ask {} whether the block at {offset:#x} is bad: {err}",
                dev.display()
            ),
            FlashError::NoGoodBlock { dev } => {
                write!(f, "{} has no good erase block", dev.display())
            }
            FlashError::Read { dev, offset, err } => {
                write!(f, "cannot read {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Erase { dev, offset, err } => {
                write!(f, "cannot erase {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Write { dev, offset, err } => {
                write!(f, "cannot write {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Attach { ctrl, mtd, err } => write!(
                f,
                "cannot attach mtd{mtd} to UBI through {}: {err}",
                ctrl.display()
            ),
            FlashError::NodeMissing { node, waited } => write!(
                f,
                "{} did not appear within {} ms",
                node.display(),
                waited.as_millis()
            ),
            FlashError::NoSpace { dev, avail } => write!(
                f,
                "{} has {avail} free eraseblocks; UBIFS needs at least {}",
                dev.display(),
                ubi::UBIFS_MIN_LEBS
            ),
            FlashError::MakeVolume { dev, name, err } => write!(
                f,
                "cannot create the UBI volume {name} on {}: {err}",
                dev.display()
            ),
        }
    }
}

/// How often to look for a device node that devtmpfs is about to create.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits up to `wait` (by `sys`'s clock) for `node` to exist below `root`.
pub fn wait_for_node(sys: &dyn Sys, root: &SysRoot, node: &Path, wait: Duration) -> bool {
    let start = sys.now();
    loop {
        if root.join(node).exists() {
            return true;
        }
        if sys.now().saturating_sub(start) >= wait {
            return false;
        }
        sys.sleep(POLL);
    }
}
