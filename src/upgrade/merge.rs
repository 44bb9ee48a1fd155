//! The upgrade at boot: the decision (pure) and the executor's steps.
//!
//! The boot, after mounting the lowers and the data filesystem, before
//! anything is written to the flash:
//! 1. [`identity::read`](super::identity::read) for each lower;
//! 2. [`read_facts`] (reads `.upgrade/state`, `pending`, the reset records);
//! 3. [`decide`]: [`Decision::None`] on a normal boot (nothing is written),
//!    [`Decision::Record`] on a first boot, [`Decision::Upgrade`] (policy
//!    merge or keep) or [`Decision::Reset`];
//! 4. the step: [`record`], [`run`], or for a reset [`begin_reset`], the
//!    reset itself (src/reset), then [`finish_reset`];
//! 5. after the boot, in the background: [`background`].
//!
//! Power safety. `pending` is written before the first change and removed
//! after the last; while it exists, every boot finishes the upgrade before
//! the overlay is assembled ([`decide`] returns the upgrade again, `resume`
//! set). The merge never trusts a list made earlier: it classifies each
//! entry again and removes only what is a copy *now* (equal to the old
//! manifest, read again), one rename into the reset's trash per entry, so
//! a cut at any instant leaves the old upper less some unchanged copies,
//! with the upgrade pending, or the merged upper; never one that lost a
//! user change. The old manifest stays recorded until the upgrade is done.
//! A run that cannot finish (an error, the deadline) leaves `pending`; after
//! [`MAX_ATTEMPTS`] the upgrade is closed with what was done, so a bad
//! upper never makes every boot an upgrade boot.

use super::classify::{classify, needs_crc, Action, Class, Old, Upper};
use super::identity::{self, Identity};
use super::manifest::{self, lookup, Kind, Manifest, Meta};
use super::record::{
    self, Content, Line, Lower, ManifestRecord, Report, State, LAST, PENDING, STATE,
};
use super::scan::{self, name_of, Lowers};
use super::{show_path, Error, Policy, RecordError, Step};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

/// Called after every change with the step's name: the crash-test hook
/// (`pending`, `remove`, `dir`, `last`, `state`, `done`).
pub type Hook<'a> = &'a mut dyn FnMut(&str);

/// Runs of one upgrade before it is closed with what was done.
pub const MAX_ATTEMPTS: u64 = 3;
/// Notes kept in a report.
const MAX_NOTES: usize = 20;

/// What the boot reads before deciding (read-only).
#[derive(Debug)]
pub struct Facts {
    pub state: Result<Option<State>, RecordError>,
    pub pending: Result<Option<Report>, RecordError>,
    /// `upper/` holds nothing (read only when there is no state record).
    pub upper_empty: bool,
    /// The last completed factory reset and whether one is requested.
    pub reset_done: u64,
    pub reset_pending: bool,
    /// The image each `manifest.N` record says it describes, from its
    /// header (`None`: present but not a record), up to the first absent.
    pub manifests: Vec<Option<Identity>>,
}

/// An upgrade to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The lowers the upper followed (empty: unknown, no old manifest).
    pub old: Vec<Lower>,
    pub new: Vec<Identity>,
    pub policy: Policy,
    /// `pending` exists: a run was cut short.
    pub resume: bool,
    /// Why nothing can be removed, when the decision already knows.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The images the upper follows: nothing to do, nothing written.
    None,
    /// No record and an empty upper (first boot): record the identities.
    Record,
    /// Classify the upper (policy merge or keep).
    Upgrade(Upgrade),
    /// Policy reset: [`begin_reset`] (unless resuming), then a factory
    /// reset with the keep list; `request`: a reset request must be
    /// written (none is pending and none completed since [`begin_reset`]);
    /// then [`finish_reset`].
    Reset { up: Upgrade, request: bool },
}

/// Facts → decision. `current`: the identity of each lower, top first
/// (a boot that cannot read one does not call this: nothing is decided,
/// nothing written, and the next boot tries again).
pub fn decide(f: &Facts, current: &[Identity], policy: Policy) -> Decision {
    let up = |old: Vec<Lower>, policy, resume, note: Option<String>| Upgrade {
        old,
        new: current.to_vec(),
        policy,
        resume,
        note,
    };
    // An unusable record never lets anything be removed or reset.
    let unusable = |what: &str, e: &RecordError| {
        Decision::Upgrade(up(
            Vec::new(),
            Policy::Keep,
            false,
            Some(format!(
                "the {what} record is unusable ({e}): ignored, nothing removed"
            )),
        ))
    };
    match &f.pending {
        Ok(Some(p)) if p.policy == Policy::Reset => {
            return Decision::Reset {
                up: up(p.old.clone(), Policy::Reset, true, None),
                request: f.reset_done <= p.reset_after && !f.reset_pending,
            }
        }
        Ok(Some(p)) => return Decision::Upgrade(up(p.old.clone(), p.policy, true, None)),
        Err(e) => return unusable("upgrade", e),
        Ok(None) => {}
    }
    match &f.state {
        Err(e) => unusable("upgrade state", e),
        Ok(None) if f.upper_empty => Decision::Record,
        // An upper from before this record existed: the image may or may
        // not have changed; nothing is removed, and no reset is made.
        Ok(None) => Decision::Upgrade(up(
            Vec::new(),
            if policy == Policy::Reset {
                Policy::Keep
            } else {
                policy
            },
            false,
            Some("no record of the image the upper was made with".into()),
        )),
        Ok(Some(s)) if s.follows(current) => Decision::None,
        Ok(Some(s)) if policy == Policy::Reset => Decision::Reset {
            up: up(s.lowers.clone(), Policy::Reset, false, None),
            request: !f.reset_pending,
        },
        Ok(Some(s)) => Decision::Upgrade(up(s.lowers.clone(), policy, false, None)),
    }
}

fn open_dir_at(dir: BorrowedFd, name: &OsStr, path: &[u8]) -> Result<OwnedFd, Error> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io {
        step: Step::Open,
        path: show_path(path),
        err: e.into(),
    })
}

/// Step 2: what the records say (reads only). `data`: the data
/// filesystem's root.
pub fn read_facts(data: &Path) -> Result<Facts, Error> {
    let (fd, data_path) = (open_data(data)?, data);
    let data = fd.as_fd();
    let area = record::open_area(data, false)?;
    let (state, pending) = match &area {
        Some(a) => (
            record::load(a.as_fd(), STATE, State::decode)?,
            record::load(a.as_fd(), PENDING, Report::decode)?,
        ),
        None => (None, None),
    };
    let upper_empty = state.is_some() || {
        match open_dir_at(data, OsStr::new("upper"), b"upper") {
            Ok(u) => rustix::fs::Dir::read_from(&u).is_ok_and(|mut d| {
                std::iter::from_fn(|| d.read())
                    .all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")))
            }),
            Err(_) => true,
        }
    };
    let (reset_done, reset_pending) = reset_facts(data_path);
    let manifests = match &area {
        Some(a) => (0..MAX_MANIFESTS)
            .map_while(|n| record::recorded_id(a.as_fd(), &record::manifest_name(n)))
            .collect(),
        None => Vec::new(),
    };
    Ok(Facts {
        state: state.transpose(),
        pending: pending.transpose(),
        upper_empty,
        reset_done,
        reset_pending,
        manifests,
    })
}

fn reset_facts(data: &Path) -> (u64, bool) {
    match crate::reset::wipe::ResetArea::open(data, false) {
        Ok(a) => (
            a.last_done().ok().flatten().unwrap_or(0),
            // A factory reset; a per-path revert is no reset.
            matches!(a.pending(), Ok(crate::reset::wipe::Pending::Request(r)) if r.revert.is_empty()),
        ),
        Err(_) => (0, false),
    }
}

/// Opens the data filesystem's root.
pub fn open_data(data: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(
        data,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io {
        step: Step::Open,
        path: data.display().to_string(),
        err: e.into(),
    })
}

fn area_of(data: BorrowedFd) -> Result<OwnedFd, Error> {
    record::open_area(data, true)?.ok_or(Error::Io {
        step: Step::Open,
        path: super::DIR.into(),
        err: std::io::ErrorKind::NotFound.into(),
    })
}

fn state_of(ids: &[Identity]) -> State {
    State {
        lowers: ids.iter().map(|id| Lower { id: id.clone() }).collect(),
    }
}

/// [`Decision::Record`]: the identities of a first boot.
pub fn record(data: &Path, ids: &[Identity]) -> Result<(), Error> {
    let area = area_of(open_data(data)?.as_fd())?;
    record::write(area.as_fd(), STATE, &state_of(ids).encode())
}

/// Where the new lowers are and are seen.
pub struct Lowerdirs<'a> {
    /// Their roots, top first.
    pub roots: &'a [BorrowedFd<'a>],
    /// Where each is seen after the boot (`/rom`, `/run/overlay-init/lower/0`).
    pub shown_at: &'a [String],
}

/// What a run of [`run`] ended with.
#[derive(Debug)]
pub enum Outcome {
    /// The upgrade is complete: `last` holds this report.
    Done(Report),
    /// The deadline passed: `pending` stays; the upper is usable (only
    /// unchanged copies went) and the next boot goes on.
    Stopped(Report),
}

fn note(r: &mut Report, n: String) {
    if r.notes.len() < MAX_NOTES {
        r.notes.push(n);
    }
}

/// The old lowers' manifests, or why there are none.
fn old_manifests(area: BorrowedFd, old: &[Lower]) -> Result<Vec<Manifest>, String> {
    if old.is_empty() {
        return Err("the previous image is not known".into());
    }
    let mut out = Vec::new();
    for (n, lower) in old.iter().enumerate() {
        let name = record::manifest_name(n);
        match record::load(area, &name, ManifestRecord::decode) {
            Err(e) => return Err(e.to_string()),
            Ok(None) => return Err(format!("none was recorded for lower {n}")),
            Ok(Some(Err(e))) => return Err(format!(".upgrade/{name} is unusable ({e})")),
            Ok(Some(Ok(rec))) => {
                if let Content::None(why) = &rec.content {
                    return Err(format!("lower {n} had none ({why})"));
                }
                let Some(m) = rec.manifest_of(lower) else {
                    return Err(format!(".upgrade/{name} is of another image"));
                };
                out.push(m.clone());
            }
        }
    }
    Ok(out)
}

/// `.reset/trash/upgrade-N`, a new directory for this run's removals.
fn trash_dir(data: BorrowedFd) -> Result<OwnedFd, Error> {
    let mk = |dir: BorrowedFd, name: &str| match rustix::fs::mkdirat(
        dir,
        name,
        Mode::from_raw_mode(0o700),
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    };
    let werr = |e: rustix::io::Errno| Error::Io {
        step: Step::Write,
        path: ".reset/trash".into(),
        err: e.into(),
    };
    mk(data, crate::reset::RESET_DIR).map_err(werr)?;
    let reset = open_dir_at(data, OsStr::new(crate::reset::RESET_DIR), b".reset")?;
    mk(reset.as_fd(), "trash").map_err(werr)?;
    let trash = open_dir_at(reset.as_fd(), OsStr::new("trash"), b".reset/trash")?;
    for n in 0..1000 {
        let name = format!("upgrade-{n}");
        match rustix::fs::mkdirat(trash.as_fd(), name.as_str(), Mode::from_raw_mode(0o700)) {
            Ok(()) => return open_dir_at(trash.as_fd(), OsStr::new(&name), b".reset/trash"),
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(werr(e)),
        }
    }
    Err(Error::Limit {
        what: "upgrade directories in the trash",
        max: 1000,
    })
}

/// A directory the walk is in.
struct Frame {
    /// It, or a directory above it, is opaque or renamed: what is below
    /// belongs to the user.
    mine: bool,
    /// It mirrors the old image's directory (merge only): removed when left
    /// empty, else given these (the new image's) mode and owner.
    container: Option<Option<Meta>>,
}

/// One walk of the upper: the visitor of crate::walk.
struct Walk<'a, 'h> {
    old: Result<Vec<Manifest>, String>,
    lowers: Lowers<'a>,
    frames: Vec<Frame>,
    trash: Option<OwnedFd>,
    removed: u64,
    report: Report,
    hook: Hook<'h>,
}

impl Walk<'_, '_> {
    /// Classifies one entry, records its line, and removes it when the
    /// verdict and the policy say so. Returns the directory's frame.
    fn visit(
        &mut self,
        path: &[u8],
        st: &rustix::fs::Stat,
        dir: BorrowedFd,
    ) -> Result<Option<Frame>, Error> {
        let name = name_of(path);
        let meta = Meta::of_stat(st);
        let x = scan::overlay_xattrs(dir, name, st);
        let inside = self.frames.last().is_some_and(|f| f.mine);
        let old_meta = match &self.old {
            Ok(ms) => lookup(ms, path),
            Err(_) => None,
        };
        let old = match (&self.old, &old_meta) {
            (Err(_), _) => Old::NoManifest,
            (Ok(_), None) => Old::Absent,
            (Ok(_), Some(m)) => Old::Has(m),
        };
        // A file of the old version's size is read first: equal to it,
        // it is an unchanged copy, removed whatever the new image has, and
        // the lowers are not looked up (their lookups in a large squashfs
        // directory are most of a merge's time).
        let mut read = meta.clone();
        let mut have = false;
        let copy = !inside
            && meta.kind == Kind::File
            && scan::nlink(st) <= 1
            && !x.metacopy
            && old_meta
                .as_ref()
                .is_some_and(|o| o.kind == Kind::File && o.size == meta.size);
        if copy {
            scan::read_content(dir, path, &mut read)?;
            have = true;
        }
        let unchanged = copy && old_meta.as_ref().is_some_and(|o| read.same(o));
        // The new version's contents are read when they can decide: the
        // same size as the upper's or the old version.
        let sizes = [Some(meta.size), old_meta.as_ref().map(|o| o.size)];
        let (new, lower) = if inside || unchanged {
            (None, 0)
        } else {
            match self.lowers.get(path, &|n: &Meta| {
                n.kind == Kind::Symlink || (n.kind == Kind::File && sizes.contains(&Some(n.size)))
            })? {
                Some((m, i)) => (Some(m), i),
                None => (None, 0),
            }
        };
        let mut u = Upper {
            meta: &meta,
            nlink: scan::nlink(st),
            opaque: x.opaque,
            redirect: x.redirect,
            metacopy: x.metacopy,
        };
        if !have && !inside && (needs_crc(&u, old, new.as_ref()) || meta.kind == Kind::Symlink) {
            scan::read_content(dir, path, &mut read)?;
            have = true;
        }
        if have {
            u.meta = &read;
        }
        let meta = u.meta;
        let mut adds = 0u32;
        if x.opaque && !inside && meta.kind == Kind::Dir {
            let had = match &self.old {
                Ok(ms) => ms.iter().flat_map(|m| m.children(path)).collect(),
                Err(_) => Vec::new(),
            };
            adds = self
                .lowers
                .children(path)
                .iter()
                .filter(|n| !had.contains(n))
                .count() as u32;
        }
        let v = classify(&u, inside, old, new.as_ref(), adds);
        let mut class = v.class;
        let mut container = None;
        match (v.action, &self.trash) {
            (Action::Remove, Some(trash)) => {
                let to = self.removed.to_string();
                match rustix::fs::renameat(dir, name, trash.as_fd(), to.as_str()) {
                    Ok(()) => {
                        self.removed += 1;
                        (self.hook)("remove");
                    }
                    Err(e) => {
                        class = Some(Class::Kept);
                        let p = show_path(path);
                        note(&mut self.report, format!("cannot remove {p} ({e}): kept"));
                    }
                }
            }
            // Policy keep: nothing is removed, so nothing is said to be.
            (Action::Remove, None) => class = class.map(|_| Class::Kept),
            (Action::Container, Some(_)) => {
                container = Some(new.filter(|n| n.kind == Kind::Dir && !n.same_mode_owner(meta)));
            }
            _ => {}
        }
        if let Some(class) = class {
            self.report.add(Line {
                class,
                why: v.why,
                news: v.news,
                lower: u8::try_from(lower).unwrap_or(0),
                path: path.to_vec(),
            });
        }
        Ok((meta.kind == Kind::Dir).then_some(Frame {
            mine: inside || x.opaque || x.redirect,
            container,
        }))
    }
}

impl crate::walk::Visitor for Walk<'_, '_> {
    fn enter(&mut self, e: &crate::walk::Entry<'_>) -> crate::walk::Step {
        // A long walk removes nothing for a while: the watchdog is fed at
        // each entry too (one clock read when none is due).
        crate::recovery::watchdog::feed();
        let st = match e.stat() {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return crate::walk::Step::Next,
            Err(err) => {
                let p = show_path(e.path);
                note(&mut self.report, format!("cannot read {p} ({err}): kept"));
                return crate::walk::Step::Next;
            }
        };
        match self.visit(e.path, &st, e.dir) {
            Ok(Some(frame)) => {
                self.frames.push(frame);
                crate::walk::Step::Into
            }
            Ok(None) => crate::walk::Step::Next,
            // What cannot be read cannot be shown to be a copy: it stays.
            Err(err) => {
                note(&mut self.report, format!("{err}: kept"));
                crate::walk::Step::Next
            }
        }
    }

    /// A directory mirroring the old image's: removed if the walk left it
    /// empty, else given the new image's mode and owner.
    fn leave(&mut self, e: &crate::walk::Entry<'_>, _clean: bool) -> crate::walk::After {
        let Some(Frame {
            container: Some(new),
            ..
        }) = self.frames.pop()
        else {
            return crate::walk::After::Done;
        };
        if rustix::fs::unlinkat(e.dir, e.name, AtFlags::REMOVEDIR).is_ok() {
            (self.hook)("dir");
            return crate::walk::After::Done;
        }
        let Some(n) = new else {
            return crate::walk::After::Done;
        };
        // SAFETY: the ids come from lstat(2) of the lower: real ids, never
        // the -1 that from_raw's contract excludes.
        let (uid, gid) = unsafe {
            (
                rustix::fs::Uid::from_raw(n.uid),
                rustix::fs::Gid::from_raw(n.gid),
            )
        };
        let set = crate::walk::open_dir_at(e.dir, e.name).and_then(|d| {
            rustix::fs::fchown(&d, Some(uid), Some(gid))?;
            rustix::fs::fchmod(&d, Mode::from_raw_mode(n.mode))
        });
        match set {
            Ok(()) => (self.hook)("dir"),
            Err(err) => {
                let p = show_path(e.path);
                note(
                    &mut self.report,
                    format!("cannot update directory {p} ({err})"),
                );
            }
        }
        crate::walk::After::Done
    }

    fn problem(&mut self, path: &[u8], p: crate::walk::Problem) {
        let path = show_path(path);
        note(&mut self.report, format!("not walked: {path}: {p}; kept"));
    }
}

/// Step 4 of [`Decision::Upgrade`]: classify every entry of `upper/`
/// against the old manifests and the new lowers; with policy merge, move
/// the unchanged copies to the trash (`.reset/trash/upgrade-N/`: the boot
/// deletes it within its budget, then in the background) and finish the
/// directories. Then `last`, `state`, and `pending` goes. `when`: seconds
/// since 1970. Stops at `deadline` ([`Outcome::Stopped`]).
pub fn run(
    data: &Path,
    lowers: &Lowerdirs,
    up: &Upgrade,
    when: u64,
    deadline: Option<Instant>,
    hook: Hook,
) -> Result<Outcome, Error> {
    let data = open_data(data)?;
    let data = data.as_fd();
    let area = area_of(data)?;
    let mut report = Report {
        old: up.old.clone(),
        new: up.new.clone(),
        policy: up.policy,
        when,
        shown_at: lowers.shown_at.to_vec(),
        ..Report::default()
    };
    if let Some(n) = &up.note {
        note(&mut report, n.clone());
    }
    if up.resume {
        if let Some(Ok(p)) = record::load(area.as_fd(), PENDING, Report::decode)? {
            report.when = p.when;
            report.attempts = p.attempts + 1;
        }
        // A run that wrote its report before the cut only has to finish.
        if let Some(Ok(last)) = record::load(area.as_fd(), LAST, Report::decode)? {
            if last.when == report.when && last.new == report.new {
                return finish(area.as_fd(), last, hook).map(Outcome::Done);
            }
        }
        if report.attempts >= MAX_ATTEMPTS {
            note(
                &mut report,
                format!("stopped after {MAX_ATTEMPTS} interrupted runs: the rest is kept"),
            );
            return finish(area.as_fd(), report, hook).map(Outcome::Done);
        }
        record::write(area.as_fd(), PENDING, &report.encode())?;
        note(
            &mut report,
            "resumed after an interruption: copies removed before it are not listed".into(),
        );
    } else {
        record::write(area.as_fd(), PENDING, &report.encode())?;
        hook("pending");
    }
    let old = old_manifests(area.as_fd(), &up.old);
    if let Err(why) = &old {
        note(
            &mut report,
            format!("no old manifest: {why}; every copy is kept"),
        );
    }
    let upper = open_dir_at(data, OsStr::new("upper"), b"upper")?;
    let trash = match up.policy {
        Policy::Merge => Some(trash_dir(data)?),
        _ => None,
    };
    let mut w = Walk {
        old,
        lowers: Lowers::new(lowers.roots),
        frames: Vec::new(),
        trash,
        removed: 0,
        report,
        hook,
    };
    let end = crate::walk::walk(upper.as_fd(), &crate::walk::Limits::new(deadline), &mut w)
        .map_err(|e| Error::Io {
            step: Step::Walk,
            path: "upper".into(),
            err: e.into(),
        })?
        .end;
    let (report, hook) = (w.report, w.hook);
    // Lost (the upper moved under the walk) or done: what was not seen
    // stays, and the upgrade is closed with what was done.
    if end == crate::walk::End::Deadline {
        return Ok(Outcome::Stopped(report));
    }
    finish(area.as_fd(), report, hook).map(Outcome::Done)
}

/// The end of every upgrade: the report, the new identities, then
/// `pending` goes (in that order: a cut between any two is finished by the
/// next boot without doing anything twice).
fn finish(area: BorrowedFd, report: Report, hook: Hook) -> Result<Report, Error> {
    record::write(area, LAST, &report.encode())?;
    hook("last");
    record::write(area, STATE, &state_of(&report.new).encode())?;
    hook("state");
    record::remove(area, PENDING)?;
    hook("done");
    Ok(report)
}

/// [`Decision::Reset`], first step (skipped when resuming): `pending`,
/// with the last completed reset's number (`Facts::reset_done`).
pub fn begin_reset(data: &Path, up: &Upgrade, when: u64, reset_done: u64) -> Result<(), Error> {
    let area = area_of(open_data(data)?.as_fd())?;
    let r = Report {
        old: up.old.clone(),
        new: up.new.clone(),
        policy: Policy::Reset,
        when,
        reset_after: reset_done,
        ..Report::default()
    };
    record::write(area.as_fd(), PENDING, &r.encode())
}

/// [`Decision::Reset`], last step, once the factory reset is complete:
/// `what` says which (e.g. "factory reset #3, keeping 2 path(s)").
pub fn finish_reset(data: &Path, up: &Upgrade, what: String, hook: Hook) -> Result<Report, Error> {
    let area = area_of(open_data(data)?.as_fd())?;
    let mut r = match record::load(area.as_fd(), PENDING, Report::decode)? {
        Some(Ok(p)) => p,
        _ => Report {
            old: up.old.clone(),
            new: up.new.clone(),
            policy: Policy::Reset,
            ..Report::default()
        },
    };
    note(&mut r, what);
    finish(area.as_fd(), r, hook)
}

/// Step 5, after the boot (a child at nice 19): for each lower without a
/// manifest recorded for its image, copy the one it ships or compute one
/// (once per image; the image itself is never read whole for this), and
/// remove the records of lowers that are gone. Nothing while an upgrade is
/// pending (its old manifests are still needed), nor before the upper
/// follows these images. Everything is passed opened (the job is forked
/// before the switch, which moves the lowers away): `data` the data
/// filesystem's root, `roots` the lowers' roots. Returns what to log.
pub fn background(
    data: BorrowedFd,
    roots: &[BorrowedFd],
    ids: &[Identity],
) -> Result<Vec<String>, Error> {
    let mut log = Vec::new();
    let Some(area) = record::open_area(data, false)? else {
        return Ok(log);
    };
    let area = area.as_fd();
    if record::read(area, PENDING)?.is_some() {
        return Ok(log);
    }
    match record::load(area, STATE, State::decode)? {
        Some(Ok(state)) if state.follows(ids) => {}
        _ => return Ok(log),
    }
    for (n, id) in ids.iter().enumerate() {
        let name = record::manifest_name(n);
        let rec = record::load(area, &name, ManifestRecord::decode)?.and_then(Result::ok);
        if rec.is_some_and(|r| r.id == *id) {
            continue;
        }
        let Some(&root) = roots.get(n) else { continue };
        let content = if id.shipped.is_some() {
            shipped(root).unwrap_or_else(|why| {
                log.push(format!(
                    "lower {n}: the shipped manifest is unusable ({why}); computing one"
                ));
                computed(root)
            })
        } else {
            computed(root)
        };
        match &content {
            Content::None(why) => log.push(format!("lower {n}: no manifest: {why}")),
            Content::Shipped(m) | Content::Computed(m) => log.push(format!(
                "lower {n}: manifest recorded ({} entries)",
                m.len()
            )),
        }
        let rec = ManifestRecord {
            id: id.clone(),
            content,
        };
        record::write(area, &name, &rec.encode())?;
    }
    for n in ids.len()..MAX_MANIFESTS {
        record::remove(area, &record::manifest_name(n))?;
    }
    Ok(log)
}

/// Manifest records looked at (`manifest.0` ...): lowers are few.
const MAX_MANIFESTS: usize = 16;

/// Whether this boot needs [`background`]: the upper does not follow these
/// images yet (first boot, upgrade), or a lower's manifest record is
/// missing, of another image, or left over. Decided from the records'
/// headers ([`Facts::manifests`]), so that a normal boot forks nothing.
pub fn needs_background(f: &Facts, ids: &[Identity]) -> bool {
    let settled =
        matches!(&f.state, Ok(Some(s)) if s.follows(ids)) && matches!(f.pending, Ok(None));
    !settled
        || f.manifests.len() != ids.len()
        || f.manifests
            .iter()
            .zip(ids)
            .any(|(m, id)| m.as_ref() != Some(id))
}

fn shipped(root: BorrowedFd) -> Result<Content, String> {
    let fd = identity::open_shipped(root).map_err(|e| e.to_string())?;
    let b =
        crate::probe::read_up_to(&std::fs::File::from(fd), 16 << 20).map_err(|e| e.to_string())?;
    Manifest::from_shipped(&b)
        .map(Content::Shipped)
        .map_err(|e| e.to_string())
}

fn computed(root: BorrowedFd) -> Content {
    match manifest::compute(root, None) {
        Ok(m) => Content::Computed(m),
        Err(e) => Content::None(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
