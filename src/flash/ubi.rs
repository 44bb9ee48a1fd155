//! UBI: attached devices and their volumes from sysfs (`/sys/class/ubi`, as
//! fstools' libfstools/ubi.c reads it), attaching an MTD partition and
//! creating a volume through the UBI character devices, and what a volume
//! holds.

use super::{wait_for_node, FlashError};
use crate::paths::SysRoot;
use crate::probe::read_up_to;
use crate::sys::Sys;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SYS_CLASS_UBI: &str = "/sys/class/ubi";
/// The UBI control device (a misc device), for `UBI_IOCATT`.
pub const UBI_CTRL: &str = "/dev/ubi_ctrl";
/// UBIFS_MIN_LEB_CNT (fs/ubifs/ubifs-media.h): superblock 1 + master 2 +
/// log 2 + LPT 2 + orphans 1 + main 9. A smaller volume cannot hold UBIFS.
pub const UBIFS_MIN_LEBS: u64 = 17;
/// UBIFS_NODE_MAGIC (fs/ubifs/ubifs-media.h), little-endian at the start of
/// every UBIFS node; LEB 0 of a formatted volume starts with the superblock node.
pub const UBIFS_NODE_MAGIC: u32 = 0x0610_1831;

/// One UBI volume: `/sys/class/ubi/ubiN_M/` (drivers/mtd/ubi/vmt.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UbiVolume {
    /// N: the UBI device.
    pub ubi: u32,
    /// M: the volume id.
    pub id: u32,
    pub name: String,
    /// `data_bytes`: bytes of data (static volumes); dynamic volumes report
    /// their whole size.
    pub data_bytes: u64,
    /// `reserved_ebs`: logical eraseblocks reserved for the volume.
    pub reserved_ebs: u64,
    /// `type` is "dynamic" (read-write, what UBIFS needs) rather than "static".
    pub dynamic: bool,
    /// `corrupted`: a static volume whose data fails its CRC.
    pub corrupted: bool,
    /// `upd_marker`: an update (ubiupdatevol) was interrupted; the volume is
    /// unusable until updated again.
    pub upd_marker: bool,
}

impl UbiVolume {
    /// The volume character device: `/dev/ubiN_M`.
    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/ubi{}_{}", self.ubi, self.id))
    }
}

/// One attached UBI device: `/sys/class/ubi/ubiN/` (drivers/mtd/ubi/build.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UbiDevice {
    /// N of `ubiN`.
    pub num: u32,
    /// `mtd_num`: the MTD device it is attached to.
    pub mtd_num: u32,
    /// `eraseblock_size`: the logical eraseblock (LEB) size, i.e. what a
    /// volume of alignment 1 stores per eraseblock (PEB minus UBI headers).
    pub leb_size: u64,
    /// `total_eraseblocks`: good physical eraseblocks.
    pub total_ebs: u64,
    /// `avail_eraseblocks`: not reserved by any volume.
    pub avail_ebs: u64,
    pub bad_pebs: u64,
    pub max_ec: u64,
    /// `ro_mode`: UBI switched to read-only (e.g. after an I/O error).
    pub read_only: bool,
    /// Sorted by id.
    pub volumes: Vec<UbiVolume>,
}

impl UbiDevice {
    /// The UBI device's character device: `/dev/ubiN` (for `UBI_IOCMKVOL`).
    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/ubi{}", self.num))
    }

    /// Bytes a new volume of alignment 1 can have: every available LEB.
    pub fn free_bytes(&self) -> u64 {
        self.avail_ebs.saturating_mul(self.leb_size)
    }

    pub fn volume(&self, name: &str) -> Option<&UbiVolume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

/// `ubiN` → N; `ubiN_M` → (N, M).
fn parse_dir(name: &str) -> Option<(u32, Option<u32>)> {
    let rest = name.strip_prefix("ubi")?;
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match rest.split_once('_') {
        Some((n, m)) => Some((num(n)?, Some(num(m)?))),
        None => Some((num(rest)?, None)),
    }
}

fn dec(attr: &impl Fn(&str) -> Option<String>, key: &str) -> Result<u64, String> {
    let v = attr(key).ok_or_else(|| format!("no {key}"))?;
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("{key} {:?} is not a number", v.trim()))
}

/// Builds a [`UbiDevice`] (without volumes) from the attribute files of
/// `/sys/class/ubi/ubiN` (all printed as `%d`). `mtd_num`, `eraseblock_size`
/// and `avail_eraseblocks` are required.
pub fn parse_ubi_device(
    dir_name: &str,
    attr: impl Fn(&str) -> Option<String>,
) -> Result<UbiDevice, String> {
    let Some((num, None)) = parse_dir(dir_name) else {
        return Err("not a ubiN directory".into());
    };
    let opt = |k: &str| dec(&attr, k).unwrap_or(0);
    Ok(UbiDevice {
        num,
        mtd_num: u32::try_from(dec(&attr, "mtd_num")?).map_err(|_| "mtd_num too large")?,
        leb_size: dec(&attr, "eraseblock_size")?,
        avail_ebs: dec(&attr, "avail_eraseblocks")?,
        total_ebs: opt("total_eraseblocks"),
        bad_pebs: opt("bad_peb_count"),
        max_ec: opt("max_ec"),
        read_only: opt("ro_mode") != 0,
        volumes: Vec::new(),
    })
}

/// Builds a [`UbiVolume`] from the attribute files of `/sys/class/ubi/ubiN_M`.
/// `name` is required.
pub fn parse_ubi_volume(
    dir_name: &str,
    attr: impl Fn(&str) -> Option<String>,
) -> Result<UbiVolume, String> {
    let Some((ubi, Some(id))) = parse_dir(dir_name) else {
        return Err("not a ubiN_M directory".into());
    };
    let name = attr("name").ok_or("no name")?;
    let name = name.strip_suffix('\n').unwrap_or(&name).to_string();
    if name.is_empty() {
        return Err("empty name".into());
    }
    let opt = |k: &str| dec(&attr, k).unwrap_or(0);
    Ok(UbiVolume {
        ubi,
        id,
        name,
        data_bytes: opt("data_bytes"),
        reserved_ebs: opt("reserved_ebs"),
        // vmt.c prints "static" or "dynamic"; only an explicit "static" is static.
        dynamic: attr("type").is_none_or(|t| t.trim() != "static"),
        corrupted: opt("corrupted") != 0,
        upd_marker: opt("upd_marker") != 0,
    })
}

/// Lists the attached UBI devices with their volumes, sorted by number.
/// The notes say what was skipped and why (a volume whose device is
/// missing, an unreadable attribute).
pub fn read_ubi_devices(root: &SysRoot) -> (Vec<UbiDevice>, Vec<String>) {
    let mut devs: Vec<UbiDevice> = Vec::new();
    let mut vols: Vec<UbiVolume> = Vec::new();
    let mut notes = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.path(SYS_CLASS_UBI)) else {
        return (devs, notes);
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let attr = |k: &str| std::fs::read_to_string(path.join(k)).ok();
        let parsed = match parse_dir(&name) {
            Some((_, None)) => parse_ubi_device(&name, attr).map(|d| devs.push(d)),
            Some((_, Some(_))) => parse_ubi_volume(&name, attr).map(|v| vols.push(v)),
            None => continue, // "version", "ubi_ctrl"...
        };
        if let Err(why) = parsed {
            notes.push(format!("{SYS_CLASS_UBI}/{name}: skipped: {why}"));
        }
    }
    vols.sort_by_key(|v| (v.ubi, v.id));
    for v in vols {
        match devs.iter_mut().find(|d| d.num == v.ubi) {
            Some(d) => d.volumes.push(v),
            None => notes.push(format!(
                "{SYS_CLASS_UBI}/ubi{}_{}: skipped: no device ubi{}",
                v.ubi, v.id, v.ubi
            )),
        }
    }
    devs.sort_by_key(|d| d.num);
    (devs, notes)
}

/// The volume named `name` on the lowest-numbered device that has one.
pub fn find_volume<'a>(
    ubis: &'a [UbiDevice],
    name: &str,
) -> Option<(&'a UbiDevice, &'a UbiVolume)> {
    ubis.iter().find_map(|d| d.volume(name).map(|v| (d, v)))
}

/// The UBI device attached to MTD `mtd`, if any.
pub fn attached_to(ubis: &[UbiDevice], mtd: u32) -> Option<&UbiDevice> {
    ubis.iter().find(|d| d.mtd_num == mtd)
}

/// What a UBI volume holds, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeContent {
    /// A UBIFS node at the start of LEB 0.
    Ubifs,
    /// LEB 0 reads 0xFF (unmapped): UBIFS formats an empty volume itself at
    /// its first mount (it checks that no LEB is mapped, so it never
    /// formats a volume holding anything).
    Empty,
    /// Something else (a squashfs image, JFFS2 on UBI...): not ours.
    Unknown,
}

pub fn identify_volume(head: &[u8]) -> VolumeContent {
    let magic = head
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    if magic == Some(UBIFS_NODE_MAGIC) {
        VolumeContent::Ubifs
    } else if !head.is_empty() && head.iter().all(|&b| b == 0xFF) {
        VolumeContent::Empty
    } else {
        VolumeContent::Unknown
    }
}

/// Reads the start of a volume (`/dev/ubiN_M` below `root`) and identifies it.
pub fn read_volume_content(root: &SysRoot, v: &UbiVolume) -> io::Result<VolumeContent> {
    let mut f = File::open(root.join(&v.node()))?;
    Ok(identify_volume(&read_up_to(&mut f, 4096)?))
}

/// Attaches MTD device `mtd` to UBI (`UBI_IOCATT` on `/dev/ubi_ctrl`), then
/// waits up to `wait` for devtmpfs to show `/dev/ubiN` (needed to create a
/// volume on it). Returns N. The attach scans every PEB: seconds on large
/// NAND, milliseconds on a small NOR partition.
pub fn attach(sys: &dyn Sys, root: &SysRoot, mtd: u32, wait: Duration) -> Result<u32, FlashError> {
    let ctrl = Path::new(UBI_CTRL);
    let num = sys
        .ubi_attach(ctrl, mtd)
        .map_err(|err| FlashError::Attach {
            ctrl: ctrl.into(),
            mtd,
            err,
        })?;
    let node = PathBuf::from(format!("/dev/ubi{num}"));
    if !wait_for_node(sys, root, &node, wait) {
        return Err(FlashError::NodeMissing { node, waited: wait });
    }
    Ok(num)
}

/// Creates the dynamic volume `name` on `dev` with every available LEB
/// (`avail_eraseblocks` × `eraseblock_size`), as ubimkvol's `-m` does. An
/// empty volume: UBIFS formats it at its first mount. Returns the volume id.
pub fn create_volume(sys: &dyn Sys, dev: &UbiDevice, name: &str) -> Result<u32, FlashError> {
    let node = dev.node();
    if dev.avail_ebs < UBIFS_MIN_LEBS {
        return Err(FlashError::NoSpace {
            dev: node,
            avail: dev.avail_ebs,
        });
    }
    sys.ubi_mkvol(&node, name, dev.free_bytes())
        .map_err(|err| FlashError::MakeVolume {
            dev: node,
            name: name.into(),
            err,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sys::fake::{Call, FakeSys};
    use crate::testutil::TempDir;

    fn put(base: &Path, rel: &str, content: String) {
        let p = base.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Writes a ubiN device and its volumes into the fixture tree at `base`,
    /// as the kernel prints them: (name, id, reserved_ebs).
    pub(crate) fn fixture_ubi(
        base: &Path,
        num: u32,
        mtd: u32,
        avail: u64,
        volumes: &[(&str, u32, u64)],
    ) {
        let d = format!("sys/class/ubi/ubi{num}");
        for (k, v) in [
            ("mtd_num", mtd.to_string()),
            ("eraseblock_size", "262016".into()),
            ("total_eraseblocks", "256".into()),
            ("avail_eraseblocks", avail.to_string()),
            ("volumes_count", volumes.len().to_string()),
            ("max_ec", "3".into()),
            ("bad_peb_count", "0".into()),
            ("reserved_for_bad", "0".into()),
            ("min_io_size", "1".into()),
            ("ro_mode", "0".into()),
        ] {
            put(base, &format!("{d}/{k}"), format!("{v}\n"));
        }
        for (name, id, ebs) in volumes {
            let v = format!("sys/class/ubi/ubi{num}_{id}");
            for (k, val) in [
                ("name", name.to_string()),
                ("reserved_ebs", ebs.to_string()),
                ("data_bytes", (ebs * 262016).to_string()),
                ("type", "dynamic".into()),
                ("corrupted", "0".into()),
                ("upd_marker", "0".into()),
                ("alignment", "1".into()),
                ("usable_eb_size", "262016".into()),
            ] {
                put(base, &format!("{v}/{k}"), format!("{val}\n"));
            }
        }
    }

    #[test]
    fn devices_and_volumes_from_sysfs() {
        let dir = TempDir::new("ubi");
        fixture_ubi(dir.path(), 0, 2, 0, &[("kernel", 0, 20), ("rootfs", 1, 40)]);
        fixture_ubi(dir.path(), 1, 3, 180, &[("rootfs_data", 0, 60)]);
        dir.write("sys/class/ubi/version", "1\n");
        let (devs, notes) = read_ubi_devices(&SysRoot::new(dir.path()));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].volumes.len(), 2);
        assert_eq!(devs[0].volumes[1].name, "rootfs");
        assert_eq!(
            devs[1],
            UbiDevice {
                num: 1,
                mtd_num: 3,
                leb_size: 262016,
                total_ebs: 256,
                avail_ebs: 180,
                bad_pebs: 0,
                max_ec: 3,
                read_only: false,
                volumes: vec![UbiVolume {
                    ubi: 1,
                    id: 0,
                    name: "rootfs_data".into(),
                    data_bytes: 60 * 262016,
                    reserved_ebs: 60,
                    dynamic: true,
                    corrupted: false,
                    upd_marker: false,
                }],
            }
        );
        assert_eq!(devs[1].free_bytes(), 180 * 262016);
        assert_eq!(devs[1].node(), PathBuf::from("/dev/ubi1"));
        assert_eq!(devs[1].volumes[0].node(), PathBuf::from("/dev/ubi1_0"));
        let (d, v) = find_volume(&devs, "rootfs_data").unwrap();
        assert_eq!((d.num, v.id), (1, 0));
        assert!(find_volume(&devs, "nope").is_none());
        assert_eq!(attached_to(&devs, 3).map(|d| d.num), Some(1));
        assert!(attached_to(&devs, 9).is_none());
    }

    #[test]
    fn broken_entries_are_skipped_with_a_note() {
        let dir = TempDir::new("ubi-bad");
        fixture_ubi(dir.path(), 0, 1, 10, &[("ok", 0, 5)]);
        dir.write("sys/class/ubi/ubi0_1/reserved_ebs", "5\n"); // no name
        dir.write("sys/class/ubi/ubi3_0/name", "orphan\n"); // no ubi3
        dir.write("sys/class/ubi/ubi2/mtd_num", "x\n");
        dir.write("sys/class/ubi/ubi0_2/name", "static\n");
        dir.write("sys/class/ubi/ubi0_2/type", "static\n");
        dir.write("sys/class/ubi/ubi0_2/corrupted", "1\n");
        dir.write("sys/class/ubi/ubi0_2/upd_marker", "1\n");
        dir.write("sys/class/ubi/ubix/name", "ignored\n");
        let (devs, notes) = read_ubi_devices(&SysRoot::new(dir.path()));
        assert_eq!(devs.len(), 1);
        assert_eq!(
            devs[0]
                .volumes
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["ok", "static"]
        );
        let st = &devs[0].volumes[1];
        assert!(!st.dynamic && st.corrupted && st.upd_marker);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes
            .iter()
            .any(|n| n.contains("ubi0_1") && n.contains("no name")));
        assert!(notes
            .iter()
            .any(|n| n.contains("ubi3_0") && n.contains("no device ubi3")));
        assert!(notes
            .iter()
            .any(|n| n.contains("ubi2") && n.contains("mtd_num \"x\"")));
        let none = TempDir::new("ubi-none");
        assert_eq!(
            read_ubi_devices(&SysRoot::new(none.path())),
            (vec![], vec![])
        );
    }

    #[test]
    fn directory_names() {
        assert_eq!(parse_dir("ubi0"), Some((0, None)));
        assert_eq!(parse_dir("ubi12_3"), Some((12, Some(3))));
        for bad in [
            "ubi", "ubi_ctrl", "ubi0_", "ubi_1", "ubix", "version", "ubi0_1_2",
        ] {
            assert_eq!(parse_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn volume_content() {
        assert_eq!(
            identify_volume(&[0x31, 0x18, 0x10, 0x06, 0, 0]),
            VolumeContent::Ubifs
        );
        assert_eq!(identify_volume(&[0xFF; 4096]), VolumeContent::Empty);
        assert_eq!(identify_volume(b"hsqs"), VolumeContent::Unknown);
        assert_eq!(identify_volume(&[]), VolumeContent::Unknown);
        let dir = TempDir::new("ubi-vol");
        dir.write("dev/ubi0_1", [0xFF; 8192]);
        let v = UbiVolume {
            ubi: 0,
            id: 1,
            name: "rootfs_data".into(),
            data_bytes: 0,
            reserved_ebs: 0,
            dynamic: true,
            corrupted: false,
            upd_marker: false,
        };
        assert_eq!(
            read_volume_content(&SysRoot::new(dir.path()), &v).unwrap(),
            VolumeContent::Empty
        );
    }

    #[test]
    fn attach_waits_for_the_device_node() {
        let dir = TempDir::new("ubi-attach");
        let root = SysRoot::new(dir.path());
        let sys = FakeSys::default();
        sys.ubi_num.set(1);
        // The kernel's devtmpfs: the node appears on the 3rd poll.
        let node = dir.path().join("dev/ubi1");
        let polls = std::cell::Cell::new(0);
        sys.on_call(move |c| {
            if matches!(c, Call::Sleep(_)) {
                polls.set(polls.get() + 1);
                if polls.get() == 3 {
                    std::fs::create_dir_all(node.parent().unwrap()).unwrap();
                    std::fs::write(&node, "").unwrap();
                }
            }
        });
        assert_eq!(attach(&sys, &root, 2, Duration::from_secs(1)).unwrap(), 1);
        let calls = sys.calls();
        assert_eq!(
            calls[0],
            Call::UbiAttach {
                ctrl: UBI_CTRL.into(),
                mtd: 2
            }
        );
        assert_eq!(
            calls.iter().filter(|c| matches!(c, Call::Sleep(_))).count(),
            3
        );
    }

    #[test]
    fn attach_errors() {
        let dir = TempDir::new("ubi-attach-err");
        let root = SysRoot::new(dir.path());
        let sys = FakeSys::default();
        sys.fail_when(22, |c| matches!(c, Call::UbiAttach { .. }));
        let err = attach(&sys, &root, 2, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot attach mtd2 to UBI through /dev/ubi_ctrl: {}",
                io::Error::from_raw_os_error(22)
            )
        );
        let sys = FakeSys::default();
        let err = attach(&sys, &root, 2, Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(err, FlashError::NodeMissing { ref node, .. } if node == Path::new("/dev/ubi0"))
        );
    }

    fn dev(avail: u64) -> UbiDevice {
        UbiDevice {
            num: 0,
            mtd_num: 1,
            leb_size: 262016,
            total_ebs: 256,
            avail_ebs: avail,
            bad_pebs: 0,
            max_ec: 1,
            read_only: false,
            volumes: vec![],
        }
    }

    #[test]
    fn create_volume_takes_every_free_leb() {
        let sys = FakeSys::default();
        sys.ubi_vol_id.set(4);
        assert_eq!(create_volume(&sys, &dev(252), "rootfs_data").unwrap(), 4);
        assert_eq!(
            sys.calls(),
            [Call::UbiMkvol {
                dev: "/dev/ubi0".into(),
                name: "rootfs_data".into(),
                bytes: 252 * 262016
            }]
        );
        let err = create_volume(&sys, &dev(16), "rootfs_data").unwrap_err();
        assert!(matches!(err, FlashError::NoSpace { avail: 16, .. }));
        sys.fail_when(28, |c| matches!(c, Call::UbiMkvol { .. }));
        let err = create_volume(&sys, &dev(100), "rootfs_data").unwrap_err();
        assert!(matches!(err, FlashError::MakeVolume { ref name, .. } if name == "rootfs_data"));
    }
}
