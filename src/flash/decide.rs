//! What to do with the raw-flash data location, given what it holds: pure
//! functions, one per kind of location, in the manner of fstools'
//! mount_root.c `start` switch. Only blank flash and flash carrying the
//! format marker are erased or formatted (on UBI: a volume without a
//! finished UBIFS format, which has its LEBs unmapped for UBIFS to format);
//! anything unrecognised is left alone and the boot runs on tmpfs, saying
//! why.

use super::jffs2::RawKind;
use super::locate::FlashLocation;
use super::mtd::{MtdInfo, MtdKind};
use super::ubi::{UbiDevice, UbiVolume, VolumeContent, UBIFS_MIN_LEBS};

/// The next step for a raw-flash upper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashAction {
    /// `mount -t ubifs SOURCE /overlay`; SOURCE is `ubiN:NAME` (fs/ubifs
    /// super.c `open_ubi` accepts it, and it needs no device node). An empty
    /// volume is formatted by UBIFS itself at this mount.
    MountUbifs { source: String },
    /// Unmap every LEB (`lebs`) of volume `id` on ubiN, which holds no
    /// UBIFS yet (nothing, or what a cut in UBIFS's own format left, which
    /// UBIFS would never format again), then mount it (`MountUbifs`): UBIFS
    /// formats it. `why` says which.
    ClearThenMountUbifs {
        source: String,
        ubi: u32,
        id: u32,
        lebs: u64,
        why: String,
    },
    /// Create the dynamic volume `name` on ubiN with all `bytes` free, then
    /// mount it (`MountUbifs`).
    CreateVolume { ubi: u32, name: String, bytes: u64 },
    /// Attach MTD `mtd` to UBI, then look again (the volume may be there).
    Attach { mtd: u32 },
    /// `mount -t jffs2 SOURCE /overlay`; SOURCE is `mtd:NAME` (fs/jffs2
    /// `get_tree_mtd`; the kernel picks the lowest-numbered MTD of that
    /// name, as the search here does). JFFS2 mounts erased flash as an
    /// empty filesystem.
    MountJffs2 { source: String },
    /// Erase every good block of `/dev/mtdN` (the marker block last), then
    /// mount it as JFFS2 (`source`).
    EraseThenMountJffs2 {
        mtd: u32,
        name: String,
        source: String,
    },
    /// Leave the flash alone; the upper is tmpfs for this reason.
    Tmpfs { reason: String },
}

/// An existing UBI volume; `content` is `None` when it could not be read
/// (UBIFS then decides: it formats only a volume with no LEB mapped). A
/// volume without a finished UBIFS format is cleared for UBIFS to format.
pub fn decide_ubi_volume(
    dev: &UbiDevice,
    vol: &UbiVolume,
    content: Option<VolumeContent>,
) -> FlashAction {
    let at = format!("ubi{}:{}", dev.num, vol.name);
    let tmpfs = |why: String| FlashAction::Tmpfs { reason: why };
    if dev.read_only {
        return tmpfs(format!(
            "ubi{} is in read-only mode (UBI met an error, see dmesg); {at} left untouched",
            dev.num
        ));
    }
    if !vol.dynamic {
        return tmpfs(format!(
            "{at} is a static UBI volume (a read-only image), not a data volume; left untouched"
        ));
    }
    if vol.upd_marker {
        return tmpfs(format!(
            "{at} was left half-updated (update marker set); left untouched"
        ));
    }
    if vol.corrupted {
        return tmpfs(format!("UBI reports {at} corrupted; left untouched"));
    }
    if vol.reserved_ebs < UBIFS_MIN_LEBS {
        return tmpfs(format!(
            "{at} has {} eraseblocks; UBIFS needs at least {UBIFS_MIN_LEBS}; left untouched",
            vol.reserved_ebs
        ));
    }
    match content {
        Some(VolumeContent::Unknown) => {
            tmpfs(format!("{at} holds data that is not UBIFS; left untouched"))
        }
        Some(VolumeContent::Ubifs) | None => FlashAction::MountUbifs { source: at },
        Some(c @ (VolumeContent::Empty | VolumeContent::Unfinished)) => {
            FlashAction::ClearThenMountUbifs {
                why: match c {
                    VolumeContent::Empty => format!("{at} holds no UBIFS superblock"),
                    _ => format!(
                        "{at} holds a UBIFS superblock but no master node (a format cut short)"
                    ),
                },
                source: at,
                ubi: dev.num,
                id: vol.id,
                lebs: vol.reserved_ebs,
            }
        }
    }
}

/// An attached UBI device that lacks the volume: create it with all the
/// free space, when there is enough for UBIFS.
pub fn decide_ubi_device(dev: &UbiDevice, name: &str) -> FlashAction {
    if dev.read_only {
        return FlashAction::Tmpfs {
            reason: format!(
                "ubi{} is in read-only mode (UBI met an error, see dmesg); cannot create {name} on it",
                dev.num
            ),
        };
    }
    if dev.avail_ebs < UBIFS_MIN_LEBS {
        return FlashAction::Tmpfs {
            reason: format!(
                "no volume {name} on ubi{}, and only {} free eraseblocks to create it (UBIFS needs {UBIFS_MIN_LEBS})",
                dev.num, dev.avail_ebs
            ),
        };
    }
    FlashAction::CreateVolume {
        ubi: dev.num,
        name: name.into(),
        bytes: dev.free_bytes(),
    }
}

/// A raw MTD partition (not attached to UBI), given what it holds.
pub fn decide_mtd(m: &MtdInfo, kind: RawKind) -> FlashAction {
    let source = format!("mtd:{}", m.name);
    let what = format!("{} (mtd{})", m.name, m.index);
    if m.read_only {
        return FlashAction::Tmpfs {
            reason: format!("{what} is a read-only partition; left untouched"),
        };
    }
    match kind {
        RawKind::Jffs2 | RawKind::Blank => FlashAction::MountJffs2 { source },
        RawKind::FormatMarker => FlashAction::EraseThenMountJffs2 {
            mtd: m.index,
            name: m.name.clone(),
            source,
        },
        RawKind::Ubi if m.kind == MtdKind::Ubi => FlashAction::Tmpfs {
            reason: format!("{what} is itself a UBI volume and holds UBI headers; left untouched"),
        },
        RawKind::Ubi => FlashAction::Attach { mtd: m.index },
        RawKind::Unknown => FlashAction::Tmpfs {
            reason: format!(
                "{} holds unrecognised data; not erasing it (overlay-reset --format reclaims it)",
                m.name
            ),
        },
    }
}

/// What was found, with what it holds, for [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probed {
    UbiVolume(Option<VolumeContent>),
    UbiDevice,
    Mtd(RawKind),
}

/// Dispatches to the decision for the location's kind. A probe that does
/// not fit the location (a bug in the caller) gives tmpfs, never an erase.
pub fn decide(loc: &FlashLocation, probed: &Probed) -> FlashAction {
    match (loc, probed) {
        (FlashLocation::UbiVolume { device, volume }, Probed::UbiVolume(c)) => {
            decide_ubi_volume(device, volume, *c)
        }
        (FlashLocation::UbiDevice { device, volume }, Probed::UbiDevice) => {
            decide_ubi_device(device, volume)
        }
        (FlashLocation::Mtd { mtd, .. }, Probed::Mtd(k)) => decide_mtd(mtd, *k),
        (loc, p) => FlashAction::Tmpfs {
            reason: format!("internal error: {p:?} does not describe {}", loc.describe()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtd(kind: MtdKind, read_only: bool) -> MtdInfo {
        MtdInfo {
            index: 1,
            name: "rootfs_data".into(),
            size: 64 << 20,
            erasesize: 256 << 10,
            writesize: Some(1),
            kind,
            read_only,
        }
    }

    fn dev(avail: u64, read_only: bool) -> UbiDevice {
        UbiDevice {
            num: 0,
            mtd_num: 1,
            leb_size: 262016,
            total_ebs: 256,
            avail_ebs: avail,
            bad_pebs: 0,
            max_ec: 0,
            read_only,
            volumes: vec![],
        }
    }

    fn vol(f: impl Fn(&mut UbiVolume)) -> UbiVolume {
        let mut v = UbiVolume {
            ubi: 0,
            id: 1,
            name: "rootfs_data".into(),
            data_bytes: 0,
            reserved_ebs: 200,
            dynamic: true,
            corrupted: false,
            upd_marker: false,
            usable_eb_size: 262016,
        };
        f(&mut v);
        v
    }

    fn jffs2() -> FlashAction {
        FlashAction::MountJffs2 {
            source: "mtd:rootfs_data".into(),
        }
    }

    fn ubifs() -> FlashAction {
        FlashAction::MountUbifs {
            source: "ubi0:rootfs_data".into(),
        }
    }

    fn tmpfs(reason: &str) -> FlashAction {
        FlashAction::Tmpfs {
            reason: reason.into(),
        }
    }

    /// The decisions table: what is found → what the pre-init does.
    #[test]
    fn decisions_table() {
        let nor = mtd(MtdKind::Nor, false);
        let erase = FlashAction::EraseThenMountJffs2 {
            mtd: 1,
            name: "rootfs_data".into(),
            source: "mtd:rootfs_data".into(),
        };
        let table: Vec<(&str, FlashAction, FlashAction)> = vec![
            // Raw MTD partitions.
            ("mtd jffs2", decide_mtd(&nor, RawKind::Jffs2), jffs2()),
            ("mtd blank", decide_mtd(&nor, RawKind::Blank), jffs2()),
            ("mtd marker", decide_mtd(&nor, RawKind::FormatMarker), erase),
            (
                "mtd ubi",
                decide_mtd(&nor, RawKind::Ubi),
                FlashAction::Attach { mtd: 1 },
            ),
            (
                "mtd unknown",
                decide_mtd(&nor, RawKind::Unknown),
                tmpfs("rootfs_data holds unrecognised data; not erasing it (overlay-reset --format reclaims it)"),
            ),
            (
                "mtd read-only blank",
                decide_mtd(&mtd(MtdKind::Nor, true), RawKind::Blank),
                tmpfs("rootfs_data (mtd1) is a read-only partition; left untouched"),
            ),
            (
                "mtd read-only marker",
                decide_mtd(&mtd(MtdKind::Nor, true), RawKind::FormatMarker),
                tmpfs("rootfs_data (mtd1) is a read-only partition; left untouched"),
            ),
            (
                "gluebi holding ubi",
                decide_mtd(&mtd(MtdKind::Ubi, false), RawKind::Ubi),
                tmpfs("rootfs_data (mtd1) is itself a UBI volume and holds UBI headers; left untouched"),
            ),
            ("nand jffs2", decide_mtd(&mtd(MtdKind::Nand, false), RawKind::Jffs2), jffs2()),
            // Existing UBI volumes.
            (
                "ubifs volume",
                decide_ubi_volume(&dev(0, false), &vol(|_| {}), Some(VolumeContent::Ubifs)),
                ubifs(),
            ),
            (
                "empty volume, or a format cut before the superblock",
                decide_ubi_volume(&dev(0, false), &vol(|_| {}), Some(VolumeContent::Empty)),
                FlashAction::ClearThenMountUbifs {
                    source: "ubi0:rootfs_data".into(),
                    ubi: 0,
                    id: 1,
                    lebs: 200,
                    why: "ubi0:rootfs_data holds no UBIFS superblock".into(),
                },
            ),
            (
                "a format cut before the master nodes",
                decide_ubi_volume(&dev(0, false), &vol(|_| {}), Some(VolumeContent::Unfinished)),
                FlashAction::ClearThenMountUbifs {
                    source: "ubi0:rootfs_data".into(),
                    ubi: 0,
                    id: 1,
                    lebs: 200,
                    why: "ubi0:rootfs_data holds a UBIFS superblock but no master node (a format cut short)".into(),
                },
            ),
            (
                "unreadable volume",
                decide_ubi_volume(&dev(0, false), &vol(|_| {}), None),
                ubifs(),
            ),
            (
                "foreign volume",
                decide_ubi_volume(&dev(0, false), &vol(|_| {}), Some(VolumeContent::Unknown)),
                tmpfs("ubi0:rootfs_data holds data that is not UBIFS; left untouched"),
            ),
            (
                "static volume",
                decide_ubi_volume(&dev(0, false), &vol(|v| v.dynamic = false), None),
                tmpfs("ubi0:rootfs_data is a static UBI volume (a read-only image), not a data volume; left untouched"),
            ),
            (
                "half-updated volume",
                decide_ubi_volume(&dev(0, false), &vol(|v| v.upd_marker = true), None),
                tmpfs("ubi0:rootfs_data was left half-updated (update marker set); left untouched"),
            ),
            (
                "corrupted volume",
                decide_ubi_volume(&dev(0, false), &vol(|v| v.corrupted = true), None),
                tmpfs("UBI reports ubi0:rootfs_data corrupted; left untouched"),
            ),
            (
                "tiny volume",
                decide_ubi_volume(&dev(0, false), &vol(|v| v.reserved_ebs = 16), None),
                tmpfs("ubi0:rootfs_data has 16 eraseblocks; UBIFS needs at least 17; left untouched"),
            ),
            (
                "read-only ubi",
                decide_ubi_volume(&dev(0, true), &vol(|_| {}), Some(VolumeContent::Ubifs)),
                tmpfs("ubi0 is in read-only mode (UBI met an error, see dmesg); ubi0:rootfs_data left untouched"),
            ),
            // UBI devices without the volume.
            (
                "create volume",
                decide_ubi_device(&dev(240, false), "rootfs_data"),
                FlashAction::CreateVolume {
                    ubi: 0,
                    name: "rootfs_data".into(),
                    bytes: 240 * 262016,
                },
            ),
            (
                "no room for a volume",
                decide_ubi_device(&dev(16, false), "rootfs_data"),
                tmpfs("no volume rootfs_data on ubi0, and only 16 free eraseblocks to create it (UBIFS needs 17)"),
            ),
            (
                "read-only ubi, no volume",
                decide_ubi_device(&dev(240, true), "rootfs_data"),
                tmpfs("ubi0 is in read-only mode (UBI met an error, see dmesg); cannot create rootfs_data on it"),
            ),
        ];
        for (case, got, want) in table {
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn nothing_but_blank_or_marked_flash_is_ever_erased() {
        for kind in [
            RawKind::Jffs2,
            RawKind::Blank,
            RawKind::Ubi,
            RawKind::Unknown,
        ] {
            for k in [MtdKind::Nor, MtdKind::Nand, MtdKind::Ubi, MtdKind::Unknown] {
                assert!(!matches!(
                    decide_mtd(&mtd(k, false), kind),
                    FlashAction::EraseThenMountJffs2 { .. }
                ));
            }
        }
    }

    #[test]
    fn decide_dispatches_and_refuses_mismatches() {
        let m = mtd(MtdKind::Nor, false);
        let loc = FlashLocation::Mtd {
            mtd: m,
            volume: "rootfs_data".into(),
        };
        assert_eq!(decide(&loc, &Probed::Mtd(RawKind::Blank)), jffs2());
        assert!(matches!(
            decide(&loc, &Probed::UbiDevice),
            FlashAction::Tmpfs { ref reason } if reason.starts_with("internal error")
        ));
        let d = dev(100, false);
        let loc = FlashLocation::UbiDevice {
            device: d,
            volume: "rootfs_data".into(),
        };
        assert!(matches!(
            decide(&loc, &Probed::UbiDevice),
            FlashAction::CreateVolume { .. }
        ));
        let loc = FlashLocation::UbiVolume {
            device: dev(0, false),
            volume: vol(|_| {}),
        };
        assert_eq!(decide(&loc, &Probed::UbiVolume(None)), ubifs());
    }
}
