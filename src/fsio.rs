//! Small records on the data filesystem (the reset request and done
//! records, the wear log, the keep list), read and written so that what
//! the upper or a damaged flash holds cannot hang, bloat or fool us:
//!
//! - **reads** ([`read_at`], [`read_into`], [`read_in_root`]): the name is
//!   lstat'ed first and must be a regular file (a FIFO would block the
//!   open, a device node's open has side effects: neither is ever opened);
//!   then opened `O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY|O_CLOEXEC` and
//!   fstat'ed again (the same regular file, or refused); its size must be
//!   within the caller's limit, and at most one byte more than the limit
//!   is ever read.
//! - **writes** ([`write_atomic`]): refused above the limit the reader
//!   applies; otherwise a temp file (`NAME.tmp`, whatever stood there
//!   removed first, created `O_EXCL|O_NOFOLLOW`), written, fsynced,
//!   renamed over `NAME`, and the directory fsynced: a power cut leaves the
//!   old record or the new one, never a mix.
//!
//! These are the only ways the reset (`reset/`) and the wear log
//! (`wear/log.rs`) touch their files. They make their syscalls directly on
//! directory fds (through rustix), not through `Sys`: they run on the
//! mounted data filesystem, and their tests run them on real files.

use crate::walk::Kind;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// Why a record file cannot be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordIoError {
    /// Not a regular file: never opened for reading.
    NotRegular(Kind),
    /// Larger than a record of this kind may be.
    TooLarge { size: u64, max: usize },
    /// A step failed.
    Io { step: &'static str, err: Errno },
}

impl fmt::Display for RecordIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordIoError::NotRegular(k) => write!(f, "not a regular file ({})", kind_name(*k)),
            RecordIoError::TooLarge { size, max } => {
                write!(f, "{size} bytes, more than the {max} a record may have")
            }
            RecordIoError::Io { step, err } => write!(f, "{step}: {err}"),
        }
    }
}

impl RecordIoError {
    /// The errno it amounts to (EINVAL for a file that is not a record).
    pub fn errno(&self) -> Errno {
        match self {
            RecordIoError::Io { err, .. } => *err,
            RecordIoError::NotRegular(_) | RecordIoError::TooLarge { .. } => Errno::INVAL,
        }
    }
}

/// What an entry is, for messages.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Dir => "a directory",
        Kind::File => "a file",
        Kind::Symlink => "a symlink",
        Kind::Fifo => "a FIFO",
        Kind::Socket => "a socket",
        Kind::CharDev => "a character device",
        Kind::BlockDev => "a block device",
        Kind::Unknown => "of unknown type",
    }
}

fn io(step: &'static str) -> impl Fn(Errno) -> RecordIoError {
    move |err| RecordIoError::Io { step, err }
}

fn io_err(step: &'static str) -> impl Fn(std::io::Error) -> RecordIoError {
    move |e| RecordIoError::Io {
        step,
        err: Errno::from_io_error(&e).unwrap_or(Errno::IO),
    }
}

const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Checks a stat: a regular file of at most `max` bytes.
fn check(st: &rustix::fs::Stat, max: usize) -> Result<(), RecordIoError> {
    let kind = Kind::from_mode(st.st_mode);
    if kind != Kind::File {
        return Err(RecordIoError::NotRegular(kind));
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > max as u64 {
        return Err(RecordIoError::TooLarge { size, max });
    }
    Ok(())
}

/// Opens `name` in `dir` for reading if it is a regular file of at most
/// `max` bytes (`None`: absent). With `follow`, a symlink in the last
/// component is followed (to a regular file only).
fn open_checked(
    dir: BorrowedFd<'_>,
    name: &str,
    max: usize,
    follow: bool,
) -> Result<Option<OwnedFd>, RecordIoError> {
    let (at, o) = if follow {
        (AtFlags::empty(), OFlags::empty())
    } else {
        (AtFlags::SYMLINK_NOFOLLOW, OFlags::NOFOLLOW)
    };
    let before = match rustix::fs::statat(dir, name, at) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io("stat")(e)),
    };
    check(&before, max)?;
    let fd = match rustix::fs::openat(dir, name, READ_FLAGS | o, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(RecordIoError::NotRegular(Kind::Symlink)),
        Err(e) => return Err(io("open")(e)),
    };
    verify(&fd, &before, max)?;
    Ok(Some(fd))
}

/// The opened file is the one checked, and still a regular file in bounds.
fn verify(fd: &OwnedFd, before: &rustix::fs::Stat, max: usize) -> Result<(), RecordIoError> {
    let st = rustix::fs::fstat(fd).map_err(io("fstat"))?;
    check(&st, max)?;
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) {
        return Err(RecordIoError::Io {
            step: "open (replaced meanwhile)",
            err: Errno::STALE,
        });
    }
    Ok(())
}

/// Reads from `fd` until `buf` is full or the file ends: the bytes read.
fn fill(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, RecordIoError> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match rustix::io::read(fd, rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io("read")(e)),
        }
    }
    Ok(n)
}

/// Reads at most `max` bytes from `fd`; one byte more is `TooLarge` (the
/// file grew since it was checked).
fn read_bounded(fd: OwnedFd, max: usize) -> Result<Vec<u8>, RecordIoError> {
    let size = rustix::fs::fstat(&fd).map_or(0, |st| st.st_size.max(0) as u64);
    let mut v = vec![0u8; (size as usize).min(max) + 1];
    let n = fill(&fd, &mut v)?;
    if n > max {
        return Err(RecordIoError::TooLarge {
            size: n as u64,
            max,
        });
    }
    v.truncate(n);
    Ok(v)
}

/// The record `name` in `dir` (never following a symlink), `None` when
/// absent. At most `max` bytes are ever read.
pub fn read_at(
    dir: BorrowedFd<'_>,
    name: &str,
    max: usize,
) -> Result<Option<Vec<u8>>, RecordIoError> {
    match open_checked(dir, name, max, false)? {
        None => Ok(None),
        Some(fd) => read_bounded(fd, max).map(Some),
    }
}

/// [`read_at`] into `buf` (no allocation): the number of bytes read, at
/// most `buf.len()`; a larger file is `TooLarge` with its size.
pub fn read_into(
    dir: BorrowedFd<'_>,
    name: &str,
    buf: &mut [u8],
) -> Result<Option<usize>, RecordIoError> {
    let max = buf.len();
    let Some(fd) = open_checked(dir, name, max, false)? else {
        return Ok(None);
    };
    fill(&fd, buf).map(Some)
}

/// The file at `path` (absolute, or relative to the working directory),
/// following symlinks, as for a configuration file: regular files only,
/// at most `max` bytes. `None` when absent.
pub fn read_path(path: &Path, max: usize) -> Result<Option<Vec<u8>>, RecordIoError> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => {
            return Err(RecordIoError::Io {
                step: "open",
                err: Errno::INVAL,
            })
        }
    };
    let dir = match rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io("open the directory")(e)),
    };
    let Some(name) = name.to_str() else {
        return Err(RecordIoError::Io {
            step: "open",
            err: Errno::INVAL,
        });
    };
    match open_checked(dir.as_fd(), name, max, true)? {
        None => Ok(None),
        Some(fd) => read_bounded(fd, max).map(Some),
    }
}

/// The file at `path` inside the directory tree `root`, as a process
/// chrooted there would see it (`openat2` `RESOLVE_IN_ROOT`: symlinks
/// resolve inside `root`); regular files only, at most `max` bytes, never
/// blocking. `None` when absent.
pub fn read_in_root(root: &Path, path: &str, max: usize) -> Result<Option<Vec<u8>>, RecordIoError> {
    let dir = match rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io("open the root")(e)),
    };
    let rel = path.trim_start_matches('/');
    let open = |flags: OFlags| {
        rustix::fs::openat2(
            &dir,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
    };
    // An O_PATH open has no side effects whatever the file is: look first.
    let probe = match open(OFlags::PATH) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        // Kernels before 5.6 have no openat2: resolve naively.
        Err(Errno::NOSYS) => return read_path(&root.join(rel), max),
        Err(e) => return Err(io("open")(e)),
    };
    let before = rustix::fs::fstat(&probe).map_err(io("fstat"))?;
    check(&before, max)?;
    let fd = match open(READ_FLAGS) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    verify(&fd, &before, max)?;
    read_bounded(fd, max).map(Some)
}

/// Replaces `name` in `dir` with `bytes`, atomically against power loss
/// (see the module doc). Refused (`TooLarge`, nothing written) above `max`,
/// the limit its reader applies.
pub fn write_atomic(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    max: usize,
) -> Result<(), RecordIoError> {
    write_atomic_mode(dir, name, bytes, max, 0o600)
}

/// Creates `tmp` in `dir` for writing, anew: whatever a cut (or anyone)
/// left under that name goes first. A FIFO there would block an `O_CREAT`
/// open, a symlink would redirect it, and a cut inside the last rename from
/// it (JFFS2 on NOR renames in two writes) leaves it a second name of the
/// live record, which `O_TRUNC` would empty.
pub fn new_temp(dir: BorrowedFd<'_>, tmp: &str, mode: u32) -> Result<OwnedFd, Errno> {
    match rustix::fs::unlinkat(dir, std::ffi::OsStr::new(tmp), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    rustix::fs::openat(
        dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

/// [`write_atomic`] with the file's mode (the state file in /run is for
/// everyone to read).
pub fn write_atomic_mode(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    max: usize,
    mode: u32,
) -> Result<(), RecordIoError> {
    if bytes.len() > max {
        return Err(RecordIoError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    let tmp = format!("{name}.tmp");
    let fd = new_temp(dir, &tmp, mode).map_err(io("create the temp file"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(io_err("write"))?;
    f.sync_all().map_err(io_err("fsync"))?;
    drop(f);
    rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(io("rename"))?;
    rustix::fs::fsync(dir).map_err(io("fsync the directory"))
}

/// The names in directory `dir` (without `.` and `..`), in directory
/// order, as std's `read_dir` lists them: entries read before an error are
/// kept and the listing stops there. One getdents buffer (rustix, as the
/// walks use); std's `ReadDir` (and libc's opendir/readdir) stay out of the
/// binary (issue 14's size budget).
pub fn dir_names(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStringExt;
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    let mut names = Vec::new();
    while let Some(Ok(e)) = d.read() {
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(std::ffi::OsString::from_vec(n.to_vec()));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use rustix::fs::FileType;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn dirfd(p: &Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn mknod(p: &Path, t: FileType, dev: u64) {
        rustix::fs::mknodat(rustix::fs::CWD, p, t, Mode::from_raw_mode(0o600), dev).unwrap();
    }

    /// Runs `f` on another thread; fails if it takes more than 5 s (a
    /// blocking open of a FIFO would never return).
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("it must not block")
    }

    #[test]
    fn round_trip_and_limits() {
        let d = TempDir::new("fsio");
        let dir = dirfd(d.path());
        write_atomic(dir.as_fd(), "rec", b"hello", 5).unwrap();
        assert_eq!(
            read_at(dir.as_fd(), "rec", 5).unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(read_at(dir.as_fd(), "absent", 5).unwrap(), None);
        assert_eq!(
            read_at(dir.as_fd(), "rec", 4),
            Err(RecordIoError::TooLarge { size: 5, max: 4 })
        );
        assert_eq!(
            write_atomic(dir.as_fd(), "rec", b"toolong", 5),
            Err(RecordIoError::TooLarge { size: 7, max: 5 })
        );
        assert_eq!(
            std::fs::read(d.path().join("rec")).unwrap(),
            b"hello",
            "nothing written"
        );
        let mut buf = [0u8; 8];
        assert_eq!(read_into(dir.as_fd(), "rec", &mut buf).unwrap(), Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(
            read_into(dir.as_fd(), "rec", &mut buf[..3]),
            Err(RecordIoError::TooLarge { size: 5, max: 3 })
        );
        assert_eq!(
            read_path(&d.path().join("rec"), 9).unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            read_in_root(d.path(), "/rec", 9).unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(read_in_root(d.path(), "/nope", 9).unwrap(), None);
    }

    #[test]
    fn fifos_devices_directories_and_symlinks_are_refused_without_blocking() {
        let d = TempDir::new("fsio-kinds");
        mknod(&d.path().join("fifo"), FileType::Fifo, 0);
        mknod(
            &d.path().join("null"),
            FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        );
        std::fs::create_dir(d.path().join("dir")).unwrap();
        d.write("target", "t");
        symlink("target", d.path().join("link")).unwrap();
        symlink("fifo", d.path().join("link-to-fifo")).unwrap();
        let p = d.path().to_path_buf();
        let t = Instant::now();
        let results = bounded(move || {
            let dir = dirfd(&p);
            let names = ["fifo", "null", "dir", "link"];
            let at: Vec<_> = names.iter().map(|n| read_at(dir.as_fd(), n, 64)).collect();
            let paths = [p.join("fifo"), p.join("link-to-fifo")];
            let by_path: Vec<_> = paths.iter().map(|q| read_path(q, 64)).collect();
            let in_root = [
                read_in_root(&p, "/fifo", 64),
                read_in_root(&p, "/link-to-fifo", 64),
            ];
            (at, by_path, in_root)
        });
        assert!(t.elapsed() < Duration::from_secs(1));
        use RecordIoError::NotRegular;
        assert_eq!(
            results.0,
            [
                Err(NotRegular(Kind::Fifo)),
                Err(NotRegular(Kind::CharDev)),
                Err(NotRegular(Kind::Dir)),
                Err(NotRegular(Kind::Symlink))
            ]
        );
        assert_eq!(
            results.1,
            [Err(NotRegular(Kind::Fifo)), Err(NotRegular(Kind::Fifo))]
        );
        assert_eq!(
            results.2,
            [Err(NotRegular(Kind::Fifo)), Err(NotRegular(Kind::Fifo))]
        );
        // A configuration file may be a symlink to a regular file.
        assert_eq!(
            read_path(&d.path().join("link"), 9).unwrap(),
            Some(b"t".to_vec())
        );
        assert_eq!(
            NotRegular(Kind::Fifo).to_string(),
            "not a regular file (a FIFO)"
        );
    }

    #[test]
    fn a_fifo_or_symlink_under_the_temp_name_is_replaced_not_used() {
        let d = TempDir::new("fsio-tmp");
        mknod(&d.path().join("rec.tmp"), FileType::Fifo, 0);
        d.write("outside", "must stay");
        let p = d.path().to_path_buf();
        bounded(move || write_atomic(dirfd(&p).as_fd(), "rec", b"new", 9)).unwrap();
        assert_eq!(std::fs::read(d.path().join("rec")).unwrap(), b"new");
        symlink(d.path().join("outside"), d.path().join("rec.tmp")).unwrap();
        write_atomic(dirfd(d.path()).as_fd(), "rec", b"newer", 9).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("outside")).unwrap(),
            "must stay"
        );
        assert_eq!(std::fs::read(d.path().join("rec")).unwrap(), b"newer");
        assert!(!d.path().join("rec.tmp").exists());
    }

    /// A cut inside the rename from the temp name (JFFS2 on NOR renames in
    /// two writes) leaves it a second name of the live record: a new temp
    /// file is a new inode, the live record untouched until the rename.
    #[test]
    fn a_temp_name_left_as_a_second_name_of_the_record_is_not_written_through() {
        let d = TempDir::new("fsio-tmp-link");
        d.write("rec", "live");
        std::fs::hard_link(d.path().join("rec"), d.path().join("rec.tmp")).unwrap();
        let dir = dirfd(d.path());
        let fd = new_temp(dir.as_fd(), "rec.tmp", 0o600).unwrap();
        std::fs::File::from(fd).write_all(b"partial").unwrap();
        assert_eq!(std::fs::read(d.path().join("rec")).unwrap(), b"live");
        write_atomic(dir.as_fd(), "rec", b"new", 9).unwrap();
        assert_eq!(std::fs::read(d.path().join("rec")).unwrap(), b"new");
    }
}
