//! UBI: attached devices and their volumes from sysfs (`/sys/class/ubi`, as
//! fstools' libfstools/ubi.c reads it), attaching an MTD partition and
//! creating a volume through the UBI character devices, and what a volume
//! holds.

use super::{wait_for_node, FlashError};
use crate::paths::SysRoot;
use crate::probe::read_up_to;
use crate::sys::{FlashIo, Sys};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
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
    /// `usable_eb_size`: bytes of each LEB of the volume (the device's LEB
    /// size less what its alignment cuts off); where LEB N starts in
    /// `/dev/ubiN_M`. 0 when sysfs did not say.
    pub usable_eb_size: u64,
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
        usable_eb_size: opt("usable_eb_size"),
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
    let class = root.path(SYS_CLASS_UBI);
    let Ok(names) = crate::fsio::dir_names(&class) else {
        return (devs, notes);
    };
    for entry in names {
        let name = entry.to_string_lossy().into_owned();
        let path = class.join(&entry);
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
    vols.sort_unstable_by_key(|v| (v.ubi, v.id));
    for v in vols {
        match devs.iter_mut().find(|d| d.num == v.ubi) {
            Some(d) => d.volumes.push(v),
            None => notes.push(format!(
                "{SYS_CLASS_UBI}/ubi{}_{}: skipped: no device ubi{}",
                v.ubi, v.id, v.ubi
            )),
        }
    }
    devs.sort_unstable_by_key(|d| d.num);
    (devs, notes)
}

/// The UBI device attached to MTD `mtd`, if any.
pub fn attached_to(ubis: &[UbiDevice], mtd: u32) -> Option<&UbiDevice> {
    ubis.iter().find(|d| d.mtd_num == mtd)
}

/// What a UBI volume holds, from the starts of its LEBs 0, 1 and 2.
///
/// UBIFS keeps its superblock at the start of LEB 0 and a master node at
/// the start of LEB 1 or 2 (it rewrites them one after the other), from the
/// end of its format on. Its format of an empty volume (at the first mount)
/// writes the LEB properties tree first, then the superblock, the root, the
/// master nodes; and it formats only a volume with no LEB mapped. So a
/// power cut in that format leaves a volume UBIFS would neither mount nor
/// format again, holding nothing but the pieces of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeContent {
    /// A UBIFS: superblock and master node.
    Ubifs,
    /// LEBs 0, 1 and 2 read 0xFF: no superblock, no master node. A new
    /// volume, or one whose format was cut before the superblock (LEB
    /// properties tree LEBs mapped).
    Empty,
    /// A UBIFS superblock and no master node (LEBs 1 and 2 read 0xFF): a
    /// format cut before the master nodes; never mounted.
    Unfinished,
    /// Something else (a squashfs image, JFFS2 on UBI...): not ours.
    Unknown,
}

fn is_ubifs_node(b: &[u8]) -> bool {
    b.get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        == Some(UBIFS_NODE_MAGIC)
}

fn is_blank(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&x| x == 0xFF)
}

/// Identifies a volume from the starts of its LEBs 0, 1 and 2.
pub fn identify_volume(leb0: &[u8], leb1: &[u8], leb2: &[u8]) -> VolumeContent {
    let masters_blank = is_blank(leb1) && is_blank(leb2);
    if is_ubifs_node(leb0) {
        // A master node that does not read as one (damaged): UBIFS decides.
        if masters_blank {
            VolumeContent::Unfinished
        } else {
            VolumeContent::Ubifs
        }
    } else if is_blank(leb0) && masters_blank {
        VolumeContent::Empty
    } else {
        VolumeContent::Unknown
    }
}

/// Reads the starts of LEBs 0, 1 and 2 of a volume (`/dev/ubiN_M` below
/// `root`; an unmapped LEB reads 0xFF) and identifies it.
pub fn read_volume_content(root: &SysRoot, v: &UbiVolume) -> io::Result<VolumeContent> {
    if v.usable_eb_size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sysfs gives no usable_eb_size: cannot find LEBs 1 and 2",
        ));
    }
    let mut f = File::open(root.join(&v.node()))?;
    let mut heads = Vec::with_capacity(3);
    for lnum in 0..3u64 {
        f.seek(SeekFrom::Start(lnum * v.usable_eb_size))?;
        heads.push(read_up_to(&f, 4096)?);
    }
    match heads.as_slice() {
        [a, b, c] => Ok(identify_volume(a, b, c)),
        _ => Err(io::Error::other("internal error: not three LEB heads")),
    }
}

/// Unmaps LEBs `0..lebs` of a dynamic volume (`/dev/ubiN_M`): afterwards no
/// LEB is mapped and UBIFS formats the volume at its next mount. Each unmap
/// is atomic and unmapping an unmapped LEB changes nothing, so a cut here
/// only leaves it to be done again.
pub fn clear_volume(sys: &dyn FlashIo, vol: &Path, lebs: u64) -> Result<(), FlashError> {
    for lnum in 0..u32::try_from(lebs).unwrap_or(u32::MAX) {
        sys.ubi_leb_unmap(vol, lnum)
            .map_err(|err| FlashError::Unmap {
                vol: vol.into(),
                lnum,
                err,
            })?;
    }
    Ok(())
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
pub fn create_volume(sys: &dyn FlashIo, dev: &UbiDevice, name: &str) -> Result<u32, FlashError> {
    if dev.avail_ebs < UBIFS_MIN_LEBS {
        return Err(FlashError::NoSpace {
            dev: dev.node(),
            avail: dev.avail_ebs,
        });
    }
    make_volume(sys, dev.num, name, dev.free_bytes())
}

/// `UBI_IOCMKVOL` on `/dev/ubiN`: the dynamic volume `name` of `bytes`.
pub fn make_volume(sys: &dyn FlashIo, num: u32, name: &str, bytes: u64) -> Result<u32, FlashError> {
    let node = PathBuf::from(format!("/dev/ubi{num}"));
    sys.ubi_mkvol(&node, name, bytes)
        .map_err(|err| FlashError::MakeVolume {
            dev: node,
            name: name.into(),
            err,
        })
}

/// `UBI_IOCRNVOL` on `/dev/ubiN`: volume `id` is named `name` (atomic).
pub fn rename_volume(sys: &dyn FlashIo, num: u32, id: u32, name: &str) -> Result<(), FlashError> {
    let node = PathBuf::from(format!("/dev/ubi{num}"));
    sys.ubi_rename(&node, id, name)
        .map_err(|err| FlashError::RenameVolume {
            dev: node,
            id,
            name: name.into(),
            err,
        })
}

/// What the name of a volume being formatted ends with.
pub const FORMATTING: &str = ".formatting";

/// The name a volume called `name` bears while UBIFS formats it
/// (`rootfs_data.formatting`), when it fits UBI's 127 bytes. UBIFS's
/// format (at the first mount of an empty volume) writes the superblock,
/// the root, the master nodes and the log's first node one after the
/// other; a power cut among them leaves a volume UBIFS will neither mount
/// ("no UBIFS nodes found at the log head") nor format again, and that,
/// under its own name, cannot be told from a used UBIFS gone bad. So the
/// volume bears this name from before the format until after its mount,
/// and is renamed (one atomic volume-table update) only then: a volume
/// found under it is a format that never finished, whatever it holds.
pub fn formatting_name(name: &str) -> Option<String> {
    let n = format!("{name}{FORMATTING}");
    (n.len() <= crate::sys::flash_abi::UBI_MAX_VOLUME_NAME).then_some(n)
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
                    usable_eb_size: 262016,
                    dynamic: true,
                    corrupted: false,
                    upd_marker: false,
                }],
            }
        );
        assert_eq!(devs[1].free_bytes(), 180 * 262016);
        assert_eq!(devs[1].node(), PathBuf::from("/dev/ubi1"));
        assert_eq!(devs[1].volumes[0].node(), PathBuf::from("/dev/ubi1_0"));
        assert_eq!(devs[1].volume("rootfs_data").map(|v| v.id), Some(0));
        assert!(devs[1].volume("nope").is_none());
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
        let node = [0x31, 0x18, 0x10, 0x06, 0, 0];
        let ff = [0xFF; 4096];
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], VolumeContent);
        let table: [Case; 10] = [
            (&node, &node, &ff, VolumeContent::Ubifs),
            (&node, &ff, &node, VolumeContent::Ubifs),
            // Damaged master LEBs: UBIFS decides (recovers or refuses).
            (&node, b"junk", &ff, VolumeContent::Ubifs),
            (&node, &ff, &ff, VolumeContent::Unfinished),
            (&ff, &ff, &ff, VolumeContent::Empty),
            // No superblock but a master node, or data further in: not ours.
            (&ff, &node, &ff, VolumeContent::Unknown),
            (&ff, &ff, b"hsqs", VolumeContent::Unknown),
            (b"hsqs", &ff, &ff, VolumeContent::Unknown),
            (&[], &[], &[], VolumeContent::Unknown),
            (&ff, &[], &[], VolumeContent::Unknown),
        ];
        for (i, (a, b, c, want)) in table.into_iter().enumerate() {
            assert_eq!(identify_volume(a, b, c), want, "case {i}");
        }
    }

    #[test]
    fn volume_content_reads_the_starts_of_lebs_0_1_2() {
        const LEB: usize = 1000;
        let dir = TempDir::new("ubi-vol");
        let mut v = UbiVolume {
            ubi: 0,
            id: 1,
            name: "rootfs_data".into(),
            data_bytes: 0,
            reserved_ebs: 4,
            usable_eb_size: LEB as u64,
            dynamic: true,
            corrupted: false,
            upd_marker: false,
        };
        let root = SysRoot::new(dir.path());
        let mut img = vec![0xFF; 4 * LEB];
        dir.write("dev/ubi0_1", &img);
        assert_eq!(
            read_volume_content(&root, &v).unwrap(),
            VolumeContent::Empty
        );
        img[..4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
        dir.write("dev/ubi0_1", &img);
        assert_eq!(
            read_volume_content(&root, &v).unwrap(),
            VolumeContent::Unfinished
        );
        img[2 * LEB..2 * LEB + 4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
        dir.write("dev/ubi0_1", &img);
        assert_eq!(
            read_volume_content(&root, &v).unwrap(),
            VolumeContent::Ubifs
        );
        // Without usable_eb_size LEBs 1 and 2 cannot be found: unreadable
        // (the decision then leaves it to UBIFS).
        v.usable_eb_size = 0;
        assert!(read_volume_content(&root, &v).is_err());
    }

    #[test]
    fn clearing_a_volume_unmaps_each_leb() {
        let sys = FakeSys::default();
        clear_volume(&sys, Path::new("/dev/ubi0_1"), 3).unwrap();
        let want: Vec<Call> = (0..3)
            .map(|lnum| Call::UbiLebUnmap {
                vol: "/dev/ubi0_1".into(),
                lnum,
            })
            .collect();
        assert_eq!(sys.calls(), want);
        let sys = FakeSys::default();
        sys.fail_when(5, |c| matches!(c, Call::UbiLebUnmap { lnum: 1, .. }));
        assert_eq!(
            clear_volume(&sys, Path::new("/dev/ubi0_1"), 3)
                .unwrap_err()
                .to_string(),
            format!(
                "cannot unmap LEB 1 of /dev/ubi0_1: {}",
                io::Error::from_raw_os_error(5)
            )
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
