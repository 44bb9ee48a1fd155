//! The boot's decisions, as pure functions of what was found. The executor
//! (`boot.rs`) gathers facts, asks here, and acts; it never improvises.
//! The fallback ladder is fstools' `start`: flash overlay → tmpfs overlay →
//! (fatal only when even the lower root cannot run an init).

use crate::config::FsChoice;
use crate::probe::FsKind;

/// What to do with the data device, given what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpperAction {
    /// Blank flash, or marked for formatting: make a filesystem of this type.
    Format { fstype: &'static str },
    /// A filesystem: check it, then mount it.
    CheckAndMount { fstype: &'static str },
    /// Leave the device alone; run on RAM for this reason.
    Tmpfs { reason: String },
}

/// Decides from the probe. Only blank or explicitly marked flash is formatted:
/// anything unrecognised may be user data and is never touched.
pub fn decide_upper(choice: FsChoice, kind: FsKind, device: &str) -> UpperAction {
    match kind {
        FsKind::Blank | FsKind::FormatMarker => UpperAction::Format { fstype: choice.format_type() },
        FsKind::Ext4 | FsKind::F2fs => {
            let found = kind.fstype().unwrap_or("?");
            match choice {
                FsChoice::Auto => UpperAction::CheckAndMount { fstype: if kind == FsKind::Ext4 { "ext4" } else { "f2fs" } },
                c if c.format_type() == found => UpperAction::CheckAndMount { fstype: c.format_type() },
                c => UpperAction::Tmpfs {
                    reason: format!("{device} holds {found}, but overlay.fstype={}; left untouched", c.format_type()),
                },
            }
        }
        FsKind::Squashfs | FsKind::Erofs => UpperAction::Tmpfs {
            reason: format!("{device} holds a read-only {} image, not a data filesystem; left untouched", kind.fstype().unwrap_or("?")),
        },
        FsKind::Unknown => UpperAction::Tmpfs {
            reason: format!("{device} holds data that is neither ext4 nor f2fs nor blank; left untouched (format it by hand to use it)"),
        },
    }
}

/// What an fsck exit code means for mounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsckVerdict {
    Clean,
    /// Errors found and fixed: mount, and say so.
    Repaired,
    /// Errors left: do not mount read-write; the reason says why.
    Refuse(String),
}

/// e2fsck's exit status is a bit mask (e2fsck(8)): 1 corrected, 2 corrected
/// and reboot advised, 4 left uncorrected, 8 operational error, 16 usage,
/// 32 cancelled, 128 shared-library error. fsck.f2fs returns 0 when clean.
pub fn fsck_verdict(fstype: &str, code: i32) -> FsckVerdict {
    match (fstype, code) {
        (_, 0) => FsckVerdict::Clean,
        ("ext4", 1..=3) => FsckVerdict::Repaired,
        ("ext4", c) => FsckVerdict::Refuse(format!(
            "e2fsck -p could not repair it (exit {c}{}); left untouched for a manual e2fsck",
            if c & 4 != 0 {
                ": errors left uncorrected"
            } else if c & 8 != 0 {
                ": operational error"
            } else {
                ""
            }
        )),
        (fs, c) => FsckVerdict::Refuse(format!(
            "fsck.{fs} reported errors (exit {c}); left untouched for a manual check"
        )),
    }
}

/// Programs looked for in the lower root, in this order of directories.
pub const TOOL_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The mkfs command line for the upper.
pub fn mkfs_argv(fstype: &str, prog: &str, device: &str) -> Vec<String> {
    let mut v = vec![prog.to_string()];
    match fstype {
        "f2fs" => v.extend(["-q", "-f", "-l", "rootfs_data"].map(String::from)),
        _ => v.extend(["-q", "-F", "-L", "rootfs_data"].map(String::from)),
    }
    v.push(device.into());
    v
}

/// The fsck command line: preen (fix what is safe, no questions).
pub fn fsck_argv(fstype: &str, prog: &str, device: &str) -> Vec<String> {
    let flag = if fstype == "f2fs" { "-a" } else { "-p" };
    vec![prog.into(), flag.into(), device.into()]
}

/// Whether the first bytes of an init candidate look runnable (ELF or `#!`).
pub fn looks_executable(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") || head.starts_with(b"#!")
}

/// The overlayfs mount options; `lowers` in precedence order (leftmost wins,
/// as in the kernel's `lowerdir=a:b`). Without `upper` the overlay is read-only.
pub fn overlay_options(lowers: &[String], upper: Option<(&str, &str)>) -> String {
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let Some((u, w)) = upper {
        o.push_str(&format!(",upperdir={u},workdir={w}"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blank_or_marked_flash_is_formatted() {
        assert_eq!(
            decide_upper(FsChoice::Auto, FsKind::Blank, "/dev/x"),
            UpperAction::Format { fstype: "ext4" }
        );
        assert_eq!(
            decide_upper(FsChoice::F2fs, FsKind::Blank, "/dev/x"),
            UpperAction::Format { fstype: "f2fs" }
        );
        assert_eq!(
            decide_upper(FsChoice::Auto, FsKind::FormatMarker, "/dev/x"),
            UpperAction::Format { fstype: "ext4" }
        );
        for k in [FsKind::Unknown, FsKind::Squashfs, FsKind::Erofs] {
            assert!(
                matches!(
                    decide_upper(FsChoice::Auto, k, "/dev/x"),
                    UpperAction::Tmpfs { .. }
                ),
                "{k:?}"
            );
        }
    }

    #[test]
    fn detected_filesystems_are_mounted_mismatches_left_alone() {
        assert_eq!(
            decide_upper(FsChoice::Auto, FsKind::F2fs, "d"),
            UpperAction::CheckAndMount { fstype: "f2fs" }
        );
        assert_eq!(
            decide_upper(FsChoice::Ext4, FsKind::Ext4, "d"),
            UpperAction::CheckAndMount { fstype: "ext4" }
        );
        let UpperAction::Tmpfs { reason } = decide_upper(FsChoice::F2fs, FsKind::Ext4, "/dev/vda2")
        else {
            panic!()
        };
        assert_eq!(
            reason,
            "/dev/vda2 holds ext4, but overlay.fstype=f2fs; left untouched"
        );
    }

    #[test]
    fn fsck_codes() {
        assert_eq!(fsck_verdict("ext4", 0), FsckVerdict::Clean);
        assert_eq!(fsck_verdict("ext4", 1), FsckVerdict::Repaired);
        assert_eq!(fsck_verdict("ext4", 2), FsckVerdict::Repaired);
        assert!(
            matches!(fsck_verdict("ext4", 4), FsckVerdict::Refuse(r) if r.contains("uncorrected"))
        );
        assert!(
            matches!(fsck_verdict("ext4", 8), FsckVerdict::Refuse(r) if r.contains("operational"))
        );
        assert!(matches!(fsck_verdict("ext4", 137), FsckVerdict::Refuse(_)));
        assert!(matches!(fsck_verdict("f2fs", 1), FsckVerdict::Refuse(_)));
    }

    #[test]
    fn commands() {
        assert_eq!(
            mkfs_argv("ext4", "/sbin/mkfs.ext4", "/dev/vda2"),
            [
                "/sbin/mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "rootfs_data",
                "/dev/vda2"
            ]
        );
        assert_eq!(
            fsck_argv("f2fs", "/sbin/fsck.f2fs", "/dev/x"),
            ["/sbin/fsck.f2fs", "-a", "/dev/x"]
        );
    }

    #[test]
    fn init_heads() {
        assert!(looks_executable(b"\x7fELF\x01\x01"));
        assert!(looks_executable(b"#!/bin/sh\n"));
        assert!(!looks_executable(b"garbage"));
        assert!(!looks_executable(b""));
    }

    #[test]
    fn overlay_layer_order_leftmost_wins() {
        let l = vec!["/run/overlay-init/lower/0".to_string(), "/rom".to_string()];
        assert_eq!(
            overlay_options(&l, Some(("/overlay/upper", "/overlay/work"))),
            "lowerdir=/run/overlay-init/lower/0:/rom,upperdir=/overlay/upper,workdir=/overlay/work"
        );
        assert_eq!(
            overlay_options(&l, None),
            "lowerdir=/run/overlay-init/lower/0:/rom"
        );
    }
}
