//! Carrying out a reset request on the mounted data filesystem, before the
//! overlay exists. Every step is a rename or an unlink on directory fds
//! opened with `O_NOFOLLOW`, through the bounded walker ([`crate::walk`]):
//! a symlink in the upper is removed, never followed, no step crosses into
//! another mount, and no tree (deep, wide, full of FIFOs, devices or
//! immutable files) costs more than a few fds, a little memory and, for the
//! deletion, the time it is given.
//!
//! Steps, each idempotent, so a boot after a power cut at any instant simply
//! runs them again (the request stays until the last one):
//! 1. `keep`: entries of `upper/` matching the keep list move (rename) to
//!    `.reset/keep-SEQ/` (skipped once step 2 has happened); their parents
//!    are made there with the upper's owner and mode (fchown/fchmod on the
//!    directory opened `O_NOFOLLOW`, never through a symlink). Passes run
//!    until one moves nothing. An entry that cannot be moved (EPERM: an
//!    immutable file, or one in an append-only directory) is reported and
//!    goes to the trash with the rest, where it stays (undeletable too). A
//!    part of the upper the keep walk cannot examine fails the step: nothing
//!    is trashed, the request stays;
//! 2. `trash`: `upper/` and `work/` are renamed to `.reset/trash/SEQ-upper`,
//!    `SEQ-work` (each only if its trash name does not exist yet);
//! 3. `fresh`: empty `upper/` and `work/` are created;
//! 4. `restore`: `.reset/keep-SEQ/` is merged back into `upper/` by renames
//!    (passes until one moves nothing; the keep area must then hold only
//!    empty directories, or the step fails and nothing of it is deleted);
//! 5. `done`: the `done` record gets SEQ, the keep area goes, then the
//!    request is removed (a request left behind is stale: see [`Pending`]).
//!
//! A per-path revert (a request with `revert` patterns, `overlay-reset
//! --path`) is one step instead: the entries of `upper/` it matches move
//! (rename) into `.reset/trash/SEQ-revert/` (hook `trash` after each), in
//! passes until one moves nothing; then `done` as above. Nothing else of
//! the upper is touched; a cut resumes it the same way.
//!
//! The trash is deleted afterwards ([`ResetArea::delete_trash`]), within a
//! time budget at boot and by a low-priority background process for the
//! rest; what a power cut leaves of it, and what cannot be deleted
//! (reported: an immutable file, a mount point), stays for the next boot.
//!
//! The records are read and written through [`crate::fsio`]: regular files
//! only, never blocking, bounded ([`MAX_REQUEST`], [`DONE_SIZE`]), written
//! atomically, and a request the reader would refuse is never written.

use super::{
    decode_done, encode_done, KeepSet, RecordError, Request, DONE, DONE_SIZE, MAX_REQUEST, REQUEST,
    RESET_DIR,
};
use crate::fsio::{self, RecordIoError};
use crate::walk::{self, Entry, Kind, Limits, Problem, Removal, Removed, Step, Visitor};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{CStr, OsStr};
use std::fmt;
use std::path::Path;
use std::time::Instant;

/// The most passes of a step that moves entries (keep, restore, revert)
/// until one moves nothing: a filesystem may shift entries as others leave,
/// which a few passes settle; more means no progress, and the boot must go
/// on.
pub const MAX_PASSES: u32 = 16;

/// Whether `name` in `dir` is the very inode `st` (lstat): a rename that a
/// power cut struck inside, on a filesystem that renames in two writes
/// (JFFS2 on NOR: the new name's dirent, then the old one marked obsolete),
/// leaves one inode under both names, and rename(2) between two names of one
/// inode does nothing at all.
fn same_inode(dir: BorrowedFd, name: &CStr, st: &rustix::fs::Stat) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|t| t.st_dev == st.st_dev && t.st_ino == st.st_ino)
}

/// Makes directory `name` in `parent` (or finds it) with the owner and mode
/// of `st` (chown/chmod on the directory opened `O_NOFOLLOW`, never through
/// a symlink).
fn make_like(parent: BorrowedFd, name: &OsStr, st: &rustix::fs::Stat) -> Result<(), Errno> {
    let dir = walk::ensure_dir_at(parent, name, 0o700)?;
    // SAFETY: the ids come from stat(2), so they are real ids, never the
    // -1 that from_raw's contract excludes.
    let (uid, gid) = unsafe {
        (
            rustix::fs::Uid::from_raw(st.st_uid),
            rustix::fs::Gid::from_raw(st.st_gid),
        )
    };
    rustix::fs::fchown(&dir, Some(uid), Some(gid))?;
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(st.st_mode & 0o7777))
}

/// `NAME.1`, `NAME.2`, ...: the first that `dir` does not have.
fn free_name(dir: BorrowedFd, name: &str) -> Result<String, WipeError> {
    for n in 1..=u32::from(u16::MAX) {
        let candidate = format!("{name}.{n}");
        if stat_at(dir, &candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(WipeError::Io {
        step: "trash",
        what: format!("{name}.N"),
        err: Errno::EXIST,
    })
}

/// Called after every change with the step's name: the crash-test hook.
pub type Hook<'a> = &'a mut dyn FnMut(&str);

/// How many kept paths a [`Report`] names (the rest are counted).
pub const REPORT_PATHS: usize = 8;

/// Why a step of the wipe failed. The request stays: the next boot resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WipeError {
    /// A syscall of `step` failed on `what`.
    Io {
        step: &'static str,
        what: String,
        err: Errno,
    },
    /// A record file could not be read or written.
    Record {
        name: &'static str,
        err: RecordIoError,
    },
    /// The request would be refused by its reader: not written.
    Request(RecordError),
    /// Part of a tree the step must see whole could not be walked.
    Walk {
        step: &'static str,
        path: String,
        problem: Problem,
    },
    /// The keep area is not empty after the restore: it is left as it is.
    KeepLeft { path: String },
    /// Removing an entry (or the empty keep area) left something.
    Remove {
        step: &'static str,
        removal: Removal,
    },
    /// A factory reset is pending: a revert would replace its request.
    ResetPending { seq: u64 },
    /// Pass after pass of `step` still moved entries: given up.
    Unsettled { step: &'static str },
}

impl fmt::Display for WipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WipeError::Io { step, what, err } => write!(f, "{step}: {what}: {err}"),
            WipeError::Record { name, err } => write!(f, "{RESET_DIR}/{name}: {err}"),
            WipeError::Request(e) => write!(f, "{e}"),
            WipeError::Walk {
                step,
                path,
                problem,
            } => write!(f, "{step}: {path}: {problem}"),
            WipeError::KeepLeft { path } => write!(
                f,
                "restore: {path} is still in the keep area after the restore; nothing of it is deleted"
            ),
            WipeError::Remove { step, removal } => write!(f, "{step}: {removal}"),
            WipeError::Unsettled { step } => write!(
                f,
                "{step}: still moving entries after {MAX_PASSES} passes; given up"
            ),
            WipeError::ResetPending { seq } => write!(
                f,
                "factory reset #{seq} is pending (it removes those paths too; overlay-reset --cancel withdraws it)"
            ),
        }
    }
}

fn io_err<'a>(step: &'static str, what: &'a [u8]) -> impl FnOnce(Errno) -> WipeError + 'a {
    move |err| WipeError::Io {
        step,
        what: walk::escape(what, 200),
        err,
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, WipeError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", path.as_os_str().as_encoded_bytes()))
}

/// lstat-like: `None` when absent.
fn stat_at(dir: BorrowedFd, name: &str) -> Result<Option<rustix::fs::Stat>, WipeError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err("stat", name.as_bytes())(e)),
    }
}

fn ensure_dir(dir: BorrowedFd, name: &str, mode: u32) -> Result<OwnedFd, WipeError> {
    walk::ensure_dir_at(dir, OsStr::new(name), mode).map_err(io_err("mkdir", name.as_bytes()))
}

/// The parent path of a walk path (`""` for the root's entries).
fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.get(..i).unwrap_or(&[]),
        None => &[],
    }
}

/// A directory of a mirror tree (the keep area, the new upper) at the
/// parent path of the entries being visited: re-opened (from the mirror's
/// root, never following a symlink) only when the walk moves to another
/// directory. One fd.
struct Mirror<'a> {
    root: BorrowedFd<'a>,
    at: Option<(Vec<u8>, OwnedFd)>,
}

impl<'a> Mirror<'a> {
    fn new(root: BorrowedFd<'a>) -> Mirror<'a> {
        Mirror { root, at: None }
    }

    fn dir(&mut self, path: &[u8]) -> Result<BorrowedFd<'_>, Errno> {
        if self.at.as_ref().is_none_or(|(p, _)| p != path) {
            self.at = None;
            let fd = walk::open_beneath(self.root, path)?;
            self.at = Some((path.to_vec(), fd));
        }
        match &self.at {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(Errno::NOENT),
        }
    }
}

/// The reset area of a data filesystem mounted at some path.
pub struct ResetArea {
    root: OwnedFd,
    area: OwnedFd,
}

/// What a data filesystem says about resets.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    None,
    Request(Request),
    /// A request not newer than the last completed reset: left over from a
    /// reset that finished (its removal was cut short). Never acted on.
    Stale(u64),
    Corrupt(RecordError),
}

/// Summary of a carried-out reset.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries moved aside and back because the keep list matched them:
    /// the first [`REPORT_PATHS`], then `(and N more)`; then the first two
    /// entries the list matched that could not be moved, as
    /// `PATH (not kept: WHY)`, then `(and N more not kept)`.
    pub kept: Vec<String>,
    /// Entries kept, in all.
    pub kept_count: u64,
    /// Entries matched but not kept (left in the upper, so in the trash).
    pub not_kept: u64,
}

impl Report {
    fn add(&mut self, path: &[u8], not_kept: Option<Errno>) {
        let mut line = String::from("/");
        walk::escape_into(&mut line, path);
        match not_kept {
            None => self.kept_count += 1,
            Some(e) => {
                self.not_kept += 1;
                line.push_str(&format!(" (not kept: {e})"));
            }
        }
        if self.kept.len() < REPORT_PATHS {
            self.kept.push(line);
        } else {
            let more = self.kept_count + self.not_kept - REPORT_PATHS as u64;
            self.kept.truncate(REPORT_PATHS);
            self.kept.push(format!("(and {more} more)"));
        }
    }
}

/// How a trash deletion ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrashEnd {
    /// Nothing is left.
    Empty,
    /// The deadline came first: the rest can go in the background.
    Deadline,
    /// What is left cannot be deleted now (reported); the next boot tries again.
    Left(Removal),
}

impl fmt::Display for TrashEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrashEnd::Empty => write!(f, "the trash is empty"),
            TrashEnd::Deadline => write!(f, "stopped at the deadline"),
            TrashEnd::Left(r) => write!(f, "{r}"),
        }
    }
}

/// A walk that stopped at `path` (shown escaped, at most 200 bytes).
fn walk_error(step: &'static str, path: &[u8], problem: Problem) -> WipeError {
    WipeError::Walk {
        step,
        path: walk::escape(path, 200),
        problem,
    }
}

/// The keep walk: moves what the keep list matches into the keep area.
struct Keeper<'a, 'h> {
    set: &'a KeepSet,
    keep: Mirror<'a>,
    report: &'a mut Report,
    /// Entries matched that cannot be moved, in this pass (each pass meets
    /// them again: only the last pass's go into the report).
    not_kept: &'a mut Report,
    hook: &'a mut dyn FnMut(&'h str),
    moved: u64,
    err: Option<WipeError>,
}

impl Keeper<'_, '_> {
    fn fail(&mut self, e: WipeError) -> Step {
        self.err.get_or_insert(e);
        Step::Stop
    }

    /// Makes the keep area's copy of directory `e` (owner and mode of the
    /// upper's: a kept ~/.ssh must leave ~ writable by its user).
    fn mirror_dir(&mut self, e: &Entry<'_>) -> Result<(), WipeError> {
        let st = e.stat().map_err(io_err("keep: stat", e.path))?;
        let parent = self
            .keep
            .dir(parent_of(e.path))
            .map_err(io_err("keep: open the keep area", parent_of(e.path)))?;
        make_like(parent, OsStr::from_bytes(e.name_bytes()), &st)
            .map_err(io_err("keep: mkdir", e.path))
    }

    /// Moves non-directory `e` (or, past the walk's depth, a directory)
    /// into the keep area.
    fn take(&mut self, e: &Entry<'_>) -> Step {
        let to = match self.keep.dir(parent_of(e.path)) {
            Ok(fd) => fd,
            Err(err) => return self.fail(io_err("keep: open the keep area", e.path)(err)),
        };
        if let Ok(st) = e.stat() {
            if same_inode(to, e.name, &st) {
                // Moved already by a rename a cut struck inside: only the
                // old name is left to go.
                return match rustix::fs::unlinkat(e.dir, e.name, AtFlags::empty()) {
                    Ok(()) => {
                        self.report.add(e.path, None);
                        Step::Next
                    }
                    Err(err) => self.fail(io_err("keep: unlink the old name", e.path)(err)),
                };
            }
        }
        match rustix::fs::renameat(e.dir, e.name, to, e.name) {
            Ok(()) => {
                self.moved += 1;
                self.report.add(e.path, None);
                (self.hook)("keep");
            }
            Err(Errno::NOENT) => {}
            // Immutable, or in an append-only directory: it stays (and
            // so it stays in the trash too), said in the report.
            Err(err) => self.not_kept.add(e.path, Some(err)),
        }
        Step::Next
    }
}

use std::os::unix::ffi::OsStrExt;

impl<'h> Visitor for Keeper<'_, 'h> {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        if self.err.is_some() {
            return Step::Stop;
        }
        if self.set.covers(e.path) {
            if e.kind == Kind::Dir {
                // A kept directory is made in the keep area and its
                // entries moved, never the directory itself: a directory
                // renamed across a cut could be left under both names,
                // which no call can undo and a deletion under one name
                // would empty.
                return match self.mirror_dir(e) {
                    Ok(()) => Step::Into,
                    Err(err) => self.fail(err),
                };
            }
            self.take(e)
        } else if e.kind == Kind::Dir && self.set.may_keep_below(e.path) {
            match self.mirror_dir(e) {
                Ok(()) => Step::Into,
                Err(err) => self.fail(err),
            }
        } else {
            Step::Next
        }
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> Step {
        // Only below a kept directory (patterns are at most
        // MAX_PATTERN_DEPTH deep): the deep part moves whole.
        if self.set.covers(e.path) {
            return self.take(e);
        }
        self.fail(walk_error("keep", e.path, Problem::TooDeep))
    }

    fn problem(&mut self, path: &[u8], p: Problem) {
        // A part that may hold kept files was not examined: stop, trash nothing.
        self.err.get_or_insert(walk_error("keep", path, p));
    }
}

/// The revert walk: moves what the list matches into the trash, under
/// names that are free there (`0`, `1`, ...).
struct Reverter<'a, 'h> {
    set: &'a KeepSet,
    bin: BorrowedFd<'a>,
    next: u64,
    report: &'a mut Report,
    /// Matched but cannot be moved, this pass (as [`Keeper::not_kept`]).
    not_moved: &'a mut Report,
    hook: &'a mut dyn FnMut(&'h str),
    moved: u64,
    err: Option<WipeError>,
}

impl Reverter<'_, '_> {
    fn fail(&mut self, e: WipeError) -> Step {
        self.err.get_or_insert(e);
        Step::Stop
    }

    /// A name not taken in the trash (a cut run may have used some).
    fn free_name(&mut self) -> Result<String, WipeError> {
        loop {
            let name = self.next.to_string();
            self.next += 1;
            if stat_at(self.bin, &name)?.is_none() {
                return Ok(name);
            }
        }
    }
}

impl<'h> Visitor for Reverter<'_, 'h> {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        if self.err.is_some() {
            return Step::Stop;
        }
        if self.set.keeps(e.path) {
            let to = match self.free_name() {
                Ok(n) => n,
                Err(err) => return self.fail(err),
            };
            match rustix::fs::renameat(e.dir, e.name, self.bin, to.as_str()) {
                Ok(()) => {
                    self.moved += 1;
                    self.report.add(e.path, None);
                    (self.hook)("trash");
                }
                Err(Errno::NOENT) => {}
                Err(err) => self.not_moved.add(e.path, Some(err)),
            }
            Step::Next
        } else if e.kind == Kind::Dir && self.set.may_keep_below(e.path) {
            Step::Into
        } else {
            Step::Next
        }
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> Step {
        self.fail(walk_error("revert", e.path, Problem::TooDeep))
    }

    fn problem(&mut self, path: &[u8], p: Problem) {
        self.err.get_or_insert(walk_error("revert", path, p));
    }
}

/// The restore walk: merges the keep area into the new upper.
struct Restorer<'a, 'h> {
    upper: Mirror<'a>,
    hook: &'a mut dyn FnMut(&'h str),
    moved: u64,
    err: Option<WipeError>,
}

impl Restorer<'_, '_> {
    /// Merges `e` into the upper; `whole`: past the walk's depth, a
    /// directory moves as it is.
    fn merge(&mut self, e: &Entry<'_>, whole: bool) -> Result<Step, WipeError> {
        let Restorer { upper, hook, .. } = self;
        let to = upper
            .dir(parent_of(e.path))
            .map_err(io_err("restore: open the upper", parent_of(e.path)))?;
        let there = match rustix::fs::statat(to, e.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(Kind::from_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(err) => return Err(io_err("restore: stat", e.path)(err)),
        };
        if there.is_some() {
            let st = e.stat().map_err(io_err("restore: stat", e.path))?;
            if same_inode(to, e.name, &st) {
                // Moved already by a rename a cut struck inside: only the
                // keep area's name is left to go. (A directory under both
                // names stays, and the keep area with it: never emptied.)
                if e.kind != Kind::Dir {
                    rustix::fs::unlinkat(e.dir, e.name, AtFlags::empty())
                        .map_err(io_err("restore: unlink the old name", e.path))?;
                }
                return Ok(Step::Next);
            }
        }
        match there {
            // Parents made by an earlier, cut-short run: merged.
            Some(Kind::Dir) if e.kind == Kind::Dir && !whole => return Ok(Step::Into),
            // Past the walk's depth the directory moves whole, over the
            // empty one just made for it (a full one: ENOTEMPTY, the step
            // fails, nothing lost).
            Some(Kind::Dir) if e.kind == Kind::Dir => {}
            // A directory is made and its entries moved, never the
            // directory itself (see Keeper::enter).
            None if e.kind == Kind::Dir && !whole => {
                let st = e.stat().map_err(io_err("restore: stat", e.path))?;
                make_like(to, OsStr::from_bytes(e.name_bytes()), &st)
                    .map_err(io_err("restore: mkdir", e.path))?;
                return Ok(Step::Into);
            }
            // Only after a cut between a rename and its hook: the kept
            // entry wins over what stands in its place.
            Some(_) => {
                let removal = walk::remove_tree_at(
                    to,
                    OsStr::from_bytes(e.name_bytes()),
                    &Limits::default(),
                    &mut || hook("delete"),
                );
                if removal.end != Removed::All {
                    return Err(WipeError::Remove {
                        step: "restore",
                        removal,
                    });
                }
            }
            None => {}
        }
        rustix::fs::renameat(e.dir, e.name, to, e.name)
            .map_err(io_err("restore: rename", e.path))?;
        self.moved += 1;
        (self.hook)("restore");
        Ok(Step::Next)
    }
}

impl Visitor for Restorer<'_, '_> {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        if self.err.is_some() {
            return Step::Stop;
        }
        match self.merge(e, false) {
            Ok(s) => s,
            Err(err) => {
                self.err = Some(err);
                Step::Stop
            }
        }
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> Step {
        match self.merge(e, true) {
            Ok(s) => s,
            Err(err) => {
                self.err = Some(err);
                Step::Stop
            }
        }
    }

    fn problem(&mut self, path: &[u8], p: Problem) {
        self.err.get_or_insert(walk_error("restore", path, p));
    }
}

/// Finds a non-directory in a tree that must hold only empty directories.
struct NonDir(Option<Vec<u8>>);

impl Visitor for NonDir {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        if e.kind == Kind::Dir {
            Step::Into
        } else {
            self.0 = Some(e.path.to_vec());
            Step::Stop
        }
    }
}

/// A walk that must end `Done` and clean, or `err` says why not.
fn whole(
    step: &'static str,
    out: Result<walk::Outcome, Errno>,
    err: Option<WipeError>,
) -> Result<(), WipeError> {
    if let Some(e) = err {
        return Err(e);
    }
    let out = out.map_err(io_err(step, b"."))?;
    if out.end != walk::End::Done {
        return Err(WipeError::Walk {
            step,
            path: ".".into(),
            problem: Problem::Lost,
        });
    }
    Ok(())
}

impl ResetArea {
    /// Opens (creating `.reset/` if asked) the reset area of the data fs at
    /// `data`. `.reset` must be a directory on that filesystem (never a
    /// symlink, never a mount point).
    pub fn open(data: &Path, create: bool) -> Result<ResetArea, WipeError> {
        let root = open_dir(data)?;
        let area = if create {
            ensure_dir(root.as_fd(), RESET_DIR, 0o700)?
        } else {
            walk::open_subdir(root.as_fd(), OsStr::new(RESET_DIR))
                .map_err(io_err("open", RESET_DIR.as_bytes()))?
        };
        Ok(ResetArea { root, area })
    }

    fn read(&self, name: &'static str, max: usize) -> Result<Option<Vec<u8>>, RecordIoError> {
        fsio::read_at(self.area.as_fd(), name, max)
    }

    /// The pending request, if any, checked against the `done` record. A
    /// request file that is not a record (a FIFO, a device, too large) is
    /// `Corrupt`, never opened for reading.
    pub fn pending(&self) -> Result<Pending, WipeError> {
        let bytes = match self.read(REQUEST, MAX_REQUEST) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Pending::None),
            Err(e @ (RecordIoError::NotRegular(_) | RecordIoError::TooLarge { .. })) => {
                return Ok(Pending::Corrupt(RecordError::File(e)))
            }
            Err(err) => return Err(WipeError::Record { name: REQUEST, err }),
        };
        let req = match Request::decode(&bytes) {
            Ok(r) => r,
            Err(e) => return Ok(Pending::Corrupt(e)),
        };
        match self.last_done()? {
            Some(done) if req.seq <= done => Ok(Pending::Stale(req.seq)),
            _ => Ok(Pending::Request(req)),
        }
    }

    /// The seq of the last completed reset (a corrupt record counts as none).
    pub fn last_done(&self) -> Result<Option<u64>, WipeError> {
        match self.read(DONE, DONE_SIZE) {
            Ok(b) => Ok(b.and_then(|b| decode_done(&b).ok())),
            Err(RecordIoError::NotRegular(_) | RecordIoError::TooLarge { .. }) => Ok(None),
            Err(err) => Err(WipeError::Record { name: DONE, err }),
        }
    }

    /// Records a request for the next boot; its seq follows the last reset.
    /// A request its reader would refuse (a keep list over [`super::MAX_PAYLOAD`],
    /// a bad pattern) is refused here and nothing is written.
    pub fn write_request(&self, keep: Vec<String>) -> Result<Request, WipeError> {
        let prev = match self.pending()? {
            Pending::Request(r) => r.seq,
            _ => 0,
        };
        let seq = prev.max(self.last_done()?.unwrap_or(0)) + 1;
        let req = Request {
            seq,
            keep,
            revert: Vec::new(),
        };
        let bytes = req.encode().map_err(WipeError::Request)?;
        fsio::write_atomic(self.area.as_fd(), REQUEST, &bytes, MAX_REQUEST)
            .map_err(|err| WipeError::Record { name: REQUEST, err })?;
        Ok(req)
    }

    /// Records a per-path revert for the next boot: `paths` (patterns) and
    /// those of a revert already pending; refused while a factory reset
    /// is pending (it would be replaced; cancel it first).
    pub fn write_revert(&self, paths: Vec<String>) -> Result<Request, WipeError> {
        let (prev, mut revert) = match self.pending()? {
            Pending::Request(r) if r.revert.is_empty() => {
                return Err(WipeError::ResetPending { seq: r.seq })
            }
            Pending::Request(r) => (r.seq, r.revert),
            _ => (0, Vec::new()),
        };
        for p in paths {
            if !revert.contains(&p) {
                revert.push(p);
            }
        }
        let seq = prev.max(self.last_done()?.unwrap_or(0)) + 1;
        let req = Request {
            seq,
            keep: Vec::new(),
            revert,
        };
        let bytes = req.encode().map_err(WipeError::Request)?;
        fsio::write_atomic(self.area.as_fd(), REQUEST, &bytes, MAX_REQUEST)
            .map_err(|err| WipeError::Record { name: REQUEST, err })?;
        Ok(req)
    }

    /// Removes the request (cancel, corrupt or stale record); true if there was one.
    pub fn remove_request(&self) -> Result<bool, WipeError> {
        match rustix::fs::unlinkat(self.area.as_fd(), REQUEST, AtFlags::empty()) {
            Ok(()) => {
                rustix::fs::fsync(&self.area).map_err(io_err("fsync", RESET_DIR.as_bytes()))?;
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err("remove", REQUEST.as_bytes())(e)),
        }
    }

    /// Steps 1-5 (see the module doc), or the revert for a request with
    /// `revert` patterns. Safe to call again after a cut at any point.
    pub fn carry_out(&self, req: &Request, hook: Hook) -> Result<Report, WipeError> {
        if !req.revert.is_empty() {
            return self.revert(req, hook);
        }
        let root = self.root.as_fd();
        let area = self.area.as_fd();
        let keep_name = format!("keep-{}", req.seq);
        let trash_upper = format!("{}-upper", req.seq);
        let trash_work = format!("{}-work", req.seq);
        let trash = ensure_dir(area, "trash", 0o700)?;
        let keep_dir = ensure_dir(area, &keep_name, 0o700)?;
        let mut report = Report::default();
        let syncfs = || rustix::fs::syncfs(root).map_err(io_err("syncfs", b"."));

        // 1. keep: only while the old upper is still in place; passes until
        // one moves nothing (a filesystem may shift entries as others leave).
        if stat_at(trash.as_fd(), &trash_upper)?.is_none() {
            if let Ok(upper) = walk::open_subdir(root, OsStr::new("upper")) {
                let set = KeepSet::new(&req.keep);
                for pass in 1.. {
                    if pass > MAX_PASSES {
                        return Err(WipeError::Unsettled { step: "keep" });
                    }
                    let mut not_kept = Report::default();
                    let mut k = Keeper {
                        set: &set,
                        keep: Mirror::new(keep_dir.as_fd()),
                        report: &mut report,
                        not_kept: &mut not_kept,
                        hook: &mut *hook,
                        moved: 0,
                        err: None,
                    };
                    let out = walk::walk(upper.as_fd(), &Limits::default(), &mut k);
                    let (moved, err) = (k.moved, k.err.take());
                    whole("keep", out, err)?;
                    if moved == 0 {
                        // The last pass met every entry that cannot be moved.
                        report.not_kept = not_kept.not_kept;
                        report.kept.extend(not_kept.kept.into_iter().take(2));
                        if not_kept.not_kept > 2 {
                            let more = not_kept.not_kept - 2;
                            report.kept.push(format!("(and {more} more not kept)"));
                        }
                        break;
                    }
                }
            }
        }
        syncfs()?;
        // 2. trash: each rename at most once per request; a rename a cut
        // struck inside left the directory under both names (see
        // [`same_inode`]): its old name moves into the trash too, under a
        // name of its own, so that `fresh` makes a new one.
        for (dir, trash_name) in [("upper", &trash_upper), ("work", &trash_work)] {
            match (stat_at(trash.as_fd(), trash_name)?, stat_at(root, dir)?) {
                (None, Some(_)) => {
                    rustix::fs::renameat(root, dir, trash.as_fd(), trash_name.as_str())
                        .map_err(io_err("trash", dir.as_bytes()))?;
                    hook("trash");
                }
                (Some(t), Some(d)) if t.st_dev == d.st_dev && t.st_ino == d.st_ino => {
                    let spare = free_name(trash.as_fd(), trash_name)?;
                    rustix::fs::renameat(root, dir, trash.as_fd(), spare.as_str())
                        .map_err(io_err("trash: the old name", dir.as_bytes()))?;
                    hook("trash");
                }
                _ => {}
            }
        }
        // 3. fresh
        let upper = ensure_dir(root, "upper", 0o755)?;
        ensure_dir(root, "work", 0o755)?;
        syncfs()?;
        hook("fresh");
        // 4. restore, in passes until one moves nothing; then the keep area
        // must hold only (empty) directories.
        for pass in 1.. {
            if pass > MAX_PASSES {
                return Err(WipeError::Unsettled { step: "restore" });
            }
            let mut r = Restorer {
                upper: Mirror::new(upper.as_fd()),
                hook: &mut *hook,
                moved: 0,
                err: None,
            };
            let out = walk::walk(keep_dir.as_fd(), &Limits::default(), &mut r);
            let (moved, err) = (r.moved, r.err.take());
            whole("restore", out, err)?;
            if moved == 0 {
                break;
            }
        }
        let mut left = NonDir(None);
        let out = walk::walk(keep_dir.as_fd(), &Limits::default(), &mut left);
        if let Some(p) = left.0 {
            return Err(WipeError::KeepLeft {
                path: walk::escape(&p, 200),
            });
        }
        whole("restore", out, None)?;
        syncfs()?;
        // 5. done, then the request goes.
        fsio::write_atomic(area, DONE, &encode_done(req.seq), DONE_SIZE)
            .map_err(|err| WipeError::Record { name: DONE, err })?;
        hook("done");
        // The (now empty) keep area goes before the request, so that a cut
        // between the two leaves a stale request, which finish_stale clears.
        drop(keep_dir);
        self.remove_keep_area(&keep_name, hook)?;
        self.remove_request()?;
        hook("clear");
        Ok(report)
    }

    /// A per-path revert: what `req.revert` matches in `upper/` goes to
    /// `.reset/trash/SEQ-revert/`, then `done`, then the request goes. The
    /// report names what was removed (`kept` is that list here).
    fn revert(&self, req: &Request, hook: Hook) -> Result<Report, WipeError> {
        let root = self.root.as_fd();
        let area = self.area.as_fd();
        let trash = ensure_dir(area, "trash", 0o700)?;
        let bin = ensure_dir(trash.as_fd(), &format!("{}-revert", req.seq), 0o700)?;
        let mut report = Report::default();
        if let Ok(upper) = walk::open_subdir(root, OsStr::new("upper")) {
            let set = KeepSet::new(&req.revert);
            let mut next = 0;
            for pass in 1.. {
                if pass > MAX_PASSES {
                    return Err(WipeError::Unsettled { step: "revert" });
                }
                let mut not_moved = Report::default();
                let mut r = Reverter {
                    set: &set,
                    bin: bin.as_fd(),
                    next,
                    report: &mut report,
                    not_moved: &mut not_moved,
                    hook: &mut *hook,
                    moved: 0,
                    err: None,
                };
                let out = walk::walk(upper.as_fd(), &Limits::default(), &mut r);
                let (moved, err) = (r.moved, r.err.take());
                next = r.next;
                whole("revert", out, err)?;
                if moved == 0 {
                    report.not_kept = not_moved.not_kept;
                    report.kept.extend(not_moved.kept.into_iter().take(2));
                    break;
                }
            }
        }
        rustix::fs::syncfs(root).map_err(io_err("syncfs", b"."))?;
        fsio::write_atomic(area, DONE, &encode_done(req.seq), DONE_SIZE)
            .map_err(|err| WipeError::Record { name: DONE, err })?;
        hook("done");
        self.remove_request()?;
        hook("clear");
        Ok(report)
    }

    fn remove_keep_area(&self, name: &str, hook: Hook) -> Result<(), WipeError> {
        let removal = walk::remove_tree_at(
            self.area.as_fd(),
            OsStr::new(name),
            &Limits::default(),
            &mut || hook("delete"),
        );
        match removal.end {
            Removed::All => Ok(()),
            _ => Err(WipeError::Remove {
                step: "done",
                removal,
            }),
        }
    }

    /// A stale request (its reset completed, a cut came before its removal):
    /// remove it and what the reset left of its keep area (empty
    /// directories: the done record is written after the restore). Nothing
    /// is wiped.
    pub fn finish_stale(&self, seq: u64, hook: Hook) -> Result<(), WipeError> {
        self.remove_request()?;
        self.remove_keep_area(&format!("keep-{seq}"), hook)
    }

    /// Deletes the trash until it is empty, `deadline` passes, or what is
    /// left cannot be deleted (reported in [`TrashEnd::Left`], never retried
    /// in a loop: the next boot or background run tries again). `removed`
    /// counts the entries deleted; `hook` gets `delete` after each.
    pub fn delete_trash(
        &self,
        deadline: Option<Instant>,
        removed: &mut u64,
        hook: Hook,
    ) -> Result<TrashEnd, WipeError> {
        let trash = match walk::open_subdir(self.area.as_fd(), OsStr::new("trash")) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(TrashEnd::Empty),
            Err(e) => return Err(io_err("open", b"trash")(e)),
        };
        let r = walk::remove_contents(trash.as_fd(), &Limits::new(deadline), &mut || {
            *removed += 1;
            hook("delete");
        });
        Ok(match r.end {
            Removed::All => TrashEnd::Empty,
            Removed::Deadline => TrashEnd::Deadline,
            Removed::Left | Removed::Lost => TrashEnd::Left(r),
        })
    }

    /// Whether there is trash left to delete.
    pub fn has_trash(&self) -> bool {
        walk::open_subdir(self.area.as_fd(), OsStr::new("trash"))
            .and_then(|t| walk::is_empty(t.as_fd()))
            .is_ok_and(|empty| !empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use crate::walk::tests::{
        nest, set_attr, with_fd_limit, Mounted, FS_APPEND_FL, FS_IMMUTABLE_FL,
    };
    use rustix::fs::FileType;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn mknod(p: &Path, t: FileType) {
        rustix::fs::mknodat(rustix::fs::CWD, p, t, Mode::from_raw_mode(0o600), 0).unwrap();
    }

    /// An upper with files, hidden ones, nested dirs, symlinks pointing out
    /// of it, a FIFO and a socket (one of them kept), a non-UTF-8 name, and
    /// a nest deeper than the walker's depth limit.
    fn data_fs(d: &TempDir) -> std::path::PathBuf {
        let data = d.path().join("data");
        d.write("data/upper/etc/config/network", "net");
        d.write("data/upper/etc/config/wireless", "wifi");
        d.write("data/upper/etc/dropbear/key1", "k1");
        d.write("data/upper/etc/dropbear/key2", "k2");
        d.write("data/upper/.hidden", "h");
        d.write("data/upper/root/.ssh/authorized_keys", "a");
        d.write("data/upper/var/deep/a/b/c/file", "x");
        d.write("data/work/work/x", "");
        d.write("outside/precious", "must stay");
        symlink(d.path().join("outside"), data.join("upper/link-to-outside")).unwrap();
        symlink(
            d.path().join("outside/precious"),
            data.join("upper/etc/config/link-file"),
        )
        .unwrap();
        mknod(&data.join("upper/etc/dropbear/fifo"), FileType::Fifo);
        mknod(&data.join("upper/var/fifo"), FileType::Fifo);
        let sock = std::os::unix::net::UnixListener::bind(data.join("upper/var/sock")).unwrap();
        drop(sock);
        std::fs::write(
            data.join("upper/etc/dropbear")
                .join(OsStr::from_bytes(b"caf\xe9")),
            "latin-1",
        )
        .unwrap();
        nest(&data.join("upper/var"), "n", 1100);
        data
    }

    fn tree(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let rel = e
                    .path()
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &e.path(), out);
                } else {
                    out.push(rel);
                }
            }
        }
        walk(p, p, &mut out);
        out.sort_unstable();
        out
    }

    fn keep() -> Vec<String> {
        vec![
            "/etc/config/network".into(),
            "/etc/dropbear/*".into(),
            "/nonexistent".into(),
        ]
    }

    const KEPT_TREE: [&str; 8] = [
        "etc/",
        "etc/config/",
        "etc/config/network",
        "etc/dropbear/",
        "etc/dropbear/caf\u{fffd}",
        "etc/dropbear/fifo",
        "etc/dropbear/key1",
        "etc/dropbear/key2",
    ];

    #[test]
    fn full_reset_keeps_the_list_and_nothing_else() {
        let d = TempDir::new("wipe");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(keep()).unwrap();
        assert_eq!(req.seq, 1);
        assert_eq!(area.pending().unwrap(), Pending::Request(req.clone()));
        let report = area.carry_out(&req, &mut |_| {}).unwrap();
        assert_eq!((report.kept_count, report.not_kept), (5, 0));
        assert!(
            report.kept.contains(&"/etc/dropbear/caf\\xe9".to_string()),
            "{:?}",
            report.kept
        );
        assert_eq!(tree(&data.join("upper")), KEPT_TREE);
        assert_eq!(
            std::fs::read_to_string(data.join("upper/etc/config/network")).unwrap(),
            "net"
        );
        assert!(tree(&data.join("work")).is_empty());
        assert_eq!(area.pending().unwrap(), Pending::None);
        assert_eq!(area.last_done().unwrap(), Some(1));
        // The trash is deleted separately; symlinks in it are unlinked, not
        // followed; the nest deeper than the walker's limit goes too.
        assert!(area.has_trash());
        let mut removed = 0;
        assert_eq!(
            area.delete_trash(None, &mut removed, &mut |_| {}).unwrap(),
            TrashEnd::Empty
        );
        assert!(!area.has_trash());
        assert!(removed > 1100, "{removed}");
        assert_eq!(
            std::fs::read_to_string(d.path().join("outside/precious")).unwrap(),
            "must stay"
        );
    }

    /// A power cut after every single change, at every point of the wipe:
    /// each run stops at its k-th change, the next run resumes from the
    /// filesystem as left, and the end state is always the same. Then cuts
    /// in the trash deletion (the walker's removal, spills of the deep nest
    /// included): the next deletion finishes it.
    #[test]
    fn a_cut_at_any_change_is_resumed_to_the_same_end_state() {
        let reference = {
            let d = TempDir::new("wipe-ref");
            let data = data_fs(&d);
            let area = ResetArea::open(&data, true).unwrap();
            let req = area.write_request(keep()).unwrap();
            area.carry_out(&req, &mut |_| {}).unwrap();
            tree(&data.join("upper"))
        };
        assert_eq!(reference, KEPT_TREE);
        let mut k = 1;
        loop {
            let d = TempDir::new("wipe-cut");
            let data = data_fs(&d);
            let req = ResetArea::open(&data, true)
                .unwrap()
                .write_request(keep())
                .unwrap();
            // Run until the k-th change, then "lose power" (unwind out of carry_out).
            let mut n = 0;
            let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let area = ResetArea::open(&data, true).unwrap();
                area.carry_out(&req, &mut |_| {
                    n += 1;
                    if n == k {
                        panic!("power cut");
                    }
                })
            }));
            // Next boot: whatever the record says is carried out.
            let area = ResetArea::open(&data, true).unwrap();
            match area.pending().unwrap() {
                Pending::Request(r) => {
                    area.carry_out(&r, &mut |_| {}).unwrap();
                }
                Pending::Stale(s) => area.finish_stale(s, &mut |_| {}).unwrap(),
                Pending::None => assert!(k > 1, "the request vanished before anything happened"),
                other => panic!("cut at {k}: {other:?}"),
            }
            assert_eq!(tree(&data.join("upper")), reference, "cut at change {k}");
            assert_eq!(area.pending().unwrap(), Pending::None);
            assert!(
                !data.join(format!(".reset/keep-{}", req.seq)).exists(),
                "keep area left at cut {k}"
            );
            assert_eq!(
                std::fs::read_to_string(d.path().join("outside/precious")).unwrap(),
                "must stay"
            );
            if cut.is_ok() {
                assert!(k > 5, "the wipe should have several changes");
                break;
            }
            k += 1;
        }
        for cut_at in [1, 2, 100, 1000, 1050, 1101] {
            let d = TempDir::new("wipe-cut-delete");
            let data = data_fs(&d);
            let area = ResetArea::open(&data, true).unwrap();
            let req = area.write_request(keep()).unwrap();
            area.carry_out(&req, &mut |_| {}).unwrap();
            let mut n = 0;
            let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                area.delete_trash(None, &mut 0, &mut |_| {
                    n += 1;
                    if n == cut_at {
                        panic!("power cut");
                    }
                })
            }));
            assert!(cut.is_err(), "the deletion has more than {cut_at} changes");
            let area = ResetArea::open(&data, true).unwrap();
            assert!(area.has_trash());
            assert_eq!(
                area.delete_trash(None, &mut 0, &mut |_| {}).unwrap(),
                TrashEnd::Empty
            );
            assert!(!area.has_trash());
            assert_eq!(tree(&data.join("upper")), reference);
        }
    }

    /// Every non-directory below `p`, relative.
    fn files(p: &Path) -> Vec<String> {
        tree(p).into_iter().filter(|f| !f.ends_with('/')).collect()
    }

    /// A rename that a power cut struck inside, on a filesystem that
    /// renames in two writes (JFFS2 on NOR), leaves the entry under both
    /// names, and rename(2) between two names of one inode does nothing:
    /// the keep passes went on forever (PID 1 hung) and a restore deleted
    /// the kept file. Here such a state (a hard link) is made in the keep
    /// step and in the restore; the wipe ends, each file under one name.
    /// A kept directory is made in the keep area and its entries moved (no
    /// directory is renamed), with its mode.
    #[test]
    fn a_rename_a_cut_struck_inside_is_finished_not_repeated() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut keep = keep();
        keep.push("/root/.ssh".into());
        let prepared = |d: &TempDir| {
            let data = data_fs(d);
            std::fs::set_permissions(
                data.join("upper/root/.ssh"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
            let req = ResetArea::open(&data, true)
                .unwrap()
                .write_request(keep.clone())
                .unwrap();
            (data, req)
        };
        let reference = {
            let d = TempDir::new("wipe-two-names-ref");
            let (data, req) = prepared(&d);
            let area = ResetArea::open(&data, true).unwrap();
            area.carry_out(&req, &mut |_| {}).unwrap();
            tree(&data.join("upper"))
        };
        assert!(reference.contains(&"root/.ssh/authorized_keys".to_string()));
        let check = |data: &Path| {
            assert_eq!(tree(&data.join("upper")), reference);
            // (`tree` shows the Latin-1 name lossily: not a path to open.)
            for f in files(&data.join("upper"))
                .iter()
                .filter(|f| !f.contains('\u{fffd}'))
            {
                let m = std::fs::symlink_metadata(data.join("upper").join(f)).unwrap();
                assert_eq!(m.nlink(), 1, "{f} under one name");
            }
            assert_eq!(
                std::fs::read_to_string(data.join("upper/etc/config/network")).unwrap(),
                "net"
            );
            let ssh = std::fs::metadata(data.join("upper/root/.ssh")).unwrap();
            assert_eq!(ssh.permissions().mode() & 0o777, 0o700);
        };

        // In the keep step: already in the keep area, still in the upper.
        let d = TempDir::new("wipe-two-names-keep");
        let (data, req) = prepared(&d);
        let kept = data.join(".reset/keep-1/etc/config");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::hard_link(data.join("upper/etc/config/network"), kept.join("network")).unwrap();
        let area = ResetArea::open(&data, true).unwrap();
        let report = area.carry_out(&req, &mut |_| {}).unwrap();
        assert!(
            report.kept.contains(&"/etc/config/network".to_string()),
            "{:?}",
            report.kept
        );
        check(&data);

        // In the restore: already in the new upper, still in the keep area.
        let d = TempDir::new("wipe-two-names-restore");
        let (data, req) = prepared(&d);
        let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let area = ResetArea::open(&data, true).unwrap();
            area.carry_out(&req, &mut |step| {
                if step == "restore" {
                    panic!("power cut");
                }
            })
        }));
        assert!(cut.is_err());
        let restored = files(&data.join("upper"));
        assert_eq!(restored.len(), 1, "{restored:?}");
        let back = data.join(".reset/keep-1").join(&restored[0]);
        std::fs::hard_link(data.join("upper").join(&restored[0]), back).unwrap();
        let area = ResetArea::open(&data, true).unwrap();
        let Pending::Request(r) = area.pending().unwrap() else {
            panic!("the request stays")
        };
        area.carry_out(&r, &mut |_| {}).unwrap();
        check(&data);
    }

    fn revert_list() -> Vec<String> {
        vec![
            "/etc/config/network".into(),
            "/etc/dropbear/key*".into(),
            "/link-to-outside".into(),
            "/var/deep".into(),
            "/nonexistent/file".into(),
        ]
    }

    /// The upper of [`data_fs`] less what [`revert_list`] names: the rest,
    /// the symlink's target and the deep nest included, is untouched.
    fn reverted_tree(d: &TempDir) -> Vec<String> {
        let data = d.path().join("data");
        let mut t = tree(&data.join("upper"));
        t.retain(|p| {
            p != "etc/config/network"
                && !p.starts_with("etc/dropbear/key")
                && p != "link-to-outside"
                && !p.starts_with("var/deep")
        });
        t
    }

    /// `overlay-reset --path`: only what the list matches leaves the upper
    /// (a glob, a directory whole, a symlink never followed), the rest is
    /// untouched; a cut after any change is finished by the next boot to
    /// the same end; it happens once.
    #[test]
    fn a_revert_removes_only_its_paths_and_survives_a_cut_anywhere() {
        let reference = {
            let d = TempDir::new("revert-ref");
            let data = data_fs(&d);
            let want = reverted_tree(&d);
            let area = ResetArea::open(&data, true).unwrap();
            let req = area.write_revert(revert_list()).unwrap();
            assert!(req.keep.is_empty());
            assert_eq!(area.pending().unwrap(), Pending::Request(req.clone()));
            let report = area.carry_out(&req, &mut |_| {}).unwrap();
            assert_eq!(report.kept_count, 5, "{report:?}");
            assert!(report.kept.contains(&"/var/deep".to_string()));
            let t = tree(&data.join("upper"));
            assert_eq!(t, want);
            assert!(t.contains(&"etc/config/wireless".to_string()));
            assert_eq!(area.pending().unwrap(), Pending::None);
            assert_eq!(area.last_done().unwrap(), Some(req.seq));
            assert!(area.has_trash());
            assert_eq!(
                std::fs::read_to_string(d.path().join("outside/precious")).unwrap(),
                "must stay"
            );
            t
        };
        let mut k = 1;
        loop {
            let d = TempDir::new("revert-cut");
            let data = data_fs(&d);
            let req = ResetArea::open(&data, true)
                .unwrap()
                .write_revert(revert_list())
                .unwrap();
            let mut n = 0;
            let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let area = ResetArea::open(&data, true).unwrap();
                area.carry_out(&req, &mut |_| {
                    n += 1;
                    if n == k {
                        panic!("power cut");
                    }
                })
            }));
            let area = ResetArea::open(&data, true).unwrap();
            match area.pending().unwrap() {
                Pending::Request(r) => {
                    area.carry_out(&r, &mut |_| {}).unwrap();
                }
                Pending::Stale(s) => area.finish_stale(s, &mut |_| {}).unwrap(),
                Pending::None => assert!(k > 1),
                other => panic!("cut at {k}: {other:?}"),
            }
            assert_eq!(tree(&data.join("upper")), reference, "cut at change {k}");
            assert_eq!(area.pending().unwrap(), Pending::None);
            if cut.is_ok() {
                assert!(k > 5, "one change a path, then done and clear");
                break;
            }
            k += 1;
        }
    }

    /// A revert adds to a pending revert, never replaces a pending factory
    /// reset (refused); a factory reset replaces a pending revert.
    #[test]
    fn reverts_and_resets_pending_together() {
        let d = TempDir::new("revert-pending");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        let a = area
            .write_revert(vec!["/etc/config/network".into()])
            .unwrap();
        let b = area
            .write_revert(vec!["/.hidden".into(), "/etc/config/network".into()])
            .unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.revert, ["/etc/config/network", "/.hidden"]);
        let full = area.write_request(keep()).unwrap();
        assert_eq!(full.seq, b.seq + 1);
        assert!(full.revert.is_empty());
        assert_eq!(
            area.write_revert(vec!["/x".into()]),
            Err(WipeError::ResetPending { seq: full.seq })
        );
        assert_eq!(area.pending().unwrap(), Pending::Request(full));
    }

    #[test]
    fn parents_of_kept_files_keep_their_mode_and_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = TempDir::new("wipe-owner");
        let data = data_fs(&d);
        d.write("data/upper/home/user/.ssh/authorized_keys", "key");
        let home = data.join("upper/home/user");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o750)).unwrap();
        // A user's home (the tests run as root, so any owner can be set).
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).expect("chown needs root");
        let (uid, gid) = (1000, 1000);
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec!["/home/user/.ssh".into()]).unwrap();
        area.carry_out(&req, &mut |_| {}).unwrap();
        let m = std::fs::metadata(&home).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        assert_eq!(
            std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap(),
            "key"
        );
    }

    /// Issue 11, defect 7: a symlink in the keep area where a parent is to
    /// be made was accepted by mkdir, and chmod followed it (the directory
    /// it pointed to got the upper directory's mode). Now it is refused:
    /// nothing outside changes, the reset stops before anything is trashed.
    #[test]
    fn a_symlink_in_the_keep_area_is_never_followed() {
        use std::os::unix::fs::PermissionsExt;
        let d = TempDir::new("wipe-chmod");
        let data = data_fs(&d);
        std::fs::set_permissions(
            data.join("upper/etc"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::create_dir(d.path().join("victim")).unwrap();
        std::fs::set_permissions(
            d.path().join("victim"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::create_dir_all(data.join(".reset/keep-1")).unwrap();
        symlink(d.path().join("victim"), data.join(".reset/keep-1/etc")).unwrap();
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(keep()).unwrap();
        let err = area.carry_out(&req, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                &err,
                WipeError::Io {
                    step: "keep: mkdir",
                    err: Errno::NOTDIR,
                    ..
                }
            ),
            "{err}"
        );
        let mode = std::fs::metadata(d.path().join("victim"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "the symlink's target is untouched");
        assert!(
            data.join("upper/etc/config/network").exists(),
            "nothing trashed"
        );
        assert!(
            matches!(area.pending().unwrap(), Pending::Request(_)),
            "the request stays"
        );
        // And a file where the trash directory should be is not taken for one.
        let d = TempDir::new("wipe-mkdir");
        let data = data_fs(&d);
        d.write("data/.reset/trash", "a file");
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec![]).unwrap();
        assert!(matches!(
            area.carry_out(&req, &mut |_| {}),
            Err(WipeError::Io {
                step: "mkdir",
                err: Errno::NOTDIR,
                ..
            })
        ));
    }

    #[test]
    fn a_completed_reset_is_never_repeated() {
        let d = TempDir::new("wipe-once");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec![]).unwrap();
        // Simulate a cut between the done record and the request's removal.
        let bytes = req.encode().unwrap();
        area.carry_out(&req, &mut |_| {}).unwrap();
        std::fs::write(data.join(".reset/request"), bytes).unwrap();
        d.write("data/upper/new-after-reset", "user data");
        assert_eq!(area.pending().unwrap(), Pending::Stale(1));
        // A new request after that gets a newer seq and is honoured.
        assert_eq!(area.write_request(vec![]).unwrap().seq, 2);
    }

    #[test]
    fn corrupt_request_is_reported() {
        let d = TempDir::new("wipe-corrupt");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        d.write("data/.reset/request", "OVRESET1 but not really a record");
        assert!(matches!(area.pending().unwrap(), Pending::Corrupt(_)));
        assert!(area.remove_request().unwrap());
        assert_eq!(area.pending().unwrap(), Pending::None);
        assert!(!area.remove_request().unwrap());
        // Truncated, bit-flipped and oversized records on disk.
        let good = Request {
            seq: 9,
            keep: keep(),
            ..Default::default()
        }
        .encode()
        .unwrap();
        for bad in [&good[..good.len() - 1], &good[..10]] {
            std::fs::write(data.join(".reset/request"), bad).unwrap();
            assert!(matches!(area.pending().unwrap(), Pending::Corrupt(_)));
        }
        let mut flipped = good.clone();
        flipped[30] ^= 4;
        std::fs::write(data.join(".reset/request"), &flipped).unwrap();
        assert!(matches!(
            area.pending().unwrap(),
            Pending::Corrupt(RecordError::Checksum { .. })
        ));
        std::fs::write(data.join(".reset/request"), vec![b'x'; MAX_REQUEST + 1]).unwrap();
        assert_eq!(
            area.pending().unwrap(),
            Pending::Corrupt(RecordError::File(RecordIoError::TooLarge {
                size: MAX_REQUEST as u64 + 1,
                max: MAX_REQUEST
            }))
        );
        // A damaged done record counts as none.
        std::fs::write(data.join(".reset/done"), &encode_done(4)[..20]).unwrap();
        assert_eq!(area.last_done().unwrap(), None);
    }

    /// Issue 11, defect 6: a FIFO as the request (or done record) hung
    /// PID 1 in a blocking open. Now it is refused unopened.
    #[test]
    fn fifos_as_records_are_refused_without_blocking() {
        let d = TempDir::new("wipe-fifo");
        let data = data_fs(&d);
        std::fs::create_dir(data.join(".reset")).unwrap();
        mknod(&data.join(".reset/request"), FileType::Fifo);
        mknod(&data.join(".reset/done"), FileType::Fifo);
        let (tx, rx) = std::sync::mpsc::channel();
        let data2 = data.clone();
        std::thread::spawn(move || {
            let area = ResetArea::open(&data2, true).unwrap();
            let _ = tx.send((area.pending(), area.last_done()));
        });
        let (pending, done) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("must not block");
        assert_eq!(
            pending.unwrap(),
            Pending::Corrupt(RecordError::File(RecordIoError::NotRegular(Kind::Fifo)))
        );
        assert_eq!(done.unwrap(), None);
        let area = ResetArea::open(&data, true).unwrap();
        assert!(area.remove_request().unwrap());
        // A new request replaces neither record's FIFO by writing into it.
        std::fs::remove_file(data.join(".reset/done")).unwrap();
        mknod(&data.join(".reset/request.tmp"), FileType::Fifo);
        let req = area.write_request(vec![]).unwrap();
        assert_eq!(area.pending().unwrap(), Pending::Request(req));
    }

    #[test]
    fn trash_deletion_stops_at_the_deadline_and_resumes() {
        let d = TempDir::new("wipe-budget");
        let data = data_fs(&d);
        for i in 0..200 {
            d.write(&format!("data/upper/many/f{i}"), "");
        }
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec![]).unwrap();
        area.carry_out(&req, &mut |_| {}).unwrap();
        let mut removed = 0;
        let past = Instant::now();
        assert_eq!(
            area.delete_trash(Some(past), &mut removed, &mut |_| {})
                .unwrap(),
            TrashEnd::Deadline
        );
        assert!(area.has_trash());
        assert_eq!(
            area.delete_trash(None, &mut removed, &mut |_| {}).unwrap(),
            TrashEnd::Empty
        );
        assert!(!area.has_trash());
    }

    /// Issue 11, defect 1, at the reset's level: a 1,100-level nest in the
    /// upper made the trash deletion fail with EMFILE. Now the reset and the
    /// deletion run within 12 fds.
    #[test]
    fn a_reset_of_deep_nests_runs_within_a_few_fds() {
        let d = TempDir::new("wipe-nest");
        let data = d.path().join("data");
        d.write("data/upper/etc/config/network", "net");
        std::fs::create_dir_all(data.join("upper/home")).unwrap();
        nest(&data.join("upper/home"), "a", 1100);
        nest(&data.join("upper/etc/config"), "b", 5000);
        with_fd_limit(3 + 12, || {
            let area = ResetArea::open(&data, true).map_err(|e| e.to_string())?;
            let req = area.write_request(keep()).map_err(|e| e.to_string())?;
            area.carry_out(&req, &mut |_| {})
                .map_err(|e| e.to_string())?;
            match area.delete_trash(None, &mut 0, &mut |_| {}) {
                Ok(TrashEnd::Empty) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        assert_eq!(
            tree(&data.join("upper")),
            ["etc/", "etc/config/", "etc/config/network"]
        );
        assert!(!ResetArea::open(&data, false).unwrap().has_trash());
    }

    /// A kept directory holding a nest deeper than the walker's 1,024
    /// levels: its entries move one by one down to the walker's depth, the
    /// deeper part moves whole (keep and restore), within a few fds; the
    /// nest comes back whole.
    #[test]
    fn a_kept_directory_deeper_than_the_walk_comes_back_whole() {
        let d = TempDir::new("wipe-kept-nest");
        let data = d.path().join("data");
        d.write("data/upper/etc/config/network", "net");
        std::fs::create_dir_all(data.join("upper/home")).unwrap();
        nest(&data.join("upper/home"), "a", 1100);
        with_fd_limit(3 + 12, || {
            let area = ResetArea::open(&data, true).map_err(|e| e.to_string())?;
            let req = area
                .write_request(vec!["/home".into()])
                .map_err(|e| e.to_string())?;
            area.carry_out(&req, &mut |_| {})
                .map_err(|e| e.to_string())?;
            Ok(())
        });
        let mut fd = open_dir(&data.join("upper/home")).unwrap();
        for level in 0..1100 {
            fd = walk::open_subdir(fd.as_fd(), OsStr::new("a"))
                .unwrap_or_else(|e| panic!("level {level}: {e}"));
        }
        assert!(rustix::fs::statat(&fd, "bottom", AtFlags::empty()).is_ok());
        assert!(!data.join("upper/etc").exists(), "not kept");
        assert!(!data.join(".reset/keep-1").exists());
    }

    /// Issue 11, defect 11: a mount point inside the trash made the
    /// background deleter loop forever. Now it is left, said, and the
    /// deletion ends.
    #[test]
    fn a_mount_point_in_the_trash_ends_the_deletion() {
        let d = TempDir::new("wipe-mount");
        let data = data_fs(&d);
        d.write("data/upper/m/x", "");
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec![]).unwrap();
        area.carry_out(&req, &mut |_| {}).unwrap();
        let m = data.join(".reset/trash/1-upper/m");
        let _mount = Mounted::tmpfs(&m);
        std::fs::write(m.join("in-mount"), "on the tmpfs").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let data2 = data.clone();
        std::thread::spawn(move || {
            let area = ResetArea::open(&data2, false).unwrap();
            let _ = tx.send(area.delete_trash(None, &mut 0, &mut |_| {}));
        });
        let end = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the deletion must end")
            .unwrap();
        let TrashEnd::Left(r) = &end else {
            panic!("{end:?}");
        };
        assert_eq!(
            r.first.as_ref().map(|l| (l.path.as_str(), l.why)),
            Some(("1-upper/m", Problem::MountPoint))
        );
        assert_eq!(
            end.to_string(),
            "1 entries could not be deleted (first: 1-upper/m: another filesystem is mounted there: not entered)"
        );
        assert_eq!(
            std::fs::read_to_string(m.join("in-mount")).unwrap(),
            "on the tmpfs"
        );
        assert_eq!(
            tree(&data.join(".reset/trash")),
            ["1-upper/", "1-upper/m/", "1-upper/m/in-mount"]
        );
    }

    /// Immutable and append-only entries: the reset happens, a kept one
    /// that cannot be moved is said (it stays in the trash, as undeletable
    /// as it was), the trash deletion reports what it cannot delete and
    /// ends; once the attributes are cleared, the next deletion finishes.
    #[test]
    fn immutable_entries_are_reported_and_the_reset_goes_on() {
        let d = TempDir::new("wipe-immutable");
        let data = data_fs(&d);
        d.write("data/upper/root/immutable", "i");
        d.write("data/upper/root/appendonly/f", "a");
        d.write("data/upper/etc/dropbear/immutable-key", "k");
        let files = [
            (data.join("upper/root/immutable"), FS_IMMUTABLE_FL),
            (data.join("upper/root/appendonly"), FS_APPEND_FL),
            (
                data.join("upper/etc/dropbear/immutable-key"),
                FS_IMMUTABLE_FL,
            ),
        ];
        for (f, a) in &files {
            set_attr(f, *a, true);
        }
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(keep()).unwrap();
        let report = area.carry_out(&req, &mut |_| {}).unwrap();
        assert_eq!((report.kept_count, report.not_kept), (5, 1));
        assert!(report.kept.contains(
            &"/etc/dropbear/immutable-key (not kept: Operation not permitted (os error 1))"
                .to_string()
        ));
        assert_eq!(tree(&data.join("upper")), KEPT_TREE);
        let end = area.delete_trash(None, &mut 0, &mut |_| {}).unwrap();
        let TrashEnd::Left(r) = &end else {
            panic!("{end:?}");
        };
        assert_eq!(r.left, 3, "{end}");
        assert_eq!(
            r.first.as_ref().map(|l| l.why),
            Some(Problem::Remove(Errno::PERM))
        );
        let trash = data.join(".reset/trash/1-upper");
        for (f, a) in [
            (trash.join("root/immutable"), FS_IMMUTABLE_FL),
            (trash.join("root/appendonly"), FS_APPEND_FL),
            (trash.join("etc/dropbear/immutable-key"), FS_IMMUTABLE_FL),
        ] {
            set_attr(&f, a, false);
        }
        assert_eq!(
            area.delete_trash(None, &mut 0, &mut |_| {}).unwrap(),
            TrashEnd::Empty
        );
    }

    #[test]
    fn a_long_report_names_the_first_paths_and_counts_the_rest() {
        let d = TempDir::new("wipe-report");
        let data = data_fs(&d);
        for i in 0..20 {
            d.write(&format!("data/upper/etc/dropbear/k{i:02}"), "k");
        }
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(keep()).unwrap();
        let report = area.carry_out(&req, &mut |_| {}).unwrap();
        assert_eq!(report.kept_count, 25);
        assert_eq!(report.kept.len(), REPORT_PATHS + 1);
        assert_eq!(report.kept.last().unwrap(), "(and 17 more)");
    }
}
