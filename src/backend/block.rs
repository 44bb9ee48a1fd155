//! The block backend (fstools libfstools/rootdisk.c's place): the data is a
//! block partition holding ext4 or f2fs, found by device spec or by GPT
//! partition name. Blank flash or OpenWrt's marker is formatted with the
//! lower root's mkfs; a filesystem is checked with the lower's fsck when its
//! superblock calls for it; anything else is never touched.

use super::{
    Backend, Content, Inventory, Location, MountSpec, PrepareEnv, Prepared, Tools, Wanted,
};
use crate::config::FsChoice;
use crate::devices::{self, DeviceSpec};
use crate::paths::SysRoot;
use crate::plan::{Action, BackendId, Step};
use crate::probe::{self, FsKind};
use crate::reason::{NotFound, Reason};
use crate::sys::FlashIo;

pub struct Block;

impl Backend for Block {
    fn id(&self) -> BackendId {
        BackendId::Block
    }

    /// By name: the GPT partition of that name (the last resort of
    /// fstools' search; the missing-name reason is the table's own).
    /// `overlay.data=SPEC`: that device.
    fn locate(&self, wanted: &Wanted, inv: &Inventory) -> Option<Result<Location, NotFound>> {
        match wanted {
            Wanted::Named(n) => devices::find(&inv.blocks, &DeviceSpec::PartLabel(n.clone()))
                .map(|d| Ok(Location::Block(d))),
            Wanted::Device(spec) => Some(
                devices::find(&inv.blocks, spec)
                    .map(Location::Block)
                    .ok_or_else(|| NotFound::Partition(spec.to_string())),
            ),
            Wanted::Flash(_) | Wanted::Ram => None,
        }
    }

    /// The first 64 KiB (every superblock we know), and, when they look
    /// blank, the first MiB and samples across the device.
    fn probe(&self, _io: &dyn FlashIo, root: &SysRoot, loc: &Location) -> Result<Content, Reason> {
        let Location::Block(dev) = loc else {
            return Err(Reason::Unrecognised {
                device: loc.describe(),
            });
        };
        let (kind, head) =
            probe::read_kind(&root.join(&dev.node), dev.size).map_err(|err| Reason::Read {
                device: dev.node.display().to_string(),
                err,
            })?;
        crate::debug!("{}: {kind:?}", dev.node.display());
        Ok(Content::Block { kind, head })
    }

    fn prepare(
        &self,
        loc: &Location,
        content: &Content,
        env: &PrepareEnv,
    ) -> Result<Prepared, Reason> {
        match (loc, content) {
            (Location::Block(dev), Content::Block { kind, head }) => {
                prepare_block(&dev.node.display().to_string(), *kind, head, env)
            }
            _ => Err(Reason::Unrecognised {
                device: loc.describe(),
            }),
        }
    }
}

/// The tools the lower root must have for a block upper of each type.
pub const MKFS: [(&str, &str); 2] = [("ext4", "mkfs.ext4"), ("f2fs", "mkfs.f2fs")];
pub const FSCK_EXT4: [&str; 2] = ["e2fsck", "fsck.ext4"];
pub const FSCK_F2FS: [&str; 1] = ["fsck.f2fs"];
/// Programs are looked for in the lower root, in this order of directories.
pub const TOOL_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

fn mount_spec(device: &str, fstype: &'static str) -> MountSpec {
    MountSpec {
        source: device.into(),
        fstype,
        // A read-only mount still replays ext4's journal and runs f2fs's
        // roll-forward unless told not to.
        quiet_ro: match fstype {
            "ext4" => "noload",
            "f2fs" => "norecovery",
            _ => "",
        },
    }
}

fn tool_for<'a>(tools: &'a Tools, fstype: &str, check: bool) -> Option<&'a String> {
    match (fstype, check) {
        ("f2fs", false) => tools.mkfs_f2fs.as_ref(),
        (_, false) => tools.mkfs_ext4.as_ref(),
        ("f2fs", true) => tools.fsck_f2fs.as_ref(),
        (_, true) => tools.fsck_ext4.as_ref(),
    }
}

/// Decides from the probe. Only blank or explicitly marked flash is
/// formatted: anything unrecognised may be user data and is never touched.
/// An existing filesystem is checked only when its superblock calls for it
/// (e2fsck -p would skip a clean one after reading the same fields, and
/// starting it costs ~0.6 s of a 1 s boot on a slow CPU).
pub fn prepare_block(
    device: &str,
    kind: FsKind,
    head: &[u8],
    env: &PrepareEnv,
) -> Result<Prepared, Reason> {
    match kind {
        FsKind::Blank | FsKind::FormatMarker => {
            let fstype = env.fstype.format_type();
            let mkfs = format!("mkfs.{fstype}");
            let prog = tool_for(env.tools, fstype, false).ok_or_else(|| Reason::NoMkfs {
                device: device.into(),
                mkfs,
            })?;
            Ok(Prepared::Ready {
                action: Action::FormatMount,
                steps: vec![Step::Mkfs {
                    fstype,
                    device: device.into(),
                    prog: prog.clone(),
                }],
                mount: mount_spec(device, fstype),
                fresh: true,
            })
        }
        FsKind::Ext4 | FsKind::F2fs => {
            let found: &'static str = if kind == FsKind::Ext4 { "ext4" } else { "f2fs" };
            if env.fstype != FsChoice::Auto && env.fstype.format_type() != found {
                return Err(Reason::FsTypeMismatch {
                    device: device.into(),
                    found,
                    wanted: env.fstype.format_type(),
                });
            }
            let due = match found {
                "ext4" => probe::ext4_needs_check(head),
                _ => Some("always checked"),
            };
            let fsck = due.and_then(|due| Some((due, tool_for(env.tools, found, true)?)));
            Ok(Prepared::Ready {
                action: if fsck.is_some() {
                    Action::CheckMount
                } else {
                    Action::Mount
                },
                steps: fsck
                    .map(|(due, prog)| Step::Fsck {
                        fstype: found,
                        device: device.into(),
                        prog: prog.clone(),
                        due,
                    })
                    .into_iter()
                    .collect(),
                mount: mount_spec(device, found),
                fresh: false,
            })
        }
        FsKind::Squashfs | FsKind::Erofs => Err(Reason::ReadOnlyImage {
            device: device.into(),
            fstype: kind.fstype().unwrap_or("?"),
        }),
        FsKind::Unknown => Err(Reason::Unrecognised {
            device: device.into(),
        }),
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

/// The mkfs command line for the upper.
pub fn mkfs_argv(fstype: &str, prog: &str, device: &str) -> Vec<String> {
    let mut v = vec![prog.to_string()];
    // Without discard: a discard may zero the partition's tail, where the
    // format's intent tag is (probe::format_intent), and it can take long.
    match fstype {
        "f2fs" => v.extend(["-q", "-t", "0", "-f", "-l", "rootfs_data"].map(String::from)),
        _ => v.extend(["-q", "-E", "nodiscard", "-F", "-L", "rootfs_data"].map(String::from)),
    }
    v.push(device.into());
    v
}

/// The fsck command line: preen (fix what is safe, no questions).
pub fn fsck_argv(fstype: &str, prog: &str, device: &str) -> Vec<String> {
    let flag = if fstype == "f2fs" { "-a" } else { "-p" };
    vec![prog.into(), flag.into(), device.into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tools() -> Tools {
        Tools {
            mkfs_ext4: Some("/sbin/mkfs.ext4".into()),
            mkfs_f2fs: Some("/sbin/mkfs.f2fs".into()),
            fsck_ext4: Some("/sbin/e2fsck".into()),
            fsck_f2fs: None,
        }
    }

    fn decide(choice: FsChoice, kind: FsKind, device: &str) -> Result<Prepared, Reason> {
        let t = tools();
        let env = PrepareEnv {
            fstype: choice,
            tools: &t,
            erase_budget: Duration::from_secs(5),
        };
        prepare_block(device, kind, &[], &env)
    }

    fn action(r: Result<Prepared, Reason>) -> (Action, Option<&'static str>) {
        match r.unwrap() {
            Prepared::Ready { action, mount, .. } => (action, Some(mount.fstype)),
            Prepared::Attach { .. } => panic!("attach"),
        }
    }

    #[test]
    fn only_blank_or_marked_flash_is_formatted() {
        assert_eq!(
            action(decide(FsChoice::Auto, FsKind::Blank, "/dev/x")),
            (Action::FormatMount, Some("ext4"))
        );
        assert_eq!(
            action(decide(FsChoice::F2fs, FsKind::Blank, "/dev/x")),
            (Action::FormatMount, Some("f2fs"))
        );
        assert_eq!(
            action(decide(FsChoice::Auto, FsKind::FormatMarker, "/dev/x")),
            (Action::FormatMount, Some("ext4"))
        );
        for k in [FsKind::Unknown, FsKind::Squashfs, FsKind::Erofs] {
            assert!(decide(FsChoice::Auto, k, "/dev/x").is_err(), "{k:?}");
        }
    }

    #[test]
    fn detected_filesystems_are_mounted_mismatches_left_alone() {
        // f2fs is always checked, but this lower has no fsck.f2fs: mounted unchecked.
        assert_eq!(
            action(decide(FsChoice::Auto, FsKind::F2fs, "d")),
            (Action::Mount, Some("f2fs"))
        );
        // No superblock fields in an empty head: due for a check.
        assert_eq!(
            action(decide(FsChoice::Ext4, FsKind::Ext4, "d")),
            (Action::CheckMount, Some("ext4"))
        );
        assert_eq!(
            decide(FsChoice::F2fs, FsKind::Ext4, "/dev/vda2")
                .unwrap_err()
                .to_string(),
            "/dev/vda2 holds ext4, but overlay.fstype=f2fs; left untouched"
        );
        assert!(matches!(
            decide(FsChoice::Auto, FsKind::Squashfs, "/dev/vda1"),
            Err(Reason::ReadOnlyImage {
                fstype: "squashfs",
                ..
            })
        ));
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
                "-E",
                "nodiscard",
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
}
