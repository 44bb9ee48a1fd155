//! Where the data lives: pure functions over the parsed MTD and UBI lists.
//!
//! With no `overlay.data=` (or with `fstools_overlay_name=NAME`), the search
//! is fstools' `volume_find` order, UBI (priority 20) before MTD (10) before
//! block devices: a UBI volume named NAME on any attached UBI device, else an
//! MTD partition named NAME, else the GPT partition named NAME.

use super::mtd::{self, MtdInfo};
use super::ubi::{self, UbiDevice, UbiVolume};
use super::FlashSpec;
use crate::devices::DeviceSpec;

/// A data location on raw flash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashLocation {
    /// An existing volume on an attached UBI device: UBIFS.
    UbiVolume {
        device: UbiDevice,
        volume: UbiVolume,
    },
    /// An attached UBI device without the volume `volume`: create it.
    UbiDevice { device: UbiDevice, volume: String },
    /// An MTD partition not attached to UBI. `volume` is the UBI volume to
    /// use should the partition turn out to hold UBI.
    Mtd { mtd: MtdInfo, volume: String },
}

impl FlashLocation {
    /// For messages: `ubi0:rootfs_data`, `mtd2 (rootfs_data)`.
    pub fn describe(&self) -> String {
        match self {
            FlashLocation::UbiVolume { device, volume } => {
                format!("ubi{}:{}", device.num, volume.name)
            }
            FlashLocation::UbiDevice { device, volume } => {
                format!("ubi{}:{volume} (to be created)", device.num)
            }
            FlashLocation::Mtd { mtd, .. } => format!("mtd{} ({})", mtd.index, mtd.name),
        }
    }
}

/// The result of the search by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataLocation {
    Flash(FlashLocation),
    /// No flash of that name: the block-device lookup (the existing path).
    Block(DeviceSpec),
}

/// An MTD partition as a location: through its UBI device when one is
/// attached to it already (attaching again would fail with EEXIST).
fn mtd_location(m: &MtdInfo, ubis: &[UbiDevice], volume: &str) -> FlashLocation {
    match ubi::attached_to(ubis, m.index) {
        Some(d) => match d.volume(volume) {
            Some(v) => FlashLocation::UbiVolume {
                device: d.clone(),
                volume: v.clone(),
            },
            None => FlashLocation::UbiDevice {
                device: d.clone(),
                volume: volume.into(),
            },
        },
        None => FlashLocation::Mtd {
            mtd: m.clone(),
            volume: volume.into(),
        },
    }
}

/// The fstools search for `name` (default `rootfs_data`): UBI volume, MTD
/// partition, then `PARTLABEL=name`.
pub fn locate_named(name: &str, mtds: &[MtdInfo], ubis: &[UbiDevice]) -> DataLocation {
    if let Some((d, v)) = ubi::find_volume(ubis, name) {
        return DataLocation::Flash(FlashLocation::UbiVolume {
            device: d.clone(),
            volume: v.clone(),
        });
    }
    if let Some(m) = mtd::find_by_name(mtds, name) {
        return DataLocation::Flash(mtd_location(m, ubis, name));
    }
    DataLocation::Block(DeviceSpec::PartLabel(name.into()))
}

fn names<T>(items: &[T], name: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.iter().map(name).collect::<Vec<_>>().join(", ")
    }
}

/// Finds what an explicit `mtd:`/`ubi:` spec names. `volume` is the UBI
/// volume to use when `mtd:NAME` holds UBI (the overlay name, default
/// `rootfs_data`). `Err` says what is missing and what there is.
///
/// - `mtd:NAME`: that partition (through its UBI device if attached).
/// - `ubi:ubiN:VOLUME`: that volume on ubiN, or ubiN to create it on.
/// - `ubi:VOLUME`: that volume on the lowest-numbered device having it;
///   else, when exactly one UBI device is attached, that device to create it
///   on (with several, which one is for the user to say).
pub fn locate(
    spec: &FlashSpec,
    volume: &str,
    mtds: &[MtdInfo],
    ubis: &[UbiDevice],
) -> Result<FlashLocation, String> {
    match spec {
        FlashSpec::Mtd(name) => mtd::find_by_name(mtds, name)
            .map(|m| mtd_location(m, ubis, volume))
            .ok_or_else(|| {
                format!(
                    "no MTD partition named {name} (there are: {})",
                    names(mtds, |m| format!("mtd{} {}", m.index, m.name))
                )
            }),
        FlashSpec::Ubi {
            device: Some(n),
            volume,
        } => {
            let d = ubis.iter().find(|d| d.num == *n).ok_or_else(|| {
                format!(
                    "ubi{n} is not attached (attached: {}; ubi.mtd= on the kernel command line attaches one)",
                    names(ubis, |d| format!("ubi{}", d.num))
                )
            })?;
            Ok(match d.volume(volume) {
                Some(v) => FlashLocation::UbiVolume {
                    device: d.clone(),
                    volume: v.clone(),
                },
                None => FlashLocation::UbiDevice {
                    device: d.clone(),
                    volume: volume.clone(),
                },
            })
        }
        FlashSpec::Ubi {
            device: None,
            volume,
        } => {
            if let Some((d, v)) = ubi::find_volume(ubis, volume) {
                return Ok(FlashLocation::UbiVolume {
                    device: d.clone(),
                    volume: v.clone(),
                });
            }
            match ubis {
                [] => Err(format!(
                    "no UBI device is attached to hold volume {volume} (ubi.mtd= on the kernel command line attaches one)"
                )),
                [d] => Ok(FlashLocation::UbiDevice {
                    device: d.clone(),
                    volume: volume.clone(),
                }),
                _ => Err(format!(
                    "no UBI volume named {volume}, and several UBI devices to create it on ({}): name one as ubi:ubiN:{volume}",
                    names(ubis, |d| format!("ubi{}", d.num))
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::mtd::MtdKind;

    fn mtd(index: u32, name: &str) -> MtdInfo {
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

    fn dev(num: u32, mtd_num: u32, vols: &[(&str, u32)]) -> UbiDevice {
        UbiDevice {
            num,
            mtd_num,
            leb_size: 262016,
            total_ebs: 256,
            avail_ebs: 100,
            bad_pebs: 0,
            max_ec: 0,
            read_only: false,
            volumes: vols
                .iter()
                .map(|(n, id)| UbiVolume {
                    ubi: num,
                    id: *id,
                    name: (*n).into(),
                    data_bytes: 0,
                    reserved_ebs: 50,
                    usable_eb_size: 262016,
                    dynamic: true,
                    corrupted: false,
                    upd_marker: false,
                })
                .collect(),
        }
    }

    fn vol_at(loc: &DataLocation) -> Option<(u32, u32)> {
        match loc {
            DataLocation::Flash(FlashLocation::UbiVolume { device, volume }) => {
                Some((device.num, volume.id))
            }
            _ => None,
        }
    }

    #[test]
    fn ubi_volume_wins_over_mtd_and_block() {
        let mtds = [mtd(0, "fw"), mtd(1, "rootfs_data"), mtd(2, "ubi")];
        let ubis = [dev(0, 2, &[("rootfs", 0), ("rootfs_data", 1)])];
        assert_eq!(
            vol_at(&locate_named("rootfs_data", &mtds, &ubis)),
            Some((0, 1))
        );
    }

    #[test]
    fn lowest_ubi_device_wins() {
        let ubis = [
            dev(0, 2, &[("rootfs_data", 3)]),
            dev(1, 3, &[("rootfs_data", 0)]),
        ];
        assert_eq!(
            vol_at(&locate_named("rootfs_data", &[], &ubis)),
            Some((0, 3))
        );
    }

    #[test]
    fn mtd_partition_when_no_volume() {
        let mtds = [mtd(0, "fw"), mtd(1, "rootfs_data")];
        let ubis = [dev(0, 5, &[("other", 0)])];
        assert_eq!(
            locate_named("rootfs_data", &mtds, &ubis),
            DataLocation::Flash(FlashLocation::Mtd {
                mtd: mtds[1].clone(),
                volume: "rootfs_data".into()
            })
        );
    }

    #[test]
    fn an_attached_mtd_is_reached_through_its_ubi_device() {
        let mtds = [mtd(1, "rootfs_data")];
        let ubis = [dev(0, 1, &[("other", 0)])];
        match locate_named("rootfs_data", &mtds, &ubis) {
            DataLocation::Flash(FlashLocation::UbiDevice { device, volume }) => {
                assert_eq!((device.num, volume.as_str()), (0, "rootfs_data"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_lookup_when_no_flash_has_the_name() {
        let mtds = [mtd(0, "fw")];
        assert_eq!(
            locate_named("rootfs_data", &mtds, &[]),
            DataLocation::Block(DeviceSpec::PartLabel("rootfs_data".into()))
        );
        // fstools_overlay_name=NAME searches the same way for NAME.
        assert_eq!(
            locate_named("fw", &mtds, &[]),
            DataLocation::Flash(FlashLocation::Mtd {
                mtd: mtds[0].clone(),
                volume: "fw".into()
            })
        );
    }

    #[test]
    fn explicit_mtd() {
        let mtds = [mtd(0, "fw"), mtd(1, "data")];
        let spec = FlashSpec::Mtd("data".into());
        assert_eq!(
            locate(&spec, "rootfs_data", &mtds, &[]),
            Ok(FlashLocation::Mtd {
                mtd: mtds[1].clone(),
                volume: "rootfs_data".into()
            })
        );
        // Attached: the overlay volume on its UBI device.
        let ubis = [dev(4, 1, &[("rootfs_data", 2)])];
        assert!(matches!(
            locate(&spec, "rootfs_data", &mtds, &ubis),
            Ok(FlashLocation::UbiVolume { ref volume, .. }) if volume.id == 2
        ));
        assert_eq!(
            locate(&FlashSpec::Mtd("nope".into()), "rootfs_data", &mtds, &[]),
            Err("no MTD partition named nope (there are: mtd0 fw, mtd1 data)".into())
        );
        assert_eq!(
            locate(&FlashSpec::Mtd("nope".into()), "rootfs_data", &[], &[]),
            Err("no MTD partition named nope (there are: none)".into())
        );
    }

    fn ubi_spec(device: Option<u32>, volume: &str) -> FlashSpec {
        FlashSpec::Ubi {
            device,
            volume: volume.into(),
        }
    }

    #[test]
    fn explicit_ubi_volume() {
        let ubis = [dev(0, 2, &[("a", 0)]), dev(1, 3, &[("b", 0)])];
        let found = |s: &FlashSpec| match locate(s, "rootfs_data", &[], &ubis) {
            Ok(FlashLocation::UbiVolume { device, volume }) => Some((device.num, volume.name)),
            Ok(FlashLocation::UbiDevice { device, volume }) => {
                Some((device.num, format!("new {volume}")))
            }
            _ => None,
        };
        assert_eq!(found(&ubi_spec(None, "b")), Some((1, "b".into())));
        assert_eq!(found(&ubi_spec(Some(1), "b")), Some((1, "b".into())));
        assert_eq!(found(&ubi_spec(Some(0), "b")), Some((0, "new b".into())));
        assert_eq!(
            locate(&ubi_spec(Some(7), "b"), "x", &[], &ubis),
            Err("ubi7 is not attached (attached: ubi0, ubi1; ubi.mtd= on the kernel command line attaches one)".into())
        );
        assert_eq!(
            locate(&ubi_spec(None, "c"), "x", &[], &ubis),
            Err("no UBI volume named c, and several UBI devices to create it on (ubi0, ubi1): name one as ubi:ubiN:c".into())
        );
        assert_eq!(found_one(&ubi_spec(None, "c")), Some((0, "c".to_string())));
        assert!(locate(&ubi_spec(None, "c"), "x", &[], &[])
            .unwrap_err()
            .starts_with("no UBI device is attached"));
    }

    fn found_one(s: &FlashSpec) -> Option<(u32, String)> {
        match locate(s, "x", &[], &[dev(0, 2, &[("a", 0)])]) {
            Ok(FlashLocation::UbiDevice { device, volume }) => Some((device.num, volume)),
            _ => None,
        }
    }

    #[test]
    fn descriptions() {
        let d = dev(0, 2, &[("rootfs_data", 1)]);
        let v = d.volumes[0].clone();
        assert_eq!(
            FlashLocation::UbiVolume {
                device: d.clone(),
                volume: v
            }
            .describe(),
            "ubi0:rootfs_data"
        );
        assert_eq!(
            FlashLocation::Mtd {
                mtd: mtd(3, "rootfs_data"),
                volume: "rootfs_data".into()
            }
            .describe(),
            "mtd3 (rootfs_data)"
        );
    }
}
