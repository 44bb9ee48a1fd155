//! Firmware upgrades: the upper follows the new image.
//!
//! Replacing the read-only image leaves the upper full of copies of the old
//! image's files, which then hide the new image's versions forever. At the
//! first boot with a new image, before the overlay exists, every entry of
//! the upper is classified against the old image's manifest and the new
//! image (classify.rs): a copy equal to the old version is *removed* (the
//! new version shows), a user change the new image did not touch is *kept*,
//! one it did touch is a *conflict* (kept, reported; the new version is in
//! the lower, e.g. at `/rom/PATH`).
//!
//! The pieces, in the order a boot uses them:
//! - identity.rs: a cheap identity of each lower, read at every boot
//!   (superblock + the shipped manifest's header, or + the squashfs
//!   metadata tables when no manifest ships); compared with the one
//!   recorded on the data filesystem. Equal: nothing is written.
//! - manifest.rs: path → type, mode, owner, size, CRC32 of the contents,
//!   symlink target. Shipped in the image at [`SHIPPED`] (written by
//!   `overlay-init manifest ROOTDIR` at firmware build time) or computed
//!   on the device in the background, once per image.
//! - record.rs: the records under `.upgrade/` on the data filesystem
//!   (outside `upper/`): `state` (the identities the upper follows),
//!   `manifest.N` (the manifest of lower N), `pending` (an upgrade under
//!   way) and `last` (the report of the last upgrade).
//! - merge.rs: [`merge::decide`] (pure: facts → decision) and the
//!   executor steps ([`merge::run`], [`merge::background`]).
//! - report.rs: `overlay-status --upgrade`, its JSON member, and
//!   `overlay-status --changes`.
//!
//! Every record is framed the same way ([`frame`]): an 8-byte magic (its
//! last character is the version), the payload length, the CRC32 of the
//! payload. A record that does not check out is reported and ignored,
//! never half-read; with no usable old manifest the merge keeps everything.

pub mod classify;
pub mod identity;
pub mod manifest;
pub mod merge;
pub mod record;
pub mod report;
pub(crate) mod scan;

use std::fmt::{self, Write as _};
use std::io;
use std::path::PathBuf;

/// The upgrade area on the data filesystem, next to `upper/` and `work/`.
pub const DIR: &str = ".upgrade";
/// Where an image ships its manifest, relative to its root: in `/etc`,
/// which no image makes a symlink, next to the board file.
pub const SHIPPED: &str = "etc/overlay-init.manifest";

/// `overlay.upgrade=`: what the first boot of a new image does to the upper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Classify; remove the unchanged copies of the old image's files.
    #[default]
    Merge,
    /// Classify and report only; remove nothing.
    Keep,
    /// A factory reset with the keep list.
    Reset,
}

impl Policy {
    /// The value of `overlay.upgrade=`.
    pub fn parse(v: &str) -> Result<Policy, &'static str> {
        match v {
            "merge" => Ok(Policy::Merge),
            "keep" => Ok(Policy::Keep),
            "reset" => Ok(Policy::Reset),
            _ => Err("unknown policy (use merge, keep or reset)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Merge => "merge",
            Policy::Keep => "keep",
            Policy::Reset => "reset",
        }
    }

    fn code(self) -> u64 {
        match self {
            Policy::Merge => 0,
            Policy::Keep => 1,
            Policy::Reset => 2,
        }
    }

    fn from_code(c: u64) -> Result<Policy, RecordError> {
        match c {
            0 => Ok(Policy::Merge),
            1 => Ok(Policy::Keep),
            2 => Ok(Policy::Reset),
            _ => Err(RecordError::Field),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record (or a shipped manifest) cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its header.
    Short(usize),
    /// Not this kind of record, or a version this build does not know.
    Magic,
    /// The length field disagrees with the file, or exceeds the bound.
    Length(u32),
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// The payload ends in the middle of a field.
    Truncated,
    /// A field holds a value out of its range.
    Field,
    /// Bytes after the last field.
    Trailing,
    /// Manifest entries out of order, repeated, or a path that is not a
    /// relative path of normal components.
    Order,
    /// More entries than the bound.
    TooMany(u64),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short(n) => write!(f, "{n} bytes, shorter than a record"),
            RecordError::Magic => f.write_str("not a record of a known kind and version"),
            RecordError::Length(n) => write!(f, "payload length {n} does not match the file"),
            RecordError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            RecordError::Truncated => f.write_str("a field runs past the end"),
            RecordError::Field => f.write_str("a field is out of range"),
            RecordError::Trailing => f.write_str("bytes after the last field"),
            RecordError::Order => f.write_str("paths out of order or malformed"),
            RecordError::TooMany(n) => write!(f, "{n} entries, more than allowed"),
        }
    }
}

/// What failed in this module: one variant per kind of step, with what it
/// acted on and the OS error.
#[derive(Debug)]
pub enum Error {
    /// Reading a lower's device (identity, image check).
    Device { path: PathBuf, err: io::Error },
    /// A lower's superblock that contradicts itself or its device.
    Superblock { path: PathBuf, why: &'static str },
    /// A step on a file or directory of the data filesystem, the upper or a
    /// lower; `path` as shown to people.
    Io {
        step: Step,
        path: String,
        err: io::Error,
    },
    /// A bound of a walk or a manifest was reached.
    Limit { what: &'static str, max: u64 },
    /// A record that does not check out (reported and ignored by callers
    /// that can go on without it).
    Record { name: String, err: RecordError },
}

/// The step an [`Error::Io`] happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Open,
    Read,
    Write,
    Walk,
    Rename,
    SetMeta,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Device { path, err } => write!(f, "cannot read {}: {err}", path.display()),
            Error::Superblock { path, why } => write!(f, "{}: {why}", path.display()),
            Error::Io { step, path, err } => {
                let verb = match step {
                    Step::Open => "open",
                    Step::Read => "read",
                    Step::Write => "write",
                    Step::Walk => "walk",
                    Step::Rename => "move",
                    Step::SetMeta => "set the mode and owner of",
                };
                write!(f, "cannot {verb} {path}: {err}")
            }
            Error::Limit { what, max } => write!(f, "more than {max} {what}"),
            Error::Record { name, err } => write!(f, "{name} is unusable: {err}"),
        }
    }
}

/// Magic, payload length, payload CRC32.
pub const FRAME: usize = 16;

/// `magic`, the payload's length and CRC32 (little-endian), the payload.
pub fn frame(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(FRAME + payload.len());
    v.extend_from_slice(magic);
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    v.extend_from_slice(&crate::crc32::hash(payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The length and CRC a frame header announces, unchecked (the header of a
/// shipped manifest is its fingerprint: identity.rs).
pub fn frame_header(magic: &[u8; 8], head: &[u8]) -> Result<(u32, u32), RecordError> {
    let h = head.get(..FRAME).ok_or(RecordError::Short(head.len()))?;
    let (m, rest) = h.split_at(8);
    if m != magic {
        return Err(RecordError::Magic);
    }
    let word = |i: usize| {
        rest.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    Ok((word(0), word(4)))
}

/// The payload of a frame, checked: magic, length, CRC.
pub fn unframe<'a>(magic: &[u8; 8], b: &'a [u8]) -> Result<&'a [u8], RecordError> {
    let (len, stored) = frame_header(magic, b)?;
    let payload = b.get(FRAME..).unwrap_or(&[]);
    if payload.len() != len as usize {
        return Err(RecordError::Length(len));
    }
    let computed = crate::crc32::hash(payload);
    if computed != stored {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(payload)
}

/// Encoder of record payloads: little-endian base-128 varints and
/// length-prefixed byte strings.
#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn b(&mut self, b: &[u8]) {
        self.u(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Decoder of what [`Enc`] writes; every read is bounded by the input.
pub struct Dec<'a>(pub &'a [u8]);

impl<'a> Dec<'a> {
    pub fn u(&mut self) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(RecordError::Truncated)?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::Field)
    }

    pub fn u32(&mut self) -> Result<u32, RecordError> {
        u32::try_from(self.u()?).map_err(|_| RecordError::Field)
    }

    /// Four bytes, little-endian.
    pub fn fixed32(&mut self) -> Result<u32, RecordError> {
        let (h, t) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(RecordError::Truncated)?;
        self.0 = t;
        Ok(u32::from_le_bytes(*h))
    }

    pub fn b(&mut self) -> Result<&'a [u8], RecordError> {
        let n = usize::try_from(self.u()?).map_err(|_| RecordError::Truncated)?;
        if n > self.0.len() {
            return Err(RecordError::Truncated);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }

    pub fn end(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing)
        }
    }
}

/// A path of the upper or a manifest (bytes, relative) as shown to people:
/// `/` first, and every byte that is not printable ASCII (a newline in a
/// file name, invalid UTF-8) and the backslash as `\xNN`, so that one
/// path stays one line whatever its name.
pub fn show_path(p: &[u8]) -> String {
    let mut s = String::with_capacity(p.len() + 1);
    s.push('/');
    for &c in p {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since 1970, without a date crate
/// and in unsigned arithmetic (Howard Hinnant's days-to-civil, from
/// 0000-03-01).
#[inline(never)]
pub fn show_time(secs: u64) -> String {
    // Days and the time of day fit 32 bits until the year 11 million:
    // 32-bit arithmetic is much smaller code on 32-bit ARM.
    let z = u32::try_from(secs / 86_400).unwrap_or(u32::MAX - 719_468) + 719_468;
    let t = (secs % 86_400) as u32;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + z / 146_097 * 400 + u32::from(m <= 2);
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_values() {
        assert_eq!(Policy::parse("merge"), Ok(Policy::Merge));
        assert_eq!(Policy::parse("keep"), Ok(Policy::Keep));
        assert_eq!(Policy::parse("reset"), Ok(Policy::Reset));
        assert!(Policy::parse("Merge").is_err());
        assert!(Policy::parse("").is_err());
        assert_eq!(Policy::default(), Policy::Merge);
        for p in [Policy::Merge, Policy::Keep, Policy::Reset] {
            assert_eq!(Policy::parse(&p.to_string()), Ok(p));
            assert_eq!(Policy::from_code(p.code()), Ok(p));
        }
        assert_eq!(Policy::from_code(3), Err(RecordError::Field));
    }

    #[test]
    fn varints_and_strings_round_trip() {
        let mut e = Enc::default();
        let nums = [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        for n in nums {
            e.u(n);
        }
        e.b(b"path/with\nnewline");
        e.b(b"");
        let mut d = Dec(&e.0);
        for n in nums {
            assert_eq!(d.u().unwrap(), n);
        }
        assert_eq!(d.b().unwrap(), b"path/with\nnewline");
        assert_eq!(d.b().unwrap(), b"");
        d.end().unwrap();
        // Every truncation is an error, never a short read.
        for cut in 0..e.0.len() {
            let mut d = Dec(&e.0[..cut]);
            let r = (|| {
                for _ in nums {
                    d.u()?;
                }
                d.b()?;
                d.b()
            })();
            assert!(r.is_err(), "cut at {cut}");
        }
        assert_eq!(Dec(&[0xff; 11]).u(), Err(RecordError::Field));
        assert_eq!(Dec(&[5, 1]).b(), Err(RecordError::Truncated));
        assert_eq!(
            Dec(&[0x80, 0x80, 0x80, 0x80, 0x10]).u32(),
            Err(RecordError::Field)
        );
        assert_eq!(Dec(&[1]).end(), Err(RecordError::Trailing));
    }

    #[test]
    fn frames_refuse_every_damage() {
        let f = frame(b"OVTEST01", b"some payload");
        assert_eq!(unframe(b"OVTEST01", &f).unwrap(), b"some payload");
        assert_eq!(unframe(b"OVTEST02", &f), Err(RecordError::Magic));
        for cut in 0..f.len() {
            assert!(unframe(b"OVTEST01", &f[..cut]).is_err(), "cut {cut}");
        }
        for bit in 0..f.len() * 8 {
            let mut b = f.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(unframe(b"OVTEST01", &b).is_err(), "bit {bit}");
        }
        let mut long = f.clone();
        long.push(0);
        assert_eq!(unframe(b"OVTEST01", &long), Err(RecordError::Length(12)));
        assert_eq!(frame_header(b"OVTEST01", &f).unwrap().0, 12);
    }

    #[test]
    fn paths_are_shown_on_one_line() {
        assert_eq!(show_path(b"etc/config/network"), "/etc/config/network");
        assert_eq!(show_path(b"a\nb\\c\xff"), "/a\\x0ab\\x5cc\\xff");
        assert_eq!(show_path(b""), "/");
    }

    #[test]
    fn dates() {
        assert_eq!(show_time(0), "1970-01-01 00:00:00");
        assert_eq!(show_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(show_time(1_733_011_199), "2024-11-30 23:59:59");
        assert_eq!(show_time(4_107_542_400), "2100-03-01 00:00:00");
    }
}
