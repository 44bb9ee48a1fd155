//! The wear log: a small ring of fixed-size records on the data filesystem,
//! so the write rate and the remaining life can be computed across boots.
//!
//! It lives in `<data fs>/.wear/log`, beside `.reset/` and outside `upper/`
//! (the overlay never shows it, and a factory reset, which renames `upper/`
//! and `work/` away, keeps it: the flash does not get younger by a reset).
//!
//! Monitoring must not wear what it monitors, so:
//! - the file is preallocated once (header + [`SLOTS`] zeroed slots,
//!   [`FILE_SIZE`] bytes, written to a temp file, fsynced, renamed, the
//!   directory fsynced) and never grows;
//! - a record is one `pwrite` of [`RECORD_SIZE`] bytes into slot
//!   `seq % SLOTS` plus `fdatasync`: the oldest record is overwritten, never
//!   the newest, so a torn write loses only the record being written;
//! - [`should_write`] allows at most one record per interval (a day by
//!   default), and the boot writes at most one ([`boot_write_allowed`]).
//!
//! Records are built in fixed arrays and read into a `heapless::Vec`: no
//! allocation for the log itself in the pre-init.
//!
//! Its I/O is [`crate::fsio`]'s: `.wear` is opened `O_NOFOLLOW` (never a
//! symlink); the log is read only if it is a regular file (a FIFO there
//! would block, a device's open has side effects: such a log is corrupt and
//! replaced), at most one byte more than [`FILE_SIZE`]; a record or a log
//! the reader would refuse is never written.
//!
//! Header (64 bytes, little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `OVWEARLG` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | record size (64) |
//! | 16 | 4 | slots (64) |
//! | 20 | 8 | created: Unix time the log was started |
//! | 28 | 32 | zero |
//! | 60 | 4 | CRC-32 (IEEE, `crate::crc32`) of bytes 0..60 |
//!
//! Record (64 bytes, little-endian), in slot `seq % 64` at `64 + slot × 64`:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `OVWR` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | flags: which optional fields are present ([`flags`]) |
//! | 6 | 1 | device level (0 unknown, 1 ok, 2 warn, 3 critical) |
//! | 7 | 1 | eMMC pre_eol_info |
//! | 8 | 8 | seq (1, 2, …) |
//! | 16 | 8 | time: Unix seconds (wall clock) |
//! | 24 | 8 | since: time of the first record of this log, carried forward |
//! | 32 | 8 | boot id: first 64 bits of `/proc/sys/kernel/random/boot_id` |
//! | 40 | 8 | bytes written (the data filesystem's lifetime counter) |
//! | 48 | 4 | highest UBI erase count |
//! | 52 | 4 | mean UBI erase count × 100 |
//! | 56 | 2 | bad blocks |
//! | 58 | 1 | eMMC life_time type A |
//! | 59 | 1 | eMMC life_time type B |
//! | 60 | 4 | CRC-32 (IEEE, `crate::crc32`) of bytes 0..60 |

use super::sources::{Kind, SourceReading};
use super::Level;
use crate::fsio::{self, RecordIoError};
use crate::le::{byte, le_u16, le_u32, le_u64, put};
use crate::walk;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory on the data filesystem, beside `.reset/`.
pub const WEAR_DIR: &str = ".wear";
pub const LOG_FILE: &str = "log";
pub const HEADER_SIZE: usize = 64;
pub const RECORD_SIZE: usize = 64;
pub const SLOTS: usize = 64;
pub const FILE_SIZE: usize = HEADER_SIZE + SLOTS * RECORD_SIZE;
const HEADER_MAGIC: &[u8; 8] = b"OVWEARLG";
const RECORD_MAGIC: &[u8; 4] = b"OVWR";
const VERSION: u8 = 1;
const CRC_AT: usize = 60;

/// A wall clock before this (2024-01-01) has not been set (a board without
/// RTC boots in 1970 or 2000): no record is written with it.
pub const MIN_PLAUSIBLE_TIME: u64 = 1_704_067_200;
/// A newest record more than this ahead of the clock has a bogus time (the
/// clock was once wrong in the future): it does not block new records.
pub const MAX_FUTURE: u64 = 366 * 86_400;

/// Bits of the record's flags byte: which optional fields are present.
pub mod flags {
    pub const WRITTEN: u8 = 1 << 0;
    pub const MAX_EC: u8 = 1 << 1;
    pub const MEAN_EC: u8 = 1 << 2;
    pub const BAD_BLOCKS: u8 = 1 << 3;
    pub const EMMC_LIFE: u8 = 1 << 4;
    pub const PRE_EOL: u8 = 1 << 5;
}

/// One sample of the device's wear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WearRecord {
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// Time of the first record of this log (the device's age, roughly).
    pub since: u64,
    pub boot_id: u64,
    pub level: Level,
    /// The data filesystem's lifetime bytes written.
    pub written_bytes: Option<u64>,
    pub max_ec: Option<u32>,
    pub mean_ec_x100: Option<u32>,
    pub bad_blocks: Option<u16>,
    pub emmc_life: Option<(u8, u8)>,
    pub pre_eol: Option<u8>,
}

/// Why a slot does not hold a usable record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    Magic,
    Version(u8),
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// A level code we do not know.
    Level(u8),
    /// The record's seq belongs in another slot.
    Slot {
        seq: u64,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Magic => write!(f, "not a wear record"),
            RecordError::Version(v) => write!(f, "record version {v}"),
            RecordError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            RecordError::Level(l) => write!(f, "level code {l}"),
            RecordError::Slot { seq } => write!(f, "record {seq} in the wrong slot"),
        }
    }
}

fn crc_of(b: &[u8]) -> u32 {
    crate::crc32::hash(b.get(..CRC_AT).unwrap_or(&[]))
}

impl WearRecord {
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        let mut fl = 0u8;
        let mut opt = |flag: u8, present: bool| {
            if present {
                fl |= flag;
            }
        };
        opt(flags::WRITTEN, self.written_bytes.is_some());
        opt(flags::MAX_EC, self.max_ec.is_some());
        opt(flags::MEAN_EC, self.mean_ec_x100.is_some());
        opt(flags::BAD_BLOCKS, self.bad_blocks.is_some());
        opt(flags::EMMC_LIFE, self.emmc_life.is_some());
        opt(flags::PRE_EOL, self.pre_eol.is_some());
        put(&mut b, 0, RECORD_MAGIC);
        put(
            &mut b,
            4,
            &[VERSION, fl, self.level.code(), self.pre_eol.unwrap_or(0)],
        );
        put(&mut b, 8, &self.seq.to_le_bytes());
        put(&mut b, 16, &self.time.to_le_bytes());
        put(&mut b, 24, &self.since.to_le_bytes());
        put(&mut b, 32, &self.boot_id.to_le_bytes());
        put(&mut b, 40, &self.written_bytes.unwrap_or(0).to_le_bytes());
        put(&mut b, 48, &self.max_ec.unwrap_or(0).to_le_bytes());
        put(&mut b, 52, &self.mean_ec_x100.unwrap_or(0).to_le_bytes());
        put(&mut b, 56, &self.bad_blocks.unwrap_or(0).to_le_bytes());
        let (a, bb) = self.emmc_life.unwrap_or((0, 0));
        put(&mut b, 58, &[a, bb]);
        let crc = crc_of(&b);
        put(&mut b, CRC_AT, &crc.to_le_bytes());
        b
    }

    /// Decodes one slot; the CRC is checked before any field is believed.
    pub fn decode(b: &[u8]) -> Result<WearRecord, RecordError> {
        if b.get(0..4) != Some(RECORD_MAGIC.as_slice()) {
            return Err(RecordError::Magic);
        }
        let stored = le_u32(b, CRC_AT);
        let computed = crc_of(b);
        if b.len() != RECORD_SIZE || stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        if byte(b, 4) != VERSION {
            return Err(RecordError::Version(byte(b, 4)));
        }
        let fl = byte(b, 5);
        let has = |flag: u8| fl & flag != 0;
        let level = Level::from_code(byte(b, 6)).ok_or(RecordError::Level(byte(b, 6)))?;
        Ok(WearRecord {
            seq: le_u64(b, 8),
            time: le_u64(b, 16),
            since: le_u64(b, 24),
            boot_id: le_u64(b, 32),
            level,
            written_bytes: has(flags::WRITTEN).then(|| le_u64(b, 40)),
            max_ec: has(flags::MAX_EC).then(|| le_u32(b, 48)),
            mean_ec_x100: has(flags::MEAN_EC).then(|| le_u32(b, 52)),
            bad_blocks: has(flags::BAD_BLOCKS).then(|| le_u16(b, 56)),
            emmc_life: has(flags::EMMC_LIFE).then(|| (byte(b, 58), byte(b, 59))),
            pre_eol: has(flags::PRE_EOL).then(|| byte(b, 7)),
        })
    }

    /// A record (seq and since still to be set by [`append`]) from this
    /// boot's readings: bytes written from the ext4/f2fs on `data_dev` (or
    /// the first filesystem source), erase counts from UBI, bad blocks from
    /// UBI (or NAND MTD devices when there is no UBI), eMMC figures from the
    /// first eMMC.
    pub fn from_readings(
        readings: &[SourceReading],
        data_dev: Option<&str>,
        level: Level,
        time: u64,
        boot_id: u64,
    ) -> WearRecord {
        let fs = readings
            .iter()
            .filter(|r| r.kind == Kind::Fs)
            .find(|r| data_dev.is_none_or(|d| r.id.split_once(':').map(|x| x.1) == Some(d)));
        let ubi = || readings.iter().filter(|r| r.kind == Kind::Ubi);
        let emmc = readings.iter().find(|r| r.kind == Kind::Emmc);
        let sum = |rs: &mut dyn Iterator<Item = u64>| -> Option<u64> {
            rs.fold(None, |acc: Option<u64>, x| {
                Some(acc.unwrap_or(0).saturating_add(x))
            })
        };
        let bad = if ubi().next().is_none() {
            sum(&mut readings
                .iter()
                .filter(|r| {
                    r.kind == Kind::Mtd && matches!(r.text("type"), Some("nand" | "mlc-nand"))
                })
                .filter_map(|r| r.figure("bad_blocks")))
        } else {
            sum(&mut ubi().filter_map(|r| r.figure("bad_peb_count")))
        };
        let clamp32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        WearRecord {
            seq: 0,
            time,
            since: time,
            boot_id,
            level,
            written_bytes: fs
                .and_then(|r| r.figure("lifetime_write_kbytes"))
                .map(|kb| kb.saturating_mul(1024)),
            max_ec: ubi().filter_map(|r| r.figure("max_ec")).max().map(clamp32),
            mean_ec_x100: ubi()
                .filter_map(|r| r.ec.and_then(|e| e.mean_x100()))
                .max()
                .map(clamp32),
            bad_blocks: bad.map(|b| u16::try_from(b).unwrap_or(u16::MAX)),
            emmc_life: emmc.and_then(|r| r.emmc_life),
            pre_eol: emmc.and_then(|r| r.pre_eol),
        }
    }
}

/// The header of a new log created at `created`.
fn encode_header(created: u64) -> [u8; HEADER_SIZE] {
    let mut b = [0u8; HEADER_SIZE];
    put(&mut b, 0, HEADER_MAGIC);
    put(&mut b, 8, &u32::from(VERSION).to_le_bytes());
    put(&mut b, 12, &(RECORD_SIZE as u32).to_le_bytes());
    put(&mut b, 16, &(SLOTS as u32).to_le_bytes());
    put(&mut b, 20, &created.to_le_bytes());
    let crc = crc_of(&b);
    put(&mut b, CRC_AT, &crc.to_le_bytes());
    b
}

/// Why a whole log is not trusted (it is then started anew).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCorrupt {
    /// The file is not [`FILE_SIZE`] bytes (cut short, or not ours).
    Size(usize),
    HeaderMagic,
    HeaderVersion(u32),
    /// Another record size or slot count than this version writes.
    Geometry {
        record_size: u32,
        slots: u32,
    },
    HeaderChecksum {
        stored: u32,
        computed: u32,
    },
    /// Slots hold data but not one valid record.
    NoValidRecord {
        garbage: usize,
    },
    /// Not a regular file (never opened for reading).
    NotRegular(walk::Kind),
}

impl fmt::Display for LogCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogCorrupt::Size(n) => write!(f, "{n} bytes, not {FILE_SIZE}"),
            LogCorrupt::HeaderMagic => write!(f, "not a wear log"),
            LogCorrupt::HeaderVersion(v) => write!(f, "version {v}"),
            LogCorrupt::Geometry { record_size, slots } => {
                write!(f, "{slots} slots of {record_size} bytes")
            }
            LogCorrupt::HeaderChecksum { stored, computed } => write!(
                f,
                "header checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            LogCorrupt::NoValidRecord { garbage } => {
                write!(f, "no valid record ({garbage} damaged)")
            }
            LogCorrupt::NotRegular(k) => {
                write!(f, "not a regular file ({})", fsio::kind_name(*k))
            }
        }
    }
}

/// The usable part of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogContents {
    pub created: u64,
    /// Valid records, oldest (lowest seq) first.
    pub records: heapless::Vec<WearRecord, SLOTS>,
    /// Damaged slots (torn writes, flipped bits): (slot, why), skipped.
    pub skipped: heapless::Vec<(u8, RecordError), SLOTS>,
}

impl LogContents {
    pub fn newest(&self) -> Option<&WearRecord> {
        self.records.last()
    }
}

/// Decodes a whole log file (pure).
pub fn decode_log(b: &[u8]) -> Result<LogContents, LogCorrupt> {
    if b.len() != FILE_SIZE {
        return Err(LogCorrupt::Size(b.len()));
    }
    if b.get(0..8) != Some(HEADER_MAGIC.as_slice()) {
        return Err(LogCorrupt::HeaderMagic);
    }
    let (stored, computed) = (le_u32(b, CRC_AT), crc_of(b));
    if stored != computed {
        return Err(LogCorrupt::HeaderChecksum { stored, computed });
    }
    let version = le_u32(b, 8);
    if version != u32::from(VERSION) {
        return Err(LogCorrupt::HeaderVersion(version));
    }
    let (record_size, slots) = (le_u32(b, 12), le_u32(b, 16));
    if record_size as usize != RECORD_SIZE || slots as usize != SLOTS {
        return Err(LogCorrupt::Geometry { record_size, slots });
    }
    let mut c = LogContents {
        created: le_u64(b, 20),
        ..LogContents::default()
    };
    for slot in 0..SLOTS {
        let at = HEADER_SIZE + slot * RECORD_SIZE;
        let Some(raw) = b.get(at..at + RECORD_SIZE) else {
            break;
        };
        if raw.iter().all(|&x| x == 0) {
            continue; // never written
        }
        let r = WearRecord::decode(raw).and_then(|r| {
            if r.seq % SLOTS as u64 == slot as u64 {
                Ok(r)
            } else {
                Err(RecordError::Slot { seq: r.seq })
            }
        });
        // Both vectors hold SLOTS entries and there are SLOTS slots: no overflow.
        let _ = match r {
            Ok(r) => c.records.push(r).map_err(|_| ()),
            Err(e) => c.skipped.push((slot as u8, e)).map_err(|_| ()),
        };
    }
    if c.records.is_empty() && !c.skipped.is_empty() {
        return Err(LogCorrupt::NoValidRecord {
            garbage: c.skipped.len(),
        });
    }
    c.records.sort_unstable_by_key(|r| r.seq);
    Ok(c)
}

/// What is on the data filesystem.
// The contents are held inline (about 7 KB, on the stack) on purpose:
// boxing them would allocate, which the pre-init avoids for the log.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogState {
    /// No log yet (first boot, or the filesystem was formatted).
    Missing,
    Ok(LogContents),
    /// Reported ("wear log corrupt: …; starting a new one") and never
    /// trusted: the next [`append`] replaces it.
    Corrupt(LogCorrupt),
}

impl LogState {
    pub fn newest(&self) -> Option<&WearRecord> {
        match self {
            LogState::Ok(c) => c.newest(),
            _ => None,
        }
    }

    pub fn records(&self) -> &[WearRecord] {
        match self {
            LogState::Ok(c) => &c.records,
            _ => &[],
        }
    }

    /// The line to log when the log cannot be trusted.
    pub fn problem(&self, path: &Path) -> Option<String> {
        match self {
            LogState::Corrupt(e) => Some(format!(
                "wear log corrupt: {}: {e}; starting a new one",
                path.display()
            )),
            _ => None,
        }
    }

    /// Damaged slots that were skipped, one line each.
    pub fn skipped_lines(&self, path: &Path) -> Vec<String> {
        match self {
            LogState::Ok(c) => c
                .skipped
                .iter()
                .map(|(slot, e)| format!("wear log {}: slot {slot} skipped: {e}", path.display()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A failed log operation, with the path and the step.
#[derive(Debug)]
pub struct LogError {
    pub path: PathBuf,
    pub step: &'static str,
    pub err: io::Error,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wear log {}: {}: {}",
            self.path.display(),
            self.step,
            self.err
        )
    }
}

fn err<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |err| LogError {
        path: path.to_path_buf(),
        step,
        err,
    }
}

/// `<data root>/.wear/log`.
pub fn log_path(data_root: &Path) -> PathBuf {
    data_root.join(WEAR_DIR).join(LOG_FILE)
}

fn errno<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(Errno) -> LogError + 'a {
    move |e| err(path, step)(io::Error::from(e))
}

/// `<data root>/.wear`, opened without following a symlink; `None` when absent.
fn open_wear_dir(data_root: &Path) -> Result<Option<OwnedFd>, LogError> {
    let root = rustix::fs::open(
        data_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(data_root, "open"))?;
    match walk::open_dir_at(root.as_fd(), WEAR_DIR) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(&data_root.join(WEAR_DIR), "open")(e)),
    }
}

/// Reads the log of the data filesystem mounted at `data_root` (read-only:
/// nothing is repaired here). A log that is not a regular file is
/// `Corrupt`, never opened.
pub fn read_log(data_root: &Path) -> Result<LogState, LogError> {
    let path = log_path(data_root);
    let Some(dir) = open_wear_dir(data_root)? else {
        return Ok(LogState::Missing);
    };
    // One byte more than a log, to see a file that is too long.
    let mut buf = [0u8; FILE_SIZE + 1];
    let n = match fsio::read_into(dir.as_fd(), LOG_FILE, &mut buf) {
        Ok(None) => return Ok(LogState::Missing),
        Ok(Some(n)) => n,
        Err(RecordIoError::NotRegular(k)) => {
            return Ok(LogState::Corrupt(LogCorrupt::NotRegular(k)))
        }
        Err(RecordIoError::TooLarge { size, .. }) => {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            return Ok(LogState::Corrupt(LogCorrupt::Size(size)));
        }
        Err(e) => return Err(errno(&path, "read")(e.errno())),
    };
    Ok(match decode_log(buf.get(..n).unwrap_or(&[])) {
        Ok(c) => LogState::Ok(c),
        Err(e) => LogState::Corrupt(e),
    })
}

/// Writes `rec` as the next record: seq and since follow the newest valid
/// record. An existing good log gets one `pwrite` of one record and
/// `fdatasync`; a missing or corrupt one is replaced by a new file holding
/// this record (temp file, fsync, rename, directory fsync). Returns the
/// record as written. What the reader would refuse is never written.
pub fn append(
    data_root: &Path,
    state: &LogState,
    rec: &WearRecord,
) -> Result<WearRecord, LogError> {
    let newest = state.newest();
    let mut rec = *rec;
    rec.seq = newest.map_or(1, |n| n.seq.saturating_add(1));
    rec.since = newest.map_or(rec.time, |n| n.since.min(rec.time));
    let slot = (rec.seq % SLOTS as u64) as usize;
    let at = HEADER_SIZE + slot * RECORD_SIZE;
    let path = log_path(data_root);
    let bytes = rec.encode();
    let refused = || {
        err(&path, "encode")(io::Error::new(
            io::ErrorKind::InvalidData,
            "the record would not read back",
        ))
    };
    if WearRecord::decode(&bytes).is_err() {
        return Err(refused());
    }
    match state {
        LogState::Ok(_) => {
            let dir =
                open_wear_dir(data_root)?.ok_or_else(|| errno(&path, "open")(Errno::NOENT))?;
            let fd = rustix::fs::openat(
                dir.as_fd(),
                LOG_FILE,
                OFlags::WRONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(&path, "open"))?;
            // The log that was read: a regular file of the log's size.
            let st = rustix::fs::fstat(&fd).map_err(errno(&path, "fstat"))?;
            if walk::Kind::from_mode(st.st_mode) != walk::Kind::File
                || u64::try_from(st.st_size).ok() != Some(FILE_SIZE as u64)
            {
                return Err(errno(&path, "open")(Errno::STALE));
            }
            let f = std::fs::File::from(fd);
            f.write_all_at(&bytes, at as u64)
                .map_err(err(&path, "write"))?;
            f.sync_data().map_err(err(&path, "fdatasync"))?;
        }
        LogState::Missing | LogState::Corrupt(_) => {
            let mut img = [0u8; FILE_SIZE];
            put(&mut img, 0, &encode_header(rec.time));
            put(&mut img, at, &bytes);
            create(data_root, &img)?;
        }
    }
    Ok(rec)
}

/// Replaces the log with `img` atomically ([`fsio::write_atomic`]).
fn create(data_root: &Path, img: &[u8]) -> Result<(), LogError> {
    let dir_path = data_root.join(WEAR_DIR);
    let root = rustix::fs::open(
        data_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(data_root, "open"))?;
    // `.wear` must be a directory: a file or a symlink there is refused.
    let dir = walk::ensure_dir_at(root.as_fd(), std::ffi::OsStr::new(WEAR_DIR), 0o700)
        .map_err(errno(&dir_path, "mkdir"))?;
    rustix::fs::fsync(&root).map_err(errno(data_root, "fsync"))?;
    fsio::write_atomic(dir.as_fd(), LOG_FILE, img, FILE_SIZE)
        .map_err(|e| errno(&log_path(data_root), "write")(e.errno()))
}

/// Whether a record may be written now: the clock must be set
/// ([`MIN_PLAUSIBLE_TIME`]) and `interval` must have passed since the newest
/// record. A clock that went back (RTC reset, a board without RTC before
/// NTP) is not trusted: nothing is written until it passes the newest record
/// again, unless that record is more than [`MAX_FUTURE`] ahead, i.e. its own
/// time was bogus.
pub fn should_write(last_record_time: Option<u64>, now: u64, interval: Duration) -> bool {
    if now < MIN_PLAUSIBLE_TIME {
        return false;
    }
    match last_record_time {
        None => true,
        Some(last) if now >= last => now - last >= interval.as_secs(),
        Some(last) => last - now > MAX_FUTURE,
    }
}

/// [`should_write`] for the boot: also never a second record in the same
/// boot (same boot id).
pub fn boot_write_allowed(
    newest: Option<&WearRecord>,
    now: u64,
    interval: Duration,
    boot_id: u64,
) -> bool {
    should_write(newest.map(|n| n.time), now, interval)
        && newest.is_none_or(|n| n.boot_id != boot_id)
}

/// `/proc/sys/kernel/random/boot_id` (`"6fa4b2c1-...-...\n"`, a UUID drawn
/// at each boot) → its first 64 bits.
pub fn parse_boot_id(text: &str) -> Option<u64> {
    let hex: heapless::String<16> = text
        .trim()
        .chars()
        .filter(|&c| c != '-')
        .take(16)
        .try_fold(heapless::String::new(), |mut s: heapless::String<16>, c| {
            s.push(c).ok()?;
            Some(s)
        })?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const T0: u64 = 1_750_000_000; // June 2025
    const DAY: u64 = 86_400;

    fn rec(time: u64, written: u64) -> WearRecord {
        WearRecord {
            seq: 0,
            time,
            since: time,
            boot_id: 0xabcd,
            level: Level::Ok,
            written_bytes: Some(written),
            max_ec: Some(1234),
            mean_ec_x100: Some(100_050),
            bad_blocks: Some(3),
            emmc_life: Some((1, 2)),
            pre_eol: Some(1),
        }
    }

    #[test]
    fn record_round_trip_and_layout() {
        let mut r = rec(T0, 5 << 30);
        r.seq = 77;
        let b = r.encode();
        assert_eq!(&b[0..4], b"OVWR");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 0b11_1111);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 77);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), T0);
        assert_eq!(
            u32::from_le_bytes(b[60..64].try_into().unwrap()),
            crc32fast::hash(&b[..60])
        );
        assert_eq!(WearRecord::decode(&b), Ok(r));
        let sparse = WearRecord {
            written_bytes: None,
            max_ec: None,
            mean_ec_x100: None,
            bad_blocks: None,
            emmc_life: None,
            pre_eol: None,
            level: Level::Critical,
            ..r
        };
        assert_eq!(WearRecord::decode(&sparse.encode()), Ok(sparse));
    }

    #[test]
    fn every_bit_flip_and_cut_is_refused() {
        let b = rec(T0, 1).encode();
        for bit in 0..RECORD_SIZE * 8 {
            let mut x = b;
            x[bit / 8] ^= 1 << (bit % 8);
            assert!(WearRecord::decode(&x).is_err(), "bit {bit}");
        }
        for cut in 0..RECORD_SIZE {
            assert!(WearRecord::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(WearRecord::decode(&[0xAA; 64]), Err(RecordError::Magic));
    }

    fn image(records: &[WearRecord]) -> Vec<u8> {
        let mut img = vec![0u8; FILE_SIZE];
        img[..HEADER_SIZE].copy_from_slice(&encode_header(T0));
        for r in records {
            let at = HEADER_SIZE + (r.seq as usize % SLOTS) * RECORD_SIZE;
            img[at..at + RECORD_SIZE].copy_from_slice(&r.encode());
        }
        img
    }

    fn seqd(n: u64) -> WearRecord {
        WearRecord {
            seq: n,
            ..rec(T0 + n * DAY, n << 20)
        }
    }

    #[test]
    fn a_log_decodes_in_seq_order_and_skips_torn_slots() {
        let mut img = image(&[seqd(3), seqd(1), seqd(2)]);
        let c = decode_log(&img).unwrap();
        let seqs: Vec<u64> = c.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(c.created, T0);
        assert!(c.skipped.is_empty());
        // A torn write of record 4: half new, half zero.
        let at = HEADER_SIZE + 4 * RECORD_SIZE;
        img[at..at + 32].copy_from_slice(&seqd(4).encode()[..32]);
        let c = decode_log(&img).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.newest().map(|r| r.seq), Some(3));
        assert!(matches!(
            c.skipped.as_slice(),
            [(4, RecordError::Checksum { .. })]
        ));
        // A valid record copied into the wrong slot.
        img.copy_within(
            HEADER_SIZE + RECORD_SIZE..HEADER_SIZE + 2 * RECORD_SIZE,
            HEADER_SIZE + 9 * RECORD_SIZE,
        );
        let c = decode_log(&img).unwrap();
        assert!(c.skipped.contains(&(9, RecordError::Slot { seq: 1 })));
    }

    #[test]
    fn all_slots_valid_and_wrap_around() {
        let recs: Vec<WearRecord> = (100..100 + SLOTS as u64).map(seqd).collect();
        let c = decode_log(&image(&recs)).unwrap();
        assert_eq!(c.records.len(), SLOTS);
        assert_eq!(c.records.first().map(|r| r.seq), Some(100));
        assert_eq!(c.newest().map(|r| r.seq), Some(163));
        // The next record (164) overwrites the oldest (100), slot 164 % 64 = 36.
        assert_eq!(100 % SLOTS, 164 % SLOTS);
    }

    #[test]
    fn corrupt_logs_are_refused_whole() {
        let good = image(&[seqd(1)]);
        assert_eq!(
            decode_log(&good[..FILE_SIZE - 1]),
            Err(LogCorrupt::Size(FILE_SIZE - 1))
        );
        assert_eq!(decode_log(&[]), Err(LogCorrupt::Size(0)));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode_log(&long), Err(LogCorrupt::Size(FILE_SIZE + 1)));
        let mut garbage = good.clone();
        garbage[..8].copy_from_slice(b"GARBAGE!");
        assert_eq!(decode_log(&garbage), Err(LogCorrupt::HeaderMagic));
        let mut flipped = good.clone();
        flipped[21] ^= 4; // created
        assert!(matches!(
            decode_log(&flipped),
            Err(LogCorrupt::HeaderChecksum { .. })
        ));
        let mut slots = good.clone();
        slots[16] = 32;
        let crc = crc32fast::hash(&slots[..60]);
        slots[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_log(&slots),
            Err(LogCorrupt::Geometry {
                record_size: 64,
                slots: 32
            })
        );
        let mut v2 = good.clone();
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[..60]);
        v2[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_log(&v2), Err(LogCorrupt::HeaderVersion(2)));
        // One record, one byte flipped: data, but nothing valid.
        let mut bad = good.clone();
        bad[HEADER_SIZE + RECORD_SIZE + 20] ^= 1;
        assert_eq!(
            decode_log(&bad),
            Err(LogCorrupt::NoValidRecord { garbage: 1 })
        );
        // A fresh log with no record yet is fine and empty.
        let empty = decode_log(&image(&[])).unwrap();
        assert!(empty.records.is_empty() && empty.skipped.is_empty());
    }

    #[test]
    fn files_on_disk_create_append_corrupt_restart() {
        let d = TempDir::new("wear-log");
        let root = d.path();
        let path = log_path(root);
        assert_eq!(read_log(root).unwrap(), LogState::Missing);
        let st = LogState::Missing;
        let r1 = append(root, &st, &rec(T0, 100)).unwrap();
        assert_eq!((r1.seq, r1.since), (1, T0));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE as u64);
        let st = read_log(root).unwrap();
        assert_eq!(st.records(), [r1]);
        let r2 = append(root, &st, &rec(T0 + DAY, 200)).unwrap();
        assert_eq!((r2.seq, r2.since), (2, T0), "since is carried forward");
        let st = read_log(root).unwrap();
        assert_eq!(st.records(), [r1, r2]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE as u64);

        // Flip a byte of record 2: it is skipped and reported; record 3 takes its slot.
        let mut b = std::fs::read(&path).unwrap();
        b[HEADER_SIZE + 2 * RECORD_SIZE + 17] ^= 0x10;
        std::fs::write(&path, &b).unwrap();
        let st = read_log(root).unwrap();
        assert_eq!(st.records(), [r1]);
        let lines = st.skipped_lines(&path);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("slot 2 skipped: checksum mismatch"),
            "{lines:?}"
        );
        let r3 = append(root, &st, &rec(T0 + 2 * DAY, 300)).unwrap();
        assert_eq!(r3.seq, 2);
        assert_eq!(read_log(root).unwrap().records(), [r1, r3]);

        // Truncated: corrupt, reported, then replaced by a new log.
        std::fs::write(&path, &b[..100]).unwrap();
        let st = read_log(root).unwrap();
        assert_eq!(st, LogState::Corrupt(LogCorrupt::Size(100)));
        let msg = st.problem(&path).unwrap();
        assert!(
            msg.starts_with("wear log corrupt: ")
                && msg.ends_with(": 100 bytes, not 4160; starting a new one"),
            "{msg}"
        );
        assert!(st.newest().is_none(), "a corrupt log is never trusted");
        let r = append(root, &st, &rec(T0 + 3 * DAY, 400)).unwrap();
        assert_eq!((r.seq, r.since), (1, T0 + 3 * DAY));
        assert_eq!(read_log(root).unwrap().records(), [r]);
        assert!(!root.join(".wear/log.tmp").exists());
    }

    #[test]
    fn appending_past_the_ring_keeps_the_newest_64() {
        let d = TempDir::new("wear-log-wrap");
        let root = d.path();
        for i in 0..70u64 {
            let st = read_log(root).unwrap();
            let r = append(root, &st, &rec(T0 + i * DAY, i << 20)).unwrap();
            assert_eq!(r.seq, i + 1);
        }
        assert_eq!(
            std::fs::metadata(log_path(root)).unwrap().len(),
            FILE_SIZE as u64
        );
        let st = read_log(root).unwrap();
        let recs = st.records();
        assert_eq!(recs.len(), SLOTS);
        assert_eq!(recs.first().map(|r| r.seq), Some(7));
        assert_eq!(
            recs.last().map(|r| (r.seq, r.time)),
            Some((70, T0 + 69 * DAY))
        );
        assert!(
            recs.iter().all(|r| r.since == T0),
            "the log's start survives the wrap"
        );
        assert!(recs.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn a_non_directory_wear_path_is_an_error_not_followed() {
        let d = TempDir::new("wear-log-sym");
        d.write(".wear", "a file");
        let e = append(d.path(), &LogState::Missing, &rec(T0, 1)).unwrap_err();
        assert_eq!(e.step, "mkdir");
        assert!(
            e.to_string().contains(".wear: mkdir: Not a directory"),
            "{e}"
        );
        std::fs::remove_file(d.path().join(".wear")).unwrap();
        std::fs::create_dir(d.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink("elsewhere", d.path().join(".wear")).unwrap();
        assert_eq!(read_log(d.path()).unwrap_err().step, "open");
        assert_eq!(
            append(d.path(), &LogState::Missing, &rec(T0, 1))
                .unwrap_err()
                .step,
            "mkdir"
        );
        assert!(!d.path().join("elsewhere/log").exists(), "never followed");
        let d = TempDir::new("wear-log-sym2");
        std::fs::create_dir_all(d.path().join(".wear")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join(".wear/log")).unwrap();
        let st = read_log(d.path()).unwrap();
        assert_eq!(
            st,
            LogState::Corrupt(LogCorrupt::NotRegular(walk::Kind::Symlink))
        );
        // Replaced, never written through.
        let before = std::fs::read("/etc/passwd").unwrap();
        append(d.path(), &st, &rec(T0, 1)).unwrap();
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), before);
        assert_eq!(read_log(d.path()).unwrap().records().len(), 1);
    }

    /// A FIFO as the log (or its temp file) must neither block the boot
    /// nor be written into: it is a corrupt log, replaced.
    #[test]
    fn a_fifo_as_the_log_is_refused_without_blocking_and_replaced() {
        let d = TempDir::new("wear-log-fifo");
        std::fs::create_dir_all(d.path().join(".wear")).unwrap();
        for name in [".wear/log", ".wear/log.tmp"] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                d.path().join(name),
                rustix::fs::FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
        }
        let root = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let st = read_log(&root).unwrap();
            let r = append(&root, &st, &rec(T0, 5)).map(|r| r.seq);
            let _ = tx.send((st, r));
        });
        let (st, r) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("must not block");
        assert_eq!(
            st,
            LogState::Corrupt(LogCorrupt::NotRegular(walk::Kind::Fifo))
        );
        assert_eq!(
            st.problem(Path::new("L")).unwrap(),
            "wear log corrupt: L: not a regular file (a FIFO); starting a new one"
        );
        assert_eq!(r.unwrap(), 1);
        assert_eq!(read_log(d.path()).unwrap().records().len(), 1);
        // Too long: corrupt, by its size, however large.
        std::fs::write(log_path(d.path()), vec![0u8; 1 << 20]).unwrap();
        assert_eq!(
            read_log(d.path()).unwrap(),
            LogState::Corrupt(LogCorrupt::Size(1 << 20))
        );
    }

    #[test]
    fn write_gate() {
        let day = Duration::from_secs(DAY);
        assert!(should_write(None, T0, day));
        assert!(!should_write(None, 1000, day), "clock not set (1970)");
        assert!(!should_write(Some(T0), T0 + DAY - 1, day));
        assert!(should_write(Some(T0), T0 + DAY, day));
        assert!(!should_write(Some(T0), T0 - 10, day), "clock went back");
        assert!(!should_write(Some(T0), T0 - 300 * DAY, day));
        assert!(
            should_write(Some(T0 + 400 * DAY), T0, day),
            "a newest record far in the future was a bogus clock"
        );
        let mut n = rec(T0, 1);
        n.boot_id = 7;
        assert!(
            !boot_write_allowed(Some(&n), T0 + 2 * DAY, day, 7),
            "same boot"
        );
        assert!(boot_write_allowed(Some(&n), T0 + 2 * DAY, day, 8));
        assert!(
            !boot_write_allowed(Some(&n), T0 + 3600, day, 8),
            "a boot loop"
        );
        assert!(boot_write_allowed(None, T0, day, 8));
    }

    #[test]
    fn boot_ids() {
        assert_eq!(
            parse_boot_id("6fa4b2c1-9d3e-4b8a-a1f0-2c3d4e5f6a7b\n"),
            Some(0x6fa4_b2c1_9d3e_4b8a)
        );
        assert_eq!(parse_boot_id("6fa4b2c1\n"), None);
        assert_eq!(parse_boot_id("zzzzzzzz-9d3e-4b8a-a1f0-2c3d4e5f6a7b"), None);
        assert_eq!(parse_boot_id(""), None);
    }

    #[test]
    fn a_record_from_readings() {
        use crate::wear::sources::{SourceReading, Value};
        use crate::wear::ubi_ec::EcStats;
        let mut ubi = SourceReading::new("ubi0", Kind::Ubi);
        ubi.figures.push(("max_ec", Value::Num(2000)));
        ubi.figures.push(("bad_peb_count", Value::Num(4)));
        ubi.ec = Some(EcStats {
            valid: 2,
            sum: 3001,
            ..EcStats::default()
        });
        let mut mtd = SourceReading::new("mtd3", Kind::Mtd);
        mtd.figures.push(("type", Value::Text("nand".into())));
        mtd.figures.push(("bad_blocks", Value::Num(9)));
        let mut other = SourceReading::new("ext4:vda3", Kind::Fs);
        other.figures.push(("lifetime_write_kbytes", Value::Num(1)));
        let mut data = SourceReading::new("ext4:vda2", Kind::Fs);
        data.figures.push(("lifetime_write_kbytes", Value::Num(10)));
        let mut emmc = SourceReading::new("mmcblk0", Kind::Emmc);
        emmc.emmc_life = Some((3, 4));
        emmc.pre_eol = Some(2);
        let all = [ubi, mtd.clone(), other, data, emmc];
        let r = WearRecord::from_readings(&all, Some("vda2"), Level::Warn, T0, 5);
        assert_eq!(r.written_bytes, Some(10 * 1024));
        assert_eq!((r.max_ec, r.mean_ec_x100), (Some(2000), Some(150_050)));
        assert_eq!(r.bad_blocks, Some(4), "UBI's count when there is UBI");
        assert_eq!((r.emmc_life, r.pre_eol), (Some((3, 4)), Some(2)));
        assert_eq!((r.level, r.time, r.boot_id), (Level::Warn, T0, 5));
        let r = WearRecord::from_readings(&all[1..], None, Level::Ok, T0, 5);
        assert_eq!(r.written_bytes, Some(1024), "the first filesystem");
        assert_eq!(r.bad_blocks, Some(9), "NAND MTD without UBI");
        assert_eq!(r.max_ec, None);
        let r = WearRecord::from_readings(&[], None, Level::Unknown, T0, 5);
        assert_eq!((r.written_bytes, r.bad_blocks), (None, None));
    }
}
