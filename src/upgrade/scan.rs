//! File-system reads of the upgrade: the walks (over crate::walk, the one
//! bounded walker), an entry's contents and xattrs, and the lowers' entries
//! by path. Nothing here follows a symlink or crosses a mount.

use super::manifest::{crc_of, Kind, Meta};
use super::{show_path, Error, Step};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Called by [`walk_tree`] with each entry: its path (relative), its
/// lstat, and the directory that holds it.
pub type Visit<'a> = dyn FnMut(&[u8], &rustix::fs::Stat, BorrowedFd) -> Result<(), Error> + 'a;

#[inline(never)]
pub fn io_err(step: Step, path: &[u8], err: std::io::Error) -> Error {
    Error::Io {
        step,
        path: show_path(path),
        err,
    }
}

fn io(step: Step, path: &[u8]) -> impl Fn(rustix::io::Errno) -> Error + '_ {
    move |e| io_err(step, path, e.into())
}

/// The last component of a relative path.
pub fn name_of(path: &[u8]) -> &OsStr {
    OsStr::from_bytes(path.rsplit(|&c| c == b'/').next().unwrap_or(path))
}

/// Every entry below `root` (not `root` itself), parents before children,
/// through the bounded walker (crate::walk). `Err` when an entry cannot be
/// read, or when part of the tree could not be walked (a mount point, too
/// deep, ...): a manifest or a listing of a part is not one of the whole.
pub fn walk_tree(root: BorrowedFd, visit: &mut Visit) -> Result<(), Error> {
    struct V<'a, 'b> {
        visit: &'a mut Visit<'b>,
        err: Option<Error>,
    }
    impl crate::walk::Visitor for V<'_, '_> {
        fn enter(&mut self, e: &crate::walk::Entry<'_>) -> crate::walk::Step {
            let r = match e.stat() {
                Ok(st) => (self.visit)(e.path, &st, e.dir),
                Err(rustix::io::Errno::NOENT) => return crate::walk::Step::Next,
                Err(err) => Err(io(Step::Read, e.path)(err)),
            };
            match r {
                Ok(()) => crate::walk::Step::Into,
                Err(err) => {
                    self.err = Some(err);
                    crate::walk::Step::Stop
                }
            }
        }

        fn problem(&mut self, path: &[u8], p: crate::walk::Problem) {
            if self.err.is_none() {
                self.err = Some(Error::Io {
                    step: Step::Walk,
                    path: show_path(path),
                    err: std::io::Error::other(p.to_string()),
                });
            }
        }
    }
    let mut v = V { visit, err: None };
    let out = crate::walk::walk(root, &crate::walk::Limits::default(), &mut v)
        .map_err(io(Step::Walk, b""))?;
    match v.err {
        Some(e) => Err(e),
        None if out.end == crate::walk::End::Done => Ok(()),
        None => Err(io(Step::Walk, b"")(rustix::io::Errno::INTR)),
    }
}

/// `st_nlink`, whose type differs between targets.
#[allow(clippy::unnecessary_cast)]
pub fn nlink(st: &rustix::fs::Stat) -> u64 {
    st.st_nlink as u64
}

/// Opens `name` in `dir` for reading, never following a symlink, never
/// blocking (a FIFO that replaced a file in the meantime is not waited on).
pub fn open_file(dir: BorrowedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if Kind::of_mode(rustix::fs::fstat(&fd)?.st_mode) != Kind::File {
        return Err(rustix::io::Errno::INVAL);
    }
    Ok(fd)
}

/// Fills in what lstat does not say: a file's CRC32, a symlink's target.
pub fn read_content(dir: BorrowedFd, path: &[u8], meta: &mut Meta) -> Result<(), Error> {
    let name = name_of(path);
    match meta.kind {
        Kind::File => {
            let fd = open_file(dir, name).map_err(io(Step::Read, path))?;
            meta.crc = Some(crc_of(fd).map_err(|err| io_err(Step::Read, path, err))?);
        }
        Kind::Symlink => {
            let t = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(io(Step::Read, path))?;
            meta.target = t.into_bytes();
        }
        _ => {}
    }
    Ok(())
}

/// Whether the entry `name` of `dir` has the overlayfs xattr `attr`
/// (`trusted.overlay.opaque` = `y` for opaque; any value for the others).
pub fn has_xattr(dir: BorrowedFd, name: &OsStr, attr: &str, want: Option<&[u8]>) -> bool {
    // The xattr calls take a path: the entry through /proc/self/fd, which
    // lgetxattr resolves without following the entry itself.
    let mut p = format!("/proc/self/fd/{}/", rustix::fd::AsRawFd::as_raw_fd(&dir)).into_bytes();
    p.extend_from_slice(name.as_bytes());
    let mut buf = [0u8; 8];
    match rustix::fs::lgetxattr(OsStr::from_bytes(&p), attr, &mut buf) {
        Ok(n) => want.is_none_or(|w| buf.get(..n) == Some(w)),
        Err(rustix::io::Errno::RANGE) => want.is_none(),
        Err(_) => false,
    }
}

/// The overlayfs facts of an upper entry.
pub struct Xattrs {
    pub opaque: bool,
    pub redirect: bool,
    pub metacopy: bool,
}

/// Reads only what can be there: `opaque` and `redirect` on directories,
/// `metacopy` and `redirect` on regular files that hold no data blocks.
pub fn overlay_xattrs(dir: BorrowedFd, name: &OsStr, st: &rustix::fs::Stat) -> Xattrs {
    let mut x = Xattrs {
        opaque: false,
        redirect: false,
        metacopy: false,
    };
    match Kind::of_mode(st.st_mode) {
        Kind::Dir => {
            x.opaque = has_xattr(dir, name, "trusted.overlay.opaque", Some(b"y"));
            x.redirect = has_xattr(dir, name, "trusted.overlay.redirect", None);
        }
        Kind::File if st.st_blocks == 0 && st.st_size > 0 => {
            x.metacopy = has_xattr(dir, name, "trusted.overlay.metacopy", None);
            x.redirect = x.metacopy && has_xattr(dir, name, "trusted.overlay.redirect", None);
        }
        _ => {}
    }
    x
}

/// The lowers, top first, with the directory of the last path looked up
/// kept open in each, so that looking up the entries of one directory
/// after another opens each directory once.
pub struct Lowers<'a> {
    roots: &'a [BorrowedFd<'a>],
    /// The directory part of the last lookup, and its fd in each lower.
    dir: Vec<u8>,
    fds: Vec<Option<OwnedFd>>,
}

impl<'a> Lowers<'a> {
    pub fn new(roots: &'a [BorrowedFd<'a>]) -> Lowers<'a> {
        Lowers {
            roots,
            dir: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Opens directory `dir` (relative) in every lower, component by
    /// component without following symlinks (as overlayfs does not merge
    /// through them).
    fn enter(&mut self, dir: &[u8]) {
        if self.dir == dir && self.fds.len() == self.roots.len() {
            return;
        }
        self.dir = dir.to_vec();
        self.fds = self
            .roots
            .iter()
            .map(|root| {
                let mut cur: Option<OwnedFd> = None;
                for c in dir.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
                    let at = cur.as_ref().map_or(*root, |f| f.as_fd());
                    cur = Some(
                        rustix::fs::openat(
                            at,
                            OsStr::from_bytes(c),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .ok()?,
                    );
                }
                match cur {
                    Some(f) => Some(f),
                    None => rustix::fs::openat(
                        *root,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .ok(),
                }
            })
            .collect();
    }

    /// The merged lowers' entry at `path`, the top one that has it; its
    /// contents read (CRC32, target) only if `read(meta)` says so. `Err`
    /// only when an entry that exists cannot be read.
    pub fn get(
        &mut self,
        path: &[u8],
        read: &dyn Fn(&Meta) -> bool,
    ) -> Result<Option<(Meta, usize)>, Error> {
        let (dir, _) = split(path);
        self.enter(dir);
        let name = name_of(path);
        for (i, fd) in self.fds.iter().enumerate() {
            let Some(fd) = fd else { continue };
            match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let mut m = Meta::of_stat(&st);
                    if read(&m) {
                        read_content(fd.as_fd(), path, &mut m)?;
                    }
                    return Ok(Some((m, i)));
                }
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                Err(e) => return Err(io(Step::Read, path)(e)),
            }
        }
        Ok(None)
    }

    /// The names in directory `dir` of the merged lowers.
    pub fn children(&mut self, dir: &[u8]) -> Vec<Vec<u8>> {
        // `enter` opens the parent; the directory itself is opened here.
        let mut names: Vec<Vec<u8>> = Vec::new();
        let (parent, _) = split(dir);
        self.enter(parent);
        for fd in self.fds.iter().flatten() {
            let sub = if dir.is_empty() {
                rustix::fs::openat(
                    fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            } else {
                rustix::fs::openat(
                    fd,
                    name_of(dir),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let Ok(sub) = sub else { continue };
            let Ok(mut d) = rustix::fs::Dir::read_from(&sub) else {
                continue;
            };
            while let Some(Ok(e)) = d.read() {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." && !names.iter().any(|x| x == n) {
                    names.push(n.to_vec());
                }
            }
        }
        names
    }
}

/// `(directory, name)` of a relative path (`b""` for a top-level name).
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[], path),
    }
}
