//! Boot counting (`overlay.boot_attempts=N`): a record on the data
//! filesystem counts the boots that used the flash read-write since the last
//! `overlay-status --mark-good`; once it reaches N, the next boot is a
//! failsafe boot ("N boots without mark-good"). Off by default, and then
//! nothing here writes a byte.
//!
//! The record is `<data fs>/.boot/count`, beside `.reset/` and `.wear/` and
//! outside `upper/` (the overlay never shows it). It has two slots, each in
//! a 4 KiB block of its own, so that writing one never rewrites the other
//! (a torn block write damages at most the slot being written):
//!
//! | offset | size | what |
//! | --- | --- | --- |
//! | 0 | 32 | slot 0 (records with an even seq) |
//! | 32 | 4064 | zeros |
//! | 4096 | 32 | slot 1 (records with an odd seq) |
//!
//! Slot (32 bytes, little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `OVBC` |
//! | 4 | 1 | version (1) |
//! | 5 | 3 | zero |
//! | 8 | 8 | seq: 1, 2, … (the newest valid slot is the record) |
//! | 16 | 4 | attempts: boots counted since the last mark-good |
//! | 20 | 8 | the boot id (first 64 bits of `/proc/sys/kernel/random/boot_id`) of the boot that last marked good; 0: none |
//! | 28 | 4 | CRC-32 (`crc32fast`) of bytes 0..28 |
//!
//! Each change writes the *other* slot (seq + 1) with one `pwrite` of 32
//! bytes and `fdatasync`: a power cut during it leaves the previous record
//! in its own slot, so the count is never lost; a cut before a mark-good's
//! write is durable leaves the count as it was, so an interrupted mark-good
//! counts as a failed attempt, never as a success. The file is created once
//! (both blocks written, so later writes allocate nothing: a temp file,
//! fsync, rename, directory fsync) and never grows.
//!
//! Reads are bounded: the file is opened `O_NOFOLLOW | O_NONBLOCK` below a
//! `.boot` opened `O_NOFOLLOW` on the data filesystem's own device, must be
//! a regular file of exactly 4128 bytes, and two 32-byte `pread`s are all
//! that is read. Anything else is a corrupt record, reported, never trusted.

use crate::le::{le_u32, le_u64, put};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub const DIR: &str = ".boot";
pub const FILE: &str = "count";
pub const SLOT_SIZE: usize = 32;
/// Where slot 1 starts: the next 4 KiB block.
pub const SLOT1_AT: u64 = 4096;
pub const FILE_SIZE: u64 = SLOT1_AT + SLOT_SIZE as u64;
const MAGIC: &[u8; 4] = b"OVBC";
const VERSION: u8 = 1;
const CRC_AT: usize = 28;

/// One slot's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountRecord {
    pub seq: u64,
    /// Boots that used the flash read-write since the last mark-good.
    pub attempts: u32,
    /// Boot id of the boot that last marked good (0: none).
    pub good_boot: u64,
}

/// Why a slot holds no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// All zero: never written.
    Empty,
    Magic,
    Version(u8),
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// A record whose seq belongs in the other slot.
    WrongSlot {
        seq: u64,
    },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Empty => f.write_str("empty"),
            SlotError::Magic => f.write_str("not a boot count record"),
            SlotError::Version(v) => write!(f, "version {v}"),
            SlotError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            SlotError::WrongSlot { seq } => write!(f, "record {seq} in the wrong slot"),
        }
    }
}

/// Why a whole record file is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountCorrupt {
    /// `.boot` or `.boot/count` is not a directory / a regular file on the
    /// data filesystem (a link, a FIFO, a device, another mount).
    NotAFile,
    /// Not [`FILE_SIZE`] bytes.
    Size(u64),
    /// Neither slot holds a record.
    NoRecord(SlotError, SlotError),
}

impl fmt::Display for CountCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountCorrupt::NotAFile => f.write_str("not a regular file of the data filesystem"),
            CountCorrupt::Size(n) => write!(f, "{n} bytes, not {FILE_SIZE}"),
            CountCorrupt::NoRecord(a, b) => write!(f, "no valid slot (0: {a}; 1: {b})"),
        }
    }
}

/// What the data filesystem says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountState {
    /// No record: boot counting never ran on this filesystem.
    Missing,
    Ok(CountRecord),
    Corrupt(CountCorrupt),
}

impl CountState {
    /// Boots counted without mark-good (0 without a usable record).
    pub fn attempts(&self) -> u32 {
        match self {
            CountState::Ok(r) => r.attempts,
            _ => 0,
        }
    }

    /// Whether the boot with id `boot_id` marked good.
    pub fn marked_by(&self, boot_id: u64) -> bool {
        matches!(self, CountState::Ok(r) if boot_id != 0 && r.good_boot == boot_id)
    }
}

fn crc_of(b: &[u8]) -> u32 {
    crate::crc32::hash(b.get(..CRC_AT).unwrap_or(&[]))
}

impl CountRecord {
    /// The slot this record goes to: its seq's parity.
    pub fn slot(&self) -> usize {
        (self.seq % 2) as usize
    }

    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        put(&mut b, 0, MAGIC);
        put(&mut b, 4, &[VERSION]);
        put(&mut b, 8, &self.seq.to_le_bytes());
        put(&mut b, 16, &self.attempts.to_le_bytes());
        put(&mut b, 20, &self.good_boot.to_le_bytes());
        let crc = crc_of(&b);
        put(&mut b, CRC_AT, &crc.to_le_bytes());
        b
    }

    /// Decodes slot `slot`; the CRC is checked before any field is believed.
    pub fn decode(b: &[u8], slot: usize) -> Result<CountRecord, SlotError> {
        if b.len() != SLOT_SIZE {
            return Err(SlotError::Magic);
        }
        if b.iter().all(|&x| x == 0) {
            return Err(SlotError::Empty);
        }
        if b.get(0..4) != Some(MAGIC.as_slice()) {
            return Err(SlotError::Magic);
        }
        let (stored, computed) = (le_u32(b, CRC_AT), crc_of(b));
        if stored != computed {
            return Err(SlotError::Checksum { stored, computed });
        }
        let version = b.get(4).copied().unwrap_or(0);
        if version != VERSION {
            return Err(SlotError::Version(version));
        }
        let r = CountRecord {
            seq: le_u64(b, 8),
            attempts: le_u32(b, 16),
            good_boot: le_u64(b, 20),
        };
        if r.slot() != slot {
            return Err(SlotError::WrongSlot { seq: r.seq });
        }
        Ok(r)
    }
}

/// The record in a file of `len` bytes whose slots are `s0` and `s1` (pure).
pub fn decode_file(len: u64, s0: &[u8], s1: &[u8]) -> CountState {
    if len != FILE_SIZE {
        return CountState::Corrupt(CountCorrupt::Size(len));
    }
    match (CountRecord::decode(s0, 0), CountRecord::decode(s1, 1)) {
        (Ok(a), Ok(b)) => CountState::Ok(if a.seq > b.seq { a } else { b }),
        (Ok(a), Err(_)) => CountState::Ok(a),
        (Err(_), Ok(b)) => CountState::Ok(b),
        (Err(a), Err(b)) => CountState::Corrupt(CountCorrupt::NoRecord(a, b)),
    }
}

/// The record a boot that counts itself writes (pure). `fresh`: a factory
/// reset ran at this boot, so the count starts again at this boot. A
/// missing or corrupt record starts at 1 too.
pub fn next_count(state: &CountState, fresh: bool) -> CountRecord {
    match state {
        CountState::Ok(r) => CountRecord {
            seq: r.seq.saturating_add(1),
            attempts: if fresh {
                1
            } else {
                r.attempts.saturating_add(1)
            },
            good_boot: r.good_boot,
        },
        CountState::Missing | CountState::Corrupt(_) => CountRecord {
            seq: 1,
            attempts: 1,
            good_boot: 0,
        },
    }
}

/// The record `--mark-good` writes (pure); `None` when there is nothing to
/// write: no record (boot counting never ran: not a byte is written), or
/// the count is already 0. A corrupt record is replaced by a good one.
pub fn next_mark(state: &CountState, boot_id: u64) -> Option<CountRecord> {
    match state {
        CountState::Missing => None,
        CountState::Ok(r) if r.attempts == 0 => None,
        CountState::Ok(r) => Some(CountRecord {
            seq: r.seq.saturating_add(1),
            attempts: 0,
            good_boot: boot_id,
        }),
        CountState::Corrupt(_) => Some(CountRecord {
            seq: 1,
            attempts: 0,
            good_boot: boot_id,
        }),
    }
}

// ---------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------

/// The step that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    OpenData,
    OpenDir,
    MakeDir,
    Open,
    Stat,
    Read,
    Create,
    Write,
    Sync,
    Rename,
    /// `.boot` exists and is not a directory of the data filesystem.
    NotADir,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::OpenData => "open the data filesystem",
            Step::OpenDir => "open .boot",
            Step::MakeDir => "make .boot",
            Step::Open => "open .boot/count",
            Step::Stat => "stat .boot/count",
            Step::Read => "read .boot/count",
            Step::Create => "create .boot/count",
            Step::Write => "write .boot/count",
            Step::Sync => "sync .boot/count",
            Step::Rename => "rename .boot/count.tmp",
            Step::NotADir => "use .boot (not a directory of the data filesystem)",
        }
    }
}

/// A failed read or write of the record.
#[derive(Debug)]
pub struct CountError {
    pub step: Step,
    pub err: io::Error,
}

impl fmt::Display for CountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boot counter: cannot {}: {}", self.step.name(), self.err)
    }
}

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn fail(step: Step) -> impl FnOnce(rustix::io::Errno) -> CountError {
    move |e| CountError { step, err: os(e) }
}

fn open_root(data_root: &Path) -> Result<(OwnedFd, u64), CountError> {
    use rustix::fs::{Mode, OFlags};
    let root = rustix::fs::open(
        data_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(Step::OpenData))?;
    let dev = rustix::fs::fstat(&root)
        .map_err(fail(Step::OpenData))?
        .st_dev;
    Ok((root, dev))
}

/// `.boot` below `root`, refusing a link or another mount: `Ok(None)` when
/// absent.
fn open_area(root: BorrowedFd, dev: u64) -> Result<Option<OwnedFd>, CountError> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::openat(
        root,
        DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            if rustix::fs::fstat(&fd).map_err(fail(Step::OpenDir))?.st_dev != dev {
                return Err(CountError {
                    step: Step::NotADir,
                    err: io::Error::from_raw_os_error(nix::libc::EXDEV),
                });
            }
            Ok(Some(fd))
        }
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e @ (rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)) => Err(CountError {
            step: Step::NotADir,
            err: os(e),
        }),
        Err(e) => Err(fail(Step::OpenDir)(e)),
    }
}

/// `pread` of exactly `buf.len()` bytes at `at` (a short file reads zeros).
fn pread_full(fd: BorrowedFd, buf: &mut [u8], at: u64) -> Result<(), CountError> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        match rustix::io::pread(fd, rest, at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(fail(Step::Read)(e)),
        }
    }
    Ok(())
}

/// Reads the record of the data filesystem mounted at `data_root`
/// (read-only: nothing is repaired here).
pub fn read(data_root: &Path) -> Result<CountState, CountError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let (root, dev) = open_root(data_root)?;
    let area = match open_area(root.as_fd(), dev) {
        Ok(Some(a)) => a,
        Ok(None) => return Ok(CountState::Missing),
        Err(CountError {
            step: Step::NotADir,
            ..
        }) => return Ok(CountState::Corrupt(CountCorrupt::NotAFile)),
        Err(e) => return Err(e),
    };
    // O_NONBLOCK: a FIFO put there opens without waiting for a writer (it
    // is then refused as not a regular file, without a read).
    let fd = match rustix::fs::openat(
        area.as_fd(),
        FILE,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(CountState::Missing),
        Err(rustix::io::Errno::LOOP) => return Ok(CountState::Corrupt(CountCorrupt::NotAFile)),
        Err(e) => return Err(fail(Step::Open)(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(fail(Step::Stat))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_dev != dev {
        return Ok(CountState::Corrupt(CountCorrupt::NotAFile));
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    if len != FILE_SIZE {
        return Ok(CountState::Corrupt(CountCorrupt::Size(len)));
    }
    let (mut s0, mut s1) = ([0u8; SLOT_SIZE], [0u8; SLOT_SIZE]);
    pread_full(fd.as_fd(), &mut s0, 0)?;
    pread_full(fd.as_fd(), &mut s1, SLOT1_AT)?;
    Ok(decode_file(len, &s0, &s1))
}

/// Writes `rec` (from [`next_count`] or [`next_mark`]) on the data
/// filesystem at `data_root`, read as `state`: into its slot of the
/// existing file (one 32-byte `pwrite` + `fdatasync`), or, when there is
/// no good file, as a new file replacing whatever is there atomically.
pub fn write(data_root: &Path, state: &CountState, rec: &CountRecord) -> Result<(), CountError> {
    write_with(data_root, state, rec, COUNT, &mut |_| {})
}

/// The names of the two instants of a change of the record, as the test
/// build's power cuts know them (`overlay.test_crash=NAME`, src/config.rs):
/// `written` after the record's bytes are written (a new file: before its
/// fsync and rename), `synced` once they are durable.
#[derive(Clone, Copy, Debug)]
pub struct Instants {
    pub written: &'static str,
    pub synced: &'static str,
}

/// A boot counting itself.
pub const COUNT: Instants = Instants {
    written: "count-write",
    synced: "count-sync",
};
/// `overlay-status --mark-good`.
pub const MARK: Instants = Instants {
    written: "mark-write",
    synced: "mark-sync",
};

/// [`write`], calling `hook` with each of the `instants` as it passes it
/// (the test build cuts the power there: reset::boot::PowerCut).
pub fn write_with(
    data_root: &Path,
    state: &CountState,
    rec: &CountRecord,
    instants: Instants,
    hook: &mut dyn FnMut(&str),
) -> Result<(), CountError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let (root, dev) = open_root(data_root)?;
    let area = match open_area(root.as_fd(), dev)? {
        Some(a) => a,
        None => {
            match rustix::fs::mkdirat(root.as_fd(), DIR, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(fail(Step::MakeDir)(e)),
            }
            rustix::fs::fsync(&root).map_err(fail(Step::Sync))?;
            open_area(root.as_fd(), dev)?.ok_or(CountError {
                step: Step::OpenDir,
                err: io::Error::from_raw_os_error(nix::libc::ENOENT),
            })?
        }
    };
    if let CountState::Ok(_) = state {
        let fd = rustix::fs::openat(
            area.as_fd(),
            FILE,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail(Step::Open))?;
        let st = rustix::fs::fstat(&fd).map_err(fail(Step::Stat))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && u64::try_from(st.st_size).ok() == Some(FILE_SIZE)
        {
            let at = if rec.slot() == 0 { 0 } else { SLOT1_AT };
            let n = rustix::io::pwrite(&fd, &rec.encode(), at).map_err(fail(Step::Write))?;
            if n != SLOT_SIZE {
                return Err(CountError {
                    step: Step::Write,
                    err: io::ErrorKind::WriteZero.into(),
                });
            }
            hook(instants.written);
            rustix::fs::fdatasync(&fd).map_err(fail(Step::Sync))?;
            hook(instants.synced);
            return Ok(());
        }
    }
    create(area.as_fd(), rec, instants, hook)
}

/// A new record file holding `rec`: both blocks written (so that the slot
/// writes to come allocate nothing), fsynced, renamed over `count`, the
/// directory fsynced.
fn create(
    area: BorrowedFd,
    rec: &CountRecord,
    instants: Instants,
    hook: &mut dyn FnMut(&str),
) -> Result<(), CountError> {
    let tmp = "count.tmp";
    let fd = crate::fsio::new_temp(area, tmp, 0o600).map_err(fail(Step::Create))?;
    let mut img = [0u8; FILE_SIZE as usize];
    let at = if rec.slot() == 0 {
        0
    } else {
        SLOT1_AT as usize
    };
    put(&mut img, at, &rec.encode());
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, &img).map_err(|err| CountError {
        step: Step::Create,
        err,
    })?;
    hook(instants.written);
    rustix::fs::fsync(&f).map_err(fail(Step::Sync))?;
    rustix::fs::renameat(area, tmp, area, FILE).map_err(fail(Step::Rename))?;
    rustix::fs::fsync(area).map_err(fail(Step::Sync))?;
    hook(instants.synced);
    Ok(())
}

/// Counts this boot: reads the record, writes the next one. The boot calls
/// it once, right after the data filesystem is mounted read-write, and only
/// with boot counting on. Returns the record written.
pub fn count_boot(data_root: &Path, fresh: bool) -> Result<CountRecord, CountError> {
    count_boot_with(data_root, fresh, &mut |_| {})
}

/// [`count_boot`] with the test build's power-cut hook ([`COUNT`]).
pub fn count_boot_with(
    data_root: &Path,
    fresh: bool,
    hook: &mut dyn FnMut(&str),
) -> Result<CountRecord, CountError> {
    let state = read(data_root)?;
    let rec = next_count(&state, fresh);
    write_with(data_root, &state, &rec, COUNT, hook)?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn rec(seq: u64, attempts: u32) -> CountRecord {
        CountRecord {
            seq,
            attempts,
            good_boot: 0xfeed,
        }
    }

    fn file(slots: [Option<CountRecord>; 2]) -> Vec<u8> {
        let mut v = vec![0u8; FILE_SIZE as usize];
        if let Some(r) = slots[0] {
            v[..SLOT_SIZE].copy_from_slice(&r.encode());
        }
        if let Some(r) = slots[1] {
            v[SLOT1_AT as usize..].copy_from_slice(&r.encode());
        }
        v
    }

    fn decode_bytes(b: &[u8]) -> CountState {
        let s0 = b.get(..SLOT_SIZE).unwrap_or(&[]);
        let s1 = b.get(SLOT1_AT as usize..).unwrap_or(&[]);
        decode_file(b.len() as u64, s0, s1)
    }

    #[test]
    fn layout_and_round_trip() {
        let r = CountRecord {
            seq: 0x0102_0304_0506_0708,
            attempts: 3,
            good_boot: 0x1122_3344_5566_7788,
        };
        let b = r.encode();
        assert_eq!(&b[0..4], b"OVBC");
        assert_eq!(b[4], 1);
        assert_eq!(&b[5..8], &[0, 0, 0]);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), r.seq);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 3);
        assert_eq!(
            u64::from_le_bytes(b[20..28].try_into().unwrap()),
            r.good_boot
        );
        assert_eq!(
            u32::from_le_bytes(b[28..32].try_into().unwrap()),
            crc32fast::hash(&b[..28])
        );
        assert_eq!(CountRecord::decode(&b, 0), Ok(r));
        assert_eq!(
            CountRecord::decode(&b, 1),
            Err(SlotError::WrongSlot { seq: r.seq })
        );
    }

    #[test]
    fn the_newest_valid_slot_wins() {
        assert_eq!(
            decode_bytes(&file([Some(rec(4, 2)), Some(rec(5, 3))])),
            CountState::Ok(rec(5, 3))
        );
        assert_eq!(
            decode_bytes(&file([Some(rec(6, 0)), Some(rec(5, 3))])),
            CountState::Ok(rec(6, 0))
        );
        assert_eq!(
            decode_bytes(&file([None, Some(rec(1, 1))])),
            CountState::Ok(rec(1, 1))
        );
        assert_eq!(
            decode_bytes(&file([None, None])),
            CountState::Corrupt(CountCorrupt::NoRecord(SlotError::Empty, SlotError::Empty))
        );
    }

    #[test]
    fn any_damage_to_the_slot_being_written_keeps_the_other() {
        // The boot writes seq 7 (slot 1) over a file whose record is seq 6
        // (slot 0). Whatever the cut leaves of slot 1 (a prefix of the new
        // bytes over the old, or any bit flipped), the result is the old
        // record or the new one, never a third value, never nothing.
        let old = rec(6, 2);
        let new = rec(7, 3);
        let before = file([Some(old), Some(rec(5, 1))]);
        let after = file([Some(old), Some(new)]);
        for cut in 0..=SLOT_SIZE {
            let mut b = before.clone();
            let s = SLOT1_AT as usize;
            b[s..s + cut].copy_from_slice(&after[s..s + cut]);
            let got = decode_bytes(&b);
            assert!(
                got == CountState::Ok(old) || got == CountState::Ok(new),
                "cut after {cut} bytes: {got:?}"
            );
            if cut < SLOT_SIZE {
                assert_eq!(got, CountState::Ok(old), "cut after {cut} bytes");
            }
        }
        for bit in 0..SLOT_SIZE * 8 {
            let mut b = after.clone();
            b[SLOT1_AT as usize + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_bytes(&b), CountState::Ok(old), "bit {bit}");
        }
        // A torn block of zeros (a block write that never landed).
        let mut b = after.clone();
        b[SLOT1_AT as usize..].fill(0);
        assert_eq!(decode_bytes(&b), CountState::Ok(old));
    }

    #[test]
    fn a_torn_mark_good_is_a_failed_attempt_never_a_success() {
        let counted = rec(9, 3);
        let state = CountState::Ok(counted);
        let mark = next_mark(&state, 0xabc).unwrap();
        assert_eq!((mark.seq, mark.attempts, mark.good_boot), (10, 0, 0xabc));
        let before = file([Some(rec(8, 2)), Some(counted)]);
        let mut after = before.clone();
        after[..SLOT_SIZE].copy_from_slice(&mark.encode());
        for cut in 0..SLOT_SIZE {
            let mut b = before.clone();
            b[..cut].copy_from_slice(&after[..cut]);
            assert_eq!(decode_bytes(&b).attempts(), 3, "cut after {cut} bytes");
        }
        assert_eq!(decode_bytes(&after).attempts(), 0);
        assert!(decode_bytes(&after).marked_by(0xabc));
        assert!(!decode_bytes(&after).marked_by(0xabd));
        assert!(!decode_bytes(&before).marked_by(0), "0 is no boot");
    }

    #[test]
    fn truncated_long_and_foreign_files_are_corrupt() {
        let good = file([None, Some(rec(1, 1))]);
        for len in [0, 1, 31, 32, 4095, 4096, 4127, 4129, 8192] {
            let mut b = good.clone();
            b.resize(len, 0);
            assert_eq!(
                decode_bytes(&b),
                CountState::Corrupt(CountCorrupt::Size(len as u64)),
                "{len}"
            );
        }
        let mut foreign = vec![0x5au8; FILE_SIZE as usize];
        foreign[..4].copy_from_slice(b"OVBC");
        assert!(matches!(
            decode_bytes(&foreign),
            CountState::Corrupt(CountCorrupt::NoRecord(
                SlotError::Checksum { .. },
                SlotError::Magic
            ))
        ));
        let mut v2 = rec(2, 1).encode();
        v2[4] = 2;
        let crc = crc32fast::hash(&v2[..28]);
        v2[28..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(CountRecord::decode(&v2, 0), Err(SlotError::Version(2)));
    }

    #[test]
    fn counting_and_marking() {
        assert_eq!(
            next_count(&CountState::Missing, false),
            CountRecord {
                seq: 1,
                attempts: 1,
                good_boot: 0
            }
        );
        let s = CountState::Ok(rec(4, 2));
        assert_eq!(
            next_count(&s, false),
            CountRecord {
                seq: 5,
                attempts: 3,
                good_boot: 0xfeed
            }
        );
        assert_eq!(
            next_count(&s, true).attempts,
            1,
            "a reset starts the count again"
        );
        let max = CountState::Ok(rec(4, u32::MAX));
        assert_eq!(next_count(&max, false).attempts, u32::MAX);
        let corrupt = CountState::Corrupt(CountCorrupt::Size(3));
        assert_eq!(next_count(&corrupt, false).attempts, 1);
        assert_eq!(
            next_mark(&CountState::Missing, 1),
            None,
            "off: nothing written"
        );
        assert_eq!(
            next_mark(&CountState::Ok(rec(4, 0)), 1),
            None,
            "already good"
        );
        assert_eq!(
            next_mark(&corrupt, 5),
            Some(CountRecord {
                seq: 1,
                attempts: 0,
                good_boot: 5
            })
        );
    }

    #[test]
    fn the_power_cut_hook_sees_each_write_then_its_sync() {
        // What the test build's cuts (overlay.test_crash=count-write, ...)
        // are called at, and what the file holds at each: a cut at
        // `written` may leave either record, one at `synced` the new one.
        let d = TempDir::new("bootcount-hook");
        let root = d.path();
        let mut seen = Vec::new();
        let mut hook = |s: &str| seen.push((s.to_string(), read(root).unwrap().attempts()));
        count_boot_with(root, false, &mut hook).unwrap(); // creates the file
        count_boot_with(root, false, &mut hook).unwrap(); // writes a slot
        let state = read(root).unwrap();
        let m = next_mark(&state, 9).unwrap();
        write_with(root, &state, &m, MARK, &mut hook).unwrap();
        assert_eq!(
            seen,
            [
                ("count-write".to_string(), 0),
                ("count-sync".to_string(), 1),
                ("count-write".to_string(), 2),
                ("count-sync".to_string(), 2),
                ("mark-write".to_string(), 0),
                ("mark-sync".to_string(), 0),
            ]
        );
    }

    #[test]
    fn a_filesystem_round_trip_with_two_slots() {
        let d = TempDir::new("bootcount");
        let root = d.path();
        assert_eq!(read(root).unwrap(), CountState::Missing);
        let r1 = count_boot(root, false).unwrap();
        assert_eq!((r1.seq, r1.attempts), (1, 1));
        let bytes = std::fs::read(root.join(".boot/count")).unwrap();
        assert_eq!(bytes.len() as u64, FILE_SIZE);
        assert!(
            bytes[..SLOT_SIZE].iter().all(|&b| b == 0),
            "slot 0 empty, written"
        );
        assert!(!root.join(".boot/count.tmp").exists());
        let r2 = count_boot(root, false).unwrap();
        let r3 = count_boot(root, false).unwrap();
        assert_eq!((r2.seq, r2.attempts, r3.seq, r3.attempts), (2, 2, 3, 3));
        let bytes = std::fs::read(root.join(".boot/count")).unwrap();
        assert_eq!(
            CountRecord::decode(&bytes[..SLOT_SIZE], 0),
            Ok(r2),
            "the older one kept"
        );
        let state = read(root).unwrap();
        assert_eq!(state, CountState::Ok(r3));
        let m = next_mark(&state, 77).unwrap();
        write(root, &state, &m).unwrap();
        assert_eq!(read(root).unwrap(), CountState::Ok(m));
        assert!(read(root).unwrap().marked_by(77));
        assert_eq!(count_boot(root, false).unwrap().attempts, 1);
        assert_eq!(
            std::fs::metadata(root.join(".boot/count")).unwrap().len(),
            FILE_SIZE,
            "never grows"
        );
    }

    #[test]
    fn hostile_files_are_never_followed_nor_blocked_on() {
        let d = TempDir::new("bootcount-hostile");
        let root = d.path();
        // A link to a good record elsewhere is not ours.
        let other = TempDir::new("bootcount-elsewhere");
        count_boot(other.path(), false).unwrap();
        std::fs::create_dir(root.join(".boot")).unwrap();
        std::os::unix::fs::symlink(other.path().join(".boot/count"), root.join(".boot/count"))
            .unwrap();
        assert_eq!(
            read(root).unwrap(),
            CountState::Corrupt(CountCorrupt::NotAFile)
        );
        // A FIFO: refused at once, no read waiting for a writer.
        std::fs::remove_file(root.join(".boot/count")).unwrap();
        nix::unistd::mkfifo(&root.join(".boot/count"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            read(root).unwrap(),
            CountState::Corrupt(CountCorrupt::NotAFile)
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // Counting replaces it with a good record (atomically: the FIFO is
        // renamed over, never opened for writing).
        let state = read(root).unwrap();
        write(root, &state, &next_count(&state, false)).unwrap();
        assert_eq!(read(root).unwrap().attempts(), 1);
        // .boot a link to a directory elsewhere: not followed.
        std::fs::remove_dir_all(root.join(".boot")).unwrap();
        std::os::unix::fs::symlink(other.path().join(".boot"), root.join(".boot")).unwrap();
        assert_eq!(
            read(root).unwrap(),
            CountState::Corrupt(CountCorrupt::NotAFile)
        );
        assert!(write(
            root,
            &CountState::Missing,
            &next_count(&CountState::Missing, false)
        )
        .is_err());
        assert_eq!(
            read(other.path()).unwrap().attempts(),
            1,
            "the other one untouched"
        );
        // A huge file: two small reads, then refused by its size.
        std::fs::remove_file(root.join(".boot")).unwrap();
        std::fs::create_dir(root.join(".boot")).unwrap();
        let f = std::fs::File::create(root.join(".boot/count")).unwrap();
        f.set_len(1 << 40).unwrap();
        assert_eq!(
            read(root).unwrap(),
            CountState::Corrupt(CountCorrupt::Size(1 << 40))
        );
    }

    #[test]
    fn a_count_rewrites_one_slot_in_place_and_nothing_else() {
        use std::os::unix::fs::MetadataExt;
        let d = TempDir::new("bootcount-inplace");
        let root = d.path();
        let path = root.join(".boot/count");
        count_boot(root, false).unwrap();
        for n in 2..=5u64 {
            let before = std::fs::read(&path).unwrap();
            let ino = std::fs::metadata(&path).unwrap().ino();
            let r = count_boot(root, false).unwrap();
            assert_eq!(r.seq, n);
            let after = std::fs::read(&path).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().ino(),
                ino,
                "written in place, not replaced"
            );
            let slot = if n % 2 == 0 {
                0..SLOT_SIZE
            } else {
                SLOT1_AT as usize..FILE_SIZE as usize
            };
            for (i, (a, b)) in before.iter().zip(&after).enumerate() {
                if !slot.contains(&i) {
                    assert_eq!(a, b, "byte {i} outside the written slot changed");
                }
            }
            assert_ne!(before[slot.clone()], after[slot], "the slot was written");
        }
        // Nothing to mark: the file is not even opened for writing.
        let state = read(root).unwrap();
        let m = next_mark(&state, 5).unwrap();
        write(root, &state, &m).unwrap();
        let before = std::fs::read(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().mtime_nsec();
        assert_eq!(next_mark(&read(root).unwrap(), 5), None);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::metadata(&path).unwrap().mtime_nsec(), mtime);
    }
}
