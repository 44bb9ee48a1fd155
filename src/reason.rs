//! Why the upper is not the flash, read-write: every fallback the boot can
//! take has one variant here, with what it acted on. Tests match variants;
//! the words live in the one `Display` below (they are what the console,
//! dmesg and `overlay-status` show).

use crate::flash::FlashError;
use crate::state::WholeMillis;
use std::fmt;
use std::io;
use std::time::Duration;

/// What the configured data location did not turn out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotFound {
    /// A block device spec (`PARTLABEL=rootfs_data`, `/dev/vda2`, ...).
    Partition(String),
    /// `mtd:NAME`: no MTD partition of that name; `there` lists `mtdN NAME`.
    Mtd { name: String, there: Vec<String> },
    /// `ubi:ubiN:VOLUME` with ubiN not attached; `attached` lists numbers.
    UbiDevice { num: u32, attached: Vec<u32> },
    /// `ubi:VOLUME` with no UBI device attached to hold it.
    NoUbi { volume: String },
    /// `ubi:VOLUME`: no such volume and several devices to create it on.
    UbiAmbiguous { volume: String, devices: Vec<u32> },
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let ubis = |v: &[u32]| list(&v.iter().map(|n| format!("ubi{n}")).collect::<Vec<_>>());
        match self {
            NotFound::Partition(spec) => write!(f, "no data partition {spec}"),
            NotFound::Mtd { name, there } => {
                write!(f, "no MTD partition named {name} (there are: {})", list(there))
            }
            NotFound::UbiDevice { num, attached } => write!(
                f,
                "ubi{num} is not attached (attached: {}; ubi.mtd= on the kernel command line attaches one)",
                ubis(attached)
            ),
            NotFound::NoUbi { volume } => write!(
                f,
                "no UBI device is attached to hold volume {volume} (ubi.mtd= on the kernel command line attaches one)"
            ),
            NotFound::UbiAmbiguous { volume, devices } => write!(
                f,
                "no UBI volume named {volume}, and several UBI devices to create it on ({}): name one as ubi:ubiN:{volume}",
                ubis(devices)
            ),
        }
    }
}

/// Why the boot runs on RAM (or read-only) instead of the flash.
#[derive(Debug)]
pub enum Reason {
    /// The data location did not appear within `waited`.
    NotFound {
        what: NotFound,
        waited: Duration,
    },
    /// The data device (`overlay.data=`) is also a read-only layer.
    DataIsLower {
        device: String,
    },
    /// Reading the device to identify it failed.
    Read {
        device: String,
        err: io::Error,
    },
    /// Not ext4, f2fs, blank or marked: may be someone's data.
    Unrecognised {
        device: String,
    },
    /// A squashfs/erofs image where the data should be.
    ReadOnlyImage {
        device: String,
        fstype: &'static str,
    },
    /// `overlay.fstype=` asks for another filesystem than the one found.
    FsTypeMismatch {
        device: String,
        found: &'static str,
        wanted: &'static str,
    },
    /// Blank flash and no mkfs in the lower root.
    NoMkfs {
        device: String,
        mkfs: String,
    },
    MkfsFailed {
        mkfs: String,
        device: String,
        code: i32,
    },
    MkfsSpawn {
        mkfs: String,
        err: io::Error,
    },
    /// The lower's fsck could not repair the filesystem (`why` from the
    /// fsck verdict).
    FsckRefused {
        device: String,
        why: String,
    },
    Mount {
        source: String,
        fstype: &'static str,
        err: io::Error,
    },
    /// `upper/` or `work/` cannot be made on the data filesystem.
    UpperDirs {
        path: String,
        err: io::Error,
        on: String,
    },
    /// `upper/` or `work/` exists and is not a directory: left as it is.
    Layout {
        path: String,
        is: &'static str,
    },
    /// A factory reset could not be carried out (it resumes next boot).
    Reset(String),
    // Raw flash (UBI, MTD), decided from what sysfs and the device say.
    UbiReadOnly {
        ubi: u32,
        then: String,
    },
    StaticVolume {
        at: String,
    },
    HalfUpdated {
        at: String,
    },
    CorruptedVolume {
        at: String,
    },
    SmallVolume {
        at: String,
        lebs: u64,
        min: u64,
    },
    ForeignVolume {
        at: String,
    },
    VolumeNameTooLong {
        at: String,
    },
    NoRoomForVolume {
        name: String,
        ubi: u32,
        avail: u64,
        min: u64,
    },
    MtdReadOnly {
        what: String,
    },
    GluebiHoldsUbi {
        what: String,
    },
    MtdUnknown {
        name: String,
    },
    /// An MTD/UBI operation failed.
    Flash(FlashError),
    /// After UBI_IOCATT the device is not in sysfs.
    AttachedNotInSysfs {
        mtd: u32,
        num: u32,
    },
    /// After attaching, the partition still looks unattached.
    StillUnattached {
        mtd: u32,
    },
    /// The erase of a marked partition ran past its boot budget.
    EraseUnfinished {
        what: String,
        percent: u8,
        budget: Duration,
        background: bool,
    },
    /// The flash is worn out and the policy is tmpfs: `summary` is the
    /// decision's line.
    WornTmpfs {
        summary: &'static str,
    },
    /// The flash is worn out and protected (read-only under a RAM upper).
    WornProtect {
        summary: &'static str,
    },
    /// Protecting failed: the data could not be mounted read-only.
    ProtectMount {
        summary: &'static str,
        source: String,
        err: io::Error,
    },
    /// The overlay could not be mounted (the text of the boot error).
    Overlay(String),
    /// The kernel mounted the overlay read-only.
    OverlayReadOnly,
    /// The upper shadows the init with something that cannot run.
    InitBroken {
        init: String,
        why: String,
    },
    /// A tmpfs could not be mounted (`what`: "upper", "at /run/...").
    Tmpfs {
        what: String,
        err: io::Error,
    },
    /// A failsafe boot (issue 13): the firmware as shipped, why.
    Failsafe(crate::recovery::failsafe::FailsafeReason),
    /// One failure, then another on the next rung of the ladder.
    Then(Box<Reason>, Box<Reason>),
}

impl Reason {
    /// `self`, then `next` went wrong too.
    pub fn then(self, next: Reason) -> Reason {
        Reason::Then(Box::new(self), Box::new(next))
    }
}

impl From<FlashError> for Reason {
    fn from(e: FlashError) -> Reason {
        Reason::Flash(e)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotFound { what, waited } => {
                write!(f, "{what} (waited {} ms)", WholeMillis(*waited))
            }
            Reason::DataIsLower { device } => write!(
                f,
                "{device} is named as a read-only layer too (root= or overlay.lower=): it is not used as the upper, and left untouched"
            ),
            Reason::Read { device, err } => write!(f, "cannot read {device}: {err}"),
            Reason::Unrecognised { device } => write!(
                f,
                "{device} holds data that is neither ext4 nor f2fs nor blank; left untouched (format it by hand to use it)"
            ),
            Reason::ReadOnlyImage { device, fstype } => write!(
                f,
                "{device} holds a read-only {fstype} image, not a data filesystem; left untouched"
            ),
            Reason::FsTypeMismatch {
                device,
                found,
                wanted,
            } => write!(
                f,
                "{device} holds {found}, but overlay.fstype={wanted}; left untouched"
            ),
            Reason::NoMkfs { device, mkfs } => write!(
                f,
                "{device} is blank, and the lower root has no {mkfs} to format it"
            ),
            Reason::MkfsFailed { mkfs, device, code } => {
                write!(f, "{mkfs} {device} failed (exit {code})")
            }
            Reason::MkfsSpawn { mkfs, err } => write!(f, "cannot run {mkfs}: {err}"),
            Reason::FsckRefused { device, why } => write!(f, "{device}: {why}"),
            Reason::Mount {
                source,
                fstype,
                err,
            } => write!(f, "cannot mount {source} ({fstype}): {err}"),
            Reason::UpperDirs { path, err, on } => write!(f, "cannot create {path}: {err} on {on}"),
            Reason::Layout { path, is } => write!(
                f,
                "{path} is {is}, not a directory: the data filesystem is left as it is"
            ),
            Reason::Reset(why) => write!(f, "{why}; the factory reset resumes at the next boot"),
            Reason::UbiReadOnly { ubi, then } => write!(
                f,
                "ubi{ubi} is in read-only mode (UBI met an error, see dmesg); {then}"
            ),
            Reason::StaticVolume { at } => write!(
                f,
                "{at} is a static UBI volume (a read-only image), not a data volume; left untouched"
            ),
            Reason::HalfUpdated { at } => write!(
                f,
                "{at} was left half-updated (update marker set); left untouched"
            ),
            Reason::CorruptedVolume { at } => {
                write!(f, "UBI reports {at} corrupted; left untouched")
            }
            Reason::SmallVolume { at, lebs, min } => write!(
                f,
                "{at} has {lebs} eraseblocks; UBIFS needs at least {min}; left untouched"
            ),
            Reason::VolumeNameTooLong { at } => write!(
                f,
                "{at}: the name is too long to bear \"{}\" while UBIFS formats it (UBI allows 127 bytes); not formatted",
                crate::flash::ubi::FORMATTING
            ),
            Reason::ForeignVolume { at } => {
                write!(f, "{at} holds data that is not UBIFS; left untouched")
            }
            Reason::NoRoomForVolume {
                name,
                ubi,
                avail,
                min,
            } => write!(
                f,
                "no volume {name} on ubi{ubi}, and only {avail} free eraseblocks to create it (UBIFS needs {min})"
            ),
            Reason::MtdReadOnly { what } => {
                write!(f, "{what} is a read-only partition; left untouched")
            }
            Reason::GluebiHoldsUbi { what } => write!(
                f,
                "{what} is itself a UBI volume and holds UBI headers; left untouched"
            ),
            Reason::MtdUnknown { name } => write!(
                f,
                "{name} holds unrecognised data; not erasing it (overlay-reset --format reclaims it)"
            ),
            Reason::Flash(e) => write!(f, "{e}"),
            Reason::AttachedNotInSysfs { mtd, num } => write!(
                f,
                "mtd{mtd} was attached as ubi{num}, but /sys/class/ubi/ubi{num} is missing or unreadable"
            ),
            Reason::StillUnattached { mtd } => {
                write!(f, "mtd{mtd} still looks unattached after attaching it")
            }
            Reason::EraseUnfinished {
                what,
                percent,
                budget,
                background,
            } => write!(
                f,
                "formatting {what}: {percent}% erased in {} s; {}",
                budget.as_secs(),
                if *background {
                    "the rest is erased in the background; the flash upper is used from the next boot"
                } else {
                    "the next boot goes on erasing"
                }
            ),
            Reason::WornTmpfs { summary } => write!(f, "{summary} (overlay.wear_policy=tmpfs)"),
            Reason::WornProtect { summary } => f.write_str(summary),
            Reason::ProtectMount {
                summary,
                source,
                err,
            } => write!(
                f,
                "{summary}; and {source} cannot be mounted read-only: {err}"
            ),
            Reason::Overlay(e) => f.write_str(e),
            Reason::OverlayReadOnly => f.write_str(
                "the kernel mounted the overlay read-only (the upper filesystem could not hold its work directory)",
            ),
            Reason::InitBroken { init, why } => write!(
                f,
                "the upper layer breaks the init: {init} {why}; booting the lower layers with a RAM upper"
            ),
            Reason::Tmpfs { what, err } => write!(f, "cannot mount a tmpfs {what}: {err}"),
            Reason::Failsafe(why) => write!(f, "failsafe boot: {why}"),
            Reason::Then(a, b) => write!(f, "{a}; {b}"),
        }
    }
}
