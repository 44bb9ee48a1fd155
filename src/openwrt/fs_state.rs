//! fstools' state of the data filesystem: `.fs_state` at its root, a
//! symbolic link whose target is a number (libfstools/overlay.c
//! `fs_state_get`/`fs_state_set`): `1` PENDING, `2` READY; no link, an
//! unreadable one, or any other number is UNKNOWN.
//!
//! What fstools does with it: its `mount_root` wipes an UNKNOWN or PENDING
//! overlay at boot (keeping `sysupgrade.tgz`) and leaves a READY one alone;
//! `mount_root done` (S95done, every boot) sets READY; `jffs2reset` on a
//! running system sets PENDING before it deletes. So a data filesystem
//! without READY is wiped by stock firmware flashed back later.
//!
//! What overlay-init does, whenever its upper is the flash, read-write:
//!
//! | found | the boot |
//! | --- | --- |
//! | READY | nothing: a normal boot writes nothing for it |
//! | UNKNOWN (absent: a new filesystem, one only overlay-init used, or one `jffs2reset` emptied) | writes READY; wipes nothing (overlay-init's own reset state is in `.reset/`) |
//! | PENDING (a reset fstools began and a power cut interrupted) | a factory reset (overlay-init's power-safe one, keeping `/sysupgrade.tgz` as fstools does), then READY |
//!
//! READY is written atomically: a new link under a temporary name, renamed
//! over `.fs_state`, the directory fsynced. fstools' own `fs_state_set`
//! unlinks then re-creates, and a cut between the two leaves UNKNOWN, which
//! its next boot wipes.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The link, at the root of the data filesystem (`/overlay/.fs_state`).
pub const FS_STATE: &str = ".fs_state";
const TMP: &str = ".fs_state.tmp";
/// What a PENDING state's reset keeps beside the keep list: the archive of
/// settings a sysupgrade leaves (fstools' `overlay_delete(.., true)`).
pub const KEEP_ON_PENDING: &str = "/sysupgrade.tgz";

/// fstools' `enum fs_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsState {
    #[default]
    Unknown,
    Pending,
    Ready,
}

/// What the boot does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Todo {
    /// Carry out a factory reset at this boot (PENDING), keeping
    /// [`KEEP_ON_PENDING`].
    pub reset: bool,
    /// Write READY (once the reset, if any, is done).
    pub write: bool,
}

/// A link target as fstools reads it: `atoi` (leading white space, a sign,
/// digits), then any value past READY, or below zero, is UNKNOWN.
pub fn parse(target: &[u8]) -> FsState {
    let t = target.trim_ascii_start();
    let (neg, t) = match t.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        _ => (false, t),
    };
    let digits = t.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = t.get(..digits).and_then(|d| {
        d.iter().try_fold(0u32, |v, b| {
            v.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
    });
    match (neg, value) {
        (false, Some(1)) => FsState::Pending,
        (false, Some(2)) => FsState::Ready,
        // -0 is 0; anything negative wraps past READY in fstools' uint32.
        _ => FsState::Unknown,
    }
}

/// The decision, pure (see the module doc).
pub fn todo(s: FsState) -> Todo {
    match s {
        FsState::Ready => Todo {
            reset: false,
            write: false,
        },
        FsState::Pending => Todo {
            reset: true,
            write: true,
        },
        FsState::Unknown => Todo {
            reset: false,
            write: true,
        },
    }
}

/// The state of the data filesystem mounted at `data` (read-only is
/// enough). Anything unreadable is UNKNOWN, as fstools reads it.
pub fn read(data: &Path) -> FsState {
    // readlink(2) reads a link only: a file or a FIFO of that name is
    // EINVAL (UNKNOWN), never opened.
    std::fs::read_link(data.join(FS_STATE))
        .map_or(FsState::Unknown, |t| parse(t.as_os_str().as_bytes()))
}

/// Sets READY on the data filesystem at `data` (read-write) unless it is
/// READY already: `Ok(true)` when it wrote. Atomic against power loss (see
/// the module doc); a `.fs_state` that is a directory is an error, left.
pub fn set_ready(data: &Path) -> io::Result<bool> {
    if read(data) == FsState::Ready {
        return Ok(false);
    }
    let tmp = data.join(TMP);
    // Whatever a cut left under the temp name.
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink("2", &tmp)?;
    std::fs::rename(&tmp, data.join(FS_STATE))?;
    std::fs::File::open(data)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    #[test]
    fn targets_read_as_fstools_reads_them() {
        for (t, s) in [
            (&b"2"[..], FsState::Ready),
            (b"1", FsState::Pending),
            (b"0", FsState::Unknown),
            (b"3", FsState::Unknown),
            (b" 2", FsState::Ready),
            (b"+1", FsState::Pending),
            (b"2x", FsState::Ready),
            (b"02", FsState::Ready),
            (b"-2", FsState::Unknown),
            (b"-0", FsState::Unknown),
            (b"", FsState::Unknown),
            (b"ready", FsState::Unknown),
            (b"4294967298", FsState::Unknown),
            (b"99999999999999999999", FsState::Unknown),
        ] {
            assert_eq!(parse(t), s, "{:?}", String::from_utf8_lossy(t));
        }
    }

    #[test]
    fn what_each_state_asks() {
        assert_eq!(
            todo(FsState::Ready),
            Todo {
                reset: false,
                write: false
            }
        );
        assert_eq!(
            todo(FsState::Unknown),
            Todo {
                reset: false,
                write: true
            }
        );
        assert_eq!(
            todo(FsState::Pending),
            Todo {
                reset: true,
                write: true
            }
        );
    }

    #[test]
    fn ready_is_written_once_and_atomically() {
        let d = TempDir::new("fs-state");
        let data = d.path();
        assert_eq!(read(data), FsState::Unknown);
        assert!(set_ready(data).unwrap());
        assert_eq!(
            std::fs::read_link(data.join(FS_STATE)).unwrap(),
            Path::new("2")
        );
        assert_eq!(read(data), FsState::Ready);
        // Already READY: nothing written (the link is the same inode).
        let ino =
            |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(p).unwrap());
        let before = ino(&data.join(FS_STATE));
        assert!(!set_ready(data).unwrap());
        assert_eq!(ino(&data.join(FS_STATE)), before);
        assert!(!data.join(TMP).exists());
    }

    #[test]
    fn pending_unknown_and_leftovers_are_replaced() {
        let d = TempDir::new("fs-state");
        let data = d.path();
        symlink("1", data.join(FS_STATE)).unwrap();
        assert_eq!(read(data), FsState::Pending);
        // A cut left a temp link (or anything) under the temp name.
        std::fs::write(data.join(TMP), "junk").unwrap();
        assert!(set_ready(data).unwrap());
        assert_eq!(read(data), FsState::Ready);
        // A regular file named .fs_state is UNKNOWN (never opened), replaced.
        std::fs::remove_file(data.join(FS_STATE)).unwrap();
        std::fs::write(data.join(FS_STATE), "2").unwrap();
        assert_eq!(read(data), FsState::Unknown);
        assert!(set_ready(data).unwrap());
        assert_eq!(read(data), FsState::Ready);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error_and_left() {
        let d = TempDir::new("fs-state");
        std::fs::create_dir(d.path().join(FS_STATE)).unwrap();
        std::fs::write(d.path().join(FS_STATE).join("f"), "x").unwrap();
        assert_eq!(read(d.path()), FsState::Unknown);
        assert!(set_ready(d.path()).is_err());
        assert!(d.path().join(FS_STATE).join("f").exists());
        assert_eq!(read(Path::new("/nonexistent/overlay")), FsState::Unknown);
    }
}
