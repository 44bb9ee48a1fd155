//! `overlay-status --mark-good`: the running system says this boot came up,
//! so the count of boots without mark-good goes back to 0 (as `rauc status
//! mark-good`, `systemd-bless-boot good`).
//!
//! It writes only when there is something to write (a record with a count
//! above 0, or a corrupt one): with boot counting off, or run twice, it
//! writes nothing. In a normal boot the data filesystem is mounted
//! read-write at /overlay and the record's slot is written in place. In a
//! failsafe boot it is mounted read-only without journal replay (ext4
//! `noload`), which must not be remounted read-write in place (the kernel
//! would not replay the journal then, and a later mount would replay it
//! over the new writes): the data filesystem is unmounted, mounted
//! read-write the normal way (journal replayed), the record re-read and
//! written, then remounted read-only. A process using /overlay makes the
//! unmount fail (EBUSY): nothing is written, and the message says so.
//! Power-safe at every point: see [`super::bootcount`].

use super::bootcount::{self, CountError, CountState};
use std::fmt;
use std::io;
use std::path::Path;

/// What a mark-good did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkOutcome {
    /// No record: boot counting never ran here; nothing written.
    Off,
    /// The count is 0 already; nothing written.
    AlreadyGood,
    /// Written: the count was `was`. `remounted`: the read-only data
    /// filesystem of a failsafe boot was mounted read-write for it.
    Marked { was: u32, remounted: bool },
}

/// Why a mark-good failed (the count stays as it was).
#[derive(Debug)]
pub enum MarkError {
    Count(CountError),
    /// The data filesystem is read-only and this is not a failsafe boot
    /// (protect mode: the flash is worn out): nothing is written to it.
    ReadOnly,
    /// /overlay is in use (EBUSY): it cannot be remounted read-write.
    Busy,
    /// The unmount of /overlay (`Mount(false)`) or the read-write mount of
    /// the data filesystem (`Mount(true)`) failed.
    Mount(bool, io::Error),
}

impl fmt::Display for MarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkError::Count(e) => write!(f, "{e}"),
            MarkError::ReadOnly => {
                f.write_str("the data filesystem is read-only (protected flash)")
            }
            MarkError::Busy => f.write_str("/overlay is in use: close what uses it and try again"),
            MarkError::Mount(rw, e) => write!(
                f,
                "cannot {} /overlay: {e}",
                if *rw { "mount read-write" } else { "unmount" }
            ),
        }
    }
}

/// The mount operations of the failsafe path (a fake in tests).
pub trait MountOps {
    /// `umount2(target, 0)`.
    fn unmount(&mut self, target: &Path) -> io::Result<()>;
    /// `mount(source, target, fstype, flags, data)` with `MS_NOATIME`, and
    /// `MS_RDONLY` when `readonly`.
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        readonly: bool,
        data: &str,
    ) -> io::Result<()>;
    /// `mount(NULL, target, NULL, MS_REMOUNT | MS_RDONLY | MS_NOATIME, NULL)`.
    fn remount_ro(&mut self, target: &Path) -> io::Result<()>;
}

/// The real mounts.
pub struct LinuxMounts;

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

impl MountOps for LinuxMounts {
    fn unmount(&mut self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(os)
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        readonly: bool,
        data: &str,
    ) -> io::Result<()> {
        use rustix::mount::MountFlags;
        let mut flags = MountFlags::NOATIME;
        if readonly {
            flags |= MountFlags::RDONLY;
        }
        rustix::mount::mount(source, target, fstype, flags, data).map_err(os)
    }

    fn remount_ro(&mut self, target: &Path) -> io::Result<()> {
        use rustix::mount::MountFlags;
        rustix::mount::mount_remount(target, MountFlags::RDONLY | MountFlags::NOATIME, "")
            .map_err(os)
    }
}

/// Where this boot's data filesystem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkContext {
    /// `/overlay` is mounted read-only.
    pub readonly: bool,
    /// A failsafe boot's data filesystem: (mount source, fstype).
    pub failsafe_data: Option<(String, String)>,
    pub boot_id: u64,
}

/// Marks the boot good on the data filesystem mounted at `data`.
pub fn mark_good(
    data: &Path,
    ctx: &MarkContext,
    ops: &mut dyn MountOps,
) -> Result<MarkOutcome, MarkError> {
    mark_good_with(data, ctx, ops, &mut |_| {})
}

/// [`mark_good`] with the test build's power-cut hook
/// ([`bootcount::MARK`]).
pub fn mark_good_with(
    data: &Path,
    ctx: &MarkContext,
    ops: &mut dyn MountOps,
    hook: &mut dyn FnMut(&str),
) -> Result<MarkOutcome, MarkError> {
    let state = bootcount::read(data).map_err(MarkError::Count)?;
    if bootcount::next_mark(&state, ctx.boot_id).is_none() {
        return Ok(match state {
            CountState::Missing => MarkOutcome::Off,
            _ => MarkOutcome::AlreadyGood,
        });
    }
    if !ctx.readonly {
        return write(data, ctx.boot_id, false, hook);
    }
    let Some((source, fstype)) = &ctx.failsafe_data else {
        return Err(MarkError::ReadOnly);
    };
    match ops.unmount(data) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => return Err(MarkError::Busy),
        Err(e) => return Err(MarkError::Mount(false, e)),
    }
    if let Err(err) = ops.mount(source, data, fstype, false, "") {
        // Put the rescue view back as it was.
        let _ = ops.mount(
            source,
            data,
            fstype,
            true,
            super::failsafe::readonly_mount_data(fstype),
        );
        return Err(MarkError::Mount(true, err));
    }
    // Re-read: a journal replayed by this mount may hold a newer record.
    let result = write(data, ctx.boot_id, true, hook);
    if let Err(e) = ops.remount_ro(data) {
        crate::warn!("cannot remount /overlay read-only again: {e}");
    }
    result
}

fn write(
    data: &Path,
    boot_id: u64,
    remounted: bool,
    hook: &mut dyn FnMut(&str),
) -> Result<MarkOutcome, MarkError> {
    let state = bootcount::read(data).map_err(MarkError::Count)?;
    let Some(rec) = bootcount::next_mark(&state, boot_id) else {
        return Ok(MarkOutcome::AlreadyGood);
    };
    bootcount::write_with(data, &state, &rec, bootcount::MARK, hook).map_err(MarkError::Count)?;
    Ok(MarkOutcome::Marked {
        was: state.attempts(),
        remounted,
    })
}

/// Runs `f` with the test build's power-cut hook: `overlay.test_crash=
/// mark-write|mark-sync` on the command line reboots without sync at that
/// instant of the record's write (reset::boot::PowerCut).
#[cfg(feature = "test-hooks")]
fn with_cut_hook<R>(f: impl FnOnce(&mut dyn FnMut(&str)) -> R) -> R {
    let cfg = crate::config::read_configured(&crate::paths::SysRoot::host());
    let sys = crate::sys::linux::LinuxSys;
    let mut cut = crate::reset::boot::PowerCut::new(&sys, &cfg);
    f(&mut |s| cut.changed(s))
}

/// The release build: no hook.
#[cfg(not(feature = "test-hooks"))]
fn with_cut_hook<R>(f: impl FnOnce(&mut dyn FnMut(&str)) -> R) -> R {
    f(&mut |_| {})
}

/// `overlay-status --mark-good [--state FILE]`: exit 0 when marked or when
/// there was nothing to mark, 1 when it could not be done.
pub fn main(state_file: &str) -> i32 {
    if !rustix::process::geteuid().is_root() {
        eprintln!("overlay-status: --mark-good: not root");
        return 1;
    }
    let text = match std::fs::read_to_string(state_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("overlay-status: cannot read {state_file}: {e} (was this system booted by overlay-init?)");
            return 1;
        }
    };
    let rec = super::state::RecoveryState::parse(&text);
    let boot = crate::state::BootState::parse(&text).ok();
    let data = Path::new(crate::paths::OVERLAY);
    // The data filesystem is at /overlay in a normal boot (flash upper), a
    // failsafe boot where it mounted, and a protected one (its upper/ a lower).
    let protected = format!("{}/upper", crate::paths::OVERLAY);
    let has_data = rec.failsafe_data.is_some()
        || boot
            .as_ref()
            .is_some_and(|b| b.persistent() || b.lowers.iter().any(|l| l.mountpoint == protected));
    if !has_data {
        println!("overlay-status: no data filesystem: nothing to mark");
        return 0;
    }
    let readonly = rustix::fs::statvfs(data)
        .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(false);
    let ctx = MarkContext {
        readonly,
        failsafe_data: rec.failsafe_data.clone(),
        boot_id: crate::wear::read_boot_id(&crate::paths::SysRoot::host()).unwrap_or(0),
    };
    match with_cut_hook(|hook| mark_good_with(data, &ctx, &mut LinuxMounts, hook)) {
        Ok(o) => {
            println!(
                "overlay-status: {}",
                match o {
                    MarkOutcome::Off => "boot counting is off: nothing to mark",
                    MarkOutcome::AlreadyGood => "already marked good",
                    MarkOutcome::Marked { .. } => "this boot is marked good",
                }
            );
            0
        }
        Err(e) => {
            eprintln!("overlay-status: --mark-good: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::bootcount::{count_boot, read};
    use crate::testutil::TempDir;

    /// Records the calls; fails those it is told to.
    #[derive(Default)]
    struct FakeMounts {
        calls: Vec<String>,
        busy: bool,
        mount_fails: bool,
    }

    impl MountOps for FakeMounts {
        fn unmount(&mut self, _: &Path) -> io::Result<()> {
            self.calls.push("umount".into());
            if self.busy {
                return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
            }
            Ok(())
        }
        fn mount(&mut self, s: &str, _: &Path, fs: &str, ro: bool, data: &str) -> io::Result<()> {
            self.calls.push(format!(
                "mount {s} {fs} {} {data}",
                if ro { "ro" } else { "rw" }
            ));
            if self.mount_fails && !ro {
                return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
            }
            Ok(())
        }
        fn remount_ro(&mut self, _: &Path) -> io::Result<()> {
            self.calls.push("remount ro".into());
            Ok(())
        }
    }

    fn ctx(readonly: bool, failsafe: bool) -> MarkContext {
        MarkContext {
            readonly,
            failsafe_data: failsafe.then(|| ("/dev/vda2".to_string(), "ext4".to_string())),
            boot_id: 99,
        }
    }

    #[test]
    fn off_writes_nothing() {
        let d = TempDir::new("mark-off");
        let mut m = FakeMounts::default();
        assert_eq!(
            mark_good(d.path(), &ctx(false, false), &mut m).unwrap(),
            MarkOutcome::Off
        );
        assert!(
            !d.path().join(".boot").exists(),
            "not a byte, not a directory"
        );
        assert_eq!(
            mark_good(d.path(), &ctx(true, true), &mut m).unwrap(),
            MarkOutcome::Off
        );
        assert!(m.calls.is_empty(), "no remount for nothing");
    }

    #[test]
    fn a_normal_boot_marks_in_place_once() {
        let d = TempDir::new("mark-normal");
        count_boot(d.path(), false).unwrap();
        count_boot(d.path(), false).unwrap();
        let mut m = FakeMounts::default();
        assert_eq!(
            mark_good(d.path(), &ctx(false, false), &mut m).unwrap(),
            MarkOutcome::Marked {
                was: 2,
                remounted: false
            }
        );
        assert!(read(d.path()).unwrap().marked_by(99));
        assert_eq!(
            mark_good(d.path(), &ctx(false, false), &mut m).unwrap(),
            MarkOutcome::AlreadyGood
        );
        assert!(m.calls.is_empty());
    }

    #[test]
    fn a_failsafe_boot_remounts_to_mark_and_goes_back_to_read_only() {
        let d = TempDir::new("mark-failsafe");
        for _ in 0..3 {
            count_boot(d.path(), false).unwrap();
        }
        let mut m = FakeMounts::default();
        assert_eq!(
            mark_good(d.path(), &ctx(true, true), &mut m).unwrap(),
            MarkOutcome::Marked {
                was: 3,
                remounted: true
            }
        );
        assert_eq!(
            m.calls,
            ["umount", "mount /dev/vda2 ext4 rw ", "remount ro"]
        );
        assert_eq!(read(d.path()).unwrap().attempts(), 0);
    }

    #[test]
    fn a_busy_overlay_or_a_failed_mount_writes_nothing() {
        let d = TempDir::new("mark-busy");
        count_boot(d.path(), false).unwrap();
        let mut m = FakeMounts {
            busy: true,
            ..FakeMounts::default()
        };
        assert!(matches!(
            mark_good(d.path(), &ctx(true, true), &mut m),
            Err(MarkError::Busy)
        ));
        assert_eq!(read(d.path()).unwrap().attempts(), 1);
        let mut m = FakeMounts {
            mount_fails: true,
            ..FakeMounts::default()
        };
        let e = mark_good(d.path(), &ctx(true, true), &mut m).unwrap_err();
        assert!(matches!(e, MarkError::Mount(true, _)));
        assert_eq!(
            m.calls,
            [
                "umount",
                "mount /dev/vda2 ext4 rw ",
                "mount /dev/vda2 ext4 ro noload"
            ],
            "the read-only view is put back"
        );
        assert_eq!(read(d.path()).unwrap().attempts(), 1);
        // Read-only without a failsafe boot: a protected (worn) flash.
        let mut m = FakeMounts::default();
        assert!(matches!(
            mark_good(d.path(), &ctx(true, false), &mut m),
            Err(MarkError::ReadOnly)
        ));
        assert!(m.calls.is_empty());
    }
}
