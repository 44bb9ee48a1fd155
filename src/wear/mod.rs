//! Flash wear: how worn the device's flash is, how fast it wears, and what
//! the boot does about it. Pure core; the pre-init and `overlay-status` call
//! it (integration pending: until then most items are only used by tests,
//! hence the module-level `dead_code` allowance below).
//!
//! - [`config`]: `overlay.wear=LIST` and `overlay.wear_policy=` → [`WearConfig`].
//! - [`sources`]: UBI, MTD, eMMC, ext4/f2fs and block-device counters read
//!   from sysfs under a [`SysRoot`](crate::paths::SysRoot), each with a level.
//! - [`ubi_ec`]: the 64-byte UBI erase-counter headers read from `/dev/mtdN`,
//!   for the mean and spread of erase counts that sysfs does not give.
//! - [`policy`]: device level × policy → what the boot does with the upper.
//! - [`log`]: the persistent wear log on the data filesystem (fixed-size
//!   CRC-checked records in a preallocated ring, one small write at most per
//!   interval) and [`projection`]: write rate and remaining life from it.
//! - [`monitor`]: per-process and system write rates, top writers, budget.
//! - [`display`]: the `overlay-status --wear` table and its JSON.
//!
//! Kernel paths used here are constants of this module (not `paths.rs`) so
//! the whole feature stays in one place until it is integrated.
#![cfg_attr(not(test), allow(dead_code))] // integration into boot/status pending

pub mod config;
pub mod display;
pub mod log;
pub mod monitor;
pub mod policy;
pub mod projection;
pub mod sources;
pub mod ubi_ec;

use std::fmt;

/// `/sys/class/ubi/ubiN/`: one directory per attached UBI device.
pub const SYS_CLASS_UBI: &str = "/sys/class/ubi";
/// `/sys/class/mtd/mtdN/` (and `mtdNro`, which we skip).
pub const SYS_CLASS_MTD: &str = "/sys/class/mtd";
/// `/sys/block/DEV/`: whole disks (partitions are subdirectories).
pub const SYS_BLOCK: &str = "/sys/block";
/// `/sys/fs/ext4/DEV/` and `/sys/fs/f2fs/DEV/`: one per mounted filesystem.
pub const SYS_FS_EXT4: &str = "/sys/fs/ext4";
pub const SYS_FS_F2FS: &str = "/sys/fs/f2fs";
/// `/dev/mtdN`: the MTD character device (CONFIG_MTD_CHAR), read for UBI EC headers.
pub const DEV_DIR: &str = "/dev";

/// How worn a source (or the device) is. Ordered: the device level is the
/// maximum over its sources. `Unknown` (nothing could be read) sorts lowest
/// so an unreadable source never overrides a real figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Unknown,
    Ok,
    Warn,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }

    /// `value` against two thresholds: `>= critical` critical, `>= warn` warn.
    pub fn from_thresholds(value: u32, warn: u32, critical: u32) -> Level {
        if value >= critical {
            Level::Critical
        } else if value >= warn {
            Level::Warn
        } else {
            Level::Ok
        }
    }

    /// The number stored in a log record (0 = unknown … 3 = critical).
    pub fn code(self) -> u8 {
        match self {
            Level::Unknown => 0,
            Level::Ok => 1,
            Level::Warn => 2,
            Level::Critical => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<Level> {
        match c {
            0 => Some(Level::Unknown),
            1 => Some(Level::Ok),
            2 => Some(Level::Warn),
            3 => Some(Level::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device level: the worst of its sources (`Unknown` when there are none).
pub fn device_level(readings: &[sources::SourceReading]) -> Level {
    readings
        .iter()
        .map(|r| r.level)
        .max()
        .unwrap_or(Level::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_thresholds() {
        assert!(Level::Unknown < Level::Ok && Level::Ok < Level::Warn);
        assert!(Level::Warn < Level::Critical);
        assert_eq!(Level::from_thresholds(79, 80, 95), Level::Ok);
        assert_eq!(Level::from_thresholds(80, 80, 95), Level::Warn);
        assert_eq!(Level::from_thresholds(95, 80, 95), Level::Critical);
        assert_eq!(Level::from_thresholds(250, 80, 95), Level::Critical);
        for l in [Level::Unknown, Level::Ok, Level::Warn, Level::Critical] {
            assert_eq!(Level::from_code(l.code()), Some(l));
        }
        assert_eq!(Level::from_code(4), None);
        assert_eq!(device_level(&[]), Level::Unknown);
        let mut a = sources::SourceReading::new("a", sources::Kind::Block);
        let mut b = a.clone();
        a.level = Level::Ok;
        b.level = Level::Warn;
        assert_eq!(device_level(&[a.clone(), b, a]), Level::Warn);
    }
}
