//! `overlay-reset --format`: the explicit way to reclaim a data partition
//! that holds something overlay-init does not recognise (it never erases
//! such a partition on its own, and boots on tmpfs saying why). It writes
//! OpenWrt's `0xdeadc0de` "format me" marker at the start of the partition;
//! the next boot sees the marker, formats (a block partition with the
//! lower's mkfs, an MTD partition by erasing it for JFFS2) and uses it.
//! Only while the partition is not mounted: this boot must be on RAM.

use crate::backend::{self, Location};
use crate::flash::jffs2;
use crate::paths::{self, SysRoot};
use crate::state::{BootState, Upper};
use crate::sys::linux::LinuxSys;
use std::io::Write;
use std::path::PathBuf;

/// Where the marker goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Mtd(PathBuf),
    Block(PathBuf),
}

/// The data partition this system boots with, as the pre-init finds it:
/// the same backend table, from the command line and the board file. `Err`
/// says why there is none to format.
pub fn find_target(root: &SysRoot) -> Result<Target, String> {
    match backend::locate_configured(root) {
        Ok(Some(loc)) => target_of(&loc),
        Ok(None) => Err("this system is set to boot without a flash upper".into()),
        Err(missing) => Err(missing.to_string()),
    }
}

/// The device to mark, for a location.
pub fn target_of(loc: &Location) -> Result<Target, String> {
    match loc {
        Location::Mtd { mtd, .. } if mtd.read_only => {
            Err(format!("mtd{} ({}) is read-only", mtd.index, mtd.name))
        }
        Location::Mtd { mtd, .. } => Ok(Target::Mtd(mtd.node())),
        Location::UbiVolume { .. } | Location::UbiDevice { .. } => Err(format!(
            "{} is a UBI volume: remove and recreate it (ubirmvol, ubimkvol) to reclaim it",
            loc.describe()
        )),
        Location::Block(d) => Ok(Target::Block(d.node.clone())),
        Location::Ram => Err("this system is set to boot without a flash upper".into()),
    }
}

/// Writes the marker. The partition must not be mounted (checked by the
/// caller from the boot state and /proc/mounts).
pub fn write_marker(t: &Target) -> Result<(), String> {
    match t {
        Target::Mtd(dev) => jffs2::write_format_marker(&LinuxSys, dev).map_err(|e| e.to_string()),
        Target::Block(dev) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| format!("cannot open {}: {e}", dev.display()))?;
            f.write_all(&jffs2::FORMAT_MARKER)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", dev.display()))
        }
    }
}

/// Refuses while the data partition is in use: as the upper, or read-only
/// under a RAM upper (wear protection).
pub fn in_use(state: &BootState) -> Option<String> {
    if let Upper::Flash { device, .. } = &state.upper {
        return Some(format!(
            "the data partition is in use as the upper ({device}): overlay-reset without --format resets it"
        ));
    }
    let protected = format!("{}/upper", paths::OVERLAY);
    state
        .lowers
        .iter()
        .find(|l| l.mountpoint == protected)
        .map(|l| {
            format!(
                "{} is mounted read-only at {}: nothing to reclaim",
                l.device,
                paths::OVERLAY
            )
        })
}
