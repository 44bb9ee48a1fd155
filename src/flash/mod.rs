//! Raw flash, the primitives: MTD partitions (JFFS2) and UBI volumes
//! (UBIFS), what fstools' libfstools/mtd.c and ubi.c read and do.
//!
//! - [`mtd`]: MTD partitions from sysfs or /proc/mtd; erasing.
//! - [`ubi`]: UBI devices and volumes from sysfs; attach, create a volume.
//! - [`jffs2`]: what a raw partition holds; OpenWrt's format marker.
//!
//! Reads (sysfs, /proc, device contents) are joined onto a
//! [`SysRoot`](crate::paths::SysRoot); every ioctl goes through the
//! [`FlashIo`](crate::sys::FlashIo) trait.
//!
//! The decisions about them are the backends' (backend/ubi.rs,
//! backend/jffs2.rs); the boot's executor and `overlay-reset --format`
//! (reset/format.rs) call these.

#[cfg(test)]
mod guest_tests;
pub mod jffs2;
pub mod mtd;
pub mod ubi;

use crate::paths::SysRoot;
use crate::state::WholeMillis;
use crate::sys::Sys;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A data location on raw flash, as `overlay.data=` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashSpec {
    /// `mtd:NAME`: the MTD partition of that name (JFFS2, or UBI to attach).
    Mtd(String),
    /// `ubi:VOLUME` (on any attached UBI device) or `ubi:ubiN:VOLUME`.
    Ubi { device: Option<u32>, volume: String },
}

impl fmt::Display for FlashSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashSpec::Mtd(n) => write!(f, "mtd:{n}"),
            FlashSpec::Ubi {
                device: None,
                volume,
            } => write!(f, "ubi:{volume}"),
            FlashSpec::Ubi {
                device: Some(d),
                volume,
            } => write!(f, "ubi:ubi{d}:{volume}"),
        }
    }
}

/// Why a raw-flash spec was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashSpecError {
    /// Nothing after `mtd:` / `ubi:` / `ubi:ubiN:`.
    EmptyName,
    /// A UBI volume name longer than UBI_MAX_VOLUME_NAME (127) bytes.
    NameTooLong,
}

impl fmt::Display for FlashSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlashSpecError::EmptyName => "no name after mtd: or ubi:",
            FlashSpecError::NameTooLong => "UBI volume names have at most 127 bytes",
        })
    }
}

/// UBI_MAX_VOLUME_NAME (include/uapi/mtd/ubi-user.h).
const UBI_MAX_VOLUME_NAME: usize = 127;

/// Parses `mtd:NAME`, `ubi:VOLUME` or `ubi:ubiN:VOLUME`; `None` when `s` is
/// none of these (then it may be a block device spec). In `ubi:ubiN:REST`
/// the `ubiN:` part names the device only when N is a number: a volume may
/// itself be called `ubiX:...`, but then it needs the device named too.
pub fn parse_flash_spec(s: &str) -> Option<Result<FlashSpec, FlashSpecError>> {
    let s = s.trim();
    if let Some(name) = s.strip_prefix("mtd:") {
        return Some(if name.is_empty() {
            Err(FlashSpecError::EmptyName)
        } else {
            Ok(FlashSpec::Mtd(name.into()))
        });
    }
    let rest = s.strip_prefix("ubi:")?;
    let (device, volume) = match rest.split_once(':') {
        Some((d, v)) => match d
            .strip_prefix("ubi")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(n) => match n.parse::<u32>() {
                Ok(n) => (Some(n), v),
                Err(_) => (None, rest),
            },
            None => (None, rest),
        },
        None => (None, rest),
    };
    Some(if volume.is_empty() {
        Err(FlashSpecError::EmptyName)
    } else if volume.len() > UBI_MAX_VOLUME_NAME {
        Err(FlashSpecError::NameTooLong)
    } else {
        Ok(FlashSpec::Ubi {
            device,
            volume: volume.into(),
        })
    })
}

/// A raw-flash step that failed: what it acted on and the OS error.
#[derive(Debug)]
pub enum FlashError {
    /// `MEMGETINFO`.
    Geometry {
        dev: PathBuf,
        err: io::Error,
    },
    BadGeometry {
        dev: PathBuf,
        why: &'static str,
    },
    /// `MTD_WRITEABLE` clear: nothing can be erased or written.
    ReadOnly {
        dev: PathBuf,
    },
    /// `MEMGETBADBLOCK`.
    BadBlockQuery {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// Every erase block is bad.
    NoGoodBlock {
        dev: PathBuf,
    },
    Read {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// `MEMERASE`.
    Erase {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    Write {
        dev: PathBuf,
        offset: u64,
        err: io::Error,
    },
    /// `UBI_IOCATT`.
    Attach {
        ctrl: PathBuf,
        mtd: u32,
        err: io::Error,
    },
    /// devtmpfs did not show a device node in time.
    NodeMissing {
        node: PathBuf,
        waited: Duration,
    },
    /// Fewer free eraseblocks than UBIFS needs.
    NoSpace {
        dev: PathBuf,
        avail: u64,
    },
    /// `UBI_IOCMKVOL`.
    MakeVolume {
        dev: PathBuf,
        name: String,
        err: io::Error,
    },
    /// `UBI_IOCRNVOL`.
    RenameVolume {
        dev: PathBuf,
        id: u32,
        name: String,
        err: io::Error,
    },
    /// `UBI_IOCEBUNMAP`.
    Unmap {
        vol: PathBuf,
        lnum: u32,
        err: io::Error,
    },
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Geometry { dev, err } => write!(
                f,
                "cannot read the geometry of {} (MEMGETINFO): {err}",
                dev.display()
            ),
            FlashError::BadGeometry { dev, why } => {
                write!(f, "{} has an unusable geometry: {why}", dev.display())
            }
            FlashError::ReadOnly { dev } => write!(f, "{} is read-only", dev.display()),
            FlashError::BadBlockQuery { dev, offset, err } => write!(
                f,
                "cannot ask {} whether the block at {offset:#x} is bad: {err}",
                dev.display()
            ),
            FlashError::NoGoodBlock { dev } => {
                write!(f, "{} has no good erase block", dev.display())
            }
            FlashError::Read { dev, offset, err } => {
                write!(f, "cannot read {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Erase { dev, offset, err } => {
                write!(f, "cannot erase {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Write { dev, offset, err } => {
                write!(f, "cannot write {} at {offset:#x}: {err}", dev.display())
            }
            FlashError::Attach { ctrl, mtd, err } => write!(
                f,
                "cannot attach mtd{mtd} to UBI through {}: {err}",
                ctrl.display()
            ),
            FlashError::NodeMissing { node, waited } => write!(
                f,
                "{} did not appear within {} ms",
                node.display(),
                WholeMillis(*waited)
            ),
            FlashError::NoSpace { dev, avail } => write!(
                f,
                "{} has {avail} free eraseblocks; UBIFS needs at least {}",
                dev.display(),
                ubi::UBIFS_MIN_LEBS
            ),
            FlashError::MakeVolume { dev, name, err } => write!(
                f,
                "cannot create the UBI volume {name} on {}: {err}",
                dev.display()
            ),
            FlashError::RenameVolume { dev, id, name, err } => write!(
                f,
                "cannot rename volume {id} of {} to {name}: {err}",
                dev.display()
            ),
            FlashError::Unmap { vol, lnum, err } => {
                write!(f, "cannot unmap LEB {lnum} of {}: {err}", vol.display())
            }
        }
    }
}

/// How often to look for a device node that devtmpfs is about to create.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits up to `wait` (by `sys`'s clock) for `node` to exist below `root`.
pub fn wait_for_node(sys: &dyn Sys, root: &SysRoot, node: &Path, wait: Duration) -> bool {
    crate::sys::wait_until(sys, wait, POLL, || root.join(node).exists().then_some(())).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<FlashSpec, FlashSpecError> {
        parse_flash_spec(s).unwrap()
    }

    fn ubi(device: Option<u32>, volume: &str) -> FlashSpec {
        FlashSpec::Ubi {
            device,
            volume: volume.into(),
        }
    }

    #[test]
    fn spec_forms() {
        assert_eq!(
            p("mtd:rootfs_data"),
            Ok(FlashSpec::Mtd("rootfs_data".into()))
        );
        assert_eq!(p("mtd:u-boot env"), Ok(FlashSpec::Mtd("u-boot env".into())));
        assert_eq!(p("ubi:rootfs_data"), Ok(ubi(None, "rootfs_data")));
        assert_eq!(p("ubi:ubi1:rootfs_data"), Ok(ubi(Some(1), "rootfs_data")));
        assert_eq!(p(" ubi:ubi0:data "), Ok(ubi(Some(0), "data")));
        // A colon that does not follow ubiN belongs to the volume name.
        assert_eq!(p("ubi:my:vol"), Ok(ubi(None, "my:vol")));
        assert_eq!(p("ubi:ubix:vol"), Ok(ubi(None, "ubix:vol")));
        assert_eq!(p("ubi:ubi0:a:b"), Ok(ubi(Some(0), "a:b")));
        assert_eq!(p("ubi:ubi99999999999:v"), Ok(ubi(None, "ubi99999999999:v")));
    }

    #[test]
    fn spec_errors_and_other_forms() {
        assert_eq!(p("mtd:"), Err(FlashSpecError::EmptyName));
        assert_eq!(p("ubi:"), Err(FlashSpecError::EmptyName));
        assert_eq!(p("ubi:ubi0:"), Err(FlashSpecError::EmptyName));
        assert_eq!(
            p(&format!("ubi:{}", "v".repeat(128))),
            Err(FlashSpecError::NameTooLong)
        );
        assert!(p(&format!("ubi:{}", "v".repeat(127))).is_ok());
        for other in ["/dev/mtd1", "PARTLABEL=x", "mtd1", "ubi0:x", "MTD:x", ""] {
            assert_eq!(parse_flash_spec(other), None, "{other}");
        }
    }

    #[test]
    fn spec_display_round_trips() {
        for s in [
            "mtd:rootfs_data",
            "ubi:rootfs_data",
            "ubi:ubi2:rootfs_data",
            "ubi:a:b",
        ] {
            assert_eq!(parse_flash_spec(s).unwrap().unwrap().to_string(), s);
        }
    }
}
