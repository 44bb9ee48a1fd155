//! The manifest of a lower: every path of the image with its type, mode,
//! owner, size, the CRC32 of its contents (crc32fast: this is not an
//! adversarial comparison) and its symlink target. Without it a stale copy
//! cannot be told from a user's edit once the old image is gone.
//!
//! Two sources:
//! - **shipped**: the firmware build runs `overlay-init manifest ROOTDIR`
//!   (add `--all-root` when mksquashfs gets `-all-root`) before
//!   `mksquashfs`; the file goes to `ROOTDIR/etc/overlay-init.manifest`
//!   ([`super::SHIPPED`]), which the manifest leaves out of itself;
//! - **computed** on the device for the current lower, once per image, in
//!   the background after the boot (merge.rs), with the same code.
//!
//! Format (payload of a [`super::frame`] with magic `OVMANIF1`): the
//! entry count, then the entries sorted by path bytes, each one:
//! the length of the prefix it shares with the previous path, the rest of
//! its path, `kind << 12 | mode`, uid, gid, then by kind: file: size and
//! CRC32 (4 bytes, little-endian: a manifest's length does not depend on
//! the CRCs); symlink: target; device: rdev. Numbers are varints. About 20
//! bytes an entry plus its path's new suffix. Paths are relative (`etc/x`),
//! of normal components; the decoder refuses anything unsorted, repeated,
//! or beyond [`MAX_ENTRIES`] and [`MAX_PATH`], never trusting half a file.

use super::{Dec, Enc, Error, RecordError, Step};
use rustix::fd::BorrowedFd;
use std::io::Read;

pub const SHIPPED_MAGIC: &[u8; 8] = b"OVMANIF1";
/// Bounds of a manifest: entries (about 120 bytes of memory each once
/// decoded), path and symlink target bytes.
pub const MAX_ENTRIES: u64 = 250_000;
pub const MAX_PATH: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    fn code(self) -> u64 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Char => 4,
            Kind::Block => 5,
            Kind::Fifo => 6,
            Kind::Socket => 7,
        }
    }

    fn from_code(c: u64) -> Option<Kind> {
        Some(match c {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Char,
            5 => Kind::Block,
            6 => Kind::Fifo,
            7 => Kind::Socket,
            _ => return None,
        })
    }

    /// The kind of an `st_mode`.
    pub fn of_mode(mode: u32) -> Kind {
        match mode & 0o170_000 {
            0o100_000 => Kind::File,
            0o040_000 => Kind::Dir,
            0o120_000 => Kind::Symlink,
            0o020_000 => Kind::Char,
            0o060_000 => Kind::Block,
            0o010_000 => Kind::Fifo,
            _ => Kind::Socket,
        }
    }
}

/// What the manifest says of one path; also what is known of an upper
/// entry or a live lower entry, to compare with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Files: bytes; devices: rdev; others: 0 (a directory's size depends
    /// on the filesystem, never compared).
    pub size: u64,
    /// Files: CRC32 of the contents, `None` until read.
    pub crc: Option<u32>,
    /// Symlinks: the target.
    pub target: Vec<u8>,
}

impl Meta {
    /// From lstat(2); contents and target are not read here.
    pub fn of_stat(st: &rustix::fs::Stat) -> Meta {
        let kind = Kind::of_mode(st.st_mode);
        Meta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: match kind {
                Kind::File => st.st_size as u64,
                Kind::Char | Kind::Block => st.st_rdev,
                _ => 0,
            },
            crc: None,
            target: Vec::new(),
        }
    }

    /// Same type and same contents: bytes (by size and CRC32), target or
    /// device number; mode and owner aside.
    pub fn same_content(&self, o: &Meta) -> bool {
        self.kind == o.kind
            && self.size == o.size
            && match self.kind {
                Kind::File => self.crc.is_some() && self.crc == o.crc,
                Kind::Symlink => self.target == o.target,
                _ => true,
            }
    }

    pub fn same_mode_owner(&self, o: &Meta) -> bool {
        (self.mode, self.uid, self.gid) == (o.mode, o.uid, o.gid)
    }

    /// Equal in everything the manifest records.
    pub fn same(&self, o: &Meta) -> bool {
        self.same_content(o) && self.same_mode_owner(o)
    }

    /// A whiteout: the character device 0/0 overlayfs leaves for a deleted
    /// lower entry.
    pub fn is_whiteout(&self) -> bool {
        self.kind == Kind::Char && self.size == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the image's root, `/`-separated, no leading `/`.
    pub path: Vec<u8>,
    pub meta: Meta,
}

/// A decoded manifest, kept in its encoded form (about 25 bytes an entry)
/// with the offset of every [`RESTART`]-th entry, whose path is stored
/// whole: a lookup is a binary search over those, then at most
/// [`RESTART`] entries decoded. Memory: the record's size, plus 1/8 of a
/// byte an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    payload: Vec<u8>,
    count: u64,
    restarts: Vec<usize>,
}

/// Every this many entries, a path is stored whole (no shared prefix).
pub const RESTART: u64 = 32;

/// A relative path of normal components: not empty, no empty, `.` or `..`
/// component, no NUL, at most [`MAX_PATH`] bytes.
pub fn valid_path(p: &[u8]) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PATH
        && !p.contains(&0)
        && p.split(|&c| c == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// The encoded entries (a manifest's payload), sorted by path. `entries`
/// must hold each path once (a walk of one tree does).
pub fn encode(entries: &mut [Entry]) -> Vec<u8> {
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let mut e = Enc::default();
    e.u(entries.len() as u64);
    let mut prev: &[u8] = &[];
    for (i, x) in entries.iter().enumerate() {
        let shared = if (i as u64).is_multiple_of(RESTART) {
            0
        } else {
            prev.iter().zip(&x.path).take_while(|(a, b)| a == b).count()
        };
        e.u(shared as u64);
        e.b(x.path.get(shared..).unwrap_or_default());
        let m = &x.meta;
        e.u(m.kind.code() << 12 | u64::from(m.mode & 0o7777));
        e.u(m.uid.into());
        e.u(m.gid.into());
        match m.kind {
            Kind::File => {
                e.u(m.size);
                // Fixed width: a manifest's length does not depend on CRCs.
                e.0.extend_from_slice(&m.crc.unwrap_or(0).to_le_bytes());
            }
            Kind::Symlink => e.b(&m.target),
            Kind::Char | Kind::Block => e.u(m.size),
            _ => {}
        }
        prev = &x.path;
    }
    e.0
}

/// Decodes the entry at `d` into `path` (which holds the previous path).
fn next_entry(d: &mut Dec, path: &mut Vec<u8>) -> Result<Meta, RecordError> {
    let shared = usize::try_from(d.u()?).map_err(|_| RecordError::Order)?;
    if shared > path.len() {
        return Err(RecordError::Order);
    }
    path.truncate(shared);
    path.extend_from_slice(d.b()?);
    let km = d.u()?;
    let kind = Kind::from_code(km >> 12).ok_or(RecordError::Field)?;
    let mut m = Meta {
        kind,
        mode: (km & 0o7777) as u32,
        uid: d.u32()?,
        gid: d.u32()?,
        size: 0,
        crc: None,
        target: Vec::new(),
    };
    match kind {
        Kind::File => {
            m.size = d.u()?;
            m.crc = Some(d.fixed32()?);
        }
        Kind::Symlink => {
            let t = d.b()?;
            if t.len() > MAX_PATH {
                return Err(RecordError::Field);
            }
            m.size = t.len() as u64;
            m.target = t.to_vec();
        }
        Kind::Char | Kind::Block => m.size = d.u()?,
        _ => {}
    }
    Ok(m)
}

impl Manifest {
    /// Checks a payload whole (order, paths, fields, bounds) and indexes it.
    pub fn decode(payload: Vec<u8>) -> Result<Manifest, RecordError> {
        let mut d = Dec(&payload);
        let count = d.u()?;
        if count > MAX_ENTRIES {
            return Err(RecordError::TooMany(count));
        }
        let mut restarts = Vec::new();
        let mut path = Vec::new();
        let mut prev = Vec::new();
        for i in 0..count {
            let at = payload.len() - d.0.len();
            if i % RESTART == 0 {
                if d.0.first() != Some(&0) {
                    return Err(RecordError::Order);
                }
                restarts.push(at);
            }
            next_entry(&mut d, &mut path)?;
            if !valid_path(&path) || (i > 0 && path <= prev) {
                return Err(RecordError::Order);
            }
            prev.clone_from(&path);
        }
        d.end()?;
        Ok(Manifest {
            payload,
            count,
            restarts,
        })
    }

    /// From entries (tests, and the host command's caller).
    pub fn from_entries(mut entries: Vec<Entry>) -> Result<Manifest, RecordError> {
        Manifest::decode(encode(&mut entries))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded entries, as recorded.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The file an image ships (`overlay-init manifest`).
    pub fn shipped_file(&self) -> Vec<u8> {
        super::frame(SHIPPED_MAGIC, &self.payload)
    }

    /// A shipped manifest, checked.
    pub fn from_shipped(bytes: &[u8]) -> Result<Manifest, RecordError> {
        Manifest::decode(super::unframe(SHIPPED_MAGIC, bytes)?.to_vec())
    }

    /// Calls `f` with each entry from restart block `block` on, until `f`
    /// says stop (false). Entries were checked by [`Manifest::decode`].
    fn scan(&self, block: usize, f: &mut dyn FnMut(&[u8], Meta) -> bool) {
        let Some(&at) = self.restarts.get(block) else {
            return;
        };
        let mut d = Dec(self.payload.get(at..).unwrap_or_default());
        let mut path = Vec::new();
        for _ in (block as u64 * RESTART)..self.count {
            let Ok(m) = next_entry(&mut d, &mut path) else {
                return;
            };
            if !f(&path, m) {
                return;
            }
        }
    }

    /// The restart block where `path` would be: the last whose first path
    /// is not after it.
    fn block_of(&self, path: &[u8]) -> usize {
        let first = |i: &usize| {
            let mut d = Dec(self.payload.get(*i..).unwrap_or_default());
            let _ = d.u();
            d.b().unwrap_or_default().to_vec()
        };
        self.restarts
            .partition_point(|i| first(i).as_slice() <= path)
            .saturating_sub(1)
    }

    pub fn get(&self, path: &[u8]) -> Option<Meta> {
        let mut found = None;
        self.scan(self.block_of(path), &mut |p, m| {
            if p == path {
                found = Some(m);
            }
            p < path
        });
        found
    }

    /// The names directly in directory `dir` (`b""`: the root).
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut prefix = dir.to_vec();
        if !dir.is_empty() {
            prefix.push(b'/');
        }
        let mut out = Vec::new();
        self.scan(self.block_of(&prefix), &mut |p, _| {
            if let Some(rest) = p.strip_prefix(prefix.as_slice()) {
                if !rest.contains(&b'/') {
                    out.push(rest.to_vec());
                }
                true
            } else {
                p < prefix.as_slice()
            }
        });
        out
    }

    /// Every entry, in path order.
    pub fn for_each(&self, f: &mut dyn FnMut(&[u8], Meta)) {
        self.scan(0, &mut |p, m| {
            f(p, m);
            true
        });
    }
}

/// The entry of `path` in the first of `layers` that has it: the merged
/// view of several lowers, the top one first. (Whiteouts and opaque
/// directories inside lowers are not interpreted: images do not have them.)
pub fn lookup(layers: &[Manifest], path: &[u8]) -> Option<Meta> {
    layers.iter().find_map(|m| m.get(path))
}

/// The CRC32 of what `fd` reads, in bounded reads.
pub fn crc_of(fd: rustix::fd::OwnedFd) -> std::io::Result<u32> {
    let mut f = std::fs::File::from(fd);
    let mut h = crate::crc32::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

/// Options of [`compute`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Record every owner as root (as `mksquashfs -all-root` builds it).
    pub all_root: bool,
}

/// The manifest of the tree whose root is `root`, its shipped manifest
/// left out. Bounded: [`MAX_ENTRIES`] entries, one 64 KiB buffer.
pub fn compute(root: BorrowedFd, opts: Option<Options>) -> Result<Manifest, Error> {
    let opts = opts.unwrap_or_default();
    let mut entries = Vec::new();
    super::scan::walk_tree(root, &mut |path, st, dir| {
        if path == super::SHIPPED.as_bytes() {
            return Ok(());
        }
        if entries.len() as u64 >= MAX_ENTRIES {
            return Err(Error::Limit {
                what: "entries in the image",
                max: MAX_ENTRIES,
            });
        }
        let mut meta = Meta::of_stat(st);
        if opts.all_root {
            (meta.uid, meta.gid) = (0, 0);
        }
        super::scan::read_content(dir, path, &mut meta)?;
        entries.push(Entry {
            path: path.to_vec(),
            meta,
        });
        Ok(())
    })?;
    Manifest::decode(encode(&mut entries)).map_err(|err| Error::Record {
        name: "the computed manifest".into(),
        err,
    })
}

const HELP: &str = "usage: overlay-init manifest ROOTDIR [-o FILE|-] [--all-root]
Writes the manifest of the image built from ROOTDIR, by default to
ROOTDIR/etc/overlay-init.manifest; run it before mksquashfs (--all-root
as mksquashfs -all-root).
";

/// `overlay-init manifest ROOTDIR [-o FILE] [--all-root]`, on the build host.
pub fn main(args: &[String]) -> i32 {
    let mut root = None;
    let mut out = None;
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" if out.is_none() => out = Some(it.next().cloned().unwrap_or_default()),
            "--all-root" => opts.all_root = true,
            a if root.is_none() && !a.starts_with('-') => root = Some(a.to_string()),
            _ => root = Some(String::new()),
        }
    }
    let root = root.unwrap_or_default();
    if root.is_empty() || out.as_deref() == Some("") {
        eprint!("{HELP}");
        return 2;
    }
    let out = out.unwrap_or_else(|| format!("{root}/{}", super::SHIPPED));
    let r = super::merge::open_data(std::path::Path::new(&root))
        .and_then(|fd| compute(rustix::fd::AsFd::as_fd(&fd), Some(opts)))
        .and_then(|m| {
            let bytes = m.shipped_file();
            let w = if out == "-" {
                std::io::Write::write_all(&mut std::io::stdout(), &bytes)
            } else {
                std::fs::write(&out, &bytes)
            };
            w.map(|()| (m.len(), bytes.len())).map_err(|err| Error::Io {
                step: Step::Write,
                path: out.clone(),
                err,
            })
        });
    match r {
        Ok((n, b)) => {
            eprintln!("overlay-init manifest: {n} entries, {b} bytes -> {out}");
            0
        }
        Err(e) => {
            eprintln!("overlay-init manifest: {e}");
            1
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn file(path: &str, body: &[u8]) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            meta: Meta {
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: body.len() as u64,
                crc: Some(crc32fast::hash(body)),
                target: Vec::new(),
            },
        }
    }

    pub(crate) fn dir(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            meta: Meta {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                crc: None,
                target: Vec::new(),
            },
        }
    }

    pub(crate) fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            meta: Meta {
                kind: Kind::Symlink,
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: target.len() as u64,
                crc: None,
                target: target.as_bytes().to_vec(),
            },
        }
    }

    fn sample() -> Manifest {
        let mut dev = file("dev/null", b"");
        dev.meta.kind = Kind::Char;
        dev.meta.size = 0x103;
        dev.meta.crc = None;
        let mut fifo = file("run/fifo", b"");
        fifo.meta.kind = Kind::Fifo;
        fifo.meta.size = 0;
        fifo.meta.crc = None;
        let mut owned = file("home/user/.profile", b"x");
        owned.meta.uid = 1000;
        owned.meta.gid = 100;
        owned.meta.mode = 0o4755;
        Manifest::from_entries(vec![
            dir("etc"),
            dir("etc/config"),
            file("etc/config/network", b"config interface lan"),
            file("etc/config/system", b"config system"),
            file("etc/config-x", b""),
            link("bin/sh", "busybox"),
            dir("bin"),
            dev,
            fifo,
            owned,
        ])
        .unwrap()
    }

    fn names(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_and_lookup() {
        let m = sample();
        let back = Manifest::from_shipped(&m.shipped_file()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.len(), 10);
        assert_eq!(
            back.get(b"etc/config/network").unwrap().crc,
            Some(crc32fast::hash(b"config interface lan"))
        );
        assert_eq!(back.get(b"bin/sh").unwrap().target, b"busybox");
        assert_eq!(back.get(b"dev/null").unwrap().size, 0x103);
        assert_eq!(back.get(b"home/user/.profile").unwrap().mode, 0o4755);
        assert_eq!(back.get(b"etc/conf"), None);
        assert_eq!(back.get(b"zzz"), None);
        assert_eq!(back.get(b"a"), None);
        assert_eq!(names(back.children(b"etc")), ["config", "config-x"]);
        assert_eq!(names(back.children(b"etc/config")), ["network", "system"]);
        // Names are entries: dev/null's directory is not one here.
        assert_eq!(names(back.children(b"")), ["bin", "etc"]);
        assert!(back.children(b"etc/config/network").is_empty());
        let mut all = Vec::new();
        back.for_each(&mut |p, _| all.push(p.to_vec()));
        assert_eq!(all.len(), 10);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    /// Lookups across many restart blocks find every entry and nothing else.
    #[test]
    fn lookups_across_restart_blocks() {
        let mut entries = vec![dir("d")];
        for i in 0..1000 {
            entries.push(file(&format!("d/f{i:04}"), format!("{i}").as_bytes()));
            if i % 100 == 0 {
                entries.push(dir(&format!("d/f{i:04}.dir")));
                entries.push(file(&format!("d/f{i:04}.dir/x"), b"x"));
            }
        }
        let n = entries.len();
        let m = Manifest::from_entries(entries).unwrap();
        assert_eq!(m.len(), n as u64);
        for i in 0..1000 {
            let p = format!("d/f{i:04}");
            assert_eq!(
                m.get(p.as_bytes()).unwrap().crc,
                Some(crc32fast::hash(format!("{i}").as_bytes())),
                "{p}"
            );
            assert_eq!(m.get(format!("d/f{i:04}0").as_bytes()), None);
        }
        assert_eq!(m.children(b"d").len(), 1010);
        assert_eq!(names(m.children(b"d/f0500.dir")), ["x"]);
        assert_eq!(names(m.children(b"")), ["d"]);
        // About 20 bytes an entry, restarts included.
        assert!(m.payload().len() < n * 20, "{}", m.payload().len());
    }

    #[test]
    fn the_merged_view_takes_the_top_layer() {
        let top = Manifest::from_entries(vec![file("etc/a", b"top")]).unwrap();
        let root =
            Manifest::from_entries(vec![file("etc/a", b"root"), file("etc/b", b"b")]).unwrap();
        let layers = [top, root];
        assert_eq!(
            lookup(&layers, b"etc/a").unwrap().crc,
            Some(crc32fast::hash(b"top"))
        );
        assert!(lookup(&layers, b"etc/b").is_some());
        assert!(lookup(&layers, b"etc/c").is_none());
    }

    #[test]
    fn damaged_manifests_are_refused() {
        let good = sample().shipped_file();
        for cut in 0..good.len() {
            assert!(Manifest::from_shipped(&good[..cut]).is_err(), "cut {cut}");
        }
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::from_shipped(&b).is_err(), "bit {bit}");
        }
        // Well-framed but wrong inside: each is refused by the decoder.
        let payload = |f: &dyn Fn(&mut Enc)| {
            let mut e = Enc::default();
            f(&mut e);
            e.0
        };
        let entry = |e: &mut Enc, shared: u64, suffix: &[u8]| {
            e.u(shared);
            e.b(suffix);
            e.u(2 << 12 | 0o755);
            e.u(0);
            e.u(0);
        };
        let cases: Vec<(Vec<u8>, RecordError)> = vec![
            (
                payload(&|e| {
                    e.u(2);
                    entry(e, 0, b"b");
                    entry(e, 0, b"a");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(2);
                    entry(e, 0, b"a");
                    entry(e, 1, b"");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(1);
                    entry(e, 0, b"../etc");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(1);
                    entry(e, 0, b"/abs");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(1);
                    entry(e, 5, b"x");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(2);
                    entry(e, 0, b"a");
                    entry(e, 9, b"x");
                }),
                RecordError::Order,
            ),
            (
                payload(&|e| {
                    e.u(1);
                    e.u(0);
                    e.b(b"x");
                    e.u(9 << 12);
                }),
                RecordError::Field,
            ),
            (
                payload(&|e| e.u(MAX_ENTRIES + 1)),
                RecordError::TooMany(MAX_ENTRIES + 1),
            ),
            (
                payload(&|e| e.u(1_000_000_000)),
                RecordError::TooMany(1_000_000_000),
            ),
            (
                payload(&|e| {
                    e.u(3);
                    entry(e, 0, b"a");
                }),
                RecordError::Truncated,
            ),
            (
                payload(&|e| {
                    e.u(0);
                    e.u(0);
                }),
                RecordError::Trailing,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(Manifest::decode(p), Err(want.clone()), "{want}");
        }
        // A restart entry that shares a prefix is refused too.
        let mut entries: Vec<Entry> = (0..40).map(|i| file(&format!("f{i:02}"), b"")).collect();
        let mut p = encode(&mut entries);
        let mut d = Dec(&p);
        d.u().unwrap();
        let mut path = Vec::new();
        for _ in 0..32 {
            next_entry(&mut d, &mut path).unwrap();
        }
        let at = p.len() - d.0.len();
        assert_eq!(p[at], 0);
        p[at] = 1;
        assert_eq!(Manifest::decode(p), Err(RecordError::Order));
        assert!(valid_path(b"etc/x"));
        for bad in [&b""[..], b"a//b", b"a/", b"./a", b"a/../b", b"a\0b"] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn meta_comparisons() {
        let a = file("x", b"abc").meta;
        let mut b = a.clone();
        assert!(a.same(&b));
        b.mode = 0o600;
        assert!(a.same_content(&b) && !a.same(&b));
        b.crc = None;
        assert!(!a.same_content(&b), "unread contents are never equal");
        let mut wh = a.clone();
        wh.kind = Kind::Char;
        wh.size = 0;
        assert!(wh.is_whiteout());
        wh.size = 0x103;
        assert!(!wh.is_whiteout());
    }
}
