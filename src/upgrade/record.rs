//! The records under `.upgrade/` on the data filesystem (outside `upper/`,
//! so a factory reset keeps them), each a [`super::frame`], written
//! atomically (temp file, fsync, rename, fsync the directory):
//!
//! | file | magic | what | written |
//! | --- | --- | --- | --- |
//! | `state` | `OVUPSTA2` | the identity of each lower the upper follows | when an identity changes (first boot, upgrade) |
//! | `manifest.N` | `OVUPMAN2` | lower N's identity, then its manifest (shipped or computed), or why there is none | once per image, in the background |
//! | `pending` | `OVUPRPT2` | an upgrade under way: old and new identities, policy, time | first thing of an upgrade; removed last |
//! | `last` | `OVUPRPT2` | the report of the last upgrade: the same, plus one line per classified path | at the end of an upgrade |
//!
//! A normal boot reads `state` (and finds no `pending`) and writes nothing.

use super::classify::{Class, News, Why};
use super::identity::Identity;
use super::manifest::Manifest;
use super::{frame, show_path, unframe, Dec, Enc, Error, Policy, RecordError, Step};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::io::Write as _;

pub const STATE: &str = "state";
pub const PENDING: &str = "pending";
pub const LAST: &str = "last";
const STATE_MAGIC: &[u8; 8] = b"OVUPSTA2";
const MANIFEST_MAGIC: &[u8; 8] = b"OVUPMAN2";
const REPORT_MAGIC: &[u8; 8] = b"OVUPRPT2";
/// Bounds of what is read back: a state or report header is small, a
/// manifest or a report with its lines is bounded by the image and by
/// [`MAX_LINES`].
const MAX_RECORD: u64 = 16 << 20;
/// Lines kept in a report; the rest are counted, not listed.
pub const MAX_LINES: usize = 10_000;
/// Lowers a record may describe.
const MAX_LOWERS: u64 = 64;

pub fn manifest_name(n: usize) -> String {
    format!("manifest.{n}")
}

/// One lower as the records know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lower {
    pub id: Identity,
}

fn enc_lowers(e: &mut Enc, l: &[Lower]) {
    e.u(l.len() as u64);
    for x in l {
        x.id.encode(e);
    }
}

fn dec_lowers(d: &mut Dec) -> Result<Vec<Lower>, RecordError> {
    let n = d.u()?;
    if n > MAX_LOWERS {
        return Err(RecordError::TooMany(n));
    }
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Lower {
            id: Identity::decode(d)?,
        });
    }
    Ok(v)
}

/// `.upgrade/state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub lowers: Vec<Lower>,
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        enc_lowers(&mut e, &self.lowers);
        frame(STATE_MAGIC, &e.0)
    }

    #[inline(never)]
    pub fn decode(b: &[u8]) -> Result<State, RecordError> {
        let mut d = Dec(unframe(STATE_MAGIC, b)?);
        let s = State {
            lowers: dec_lowers(&mut d)?,
        };
        d.end()?;
        Ok(s)
    }

    /// Whether these are the identities the upper follows.
    pub fn follows(&self, ids: &[Identity]) -> bool {
        self.lowers.len() == ids.len() && self.lowers.iter().zip(ids).all(|(l, id)| l.id == *id)
    }
}

/// What `.upgrade/manifest.N` holds besides the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Shipped(Manifest),
    Computed(Manifest),
    /// Why the device has none for this image (it does not try again for
    /// the same image).
    None(String),
}

/// `.upgrade/manifest.N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub id: Identity,
    pub content: Content,
}

impl ManifestRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        self.id.encode(&mut e);
        match &self.content {
            Content::None(why) => {
                e.u(0);
                e.b(why.as_bytes());
            }
            Content::Shipped(m) => {
                e.u(1);
                e.b(m.payload());
            }
            Content::Computed(m) => {
                e.u(2);
                e.b(m.payload());
            }
        }
        frame(MANIFEST_MAGIC, &e.0)
    }

    #[inline(never)]
    pub fn decode(b: &[u8]) -> Result<ManifestRecord, RecordError> {
        let mut d = Dec(unframe(MANIFEST_MAGIC, b)?);
        let id = Identity::decode(&mut d)?;
        let tag = d.u()?;
        let body = d.b()?;
        d.end()?;
        let content = match tag {
            0 => Content::None(String::from_utf8_lossy(body).into_owned()),
            1 => Content::Shipped(Manifest::decode(body.to_vec())?),
            2 => Content::Computed(Manifest::decode(body.to_vec())?),
            _ => return Err(RecordError::Field),
        };
        Ok(ManifestRecord { id, content })
    }

    /// The manifest, if this record describes `lower` and has one.
    pub fn manifest_of(&self, lower: &Lower) -> Option<&Manifest> {
        if self.id != lower.id {
            return None;
        }
        match &self.content {
            Content::Shipped(m) | Content::Computed(m) => Some(m),
            Content::None(_) => None,
        }
    }
}

/// One classified path of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub class: Class,
    pub why: Why,
    pub news: News,
    /// The lower holding the new image's version (an index into
    /// [`Report::shown_at`]).
    pub lower: u8,
    pub path: Vec<u8>,
}

/// `.upgrade/pending` (lines empty) and `.upgrade/last`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The lowers the upper followed (empty: not known).
    pub old: Vec<Lower>,
    pub new: Vec<Identity>,
    pub policy: Policy,
    /// Seconds since 1970 (the RTC's time at that boot).
    pub when: u64,
    /// Where the new lowers are seen after the boot (`/rom`, ...).
    pub shown_at: Vec<String>,
    /// Things to say: no old manifest and why, a resumed run, a reset.
    pub notes: Vec<String>,
    /// Policy reset: the last factory reset completed before this upgrade.
    pub reset_after: u64,
    /// Runs of this upgrade cut short so far (while pending).
    pub attempts: u64,
    /// Entries removed, kept, in conflict (all of them, listed or not).
    pub counts: [u64; 3],
    pub lines: Vec<Line>,
}

fn class_code(c: Class) -> u64 {
    match c {
        Class::Removed => 0,
        Class::Kept => 1,
        Class::Conflict => 2,
    }
}

const WHYS: [Why; 12] = [
    Why::Unchanged,
    Why::SameAsNew,
    Why::Redundant,
    Why::Added,
    Why::Modified,
    Why::ModeOwner,
    Why::Deleted,
    Why::Opaque,
    Why::Inside,
    Why::Renamed,
    Why::HardLink,
    Why::Unknown,
];

fn news_code(n: News) -> (u64, u64) {
    match n {
        News::None => (0, 0),
        News::Changed => (1, 0),
        News::Removed => (2, 0),
        News::Added => (3, 0),
        News::AddsInside(k) => (4, k.into()),
        News::Shadows => (5, 0),
    }
}

fn news_of(code: u64, k: u64) -> Result<News, RecordError> {
    Ok(match code {
        0 => News::None,
        1 => News::Changed,
        2 => News::Removed,
        3 => News::Added,
        4 => News::AddsInside(u32::try_from(k).map_err(|_| RecordError::Field)?),
        5 => News::Shadows,
        _ => return Err(RecordError::Field),
    })
}

impl Report {
    /// Counts the line's class, and keeps the line while there is room.
    pub fn add(&mut self, line: Line) {
        if let Some(c) = self.counts.get_mut(class_code(line.class) as usize) {
            *c += 1;
        }
        if self.lines.len() < MAX_LINES {
            self.lines.push(line);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        enc_lowers(&mut e, &self.old);
        e.u(self.new.len() as u64);
        for id in &self.new {
            id.encode(&mut e);
        }
        e.u(self.policy.code());
        e.u(self.when);
        for list in [&self.shown_at, &self.notes] {
            e.u(list.len() as u64);
            for s in list {
                e.b(s.as_bytes());
            }
        }
        e.u(self.reset_after);
        e.u(self.attempts);
        for c in self.counts {
            e.u(c);
        }
        e.u(self.lines.len() as u64);
        for l in &self.lines {
            let (n, k) = news_code(l.news);
            let why = WHYS.iter().position(|w| *w == l.why).unwrap_or(0) as u64;
            e.u(class_code(l.class) | why << 2 | n << 6);
            e.u(k);
            e.u(l.lower.into());
            e.b(&l.path);
        }
        frame(REPORT_MAGIC, &e.0)
    }

    #[inline(never)]
    pub fn decode(b: &[u8]) -> Result<Report, RecordError> {
        let mut d = Dec(unframe(REPORT_MAGIC, b)?);
        let old = dec_lowers(&mut d)?;
        let n = d.u()?;
        if n > MAX_LOWERS {
            return Err(RecordError::TooMany(n));
        }
        let mut new = Vec::new();
        for _ in 0..n {
            new.push(Identity::decode(&mut d)?);
        }
        let policy = Policy::from_code(d.u()?)?;
        let when = d.u()?;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = d.u()?;
            if n > MAX_LOWERS {
                return Err(RecordError::TooMany(n));
            }
            for _ in 0..n {
                list.push(String::from_utf8_lossy(d.b()?).into_owned());
            }
        }
        let [shown_at, notes] = lists;
        let reset_after = d.u()?;
        let attempts = d.u()?;
        let counts = [d.u()?, d.u()?, d.u()?];
        let n = d.u()?;
        if n > MAX_LINES as u64 {
            return Err(RecordError::TooMany(n));
        }
        let mut lines = Vec::new();
        for _ in 0..n {
            let code = d.u()?;
            let class = match code & 3 {
                0 => Class::Removed,
                1 => Class::Kept,
                2 => Class::Conflict,
                _ => return Err(RecordError::Field),
            };
            let why = *WHYS
                .get((code >> 2 & 15) as usize)
                .ok_or(RecordError::Field)?;
            let news = news_of(code >> 6, d.u()?)?;
            let lower = u8::try_from(d.u()?).map_err(|_| RecordError::Field)?;
            let path = d.b()?;
            if !super::manifest::valid_path(path) {
                return Err(RecordError::Order);
            }
            lines.push(Line {
                class,
                why,
                news,
                lower,
                path: path.to_vec(),
            });
        }
        d.end()?;
        Ok(Report {
            old,
            new,
            policy,
            when,
            shown_at,
            notes,
            reset_after,
            attempts,
            counts,
            lines,
        })
    }
}

/// One out-of-line constructor for every record error (each call site is
/// then a call, not a formatting).
#[inline(never)]
fn rec_err(step: Step, name: &str, err: std::io::Error) -> Error {
    let mut path = String::from(super::DIR);
    path.push('/');
    path.push_str(name);
    Error::Io { step, path, err }
}

fn err(step: Step, name: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| rec_err(step, name, err)
}

/// `.upgrade/` of the data filesystem whose root is `data`, created if
/// asked (mode 0700). `Ok(None)`: absent and not created.
pub fn open_area(data: BorrowedFd, create: bool) -> Result<Option<OwnedFd>, Error> {
    if create {
        match rustix::fs::mkdirat(data, super::DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(Step::Write, "")(e.into())),
        }
    }
    match rustix::fs::openat(
        data,
        super::DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(err(Step::Open, "")(e.into())),
    }
}

/// Reads a record file: a regular file within the bound (a FIFO or a
/// device put there is refused without blocking).
pub fn read(area: BorrowedFd, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let fd = match rustix::fs::openat(
        area,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(err(Step::Read, name)(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| err(Step::Read, name)(e.into()))?;
    if super::manifest::Kind::of_mode(st.st_mode) != super::manifest::Kind::File
        || st.st_size as u64 > MAX_RECORD
    {
        return Ok(Some(Vec::new()));
    }
    // Bounded (crate::probe::read_up_to, no read_to_end instance for File):
    // grown past the bound since the fstat, it is refused the same way.
    let v = crate::probe::read_up_to(&std::fs::File::from(fd), MAX_RECORD as usize + 1)
        .map_err(err(Step::Read, name))?;
    if v.len() as u64 > MAX_RECORD {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(v))
}

/// Temp file, fsync, rename over `name`, fsync the directory. Refuses what
/// the reader would refuse (beyond the bound).
pub fn write(area: BorrowedFd, name: &str, bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() as u64 > MAX_RECORD {
        return Err(Error::Limit {
            what: "bytes in a record",
            max: MAX_RECORD,
        });
    }
    let tmp = format!("{name}.tmp");
    let fd =
        crate::fsio::new_temp(area, &tmp, 0o600).map_err(|e| err(Step::Write, name)(e.into()))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(err(Step::Write, name))?;
    f.sync_all().map_err(err(Step::Write, name))?;
    rustix::fs::renameat(area, tmp.as_str(), area, name)
        .and_then(|()| rustix::fs::fsync(area))
        .map_err(|e| err(Step::Write, name)(e.into()))
}

/// Removes a record (and syncs the directory); absent is fine.
pub fn remove(area: BorrowedFd, name: &str) -> Result<(), Error> {
    match rustix::fs::unlinkat(area, std::ffi::OsStr::new(name), AtFlags::empty()) {
        Ok(()) => rustix::fs::fsync(area).map_err(|e| err(Step::Write, name)(e.into())),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(err(Step::Write, name)(e.into())),
    }
}

/// The image a `manifest.N` record describes, from its first bytes (the
/// frame header and the identity at the start of the payload; the rest is
/// checked when the record is used): `None` absent, `Some(None)` present
/// but not such a record (or not of the length its header says).
pub fn recorded_id(area: BorrowedFd, name: &str) -> Option<Option<Identity>> {
    let fd = match rustix::fs::openat(
        area,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return None,
        Err(_) => return Some(None),
    };
    let peek = || {
        let st = rustix::fs::fstat(&fd).ok()?;
        if super::manifest::Kind::of_mode(st.st_mode) != super::manifest::Kind::File {
            return None;
        }
        let mut head = [0u8; super::FRAME + 64];
        let n = rustix::io::read(&fd, &mut head).ok()?;
        let (len, _) = super::frame_header(MANIFEST_MAGIC, head.get(..n)?).ok()?;
        if st.st_size as u64 != (super::FRAME as u64) + u64::from(len) {
            return None;
        }
        Identity::decode(&mut Dec(head.get(super::FRAME..n)?)).ok()
    };
    Some(peek())
}

/// Reads and decodes a record: `Ok(None)` absent, `Ok(Some(Err))` present
/// but unusable (to be reported and ignored).
pub fn load<T>(
    area: BorrowedFd,
    name: &str,
    decode: fn(&[u8]) -> Result<T, RecordError>,
) -> Result<Option<Result<T, RecordError>>, Error> {
    Ok(read(area, name)?.map(|b| decode(&b)))
}

/// The report's path for people (`/etc/x`), with the lower's place for a
/// new version (`/rom/etc/x`).
pub fn new_version_at(r: &Report, l: &Line) -> String {
    let base = r
        .shown_at
        .get(usize::from(l.lower))
        .map_or("/rom", String::as_str);
    format!("{}{}", base.trim_end_matches('/'), show_path(&l.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use crate::upgrade::manifest::tests::file;
    use rustix::fd::AsFd;

    fn id(n: u32) -> Identity {
        Identity {
            squashfs: true,
            size: 4096 * u64::from(n),
            time: n,
            sb: n,
            tables: n,
            shipped: None,
        }
    }

    fn report() -> Report {
        let mut r = Report {
            old: vec![Lower { id: id(1) }],
            new: vec![id(2)],
            policy: Policy::Merge,
            when: 1_700_000_000,
            shown_at: vec!["/rom".into()],
            notes: vec!["a note".into()],
            reset_after: 3,
            attempts: 1,
            ..Report::default()
        };
        r.add(Line {
            class: Class::Conflict,
            why: Why::Opaque,
            news: News::AddsInside(3),
            lower: 0,
            path: b"etc/init.d".to_vec(),
        });
        r.add(Line {
            class: Class::Removed,
            why: Why::Unchanged,
            news: News::None,
            lower: 0,
            path: b"etc/profile".to_vec(),
        });
        r
    }

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let st = State {
            lowers: vec![Lower { id: id(1) }, Lower { id: id(2) }],
        };
        let b = st.encode();
        assert_eq!(State::decode(&b).unwrap(), st);
        let r = report();
        assert_eq!(r.counts, [1, 0, 1]);
        let rb = r.encode();
        assert_eq!(Report::decode(&rb).unwrap(), r);
        let m = Manifest::from_entries(vec![file("etc/profile", b"x")]).unwrap();
        let mr = ManifestRecord {
            id: id(1),
            content: Content::Computed(m.clone()),
        };
        let mb = mr.encode();
        assert_eq!(ManifestRecord::decode(&mb).unwrap(), mr);
        let none = ManifestRecord {
            id: id(1),
            content: Content::None("too many files".into()),
        };
        assert_eq!(ManifestRecord::decode(&none.encode()).unwrap(), none);
        for (b, what) in [(&b, "state"), (&rb, "report"), (&mb, "manifest")] {
            for cut in 0..b.len() {
                let bad = &b[..cut];
                assert!(
                    State::decode(bad).is_err()
                        && Report::decode(bad).is_err()
                        && ManifestRecord::decode(bad).is_err(),
                    "{what} cut {cut}"
                );
            }
            for bit in 0..b.len() * 8 {
                let mut x = b.clone();
                x[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    State::decode(&x).is_err()
                        && Report::decode(&x).is_err()
                        && ManifestRecord::decode(&x).is_err(),
                    "{what} bit {bit}"
                );
            }
        }
        // Records are not interchangeable.
        assert_eq!(State::decode(&rb), Err(RecordError::Magic));
    }

    #[test]
    fn a_manifest_record_belongs_to_one_image() {
        let m = Manifest::from_entries(vec![file("a", b"")]).unwrap();
        let rec = ManifestRecord {
            id: id(1),
            content: Content::Shipped(m),
        };
        assert!(rec.manifest_of(&Lower { id: id(1) }).is_some());
        assert!(rec.manifest_of(&Lower { id: id(2) }).is_none());
    }

    #[test]
    fn the_line_count_is_bounded() {
        let mut r = Report::default();
        for i in 0..MAX_LINES + 5 {
            r.add(Line {
                class: Class::Kept,
                why: Why::Added,
                news: News::None,
                lower: 0,
                path: format!("f{i}").into_bytes(),
            });
        }
        assert_eq!(r.lines.len(), MAX_LINES);
        assert_eq!(r.counts[1], MAX_LINES as u64 + 5);
        assert_eq!(Report::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn files_are_written_atomically_and_read_bounded() {
        let d = TempDir::new("upgrade-rec");
        let data =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(open_area(data.as_fd(), false).unwrap().is_none());
        let area = open_area(data.as_fd(), true).unwrap().unwrap();
        assert_eq!(load(area.as_fd(), STATE, State::decode).unwrap(), None);
        let st = State {
            lowers: vec![Lower { id: id(1) }],
        };
        write(area.as_fd(), STATE, &st.encode()).unwrap();
        assert_eq!(
            load(area.as_fd(), STATE, State::decode).unwrap(),
            Some(Ok(st))
        );
        assert!(!d.path().join(".upgrade/state.tmp").exists());
        std::fs::write(d.path().join(".upgrade/state"), b"garbage garbage garbage").unwrap();
        assert!(matches!(
            load(area.as_fd(), STATE, State::decode).unwrap(),
            Some(Err(RecordError::Magic))
        ));
        // A FIFO in place of a record does not block the reader.
        rustix::fs::mknodat(
            area.as_fd(),
            PENDING,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            load(area.as_fd(), PENDING, Report::decode).unwrap(),
            Some(Err(_))
        ));
        remove(area.as_fd(), PENDING).unwrap();
        remove(area.as_fd(), PENDING).unwrap();
        let r = report();
        assert_eq!(new_version_at(&r, &r.lines[0]), "/rom/etc/init.d");
    }
}
