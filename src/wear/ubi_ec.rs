//! UBI erase-counter (EC) headers, for the mean and spread of erase counts.
//!
//! sysfs gives only `max_ec` for a UBI device. Every physical eraseblock
//! (PEB) starts with a 64-byte EC header (`struct ubi_ec_hdr`,
//! include/uapi/mtd/ubi-media.h), all fields big-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `UBI#` (0x55424923) |
//! | 4 | 1 | version (1) |
//! | 5 | 3 | padding |
//! | 8 | 8 | ec: the erase counter (the kernel limits it to 31 bits) |
//! | 16 | 4 | vid_hdr_offset |
//! | 20 | 4 | data_offset |
//! | 24 | 4 | image_seq |
//! | 28 | 32 | padding |
//! | 60 | 4 | hdr_crc: CRC-32 of bytes 0..60 |
//!
//! Reading them means one read at each PEB offset of `/dev/mtdN` (the MTD
//! character device; reading is allowed while UBI is attached). Cost: one
//! read per PEB, i.e. size / erasesize reads of 64 bytes, each of which makes
//! the NAND driver read (and ECC-correct) one whole page:
//! - 64 MiB with 256 KiB PEBs: 256 reads;
//! - 512 MiB NAND with 128 KiB PEBs: 4096 reads.
//!
//! Not measured on hardware (we have none): at an estimated 0.1–0.3 ms per
//! page read (parallel or SPI NAND, page read time plus 2 KiB transfer plus
//! the syscall) that is roughly 25–75 ms for 64 MiB and 0.4–1.2 s for
//! 512 MiB. It only reads, so it costs no wear; the boot should still do it
//! at most once, or leave it to the run-time monitor on large devices.

use std::io::{Read, Seek, SeekFrom};

pub const EC_HDR_SIZE: usize = 64;
/// "UBI#" (UBI_EC_HDR_MAGIC).
pub const EC_HDR_MAGIC: u32 = 0x5542_4923;
pub const UBI_VERSION: u8 = 1;
/// UBI_MAX_ERASECOUNTER: the kernel refuses larger counters.
pub const MAX_ERASECOUNTER: u64 = 0x7FFF_FFFF;
/// Bytes covered by the header CRC (UBI_EC_HDR_SIZE_CRC).
const CRC_LEN: usize = EC_HDR_SIZE - 4;
/// More PEBs than this (8 GiB of 128 KiB blocks) means bogus geometry.
pub const MAX_PEBS: u64 = 65_536;

/// UBI's CRC-32: the kernel computes `crc32(UBI_CRC32_INIT, buf, len)` with
/// `UBI_CRC32_INIT` = 0xFFFFFFFF, i.e. `crc32_le` (reflected polynomial
/// 0xEDB88320) seeded with all ones and with **no** final inversion. The
/// standard CRC-32 that `crate::crc32::hash` computes is the same register
/// seeded with all ones and inverted at the end, so UBI's value is the
/// bitwise NOT of it. (Checked in the tests against a bit-by-bit `crc32_le`
/// and against headers written by mtd-utils' `ubinize`.)
pub fn ubi_crc32(data: &[u8]) -> u32 {
    !crate::crc32::hash(data)
}

/// The fields of a valid EC header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcHeader {
    pub version: u8,
    pub ec: u64,
    pub vid_hdr_offset: u32,
    pub data_offset: u32,
    pub image_seq: u32,
}

/// Why a header that carries the magic is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcError {
    Short(usize),
    Checksum {
        stored: u32,
        computed: u32,
    },
    Version(u8),
    /// Above UBI_MAX_ERASECOUNTER: the kernel would refuse the PEB too.
    EraseCounter(u64),
}

/// What the first 64 bytes of a PEB hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peb {
    Valid(EcHeader),
    /// All 0xFF: erased, its erase count is unknown (UBI gives such a PEB
    /// the mean count when it uses it).
    Erased,
    /// No `UBI#` magic and not erased: not UBI, or damaged beyond the magic.
    NotUbi,
    Corrupt(EcError),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Classifies the first [`EC_HDR_SIZE`] bytes of a PEB.
pub fn parse_ec_header(b: &[u8]) -> Peb {
    let Some(h) = b.get(..EC_HDR_SIZE) else {
        return Peb::Corrupt(EcError::Short(b.len()));
    };
    if h.iter().all(|&x| x == 0xFF) {
        return Peb::Erased;
    }
    let field = |at| be32(h, at).unwrap_or(0);
    if field(0) != EC_HDR_MAGIC {
        return Peb::NotUbi;
    }
    let stored = field(60);
    let computed = ubi_crc32(h.get(..CRC_LEN).unwrap_or(&[]));
    if stored != computed {
        return Peb::Corrupt(EcError::Checksum { stored, computed });
    }
    let version = h.get(4).copied().unwrap_or(0);
    if version != UBI_VERSION {
        return Peb::Corrupt(EcError::Version(version));
    }
    let ec = be64(h, 8).unwrap_or(u64::MAX);
    if ec > MAX_ERASECOUNTER {
        return Peb::Corrupt(EcError::EraseCounter(ec));
    }
    Peb::Valid(EcHeader {
        version,
        ec,
        vid_hdr_offset: field(16),
        data_offset: field(20),
        image_seq: field(24),
    })
}

/// Writes a header as UBI does (for tests and for fixture images).
#[cfg(test)] // tests build images with it; the device only reads headers
pub fn encode_ec_header(h: &EcHeader) -> [u8; EC_HDR_SIZE] {
    let mut b = [0u8; EC_HDR_SIZE];
    let mut put = |at: usize, v: &[u8]| {
        if let Some(d) = b.get_mut(at..at + v.len()) {
            d.copy_from_slice(v);
        }
    };
    put(0, &EC_HDR_MAGIC.to_be_bytes());
    put(4, &[h.version]);
    put(8, &h.ec.to_be_bytes());
    put(16, &h.vid_hdr_offset.to_be_bytes());
    put(20, &h.data_offset.to_be_bytes());
    put(24, &h.image_seq.to_be_bytes());
    let crc = ubi_crc32(b.get(..CRC_LEN).unwrap_or(&[]));
    if let Some(d) = b.get_mut(CRC_LEN..) {
        d.copy_from_slice(&crc.to_be_bytes());
    }
    b
}

/// Erase counts over all PEBs of one MTD device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcStats {
    /// PEBs looked at: size / erasesize.
    pub pebs: u64,
    /// With a valid header: the ones the figures below are computed from.
    pub valid: u64,
    /// Erased (all 0xFF): erase count unknown.
    pub erased: u64,
    /// `UBI#` magic but a bad CRC, version or counter.
    pub corrupt: u64,
    /// Neither UBI nor erased.
    pub not_ubi: u64,
    /// Skipped because the caller said they are bad blocks.
    pub bad: u64,
    /// The read failed.
    pub unreadable: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// Sum of the valid counters (at most 65536 × 2^31: no overflow).
    pub sum: u64,
}

impl EcStats {
    /// Mean erase count × 100 (two decimals, in integers).
    pub fn mean_x100(&self) -> Option<u64> {
        if self.valid == 0 {
            return None;
        }
        self.sum.checked_mul(100)?.checked_div(self.valid)
    }

    /// max − min: how evenly wear-levelling spreads the erases.
    pub fn spread(&self) -> Option<u64> {
        self.max?.checked_sub(self.min?)
    }

    fn add(&mut self, peb: Peb) {
        match peb {
            Peb::Valid(h) => {
                self.valid += 1;
                self.sum = self.sum.saturating_add(h.ec);
                self.min = Some(self.min.map_or(h.ec, |m| m.min(h.ec)));
                self.max = Some(self.max.map_or(h.ec, |m| m.max(h.ec)));
            }
            Peb::Erased => self.erased += 1,
            Peb::NotUbi => self.not_ubi += 1,
            Peb::Corrupt(_) => self.corrupt += 1,
        }
    }
}

/// The device geometry does not allow a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// erasesize 0 or smaller than an EC header.
    EraseSize(u64),
    /// More than [`MAX_PEBS`] eraseblocks.
    TooManyPebs(u64),
}

impl std::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeometryError::EraseSize(e) => write!(f, "erase size {e} is too small"),
            GeometryError::TooManyPebs(n) => {
                write!(
                    f,
                    "{n} eraseblocks, more than the {MAX_PEBS} scanned at most"
                )
            }
        }
    }
}

/// Reads the EC header at every erase-block offset of `dev` (an MTD device
/// of `size` bytes, eraseblocks of `erasesize`; a partial last block is
/// ignored). `is_bad(index)` lets the caller skip known bad blocks
/// (MEMGETBADBLOCK on a real device); without it they count as corrupt or
/// not UBI. A failed read is counted and the scan goes on.
pub fn scan_ec<R: Read + Seek>(
    dev: &mut R,
    size: u64,
    erasesize: u64,
    is_bad: &mut dyn FnMut(u64) -> bool,
) -> Result<EcStats, GeometryError> {
    if erasesize < EC_HDR_SIZE as u64 {
        return Err(GeometryError::EraseSize(erasesize));
    }
    let pebs = size / erasesize;
    if pebs > MAX_PEBS {
        return Err(GeometryError::TooManyPebs(pebs));
    }
    let mut st = EcStats {
        pebs,
        ..EcStats::default()
    };
    let mut buf = [0u8; EC_HDR_SIZE];
    for i in 0..pebs {
        if is_bad(i) {
            st.bad += 1;
            continue;
        }
        let read = dev
            .seek(SeekFrom::Start(i * erasesize))
            .and_then(|_| dev.read_exact(&mut buf));
        match read {
            Ok(()) => st.add(parse_ec_header(&buf)),
            Err(_) => st.unreadable += 1,
        }
    }
    Ok(st)
}

/// An MTD image for tests: one PEB per entry, `Some(ec)` a valid header,
/// `None` an erased block.
#[cfg(test)]
pub(crate) fn fixture_image(erasesize: usize, pebs: &[Option<u64>]) -> Vec<u8> {
    let mut img = vec![0xFFu8; erasesize * pebs.len()];
    for (i, ec) in pebs.iter().enumerate() {
        if let Some(ec) = ec {
            let h = encode_ec_header(&EcHeader {
                version: 1,
                ec: *ec,
                vid_hdr_offset: 512,
                data_offset: 2048,
                image_seq: 42,
            });
            img[i * erasesize..i * erasesize + 64].copy_from_slice(&h);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A header as mtd-utils' `ubinize -p 128KiB -m 2048 -s 512 -e EC -Q SEQ`
    /// wrote it (vid_hdr_offset 512, data_offset 2048), with the CRC that
    /// ubinize computed, copied from a hex dump of its image, not computed here.
    fn ubinize_header(ec: [u8; 8], seq: [u8; 4], crc: [u8; 4]) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(b"UBI#");
        b[4] = 1;
        b[8..16].copy_from_slice(&ec);
        b[16..20].copy_from_slice(&[0, 0, 0x02, 0]);
        b[20..24].copy_from_slice(&[0, 0, 0x08, 0]);
        b[24..28].copy_from_slice(&seq);
        b[60..64].copy_from_slice(&crc);
        b
    }

    /// `-e 7 -Q 305419896`.
    fn ubinize_ec7() -> [u8; 64] {
        ubinize_header(
            [0, 0, 0, 0, 0, 0, 0, 7],
            [0x12, 0x34, 0x56, 0x78],
            [0xbe, 0xa5, 0xd6, 0x35],
        )
    }

    /// `-e 123456 -Q 1`.
    fn ubinize_ec123456() -> [u8; 64] {
        ubinize_header(
            [0, 0, 0, 0, 0, 0x01, 0xe2, 0x40],
            [0, 0, 0, 1],
            [0x89, 0x4a, 0xb0, 0x10],
        )
    }

    /// The kernel's `crc32_le(seed, p, len)`, bit by bit (lib/crc32.c).
    fn crc32_le(mut crc: u32, data: &[u8]) -> u32 {
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn ubi_crc_is_the_inverted_standard_crc() {
        for data in [&b""[..], b"123456789", &ubinize_ec7()[..60]] {
            assert_eq!(ubi_crc32(data), crc32_le(0xFFFF_FFFF, data));
        }
        // The standard check value of CRC-32 is 0xCBF43926; UBI's is its NOT.
        assert_eq!(ubi_crc32(b"123456789"), !0xCBF4_3926);
    }

    #[test]
    fn headers_from_ubinize_parse() {
        assert_eq!(
            parse_ec_header(&ubinize_ec7()),
            Peb::Valid(EcHeader {
                version: 1,
                ec: 7,
                vid_hdr_offset: 512,
                data_offset: 2048,
                image_seq: 0x1234_5678
            })
        );
        let h = match parse_ec_header(&ubinize_ec123456()) {
            Peb::Valid(h) => h,
            other => panic!("{other:?}"),
        };
        assert_eq!(h.ec, 123_456);
        assert_eq!(encode_ec_header(&h), ubinize_ec123456());
    }

    #[test]
    fn damaged_headers_are_classified() {
        let mut b = ubinize_ec7();
        b[15] = 8; // ec 7 → 8 without a new CRC
        assert!(matches!(
            parse_ec_header(&b),
            Peb::Corrupt(EcError::Checksum { .. })
        ));
        assert_eq!(parse_ec_header(&[0xFF; 64]), Peb::Erased);
        assert_eq!(parse_ec_header(&[0x00; 64]), Peb::NotUbi);
        assert_eq!(
            parse_ec_header(&ubinize_ec7()[..63]),
            Peb::Corrupt(EcError::Short(63))
        );
        let v2 = encode_ec_header(&EcHeader {
            version: 2,
            ec: 1,
            vid_hdr_offset: 0,
            data_offset: 0,
            image_seq: 0,
        });
        assert_eq!(parse_ec_header(&v2), Peb::Corrupt(EcError::Version(2)));
        let huge = encode_ec_header(&EcHeader {
            version: 1,
            ec: 1 << 31,
            vid_hdr_offset: 0,
            data_offset: 0,
            image_seq: 0,
        });
        assert_eq!(
            parse_ec_header(&huge),
            Peb::Corrupt(EcError::EraseCounter(1 << 31))
        );
        // Every single-bit flip in a valid header is caught.
        for bit in 0..64 * 8 {
            let mut b = ubinize_ec7();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_ec_header(&b), Peb::Valid(_)),
                "bit {bit} flipped"
            );
        }
    }

    #[test]
    fn scan_counts_mean_min_max_spread() {
        let es = 4096;
        let mut img = fixture_image(
            es,
            &[
                Some(10),
                Some(20),
                None,
                Some(30),
                Some(40),
                Some(50),
                Some(0),
            ],
        );
        img[3 * es + 20] ^= 1; // PEB 3: bad CRC
        img[4 * es..4 * es + 64].fill(0); // PEB 4: not UBI
        img.extend_from_slice(&[0xFF; 100]); // a partial block: ignored
        let st = scan_ec(
            &mut Cursor::new(&img),
            img.len() as u64,
            es as u64,
            &mut |i| i == 5,
        )
        .unwrap();
        assert_eq!(st.pebs, 7);
        assert_eq!((st.valid, st.erased, st.corrupt), (3, 1, 1));
        assert_eq!((st.not_ubi, st.bad, st.unreadable), (1, 1, 0));
        assert_eq!((st.min, st.max), (Some(0), Some(20)));
        assert_eq!(st.mean_x100(), Some(1000));
        assert_eq!(st.spread(), Some(20));
    }

    #[test]
    fn scan_of_nothing_usable_has_no_mean() {
        let img = fixture_image(4096, &[None, None]);
        let st = scan_ec(&mut Cursor::new(&img), 8192, 4096, &mut |_| false).unwrap();
        assert_eq!(st.erased, 2);
        assert_eq!(st.mean_x100(), None);
        assert_eq!(st.spread(), None);
        assert_eq!(
            scan_ec(&mut Cursor::new(&img), 8192, 0, &mut |_| false),
            Err(GeometryError::EraseSize(0))
        );
        assert_eq!(
            scan_ec(&mut Cursor::new(&img), 1 << 40, 4096, &mut |_| false),
            Err(GeometryError::TooManyPebs(1 << 28))
        );
    }

    #[test]
    fn a_device_shorter_than_its_size_counts_unreadable_blocks() {
        let img = fixture_image(4096, &[Some(5), Some(6)]);
        // sysfs says 4 blocks; the device gives 2: the others fail to read.
        let st = scan_ec(&mut Cursor::new(&img), 4 * 4096, 4096, &mut |_| false).unwrap();
        assert_eq!((st.valid, st.unreadable), (2, 2));
        assert_eq!(st.mean_x100(), Some(550));
    }
}
