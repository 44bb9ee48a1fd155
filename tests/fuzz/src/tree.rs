//! Trees generated from the fuzz input in a scratch directory on tmpfs, for
//! the reset's walks: depth (chains of up to 2,040 levels), width, names of
//! any byte but `/` and NUL up to 255 bytes, symlinks (loops, `..`,
//! absolute), FIFOs, hard links. Built with directory fds and `*at` calls,
//! so that no path grows past PATH_MAX.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// This process's scratch directory (/dev/shm if it exists: tmpfs, so that
/// the walks' syncfs calls cost nothing).
pub fn scratch() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("overlay-init-fuzz-{}", std::process::id()))
}

/// Reads the input byte by byte; zeros once it is used up.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A directory-entry name: 1-255 bytes, any but `/` and NUL, never `.`
    /// or `..`.
    pub fn name(&mut self) -> Vec<u8> {
        let len = usize::from(self.next() % 16).max(1);
        let len = if len == 15 { 255 } else { len };
        let mut n: Vec<u8> = (0..len)
            .map(|_| match self.next() {
                0 | b'/' => b'_',
                b => b,
            })
            .collect();
        if n == b"." || n == b".." {
            n.push(b'x');
        }
        n
    }
}

fn openat_dir(dir: &OwnedFd, name: &[u8]) -> Option<OwnedFd> {
    rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// Fills the (existing, empty) directory `top` from the input.
pub fn build(top: &Path, input: &mut Bytes) {
    let Ok(mut cur) = rustix::fs::open(
        top,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let mut depth = 0u32;
    let mut last_file: Option<Vec<u8>> = None;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        match input.next() % 9 {
            0 => {
                let n = input.name();
                let _ =
                    rustix::fs::mkdirat(&cur, OsStr::from_bytes(&n), Mode::from_raw_mode(0o755));
                if let Some(d) = openat_dir(&cur, &n) {
                    cur = d;
                    depth += 1;
                }
            }
            1 if depth > 0 => {
                if let Some(d) = openat_dir(&cur, b"..") {
                    cur = d;
                    depth -= 1;
                }
            }
            2 => {
                let n = input.name();
                let len = usize::from(input.next());
                if let Ok(f) = rustix::fs::openat(
                    &cur,
                    OsStr::from_bytes(&n),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                ) {
                    let _ = rustix::io::write(&f, &vec![b'x'; len]);
                }
                last_file = Some(n);
            }
            3 => {
                let n = input.name();
                let target: &[u8] = match input.next() % 5 {
                    0 => b"..",
                    1 => b"/",
                    2 => &n, // a loop onto itself
                    3 => b"../../../../etc",
                    _ => b"missing",
                };
                let _ =
                    rustix::fs::symlinkat(OsStr::from_bytes(target), &cur, OsStr::from_bytes(&n));
            }
            4 => {
                let n = input.name();
                let _ = rustix::fs::mknodat(
                    &cur,
                    OsStr::from_bytes(&n),
                    rustix::fs::FileType::Fifo,
                    Mode::from_raw_mode(0o644),
                    0,
                );
            }
            5 => {
                // A chain of directories: depth, the classic fd exhaustion.
                let levels = u32::from(input.next()) * 8;
                for _ in 0..levels {
                    let _ = rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755));
                    match openat_dir(&cur, b"d") {
                        Some(d) => {
                            cur = d;
                            depth += 1;
                        }
                        None => break,
                    }
                }
            }
            6 => {
                if let Some(old) = &last_file {
                    let n = input.name();
                    let _ = rustix::fs::linkat(
                        &cur,
                        OsStr::from_bytes(old),
                        &cur,
                        OsStr::from_bytes(&n),
                        AtFlags::empty(),
                    );
                }
            }
            7 => {
                // Width: many empty files.
                let n = usize::from(input.next()) * 4;
                for i in 0..n {
                    let _ = rustix::fs::openat(
                        &cur,
                        format!("f{i}").as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    );
                }
            }
            _ => {
                // A directory without permissions for anyone.
                let n = input.name();
                let _ = rustix::fs::mkdirat(&cur, OsStr::from_bytes(&n), Mode::empty());
            }
        }
    }
    let _ = cur.as_fd();
}

/// Runs `f` with the open-file limit PID 1 has (the kernel's default soft
/// limit, 1024), then restores it: the walks must live with it.
pub fn with_pid1_fd_limit<R>(f: impl FnOnce() -> R) -> R {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let saved = getrlimit(Resource::Nofile);
    let mut pid1 = saved.clone();
    pid1.current = Some(1024);
    let _ = setrlimit(Resource::Nofile, pid1);
    let r = f();
    let _ = setrlimit(Resource::Nofile, saved);
    r
}

/// Removes the scratch tree, whatever it holds (modes restored first).
pub fn clear(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+rwx"])
        .arg(dir)
        .status();
    let _ = std::fs::remove_dir_all(dir);
}
