//! Finding block devices: parsing device specs (`/dev/NAME`, `PARTLABEL=`,
//! `PARTUUID=`), listing `/sys/class/block`, and reading partition tables for
//! the names and UUIDs the kernel's uevent does not always carry.
//!
//! `parse_*` functions are pure; `read_*` functions do I/O below a [`SysRoot`].

use crate::paths::SysRoot;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::PathBuf;

/// How the user names a block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `/dev/vda1`
    Path(String),
    /// `PARTLABEL=rootfs_data`: the GPT partition name.
    PartLabel(String),
    /// `PARTUUID=...`: GPT unique partition GUID, or MBR `SSSSSSSS-PP`.
    PartUuid(String),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Path(p) => write!(f, "{p}"),
            DeviceSpec::PartLabel(l) => write!(f, "PARTLABEL={l}"),
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
        }
    }
}

/// Why a device spec was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    Empty,
    /// Not `/dev/...`, `PARTLABEL=` or `PARTUUID=`.
    UnknownForm,
    /// A `/dev/` path with `..` or nothing after `/dev/`.
    BadPath,
    /// A PARTUUID that is neither a GUID nor `SSSSSSSS-PP`.
    BadUuid,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecError::Empty => "empty device name",
            SpecError::UnknownForm => {
                "not a device (use /dev/NAME, PARTLABEL=NAME or PARTUUID=UUID)"
            }
            SpecError::BadPath => "not a plain /dev/NAME path",
            SpecError::BadUuid => "not a partition UUID (GPT GUID or MBR SSSSSSSS-PP)",
        })
    }
}

/// Parses one device spec.
pub fn parse_spec(s: &str) -> Result<DeviceSpec, SpecError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(SpecError::Empty);
    }
    if let Some(label) = s.strip_prefix("PARTLABEL=") {
        return if label.is_empty() {
            Err(SpecError::Empty)
        } else {
            Ok(DeviceSpec::PartLabel(label.into()))
        };
    }
    if let Some(uuid) = s.strip_prefix("PARTUUID=") {
        let u = uuid.to_ascii_lowercase();
        return if is_guid(&u) || is_mbr_partuuid(&u) {
            Ok(DeviceSpec::PartUuid(u))
        } else {
            Err(SpecError::BadUuid)
        };
    }
    if let Some(name) = s.strip_prefix("/dev/") {
        if name.is_empty() || name.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(SpecError::BadPath);
        }
        return Ok(DeviceSpec::Path(s.into()));
    }
    Err(SpecError::UnknownForm)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| is_hex(p, *n))
}

fn is_mbr_partuuid(s: &str) -> bool {
    matches!(s.split_once('-'), Some((sig, part)) if is_hex(sig, 8) && is_hex(part, 2))
}

/// A block device as sysfs and its partition table describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name, e.g. `vda2`.
    pub name: String,
    /// `/dev/vda2`
    pub node: PathBuf,
    /// Whole disk this partition belongs to (`None` for a disk).
    pub disk: Option<String>,
    pub partn: Option<u32>,
    /// GPT partition name.
    pub partlabel: Option<String>,
    /// Lower-case partition UUID.
    pub partuuid: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

impl BlockDev {
    pub fn matches(&self, spec: &DeviceSpec) -> bool {
        match spec {
            DeviceSpec::Path(p) => self.node.as_os_str() == p.as_str(),
            DeviceSpec::PartLabel(l) => self.partlabel.as_deref() == Some(l.as_str()),
            DeviceSpec::PartUuid(u) => self.partuuid.as_deref() == Some(u.as_str()),
        }
    }
}

/// Parses a sysfs `uevent` file into (DEVNAME, DEVTYPE, PARTN, PARTNAME).
pub fn parse_uevent(text: &str) -> (Option<String>, Option<String>, Option<u32>, Option<String>) {
    let (mut devname, mut devtype, mut partn, mut partname) = (None, None, None, None);
    for line in text.lines() {
        match line.split_once('=') {
            Some(("DEVNAME", v)) => devname = Some(v.to_string()),
            Some(("DEVTYPE", v)) => devtype = Some(v.to_string()),
            Some(("PARTN", v)) => partn = v.parse().ok(),
            Some(("PARTNAME", v)) => partname = Some(v.to_string()),
            _ => {}
        }
    }
    (devname, devtype, partn, partname)
}

/// One entry of a partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartEntry {
    /// 1-based partition number, as the kernel numbers them.
    pub number: u32,
    pub uuid: String,
    pub name: Option<String>,
}

const SECTOR: usize = 512;

/// Parses the partition table from the first sectors of a disk: GPT when the
/// header at LBA 1 is valid, otherwise MBR primary partitions.
/// `head` must hold at least LBA 0..=1 plus the GPT entry array when present.
pub fn parse_partition_table(head: &[u8]) -> Vec<PartEntry> {
    parse_gpt(head).unwrap_or_else(|| parse_mbr(head))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn parse_gpt(head: &[u8]) -> Option<Vec<PartEntry>> {
    let hdr = head.get(SECTOR..2 * SECTOR)?;
    if hdr.get(0..8)? != b"EFI PART" {
        return None;
    }
    let hdr_size = usize::try_from(le32(hdr, 12)?).ok()?;
    let stored_crc = le32(hdr, 16)?;
    let mut h = hdr.get(..hdr_size)?.to_vec();
    h.get_mut(16..20)?.fill(0);
    if crate::crc32::hash(&h) != stored_crc {
        return None;
    }
    let entries_lba = usize::try_from(le64(hdr, 72)?).ok()?;
    let count = usize::try_from(le32(hdr, 80)?).ok()?.min(256);
    let esize = usize::try_from(le32(hdr, 84)?).ok()?;
    if esize < 128 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..count {
        let off = entries_lba
            .checked_mul(SECTOR)?
            .checked_add(i.checked_mul(esize)?)?;
        let Some(e) = head.get(off..off + 128) else {
            break;
        };
        if e.get(0..16)?.iter().all(|&b| b == 0) {
            continue; // unused entry: type GUID zero
        }
        let units: Vec<u16> = e
            .get(56..128)?
            .chunks_exact(2)
            .filter_map(|c| Some(u16::from_le_bytes(c.try_into().ok()?)))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16(&units).ok().filter(|n| !n.is_empty());
        out.push(PartEntry {
            number: u32::try_from(i).ok()? + 1,
            uuid: format_guid(e.get(16..32)?)?,
            name,
        });
    }
    Some(out)
}

/// Formats a GPT GUID (mixed-endian on disk) the way blkid prints it.
fn format_guid(g: &[u8]) -> Option<String> {
    let d1 = le32(g, 0)?;
    let d2 = u16::from_le_bytes(g.get(4..6)?.try_into().ok()?);
    let d3 = u16::from_le_bytes(g.get(6..8)?.try_into().ok()?);
    let tail: String = g.get(8..16)?.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{d1:08x}-{d2:04x}-{d3:04x}-{}-{}",
        &tail[..4],
        &tail[4..]
    ))
}

fn parse_mbr(head: &[u8]) -> Vec<PartEntry> {
    let (Some(sig), Some(&[0x55, 0xAA])) = (le32(head, 0x1B8), head.get(510..512)) else {
        return Vec::new();
    };
    (0..4u32)
        .filter_map(|i| {
            let e = head.get(0x1BE + 16 * i as usize..0x1BE + 16 * (i as usize + 1))?;
            (e.get(4) != Some(&0)).then(|| PartEntry {
                number: i + 1,
                uuid: format!("{sig:08x}-{:02x}", i + 1),
                name: None,
            })
        })
        .collect()
}

/// Reads what is needed of a disk's start for [`parse_partition_table`].
fn read_disk_head(node: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(node)?;
    // MBR, GPT header and 128 entries of 128 bytes.
    let mut head = crate::probe::read_up_to(&f, 34 * SECTOR)?;
    // A GPT whose entries do not start at LBA 2: read them where the header says.
    if let Some(lba) = parse_entries_lba(&head) {
        if lba > 2 {
            f.seek(SeekFrom::Start(lba * SECTOR as u64))?;
            let rest = crate::probe::read_up_to(&f, 32 * SECTOR)?;
            head.resize(lba as usize * SECTOR, 0);
            head.extend_from_slice(&rest);
        }
    }
    Ok(head)
}

fn parse_entries_lba(head: &[u8]) -> Option<u64> {
    (head.get(SECTOR..SECTOR + 8)? == b"EFI PART")
        .then(|| le64(head, SECTOR + 72))
        .flatten()
        .filter(|&l| l < 1 << 20)
}

/// Lists the block devices under `<root>/sys/class/block`, with partition names
/// and UUIDs filled from each disk's partition table when uevent lacks them.
pub fn read_block_devices(root: &SysRoot) -> Vec<BlockDev> {
    let class = root.path("/sys/class/block");
    let Ok(names) = crate::fsio::dir_names(&class) else {
        return Vec::new();
    };
    let mut devs: Vec<BlockDev> = Vec::new();
    for entry in names {
        let name = entry.to_string_lossy().into_owned();
        let sys = class.join(&entry);
        let uevent = std::fs::read_to_string(sys.join("uevent")).unwrap_or_default();
        let (devname, devtype, partn, partname) = parse_uevent(&uevent);
        let devname = devname.unwrap_or_else(|| name.clone());
        let is_part = devtype.as_deref() == Some("partition") || sys.join("partition").exists();
        let disk = if is_part {
            // The class entry links to the partition's directory, which
            // sits in its disk's: `../../devices/.../block/vda/vda1`.
            std::fs::read_link(&sys).ok().and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
        } else {
            None
        };
        let size = std::fs::read_to_string(sys.join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(0, |sectors| sectors * 512);
        devs.push(BlockDev {
            node: PathBuf::from(format!("/dev/{devname}")),
            name,
            disk,
            partn,
            partlabel: partname,
            partuuid: None,
            size,
        });
    }
    // Fill names and UUIDs from each disk's table, reading each disk once.
    let mut disks: Vec<String> = devs.iter().filter_map(|d| d.disk.clone()).collect();
    disks.sort_unstable();
    disks.dedup();
    for disk in disks {
        let Ok(head) = read_disk_head(&root.path(&format!("/dev/{disk}"))) else {
            continue;
        };
        let table = parse_partition_table(&head);
        for dev in devs
            .iter_mut()
            .filter(|d| d.disk.as_deref() == Some(disk.as_str()))
        {
            if let Some(e) = table.iter().find(|e| Some(e.number) == dev.partn) {
                dev.partuuid = Some(e.uuid.clone());
                if dev.partlabel.is_none() {
                    dev.partlabel = e.name.clone();
                }
            }
        }
    }
    // Names come from one directory listing: unique, so unstable sorts the same.
    devs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    devs
}

/// Finds the device a spec names.
pub fn find(devs: &[BlockDev], spec: &DeviceSpec) -> Option<BlockDev> {
    devs.iter().find(|d| d.matches(spec)).cloned()
}

/// The device and filesystem type of the mount at `/`, from
/// /proc/self/mountinfo (`36 1 31:1 / / ro,relatime - squashfs /dev/root ro`):
/// the last such line, which is the one in effect.
pub fn root_mount(mountinfo: &str) -> Option<(String, String)> {
    mountinfo.lines().rev().find_map(|l| {
        // The first " - " (a byte search: no substring searcher in the
        // binary, issue 14's size budget).
        let at = l.as_bytes().windows(3).position(|w| w == b" - ")?;
        let (left, right) = (l.get(..at)?, l.get(at + 3..)?);
        if left.split_whitespace().nth(4)? != "/" {
            return None;
        }
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let source = r.next()?;
        Some((source.to_string(), fstype.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_mount_from_mountinfo() {
        let mi = "15 1 31:1 / / ro,relatime shared:1 - squashfs /dev/root ro,errors=continue\n\
                  16 15 0:5 / /dev rw - devtmpfs devtmpfs rw\n";
        assert_eq!(
            root_mount(mi),
            Some(("/dev/root".into(), "squashfs".into()))
        );
        assert_eq!(
            root_mount("16 15 0:5 / /dev rw - devtmpfs devtmpfs rw\n"),
            None
        );
        assert_eq!(root_mount("garbage\n"), None);
    }

    #[test]
    fn spec_forms() {
        assert_eq!(
            parse_spec("/dev/vda1"),
            Ok(DeviceSpec::Path("/dev/vda1".into()))
        );
        assert_eq!(
            parse_spec("PARTLABEL=rootfs_data"),
            Ok(DeviceSpec::PartLabel("rootfs_data".into()))
        );
        assert_eq!(
            parse_spec("PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
            Ok(DeviceSpec::PartUuid(
                "0fc63daf-8483-4772-8e79-3d69d8477de4".into()
            ))
        );
        assert_eq!(
            parse_spec("PARTUUID=1234abcd-02"),
            Ok(DeviceSpec::PartUuid("1234abcd-02".into()))
        );
    }

    #[test]
    fn spec_errors() {
        assert_eq!(parse_spec(""), Err(SpecError::Empty));
        assert_eq!(parse_spec("PARTLABEL="), Err(SpecError::Empty));
        assert_eq!(parse_spec("PARTUUID=zzz"), Err(SpecError::BadUuid));
        assert_eq!(parse_spec("/dev/../etc/passwd"), Err(SpecError::BadPath));
        assert_eq!(parse_spec("/dev/"), Err(SpecError::BadPath));
        assert_eq!(parse_spec("vda1"), Err(SpecError::UnknownForm));
        assert_eq!(parse_spec("LABEL=x"), Err(SpecError::UnknownForm));
    }

    #[test]
    fn uevent_fields() {
        let u = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTNAME=rootfs_data\n";
        assert_eq!(
            parse_uevent(u),
            (
                Some("vda2".into()),
                Some("partition".into()),
                Some(2),
                Some("rootfs_data".into())
            )
        );
        assert_eq!(parse_uevent("garbage\nPARTN=x\n"), (None, None, None, None));
    }

    /// Builds a GPT image head with the given (name, guid bytes) entries.
    pub(crate) fn gpt_head(parts: &[(&str, [u8; 16])]) -> Vec<u8> {
        let mut img = vec![0u8; 34 * SECTOR];
        let entries_off = 2 * SECTOR;
        for (i, (name, guid)) in parts.iter().enumerate() {
            let e = &mut img[entries_off + i * 128..entries_off + (i + 1) * 128];
            e[0] = 0xAF; // any non-zero type GUID
            e[16..32].copy_from_slice(guid);
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        let h = &mut img[SECTOR..2 * SECTOR];
        h[0..8].copy_from_slice(b"EFI PART");
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        img
    }

    const G1: [u8; 16] = [
        0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    #[test]
    fn gpt_names_and_guids() {
        let head = gpt_head(&[("rootfs", G1), ("rootfs_data", [0x11; 16])]);
        let t = parse_partition_table(&head);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            PartEntry {
                number: 1,
                uuid: "12345678-9abc-def0-0102-030405060708".into(),
                name: Some("rootfs".into())
            }
        );
        assert_eq!(t[1].name.as_deref(), Some("rootfs_data"));
        assert_eq!(t[1].number, 2);
    }

    #[test]
    fn gpt_with_bad_crc_is_not_trusted() {
        let mut head = gpt_head(&[("rootfs", G1)]);
        head[SECTOR + 20] ^= 1; // inside the CRC-covered header
        assert!(parse_partition_table(&head).is_empty());
    }

    #[test]
    fn truncated_gpt_gives_what_is_there() {
        let head = gpt_head(&[("a", G1), ("b", G1)]);
        assert_eq!(parse_partition_table(&head[..2 * SECTOR + 128]).len(), 1);
        assert!(parse_partition_table(&head[..100]).is_empty());
    }

    #[test]
    fn mbr_partuuids() {
        let mut head = vec![0u8; SECTOR];
        head[0x1B8..0x1BC].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        head[0x1BE + 4] = 0x83;
        head[0x1BE + 16 + 4] = 0x83;
        head[510] = 0x55;
        head[511] = 0xAA;
        let t = parse_partition_table(&head);
        assert_eq!(
            t.iter().map(|e| e.uuid.as_str()).collect::<Vec<_>>(),
            vec!["deadbeef-01", "deadbeef-02"]
        );
    }

    #[test]
    fn sysfs_fixture_discovery() {
        let dir = crate::testutil::TempDir::new("devices");
        let root = SysRoot::new(dir.path());
        let disk = dir.path().join("sys/devices/virtio0/block/vda");
        std::fs::create_dir_all(disk.join("vda1")).unwrap();
        std::fs::create_dir_all(disk.join("vda2")).unwrap();
        std::fs::write(disk.join("uevent"), "DEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        std::fs::write(disk.join("size"), "2048\n").unwrap();
        std::fs::write(
            disk.join("vda1/uevent"),
            "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\n",
        )
        .unwrap();
        std::fs::write(
            disk.join("vda2/uevent"),
            "DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=data\n",
        )
        .unwrap();
        let class = dir.path().join("sys/class/block");
        std::fs::create_dir_all(&class).unwrap();
        for (n, t) in [
            ("vda", "../../devices/virtio0/block/vda"),
            ("vda1", "../../devices/virtio0/block/vda/vda1"),
            ("vda2", "../../devices/virtio0/block/vda/vda2"),
        ] {
            std::os::unix::fs::symlink(t, class.join(n)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(
            dir.path().join("dev/vda"),
            gpt_head(&[("rootfs", G1), ("rootfs_data", [0x22; 16])]),
        )
        .unwrap();

        let devs = read_block_devices(&root);
        assert_eq!(devs.len(), 3);
        assert_eq!(devs[0].size, 1024 * 1024);
        let p1 = find(&devs, &DeviceSpec::PartLabel("rootfs".into())).unwrap();
        assert_eq!(p1.name, "vda1");
        assert_eq!(p1.disk.as_deref(), Some("vda"));
        // uevent's PARTNAME wins over the table, as the kernel reports it.
        assert_eq!(
            find(&devs, &DeviceSpec::PartLabel("data".into()))
                .unwrap()
                .name,
            "vda2"
        );
        assert!(find(&devs, &DeviceSpec::PartLabel("rootfs_data".into())).is_none());
        let by_uuid = DeviceSpec::PartUuid("12345678-9abc-def0-0102-030405060708".into());
        assert_eq!(find(&devs, &by_uuid).unwrap().name, "vda1");
        assert_eq!(
            find(&devs, &DeviceSpec::Path("/dev/vda2".into()))
                .unwrap()
                .name,
            "vda2"
        );
    }
}
