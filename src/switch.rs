//! Entering the new root, and checking it holds a runnable init first.

use crate::error::BootError;
use crate::paths;
use crate::sys::Sys;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Checks that `prog` exists inside `root` as a regular, executable ELF or
/// `#!` script (and that a script's interpreter exists too). Symlinks are
/// resolved inside `root` (openat2 RESOLVE_IN_ROOT), as they will be once we
/// are in it: an absolute link `/sbin/init -> /bin/busybox` must not be
/// checked against the initramfs.
pub fn check_runnable(root: &Path, prog: &str) -> Result<(), String> {
    let f = open_executable(root, prog)?;
    let head = crate::probe::read_up_to(&f, 256).map_err(|e| format!("cannot be read: {e}"))?;
    let head = head.as_slice();
    if !looks_executable(head) {
        return Err("is neither an ELF binary nor a #! script".into());
    }
    if let Some(interp) = script_interpreter(head) {
        if interp != prog {
            check_runnable(root, &interp)
                .map_err(|why| format!("is a script whose interpreter {interp} {why}"))?;
        }
    }
    Ok(())
}

/// Checks that `prog` exists inside `root` as a regular file with an x
/// permission, without reading it: for the lower root's tools (mkfs, fsck),
/// which most boots do not run. Reading a file's head from a compressed
/// squashfs decompresses its first blocks (tens of ms each on a router's
/// CPU); a tool that then fails to run is a failed step, and the plan's
/// ladder takes the next rung.
pub fn check_executable(root: &Path, prog: &str) -> Result<(), String> {
    open_executable(root, prog).map(drop)
}

/// `prog` in `root`, opened, when it is a regular file with an x permission.
fn open_executable(root: &Path, prog: &str) -> Result<std::fs::File, String> {
    let f = open_in_root(root, prog).map_err(|e| match e.raw_os_error() {
        Some(2) => "does not exist".to_string(),
        _ => format!("cannot be opened: {e}"),
    })?;
    let meta = f.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable (no x permission)".into());
    }
    Ok(f)
}

/// Whether the first bytes of an init candidate look runnable (ELF or `#!`).
pub fn looks_executable(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") || head.starts_with(b"#!")
}

/// The interpreter of a `#!` script, from its first line.
pub fn script_interpreter(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split_whitespace().next().map(str::to_string)
}

fn open_in_root(root: &Path, prog: &str) -> std::io::Result<std::fs::File> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = prog.trim_start_matches('/');
    match rustix::fs::openat2(
        &dir,
        rel,
        // Non-blocking: a FIFO put where the init should be must not hang
        // PID 1 (it is then "not a regular file").
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    ) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        // Kernels before 5.6 have no openat2: resolve naively.
        Err(rustix::io::Errno::NOSYS) => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NONBLOCK.bits() as i32)
                .open(root.join(rel))
        }
        Err(e) => Err(e.into()),
    }
}

/// `chdir(path)`, its failure a boot error naming the path.
fn chdir(sys: &dyn Sys, path: &Path) -> Result<(), BootError> {
    sys.chdir(path).map_err(|err| BootError::Chdir {
        path: path.into(),
        err,
    })
}

/// The kernel filesystems carried into the new root, in this order.
const CARRIED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

fn move_into(sys: &dyn Sys, from: &Path, to: &Path, warnings: &mut Vec<String>) {
    if let Err(e) = sys.mount_move(from, to) {
        let msg = format!("cannot move {} to {}: {e}", from.display(), to.display());
        crate::warn!("{msg}");
        warnings.push(msg);
    }
}

/// switch_root from an initramfs (as busybox switch_root and u-root do):
/// move /dev, /proc, /sys, /run and the layers (`keep`) into `newroot`,
/// chdir there, free the initramfs (never crossing into other mounts),
/// move the new root onto / and chroot into it.
/// pivot_root(2) cannot be used: the initramfs is the root mount itself.
pub fn switch_root(
    sys: &dyn Sys,
    newroot: &Path,
    keep: &[&str],
    warnings: &mut Vec<String>,
) -> Result<(), BootError> {
    for m in CARRIED.iter().chain(keep) {
        let to = newroot.join(m.trim_start_matches('/'));
        move_into(sys, Path::new(m), &to, warnings);
    }
    chdir(sys, newroot)?;
    // Best effort: what cannot be deleted only costs RAM.
    if let Err(e) = sys.remove_tree_same_fs(Path::new("/")) {
        crate::warn!("cannot free the initramfs: {e}");
    }
    sys.mount_move(Path::new("."), Path::new("/"))
        .map_err(|err| BootError::MoveRoot { err })?;
    sys.chroot(Path::new("."))
        .map_err(|err| BootError::Chroot {
            path: ".".into(),
            err,
        })?;
    chdir(sys, Path::new("/"))?;
    Ok(())
}

/// pivot_root from a real root (OpenWrt's `pivot()`): the merged root
/// becomes /, the old root /rom; then the kernel filesystems come back from
/// under /rom and the upper (staged in /run) moves to /overlay.
pub fn pivot_root(
    sys: &dyn Sys,
    newroot: &Path,
    staged_overlay: &Path,
    writable: bool,
    warnings: &mut Vec<String>,
) -> Result<(), BootError> {
    let put_old = newroot.join(paths::ROM.trim_start_matches('/'));
    chdir(sys, newroot)?;
    sys.pivot_root(newroot, &put_old)
        .map_err(|err| BootError::PivotRoot {
            new_root: newroot.into(),
            put_old: put_old.clone(),
            err,
        })?;
    chdir(sys, Path::new("/"))?;
    for m in CARRIED {
        let from = PathBuf::from(format!("{}{m}", paths::ROM));
        move_into(sys, &from, Path::new(m), warnings);
    }
    if writable {
        move_into(sys, staged_overlay, Path::new(paths::OVERLAY), warnings);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{Call, FakeSys};
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    fn exe(dir: &TempDir, rel: &str, content: &[u8]) {
        let p = dir.write(rel, content);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn runnable_inits_and_the_ways_they_break() {
        let d = TempDir::new("init");
        exe(&d, "bin/busybox", b"\x7fELF....");
        std::fs::create_dir_all(d.path().join("sbin")).unwrap();
        // Absolute link: must resolve inside the root, not on the host.
        symlink("/bin/busybox", d.path().join("sbin/init")).unwrap();
        assert_eq!(check_runnable(d.path(), "/sbin/init"), Ok(()));
        exe(&d, "sbin/script", b"#!/bin/busybox sh\necho\n");
        assert_eq!(check_runnable(d.path(), "/sbin/script"), Ok(()));
        exe(&d, "sbin/badscript", b"#!/bin/nosuch\n");
        assert_eq!(
            check_runnable(d.path(), "/sbin/badscript"),
            Err("is a script whose interpreter /bin/nosuch does not exist".into())
        );
        exe(&d, "sbin/garbage", b"garbage");
        assert_eq!(
            check_runnable(d.path(), "/sbin/garbage"),
            Err("is neither an ELF binary nor a #! script".into())
        );
        d.write("sbin/noexec", b"\x7fELF");
        assert_eq!(
            check_runnable(d.path(), "/sbin/noexec"),
            Err("is not executable (no x permission)".into())
        );
        assert_eq!(
            check_runnable(d.path(), "/sbin/missing"),
            Err("does not exist".into())
        );
        assert_eq!(
            check_runnable(d.path(), "/sbin"),
            Err("is not a regular file".into())
        );
        // A FIFO in place of the init: refused at once, never waited on.
        nix::unistd::mkfifo(
            &d.path().join("sbin/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        assert_eq!(
            check_runnable(d.path(), "/sbin/fifo"),
            Err("is not a regular file".into())
        );
        symlink("/../../../../bin/sh-outside", d.path().join("sbin/escape")).unwrap();
        assert_eq!(
            check_runnable(d.path(), "/sbin/escape"),
            Err("does not exist".into())
        );
        exe(&d, "sbin/empty", b"");
        assert!(check_runnable(d.path(), "/sbin/empty").is_err());
    }

    #[test]
    fn interpreters() {
        assert_eq!(
            script_interpreter(b"#!/bin/sh -e\nx"),
            Some("/bin/sh".into())
        );
        assert_eq!(script_interpreter(b"#!  /bin/ash"), Some("/bin/ash".into()));
        assert_eq!(script_interpreter(b"\x7fELF"), None);
        assert_eq!(script_interpreter(b"#!\n"), None);
    }

    #[test]
    fn switch_root_sequence() {
        let sys = FakeSys::default();
        let mut w = Vec::new();
        switch_root(&sys, Path::new("/newroot"), &["/rom", "/overlay"], &mut w).unwrap();
        let mv = |a: &str, b: &str| Call::MountMove {
            from: a.into(),
            to: b.into(),
        };
        assert_eq!(
            sys.calls(),
            vec![
                mv("/dev", "/newroot/dev"),
                mv("/proc", "/newroot/proc"),
                mv("/sys", "/newroot/sys"),
                mv("/run", "/newroot/run"),
                mv("/rom", "/newroot/rom"),
                mv("/overlay", "/newroot/overlay"),
                Call::Chdir("/newroot".into()),
                Call::RemoveTree("/".into()),
                mv(".", "/"),
                Call::Chroot(".".into()),
                Call::Chdir("/".into()),
            ]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_failed_carry_is_a_warning_a_failed_root_move_is_fatal() {
        let sys = FakeSys::default();
        sys.fail_when(
            22,
            |c| matches!(c, Call::MountMove { from, .. } if from == Path::new("/run")),
        );
        let mut w = Vec::new();
        switch_root(&sys, Path::new("/newroot"), &[], &mut w).unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("cannot move /run to /newroot/run"),
            "{w:?}"
        );

        let sys = FakeSys::default();
        sys.fail_when(
            22,
            |c| matches!(c, Call::MountMove { from, .. } if from == Path::new(".")),
        );
        let r = switch_root(&sys, Path::new("/newroot"), &[], &mut Vec::new());
        assert!(matches!(r, Err(BootError::MoveRoot { .. })));
        assert!(
            !sys.calls().contains(&Call::Chroot(".".into())),
            "no chroot after a failed move"
        );
    }

    #[test]
    fn pivot_root_sequence() {
        let sys = FakeSys::default();
        pivot_root(
            &sys,
            Path::new("/run/overlay-init/root"),
            Path::new("/run/overlay-init/overlay"),
            true,
            &mut Vec::new(),
        )
        .unwrap();
        let mv = |a: &str, b: &str| Call::MountMove {
            from: a.into(),
            to: b.into(),
        };
        assert_eq!(
            sys.calls(),
            vec![
                Call::Chdir("/run/overlay-init/root".into()),
                Call::PivotRoot(
                    "/run/overlay-init/root".into(),
                    "/run/overlay-init/root/rom".into()
                ),
                Call::Chdir("/".into()),
                mv("/rom/dev", "/dev"),
                mv("/rom/proc", "/proc"),
                mv("/rom/sys", "/sys"),
                mv("/rom/run", "/run"),
                mv("/run/overlay-init/overlay", "/overlay"),
            ]
        );
    }
}
