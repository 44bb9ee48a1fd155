//! What a partition holds, from magic numbers only (as fstools
//! `block_file_identify` does): never guess, never format what we do not know.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Filesystem (or lack of one) found on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// ext2/3/4 superblock (ext4 mounts all three).
    Ext4,
    F2fs,
    Squashfs,
    Erofs,
    /// OpenWrt's `0xdeadc0de` "format me" marker at offset 0, or the tag
    /// of a format of ours that was cut short ([`format_intent`]).
    FormatMarker,
    /// Every sampled byte is 0x00 or every one is 0xFF: erased flash.
    Blank,
    /// Something else: data we must not touch.
    Unknown,
}

impl FsKind {
    /// The type name for mount(2), when it is a filesystem.
    pub fn fstype(self) -> Option<&'static str> {
        match self {
            FsKind::Ext4 => Some("ext4"),
            FsKind::F2fs => Some("f2fs"),
            FsKind::Squashfs => Some("squashfs"),
            FsKind::Erofs => Some("erofs"),
            FsKind::FormatMarker | FsKind::Blank | FsKind::Unknown => None,
        }
    }
}

/// Bytes read from the start of a device: covers every superblock we know.
pub const HEAD_LEN: usize = 64 * 1024;
/// Blank flash is also checked this far in, and at [`SAMPLES`] points across the device,
/// so that a partition whose first blocks were zeroed but holds data further in
/// (ext4 backup superblocks, a wiped header) is not taken for blank.
pub const BLANK_HEAD_LEN: usize = 1024 * 1024;
pub const SAMPLES: u64 = 16;
const SAMPLE_LEN: usize = 4096;

fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Identifies a filesystem from the first bytes of a device.
/// Blank detection here covers `head` only; see [`read_kind`] for the full check.
pub fn identify(head: &[u8]) -> FsKind {
    if head.get(0..4) == Some(b"hsqs") {
        FsKind::Squashfs
    } else if le32(head, 0) == Some(0xdeadc0de) || head.get(0..4) == Some(&[0xde, 0xad, 0xc0, 0xde])
    {
        FsKind::FormatMarker
    } else if le16(head, 1024 + 56) == Some(0xEF53) {
        FsKind::Ext4
    } else if le32(head, 1024) == Some(0xF2F5_2010) {
        FsKind::F2fs
    } else if le32(head, 1024) == Some(0xE0F5_E1E2) {
        FsKind::Erofs
    } else if is_uniform(head) && !head.is_empty() {
        FsKind::Blank
    } else {
        FsKind::Unknown
    }
}

/// Why an ext2/3/4 superblock calls for a check before mounting, as e2fsck -p
/// itself decides it (e2fsck(8): "clean" filesystems are skipped): `None`
/// when the filesystem was cleanly unmounted with no errors recorded.
pub fn ext4_needs_check(head: &[u8]) -> Option<&'static str> {
    const SB: usize = 1024;
    const EXT4_VALID_FS: u16 = 1;
    const EXT4_ERROR_FS: u16 = 2;
    const INCOMPAT_RECOVER: u32 = 0x4;
    let (Some(mnt_count), Some(max_mnt), Some(state), Some(incompat), Some(errors)) = (
        le16(head, SB + 0x34),
        le16(head, SB + 0x36),
        le16(head, SB + 0x3A),
        le32(head, SB + 0x60),
        le32(head, SB + 0x194),
    ) else {
        return Some("superblock cut short");
    };
    if incompat & INCOMPAT_RECOVER != 0 {
        Some("journal needs recovery (not cleanly unmounted)")
    } else if state & EXT4_VALID_FS == 0 {
        Some("not cleanly unmounted")
    } else if state & EXT4_ERROR_FS != 0 || errors > 0 {
        Some("errors recorded")
    } else if (max_mnt as i16) > 0 && mnt_count >= max_mnt {
        Some("maximal mount count reached")
    } else {
        None
    }
}

/// The ext4 superblock's lifetime write counter (`s_kbytes_written`, offset
/// 0x178, KiB written over the filesystem's life: what the kernel shows as
/// /sys/fs/ext4/DEV/lifetime_write_kbytes once mounted), read before mounting
/// so the wear policy can decide without writing.
pub fn ext4_kbytes_written(head: &[u8]) -> Option<u64> {
    // Only from an ext4 superblock (also one left under OpenWrt's format
    // marker, which covers the first bytes only).
    if le16(head, 1024 + 56) != Some(0xEF53) {
        return None;
    }
    let at = 1024 + 0x178;
    Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?))
}

/// All 0x00 or all 0xFF.
pub fn is_uniform(b: &[u8]) -> bool {
    match b.first() {
        Some(&first) if first == 0 || first == 0xFF => b.iter().all(|&x| x == first),
        Some(_) => false,
        None => true,
    }
}

/// Reads up to `len` bytes from where `f` stands (fewer at its end), in
/// buffers of at most 64 KiB. One plain loop for every bounded read (was
/// `take(len).read_to_end()`, whose adaptive buffering was linked once per
/// reader type: ~1 KiB).
pub fn read_up_to(mut f: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    let mut n = 0;
    loop {
        if n == v.len() {
            if n >= len {
                break;
            }
            v.resize(len.min(n.saturating_add(64 << 10)), 0);
        }
        match f.read(v.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k).min(v.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    v.truncate(n);
    Ok(v)
}

/// The intent tag of a format: written into the last 4 KiB of a partition
/// before mkfs runs, removed once it has succeeded. mke2fs and mkfs.f2fs
/// (without discard) write the start of the partition first and its
/// superblock last, and never its last block: a cut in between left a
/// partition that is neither blank nor a filesystem, which the probe used
/// to leave alone for ever; with the tag it is taken for what it is, a
/// format to redo. `size` ties the tag to the partition.
pub const INTENT_LEN: usize = 4096;
const INTENT_MAGIC: &[u8; 32] = b"overlay-init: format under way\n\0";

pub fn format_intent(size: u64) -> Vec<u8> {
    let mut v = vec![0u8; INTENT_LEN];
    let mut head = INTENT_MAGIC.to_vec();
    head.extend_from_slice(&size.to_le_bytes());
    let crc = crate::crc32::hash(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    if let Some(d) = v.get_mut(..head.len()) {
        d.copy_from_slice(&head);
    }
    v
}

/// Whether `tail` (the last [`INTENT_LEN`] bytes of a `size`-byte
/// partition) is the tag [`format_intent`] writes.
pub fn is_format_intent(tail: &[u8], size: u64) -> bool {
    size >= INTENT_LEN as u64 && tail.get(..44) == format_intent(size).get(..44)
}

/// Where the intent tag goes in a `size`-byte partition.
pub fn intent_offset(size: u64) -> u64 {
    size.saturating_sub(INTENT_LEN as u64) / 512 * 512
}

fn read_intent(f: &mut File, size: u64) -> io::Result<bool> {
    if size < INTENT_LEN as u64 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(intent_offset(size)))?;
    Ok(is_format_intent(&read_up_to(f, INTENT_LEN)?, size))
}

/// Reads a device and identifies it. `size` is the device size in bytes
/// (0 if unknown: then only the head is sampled).
/// Also returns the first [`HEAD_LEN`] bytes, for superblock checks that
/// follow (so the device is read once).
pub fn read_kind(dev: &Path, size: u64) -> io::Result<(FsKind, Vec<u8>)> {
    let mut f = File::open(dev)?;
    // The superblocks first: a filesystem is known from them, and a normal
    // boot reads no more (64 KiB, not the 1 MiB of the blank check).
    let sb = read_up_to(&f, HEAD_LEN)?;
    let unknown = |f: &mut File| -> io::Result<FsKind> {
        Ok(if read_intent(f, size)? {
            FsKind::FormatMarker
        } else {
            FsKind::Unknown
        })
    };
    let kind = identify(&sb);
    if kind == FsKind::Unknown {
        return Ok((unknown(&mut f)?, sb));
    }
    if kind != FsKind::Blank {
        return Ok((kind, sb));
    }
    let first = sb.first().copied().unwrap_or(0);
    // The rest of the first MiB, a superblock's worth at a time (PID 1's
    // peak memory stays small: issue 11).
    let mut left = BLANK_HEAD_LEN.saturating_sub(HEAD_LEN);
    while left > 0 {
        let chunk = read_up_to(&f, left.min(HEAD_LEN))?;
        if chunk.is_empty() {
            break;
        }
        if !chunk.iter().all(|&b| b == first) {
            return Ok((unknown(&mut f)?, sb));
        }
        left -= chunk.len();
    }
    for i in 1..SAMPLES {
        let off = size / SAMPLES * i;
        if off <= BLANK_HEAD_LEN as u64 || off + SAMPLE_LEN as u64 > size {
            continue;
        }
        f.seek(SeekFrom::Start(off))?;
        if !read_up_to(&f, SAMPLE_LEN)?.iter().all(|&b| b == first) {
            return Ok((unknown(&mut f)?, sb));
        }
    }
    Ok((FsKind::Blank, sb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(off: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HEAD_LEN];
        v[off..off + bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn magics() {
        assert_eq!(identify(&with(0, b"hsqs")), FsKind::Squashfs);
        assert_eq!(identify(&with(1024 + 56, &[0x53, 0xEF])), FsKind::Ext4);
        assert_eq!(
            identify(&with(1024, &0xF2F52010u32.to_le_bytes())),
            FsKind::F2fs
        );
        assert_eq!(
            identify(&with(1024, &0xE0F5E1E2u32.to_le_bytes())),
            FsKind::Erofs
        );
        assert_eq!(
            identify(&with(0, &[0xde, 0xad, 0xc0, 0xde])),
            FsKind::FormatMarker
        );
        assert_eq!(
            identify(&with(0, &0xdeadc0deu32.to_le_bytes())),
            FsKind::FormatMarker
        );
    }

    /// A format cut short (issue 11's power-cut campaign: neither blank nor
    /// ext4) is recognised by the tag at its tail, and nothing else is.
    #[test]
    fn a_format_cut_short_is_known_by_its_intent_tag() {
        let dir = crate::testutil::TempDir::new("intent");
        let size = 8u64 << 20;
        let mut img = vec![0u8; size as usize];
        img[4096..8192].fill(0x5a); // what mkfs wrote before the cut
        let p = dir.write("dev", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Unknown);
        let at = intent_offset(size) as usize;
        img[at..at + INTENT_LEN].copy_from_slice(&format_intent(size));
        let p = dir.write("dev", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::FormatMarker);
        // The tag of another size is not ours: left alone.
        img[at..at + INTENT_LEN].copy_from_slice(&format_intent(size - 512));
        let p = dir.write("dev", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Unknown);
        // An ext4 keeps being ext4 whatever its tail holds.
        img[1024 + 56] = 0x53;
        img[1024 + 57] = 0xEF;
        img[at..at + INTENT_LEN].copy_from_slice(&format_intent(size));
        let p = dir.write("dev", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Ext4);
    }

    #[test]
    fn blank_zero_and_erased() {
        assert_eq!(identify(&vec![0u8; HEAD_LEN]), FsKind::Blank);
        assert_eq!(identify(&vec![0xFFu8; HEAD_LEN]), FsKind::Blank);
        assert_eq!(identify(&with(5000, &[1])), FsKind::Unknown);
        assert_eq!(identify(&[]), FsKind::Unknown);
        let mut mixed = vec![0xFFu8; 100];
        mixed[50] = 0;
        assert_eq!(identify(&mixed), FsKind::Unknown);
    }

    fn ext4_sb(state: u16, incompat: u32, errors: u32, mnt: (u16, u16)) -> Vec<u8> {
        let mut v = with(1024 + 56, &[0x53, 0xEF]);
        v[1024 + 0x34..1024 + 0x36].copy_from_slice(&mnt.0.to_le_bytes());
        v[1024 + 0x36..1024 + 0x38].copy_from_slice(&mnt.1.to_le_bytes());
        v[1024 + 0x3A..1024 + 0x3C].copy_from_slice(&state.to_le_bytes());
        v[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        v[1024 + 0x194..1024 + 0x198].copy_from_slice(&errors.to_le_bytes());
        v
    }

    #[test]
    fn ext4_check_is_needed_only_when_the_superblock_says_so() {
        assert_eq!(
            ext4_needs_check(&ext4_sb(1, 0x2C2, 0, (3, 0xFFFF))),
            None,
            "clean, max count disabled (-1)"
        );
        assert_eq!(
            ext4_needs_check(&ext4_sb(1, 0x2C6, 0, (3, 0xFFFF))),
            Some("journal needs recovery (not cleanly unmounted)")
        );
        assert_eq!(
            ext4_needs_check(&ext4_sb(0, 0, 0, (0, 0))),
            Some("not cleanly unmounted")
        );
        assert_eq!(
            ext4_needs_check(&ext4_sb(3, 0, 0, (0, 0))),
            Some("errors recorded")
        );
        assert_eq!(
            ext4_needs_check(&ext4_sb(1, 0, 2, (0, 0))),
            Some("errors recorded")
        );
        assert_eq!(
            ext4_needs_check(&ext4_sb(1, 0, 0, (20, 20))),
            Some("maximal mount count reached")
        );
        assert_eq!(ext4_needs_check(&ext4_sb(1, 0, 0, (19, 20))), None);
        assert_eq!(ext4_needs_check(&[0u8; 1100]), Some("superblock cut short"));
    }

    #[test]
    fn short_device_is_unknown_not_a_crash() {
        assert_eq!(identify(&[0x53, 0xEF]), FsKind::Unknown);
    }

    #[test]
    fn data_deep_inside_a_blank_looking_device_is_not_blank() {
        let dir = crate::testutil::TempDir::new("probe");
        let size = 32u64 << 20;
        let mut img = vec![0u8; size as usize];
        let p = dir.write("blank.img", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Blank);
        img[(size / 2) as usize + 10] = 7; // a sample point: size/16*8
        let p = dir.write("data.img", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Unknown);
        img[(size / 2) as usize + 10] = 0;
        img[BLANK_HEAD_LEN - 1] = 7; // inside the fully-read head, past the superblock window
        let p = dir.write("data2.img", &img);
        assert_eq!(read_kind(&p, size).unwrap().0, FsKind::Unknown);
    }
}
