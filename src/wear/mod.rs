//! Flash wear: how worn the device's flash is, how fast it wears, and what
//! the boot does about it. The pre-init (wear/boot.rs), `overlay-status
//! --wear` and the run-time monitor ([`daemon`]) call it.
//!
//! - [`config`]: `overlay.wear=LIST` and `overlay.wear_policy=` → [`config::WearConfig`].
//! - [`sources`]: UBI, MTD, eMMC, ext4/f2fs and block-device counters read
//!   from sysfs under a [`SysRoot`], each with a level.
//! - [`ubi_ec`]: the 64-byte UBI erase-counter headers read from `/dev/mtdN`,
//!   for the mean and spread of erase counts that sysfs does not give.
//! - [`policy`]: device level × policy → what the boot does with the upper.
//! - [`log`]: the persistent wear log on the data filesystem (fixed-size
//!   CRC-checked records in a preallocated ring, one small write at most per
//!   interval) and [`projection`]: write rate and remaining life from it.
//! - [`monitor`]: per-process and system write rates, top writers, budget.
//! - [`display`]: the `overlay-status --wear` table and its JSON.
//!
//! [`assess`] puts the boot's part together: readings → device level →
//! [`policy::Decision`], plus the endurance and life used the projection needs.
//!
//! Kernel paths used here are constants of this module (not `paths.rs`):
//! the whole feature stays in one place.
pub mod boot;
pub mod config;
pub mod daemon;
pub mod display;
pub mod log;
pub mod monitor;
pub mod policy;
pub mod projection;
pub mod sources;
pub mod ubi_ec;

use crate::paths::SysRoot;
use config::WearConfig;
use policy::Decision;
use projection::Endurance;
use sources::{Kind, SourceReading};
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
/// `/proc/PID/{io,comm,stat}`.
pub const PROC: &str = "/proc";
/// A random UUID the kernel draws at each boot (`random(4)`).
pub const PROC_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// ⌊a × b / c⌋, exactly, or `None` when it does not fit in a u64 (`c` = 0
/// counts as 1). What `u128::from(a) * u128::from(b) / u128::from(c)` gives,
/// without 128-bit arithmetic (a division loop at each site on 32-bit ARM).
pub fn mul_div(a: u64, b: u64, c: u64) -> Option<u64> {
    let c = c.max(1);
    let (q, r) = (a / c, a % c);
    // a × b / c = q × b + r × b / c, with r < c: the second term is below
    // b. It is built bit by bit of b, keeping hi × c + rem = r × (b so far)
    // and rem < c (no step overflows: rem and r are both below c).
    let (mut hi, mut rem) = (0u64, 0u64);
    for i in (0..u64::BITS - b.leading_zeros()).rev() {
        hi <<= 1;
        if rem >= c - rem {
            rem -= c - rem;
            hi += 1;
        } else {
            rem += rem;
        }
        if (b >> i) & 1 == 1 {
            if rem >= c - r {
                rem -= c - r;
                hi += 1;
            } else {
                rem += r;
            }
        }
    }
    q.checked_mul(b)?.checked_add(hi)
}

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

/// What the boot needs to know from this boot's readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    /// The worst source.
    pub level: Level,
    pub decision: Decision,
    /// Rated endurance: the board's P/E cycles × the capacity it names, or
    /// the size of the data device (or of the UBI's MTD, or of the eMMC).
    pub endurance: Endurance,
    /// The highest life used any source reports, in percent.
    pub used_pct: Option<u32>,
}

/// Device level, decision and endurance from the readings. `data_dev` is
/// the data filesystem's device name (`vda2`, `mmcblk0p3`) when known.
pub fn assess(readings: &[SourceReading], cfg: &WearConfig, data_dev: Option<&str>) -> Assessment {
    let level = device_level(readings);
    let capacity = data_capacity(readings, data_dev);
    Assessment {
        level,
        decision: policy::decide(level, cfg.policy),
        endurance: Endurance {
            bytes: cfg.endurance_bytes(capacity),
            pe_cycles: cfg.pe_cycles,
        },
        used_pct: readings.iter().filter_map(|r| r.life_used_pct).max(),
    }
}

/// The flash capacity the endurance is counted on: the disk under the data
/// filesystem, else the MTD device under the first UBI, else the first eMMC.
fn data_capacity(readings: &[SourceReading], data_dev: Option<&str>) -> Option<u64> {
    let fs = readings
        .iter()
        .filter(|r| r.kind == Kind::Fs)
        .find(|r| data_dev.is_none_or(|d| r.id.split_once(':').map(|x| x.1) == Some(d)))
        .and_then(|r| r.figure("capacity_bytes"));
    let ubi_mtd = || {
        let n = readings
            .iter()
            .find(|r| r.kind == Kind::Ubi)?
            .figure("mtd_num")?;
        let id = format!("mtd{n}");
        readings.iter().find(|r| r.id == id)?.figure("size")
    };
    let emmc = || {
        readings
            .iter()
            .find(|r| r.kind == Kind::Emmc)?
            .figure("size_bytes")
    };
    fs.or_else(ubi_mtd).or_else(emmc)
}

/// Seconds since the epoch (the RTC's time at boot; 0 if unset): the wear
/// log's clock.
pub fn wall_clock_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The first 64 bits of this boot's id (see [`log::parse_boot_id`]).
pub fn read_boot_id(root: &SysRoot) -> Option<u64> {
    log::parse_boot_id(&std::fs::read_to_string(root.path(PROC_BOOT_ID)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_div_is_the_u128_result() {
        let wide = |a: u64, b: u64, c: u64| {
            u64::try_from(u128::from(a) * u128::from(b) / u128::from(c.max(1))).ok()
        };
        let edges = [
            0,
            1,
            2,
            3,
            99,
            100,
            86_400,
            1 << 32,
            (1 << 32) + 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    assert_eq!(mul_div(a, b, c), wide(a, b, c), "{a} {b} {c}");
                }
            }
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        };
        for _ in 0..100_000 {
            let (a, b, c) = (next(), next(), next());
            assert_eq!(mul_div(a, b, c), wide(a, b, c), "{a} {b} {c}");
        }
    }
    use sources::Value;

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

    #[test]
    fn assessment_of_a_ubi_board() {
        let mut ubi = SourceReading::new("ubi0", Kind::Ubi);
        ubi.figures.push(("mtd_num", Value::Num(3)));
        ubi.life_used_pct = Some(97);
        ubi.level = Level::Critical;
        let mut mtd = SourceReading::new("mtd3", Kind::Mtd);
        mtd.figures.push(("size", Value::Num(128 << 20)));
        mtd.level = Level::Ok;
        let cfg = WearConfig {
            pe_cycles: Some(3000),
            ..WearConfig::default()
        };
        let a = assess(&[ubi, mtd], &cfg, None);
        assert_eq!(a.level, Level::Critical);
        assert_eq!(
            a.decision.upper,
            policy::UpperAction::FlashReadOnlyUnderTmpfs
        );
        assert_eq!(a.endurance.bytes, Some((128 << 20) * 3000));
        assert_eq!(a.used_pct, Some(97));
        let none = assess(&[], &cfg, None);
        assert_eq!((none.level, none.endurance.bytes), (Level::Unknown, None));
        assert!(none.decision.writes_flash());
    }

    #[test]
    fn the_data_disk_is_the_capacity_and_boot_ids_are_read() {
        let mut other = SourceReading::new("ext4:vdb1", Kind::Fs);
        other.figures.push(("capacity_bytes", Value::Num(1)));
        let mut data = SourceReading::new("ext4:vda2", Kind::Fs);
        data.figures.push(("capacity_bytes", Value::Num(8 << 30)));
        let mut emmc = SourceReading::new("mmcblk0", Kind::Emmc);
        emmc.figures.push(("size_bytes", Value::Num(4 << 30)));
        let all = [other, data, emmc.clone()];
        assert_eq!(data_capacity(&all, Some("vda2")), Some(8 << 30));
        assert_eq!(data_capacity(&all, None), Some(1));
        assert_eq!(data_capacity(&[emmc], Some("vda2")), Some(4 << 30));

        let d = crate::testutil::TempDir::new("wear-bootid");
        let root = SysRoot::new(d.path());
        assert_eq!(read_boot_id(&root), None);
        d.write(
            PROC_BOOT_ID,
            "0123456789abcdef-0000-0000-0000-000000000000\n",
        );
        assert_eq!(read_boot_id(&root), Some(0x0123_4567_89ab_cdef));
    }
}
