//! Where the user's data lives: one interface, four backends, asked in
//! priority order as fstools asks its driver table (libfstools/volume.c
//! `volume_find`: ubi.c before mtd.c; block devices after). Each backend
//! answers four questions:
//!
//! - **where** its data is ([`Backend::locate`], pure over the
//!   [`Inventory`] of what the kernel shows);
//! - **what** it holds ([`Backend::probe`]: magic numbers and superblock
//!   fields read from the device);
//! - **what preparing it would write**, and **how to mount it**
//!   ([`Backend::prepare`], pure: the plan's steps and the mount).
//!
//! | priority | backend | data | mount |
//! | --- | --- | --- | --- |
//! | 1 | [`ubi::Ubi`] | a UBI volume (created on an attached device lacking it) | UBIFS `/dev/ubiN_M` |
//! | 2 | [`jffs2::Mtd`] | an MTD partition (JFFS2, erased, marked, or UBI to attach) | JFFS2 `mtd:NAME` |
//! | 3 | [`block::Block`] | a block partition (ext4, f2fs, blank, marked) | `/dev/NAME` |
//! | 4 | [`tmpfs::Tmpfs`] | RAM | tmpfs |
//!
//! The boot (boot/facts.rs), `overlay-reset --format` (reset/format.rs),
//! `overlay-status` and the wear monitor all ask [`locate`] where the data
//! is.

pub mod block;
pub mod jffs2;
pub mod tmpfs;
pub mod ubi;

use crate::config::{Config, DataSource, FsChoice, DEFAULT_DATA_NAME};
use crate::devices::{self, BlockDev, DeviceSpec};
use crate::flash::jffs2::RawKind;
use crate::flash::mtd::{self, MtdInfo};
use crate::flash::ubi::{self as fubi, UbiDevice, UbiVolume, VolumeContent};
use crate::flash::FlashSpec;
use crate::paths::SysRoot;
use crate::plan::{Action, BackendId, Step};
use crate::probe::FsKind;
use crate::reason::{NotFound, Reason};
use crate::sys::FlashIo;
use std::time::Duration;

/// What the kernel shows that may hold the data: block devices, MTD
/// partitions, attached UBI devices.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub blocks: Vec<BlockDev>,
    pub mtds: Vec<MtdInfo>,
    pub ubis: Vec<UbiDevice>,
}

impl Inventory {
    /// Reads sysfs (and /proc/mtd) below `root`. Lines that do not parse
    /// are skipped, each said at debug level.
    pub fn read(root: &SysRoot) -> Inventory {
        let (mtds, notes) = mtd::read_mtd_devices(root);
        let (ubis, more) = fubi::read_ubi_devices(root);
        for n in notes.iter().chain(&more) {
            crate::debug!("{n}");
        }
        Inventory {
            blocks: devices::read_block_devices(root),
            mtds,
            ubis,
        }
    }
}

/// What the configuration asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// By name, fstools' search: a UBI volume, an MTD partition, a GPT
    /// partition of that name.
    Named(String),
    /// `overlay.data=mtd:NAME` / `ubi:[ubiN:]VOLUME`.
    Flash(FlashSpec),
    /// `overlay.data=` a block device spec.
    Device(DeviceSpec),
    /// `overlay.data=tmpfs`.
    Ram,
}

impl Wanted {
    /// From the config; `None` when no upper is wanted (`overlay.data=none`).
    pub fn from_config(cfg: &Config) -> Option<Wanted> {
        Some(match &cfg.data {
            DataSource::Named(n) => Wanted::Named(n.clone()),
            DataSource::Flash(s) => Wanted::Flash(s.clone()),
            DataSource::Device(d) => Wanted::Device(d.clone()),
            DataSource::Tmpfs => Wanted::Ram,
            DataSource::Disabled => return None,
        })
    }

    /// The UBI volume to use when an MTD partition turns out to hold UBI.
    pub fn volume(&self) -> &str {
        match self {
            Wanted::Named(n) => n,
            _ => DEFAULT_DATA_NAME,
        }
    }
}

/// Where a backend found the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An existing volume on an attached UBI device.
    UbiVolume {
        device: UbiDevice,
        volume: UbiVolume,
    },
    /// No volume `name`, but one named `name.formatting`: a format that
    /// never finished (flash/ubi.rs `formatting_name`), to do again.
    UbiFormatting {
        device: UbiDevice,
        volume: UbiVolume,
        name: String,
    },
    /// An attached UBI device without the volume `volume`: to create it.
    UbiDevice { device: UbiDevice, volume: String },
    /// An MTD partition not attached to UBI; `volume` is the UBI volume to
    /// use should it hold UBI.
    Mtd { mtd: MtdInfo, volume: String },
    /// A block device (partition).
    Block(BlockDev),
    /// RAM.
    Ram,
}

impl Location {
    pub fn backend(&self) -> BackendId {
        match self {
            Location::UbiVolume { .. }
            | Location::UbiFormatting { .. }
            | Location::UbiDevice { .. } => BackendId::Ubi,
            Location::Mtd { .. } => BackendId::Mtd,
            Location::Block(_) => BackendId::Block,
            Location::Ram => BackendId::Tmpfs,
        }
    }

    /// For messages: `ubi0:rootfs_data`, `mtd2 (rootfs_data)`, `/dev/vda2`.
    pub fn describe(&self) -> String {
        match self {
            Location::UbiVolume { device, volume } => format!("ubi{}:{}", device.num, volume.name),
            Location::UbiFormatting { device, name, .. } => {
                format!("ubi{}:{name} (a format to finish)", device.num)
            }
            Location::UbiDevice { device, volume } => {
                format!("ubi{}:{volume} (to be created)", device.num)
            }
            Location::Mtd { mtd, .. } => format!("mtd{} ({})", mtd.index, mtd.name),
            Location::Block(d) => d.node.display().to_string(),
            Location::Ram => "tmpfs".into(),
        }
    }

    /// The block device that shows the same flash (a lower layer naming it
    /// would read the data partition): `/dev/vda2`, `/dev/mtdblockN` of an
    /// MTD partition or of the one under a UBI device.
    pub fn block_node(&self) -> Option<String> {
        match self {
            Location::Block(d) => Some(d.node.display().to_string()),
            Location::Mtd { mtd, .. } => Some(format!("/dev/mtdblock{}", mtd.index)),
            Location::UbiVolume { device, .. }
            | Location::UbiFormatting { device, .. }
            | Location::UbiDevice { device, .. } => {
                Some(format!("/dev/mtdblock{}", device.mtd_num))
            }
            Location::Ram => None,
        }
    }

    /// The name the device's wear sources and sysfs go by: `vda2`, `mtd2`,
    /// `ubi0`.
    pub fn sysfs_name(&self) -> String {
        match self {
            Location::UbiVolume { device, .. }
            | Location::UbiFormatting { device, .. }
            | Location::UbiDevice { device, .. } => {
                format!("ubi{}", device.num)
            }
            Location::Mtd { mtd, .. } => format!("mtd{}", mtd.index),
            Location::Block(d) => d.name.clone(),
            Location::Ram => "tmpfs".into(),
        }
    }
}

/// What a location holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A UBI volume: `None` when it could not be read (UBIFS then decides).
    Volume(Option<VolumeContent>),
    /// An attached UBI device lacking the volume.
    NoVolume,
    /// A raw MTD partition.
    Raw(RawKind),
    /// A block device: the kind, and its first bytes (the ext4 superblock's
    /// fields are read from them).
    Block {
        kind: FsKind,
        head: Vec<u8>,
    },
    Ram,
}

/// How a backend's data filesystem is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// mount(2)'s source.
    pub source: String,
    pub fstype: &'static str,
    /// Options for a read-only mount that must write nothing at all (no
    /// journal replay: ext4 `noload`, f2fs `norecovery`).
    pub quiet_ro: &'static str,
}

/// What the lower root offers to prepare a block device: found there by
/// the boot (boot/facts.rs), run chrooted in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tools {
    pub mkfs_ext4: Option<String>,
    pub mkfs_f2fs: Option<String>,
    pub fsck_ext4: Option<String>,
    pub fsck_f2fs: Option<String>,
}

/// What [`Backend::prepare`] needs besides the location and its content.
#[derive(Clone, Debug)]
pub struct PrepareEnv<'a> {
    pub fstype: FsChoice,
    pub tools: &'a Tools,
    /// How long an erase may hold the boot.
    pub erase_budget: Duration,
}

/// What preparing a location takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// `steps` (the writes that make it mountable), then `mount`.
    /// `fresh`: a filesystem made at this boot, with no records to read.
    Ready {
        action: Action,
        steps: Vec<Step>,
        mount: MountSpec,
        fresh: bool,
    },
    /// It holds UBI: attach it, then look again.
    Attach { mtd: u32 },
}

/// One member of the table.
pub trait Backend: Sync {
    fn id(&self) -> BackendId;
    /// Where its data is. `None`: what is wanted is not this backend's
    /// kind (or not here); `Some(Err)`: it is, and missing (what there is).
    fn locate(&self, wanted: &Wanted, inv: &Inventory) -> Option<Result<Location, NotFound>>;
    /// What the location holds, read from the device below `root`.
    fn probe(&self, io: &dyn FlashIo, root: &SysRoot, loc: &Location) -> Result<Content, Reason>;
    /// What making it mountable would write, and how to mount it: pure.
    fn prepare(
        &self,
        loc: &Location,
        content: &Content,
        env: &PrepareEnv,
    ) -> Result<Prepared, Reason>;
}

/// The table, in priority order.
pub static TABLE: [&dyn Backend; 4] = [&ubi::Ubi, &jffs2::Mtd, &block::Block, &tmpfs::Tmpfs];

/// The backend of a location.
pub fn backend_of(loc: &Location) -> &'static dyn Backend {
    match loc.backend() {
        BackendId::Ubi => &ubi::Ubi,
        BackendId::Mtd => &jffs2::Mtd,
        BackendId::Block => &block::Block,
        BackendId::Tmpfs | BackendId::None => &tmpfs::Tmpfs,
    }
}

/// Asks the table, in order, where `wanted` is: the first backend that
/// finds it wins; otherwise the most specific "missing" (the first backend
/// that knew the kind), or the partition of the name.
pub fn locate(wanted: &Wanted, inv: &Inventory) -> Result<Location, NotFound> {
    let mut missing = None;
    for b in TABLE {
        match b.locate(wanted, inv) {
            Some(Ok(loc)) => return Ok(loc),
            Some(Err(e)) if missing.is_none() => missing = Some(e),
            _ => {}
        }
    }
    Err(missing.unwrap_or_else(|| NotFound::Partition(wanted_spec(wanted))))
}

fn wanted_spec(wanted: &Wanted) -> String {
    match wanted {
        Wanted::Named(n) => DeviceSpec::PartLabel(n.clone()).to_string(),
        Wanted::Flash(s) => s.to_string(),
        Wanted::Device(d) => d.to_string(),
        Wanted::Ram => "tmpfs".into(),
    }
}

/// The data location this system is configured for, now (for the tools:
/// `overlay-reset --format`, `overlay-status`, the wear monitor), from the
/// command line and the board file as the pre-init reads them.
pub fn locate_configured(root: &SysRoot) -> Result<Option<Location>, NotFound> {
    let cfg = crate::config::read_configured(root);
    let Some(wanted) = Wanted::from_config(&cfg) else {
        return Ok(None);
    };
    locate(&wanted, &Inventory::read(root)).map(Some)
}
