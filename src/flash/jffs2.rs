//! What a raw MTD partition holds, from magic numbers at the start of its
//! erase blocks (fstools libfstools/mtd.c `mtd_volume_identify`, extended to
//! sample the whole partition), and OpenWrt's "format me" marker.
//!
//! On NOR, JFFS2 starts every used erase block with a node (a cleanmarker
//! after each erase), and UBI starts every PEB with its erase-counter header;
//! an unused block reads 0xFF. So the starts of a few blocks across the
//! partition tell JFFS2, UBI, erased flash and anything else apart.

use super::mtd::{self, MtdInfo};
use super::FlashError;
use crate::paths::SysRoot;
use crate::probe::read_up_to;
use crate::sys::FlashIo;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// What a raw MTD partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    /// JFFS2 nodes: mount it.
    Jffs2,
    /// Every sampled byte is 0xFF: erased flash, which JFFS2 mounts as an
    /// empty filesystem without formatting. Also what a young JFFS2 looks
    /// like: it writes its few nodes into one block and erases the others
    /// lazily, so all samples may miss them (seen on the QEMU NOR board
    /// after writing one file). Harmless, as both mount as JFFS2; but
    /// `Blank` is no licence to put anything else on the partition.
    Blank,
    /// OpenWrt's `0xdeadc0de` at the start of the first good block: erase
    /// the partition, then mount it (sysupgrade and factory reset leave it).
    FormatMarker,
    /// UBI erase-counter headers (`UBI#`): attach it to UBI.
    Ubi,
    /// Anything else, including all-zero flash: never erased by us.
    Unknown,
}

/// JFFS2_MAGIC_BITMASK (include/uapi/linux/jffs2.h), at offset 0 of every
/// node, in the byte order of the CPU that wrote it. Only the native order
/// counts: the kernel's JFFS2 reads its own order alone (fs/jffs2/nodelist.h
/// `#define JFFS2_NATIVE_ENDIAN`), takes blocks it cannot parse for dirty
/// and erases them, so mounting a foreign-endian JFFS2 would destroy it;
/// such a partition is `Unknown` here and left alone. fstools compares in
/// host order too (mtd.c `mtd_volume_identify`).
pub const JFFS2_MAGIC: u16 = 0x1985;
/// UBI_EC_HDR_MAGIC (drivers/mtd/ubi/ubi-media.h): "UBI#", big-endian.
pub const UBI_EC_MAGIC: &[u8; 4] = b"UBI#";
/// OpenWrt's marker, as fstools reads it (`__be32_to_cpu(0xdeadc0de)`) and
/// writes it (factoryreset.c `jffs2_mark`), and as the image tools append it:
/// the bytes `de ad c0 de`, and only these (a marker means "erase").
pub const FORMAT_MARKER: [u8; 4] = [0xde, 0xad, 0xc0, 0xde];

/// Bytes read at the start of the first good block (all must be 0xFF for blank).
pub const HEAD_LEN: usize = 64 * 1024;
/// Bytes read at the start of each other sampled block.
pub const SAMPLE_LEN: usize = 4096;
/// Blocks sampled across the partition besides the first good one.
pub const SAMPLES: u64 = 16;

fn is_jffs2(b: &[u8]) -> bool {
    b.get(0..2) == Some(JFFS2_MAGIC.to_ne_bytes().as_slice())
}

fn is_marker(b: &[u8]) -> bool {
    b.get(0..4) == Some(FORMAT_MARKER.as_slice())
}

fn is_ubi(b: &[u8]) -> bool {
    b.get(0..4) == Some(UBI_EC_MAGIC.as_slice())
}

/// A PEB UBI was about to erase on NOR flash: before each erase, UBI zeroes
/// the magic of the block's EC header (and of its VID header), so that an
/// erase cut short is known for one at the next attach (the kernel's
/// `nor_erase_prepare`). On its own, four zero bytes prove nothing; beside
/// UBI headers in the other blocks, it is UBI's own, and its attach finishes
/// the erase.
fn is_ubi_erasing(b: &[u8]) -> bool {
    b.get(0..4) == Some([0u8; 4].as_slice())
}

fn is_erased(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&x| x == 0xFF)
}

/// Identifies a raw partition from the starts of its good erase blocks, in
/// block order; the first is the first good block (read [`HEAD_LEN`] bytes
/// there, [`SAMPLE_LEN`] elsewhere).
///
/// The first block decides when it carries a magic number. When it is
/// erased, the other samples decide: a JFFS2 (or UBI) whose first block
/// happens to be free is still that; erased flash with data further in that
/// is neither is `Unknown`, never `Blank`, so it is not mounted or erased.
pub fn identify(samples: &[&[u8]]) -> RawKind {
    let Some((first, rest)) = samples.split_first() else {
        return RawKind::Unknown;
    };
    if is_marker(first) {
        return RawKind::FormatMarker;
    }
    if is_ubi(first) {
        return RawKind::Ubi;
    }
    if is_jffs2(first) {
        return RawKind::Jffs2;
    }
    let mut erasing = is_ubi_erasing(first);
    if !erasing && !is_erased(first) {
        return RawKind::Unknown;
    }
    let (mut jffs2, mut ubi) = (false, false);
    for s in rest {
        if is_jffs2(s) {
            jffs2 = true;
        } else if is_ubi(s) {
            ubi = true;
        } else if is_ubi_erasing(s) {
            erasing = true;
        } else if !is_erased(s) {
            return RawKind::Unknown;
        }
    }
    match (jffs2, ubi) {
        // A block in UBI's erase needs UBI headers beside it.
        (false, false) if erasing => RawKind::Unknown,
        (false, false) => RawKind::Blank,
        (true, false) if erasing => RawKind::Unknown,
        (true, false) => RawKind::Jffs2,
        (false, true) => RawKind::Ubi,
        (true, true) => RawKind::Unknown,
    }
}

/// The blocks to sample: [`SAMPLES`] spread evenly over `1..blocks`, distinct,
/// ascending, after `first`.
pub fn sample_blocks(first: u64, blocks: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (1..=SAMPLES)
        .map(|i| blocks.saturating_sub(1) * i / SAMPLES)
        .filter(|&b| b > first && b < blocks)
        .collect();
    v.dedup();
    v
}

/// Reads the partition's samples (skipping bad blocks on NAND, asked through
/// `sys`) from its device node below `root`, and identifies it.
pub fn read_kind(sys: &dyn FlashIo, root: &SysRoot, m: &MtdInfo) -> Result<RawKind, FlashError> {
    let dev = m.node();
    let nand = m.kind.has_bad_blocks();
    let first = mtd::first_good_block(sys, &dev, nand, m.erasesize, m.blocks())?;
    let mut blocks = vec![first];
    for b in sample_blocks(first, m.blocks()) {
        if !mtd::is_bad(sys, &dev, nand, m.erasesize, b)? {
            blocks.push(b);
        }
    }
    let path = root.join(&dev);
    let mut f = File::open(&path).map_err(|err| FlashError::Read {
        dev: dev.clone(),
        offset: 0,
        err,
    })?;
    let mut samples = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let offset = b * u64::from(m.erasesize);
        let len = if i == 0 { HEAD_LEN } else { SAMPLE_LEN }.min(m.erasesize as usize);
        let data = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| read_up_to(&f, len))
            .map_err(|err| FlashError::Read {
                dev: dev.clone(),
                offset,
                err,
            })?;
        samples.push(data);
    }
    let refs: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    Ok(identify(&refs))
}

/// Writes OpenWrt's "format me" marker (fstools factoryreset.c `jffs2_mark`):
/// erases the first good block of `dev` and programs `de ad c0 de` at its
/// start, padded with 0xFF to one write unit (1 byte on NOR, a page on NAND).
/// The next boot finds [`RawKind::FormatMarker`] and erases the partition.
/// Only for a partition nobody has mounted: JFFS2 would not notice.
pub fn write_format_marker(sys: &dyn FlashIo, dev: &Path) -> Result<(), FlashError> {
    let g = mtd::geometry(sys, dev)?;
    let blocks = g.size / u64::from(g.erasesize);
    let block = mtd::first_good_block(sys, dev, g.has_bad_blocks(), g.erasesize, blocks)?;
    let offset = block * u64::from(g.erasesize);
    sys.mtd_erase(dev, offset, u64::from(g.erasesize))
        .map_err(|err| FlashError::Erase {
            dev: dev.into(),
            offset,
            err,
        })?;
    let unit = (g.writesize.max(1) as usize).max(FORMAT_MARKER.len());
    let mut data = vec![0xFFu8; unit];
    if let Some(head) = data.get_mut(..FORMAT_MARKER.len()) {
        head.copy_from_slice(&FORMAT_MARKER);
    }
    sys.mtd_write(dev, offset, &data)
        .map_err(|err| FlashError::Write {
            dev: dev.into(),
            offset,
            err,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::mtd::MtdKind;
    use crate::sys::fake::{Call, FakeSys};
    use crate::sys::MtdGeometry;
    use crate::testutil::TempDir;

    const FF: [u8; 64] = [0xFF; 64];

    fn block(head: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFFu8; 64];
        v[..head.len()].copy_from_slice(head);
        v
    }

    fn id(samples: &[Vec<u8>]) -> RawKind {
        let r: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
        identify(&r)
    }

    #[test]
    fn magic_numbers_of_the_first_block() {
        // A cleanmarker node: magic 0x1985, node type 0x2003, in CPU order.
        let mut native = JFFS2_MAGIC.to_ne_bytes().to_vec();
        native.extend(0x2003u16.to_ne_bytes());
        let mut foreign = JFFS2_MAGIC.swap_bytes().to_ne_bytes().to_vec();
        foreign.extend(0x2003u16.swap_bytes().to_ne_bytes());
        assert_eq!(id(&[block(&native)]), RawKind::Jffs2);
        assert_eq!(
            id(&[block(&foreign)]),
            RawKind::Unknown,
            "this kernel cannot read it and would erase it"
        );
        assert_eq!(id(&[block(b"UBI#\x01")]), RawKind::Ubi);
        assert_eq!(id(&[block(&FORMAT_MARKER)]), RawKind::FormatMarker);
        assert_eq!(
            id(&[block(&[0xde, 0xc0, 0xad, 0xde])]),
            RawKind::Unknown,
            "no one writes the marker byte-swapped"
        );
        assert_eq!(id(&[FF.to_vec(), FF.to_vec()]), RawKind::Blank);
        assert_eq!(
            id(&[vec![0u8; 64]]),
            RawKind::Unknown,
            "zeros are written data"
        );
        assert_eq!(id(&[block(b"hsqs")]), RawKind::Unknown);
        assert_eq!(id(&[]), RawKind::Unknown);
        assert_eq!(id(&[vec![]]), RawKind::Unknown, "nothing read");
    }

    /// Found by tests/qemu/nor.rs's power cut during the first UBIFS
    /// format: the cut fell between UBI's zeroing of the first PEB's magic
    /// (before erasing its old volume table copy) and the erase. The next
    /// boot called the partition unrecognised and ran on RAM at every boot
    /// after; the kernel's attach finishes such an erase.
    #[test]
    fn a_peb_in_ubis_erase_beside_ubi_headers_is_ubi() {
        let ubi = block(b"UBI#\x01");
        let erasing = vec![0u8; 64];
        assert_eq!(
            id(&[erasing.clone(), ubi.clone(), FF.to_vec()]),
            RawKind::Ubi
        );
        assert_eq!(
            id(&[ubi.clone(), erasing.clone(), ubi.clone()]),
            RawKind::Ubi
        );
        assert_eq!(id(&[FF.to_vec(), erasing.clone(), ubi]), RawKind::Ubi);
        // Without UBI beside it, zeros are somebody's data.
        assert_eq!(id(&[erasing.clone(), FF.to_vec()]), RawKind::Unknown);
        assert_eq!(id(&[FF.to_vec(), erasing.clone()]), RawKind::Unknown);
        let jffs2 = block(&JFFS2_MAGIC.to_ne_bytes());
        assert_eq!(id(&[erasing, jffs2]), RawKind::Unknown);
    }

    #[test]
    fn the_marker_wins_over_old_data_behind_it() {
        // sysupgrade leaves the old JFFS2 in the other blocks.
        let jffs2 = block(&JFFS2_MAGIC.to_ne_bytes());
        assert_eq!(
            id(&[block(&FORMAT_MARKER), jffs2.clone(), jffs2]),
            RawKind::FormatMarker
        );
    }

    #[test]
    fn an_erased_first_block_does_not_make_the_partition_blank() {
        let jffs2 = block(&JFFS2_MAGIC.to_ne_bytes());
        let ubi = block(b"UBI#");
        let mut late_data = FF.to_vec();
        late_data[40] = 0;
        assert_eq!(
            id(&[FF.to_vec(), FF.to_vec(), jffs2.clone()]),
            RawKind::Jffs2
        );
        assert_eq!(id(&[FF.to_vec(), ubi.clone()]), RawKind::Ubi);
        assert_eq!(id(&[FF.to_vec(), late_data]), RawKind::Unknown);
        assert_eq!(id(&[FF.to_vec(), block(b"hsqs")]), RawKind::Unknown);
        assert_eq!(
            id(&[FF.to_vec(), jffs2, ubi]),
            RawKind::Unknown,
            "both: unclear"
        );
        let mut head = FF.to_vec();
        head[63] = 0x7F; // garbage within the first block's head
        assert_eq!(id(&[head]), RawKind::Unknown);
    }

    #[test]
    fn samples_spread_across_the_partition() {
        assert_eq!(
            sample_blocks(0, 256),
            [15, 31, 47, 63, 79, 95, 111, 127, 143, 159, 175, 191, 207, 223, 239, 255]
        );
        assert_eq!(sample_blocks(0, 4), [1, 2, 3]);
        assert_eq!(sample_blocks(2, 4), [3]);
        assert_eq!(sample_blocks(0, 1), Vec::<u64>::new());
        assert_eq!(sample_blocks(0, 0), Vec::<u64>::new());
    }

    const ES: usize = 0x10000;

    fn part(dir: &TempDir, img: &[u8], kind: MtdKind) -> (SysRoot, MtdInfo) {
        dir.write("dev/mtd3", img);
        let m = MtdInfo {
            index: 3,
            name: "rootfs_data".into(),
            size: img.len() as u64,
            erasesize: ES as u32,
            writesize: Some(1),
            kind,
            read_only: false,
        };
        (SysRoot::new(dir.path()), m)
    }

    #[test]
    fn read_kind_from_a_fixture_partition() {
        let dir = TempDir::new("jffs2");
        let sys = FakeSys::default();
        let mut img = vec![0xFFu8; 32 * ES];
        let (root, m) = part(&dir, &img, MtdKind::Nor);
        assert_eq!(read_kind(&sys, &root, &m).unwrap(), RawKind::Blank);
        // Data inside the first block's head, past the magic.
        img[ES / 2] = 0x12;
        let (root, m) = part(&dir, &img, MtdKind::Nor);
        assert_eq!(read_kind(&sys, &root, &m).unwrap(), RawKind::Unknown);
        img[ES / 2] = 0xFF;
        // A JFFS2 whose first block is free: a node at the start of block 31.
        img[31 * ES..31 * ES + 2].copy_from_slice(&JFFS2_MAGIC.to_ne_bytes());
        let (root, m) = part(&dir, &img, MtdKind::Nor);
        assert_eq!(read_kind(&sys, &root, &m).unwrap(), RawKind::Jffs2);
        // NOR: no bad-block questions.
        assert!(sys.calls().is_empty());
        // Data between sample points is not seen (sampling, as probe.rs):
        // blocks 1, 3, 5, ... 31 are sampled, and only their first 4 KiB.
        img[31 * ES] = 0xFF;
        img[31 * ES + 1] = 0xFF;
        img[4 * ES + 100] = 1;
        img[5 * ES + SAMPLE_LEN] = 1;
        let (root, m) = part(&dir, &img, MtdKind::Nor);
        assert_eq!(read_kind(&sys, &root, &m).unwrap(), RawKind::Blank);
    }

    #[test]
    fn read_kind_skips_bad_nand_blocks() {
        let dir = TempDir::new("jffs2-nand");
        let sys = FakeSys::default();
        let mut img = vec![0xFFu8; 8 * ES];
        img[..4].copy_from_slice(b"\0\0\0\0"); // a bad block's junk
        img[ES..ES + 4].copy_from_slice(b"UBI#");
        let (root, m) = part(&dir, &img, MtdKind::Nand);
        sys.bad_blocks.borrow_mut().push(("/dev/mtd3".into(), 0));
        assert_eq!(read_kind(&sys, &root, &m).unwrap(), RawKind::Ubi);
        assert!(sys.calls().contains(&Call::MtdIsBad {
            dev: "/dev/mtd3".into(),
            offset: 0
        }));
    }

    #[test]
    fn read_kind_of_a_missing_node_is_an_error_with_the_path() {
        let dir = TempDir::new("jffs2-missing");
        let (root, m) = part(&dir, &[0xFF; ES], MtdKind::Nor);
        std::fs::remove_file(dir.path().join("dev/mtd3")).unwrap();
        let err = read_kind(&FakeSys::default(), &root, &m).unwrap_err();
        assert!(matches!(err, FlashError::Read { ref dev, .. } if dev == Path::new("/dev/mtd3")));
    }

    fn fake(g: MtdGeometry) -> FakeSys {
        let sys = FakeSys::default();
        sys.mtd_geometry.borrow_mut().push(("/dev/mtd3".into(), g));
        sys
    }

    #[test]
    fn marker_on_nor_is_four_bytes_after_erasing_block_zero() {
        let sys = fake(MtdGeometry {
            kind: 3,
            writeable: true,
            size: 4 * ES as u64,
            erasesize: ES as u32,
            writesize: 1,
        });
        write_format_marker(&sys, Path::new("/dev/mtd3")).unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::MtdGeometry("/dev/mtd3".into()),
                Call::MtdErase {
                    dev: "/dev/mtd3".into(),
                    offset: 0,
                    len: ES as u64
                },
                Call::MtdWrite {
                    dev: "/dev/mtd3".into(),
                    offset: 0,
                    data: FORMAT_MARKER.to_vec()
                },
            ]
        );
    }

    #[test]
    fn marker_on_nand_fills_a_page_of_the_first_good_block() {
        let sys = fake(MtdGeometry {
            kind: 4,
            writeable: true,
            size: 4 * ES as u64,
            erasesize: ES as u32,
            writesize: 2048,
        });
        sys.bad_blocks.borrow_mut().push(("/dev/mtd3".into(), 0));
        write_format_marker(&sys, Path::new("/dev/mtd3")).unwrap();
        let write = sys
            .calls()
            .into_iter()
            .find_map(|c| match c {
                Call::MtdWrite { offset, data, .. } => Some((offset, data)),
                _ => None,
            })
            .unwrap();
        assert_eq!(write.0, ES as u64);
        assert_eq!(write.1.len(), 2048);
        assert_eq!(&write.1[..4], &FORMAT_MARKER);
        assert!(write.1[4..].iter().all(|&b| b == 0xFF));
        // The marker it writes is what identify calls a marker.
        assert_eq!(identify(&[&write.1]), RawKind::FormatMarker);
    }

    #[test]
    fn marker_not_written_when_the_erase_fails() {
        let sys = fake(MtdGeometry {
            kind: 3,
            writeable: true,
            size: 4 * ES as u64,
            erasesize: ES as u32,
            writesize: 1,
        });
        sys.fail_when(5, |c| matches!(c, Call::MtdErase { .. }));
        let err = write_format_marker(&sys, Path::new("/dev/mtd3")).unwrap_err();
        assert!(matches!(err, FlashError::Erase { offset: 0, .. }));
        assert!(!sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::MtdWrite { .. })));
    }
}
