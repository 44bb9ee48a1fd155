//! Factory reset: wiping the upper layer, safely against power loss.
//!
//! `overlay-reset` (cli.rs) only records the intent: a request record on the
//! data filesystem, outside `upper/`. The next boot's pre-init carries it out
//! (wipe.rs) before the overlay is assembled. The request is kept until the
//! wipe is complete, so a power cut at any instant leaves either the old
//! upper with the request pending, or a state the next boot finishes from.
//!
//! Records (both written atomically: write a temp file, fsync, rename, fsync
//! the directory), in `<data fs>/.reset/`:
//! - `request`: magic `OVRESET1`, seq, the keep patterns; CRC32-checked.
//!   Or, for a per-path revert (`overlay-reset --path`), the patterns of
//!   the paths to remove from the upper, each line prefixed with `-` (a
//!   line a reader without reverts refuses: it then ignores the request).
//! - `done`: magic `OVRDONE1`, the seq of the last completed reset. A request
//!   whose seq is not newer is stale and never acted on: no wipe loops.

pub mod boot;
pub mod cli;
pub mod format;
pub mod wipe;

use crate::fsio::RecordIoError;
use std::fmt;
use std::path::Path;

/// The reset area on the data filesystem, next to `upper/` and `work/`.
pub const RESET_DIR: &str = ".reset";
pub const REQUEST: &str = "request";
pub const DONE: &str = "done";
/// The keep list shipped in (or added to) the root filesystem.
pub const KEEP_FILE: &str = "/etc/overlay-reset.keep";

const REQUEST_MAGIC: &[u8; 8] = b"OVRESET1";
const DONE_MAGIC: &[u8; 8] = b"OVRDONE1";
const HEADER: usize = 8 + 8 + 4 + 4;
/// Keep lists are short; a larger payload is not one of ours. Checked when
/// a request is written ([`Request::encode`]) and when it is read.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The largest request record.
pub const MAX_REQUEST: usize = HEADER + MAX_PAYLOAD;
/// The size of a done record.
pub const DONE_SIZE: usize = HEADER;
/// The largest keep-list file read (`/etc/overlay-reset.keep`, comments
/// included): its patterns always fit in a request.
pub const MAX_KEEP_FILE: usize = MAX_PAYLOAD;
/// The longest keep pattern (PATH_MAX), and of one of its components
/// (NAME_MAX): this bounds the glob's work and the keep walk's depth.
pub const MAX_PATTERN: usize = 4096;
pub const MAX_PATTERN_COMPONENT: usize = crate::walk::NAME_MAX;
/// The most components a keep pattern may have.
pub const MAX_PATTERN_DEPTH: usize = 128;

/// A pending reset: the whole upper less `keep`, or (`revert` not empty)
/// only what `revert` matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub seq: u64,
    /// Absolute path patterns (`*`, `?`, `[..]` within a component).
    pub keep: Vec<String>,
    /// Patterns of the entries to remove from the upper (a per-path
    /// revert: the lowers' versions show again); nothing else is touched.
    pub revert: Vec<String>,
}

/// The prefix of a revert line in a request's payload.
const REVERT_LINE: char = '-';

/// Why a keep pattern is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternError {
    NotAbsolute,
    Control,
    WholeRoot,
    Dots,
    TooLong(usize),
    ComponentTooLong(usize),
    TooDeep(usize),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::NotAbsolute => write!(f, "not an absolute path"),
            PatternError::Control => write!(f, "control characters in the path"),
            PatternError::WholeRoot => write!(f, "the whole root cannot be kept"),
            PatternError::Dots => write!(f, "`.` or `..` in the path"),
            PatternError::TooLong(n) => {
                write!(f, "{n} bytes long, more than {MAX_PATTERN}")
            }
            PatternError::ComponentTooLong(n) => write!(
                f,
                "a component of {n} bytes, more than {MAX_PATTERN_COMPONENT}"
            ),
            PatternError::TooDeep(n) => {
                write!(f, "{n} components, more than {MAX_PATTERN_DEPTH}")
            }
        }
    }
}

/// Why a record cannot be used (or written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    Short(usize),
    Magic,
    Length(u32),
    Checksum {
        stored: u32,
        computed: u32,
    },
    NotUtf8,
    /// Keep pattern number `index` (from 1) is refused.
    Pattern {
        index: usize,
        why: PatternError,
    },
    /// Both a keep list and paths to revert.
    Mixed,
    /// The keep list does not fit in a record.
    TooLarge {
        size: usize,
    },
    /// The record would not read back as it was meant (never seen: a
    /// last check before writing).
    RoundTrip,
    /// The file is not a record file (not regular, too large, unreadable).
    File(RecordIoError),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short(n) => write!(f, "{n} bytes, shorter than a record"),
            RecordError::Magic => write!(f, "not a reset record of a known version"),
            RecordError::Length(n) => write!(f, "payload length {n} does not match the file"),
            RecordError::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
                )
            }
            RecordError::NotUtf8 => write!(f, "bad keep list: not UTF-8"),
            RecordError::Pattern { index, why } => {
                write!(f, "bad keep list: pattern {index}: {why}")
            }
            RecordError::Mixed => write!(f, "both a keep list and paths to revert"),
            RecordError::TooLarge { size } => write!(
                f,
                "the keep list takes {size} bytes; a reset request holds at most {MAX_PAYLOAD}"
            ),
            RecordError::RoundTrip => write!(f, "the record would not read back as written"),
            RecordError::File(e) => write!(f, "{e}"),
        }
    }
}

fn encode(magic: &[u8; 8], seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.extend_from_slice(magic);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(payload);
    let crc = crate::crc32::hash(&v);
    if let Some(c) = v.get_mut(20..24) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
    v
}

fn decode<'a>(magic: &[u8; 8], b: &'a [u8]) -> Result<(u64, &'a [u8]), RecordError> {
    let field = |r: std::ops::Range<usize>| b.get(r).ok_or(RecordError::Short(b.len()));
    if b.len() < HEADER {
        return Err(RecordError::Short(b.len()));
    }
    if field(0..8)? != magic {
        return Err(RecordError::Magic);
    }
    let seq = u64::from_le_bytes(
        field(8..16)?
            .try_into()
            .map_err(|_| RecordError::Short(b.len()))?,
    );
    let len = u32::from_le_bytes(
        field(16..20)?
            .try_into()
            .map_err(|_| RecordError::Short(b.len()))?,
    );
    let stored = u32::from_le_bytes(
        field(20..24)?
            .try_into()
            .map_err(|_| RecordError::Short(b.len()))?,
    );
    if len as usize > MAX_PAYLOAD || HEADER + len as usize != b.len() {
        return Err(RecordError::Length(len));
    }
    let mut h = crate::crc32::Hasher::new();
    h.update(field(0..20)?);
    h.update(&[0; 4]);
    h.update(field(HEADER..b.len())?);
    let computed = h.finalize();
    if computed != stored {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok((seq, field(HEADER..b.len())?))
}

impl Request {
    /// The record, or why the next boot would refuse it: anything
    /// [`Request::decode`] refuses is refused here, before it is written.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if !self.keep.is_empty() && !self.revert.is_empty() {
            return Err(RecordError::Mixed);
        }
        for (i, k) in self.keep.iter().chain(&self.revert).enumerate() {
            validate_pattern(k).map_err(|why| RecordError::Pattern { index: i + 1, why })?;
        }
        let mut payload = self.keep.join("\n");
        for r in &self.revert {
            if !payload.is_empty() {
                payload.push('\n');
            }
            payload.push(REVERT_LINE);
            payload.push_str(r);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(RecordError::TooLarge {
                size: payload.len(),
            });
        }
        let bytes = encode(REQUEST_MAGIC, self.seq, payload.as_bytes());
        // What is written is what the reader will read.
        match Request::decode(&bytes) {
            Ok(r) if r == *self => Ok(bytes),
            Ok(_) => Err(RecordError::RoundTrip),
            Err(e) => Err(e),
        }
    }

    pub fn decode(b: &[u8]) -> Result<Request, RecordError> {
        let (seq, payload) = decode(REQUEST_MAGIC, b)?;
        let text = std::str::from_utf8(payload).map_err(|_| RecordError::NotUtf8)?;
        let (mut keep, mut revert) = (Vec::new(), Vec::new());
        for (i, l) in text.split('\n').filter(|l| !l.is_empty()).enumerate() {
            let (list, p) = match l.strip_prefix(REVERT_LINE) {
                Some(p) => (&mut revert, p),
                None => (&mut keep, l),
            };
            validate_pattern(p).map_err(|why| RecordError::Pattern { index: i + 1, why })?;
            list.push(p.to_string());
        }
        if !keep.is_empty() && !revert.is_empty() {
            return Err(RecordError::Mixed);
        }
        Ok(Request { seq, keep, revert })
    }
}

pub fn encode_done(seq: u64) -> Vec<u8> {
    encode(DONE_MAGIC, seq, &[])
}

pub fn decode_done(b: &[u8]) -> Result<u64, RecordError> {
    decode(DONE_MAGIC, b).map(|(seq, _)| seq)
}

/// Checks a keep pattern: absolute, normal components, no `..`, bounded.
pub fn validate_pattern(p: &str) -> Result<(), PatternError> {
    if !p.starts_with('/') {
        return Err(PatternError::NotAbsolute);
    }
    if p.len() > MAX_PATTERN {
        return Err(PatternError::TooLong(p.len()));
    }
    if p.chars().any(char::is_control) {
        return Err(PatternError::Control);
    }
    let mut n = 0;
    for c in components(p) {
        n += 1;
        if c == ".." || c == "." {
            return Err(PatternError::Dots);
        }
        if c.len() > MAX_PATTERN_COMPONENT {
            return Err(PatternError::ComponentTooLong(c.len()));
        }
    }
    match n {
        0 => Err(PatternError::WholeRoot),
        n if n > MAX_PATTERN_DEPTH => Err(PatternError::TooDeep(n)),
        _ => Ok(()),
    }
}

/// The non-empty components of an absolute path.
pub fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

/// A refused line of a keep-list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepLineError {
    pub line: usize,
    pub text: String,
    pub why: PatternError,
}

impl fmt::Display for KeepLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.text, self.why)
    }
}

/// Parses a keep-list file: one path or glob a line, `#` comments, blanks
/// ignored. Each line is a valid pattern, or the line's error.
pub fn parse_keep_lines(text: &str) -> impl Iterator<Item = Result<String, KeepLineError>> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        Some(match validate_pattern(l) {
            Ok(()) => Ok(l.to_string()),
            Err(why) => Err(KeepLineError {
                line: i + 1,
                text: crate::walk::escape(l.as_bytes(), 120),
                why,
            }),
        })
    })
}

/// [`parse_keep_lines`], refusing the file at its first bad line.
pub fn parse_keep_file(text: &str) -> Result<Vec<String>, KeepLineError> {
    parse_keep_lines(text).collect()
}

/// A keep list as the boot reads it ([`read_keep_list`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeepList {
    pub patterns: Vec<String>,
    /// What was not kept, and why (for the console and overlay-status).
    pub warnings: Vec<KeepWarning>,
}

/// Why (part of) the keep list is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepWarning {
    Unreadable(RecordIoError),
    NotUtf8,
    Line(KeepLineError),
}

impl fmt::Display for KeepWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepWarning::Unreadable(e) => write!(f, "{KEEP_FILE}: {e}; nothing is kept"),
            KeepWarning::NotUtf8 => write!(f, "{KEEP_FILE}: not UTF-8; nothing is kept"),
            KeepWarning::Line(e) => write!(f, "{KEEP_FILE}: {e}; not kept"),
        }
    }
}

/// The keep list for a reset the boot starts itself (`overlay.reset=1`):
/// the root's `/etc/overlay-reset.keep` as the booted system would see it,
/// the upper's copy (resolved inside `upper`), else the lower's (inside
/// `rom`). A whiteout (the user deleted it) means no keep list. The file
/// is read like a record (regular file only, never blocking, at most
/// [`MAX_KEEP_FILE`] bytes); what cannot be used is said, never fatal:
/// the reset goes on, keeping what can be kept (a bootloader's reset is
/// the way out of a broken system: a broken keep file must not block it).
pub fn read_keep_list(upper: &Path, rom: &Path) -> KeepList {
    use crate::walk::Kind;
    let mut out = KeepList::default();
    let text = match crate::fsio::read_in_root(upper, KEEP_FILE, MAX_KEEP_FILE) {
        Ok(Some(b)) => Some(b),
        Ok(None) => match crate::fsio::read_in_root(rom, KEEP_FILE, MAX_KEEP_FILE) {
            Ok(b) => b,
            Err(e) => {
                out.warnings.push(KeepWarning::Unreadable(e));
                None
            }
        },
        // A whiteout: deleted by the user.
        Err(RecordIoError::NotRegular(Kind::CharDev)) => None,
        Err(e) => {
            out.warnings.push(KeepWarning::Unreadable(e));
            None
        }
    };
    let Some(text) = text else {
        return out;
    };
    let Ok(text) = std::str::from_utf8(&text) else {
        out.warnings.push(KeepWarning::NotUtf8);
        return out;
    };
    // The patterns fit in a request: they are at most the file's bytes.
    for line in parse_keep_lines(text) {
        match line {
            Ok(p) => out.patterns.push(p),
            Err(e) => out.warnings.push(KeepWarning::Line(e)),
        }
    }
    out
}

/// fnmatch(3) for one path component, on bytes: `*`, `?`, `[abc]`,
/// `[a-z]`, `[!x]` (`[^x]`); a `[` without its `]` is literal. Linear in
/// practice and O(pattern × name) at worst (one backtrack point: the last
/// `*`), so no pattern makes it exponential.
pub fn glob_component(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // After the last `*`: where the pattern resumes, and the name position
    // that `*` has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pat.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, n));
                continue;
            }
            Some(_) => {
                if let Some(&c) = name.get(n) {
                    if let Some(used) = match_one(pat, p, c) {
                        p += used;
                        n += 1;
                        continue;
                    }
                }
            }
            None if n == name.len() => return true,
            None => {}
        }
        // Mismatch: let the last `*` swallow one more byte, if any is left.
        match star {
            Some((sp, sn)) if sn < name.len() => {
                star = Some((sp, sn + 1));
                p = sp;
                n = sn + 1;
            }
            _ => return false,
        }
    }
}

/// Whether the pattern element at `pat[p]` (not `*`) matches byte `c`:
/// the number of pattern bytes it takes, or `None`.
fn match_one(pat: &[u8], p: usize, c: u8) -> Option<usize> {
    let rest = pat.get(p..)?;
    match rest.first()? {
        b'?' => Some(1),
        b'[' => {
            // The class ends at the first `]` after its first member.
            let Some(end) = rest.iter().skip(2).position(|&b| b == b']').map(|i| i + 2) else {
                return (c == b'[').then_some(1);
            };
            let class = rest.get(1..end)?;
            let (negate, class) = match class.first() {
                Some(b'!' | b'^') => (true, class.get(1..).unwrap_or(&[])),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while let Some(&a) = class.get(i) {
                if class.get(i + 1) == Some(&b'-') && class.get(i + 2).is_some() {
                    let b = class.get(i + 2).copied().unwrap_or(a);
                    hit |= a <= c && c <= b;
                    i += 3;
                } else {
                    hit |= a == c;
                    i += 1;
                }
            }
            (hit != negate).then_some(end + 1)
        }
        &l => (l == c).then_some(1),
    }
}

/// Keep patterns, matched against paths of the upper (relative to its
/// root, components joined by `/`, as bytes: names need not be UTF-8).
pub struct KeepSet(Vec<Vec<Box<[u8]>>>);

impl KeepSet {
    pub fn new(patterns: &[String]) -> KeepSet {
        KeepSet(
            patterns
                .iter()
                .map(|p| components(p).map(|c| Box::from(c.as_bytes())).collect())
                .collect(),
        )
    }

    /// Whether the first components of `path` match all of `pat`'s, and
    /// how many components `path` has.
    fn prefix(pat: &[Box<[u8]>], path: &[u8]) -> (bool, usize) {
        let mut n = 0;
        let mut ok = true;
        for comp in path.split(|&b| b == b'/') {
            match pat.get(n) {
                Some(p) => ok &= glob_component(p, comp),
                None => ok = false,
            }
            n += 1;
        }
        (ok, n)
    }

    /// `path` itself is kept (with everything below it).
    pub fn keeps(&self, path: &[u8]) -> bool {
        self.0.iter().any(|p| {
            let (ok, n) = KeepSet::prefix(p, path);
            ok && n == p.len()
        })
    }

    /// `path` is kept, or lies below a kept path.
    pub fn covers(&self, path: &[u8]) -> bool {
        self.0.iter().any(|p| {
            let mut comps = path.split(|&b| b == b'/');
            p.iter()
                .all(|pc| comps.next().is_some_and(|c| glob_component(pc, c)))
        })
    }

    /// Something below directory `path` may be kept: worth descending into.
    pub fn may_keep_below(&self, path: &[u8]) -> bool {
        self.0.iter().any(|p| {
            let (ok, n) = KeepSet::prefix(p, path);
            ok && n < p.len()
        })
    }

    /// The most components of a pattern: no keep walk goes deeper.
    pub fn depth(&self) -> usize {
        self.0.iter().map(Vec::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = Request {
            seq: 7,
            keep: vec!["/etc/config/network".into(), "/etc/dropbear/*".into()],
            ..Default::default()
        };
        assert_eq!(Request::decode(&r.encode().unwrap()), Ok(r));
        let empty = Request {
            seq: 1,
            keep: vec![],
            ..Default::default()
        };
        assert_eq!(Request::decode(&empty.encode().unwrap()), Ok(empty));
        assert_eq!(decode_done(&encode_done(42)), Ok(42));
        let revert = Request {
            seq: 8,
            revert: vec!["/etc/config/system".into(), "/etc/init.d/*".into()],
            ..Default::default()
        };
        let b = revert.encode().unwrap();
        assert!(b.ends_with(b"-/etc/config/system\n-/etc/init.d/*"));
        assert_eq!(Request::decode(&b), Ok(revert));
    }

    /// A request both keeps and reverts: refused when written and read; a
    /// revert line with a bad pattern is refused like a keep line.
    #[test]
    fn revert_requests_are_checked_like_keep_lists() {
        let mixed = Request {
            seq: 1,
            keep: vec!["/a".into()],
            revert: vec!["/b".into()],
        };
        assert_eq!(mixed.encode(), Err(RecordError::Mixed));
        assert_eq!(
            Request::decode(&encode(REQUEST_MAGIC, 1, b"/a\n-/b")),
            Err(RecordError::Mixed)
        );
        for bad in ["-relative", "-/a/../b", "-/", "--/a"] {
            assert!(
                matches!(
                    Request::decode(&encode(REQUEST_MAGIC, 1, bad.as_bytes())),
                    Err(RecordError::Pattern { index: 1, .. })
                ),
                "{bad}"
            );
        }
        let r = Request {
            seq: 1,
            revert: vec!["relative".into()],
            ..Default::default()
        };
        assert!(r.encode().is_err());
    }

    #[test]
    fn corrupt_records_are_refused_never_half_read() {
        let good = Request {
            seq: 3,
            keep: vec!["/etc/x".into()],
            ..Default::default()
        }
        .encode()
        .unwrap();
        for cut in 0..good.len() {
            assert!(Request::decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Request::decode(&b).is_err(), "bit {bit} flipped");
        }
        assert_eq!(
            Request::decode(b"garbage garbage garbage!!"),
            Err(RecordError::Magic)
        );
        assert!(
            matches!(Request::decode(&encode_done(3)), Err(RecordError::Magic)),
            "a done record is not a request"
        );
        let bad_payload = encode(REQUEST_MAGIC, 1, b"relative/path");
        assert_eq!(
            Request::decode(&bad_payload),
            Err(RecordError::Pattern {
                index: 1,
                why: PatternError::NotAbsolute
            })
        );
    }

    #[test]
    fn patterns_are_validated() {
        assert_eq!(validate_pattern("/etc/config"), Ok(()));
        assert!(validate_pattern("etc/config").is_err());
        assert!(validate_pattern("/etc/../root").is_err());
        assert!(validate_pattern("/").is_err());
        assert!(validate_pattern("/etc/./x").is_err());
        assert_eq!(
            parse_keep_file("# keep\n\n/etc/config/*\n  /root/.ssh \n"),
            Ok(vec!["/etc/config/*".into(), "/root/.ssh".into()])
        );
        assert_eq!(
            parse_keep_file("/ok\nbad\n").unwrap_err().to_string(),
            "line 2: bad: not an absolute path"
        );
    }

    #[test]
    fn globs() {
        let g = |p: &str, n: &str| glob_component(p.as_bytes(), n.as_bytes());
        assert!(g("*", "anything"));
        assert!(g("*.conf", "a.conf"));
        assert!(!g("*.conf", "a.conf.bak"));
        assert!(g("ssh_host_*_key", "ssh_host_ed25519_key"));
        assert!(g("?.txt", "a.txt"));
        assert!(!g("?.txt", "ab.txt"));
        assert!(g("[abc]x", "bx"));
        assert!(!g("[!abc]x", "bx"));
        assert!(g("[a-c]", "b"));
        assert!(g("[", "["));
        assert!(g("*", ".hidden"), "hidden files are matched like any other");
    }

    #[test]
    fn keep_set() {
        let k = KeepSet::new(&["/etc/config/network".into(), "/etc/dropbear/*".into()]);
        assert!(k.keeps(b"etc/config/network"));
        assert!(k.keeps(b"etc/dropbear/key"));
        assert!(k.keeps(b"etc/dropbear/caf\xe9"), "names are bytes");
        assert!(!k.keeps(b"etc/config"));
        assert!(!k.keeps(b"etc/config/network/below"));
        assert!(k.may_keep_below(b"etc"));
        assert!(k.may_keep_below(b"etc/config"));
        assert!(!k.may_keep_below(b"root"));
        assert!(!k.may_keep_below(b"etc/config/network"));
        assert!(k.covers(b"etc/config/network"));
        assert!(k.covers(b"etc/config/network/below/deeper"));
        assert!(k.covers(b"etc/dropbear/key/x"));
        assert!(!k.covers(b"etc/config"));
        assert!(!k.covers(b"etc/config/networks/x"));
        assert_eq!(k.depth(), 3);
    }

    /// Issue 11, defect 4: a 72 KB keep list was written, and refused by
    /// the next boot. Now it is refused when written.
    #[test]
    fn a_request_the_reader_would_refuse_is_never_written() {
        let keep: Vec<String> = (0..1250)
            .map(|i| format!("/etc/keep/a-rather-long-file-name-to-keep-number-{i}-pad"))
            .collect();
        let big = Request {
            seq: 1,
            keep,
            ..Default::default()
        };
        let e = big.encode().unwrap_err();
        assert!(matches!(e, RecordError::TooLarge { size } if size > 70_000));
        assert!(e.to_string().contains("at most 65536"), "{e}");
        // Exactly at the limit: written and read back.
        let mut keep = vec![format!("/{}", "x".repeat(199)); 326];
        let used = keep.join("\n").len();
        keep.push(format!("/{}", "y".repeat(MAX_PAYLOAD - used - 2)));
        let max = Request {
            seq: 2,
            keep,
            ..Default::default()
        };
        let b = max.encode().unwrap();
        assert_eq!(b.len(), MAX_REQUEST);
        assert_eq!(Request::decode(&b), Ok(max.clone()));
        let mut over = max;
        if let Some(last) = over.keep.last_mut() {
            last.push('z');
        }
        assert!(matches!(
            over.encode(),
            Err(RecordError::TooLarge { size: 65537 })
        ));
        // Patterns the reader refuses.
        for bad in ["relative", "/a/../b", "/a\nb", "/", "/a\rb"] {
            let r = Request {
                seq: 1,
                keep: vec!["/ok".into(), bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(r.encode(), Err(RecordError::Pattern { index: 2, .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pattern_bounds() {
        let long = format!("/{}", "a/".repeat(2048));
        assert_eq!(validate_pattern(&long), Err(PatternError::TooLong(4097)));
        let comp = format!("/{}", "c".repeat(256));
        assert_eq!(
            validate_pattern(&comp),
            Err(PatternError::ComponentTooLong(256))
        );
        let deep = "/d".repeat(129);
        assert_eq!(validate_pattern(&deep), Err(PatternError::TooDeep(129)));
        assert_eq!(validate_pattern(&"/d".repeat(128)), Ok(()));
        assert_eq!(validate_pattern(&format!("/{}", "c".repeat(255))), Ok(()));
    }

    /// The old recursive fnmatch, as a reference on small inputs.
    fn reference(pat: &[u8], name: &[u8]) -> bool {
        match (pat.first(), name.first()) {
            (None, None) => true,
            (Some(b'*'), _) => (0..=name.len()).any(|i| reference(&pat[1..], &name[i..])),
            (Some(_), Some(&c)) => match match_one(pat, 0, c) {
                Some(used) => reference(&pat[used..], &name[1..]),
                None => false,
            },
            _ => false,
        }
    }

    #[test]
    fn the_glob_agrees_with_the_recursive_definition() {
        let alphabet: &[u8] = b"ab*?[]!-";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let plen = (next() % 8) as usize;
            let nlen = (next() % 8) as usize;
            let pat: Vec<u8> = (0..plen).map(|_| alphabet[(next() % 8) as usize]).collect();
            let name: Vec<u8> = (0..nlen)
                .map(|_| b"ab[]!-"[(next() % 6) as usize])
                .collect();
            assert_eq!(
                glob_component(&pat, &name),
                reference(&pat, &name),
                "{:?} vs {:?}",
                String::from_utf8_lossy(&pat),
                String::from_utf8_lossy(&name)
            );
        }
    }

    /// Issue 11, defect 5: `*a*a*a…b` against a long name took 5.7 s with
    /// 10 stars in the pre-init (exponential). Now the worst patterns a
    /// keep list may hold take well under a millisecond each.
    #[test]
    fn adversarial_globs_finish_in_milliseconds() {
        let name = vec![b'a'; 255];
        let t = std::time::Instant::now();
        for stars in [10, 12, 50, 127] {
            let pat = format!("{}b", "*a".repeat(stars));
            assert!(!glob_component(pat.as_bytes(), &name));
            let pat = format!("{}a", "*a".repeat(stars));
            assert!(glob_component(pat.as_bytes(), &name));
        }
        let pat = format!("{}[!a]", "*?".repeat(127));
        assert!(!glob_component(pat.as_bytes(), &name));
        let e = t.elapsed();
        assert!(e < std::time::Duration::from_millis(100), "{e:?}");
        eprintln!("9 adversarial matches against a 255-byte name: {e:?}");
    }

    #[test]
    fn the_boots_keep_list_never_blocks_and_says_what_it_skips() {
        use crate::testutil::TempDir;
        let d = TempDir::new("keep-list");
        let (upper, rom) = (d.path().join("upper"), d.path().join("rom"));
        d.write("rom/etc/overlay-reset.keep", "/etc/from-rom\n");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        // Absent from the upper: the lower's.
        assert_eq!(read_keep_list(&upper, &rom).patterns, ["/etc/from-rom"]);
        // The upper's, bad lines said and skipped.
        d.write(
            "upper/etc/overlay-reset.keep",
            "# c\n/etc/a\nrelative\n/etc/b/*\n",
        );
        let l = read_keep_list(&upper, &rom);
        assert_eq!(l.patterns, ["/etc/a", "/etc/b/*"]);
        assert_eq!(
            l.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["/etc/overlay-reset.keep: line 3: relative: not an absolute path; not kept"]
        );
        // A symlink resolves inside the root, never outside it.
        d.write("outside/keep", "/etc/outside\n");
        std::fs::remove_file(upper.join("etc/overlay-reset.keep")).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("outside/keep"),
            upper.join("etc/overlay-reset.keep"),
        )
        .unwrap();
        assert_eq!(read_keep_list(&upper, &rom).patterns, ["/etc/from-rom"]);
        std::fs::remove_file(upper.join("etc/overlay-reset.keep")).unwrap();
        // A whiteout: deleted by the user, nothing kept, nothing to say.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/overlay-reset.keep"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        assert_eq!(read_keep_list(&upper, &rom), KeepList::default());
        std::fs::remove_file(upper.join("etc/overlay-reset.keep")).unwrap();
        // A FIFO (defect 6: it hung PID 1): said, nothing kept, no wait.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/overlay-reset.keep"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let t = std::time::Instant::now();
        let l = read_keep_list(&upper, &rom);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(l.patterns.is_empty());
        assert_eq!(
            l.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["/etc/overlay-reset.keep: not a regular file (a FIFO); nothing is kept"]
        );
        std::fs::remove_file(upper.join("etc/overlay-reset.keep")).unwrap();
        // Too large: said, nothing kept.
        d.write("upper/etc/overlay-reset.keep", "/etc/x\n".repeat(10_000));
        let l = read_keep_list(&upper, &rom);
        assert!(l.patterns.is_empty());
        assert!(matches!(
            l.warnings[..],
            [KeepWarning::Unreadable(RecordIoError::TooLarge {
                size: 70_000,
                ..
            })]
        ));
    }
}
