//! The UBI backend (fstools libfstools/ubi.c, priority 20): the data is a
//! UBI volume, mounted as UBIFS. A volume of that name on an attached UBI
//! device; or an attached device lacking it, to create it on (with all its
//! free eraseblocks: UBIFS formats the empty volume at its first mount).
//!
//! The mount source is the volume's character device, `/dev/ubiN_M`
//! (UBIFS accepts a volume node as its source): `/proc/self/mountinfo` then
//! names that device, which is how OpenWrt's tools (fstools
//! `find_mount_point`: `jffs2reset`, `mount_root`) find the mounted data.
//! `ubiN:NAME` would show there as itself and match nothing. A volume
//! created at this boot is given, by UBI, the lowest id no volume of the
//! device has ([`next_volume_id`]): the plan names it so, and the executor
//! checks the id `UBI_IOCMKVOL` returns before anything is mounted.

use super::{Backend, Content, Inventory, Location, MountSpec, PrepareEnv, Prepared, Wanted};
use crate::config::DEFAULT_DATA_NAME;
use crate::flash::mtd;
use crate::flash::ubi::{self, UbiDevice, UbiVolume, VolumeContent, UBIFS_MIN_LEBS};
use crate::flash::FlashSpec;
use crate::paths::SysRoot;
use crate::plan::{Action, BackendId, Step};
use crate::reason::{NotFound, Reason};
use crate::sys::FlashIo;

pub struct Ubi;

/// Volume `volume` of `device`; else its format that never finished
/// (`volume.formatting`); else `None`.
fn volume_on(device: &UbiDevice, volume: &str) -> Option<Location> {
    if let Some(v) = device.volume(volume) {
        return Some(Location::UbiVolume {
            device: device.clone(),
            volume: v.clone(),
        });
    }
    let unfinished = ubi::formatting_name(volume)?;
    device.volume(&unfinished).map(|v| Location::UbiFormatting {
        device: device.clone(),
        volume: v.clone(),
        name: volume.into(),
    })
}

fn on(device: &UbiDevice, volume: &str) -> Location {
    volume_on(device, volume).unwrap_or_else(|| Location::UbiDevice {
        device: device.clone(),
        volume: volume.into(),
    })
}

/// An MTD partition named `name` that UBI is attached to already (attaching
/// it again would fail with EEXIST): the volume on its UBI device.
fn through_mtd(name: &str, volume: &str, inv: &Inventory) -> Option<Location> {
    let m = mtd::find_by_name(&inv.mtds, name)?;
    Some(on(ubi::attached_to(&inv.ubis, m.index)?, volume))
}

impl Backend for Ubi {
    fn id(&self) -> BackendId {
        BackendId::Ubi
    }

    /// - By name: that volume on the lowest-numbered device having it; else
    ///   the MTD partition of that name, when UBI is attached to it.
    /// - `mtd:NAME` attached to UBI: `rootfs_data` on its UBI device.
    /// - `ubi:ubiN:VOLUME`: that volume on ubiN, or ubiN to create it on.
    /// - `ubi:VOLUME`: that volume on the lowest device having it; else the
    ///   one attached device to create it on (with several, which one is
    ///   for the user to say).
    fn locate(&self, wanted: &Wanted, inv: &Inventory) -> Option<Result<Location, NotFound>> {
        let found = |name: &str| inv.ubis.iter().find_map(|d| volume_on(d, name));
        match wanted {
            Wanted::Named(name) => found(name).or_else(|| through_mtd(name, name, inv)).map(Ok),
            Wanted::Flash(FlashSpec::Mtd(name)) => {
                through_mtd(name, DEFAULT_DATA_NAME, inv).map(Ok)
            }
            Wanted::Flash(FlashSpec::Ubi {
                device: Some(n),
                volume,
            }) => Some(match inv.ubis.iter().find(|d| d.num == *n) {
                Some(d) => Ok(on(d, volume)),
                None => Err(NotFound::UbiDevice {
                    num: *n,
                    attached: inv.ubis.iter().map(|d| d.num).collect(),
                }),
            }),
            Wanted::Flash(FlashSpec::Ubi {
                device: None,
                volume,
            }) => Some(match found(volume) {
                Some(l) => Ok(l),
                None => match inv.ubis.as_slice() {
                    [] => Err(NotFound::NoUbi {
                        volume: volume.clone(),
                    }),
                    [d] => Ok(on(d, volume)),
                    several => Err(NotFound::UbiAmbiguous {
                        volume: volume.clone(),
                        devices: several.iter().map(|d| d.num).collect(),
                    }),
                },
            }),
            Wanted::Device(_) | Wanted::Ram => None,
        }
    }

    /// The starts of LEBs 0–2 of the volume; unreadable → `None` (UBIFS
    /// then decides safely: it formats only a volume with no LEB mapped).
    fn probe(&self, _io: &dyn FlashIo, root: &SysRoot, loc: &Location) -> Result<Content, Reason> {
        Ok(match loc {
            Location::UbiVolume { volume, .. } => {
                Content::Volume(ubi::read_volume_content(root, volume).ok())
            }
            _ => Content::NoVolume,
        })
    }

    fn prepare(
        &self,
        loc: &Location,
        content: &Content,
        _env: &PrepareEnv,
    ) -> Result<Prepared, Reason> {
        match (loc, content) {
            (Location::UbiVolume { device, volume }, Content::Volume(c)) => {
                prepare_volume(device, volume, *c)
            }
            (
                Location::UbiFormatting {
                    device,
                    volume,
                    name,
                },
                _,
            ) => prepare_unfinished(device, volume, name),
            (Location::UbiDevice { device, volume }, _) => prepare_device(device, volume),
            _ => Err(Reason::ForeignVolume { at: loc.describe() }),
        }
    }
}

fn ubifs(source: String) -> MountSpec {
    MountSpec {
        source,
        fstype: "ubifs",
        quiet_ro: "",
    }
}

/// Why a volume cannot be written, if UBI says so.
fn unwritable(dev: &UbiDevice, vol: &UbiVolume, at: String) -> Result<(), Reason> {
    if dev.read_only {
        return Err(Reason::UbiReadOnly {
            ubi: dev.num,
            then: format!("{at} left untouched"),
        });
    }
    if !vol.dynamic {
        return Err(Reason::StaticVolume { at });
    }
    if vol.upd_marker {
        return Err(Reason::HalfUpdated { at });
    }
    if vol.corrupted {
        return Err(Reason::CorruptedVolume { at });
    }
    if vol.reserved_ebs < UBIFS_MIN_LEBS {
        return Err(Reason::SmallVolume {
            at,
            lebs: vol.reserved_ebs,
            min: UBIFS_MIN_LEBS,
        });
    }
    Ok(())
}

/// The steps that format volume `vol` (bearing `formatting`, its
/// formatting name, by then) and name it `name` after the mount: the LEBs
/// unmapped (UBIFS formats only a volume with none mapped), then, after
/// the mount, the rename.
fn format_steps(
    dev: &UbiDevice,
    vol: &UbiVolume,
    formatting: String,
    name: &str,
    why: String,
) -> Vec<Step> {
    vec![
        Step::ClearVolume {
            vol: vol.node(),
            lebs: vol.reserved_ebs,
            why,
        },
        Step::NameVolume {
            ubi: dev.num,
            id: vol.id,
            from: formatting,
            to: name.into(),
        },
    ]
}

/// An existing volume, given what it holds. A volume without a finished
/// UBIFS format is formatted again, under its formatting name; anything
/// not ours, or a volume UBI says is unusable, is left untouched.
pub fn prepare_volume(
    dev: &UbiDevice,
    vol: &UbiVolume,
    content: Option<VolumeContent>,
) -> Result<Prepared, Reason> {
    let at = format!("ubi{}:{}", dev.num, vol.name);
    unwritable(dev, vol, at.clone())?;
    match content {
        Some(VolumeContent::Unknown) => Err(Reason::ForeignVolume { at }),
        Some(VolumeContent::Ubifs) | None => Ok(Prepared::Ready {
            action: Action::Mount,
            steps: Vec::new(),
            mount: ubifs(node(vol.ubi, vol.id)),
            fresh: false,
        }),
        Some(c @ (VolumeContent::Empty | VolumeContent::Unfinished)) => {
            let why = match c {
                VolumeContent::Empty => format!("{at} holds no UBIFS superblock"),
                _ => {
                    format!("{at} holds a UBIFS superblock but no master node (a format cut short)")
                }
            };
            let formatting =
                ubi::formatting_name(&vol.name).ok_or(Reason::VolumeNameTooLong { at })?;
            let mut steps = vec![Step::MarkFormatting {
                ubi: dev.num,
                id: vol.id,
                from: vol.name.clone(),
                to: formatting.clone(),
            }];
            steps.extend(format_steps(dev, vol, formatting, &vol.name, why));
            Ok(Prepared::Ready {
                action: Action::FormatMount,
                steps,
                mount: ubifs(node(vol.ubi, vol.id)),
                fresh: true,
            })
        }
    }
}

/// A volume under the formatting name of `name`: a format a power cut
/// interrupted (at this device's last boot, or on its way to that name).
/// Whatever it holds is the format's pieces: formatted again.
pub fn prepare_unfinished(
    dev: &UbiDevice,
    vol: &UbiVolume,
    name: &str,
) -> Result<Prepared, Reason> {
    let at = format!("ubi{}:{}", dev.num, vol.name);
    unwritable(dev, vol, at.clone())?;
    let why = format!("{at}: a format of {name} that never finished");
    Ok(Prepared::Ready {
        action: Action::FormatMount,
        steps: format_steps(dev, vol, vol.name.clone(), name, why),
        mount: ubifs(node(vol.ubi, vol.id)),
        fresh: true,
    })
}

/// `/dev/ubiN_M`, the mount source of volume M of ubiN.
fn node(ubi: u32, id: u32) -> String {
    format!("/dev/ubi{ubi}_{id}")
}

/// The id UBI gives a volume created with `UBI_VOL_NUM_AUTO` on `dev`: the
/// lowest one no volume has (drivers/mtd/ubi/vmt.c `ubi_create_volume`
/// takes the first free slot of its volume table).
pub fn next_volume_id(dev: &UbiDevice) -> u32 {
    (0..)
        .find(|id| !dev.volumes.iter().any(|v| v.id == *id))
        .unwrap_or(0)
}

/// An attached device that lacks the volume: create it with all the free
/// space, when there is enough for UBIFS.
pub fn prepare_device(dev: &UbiDevice, name: &str) -> Result<Prepared, Reason> {
    if dev.read_only {
        return Err(Reason::UbiReadOnly {
            ubi: dev.num,
            then: format!("cannot create {name} on it"),
        });
    }
    if dev.avail_ebs < UBIFS_MIN_LEBS {
        return Err(Reason::NoRoomForVolume {
            name: name.into(),
            ubi: dev.num,
            avail: dev.avail_ebs,
            min: UBIFS_MIN_LEBS,
        });
    }
    let formatting = ubi::formatting_name(name).ok_or_else(|| Reason::VolumeNameTooLong {
        at: format!("ubi{}:{name}", dev.num),
    })?;
    let id = next_volume_id(dev);
    Ok(Prepared::Ready {
        action: Action::FormatMount,
        steps: vec![
            Step::CreateVolume {
                ubi: dev.num,
                name: formatting.clone(),
                bytes: dev.free_bytes(),
            },
            Step::NameVolume {
                ubi: dev.num,
                id,
                from: formatting,
                to: name.into(),
            },
        ],
        mount: ubifs(node(dev.num, id)),
        fresh: true,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flash::mtd::{MtdInfo, MtdKind};

    pub fn dev(
        num: u32,
        mtd_num: u32,
        avail: u64,
        read_only: bool,
        vols: &[(&str, u32)],
    ) -> UbiDevice {
        UbiDevice {
            num,
            mtd_num,
            leb_size: 262016,
            total_ebs: 256,
            avail_ebs: avail,
            bad_pebs: 0,
            max_ec: 0,
            read_only,
            volumes: vols
                .iter()
                .map(|(n, id)| UbiVolume {
                    ubi: num,
                    id: *id,
                    name: (*n).into(),
                    data_bytes: 0,
                    reserved_ebs: 200,
                    usable_eb_size: 262016,
                    dynamic: true,
                    corrupted: false,
                    upd_marker: false,
                })
                .collect(),
        }
    }

    /// A preparation's surroundings with no tools in the lower root.
    pub fn env() -> PrepareEnv<'static> {
        static TOOLS: crate::backend::Tools = crate::backend::Tools {
            mkfs_ext4: None,
            mkfs_f2fs: None,
            fsck_ext4: None,
            fsck_f2fs: None,
        };
        PrepareEnv {
            fstype: crate::config::FsChoice::Auto,
            tools: &TOOLS,
            erase_budget: std::time::Duration::from_secs(5),
        }
    }

    fn vol(f: impl Fn(&mut UbiVolume)) -> UbiVolume {
        let mut v = dev(0, 1, 0, false, &[("rootfs_data", 1)]).volumes[0].clone();
        f(&mut v);
        v
    }

    pub fn mtd(index: u32, name: &str) -> MtdInfo {
        MtdInfo {
            index,
            name: name.into(),
            size: 64 << 20,
            erasesize: 256 << 10,
            writesize: Some(1),
            kind: MtdKind::Nor,
            read_only: false,
        }
    }

    fn mount(source: &str) -> Prepared {
        Prepared::Ready {
            action: Action::Mount,
            steps: vec![],
            mount: ubifs(source.into()),
            fresh: false,
        }
    }

    fn reason(r: Result<Prepared, Reason>) -> String {
        r.unwrap_err().to_string()
    }

    /// What is found → what the pre-init does (and why it leaves it alone).
    #[test]
    fn volume_and_device_decisions() {
        let d = dev(0, 1, 0, false, &[]);
        assert_eq!(
            prepare_volume(&d, &vol(|_| {}), Some(VolumeContent::Ubifs)).unwrap(),
            mount("/dev/ubi0_1")
        );
        assert_eq!(
            prepare_volume(&d, &vol(|_| {}), None).unwrap(),
            mount("/dev/ubi0_1"),
            "unreadable: UBIFS decides"
        );
        for (content, why) in [
            (
                VolumeContent::Empty,
                "ubi0:rootfs_data holds no UBIFS superblock",
            ),
            (
                VolumeContent::Unfinished,
                "ubi0:rootfs_data holds a UBIFS superblock but no master node (a format cut short)",
            ),
        ] {
            // Named for the format first, its own name again after the
            // mount that formats it.
            assert_eq!(
                prepare_volume(&d, &vol(|_| {}), Some(content)).unwrap(),
                Prepared::Ready {
                    action: Action::FormatMount,
                    steps: vec![
                        Step::MarkFormatting {
                            ubi: 0,
                            id: 1,
                            from: "rootfs_data".into(),
                            to: "rootfs_data.formatting".into()
                        },
                        Step::ClearVolume {
                            vol: "/dev/ubi0_1".into(),
                            lebs: 200,
                            why: why.into()
                        },
                        Step::NameVolume {
                            ubi: 0,
                            id: 1,
                            from: "rootfs_data.formatting".into(),
                            to: "rootfs_data".into()
                        },
                    ],
                    mount: ubifs("/dev/ubi0_1".into()),
                    fresh: true,
                }
            );
        }
        let table: Vec<(Result<Prepared, Reason>, &str)> = vec![
            (
                prepare_volume(&d, &vol(|_| {}), Some(VolumeContent::Unknown)),
                "ubi0:rootfs_data holds data that is not UBIFS; left untouched",
            ),
            (
                prepare_volume(&d, &vol(|v| v.dynamic = false), None),
                "ubi0:rootfs_data is a static UBI volume (a read-only image), not a data volume; left untouched",
            ),
            (
                prepare_volume(&d, &vol(|v| v.upd_marker = true), None),
                "ubi0:rootfs_data was left half-updated (update marker set); left untouched",
            ),
            (
                prepare_volume(&d, &vol(|v| v.corrupted = true), None),
                "UBI reports ubi0:rootfs_data corrupted; left untouched",
            ),
            (
                prepare_volume(&d, &vol(|v| v.reserved_ebs = 16), None),
                "ubi0:rootfs_data has 16 eraseblocks; UBIFS needs at least 17; left untouched",
            ),
            (
                prepare_volume(&dev(0, 1, 0, true, &[]), &vol(|_| {}), Some(VolumeContent::Ubifs)),
                "ubi0 is in read-only mode (UBI met an error, see dmesg); ubi0:rootfs_data left untouched",
            ),
            (
                prepare_device(&dev(0, 1, 16, false, &[]), "rootfs_data"),
                "no volume rootfs_data on ubi0, and only 16 free eraseblocks to create it (UBIFS needs 17)",
            ),
            (
                prepare_device(&dev(0, 1, 240, true, &[]), "rootfs_data"),
                "ubi0 is in read-only mode (UBI met an error, see dmesg); cannot create rootfs_data on it",
            ),
        ];
        for (got, want) in table {
            assert_eq!(reason(got), want);
        }
        assert_eq!(
            prepare_device(&dev(0, 1, 240, false, &[]), "rootfs_data").unwrap(),
            Prepared::Ready {
                action: Action::FormatMount,
                steps: vec![
                    Step::CreateVolume {
                        ubi: 0,
                        name: "rootfs_data.formatting".into(),
                        bytes: 240 * 262016
                    },
                    Step::NameVolume {
                        ubi: 0,
                        id: 0,
                        from: "rootfs_data.formatting".into(),
                        to: "rootfs_data".into()
                    },
                ],
                mount: ubifs("/dev/ubi0_0".into()),
                fresh: true,
            }
        );
    }

    /// A volume under the formatting name of the one wanted, which is
    /// missing, is a format a power cut interrupted: whatever it holds is
    /// formatted again, and named after the mount. With the volume itself
    /// there, that one is used and the other left alone; a volume wanted
    /// by a name ending in `.formatting` is an ordinary volume.
    #[test]
    fn a_format_that_never_finished_is_done_again() {
        let wanted = Wanted::Named("rootfs_data".into());
        let i = inv(
            vec![],
            vec![dev(
                0,
                1,
                0,
                false,
                &[("kernel", 0), ("rootfs_data.formatting", 3)],
            )],
        );
        let loc = Ubi.locate(&wanted, &i).unwrap().unwrap();
        assert_eq!(loc.describe(), "ubi0:rootfs_data (a format to finish)");
        for content in [
            Content::NoVolume,
            Content::Volume(Some(VolumeContent::Ubifs)),
        ] {
            assert_eq!(
                Ubi.prepare(&loc, &content, &env()).unwrap(),
                Prepared::Ready {
                    action: Action::FormatMount,
                    steps: vec![
                        Step::ClearVolume {
                            vol: "/dev/ubi0_3".into(),
                            lebs: 200,
                            why: "ubi0:rootfs_data.formatting: a format of rootfs_data that never finished".into()
                        },
                        Step::NameVolume {
                            ubi: 0,
                            id: 3,
                            from: "rootfs_data.formatting".into(),
                            to: "rootfs_data".into()
                        },
                    ],
                    mount: ubifs("/dev/ubi0_3".into()),
                    fresh: true,
                }
            );
        }
        // UBI's own refusals still hold.
        let ro = inv(
            vec![],
            vec![dev(0, 1, 0, true, &[("rootfs_data.formatting", 3)])],
        );
        let loc = Ubi.locate(&wanted, &ro).unwrap().unwrap();
        assert_eq!(
            reason(Ubi.prepare(&loc, &Content::NoVolume, &env())),
            "ubi0 is in read-only mode (UBI met an error, see dmesg); ubi0:rootfs_data.formatting left untouched"
        );
        let both = inv(
            vec![],
            vec![dev(
                0,
                1,
                0,
                false,
                &[("rootfs_data.formatting", 0), ("rootfs_data", 1)],
            )],
        );
        assert_eq!(
            at(Ubi.locate(&wanted, &both)),
            Some((0, "rootfs_data".into()))
        );
        let odd = Wanted::Named("x.formatting".into());
        let i = inv(vec![], vec![dev(0, 1, 0, false, &[("x.formatting", 0)])]);
        assert_eq!(at(Ubi.locate(&odd, &i)), Some((0, "x.formatting".into())));
    }

    /// A name that cannot bear the suffix within UBI's 127 bytes is not
    /// formatted: a clear reason, nothing written.
    #[test]
    fn a_name_too_long_for_the_formatting_name_is_not_formatted() {
        let long = "v".repeat(120);
        assert_eq!(
            ubi::formatting_name(&"v".repeat(116)).map(|n| n.len()),
            Some(127)
        );
        assert_eq!(ubi::formatting_name(&long), None);
        assert_eq!(
            reason(prepare_device(&dev(0, 1, 240, false, &[]), &long)),
            format!("ubi0:{long}: the name is too long to bear \".formatting\" while UBIFS formats it (UBI allows 127 bytes); not formatted")
        );
        let d = dev(0, 1, 0, false, &[(&long, 1)]);
        assert_eq!(
            reason(prepare_volume(&d, &d.volumes[0], Some(VolumeContent::Empty))),
            format!("ubi0:{long}: the name is too long to bear \".formatting\" while UBIFS formats it (UBI allows 127 bytes); not formatted")
        );
    }

    /// A new volume's mount source is the node UBI will give it: the
    /// lowest id no volume has (gaps are filled first).
    #[test]
    fn a_new_volume_is_mounted_by_the_node_ubi_gives_it() {
        let source = |vols: &[(&str, u32)]| match prepare_device(
            &dev(2, 1, 240, false, vols),
            "rootfs_data",
        ) {
            Ok(Prepared::Ready { mount, .. }) => mount.source,
            other => panic!("{other:?}"),
        };
        assert_eq!(source(&[]), "/dev/ubi2_0");
        assert_eq!(source(&[("kernel", 0), ("rootfs", 1)]), "/dev/ubi2_2");
        assert_eq!(source(&[("kernel", 0), ("rootfs", 2)]), "/dev/ubi2_1");
        assert_eq!(source(&[("rootfs", 1)]), "/dev/ubi2_0");
    }

    fn inv(mtds: Vec<MtdInfo>, ubis: Vec<UbiDevice>) -> Inventory {
        Inventory {
            blocks: vec![],
            mtds,
            ubis,
        }
    }

    fn at(l: Option<Result<Location, NotFound>>) -> Option<(u32, String)> {
        match l? {
            Ok(Location::UbiVolume { device, volume }) => Some((device.num, volume.name)),
            Ok(Location::UbiDevice { device, volume }) => {
                Some((device.num, format!("new {volume}")))
            }
            _ => None,
        }
    }

    #[test]
    fn where_the_volume_is() {
        let named = |n: &str| Wanted::Named(n.into());
        // A volume wins over MTD and block, the lowest device first.
        let i = inv(
            vec![mtd(0, "fw"), mtd(1, "rootfs_data"), mtd(2, "ubi")],
            vec![
                dev(0, 2, 100, false, &[("rootfs", 0), ("rootfs_data", 1)]),
                dev(1, 3, 100, false, &[("rootfs_data", 0)]),
            ],
        );
        assert_eq!(
            at(Ubi.locate(&named("rootfs_data"), &i)),
            Some((0, "rootfs_data".into()))
        );
        // An attached MTD of that name is reached through its UBI device.
        let i = inv(
            vec![mtd(1, "rootfs_data")],
            vec![dev(0, 1, 100, false, &[("other", 0)])],
        );
        assert_eq!(
            at(Ubi.locate(&named("rootfs_data"), &i)),
            Some((0, "new rootfs_data".into()))
        );
        // Not attached: not UBI's (the MTD backend's).
        let i = inv(
            vec![mtd(1, "rootfs_data")],
            vec![dev(0, 5, 100, false, &[("other", 0)])],
        );
        assert_eq!(at(Ubi.locate(&named("rootfs_data"), &i)), None);
        // mtd:NAME attached: the overlay volume on its device.
        let i = inv(
            vec![mtd(0, "fw"), mtd(1, "data")],
            vec![dev(4, 1, 100, false, &[("rootfs_data", 2)])],
        );
        assert_eq!(
            at(Ubi.locate(&Wanted::Flash(FlashSpec::Mtd("data".into())), &i)),
            Some((4, "rootfs_data".into()))
        );
    }

    #[test]
    fn explicit_ubi_specs() {
        let spec = |device: Option<u32>, volume: &str| {
            Wanted::Flash(FlashSpec::Ubi {
                device,
                volume: volume.into(),
            })
        };
        let i = inv(
            vec![],
            vec![
                dev(0, 2, 100, false, &[("a", 0)]),
                dev(1, 3, 100, false, &[("b", 0)]),
            ],
        );
        assert_eq!(at(Ubi.locate(&spec(None, "b"), &i)), Some((1, "b".into())));
        assert_eq!(
            at(Ubi.locate(&spec(Some(1), "b"), &i)),
            Some((1, "b".into()))
        );
        assert_eq!(
            at(Ubi.locate(&spec(Some(0), "b"), &i)),
            Some((0, "new b".into()))
        );
        let missing = |w: &Wanted, i: &Inventory| match Ubi.locate(w, i) {
            Some(Err(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            missing(&spec(Some(7), "b"), &i),
            "ubi7 is not attached (attached: ubi0, ubi1; ubi.mtd= on the kernel command line attaches one)"
        );
        assert_eq!(
            missing(&spec(None, "c"), &i),
            "no UBI volume named c, and several UBI devices to create it on (ubi0, ubi1): name one as ubi:ubiN:c"
        );
        let one = inv(vec![], vec![dev(0, 2, 100, false, &[("a", 0)])]);
        assert_eq!(
            at(Ubi.locate(&spec(None, "c"), &one)),
            Some((0, "new c".into()))
        );
        assert!(missing(&spec(None, "c"), &inv(vec![], vec![]))
            .starts_with("no UBI device is attached"));
    }
}
