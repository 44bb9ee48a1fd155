//! Carrying out a reset request on the mounted data filesystem, before the
//! overlay exists. Every step is a rename or an unlink on directory fds
//! opened with `O_NOFOLLOW`, checked to be on the data filesystem's device:
//! a symlink in the upper is removed, never followed, and no step crosses
//! into another mount, whatever the upper contains.
//!
//! Steps, each idempotent, so a boot after a power cut at any instant simply
//! runs them again (the request stays until the last one):
//! 1. `keep`: entries of `upper/` matching the keep list move (rename) to
//!    `.reset/keep-SEQ/` (skipped once step 2 has happened);
//! 2. `trash`: `upper/` and `work/` are renamed to `.reset/trash/SEQ-upper`,
//!    `SEQ-work` (each only if its trash name does not exist yet);
//! 3. `fresh`: empty `upper/` and `work/` are created;
//! 4. `restore`: `.reset/keep-SEQ/` is merged back into `upper/` by renames;
//! 5. `done`: the `done` record gets SEQ, the keep area goes, then the
//!    request is removed (a request left behind is stale: see [`Pending`]).
//!
//! The trash is deleted afterwards, within a time budget at boot and by a
//! low-priority background process for the rest ([`ResetArea::delete_trash`]); what a
//! power cut leaves of it is deleted at the next boot.

use super::{decode_done, encode_done, KeepSet, RecordError, Request, DONE, REQUEST, RESET_DIR};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

/// Called after every change with the step's name: the crash-test hook.
pub type Hook<'a> = &'a mut dyn FnMut(&str);

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(os)
}

/// Opens a subdirectory, refusing symlinks (ELOOP/ENOTDIR).
fn open_dir_at(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(os)
}

/// lstat-like: `None` when absent.
fn stat_at(dir: BorrowedFd, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(os(e)),
    }
}

fn is_dir(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
}

fn mkdir_at(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(os(e)),
    }
}

fn entries(dir: BorrowedFd) -> io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir).map_err(os)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e.map_err(os)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

fn rename_at(from: BorrowedFd, name: &OsStr, to: BorrowedFd, to_name: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(from, name, to, to_name).map_err(os)
}

fn read_at(dir: BorrowedFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let mut v = Vec::new();
            std::fs::File::from(fd)
                .take(super::MAX_PAYLOAD as u64 + 64)
                .read_to_end(&mut v)?;
            Ok(Some(v))
        }
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(os(e)),
    }
}

/// Write a temp file, fsync it, rename it over `name`, fsync the directory.
fn write_atomic(dir: BorrowedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(os)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(os)?;
    rustix::fs::fsync(dir).map_err(os)
}

/// The reset area of a data filesystem mounted at some path.
pub struct ResetArea {
    root: OwnedFd,
    area: OwnedFd,
    dev: u64,
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
    /// Entries moved aside and back because the keep list matched them.
    pub kept: Vec<String>,
}

impl ResetArea {
    /// Opens (creating `.reset/` if asked) the reset area of the data fs at `data`.
    pub fn open(data: &Path, create: bool) -> io::Result<ResetArea> {
        let root = open_dir(data)?;
        let dev = rustix::fs::fstat(&root).map_err(os)?.st_dev;
        if create {
            mkdir_at(root.as_fd(), OsStr::new(RESET_DIR), 0o700)?;
        }
        let area = open_dir_at(root.as_fd(), OsStr::new(RESET_DIR))?;
        Ok(ResetArea { root, area, dev })
    }

    /// The pending request, if any, checked against the `done` record.
    pub fn pending(&self) -> io::Result<Pending> {
        let Some(bytes) = read_at(self.area.as_fd(), REQUEST)? else {
            return Ok(Pending::None);
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
    pub fn last_done(&self) -> io::Result<Option<u64>> {
        Ok(read_at(self.area.as_fd(), DONE)?.and_then(|b| decode_done(&b).ok()))
    }

    /// Records a request for the next boot; its seq follows the last reset.
    pub fn write_request(&self, keep: Vec<String>) -> io::Result<Request> {
        let prev = match self.pending()? {
            Pending::Request(r) => r.seq,
            _ => 0,
        };
        let seq = prev.max(self.last_done()?.unwrap_or(0)) + 1;
        let req = Request { seq, keep };
        write_atomic(self.area.as_fd(), REQUEST, &req.encode())?;
        Ok(req)
    }

    /// Removes the request (cancel, corrupt or stale record); true if there was one.
    pub fn remove_request(&self) -> io::Result<bool> {
        match rustix::fs::unlinkat(self.area.as_fd(), REQUEST, AtFlags::empty()) {
            Ok(()) => {
                rustix::fs::fsync(&self.area).map_err(os)?;
                Ok(true)
            }
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(os(e)),
        }
    }

    fn same_fs(&self, fd: BorrowedFd) -> io::Result<bool> {
        Ok(rustix::fs::fstat(fd).map_err(os)?.st_dev == self.dev)
    }

    /// Steps 1-5 (see the module doc). Safe to call again after a cut at any point.
    pub fn carry_out(&self, req: &Request, hook: Hook) -> io::Result<Report> {
        let root = self.root.as_fd();
        let area = self.area.as_fd();
        let keep_name = OsString::from(format!("keep-{}", req.seq));
        let trash_upper = OsString::from(format!("{}-upper", req.seq));
        let trash_work = OsString::from(format!("{}-work", req.seq));
        mkdir_at(area, OsStr::new("trash"), 0o700)?;
        mkdir_at(area, &keep_name, 0o700)?;
        let trash = open_dir_at(area, OsStr::new("trash"))?;
        let keep_dir = open_dir_at(area, &keep_name)?;
        let mut report = Report::default();

        // 1. keep: only while the old upper is still in place.
        let upper_trashed = stat_at(trash.as_fd(), &trash_upper)?.is_some();
        if !upper_trashed {
            if let Ok(upper) = open_dir_at(root, OsStr::new("upper")) {
                let set = KeepSet::new(&req.keep);
                self.move_kept(
                    upper.as_fd(),
                    keep_dir.as_fd(),
                    &mut Vec::new(),
                    &set,
                    &mut report,
                    hook,
                )?;
            }
        }
        rustix::fs::syncfs(root).map_err(os)?;
        // 2. trash: each rename at most once per request.
        for (dir, trash_name) in [("upper", &trash_upper), ("work", &trash_work)] {
            if stat_at(trash.as_fd(), trash_name)?.is_none()
                && stat_at(root, OsStr::new(dir))?.is_some()
            {
                rename_at(root, OsStr::new(dir), trash.as_fd(), trash_name)?;
                hook("trash");
            }
        }
        // 3. fresh
        mkdir_at(root, OsStr::new("upper"), 0o755)?;
        mkdir_at(root, OsStr::new("work"), 0o755)?;
        rustix::fs::syncfs(root).map_err(os)?;
        hook("fresh");
        // 4. restore
        let upper = open_dir_at(root, OsStr::new("upper"))?;
        self.merge(keep_dir.as_fd(), upper.as_fd(), hook)?;
        rustix::fs::syncfs(root).map_err(os)?;
        // 5. done, then the request goes.
        write_atomic(area, DONE, &encode_done(req.seq))?;
        hook("done");
        // The (now empty) keep area goes before the request, so that a cut
        // between the two leaves a stale request, which finish_stale clears.
        drop(keep_dir);
        self.remove_tree_at(area, &keep_name, None, &mut 0, hook)?;
        self.remove_request()?;
        hook("clear");
        Ok(report)
    }

    /// A stale request (its reset completed, a cut came before its removal):
    /// remove it and what the reset left of its keep area. Nothing is wiped.
    pub fn finish_stale(&self, seq: u64, hook: Hook) -> io::Result<()> {
        self.remove_request()?;
        let keep_name = OsString::from(format!("keep-{seq}"));
        self.remove_tree_at(self.area.as_fd(), &keep_name, None, &mut 0, hook)?;
        Ok(())
    }

    /// Moves what the keep list matches from `dir` (at `path` in the upper) to
    /// the same place under `keep`, creating the parents with the same modes.
    fn move_kept(
        &self,
        dir: BorrowedFd,
        keep: BorrowedFd,
        path: &mut Vec<String>,
        set: &KeepSet,
        report: &mut Report,
        hook: Hook,
    ) -> io::Result<()> {
        for name in entries(dir)? {
            let Some(st) = stat_at(dir, &name)? else {
                continue;
            };
            let n = name.to_string_lossy().into_owned();
            path.push(n.clone());
            let comps: Vec<&str> = path.iter().map(String::as_str).collect();
            if set.keeps(&comps) {
                rename_at(dir, &name, keep, &name)?;
                report.kept.push(format!("/{}", path.join("/")));
                hook("keep");
            } else if is_dir(&st) && set.may_keep_below(&comps) {
                let sub = open_dir_at(dir, &name)?;
                if self.same_fs(sub.as_fd())? {
                    mkdir_at(keep, &name, st.st_mode & 0o7777)?;
                    // The parent comes back in the new upper, where its
                    // attributes are the merged directory's: keep its owner
                    // (a kept ~/.ssh must leave ~ writable by its user).
                    // SAFETY: the ids come from stat(2), so they are real ids, never the -1
                    // that from_raw's contract excludes.
                    let (uid, gid) = unsafe {
                        (
                            rustix::fs::Uid::from_raw(st.st_uid),
                            rustix::fs::Gid::from_raw(st.st_gid),
                        )
                    };
                    rustix::fs::chownat(
                        keep,
                        &name,
                        Some(uid),
                        Some(gid),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(os)?;
                    rustix::fs::chmodat(
                        keep,
                        &name,
                        Mode::from_raw_mode(st.st_mode & 0o7777),
                        AtFlags::empty(),
                    )
                    .map_err(os)?;
                    let sub_keep = open_dir_at(keep, &name)?;
                    self.move_kept(sub.as_fd(), sub_keep.as_fd(), path, set, report, hook)?;
                }
            }
            path.pop();
        }
        Ok(())
    }

    /// Moves everything in `from` into `to`; directories that exist on both
    /// sides (parents made by an earlier, cut-short run) are merged.
    fn merge(&self, from: BorrowedFd, to: BorrowedFd, hook: Hook) -> io::Result<()> {
        for name in entries(from)? {
            let Some(st) = stat_at(from, &name)? else {
                continue;
            };
            match stat_at(to, &name)? {
                None => {
                    rename_at(from, &name, to, &name)?;
                    hook("restore");
                }
                Some(t) if is_dir(&t) && is_dir(&st) => {
                    let (f, t) = (open_dir_at(from, &name)?, open_dir_at(to, &name)?);
                    self.merge(f.as_fd(), t.as_fd(), hook)?;
                }
                Some(_) => {
                    // Only possible if a cut landed between a rename and its hook:
                    // the kept entry wins over what stands in its place.
                    self.remove_tree_at(to, &name, None, &mut 0, hook)?;
                    rename_at(from, &name, to, &name)?;
                    hook("restore");
                }
            }
        }
        Ok(())
    }

    /// Unlinks `name` in `dir` and all below it on this filesystem, never
    /// following symlinks; stops (Ok(false)) when `deadline` passes.
    fn remove_tree_at(
        &self,
        dir: BorrowedFd,
        name: &OsStr,
        deadline: Option<Instant>,
        removed: &mut u64,
        hook: Hook,
    ) -> io::Result<bool> {
        let Some(st) = stat_at(dir, name)? else {
            return Ok(true);
        };
        if is_dir(&st) {
            let sub = open_dir_at(dir, name)?;
            if !self.same_fs(sub.as_fd())? {
                return Ok(true); // a mount point: never cross into it
            }
            loop {
                let names = entries(sub.as_fd())?;
                if names.is_empty() {
                    break;
                }
                for n in names {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                    if !self.remove_tree_at(sub.as_fd(), &n, deadline, removed, hook)? {
                        return Ok(false);
                    }
                }
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(os)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(os)?;
        }
        *removed += 1;
        hook("delete");
        Ok(true)
    }

    /// Deletes the trash until it is empty (true) or `deadline` passes (false).
    pub fn delete_trash(
        &self,
        deadline: Option<Instant>,
        removed: &mut u64,
        hook: Hook,
    ) -> io::Result<bool> {
        let Some(_) = stat_at(self.area.as_fd(), OsStr::new("trash"))? else {
            return Ok(true);
        };
        let trash = open_dir_at(self.area.as_fd(), OsStr::new("trash"))?;
        for n in entries(trash.as_fd())? {
            if !self.remove_tree_at(trash.as_fd(), &n, deadline, removed, hook)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether there is trash left to delete.
    pub fn has_trash(&self) -> bool {
        open_dir_at(self.area.as_fd(), OsStr::new("trash"))
            .and_then(|t| entries(t.as_fd()))
            .is_ok_and(|e| !e.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    /// An upper with files, hidden ones, a whiteout-like entry, nested dirs,
    /// and symlinks pointing out of it.
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
        data
    }

    fn tree(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
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

    #[test]
    fn full_reset_keeps_the_list_and_nothing_else() {
        let d = TempDir::new("wipe");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(keep()).unwrap();
        assert_eq!(req.seq, 1);
        assert_eq!(area.pending().unwrap(), Pending::Request(req.clone()));
        let report = area.carry_out(&req, &mut |_| {}).unwrap();
        assert_eq!(report.kept.len(), 3);
        assert_eq!(
            tree(&data.join("upper")),
            [
                "etc/",
                "etc/config/",
                "etc/config/network",
                "etc/dropbear/",
                "etc/dropbear/key1",
                "etc/dropbear/key2"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(data.join("upper/etc/config/network")).unwrap(),
            "net"
        );
        assert!(tree(&data.join("work")).is_empty());
        assert_eq!(area.pending().unwrap(), Pending::None);
        assert_eq!(area.last_done().unwrap(), Some(1));
        // The trash is deleted separately; symlinks in it are unlinked, not followed.
        assert!(area.has_trash());
        let mut removed = 0;
        assert!(area.delete_trash(None, &mut removed, &mut |_| {}).unwrap());
        assert!(!area.has_trash());
        assert!(removed > 10, "{removed}");
        assert_eq!(
            std::fs::read_to_string(d.path().join("outside/precious")).unwrap(),
            "must stay"
        );
    }

    /// A power cut after every single change, at every point of the wipe:
    /// each run stops at its k-th change, the next run resumes from the
    /// filesystem as left, and the end state is always the same.
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

    #[test]
    fn a_completed_reset_is_never_repeated() {
        let d = TempDir::new("wipe-once");
        let data = data_fs(&d);
        let area = ResetArea::open(&data, true).unwrap();
        let req = area.write_request(vec![]).unwrap();
        // Simulate a cut between the done record and the request's removal.
        let bytes = req.encode();
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
        assert!(!area
            .delete_trash(Some(past), &mut removed, &mut |_| {})
            .unwrap());
        assert!(area.has_trash());
        assert!(area.delete_trash(None, &mut removed, &mut |_| {}).unwrap());
        assert!(!area.has_trash());
    }
}
