//! The identity of a lower: is this the image the upper was last merged
//! with?
//!
//! It is read at every boot, so it must be cheap (never a full read of the
//! image), yet any rebuilt image must count as new: one of the same size,
//! built at the same mkfs time (reproducible builds), differing in the
//! contents of one file only. A squashfs superblock does not see that, and
//! neither do its metadata tables: a file's inode holds its size and the
//! *compressed* size of each of its blocks, the fragment table the
//! compressed size of each fragment block. Change one byte of a file so that
//! every block compresses to the same size (likely for a one-character edit
//! of a small file in a fragment, certain with uncompressed data) and the
//! whole image differs from the old one in that byte only
//! (`tests::one_changed_byte_*` build exactly that with `mksquashfs`).
//!
//! So the identity is:
//! - the filesystem kind, its size (squashfs: `bytes_used`) and the CRC32 of
//!   its superblock (96 bytes: sizes, counts, table offsets, mkfs time);
//! - **with a shipped manifest** (`/etc/overlay-init.manifest`, see
//!   manifest.rs): the length and CRC32 its frame header announces. The
//!   manifest holds the CRC32 of every file's contents, so any content
//!   change changes it; it is exact, and costs one read of 16 bytes;
//! - **without one**: the CRC32 of the squashfs metadata tables (inode,
//!   directory, fragment, export, id and xattr tables: from
//!   `inode_table_start` to `bytes_used`, a few KiB to a few hundred KiB),
//!   which changes with any name, size, mode, owner, mtime or compressed
//!   size. What it cannot see is a change of contents that leaves every
//!   one of those as it was (every block compressed to the same size).
//!   Seeing that would take a read of the whole image, and the identity is
//!   read at every boot: it is never done, in the boot or after it. An
//!   image that must be exact ships its manifest (one build command).
//!
//! A lower that is not a squashfs (erofs, a read-only ext4) gets its size
//! and the CRC32 of its first 4 KiB, plus the shipped manifest or the
//! background check.

use super::{Dec, Enc, Error, RecordError, SHIPPED};
use rustix::fd::BorrowedFd;
use rustix::fs::{Mode, OFlags};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The squashfs superblock's size and magic (`hsqs`).
const SQUASHFS_SB: usize = 96;
const SQUASHFS_MAGIC: u32 = 0x7371_7368;
/// What a non-squashfs lower's superblock CRC covers.
const HEAD: usize = 4096;
/// Read size of the table reads.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub squashfs: bool,
    /// squashfs `bytes_used`; the device size otherwise.
    pub size: u64,
    /// squashfs mkfs time (shown, and inside `sb`); 0 otherwise.
    pub time: u32,
    /// CRC32 of the superblock (squashfs) or of the first 4 KiB.
    pub sb: u32,
    /// CRC32 of the squashfs metadata tables; 0 when a manifest ships (its
    /// fingerprint says more) or for other filesystems.
    pub tables: u32,
    /// Length and CRC32 of the shipped manifest, from its frame header.
    pub shipped: Option<(u32, u32)>,
}

/// The fields of a squashfs superblock the identity needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Squashfs {
    pub time: u32,
    pub bytes_used: u64,
    pub inode_table_start: u64,
}

/// Parses a squashfs 4.0 superblock; `None` if `sb` is not one. `Err` if
/// its fields contradict each other or the device size.
pub fn parse_squashfs(sb: &[u8], device_size: u64) -> Option<Result<Squashfs, &'static str>> {
    let u32_at = |o: usize| {
        sb.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        sb.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    if u32_at(0)? != SQUASHFS_MAGIC {
        return None;
    }
    let version = u32_at(28).unwrap_or(0);
    let s = Squashfs {
        time: u32_at(8).unwrap_or(0),
        bytes_used: u64_at(40),
        inode_table_start: u64_at(64),
    };
    Some(if sb.len() < SQUASHFS_SB || version != 4 {
        Err("not a squashfs 4.0 superblock")
    } else if s.bytes_used > device_size || s.inode_table_start >= s.bytes_used {
        Err("squashfs superblock inconsistent with its device")
    } else {
        Ok(s)
    })
}

impl Identity {
    pub fn encode(&self, e: &mut Enc) {
        e.u(u64::from(self.squashfs));
        e.u(self.size);
        e.u(self.time.into());
        e.u(self.sb.into());
        e.u(self.tables.into());
        match self.shipped {
            Some((len, crc)) => {
                e.u(1);
                e.u(len.into());
                e.u(crc.into());
            }
            None => e.u(0),
        }
    }

    pub fn decode(d: &mut Dec) -> Result<Identity, RecordError> {
        let squashfs = match d.u()? {
            0 => false,
            1 => true,
            _ => return Err(RecordError::Field),
        };
        Ok(Identity {
            squashfs,
            size: d.u()?,
            time: d.u32()?,
            sb: d.u32()?,
            tables: d.u32()?,
            shipped: match d.u()? {
                0 => None,
                1 => Some((d.u32()?, d.u32()?)),
                _ => return Err(RecordError::Field),
            },
        })
    }

    /// A short digest of all the fields, to tell identities apart at a glance.
    pub fn digest(&self) -> u32 {
        let mut e = Enc::default();
        self.encode(&mut e);
        crate::crc32::hash(&e.0)
    }
}

/// `squashfs 5120 KiB #1a2b3c4d` (`+manifest` when one ships); the
/// digest covers every field, the mkfs time included.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.squashfs { "squashfs" } else { "image" };
        let m = if self.shipped.is_some() {
            " +manifest"
        } else {
            ""
        };
        write!(
            f,
            "{kind} {} KiB #{:08x}{m}",
            self.size.div_ceil(1024),
            self.digest()
        )
    }
}

fn dev_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| Error::Device {
        path: path.into(),
        err,
    }
}

/// The CRC32 of `len` bytes of `f` from `offset`, in bounded reads.
fn crc_range(f: &File, mut offset: u64, len: u64) -> std::io::Result<u32> {
    let mut h = crate::crc32::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let end = offset.saturating_add(len);
    while offset < end {
        let n = usize::try_from(end - offset).map_or(CHUNK, |n| n.min(CHUNK));
        let chunk = buf.get_mut(..n).unwrap_or_default();
        f.read_exact_at(chunk, offset)?;
        h.update(chunk);
        offset += n as u64;
    }
    Ok(h.finalize())
}

/// The frame header of the manifest an image ships, if it ships one whose
/// header checks out. Opened without following symlinks (`etc` included).
pub fn shipped_header(lower: BorrowedFd) -> Option<(u32, u32)> {
    let fd = open_shipped(lower).ok()?;
    let mut head = [0u8; super::FRAME];
    File::from(fd).read_exact(&mut head).ok()?;
    super::frame_header(super::manifest::SHIPPED_MAGIC, &head).ok()
}

/// Opens the shipped manifest of the lower whose root is `lower`: a
/// regular file (a FIFO an image might hold there is never waited on).
pub fn open_shipped(lower: BorrowedFd) -> rustix::io::Result<rustix::fd::OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let (dir, name) = SHIPPED.split_once('/').unwrap_or(("", SHIPPED));
    let etc = rustix::fs::openat(lower, dir, flags | OFlags::DIRECTORY, Mode::empty())?;
    let fd = rustix::fs::openat(
        std::os::fd::AsFd::as_fd(&etc),
        name,
        flags | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    if super::manifest::Kind::of_mode(rustix::fs::fstat(&fd)?.st_mode)
        != super::manifest::Kind::File
    {
        return Err(rustix::io::Errno::INVAL);
    }
    Ok(fd)
}

/// The identity of the lower on `device`, mounted with its root at `lower`
/// (for the shipped manifest; `None` reads the device only).
pub fn read(device: &Path, lower: Option<BorrowedFd>) -> Result<Identity, Error> {
    let t = std::time::Instant::now();
    let (id, bytes) = read_id(device, lower)?;
    // What a normal boot pays for the upgrade handling (overlay.debug).
    crate::debug!(
        "identity of {}: {bytes} bytes read in {} us",
        device.display(),
        t.elapsed().as_micros() as u64
    );
    Ok(id)
}

/// The identity, and how many bytes were read for it.
fn read_id(device: &Path, lower: Option<BorrowedFd>) -> Result<(Identity, u64), Error> {
    let f = File::open(device).map_err(dev_err(device))?;
    let dev_size = rustix::fs::seek(&f, rustix::fs::SeekFrom::End(0))
        .map_err(|e| dev_err(device)(e.into()))?;
    let mut head = vec![0u8; usize::try_from(dev_size).map_or(HEAD, |n| n.min(HEAD))];
    f.read_exact_at(&mut head, 0).map_err(dev_err(device))?;
    let shipped = lower.and_then(shipped_header);
    let mut bytes = head.len() as u64 + shipped.map_or(0, |_| super::FRAME as u64);
    match parse_squashfs(&head, dev_size) {
        Some(Ok(sq)) => {
            let tables = match shipped {
                Some(_) => 0,
                None => {
                    let len = sq.bytes_used - sq.inode_table_start;
                    bytes += len;
                    crc_range(&f, sq.inode_table_start, len).map_err(dev_err(device))?
                }
            };
            let id = Identity {
                squashfs: true,
                size: sq.bytes_used,
                time: sq.time,
                sb: crate::crc32::hash(head.get(..SQUASHFS_SB).unwrap_or_default()),
                tables,
                shipped,
            };
            Ok((id, bytes))
        }
        Some(Err(why)) => Err(Error::Superblock {
            path: device.into(),
            why,
        }),
        None => {
            let id = Identity {
                squashfs: false,
                size: dev_size,
                time: 0,
                sb: crate::crc32::hash(&head),
                tables: 0,
                shipped,
            };
            Ok((id, bytes))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use rustix::fd::AsFd;
    use std::path::PathBuf;
    use std::process::Command;

    /// Image `n`'s identity (its fields all `n`): for the tests of what
    /// decides from identities (the merge, the plan).
    pub fn id(n: u32) -> Identity {
        Identity {
            squashfs: true,
            size: 4096,
            time: n,
            sb: n,
            tables: n,
            shipped: None,
        }
    }

    /// A squashfs of `dir`, reproducible: fixed mkfs and file times, root
    /// owner. `raw`: data and fragments stored uncompressed, so that a
    /// changed byte cannot change any compressed size.
    pub fn mksquashfs(dir: &Path, out: &Path, raw: bool) {
        let mut c = Command::new("mksquashfs");
        c.arg(dir).arg(out).args([
            "-noappend",
            "-all-root",
            "-mkfs-time",
            "1700000000",
            "-all-time",
            "1700000000",
            "-quiet",
            "-no-progress",
        ]);
        if raw {
            c.args(["-noD", "-noF"]);
        }
        let st = c.status().expect("mksquashfs (squashfs-tools) is needed");
        assert!(st.success());
    }

    fn tree(d: &TempDir, name: &str, version: u8) -> PathBuf {
        d.write(
            &format!("{name}/etc/config/system"),
            format!("option v{version}\n"),
        );
        d.write(&format!("{name}/etc/profile"), "PS1='# '\n");
        d.write(&format!("{name}/bin/tool"), vec![7u8; 200_000]);
        d.path().join(name)
    }

    fn open(p: &Path) -> rustix::fd::OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn superblocks() {
        let mut sb = [0u8; 96];
        sb[..4].copy_from_slice(b"hsqs");
        sb[8..12].copy_from_slice(&7u32.to_le_bytes());
        sb[28..30].copy_from_slice(&4u16.to_le_bytes());
        sb[40..48].copy_from_slice(&4096u64.to_le_bytes());
        sb[64..72].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(
            parse_squashfs(&sb, 8192),
            Some(Ok(Squashfs {
                time: 7,
                bytes_used: 4096,
                inode_table_start: 1000
            }))
        );
        assert!(
            matches!(parse_squashfs(&sb, 4000), Some(Err(_))),
            "image larger than its device"
        );
        assert!(matches!(parse_squashfs(&sb[..50], 8192), Some(Err(_))));
        let mut v3 = sb;
        v3[28] = 3;
        assert!(matches!(parse_squashfs(&v3, 8192), Some(Err(_))));
        let mut tables_past_end = sb;
        tables_past_end[64..72].copy_from_slice(&5000u64.to_le_bytes());
        assert!(matches!(
            parse_squashfs(&tables_past_end, 8192),
            Some(Err(_))
        ));
        assert_eq!(parse_squashfs(&[0u8; 96], 8192), None);
        assert_eq!(parse_squashfs(b"hs", 8192), None);
    }

    #[test]
    fn record_round_trip() {
        for shipped in [None, Some((123, 0xdead_beef))] {
            let id = Identity {
                squashfs: true,
                size: 5 << 20,
                time: 1_700_000_000,
                sb: 1,
                tables: 2,
                shipped,
            };
            let mut e = Enc::default();
            id.encode(&mut e);
            let mut d = Dec(&e.0);
            assert_eq!(Identity::decode(&mut d).unwrap(), id);
            d.end().unwrap();
        }
        let id = Identity {
            squashfs: true,
            size: 5 << 20,
            time: 1_700_000_000,
            sb: 1,
            tables: 2,
            shipped: Some((1, 2)),
        };
        let s = id.to_string();
        assert!(
            s.starts_with("squashfs 5120 KiB #") && s.ends_with(" +manifest"),
            "{s}"
        );
    }

    /// The case the identity must not miss: v2 differs from v1 in one byte
    /// of one file, same size, same mkfs time. Built uncompressed, so every
    /// compressed size is the same and the squashfs metadata is identical:
    /// without a manifest the boot-time identity cannot tell (the
    /// background image check does); with a shipped manifest it can.
    #[test]
    fn one_changed_byte_with_identical_metadata() {
        let d = TempDir::new("identity-raw");
        let (v1, v2) = (tree(&d, "v1", 1), tree(&d, "v2", 2));
        let (i1, i2) = (d.path().join("v1.sqfs"), d.path().join("v2.sqfs"));
        mksquashfs(&v1, &i1, true);
        mksquashfs(&v2, &i2, true);
        let (b1, b2) = (std::fs::read(&i1).unwrap(), std::fs::read(&i2).unwrap());
        assert_eq!(b1.len(), b2.len());
        assert_eq!(
            b1.iter().zip(&b2).filter(|(a, b)| a != b).count(),
            1,
            "the images differ in one byte"
        );
        let (a, b) = (read(&i1, None).unwrap(), read(&i2, None).unwrap());
        assert_eq!(
            a, b,
            "metadata alone cannot see this change (README: ship a manifest)"
        );
        assert!(a.squashfs && a.tables != 0 && a.shipped.is_none());

        // Now each image ships its manifest.
        for (dir, img) in [(&v1, &i1), (&v2, &i2)] {
            let m = crate::upgrade::manifest::compute(open(dir).as_fd(), None).unwrap();
            std::fs::write(dir.join(SHIPPED), m.shipped_file()).unwrap();
            mksquashfs(dir, img, true);
        }
        // The lower's root: the tree the image was built from (the same
        // bytes a mount of the image shows; the mounted case is below).
        let a = read(&i1, Some(open(&v1).as_fd())).unwrap();
        let b = read(&i2, Some(open(&v2).as_fd())).unwrap();
        assert!(a.shipped.is_some() && a.tables == 0);
        assert_ne!(a, b, "the manifests differ");
        assert_eq!(a.size, b.size);
        assert_eq!(a.time, b.time);
    }

    /// The same with real compression and the image mounted as a lower.
    #[test]
    fn one_changed_byte_compressed_and_mounted() {
        let d = TempDir::new("identity-xz");
        let (v1, v2) = (tree(&d, "v1", 1), tree(&d, "v2", 2));
        let mut ids = Vec::new();
        for (i, dir) in [&v1, &v2].into_iter().enumerate() {
            let m = crate::upgrade::manifest::compute(open(dir).as_fd(), None).unwrap();
            std::fs::write(dir.join(SHIPPED), m.shipped_file()).unwrap();
            let img = d.path().join(format!("{i}.sqfs"));
            mksquashfs(dir, &img, false);
            let mnt = d.path().join(format!("mnt{i}"));
            std::fs::create_dir(&mnt).unwrap();
            let st = Command::new("mount")
                .args(["-t", "squashfs", "-o", "loop,ro"])
                .arg(&img)
                .arg(&mnt)
                .status()
                .unwrap();
            assert!(st.success(), "mount -o loop needs root");
            let id = read(&img, Some(open(&mnt).as_fd()));
            let _ = Command::new("umount").arg(&mnt).status();
            ids.push((id.unwrap(), std::fs::metadata(&img).unwrap().len()));
        }
        assert_eq!(ids[0].1, ids[1].1, "same image size");
        assert!(ids[0].0.shipped.is_some());
        assert_ne!(ids[0].0, ids[1].0);
        // And the same image read twice is the same identity.
        let again = read(&d.path().join("0.sqfs"), Some(open(&v1).as_fd())).unwrap();
        assert_eq!(again, ids[0].0);
    }

    #[test]
    fn other_filesystems_and_bad_devices() {
        let d = TempDir::new("identity-other");
        let img = d.write("ext4.img", vec![0x5au8; 10_000]);
        let id = read(&img, None).unwrap();
        assert!(!id.squashfs);
        assert_eq!(id.size, 10_000);
        let small = d.write("tiny", b"hsqs");
        assert!(matches!(read(&small, None), Err(Error::Superblock { .. })));
        assert!(matches!(
            read(&d.path().join("absent"), None),
            Err(Error::Device { .. })
        ));
        // A shipped manifest whose header does not check out is no manifest.
        d.write("root/etc/overlay-init.manifest", b"OVMANIF0 not one");
        assert_eq!(shipped_header(open(&d.path().join("root")).as_fd()), None);
        // A FIFO there is never waited on (the boot would hang).
        d.write("fifo/etc/x", b"");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo/etc/overlay-init.manifest"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(shipped_header(open(&d.path().join("fifo")).as_fd()), None);
    }
}
