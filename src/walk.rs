//! A bounded, iterative walk of a directory tree that anyone may have
//! written: the upper layer, the reset trash and keep area, the firmware
//! upgrade's merge. Every walk of the upper goes through [`walk`] (or the
//! deletion built on it, [`remove_contents`] / [`remove_tree_at`]).
//!
//! Bounded whatever the tree holds:
//! - **fds**: two at most (the directory being read, and its parent or child
//!   while moving between them), whatever the depth. The walk goes down by
//!   `openat(name, O_NOFOLLOW|O_DIRECTORY)` and back up by `openat("..")`,
//!   checked to be the directory it came from (device and inode); when it is
//!   not (the tree was moved meanwhile), the walk re-opens the path from the
//!   root, checking every level, or ends [`End::Lost`].
//! - **memory**: directory entries are streamed with getdents(2) through
//!   one 4 KiB buffer, never collected: a directory of a million entries
//!   costs what one of ten does. Besides that buffer, a walk holds its path
//!   (at most [`Limits::max_path`] bytes plus one name) and a 72-byte record
//!   per level (at most [`Limits::max_depth`] levels). No recursion.
//! - **time**: [`Limits::deadline`], checked before every entry.
//! - **depth**: a directory below [`Limits::max_depth`] levels (or whose path
//!   is longer than [`Limits::max_path`]) is not entered: the visitor decides
//!   ([`Visitor::too_deep`]); the deletion moves it to the top of the tree it
//!   deletes, as a shallow tree of its own, so no depth is too deep to delete.
//!
//! Safe against what the tree holds:
//! - names are bytes (any byte but `/` and NUL, up to 255 of them): never
//!   assumed UTF-8 ([`escape`] shows them);
//! - symlinks are never followed (directories are opened `O_NOFOLLOW`), so
//!   symlink loops are plain entries; FIFOs, sockets and device nodes are
//!   never opened; hard links are plain entries;
//! - mount points are never crossed: a directory on another device, or the
//!   root of a mount (`statx` `STATX_ATTR_MOUNT_ROOT`, so a bind mount of the
//!   same filesystem too), is reported ([`Problem::MountPoint`]) and skipped;
//! - an entry that vanishes during the walk is skipped; one that changes type
//!   is reported; a directory that keeps changing under a visitor that asks
//!   to walk it again ([`After::Again`]) is given up after [`MAX_PASSES`];
//! - failures to delete (immutable or append-only files: EPERM) are
//!   reported and skipped, never retried in a loop.
//!
//! A walk that cannot finish says so ([`Outcome`]: [`End`] and `clean`), and
//! the caller decides (the reset's trash stays for the next boot).
//!
//! Resuming a directory after coming back up: the walk seeks to the cookie
//! (`d_off`) of the entry it went into. On ext4 with 32-bit cookies (a
//! 32-bit CPU) entries whose name hashes collide share a cookie, so some
//! entries may be visited twice; directories are never entered twice from
//! the same cookie (their inodes are remembered per cookie). On filesystems
//! whose cookies are positions (JFFS2 keeps them stable, tmpfs before Linux
//! 6.6 does not), deleting entries may make a pass miss some: the deletion
//! runs passes until the tree is empty or a pass makes no progress.
//!
//! The API (`walk`, `Visitor`, `Entry`, `Step`, `After`, `Limits`,
//! `Outcome`, `End`, `Problem`, `Kind`, the removal and the directory
//! helpers) is stable: other modules (the reset, the upgrade merge) build
//! on it.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::SeekFrom;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, RenameFlags, StatxFlags};
use rustix::io::Errno;
use std::ffi::{CStr, OsStr};
use std::fmt;
use std::mem::MaybeUninit;
use std::time::Instant;

/// The longest name Linux filesystems allow (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Default [`Limits::max_depth`]: far deeper than real trees.
pub const DEFAULT_MAX_DEPTH: usize = 1024;
/// Default [`Limits::max_path`]: four times PATH_MAX.
pub const DEFAULT_MAX_PATH: usize = 16 * 1024;
/// How many times a directory is walked when the visitor asks again
/// ([`After::Again`]) before the walk gives it up ([`Problem::Unsettled`]).
pub const MAX_PASSES: u8 = 8;
/// The getdents(2) buffer: a 255-byte name takes a 280-byte record.
const DIRENT_BUF: usize = 4096;
/// Directories entered from one cookie, remembered to never enter one twice.
const SAME_COOKIE: usize = 4;
/// `STATX_ATTR_MOUNT_ROOT` (Linux 5.8): the file is the root of a mount.
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
/// Prefix of the names [`remove_contents`] gives to directories it moves up.
pub const SPILL_PREFIX: &str = ".walk-spill-";

/// How far and how long a walk may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest entry visited: the root's entries are at depth 1.
    pub max_depth: usize,
    /// A directory whose path (relative to the root) is longer is not entered.
    pub max_path: usize,
    /// The walk stops ([`End::Deadline`]) at this instant.
    pub deadline: Option<Instant>,
}

impl Limits {
    /// The default depth and path bounds, with `deadline`.
    pub const fn new(deadline: Option<Instant>) -> Limits {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_path: DEFAULT_MAX_PATH,
            deadline,
        }
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(None)
    }
}

/// The type of an entry, from its directory entry (lstat'ed when the
/// filesystem does not say). Symlinks are never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
    Unknown,
}

impl Kind {
    pub fn from_type(t: FileType) -> Kind {
        match t {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDev,
            FileType::BlockDevice => Kind::BlockDev,
            FileType::Unknown => Kind::Unknown,
        }
    }

    /// From an `st_mode`.
    pub fn from_mode(mode: u32) -> Kind {
        Kind::from_type(FileType::from_raw_mode(mode))
    }
}

/// One entry, as the visitor sees it. Valid only during the call.
pub struct Entry<'a> {
    /// The directory holding the entry (the walk's fd: do not close it).
    pub dir: BorrowedFd<'a>,
    /// Its name in `dir`: 1 to 255 bytes, any byte but `/` and NUL.
    pub name: &'a CStr,
    /// Its path relative to the walk's root: the names joined by `/`.
    pub path: &'a [u8],
    /// 1 for the root's entries.
    pub depth: usize,
    pub kind: Kind,
    /// The inode number from the directory entry.
    pub ino: u64,
}

impl<'a> Entry<'a> {
    pub fn name_bytes(&self) -> &'a [u8] {
        self.name.to_bytes()
    }

    /// lstat(2) of the entry now.
    pub fn stat(&self) -> Result<rustix::fs::Stat, Errno> {
        rustix::fs::statat(self.dir, self.name, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// The components of [`Entry::path`].
    pub fn components(&self) -> impl Iterator<Item = &'a [u8]> {
        self.path.split(|&b| b == b'/')
    }
}

/// What to do after [`Visitor::enter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Walk into this directory (for any other kind: same as `Next`).
    Into,
    /// Go on with the next entry.
    Next,
    /// The entry stays as it is where the visitor wanted it gone (or not
    /// examined): the directories holding it are not clean.
    Left,
    /// End the walk now ([`End::Stopped`]).
    Stop,
}

/// What to do after [`Visitor::leave`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Done,
    /// The directory stays: its parent is not clean.
    Left,
    /// Walk this directory again from its start (e.g. it was not empty
    /// after all: entries appeared, or the filesystem's cookies moved);
    /// at most [`MAX_PASSES`] times.
    Again,
    Stop,
}

/// Why part of the tree was not walked. Each is reported once to
/// [`Visitor::problem`] and makes the directories above it not clean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A directory on another filesystem or the root of a mount: never entered.
    MountPoint,
    /// Deeper than [`Limits::max_depth`] or [`Limits::max_path`], and the
    /// visitor did not deal with it.
    TooDeep,
    /// A directory could not be opened (it may have been replaced meanwhile).
    Open(Errno),
    /// Reading a directory failed: the rest of it is not visited.
    Read(Errno),
    /// An entry's type or identity could not be read.
    Stat(Errno),
    /// A directory asked to be walked again [`MAX_PASSES`] times, or more
    /// directories than can be told apart share one cookie.
    Unsettled,
    /// The walk lost its place (a directory above it was moved): [`End::Lost`].
    Lost,
    /// [`remove_contents`]: the entry could not be removed (EPERM: immutable
    /// or append-only; EBUSY: a mount point; ...).
    Remove(Errno),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MountPoint => write!(f, "another filesystem is mounted there: not entered"),
            Problem::TooDeep => write!(f, "too deep: not entered"),
            Problem::Open(e) => write!(f, "cannot open the directory: {e}"),
            Problem::Read(e) => write!(f, "cannot read the directory: {e}"),
            Problem::Stat(e) => write!(f, "cannot stat: {e}"),
            Problem::Unsettled => write!(f, "keeps changing: given up"),
            Problem::Lost => write!(f, "moved during the walk: the walk lost its place"),
            Problem::Remove(e) => write!(f, "{e}"),
        }
    }
}

/// The caller's side of a walk. Entries come in directory order (not
/// sorted); a directory's entries come between its `enter` and its `leave`.
pub trait Visitor {
    /// Every entry, before anything below it (pre-order).
    fn enter(&mut self, e: &Entry<'_>) -> Step;

    /// A directory walked into, after its entries; `e.dir` is its parent.
    /// `clean`: every entry below was visited, none was left, no problem.
    fn leave(&mut self, e: &Entry<'_>, clean: bool) -> After {
        let _ = (e, clean);
        After::Done
    }

    /// A directory the limits keep the walk out of. `Next` if the visitor
    /// dealt with it (e.g. moved it); otherwise it is a [`Problem::TooDeep`].
    fn too_deep(&mut self, e: &Entry<'_>) -> Step {
        let _ = e;
        Step::Left
    }

    /// A part of the tree not walked, at `path` (relative to the root).
    fn problem(&mut self, path: &[u8], p: Problem) {
        let _ = (path, p);
    }
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Every entry reachable within the limits was visited.
    Done,
    Deadline,
    /// A visitor said [`Step::Stop`] or [`After::Stop`].
    Stopped,
    /// The walk lost its place ([`Problem::Lost`]).
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub end: End,
    /// Ended `Done` with no entry left and no problem anywhere.
    pub clean: bool,
    /// Entries visited.
    pub entries: u64,
    /// Problems reported.
    pub problems: u64,
}

/// Flags of every directory open: never a symlink, never a device's side
/// effects, never inherited.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC)`: a
/// symlink is ELOOP (or ENOTDIR), never followed.
pub fn open_dir_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())
}

/// Identity of an opened directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Id {
    dev: u64,
    ino: u64,
    /// `stx_mnt_id` (Linux 5.8), when known.
    mnt: Option<u64>,
    /// `STATX_ATTR_MOUNT_ROOT` (Linux 5.8) says it is the root of a mount.
    mount_root: bool,
}

impl Id {
    fn of(fd: BorrowedFd<'_>) -> Result<Id, Errno> {
        match rustix::fs::statx(
            fd,
            c"",
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
        ) {
            Ok(s) => Ok(Id {
                dev: rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
                ino: s.stx_ino,
                mnt: (s.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(s.stx_mnt_id),
                mount_root: s.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0
                    && s.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0,
            }),
            // Before Linux 4.11: the device alone tells mounts apart.
            Err(Errno::NOSYS) => {
                let st = rustix::fs::fstat(fd)?;
                Ok(Id {
                    dev: rustix::fs::makedev(
                        rustix::fs::major(st.st_dev as _),
                        rustix::fs::minor(st.st_dev as _),
                    ),
                    ino: st.st_ino as u64,
                    mnt: None,
                    mount_root: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `self` (a subdirectory) is on the mount of `top` and not a mount root.
    fn same_mount(&self, top: &Id) -> bool {
        self.dev == top.dev
            && !self.mount_root
            && match (self.mnt, top.mnt) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    fn is(&self, l: &Level) -> bool {
        self.dev == l.dev && self.ino == l.ino
    }
}

/// Opens directory `name` in `dir`, refusing symlinks and mount points:
/// the directory must be on the same mount as `dir`.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let top = Id::of(dir)?;
    let fd = open_dir_at(dir, name)?;
    if Id::of(fd.as_fd())?.same_mount(&top) {
        Ok(fd)
    } else {
        Err(Errno::XDEV)
    }
}

/// Opens `path` (relative, components joined by `/`; empty = `root`
/// itself) below `root` one component at a time, never following a symlink
/// and never crossing a mount (EXDEV). For a mirror of the walked tree.
pub fn open_beneath(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    let top = Id::of(root)?;
    let mut fd = open_dir_at(root, c".")?;
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let name = NameBuf::new(comp).ok_or(Errno::NAMETOOLONG)?;
        let next = open_dir_at(fd.as_fd(), name.as_cstr())?;
        if !Id::of(next.as_fd())?.same_mount(&top) {
            return Err(Errno::XDEV);
        }
        fd = next;
    }
    Ok(fd)
}

/// mkdir(2) `name` in `dir` (with `mode`) unless a directory of that name
/// is there; anything else of that name (a file, a symlink) is ENOTDIR,
/// never accepted. Returns the directory, opened `O_NOFOLLOW`.
pub fn ensure_dir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<OwnedFd, Errno> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    match open_dir_at(dir, name) {
        Err(Errno::LOOP) => Err(Errno::NOTDIR),
        r => r,
    }
}

/// Whether the directory `dir` has no entry but `.` and `..`.
pub fn is_empty(dir: BorrowedFd<'_>) -> Result<bool, Errno> {
    let fd = open_dir_at(dir, c".")?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut rd = RawDir::new(fd, &mut buf);
    while let Some(r) = rd.next() {
        let e = r?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A name as a NUL-terminated array: no allocation per entry.
struct NameBuf([u8; NAME_MAX + 1]);

impl NameBuf {
    fn new(name: &[u8]) -> Option<NameBuf> {
        if name.is_empty() || name.len() > NAME_MAX || name.contains(&0) {
            return None;
        }
        let mut b = [0u8; NAME_MAX + 1];
        b.get_mut(..name.len())?.copy_from_slice(name);
        Some(NameBuf(b))
    }

    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).unwrap_or(c"")
    }
}

/// One directory on the way down.
struct Level {
    /// Device and inode of the directory as opened.
    dev: u64,
    ino: u64,
    /// Where reading this directory resumes (getdents cookie).
    cookie: u64,
    /// Directories entered from `cookie` (see the module doc).
    same: [u64; SAME_COOKIE],
    nsame: u8,
    /// The path's length before this directory's name (and its `/`).
    base: usize,
    passes: u8,
    clean: bool,
    /// Given up (too many directories on one cookie): read no more of it.
    done: bool,
}

impl Level {
    fn new(id: Id, base: usize, passes: u8) -> Level {
        Level {
            dev: id.dev,
            ino: id.ino,
            cookie: 0,
            same: [0; SAME_COOKIE],
            nsame: 0,
            base,
            passes,
            clean: true,
            done: false,
        }
    }
}

/// What reading the current directory came to.
enum Flow {
    /// Go into this subdirectory (its name is the path's last component).
    Descend {
        ino: u64,
        cookie: u64,
        base: usize,
    },
    /// The directory is read to its end (or given up).
    End,
    Finish(End),
}

struct Walker<'r> {
    root: BorrowedFd<'r>,
    limits: Limits,
    top: Id,
    cur: OwnedFd,
    levels: Vec<Level>,
    path: Vec<u8>,
    buf: Vec<MaybeUninit<u8>>,
    entries: u64,
    problems: u64,
}

/// Walks the tree below the directory `root` (not `root` itself), calling
/// `v` for each entry; see the module doc for the bounds. `Err` only when
/// `root` cannot be opened or identified.
pub fn walk(root: BorrowedFd<'_>, limits: &Limits, v: &mut dyn Visitor) -> Result<Outcome, Errno> {
    let cur = open_dir_at(root, c".")?;
    let top = Id::of(cur.as_fd())?;
    let mut w = Walker {
        root,
        limits: *limits,
        top,
        cur,
        levels: vec![Level::new(top, 0, 0)],
        path: Vec::new(),
        buf: vec![MaybeUninit::uninit(); DIRENT_BUF],
        entries: 0,
        problems: 0,
    };
    let end = w.run(v);
    Ok(Outcome {
        end,
        clean: end == End::Done && w.levels.first().is_some_and(|l| l.clean),
        entries: w.entries,
        problems: w.problems,
    })
}

impl Walker<'_> {
    fn run(&mut self, v: &mut dyn Visitor) -> End {
        loop {
            match self.read(v) {
                Flow::Descend { ino, cookie, base } => self.descend(v, ino, cookie, base),
                Flow::End => {
                    if self.levels.len() <= 1 {
                        return End::Done;
                    }
                    if let Some(end) = self.ascend(v) {
                        return end;
                    }
                }
                Flow::Finish(end) => return end,
            }
        }
    }

    fn report(&mut self, v: &mut dyn Visitor, p: Problem) {
        self.problems += 1;
        v.problem(&self.path, p);
        if let Some(l) = self.levels.last_mut() {
            l.clean = false;
        }
    }

    /// Reads the current directory from its cookie until a subdirectory to
    /// enter, or its end.
    fn read(&mut self, v: &mut dyn Visitor) -> Flow {
        let depth = self.levels.len();
        let Some(level) = self.levels.last_mut() else {
            return Flow::End;
        };
        if level.done {
            return Flow::End;
        }
        let (same, nsame) = (level.same, level.nsame);
        if let Err(e) = rustix::fs::seek(&self.cur, SeekFrom::Start(level.cookie)) {
            self.report(v, Problem::Read(e));
            return Flow::End;
        }
        let Walker {
            cur,
            buf,
            path,
            levels,
            limits,
            entries,
            problems,
            ..
        } = self;
        let unclean = |levels: &mut Vec<Level>| {
            if let Some(l) = levels.last_mut() {
                l.clean = false;
            }
        };
        let mut rd = RawDir::new(cur.as_fd(), buf);
        while let Some(r) = rd.next() {
            let de = match r {
                Ok(de) => de,
                Err(e) => {
                    *problems += 1;
                    v.problem(path, Problem::Read(e));
                    unclean(levels);
                    return Flow::End;
                }
            };
            let name = de.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            if limits.expired() {
                return Flow::Finish(End::Deadline);
            }
            let ino = de.ino();
            let mut kind = Kind::from_type(de.file_type());
            if kind == Kind::Dir
                && same
                    .get(..usize::from(nsame))
                    .is_some_and(|s| s.contains(&ino))
            {
                continue; // entered from this cookie already
            }
            let base = path.len();
            if base > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(bytes);
            if kind == Kind::Unknown {
                match rustix::fs::statat(cur.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => kind = Kind::from_mode(st.st_mode),
                    Err(Errno::NOENT) => {
                        path.truncate(base);
                        continue;
                    }
                    Err(e) => {
                        *problems += 1;
                        v.problem(path, Problem::Stat(e));
                        unclean(levels);
                        path.truncate(base);
                        continue;
                    }
                }
            }
            *entries += 1;
            let e = Entry {
                dir: cur.as_fd(),
                name,
                path: path.as_slice(),
                depth,
                kind,
                ino,
            };
            let step = match v.enter(&e) {
                Step::Into if kind == Kind::Dir => {
                    if depth < limits.max_depth && path.len() <= limits.max_path {
                        return Flow::Descend {
                            ino,
                            cookie: de.next_entry_cookie(),
                            base,
                        };
                    }
                    match v.too_deep(&e) {
                        s @ (Step::Next | Step::Stop) => s,
                        Step::Into | Step::Left => {
                            *problems += 1;
                            v.problem(path, Problem::TooDeep);
                            Step::Left
                        }
                    }
                }
                Step::Into => Step::Next,
                s => s,
            };
            match step {
                Step::Stop => return Flow::Finish(End::Stopped),
                Step::Left => unclean(levels),
                Step::Next | Step::Into => {}
            }
            path.truncate(base);
        }
        Flow::End
    }

    /// Records where the current directory resumes, then enters its entry
    /// `ino` (the path's last component).
    fn descend(&mut self, v: &mut dyn Visitor, ino: u64, cookie: u64, base: usize) {
        if let Some(l) = self.levels.last_mut() {
            if l.nsame > 0 && l.cookie == cookie {
                if let Some(slot) = l.same.get_mut(usize::from(l.nsame)) {
                    *slot = ino;
                    l.nsame += 1;
                } else {
                    // More directories on one cookie than we can tell apart.
                    l.done = true;
                    self.report(v, Problem::Unsettled);
                    self.path.truncate(base);
                    return;
                }
            } else {
                l.cookie = cookie;
                l.same = [ino, 0, 0, 0];
                l.nsame = 1;
            }
        }
        self.enter_child(v, base, 0);
    }

    /// Opens the subdirectory named by the path's last component and makes
    /// it the current directory; on failure reports it and drops the name.
    fn enter_child(&mut self, v: &mut dyn Visitor, base: usize, passes: u8) {
        let start = if base > 0 { base + 1 } else { 0 };
        let opened = match NameBuf::new(self.path.get(start..).unwrap_or(&[])) {
            None => Err(Some(Problem::Open(Errno::NAMETOOLONG))),
            Some(name) => match open_dir_at(self.cur.as_fd(), name.as_cstr()) {
                Err(Errno::NOENT) => Err(None), // gone meanwhile
                Err(e) => Err(Some(Problem::Open(e))),
                Ok(fd) => match Id::of(fd.as_fd()) {
                    Err(e) => Err(Some(Problem::Stat(e))),
                    Ok(id) if !id.same_mount(&self.top) => Err(Some(Problem::MountPoint)),
                    Ok(id) => Ok((fd, id)),
                },
            },
        };
        match opened {
            Ok((fd, id)) => {
                self.cur = fd;
                self.levels.push(Level::new(id, base, passes));
            }
            Err(p) => {
                if let Some(p) = p {
                    self.report(v, p);
                }
                self.path.truncate(base);
            }
        }
    }

    /// Back up from a directory read to its end: re-open its parent, tell
    /// the visitor, resume the parent.
    fn ascend(&mut self, v: &mut dyn Visitor) -> Option<End> {
        let child = self.levels.pop()?;
        let parent = self.levels.last()?;
        let up = open_dir_at(self.cur.as_fd(), c"..")
            .ok()
            .filter(|fd| Id::of(fd.as_fd()).is_ok_and(|id| id.is(parent)));
        let Some(up) = up.or_else(|| self.reopen(child.base)) else {
            self.problems += 1;
            v.problem(&self.path, Problem::Lost);
            return Some(End::Lost);
        };
        self.cur = up;
        let start = if child.base > 0 { child.base + 1 } else { 0 };
        let Some(name) = NameBuf::new(self.path.get(start..).unwrap_or(&[])) else {
            // Cannot happen (it was entered by this name); never loop on it.
            self.path.truncate(child.base);
            self.mark_unclean();
            return None;
        };
        let e = Entry {
            dir: self.cur.as_fd(),
            name: name.as_cstr(),
            path: &self.path,
            depth: self.levels.len(),
            kind: Kind::Dir,
            ino: child.ino,
        };
        let after = v.leave(&e, child.clean);
        if after == After::Again && child.passes + 1 < MAX_PASSES {
            self.enter_child(v, child.base, child.passes + 1);
            return None;
        }
        match after {
            After::Stop => return Some(End::Stopped),
            After::Again => {
                // Asked once too often: what is left of it stays.
                self.problems += 1;
                v.problem(&self.path, Problem::Unsettled);
                self.mark_unclean();
            }
            After::Left => self.mark_unclean(),
            After::Done => {}
        }
        if !child.clean {
            self.mark_unclean();
        }
        self.path.truncate(child.base);
        None
    }

    fn mark_unclean(&mut self) {
        if let Some(l) = self.levels.last_mut() {
            l.clean = false;
        }
    }

    /// Re-opens the directory at `path[..upto]` from the root, checking
    /// each level against the one recorded on the way down.
    fn reopen(&self, upto: usize) -> Option<OwnedFd> {
        let mut fd = open_dir_at(self.root, c".").ok()?;
        if !Id::of(fd.as_fd()).ok()?.is(self.levels.first()?) {
            return None;
        }
        if upto == 0 {
            return Some(fd);
        }
        for (k, comp) in self.path.get(..upto)?.split(|&b| b == b'/').enumerate() {
            let name = NameBuf::new(comp)?;
            let next = open_dir_at(fd.as_fd(), name.as_cstr()).ok()?;
            if !Id::of(next.as_fd()).ok()?.is(self.levels.get(k + 1)?) {
                return None;
            }
            fd = next;
        }
        Some(fd)
    }
}

/// Appends `bytes` to `out` readably: UTF-8 as is, except control
/// characters and `\`, which (like bytes that are not UTF-8) become `\xNN`.
/// A name cannot forge a line of output this way.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                let mut b = [0u8; 4];
                for x in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(out, "\\x{x:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
}

/// [`escape_into`] a new string of at most about `max` bytes (cut with `…`).
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    escape_into(&mut s, bytes.get(..max).unwrap_or(bytes));
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// The first entry a removal could not remove, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Relative to the directory emptied, escaped ([`escape`]), bounded.
    pub path: String,
    pub why: Problem,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

/// How a removal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Everything is gone.
    All,
    /// The deadline passed first; what is left can be removed later.
    Deadline,
    /// Entries that cannot be removed stay ([`Removal::first`]).
    Left,
    /// The walk lost its place; a later removal goes on.
    Lost,
}

/// What a removal did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub end: Removed,
    /// Entries removed.
    pub removed: u64,
    /// Entries left in the last pass because of a problem (directories left
    /// only because something below them stays are not counted).
    pub left: u64,
    pub first: Option<Leftover>,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Removed::All => write!(f, "{} entries removed", self.removed),
            Removed::Deadline => write!(f, "{} entries removed before the deadline", self.removed),
            Removed::Lost => write!(f, "{} entries removed, then the tree moved", self.removed),
            Removed::Left => {
                write!(f, "{} entries could not be deleted", self.left)?;
                if let Some(first) = &self.first {
                    write!(f, " (first: {first})")?;
                }
                Ok(())
            }
        }
    }
}

/// `SPILL_PREFIX` + the inode number (+ `.n` for n > 0).
fn spill_name(ino: u64, n: u8) -> NameBuf {
    let mut b = [0u8; NAME_MAX + 1];
    let mut len = 0;
    let mut push = |c: u8| {
        if let Some(x) = b.get_mut(len) {
            *x = c;
            len += 1;
        }
    };
    SPILL_PREFIX.bytes().for_each(&mut push);
    let mut digits = [0u8; 20];
    let (mut v, mut k) = (ino, 0);
    loop {
        if let Some(d) = digits.get_mut(k) {
            *d = b'0' + (v % 10) as u8;
        }
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits.iter().take(k).rev().for_each(|&d| push(d));
    if n > 0 {
        push(b'.');
        push(b'0' + n % 10);
    }
    NameBuf(b)
}

/// How long a [`Leftover`] path may be.
const LEFTOVER_PATH: usize = 200;

/// The deletion's visitor: unlink files, remove directories after their
/// contents, move too-deep directories to the top.
struct Deleter<'a> {
    top: BorrowedFd<'a>,
    on_remove: &'a mut dyn FnMut(),
    removed: u64,
    moved: u64,
    left: u64,
    first: Option<Leftover>,
}

impl Deleter<'_> {
    fn note(&mut self, path: &[u8], why: Problem) {
        self.left += 1;
        if self.first.is_none() {
            self.first = Some(Leftover {
                path: escape(path, LEFTOVER_PATH),
                why,
            });
        }
    }

    fn removed(&mut self) {
        self.removed += 1;
        (self.on_remove)();
    }
}

impl Visitor for Deleter<'_> {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        if e.kind == Kind::Dir {
            return Step::Into;
        }
        match rustix::fs::unlinkat(e.dir, e.name, AtFlags::empty()) {
            Ok(()) => {
                self.removed();
                Step::Next
            }
            Err(Errno::NOENT) => Step::Next,
            Err(err) => {
                self.note(e.path, Problem::Remove(err));
                Step::Left
            }
        }
    }

    fn leave(&mut self, e: &Entry<'_>, clean: bool) -> After {
        if !clean {
            return After::Left; // something below stays, so does it
        }
        match rustix::fs::unlinkat(e.dir, e.name, AtFlags::REMOVEDIR) {
            Ok(()) => {
                self.removed();
                After::Done
            }
            Err(Errno::NOENT) => After::Done,
            // Entries appeared, or a pass missed some: read it again.
            Err(Errno::NOTEMPTY | Errno::EXIST) => After::Again,
            Err(err) => {
                self.note(e.path, Problem::Remove(err));
                After::Left
            }
        }
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> Step {
        // Moved to the top of the tree being emptied: a shallow tree of its
        // own, removed by this pass or the next.
        for n in 0..4u8 {
            let name = spill_name(e.ino, n);
            match rustix::fs::renameat_with(
                e.dir,
                e.name,
                self.top,
                name.as_cstr(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    self.moved += 1;
                    return Step::Next;
                }
                Err(Errno::EXIST) => continue,
                Err(err) => {
                    self.note(e.path, Problem::Remove(err));
                    return Step::Left;
                }
            }
        }
        self.note(e.path, Problem::TooDeep);
        Step::Left
    }

    fn problem(&mut self, path: &[u8], p: Problem) {
        self.note(path, p);
    }
}

/// Removes everything in the directory `dir` (which stays), never
/// following a symlink and never entering another mount; `on_remove` is
/// called after each entry removed. Runs passes until `dir` is empty, the
/// deadline passes, or a pass removes nothing (then `Left`: what cannot be
/// removed is reported, never retried in a loop).
pub fn remove_contents(
    dir: BorrowedFd<'_>,
    limits: &Limits,
    on_remove: &mut dyn FnMut(),
) -> Removal {
    let mut total = Removal {
        end: Removed::All,
        removed: 0,
        left: 0,
        first: None,
    };
    loop {
        let mut d = Deleter {
            top: dir,
            on_remove: &mut *on_remove,
            removed: 0,
            moved: 0,
            left: 0,
            first: None,
        };
        let out = walk(dir, limits, &mut d);
        total.removed += d.removed;
        total.left = d.left;
        total.first = d.first;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                total.end = Removed::Left;
                total.left = 1;
                total.first = Some(Leftover {
                    path: ".".into(),
                    why: Problem::Open(e),
                });
                return total;
            }
        };
        match out.end {
            End::Deadline => {
                total.end = Removed::Deadline;
                return total;
            }
            End::Lost | End::Stopped => {
                total.end = Removed::Lost;
                return total;
            }
            End::Done => {}
        }
        if is_empty(dir).unwrap_or(false) {
            total.end = Removed::All;
            return total;
        }
        if d.removed == 0 && d.moved == 0 {
            // No progress: what is there stays (reported), never retried here.
            total.end = Removed::Left;
            if total.first.is_none() {
                total.left = 1;
                total.first = Some(Leftover {
                    path: ".".into(),
                    why: Problem::Unsettled,
                });
            }
            return total;
        }
        if limits.expired() {
            total.end = Removed::Deadline;
            return total;
        }
    }
}

/// Removes `name` in `dir` and everything below it ([`remove_contents`]),
/// never following a symlink (a symlink is removed itself) and never
/// entering a mount point (left, [`Problem::MountPoint`]). An absent
/// `name` is `All` with nothing removed.
pub fn remove_tree_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    limits: &Limits,
    on_remove: &mut dyn FnMut(),
) -> Removal {
    let mut r = Removal {
        end: Removed::All,
        removed: 0,
        left: 0,
        first: None,
    };
    let leftover = |r: &mut Removal, why: Problem| {
        r.end = Removed::Left;
        r.left += 1;
        r.first.get_or_insert(Leftover {
            path: escape(name.as_encoded_bytes(), LEFTOVER_PATH),
            why,
        });
    };
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return r,
        Err(e) => {
            leftover(&mut r, Problem::Stat(e));
            return r;
        }
    };
    if Kind::from_mode(st.st_mode) == Kind::Dir {
        let sub = match open_subdir(dir, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return r,
            Err(Errno::XDEV) => {
                leftover(&mut r, Problem::MountPoint);
                return r;
            }
            Err(e) => {
                leftover(&mut r, Problem::Open(e));
                return r;
            }
        };
        r = remove_contents(sub.as_fd(), limits, on_remove);
        if r.end != Removed::All {
            return r;
        }
        drop(sub);
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => {
                r.removed += 1;
                on_remove();
            }
            Err(Errno::NOENT) => {}
            Err(e) => leftover(&mut r, Problem::Remove(e)),
        }
    } else {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => {
                r.removed += 1;
                on_remove();
            }
            Err(Errno::NOENT) => {}
            Err(e) => leftover(&mut r, Problem::Remove(e)),
        }
    }
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::Duration;

    // ---- peak heap of this thread: a counting allocator for the test binary

    struct Counting;
    thread_local! {
        static CUR: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }
    fn count(delta: isize) {
        let _ = CUR.try_with(|c| {
            let v = c.get() + delta;
            c.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }
    // SAFETY: every call is passed to System unchanged; only sizes are counted.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is System's.
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                count(l.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            count(-(l.size() as isize));
            // SAFETY: the caller's contract is System's.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            // SAFETY: the caller's contract is System's.
            let q = unsafe { System.realloc(p, l, new) };
            if !q.is_null() {
                count(new as isize - l.size() as isize);
            }
            q
        }
    }
    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Runs `f` and returns its result and the peak of this thread's heap
    /// during it, above the heap at its start.
    pub(crate) fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = CUR.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let r = f();
        (r, (PEAK.with(Cell::get) - start).max(0) as usize)
    }

    // ---- fixtures

    fn dirfd(p: &Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A chain of `n` directories named `name` below `root`, with a file at the bottom.
    pub(crate) fn nest(root: &Path, name: &str, n: usize) {
        let mut fd = dirfd(root);
        for _ in 0..n {
            rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)).unwrap();
            fd = open_dir_at(fd.as_fd(), name).unwrap();
        }
        let f = rustix::fs::openat(
            &fd,
            "bottom",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop(f);
    }

    fn mknod(p: &Path, t: FileType, dev: u64) {
        rustix::fs::mknodat(rustix::fs::CWD, p, t, Mode::from_raw_mode(0o600), dev).unwrap();
    }

    /// Every kind of entry an upper can hold.
    fn zoo(d: &TempDir) -> std::path::PathBuf {
        let r = d.path().join("zoo");
        d.write("zoo/dir/file", "x");
        d.write("zoo/dir/sub/deeper", "y");
        d.write("zoo/.hidden", "h");
        mknod(&r.join("fifo"), FileType::Fifo, 0);
        mknod(
            &r.join("null"),
            FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        );
        mknod(
            &r.join("loop"),
            FileType::BlockDevice,
            rustix::fs::makedev(7, 0),
        );
        let sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        drop(sock); // the socket file stays
        std::fs::hard_link(r.join("dir/file"), r.join("hardlink")).unwrap();
        symlink("loop-b", r.join("loop-a")).unwrap();
        symlink("loop-a", r.join("loop-b")).unwrap();
        symlink(".", r.join("dir/self")).unwrap();
        symlink("..", r.join("dir/up")).unwrap();
        symlink("/", r.join("to-root")).unwrap();
        let long = "L".repeat(NAME_MAX);
        d.write(&format!("zoo/{long}/{long}"), "long");
        let bad = std::ffi::OsStr::from_bytes(b"caf\xe9\n\\x");
        std::fs::create_dir(r.join(bad)).unwrap();
        std::fs::write(r.join(bad).join(bad), "latin-1").unwrap();
        r
    }
    use std::os::unix::ffi::OsStrExt;

    /// Records every call.
    #[derive(Default)]
    struct Log {
        entered: Vec<(Vec<u8>, Kind, usize)>,
        left: Vec<(Vec<u8>, bool)>,
        problems: Vec<(Vec<u8>, Problem)>,
        deep: Vec<Vec<u8>>,
    }
    impl Visitor for Log {
        fn enter(&mut self, e: &Entry<'_>) -> Step {
            self.entered.push((e.path.to_vec(), e.kind, e.depth));
            assert_eq!(e.components().last().unwrap(), e.name_bytes());
            assert_eq!(e.components().count(), e.depth);
            Step::Into
        }
        fn leave(&mut self, e: &Entry<'_>, clean: bool) -> After {
            self.left.push((e.path.to_vec(), clean));
            After::Done
        }
        fn too_deep(&mut self, e: &Entry<'_>) -> Step {
            self.deep.push(e.path.to_vec());
            Step::Left
        }
        fn problem(&mut self, path: &[u8], p: Problem) {
            self.problems.push((path.to_vec(), p));
        }
    }

    fn kinds(log: &Log) -> Vec<(String, Kind)> {
        let mut v: Vec<_> = log
            .entered
            .iter()
            .map(|(p, k, _)| (escape(p, 4096), *k))
            .collect();
        v.sort_by_key(|(p, k)| (p.clone(), format!("{k:?}")));
        v
    }

    #[test]
    fn every_kind_of_entry_is_visited_once_and_nothing_is_followed() {
        let d = TempDir::new("walk-zoo");
        let r = zoo(&d);
        let mut log = Log::default();
        let out = walk(dirfd(&r).as_fd(), &Limits::default(), &mut log).unwrap();
        assert_eq!(out.end, End::Done);
        assert!(out.clean, "{:?}", log.problems);
        let long = "L".repeat(NAME_MAX);
        let bad = "caf\\xe9\\x0a\\x5cx";
        let mut want = vec![
            (".hidden".to_string(), Kind::File),
            ("dir".into(), Kind::Dir),
            ("dir/file".into(), Kind::File),
            ("dir/self".into(), Kind::Symlink),
            ("dir/sub".into(), Kind::Dir),
            ("dir/sub/deeper".into(), Kind::File),
            ("dir/up".into(), Kind::Symlink),
            ("fifo".into(), Kind::Fifo),
            ("hardlink".into(), Kind::File),
            ("loop".into(), Kind::BlockDev),
            ("loop-a".into(), Kind::Symlink),
            ("loop-b".into(), Kind::Symlink),
            ("null".into(), Kind::CharDev),
            ("sock".into(), Kind::Socket),
            ("to-root".into(), Kind::Symlink),
            (long.clone(), Kind::Dir),
            (format!("{long}/{long}"), Kind::File),
            (bad.into(), Kind::Dir),
            (format!("{bad}/{bad}"), Kind::File),
        ];
        want.sort_by_key(|(p, k)| (p.clone(), format!("{k:?}")));
        assert_eq!(kinds(&log), want);
        assert_eq!(out.entries, want.len() as u64);
        // Directories are left after their entries, in post-order.
        let left: Vec<String> = log
            .left
            .iter()
            .map(|(p, c)| format!("{}{}", escape(p, 4096), if *c { "" } else { "!" }))
            .collect();
        assert!(left.iter().position(|p| p == "dir/sub") < left.iter().position(|p| p == "dir"));
        assert_eq!(left.len(), 4);
        assert!(log.problems.is_empty());
        // And all of it is deleted, links and nodes themselves, nothing they
        // point to.
        d.write("target/keep", "k");
        symlink(d.path().join("target"), r.join("to-target")).unwrap();
        let mut n = 0;
        let res = remove_contents(dirfd(&r).as_fd(), &Limits::default(), &mut || n += 1);
        assert_eq!((res.end, res.removed, n), (Removed::All, 20, 20));
        assert!(is_empty(dirfd(&r).as_fd()).unwrap());
        assert!(d.path().join("target/keep").exists());
    }

    #[test]
    fn spill_names() {
        assert_eq!(spill_name(0, 0).as_cstr(), c".walk-spill-0");
        assert_eq!(spill_name(1234567, 2).as_cstr(), c".walk-spill-1234567.2");
        assert_eq!(
            spill_name(u64::MAX, 0).as_cstr(),
            c".walk-spill-18446744073709551615"
        );
    }

    #[test]
    fn a_level_costs_72_bytes_at_most() {
        assert!(
            std::mem::size_of::<Level>() <= 72,
            "{}",
            std::mem::size_of::<Level>()
        );
    }

    #[test]
    fn names_are_escaped_never_trusted() {
        assert_eq!(escape(b"plain/caf\xc3\xa9", 100), "plain/café");
        assert_eq!(escape(b"a\nb\\c\x1b\xff", 100), "a\\x0ab\\x5cc\\x1b\\xff");
        assert_eq!(escape(&[b'x'; 10], 4), "xxxx…");
    }

    /// Runs `f` in a child process whose fds are closed above 2 and whose
    /// RLIMIT_NOFILE is `fds`: any fd beyond the budget is EMFILE.
    pub(crate) fn with_fd_limit(fds: u64, f: impl FnOnce() -> Result<(), String>) {
        use nix::sys::wait::{waitpid, WaitStatus};
        // SAFETY: the test binary is multi-threaded: the child only makes
        // syscalls and uses the allocator (glibc makes it usable after fork)
        // before _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                for fd in 3..65536 {
                    // SAFETY: closing fds the child does not use.
                    unsafe { nix::libc::close(fd) };
                }
                let lim = rustix::process::Rlimit {
                    current: Some(fds),
                    maximum: Some(fds),
                };
                let code = match rustix::process::setrlimit(rustix::process::Resource::Nofile, lim)
                {
                    Err(_) => 3,
                    Ok(()) => match f() {
                        Ok(()) => 0,
                        Err(msg) => {
                            eprintln!("child: {msg}");
                            1
                        }
                    },
                };
                // SAFETY: leaves the child without running the parent's destructors.
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = waitpid(child, None).unwrap();
                assert_eq!(
                    st,
                    WaitStatus::Exited(child, 0),
                    "the child failed (3: no setrlimit)"
                );
            }
        }
    }

    /// Issue 11, defect 1: one fd per level made a 1,100-level nest EMFILE.
    /// Now 1,100 and 5,000 levels are walked and deleted within 8 fds.
    #[test]
    fn deep_nests_are_deleted_within_a_few_fds() {
        for depth in [1100, 5000] {
            let d = TempDir::new("walk-nest");
            let r = d.path().join("trash");
            std::fs::create_dir(&r).unwrap();
            nest(&r, "a", depth);
            with_fd_limit(3 + 8, || {
                let root = dirfd(&r);
                let mut n = 0u64;
                let res = remove_contents(root.as_fd(), &Limits::default(), &mut || n += 1);
                if res.end != Removed::All || n != depth as u64 + 1 {
                    return Err(format!("{depth}: {res:?}, {n} removed"));
                }
                if !is_empty(root.as_fd()).unwrap_or(false) {
                    return Err("not empty".into());
                }
                Ok(())
            });
            assert!(is_empty(dirfd(&r).as_fd()).unwrap());
        }
    }

    #[test]
    fn a_walk_holds_two_fds_whatever_the_depth() {
        let d = TempDir::new("walk-fds");
        nest(d.path(), "n", 3000);
        with_fd_limit(3 + 3, || {
            let mut log = Log::default();
            let lim = Limits {
                max_depth: 5000,
                max_path: 1 << 20,
                deadline: None,
            };
            let out = walk(dirfd(d.path()).as_fd(), &lim, &mut log).map_err(|e| e.to_string())?;
            if out.end != End::Done || !out.clean || out.entries != 3001 {
                return Err(format!("{out:?} {:?}", log.problems));
            }
            Ok(())
        });
    }

    #[test]
    fn depth_limits_are_reported_or_left_to_the_visitor() {
        let d = TempDir::new("walk-deep");
        nest(d.path(), "a", 1100);
        let mut log = Log::default();
        let out = walk(dirfd(d.path()).as_fd(), &Limits::default(), &mut log).unwrap();
        assert_eq!(out.end, End::Done);
        assert!(!out.clean, "a part was not walked");
        assert_eq!(log.deep.len(), 1);
        assert_eq!(
            log.deep[0].len(),
            2 * DEFAULT_MAX_DEPTH - 1,
            "the directory at depth 1024"
        );
        assert_eq!(log.problems, vec![(log.deep[0].clone(), Problem::TooDeep)]);
        assert_eq!(out.entries, DEFAULT_MAX_DEPTH as u64);
        // A path limit too: 20 levels of 255-byte names is 5,119 bytes.
        let d = TempDir::new("walk-long");
        nest(d.path(), &"x".repeat(NAME_MAX), 20);
        let lim = Limits {
            max_path: 4096,
            ..Limits::default()
        };
        let mut log = Log::default();
        walk(dirfd(d.path()).as_fd(), &lim, &mut log).unwrap();
        assert_eq!(log.deep.len(), 1);
        assert!(log.deep[0].len() > 4096 && log.deep[0].len() < 4096 + 257);
    }

    #[test]
    fn a_directory_of_100000_entries_streams_in_small_memory() {
        let d = TempDir::new("walk-wide");
        let r = d.path().join("wide");
        std::fs::create_dir(&r).unwrap();
        let fd = dirfd(&r);
        for i in 0..100_000u32 {
            let name = format!("entry-with-a-longish-name-{i:06}");
            drop(
                rustix::fs::openat(
                    &fd,
                    name.as_str(),
                    OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap(),
            );
        }
        struct Count(u64);
        impl Visitor for Count {
            fn enter(&mut self, _: &Entry<'_>) -> Step {
                self.0 += 1;
                Step::Next
            }
        }
        let (out, peak) =
            peak_heap(|| walk(fd.as_fd(), &Limits::default(), &mut Count(0)).unwrap());
        assert_eq!(out.entries, 100_000);
        assert!(
            peak < 16 * 1024,
            "a walk of 100,000 entries peaked at {peak} bytes of heap"
        );
        let t = Instant::now();
        let (res, peak) = peak_heap(|| remove_contents(fd.as_fd(), &Limits::default(), &mut || {}));
        assert_eq!(res.end, Removed::All);
        assert_eq!(res.removed, 100_000);
        assert!(
            peak < 16 * 1024,
            "deleting 100,000 entries peaked at {peak} bytes of heap"
        );
        eprintln!(
            "100,000 entries: walk peak heap {peak} B; deleted in {:?}",
            t.elapsed()
        );
    }

    /// FS_IOC_SETFLAGS: set or clear `flag` (FS_IMMUTABLE_FL, FS_APPEND_FL).
    pub(crate) fn set_attr(p: &Path, flag: nix::libc::c_long, on: bool) {
        // _IOR('f', 1, long) and _IOW('f', 2, long): the size is the
        // target's long (8 on x86_64, 4 on armv7, where the guest test runs).
        const LONG: u32 = std::mem::size_of::<nix::libc::c_long>() as u32;
        const FS_IOC_GETFLAGS: u32 = 0x8000_6601 | (LONG << 16);
        const FS_IOC_SETFLAGS: u32 = 0x4000_6602 | (LONG << 16);
        let fd = rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        use std::os::fd::AsRawFd;
        let mut flags: nix::libc::c_long = 0;
        // SAFETY: the ioctls read/write one long through a valid pointer.
        unsafe {
            assert_eq!(
                nix::libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags),
                0,
                "FS_IOC_GETFLAGS on {}",
                p.display()
            );
            flags = if on { flags | flag } else { flags & !flag };
            assert_eq!(
                nix::libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags),
                0,
                "chattr on {} refused: the host test needs a filesystem with file attributes (ext4, xfs, tmpfs ≥ 6.0)",
                p.display()
            );
        }
    }
    pub(crate) const FS_IMMUTABLE_FL: nix::libc::c_long = 0x10;
    pub(crate) const FS_APPEND_FL: nix::libc::c_long = 0x20;

    #[test]
    fn immutable_and_append_only_entries_are_reported_and_left_never_retried() {
        let d = TempDir::new("walk-immutable");
        let r = d.path().join("t");
        d.write("t/a/immutable", "i");
        d.write("t/a/other", "o");
        d.write("t/b/appendonly/f", "f");
        d.write("t/c/gone", "g");
        set_attr(&r.join("a/immutable"), FS_IMMUTABLE_FL, true);
        set_attr(&r.join("b/appendonly"), FS_APPEND_FL, true);
        struct Undo<'a>(&'a Path);
        impl Drop for Undo<'_> {
            fn drop(&mut self) {
                set_attr(&self.0.join("a/immutable"), FS_IMMUTABLE_FL, false);
                set_attr(&self.0.join("b/appendonly"), FS_APPEND_FL, false);
            }
        }
        let undo = Undo(&r);
        let root = dirfd(&r);
        let t = Instant::now();
        let res = remove_contents(root.as_fd(), &Limits::default(), &mut || {});
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(res.end, Removed::Left);
        assert_eq!(res.left, 2, "{res:?}");
        assert!(
            matches!(
                res.first,
                Some(Leftover {
                    why: Problem::Remove(Errno::PERM),
                    ..
                })
            ),
            "{res:?}"
        );
        let msg = res.to_string();
        assert!(
            msg.starts_with("2 entries could not be deleted (first: "),
            "{msg}"
        );
        assert!(r.join("a/immutable").exists() && r.join("b/appendonly/f").exists());
        assert!(
            !r.join("a/other").exists() && !r.join("c").exists(),
            "the rest is deleted"
        );
        drop(undo);
        // Once the attributes are cleared, the next removal finishes.
        let res = remove_contents(root.as_fd(), &Limits::default(), &mut || {});
        assert_eq!(res.end, Removed::All, "{res:?}");
    }

    /// Bind-mounts `src` on `target`; unmounted (lazily) on drop.
    pub(crate) struct Mounted(pub(crate) std::path::PathBuf);
    impl Mounted {
        pub(crate) fn tmpfs(target: &Path) -> Mounted {
            rustix::mount::mount(
                "tmpfs",
                target,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                "size=1m",
            )
            .unwrap_or_else(|e| {
                panic!(
                    "mount tmpfs on {}: {e}: this test needs root (CAP_SYS_ADMIN)",
                    target.display()
                )
            });
            Mounted(target.into())
        }
        pub(crate) fn bind(src: &Path, target: &Path) -> Mounted {
            rustix::mount::mount_bind(src, target).unwrap_or_else(|e| {
                panic!(
                    "bind mount on {}: {e}: this test needs root (CAP_SYS_ADMIN)",
                    target.display()
                )
            });
            Mounted(target.into())
        }
    }
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// Issue 11, defect 11: a mount point in the trash made the deleter loop
    /// forever. Now it is never entered (a tmpfs, and a bind mount of the
    /// same filesystem, whose st_dev is the same), reported, and the
    /// removal ends.
    #[test]
    fn mount_points_are_never_crossed_and_end_the_removal() {
        let d = TempDir::new("walk-mount");
        let r = d.path().join("t");
        d.write("t/m/under-the-mount", "hidden by the mount");
        d.write("t/b/under-the-bind", "");
        d.write("t/x/file", "");
        d.write("elsewhere/precious", "same filesystem, elsewhere");
        let tmpfs = Mounted::tmpfs(&r.join("m"));
        std::fs::write(r.join("m/in-tmpfs"), "on the tmpfs").unwrap();
        let bind = Mounted::bind(&d.path().join("elsewhere"), &r.join("b"));
        let root = dirfd(&r);
        let (tx, rx) = std::sync::mpsc::channel();
        let fd = root.try_clone().unwrap();
        std::thread::spawn(move || {
            let res = remove_contents(fd.as_fd(), &Limits::default(), &mut || {});
            let _ = tx.send(res);
        });
        let res = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the removal must end");
        assert_eq!(res.end, Removed::Left);
        assert_eq!(res.left, 2, "{res:?}");
        assert!(matches!(
            res.first,
            Some(Leftover {
                why: Problem::MountPoint,
                ..
            })
        ));
        assert_eq!(
            std::fs::read_to_string(r.join("m/in-tmpfs")).unwrap(),
            "on the tmpfs"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("elsewhere/precious")).unwrap(),
            "same filesystem, elsewhere"
        );
        assert!(!r.join("x").exists());
        drop((tmpfs, bind));
        assert!(r.join("m/under-the-mount").exists());
        // A mount point given as the tree to remove is not entered either.
        let _again = Mounted::tmpfs(&r.join("m"));
        std::fs::write(r.join("m/in-tmpfs"), "x").unwrap();
        let res = remove_tree_at(
            root.as_fd(),
            OsStr::new("m"),
            &Limits::default(),
            &mut || {},
        );
        assert_eq!(res.first.map(|l| l.why), Some(Problem::MountPoint));
        assert!(r.join("m/in-tmpfs").exists());
    }

    #[test]
    fn a_symlink_is_removed_itself_never_what_it_points_to() {
        let d = TempDir::new("walk-symlink");
        d.write("keep/precious", "p");
        d.write("t/x", "");
        symlink(d.path().join("keep"), d.path().join("t/link")).unwrap();
        symlink(d.path().join("keep"), d.path().join("top-link")).unwrap();
        let root = dirfd(d.path());
        let res = remove_tree_at(
            root.as_fd(),
            OsStr::new("t"),
            &Limits::default(),
            &mut || {},
        );
        assert_eq!((res.end, res.removed), (Removed::All, 3));
        let res = remove_tree_at(
            root.as_fd(),
            OsStr::new("top-link"),
            &Limits::default(),
            &mut || {},
        );
        assert_eq!((res.end, res.removed), (Removed::All, 1));
        assert_eq!(
            std::fs::read_to_string(d.path().join("keep/precious")).unwrap(),
            "p"
        );
        let res = remove_tree_at(
            root.as_fd(),
            OsStr::new("absent"),
            &Limits::default(),
            &mut || {},
        );
        assert_eq!((res.end, res.removed), (Removed::All, 0));
    }

    #[test]
    fn the_deadline_stops_a_walk_and_a_removal_resumes_later() {
        let d = TempDir::new("walk-deadline");
        for i in 0..50 {
            d.write(&format!("t/d{i}/f"), "");
        }
        let root = dirfd(&d.path().join("t"));
        let past = Limits::new(Some(Instant::now()));
        let out = walk(root.as_fd(), &past, &mut Log::default()).unwrap();
        assert_eq!((out.end, out.clean, out.entries), (End::Deadline, false, 0));
        let res = remove_contents(root.as_fd(), &past, &mut || {});
        assert_eq!(res.end, Removed::Deadline);
        let res = remove_contents(root.as_fd(), &Limits::default(), &mut || {});
        assert_eq!((res.end, res.removed), (Removed::All, 100));
    }

    /// Entries that change under the walk: replaced by a symlink between
    /// reading and opening, vanishing, a directory moved with the walk in it.
    #[test]
    fn entries_changing_during_the_walk() {
        let d = TempDir::new("walk-change");
        d.write("t/swap/inside", "");
        d.write("t/vanish/inside", "");
        d.write("t/a/b/c/f", "");
        d.write("outside/secret", "s");
        struct Meddler<'a> {
            base: &'a Path,
            log: Log,
        }
        impl Visitor for Meddler<'_> {
            fn enter(&mut self, e: &Entry<'_>) -> Step {
                let p = self.base.join(OsStr::from_bytes(e.path));
                match e.path {
                    b"swap" => {
                        std::fs::remove_dir_all(&p).unwrap();
                        symlink(self.base.join("../outside"), &p).unwrap();
                    }
                    b"vanish" => std::fs::remove_dir_all(&p).unwrap(),
                    b"a/b/c" => {
                        // Move b out from under a, and a away: the walk is in b.
                        std::fs::rename(self.base.join("a/b"), self.base.join("b2")).unwrap();
                        std::fs::rename(self.base.join("a"), self.base.join("a2")).unwrap();
                    }
                    _ => {}
                }
                self.log.enter(e)
            }
            fn problem(&mut self, path: &[u8], p: Problem) {
                self.log.problem(path, p)
            }
        }
        let base = d.path().join("t");
        std::fs::rename(base.join("a"), d.path().join("a-later")).unwrap();
        let mut m = Meddler {
            base: &base,
            log: Log::default(),
        };
        let out = walk(dirfd(&base).as_fd(), &Limits::default(), &mut m).unwrap();
        let problems: Vec<(String, Problem)> = m
            .log
            .problems
            .iter()
            .map(|(p, pr)| (escape(p, 99), *pr))
            .collect();
        assert!(
            problems == [("swap".into(), Problem::Open(Errno::LOOP))]
                || problems == [("swap".into(), Problem::Open(Errno::NOTDIR))],
            "a replaced directory is reported, a vanished one is not: {problems:?}"
        );
        assert!(
            !m.log
                .entered
                .iter()
                .any(|(p, _, _)| p.starts_with(b"swap/")),
            "never followed"
        );
        assert_eq!((out.end, out.clean), (End::Done, false));
        assert_eq!(
            std::fs::read_to_string(d.path().join("outside/secret")).unwrap(),
            "s"
        );
        // The directory the walk is in moves away, and its parent too:
        // the walk cannot find its way back and says so.
        std::fs::rename(d.path().join("a-later"), base.join("a")).unwrap();
        let mut m = Meddler {
            base: &base,
            log: Log::default(),
        };
        let out = walk(dirfd(&base).as_fd(), &Limits::default(), &mut m).unwrap();
        assert_eq!(out.end, End::Lost, "{:?}", m.log.problems);
        assert_eq!(m.log.problems, vec![(b"a/b".to_vec(), Problem::Lost)]);
        assert!(!out.clean);
    }

    #[test]
    fn a_visitor_asking_again_forever_is_given_up() {
        let d = TempDir::new("walk-again");
        d.write("t/d/f", "");
        struct Again(u32);
        impl Visitor for Again {
            fn enter(&mut self, _: &Entry<'_>) -> Step {
                Step::Into
            }
            fn leave(&mut self, _: &Entry<'_>, _: bool) -> After {
                self.0 += 1;
                After::Again
            }
        }
        let mut v = Again(0);
        let out = walk(
            dirfd(&d.path().join("t")).as_fd(),
            &Limits::default(),
            &mut v,
        )
        .unwrap();
        assert_eq!(v.0, u32::from(MAX_PASSES));
        assert_eq!((out.end, out.clean, out.problems), (End::Done, false, 1));
    }

    #[test]
    fn directory_helpers_refuse_symlinks_files_and_mounts() {
        let d = TempDir::new("walk-helpers");
        d.write("t/file", "");
        d.write("t/a/b/c", "");
        d.write("outside/x", "");
        symlink(d.path().join("outside"), d.path().join("t/link")).unwrap();
        let t = dirfd(&d.path().join("t"));
        assert_eq!(
            ensure_dir_at(t.as_fd(), OsStr::new("file"), 0o755).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(
            ensure_dir_at(t.as_fd(), OsStr::new("link"), 0o755).err(),
            Some(Errno::NOTDIR)
        );
        assert!(ensure_dir_at(t.as_fd(), OsStr::new("a"), 0o755).is_ok());
        assert!(ensure_dir_at(t.as_fd(), OsStr::new("new"), 0o700).is_ok());
        assert!(open_beneath(t.as_fd(), b"a/b").is_ok());
        assert!(open_beneath(t.as_fd(), b"").is_ok());
        assert!(open_beneath(t.as_fd(), b"link").is_err());
        assert!(open_beneath(t.as_fd(), b"a/b/c").is_err());
        let _m = Mounted::tmpfs(&d.path().join("t/a"));
        assert_eq!(open_beneath(t.as_fd(), b"a").err(), Some(Errno::XDEV));
        assert_eq!(
            open_subdir(t.as_fd(), OsStr::new("a")).err(),
            Some(Errno::XDEV)
        );
        assert!(is_empty(open_dir_at(t.as_fd(), "a").unwrap().as_fd()).unwrap());
        assert!(!is_empty(t.as_fd()).unwrap());
    }
}
