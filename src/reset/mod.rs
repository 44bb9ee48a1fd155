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
//! - `done`: magic `OVRDONE1`, the seq of the last completed reset. A request
//!   whose seq is not newer is stale and never acted on: no wipe loops.

pub mod boot;
pub mod cli;
pub mod format;
pub mod wipe;

use std::fmt;

/// The reset area on the data filesystem, next to `upper/` and `work/`.
pub const RESET_DIR: &str = ".reset";
pub const REQUEST: &str = "request";
pub const DONE: &str = "done";
/// The keep list shipped in (or added to) the root filesystem.
pub const KEEP_FILE: &str = "/etc/overlay-reset.keep";

const REQUEST_MAGIC: &[u8; 8] = b"OVRESET1";
const DONE_MAGIC: &[u8; 8] = b"OVRDONE1";
const HEADER: usize = 8 + 8 + 4 + 4;
/// Keep lists are short; a larger payload is not one of ours.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A pending reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub seq: u64,
    /// Absolute path patterns (`*`, `?`, `[..]` within a component).
    pub keep: Vec<String>,
}

/// Why a record cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    Short(usize),
    Magic,
    Length(u32),
    Checksum { stored: u32, computed: u32 },
    Payload(String),
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
            RecordError::Payload(why) => write!(f, "bad keep list: {why}"),
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
    let crc = crc32fast::hash(&v);
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
    let mut h = crc32fast::Hasher::new();
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
    pub fn encode(&self) -> Vec<u8> {
        encode(REQUEST_MAGIC, self.seq, self.keep.join("\n").as_bytes())
    }

    pub fn decode(b: &[u8]) -> Result<Request, RecordError> {
        let (seq, payload) = decode(REQUEST_MAGIC, b)?;
        let text =
            std::str::from_utf8(payload).map_err(|_| RecordError::Payload("not UTF-8".into()))?;
        let keep: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        for k in &keep {
            validate_pattern(k).map_err(|e| RecordError::Payload(format!("{k}: {e}")))?;
        }
        Ok(Request { seq, keep })
    }
}

pub fn encode_done(seq: u64) -> Vec<u8> {
    encode(DONE_MAGIC, seq, &[])
}

pub fn decode_done(b: &[u8]) -> Result<u64, RecordError> {
    decode(DONE_MAGIC, b).map(|(seq, _)| seq)
}

/// Checks a keep pattern: absolute, normal components, no `..`.
pub fn validate_pattern(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("not an absolute path");
    }
    if p.contains('\0') || p.contains('\n') {
        return Err("control characters in the path");
    }
    let comps: Vec<&str> = components(p).collect();
    if comps.is_empty() {
        return Err("the whole root cannot be kept");
    }
    if comps.iter().any(|c| *c == ".." || *c == ".") {
        return Err("`.` or `..` in the path");
    }
    Ok(())
}

/// The non-empty components of an absolute path.
pub fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

/// Parses a keep-list file: one path or glob a line, `#` comments, blanks ignored.
pub fn parse_keep_file(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        validate_pattern(l).map_err(|e| format!("line {}: {l}: {e}", i + 1))?;
        out.push(l.to_string());
    }
    Ok(out)
}

/// fnmatch(3) for one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
pub fn glob_component(pat: &[u8], name: &[u8]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            let rest = pat.get(1..).unwrap_or(&[]);
            (0..=name.len()).any(|i| glob_component(rest, name.get(i..).unwrap_or(&[])))
        }
        (Some(b'?'), Some(_)) => {
            glob_component(pat.get(1..).unwrap_or(&[]), name.get(1..).unwrap_or(&[]))
        }
        (Some(b'['), Some(&c)) => {
            let Some(end) = pat.iter().skip(2).position(|&b| b == b']').map(|p| p + 2) else {
                return c == b'['
                    && glob_component(pat.get(1..).unwrap_or(&[]), name.get(1..).unwrap_or(&[]));
            };
            let class = pat.get(1..end).unwrap_or(&[]);
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
            hit != negate
                && glob_component(
                    pat.get(end + 1..).unwrap_or(&[]),
                    name.get(1..).unwrap_or(&[]),
                )
        }
        (Some(&p), Some(&c)) => {
            p == c && glob_component(pat.get(1..).unwrap_or(&[]), name.get(1..).unwrap_or(&[]))
        }
        _ => false,
    }
}

/// Keep patterns, matched against paths of the upper (components, relative to its root).
pub struct KeepSet(Vec<Vec<String>>);

impl KeepSet {
    pub fn new(patterns: &[String]) -> KeepSet {
        KeepSet(
            patterns
                .iter()
                .map(|p| components(p).map(str::to_string).collect())
                .collect(),
        )
    }

    /// `path` itself is kept (with everything below it).
    pub fn keeps(&self, path: &[&str]) -> bool {
        self.0.iter().any(|p| {
            p.len() == path.len()
                && p.iter()
                    .zip(path)
                    .all(|(a, b)| glob_component(a.as_bytes(), b.as_bytes()))
        })
    }

    /// Something below directory `path` may be kept: worth descending into.
    pub fn may_keep_below(&self, path: &[&str]) -> bool {
        self.0.iter().any(|p| {
            p.len() > path.len()
                && p.iter()
                    .zip(path)
                    .all(|(a, b)| glob_component(a.as_bytes(), b.as_bytes()))
        })
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
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let empty = Request {
            seq: 1,
            keep: vec![],
        };
        assert_eq!(Request::decode(&empty.encode()), Ok(empty));
        assert_eq!(decode_done(&encode_done(42)), Ok(42));
    }

    #[test]
    fn corrupt_records_are_refused_never_half_read() {
        let good = Request {
            seq: 3,
            keep: vec!["/etc/x".into()],
        }
        .encode();
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
        assert!(matches!(
            Request::decode(&bad_payload),
            Err(RecordError::Payload(_))
        ));
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
        assert!(parse_keep_file("/ok\nbad\n")
            .unwrap_err()
            .starts_with("line 2: bad"));
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
        assert!(k.keeps(&["etc", "config", "network"]));
        assert!(k.keeps(&["etc", "dropbear", "key"]));
        assert!(!k.keeps(&["etc", "config"]));
        assert!(k.may_keep_below(&["etc"]));
        assert!(k.may_keep_below(&["etc", "config"]));
        assert!(!k.may_keep_below(&["root"]));
        assert!(!k.may_keep_below(&["etc", "config", "network"]));
    }
}
