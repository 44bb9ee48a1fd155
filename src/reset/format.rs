//! `overlay-reset --format`: the explicit way to reclaim a data partition
//! that holds something overlay-init does not recognise (it never erases
//! such a partition on its own, and boots on tmpfs saying why). It writes
//! OpenWrt's `0xdeadc0de` "format me" marker at the start of the partition;
//! the next boot sees the marker, formats (a block partition with the
//! lower's mkfs, an MTD partition by erasing it for JFFS2) and uses it. A
//! UBI volume is emptied instead (every LEB unmapped, as fstools' `jffs2mark`
//! empties it with a zero-byte volume update): the next boot finds no UBIFS
//! on it and UBIFS formats it at the mount.
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
    /// A UBI volume's node and its LEBs.
    Ubi(PathBuf, u64),
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
        Location::UbiVolume { volume, .. } | Location::UbiFormatting { volume, .. } => {
            Ok(Target::Ubi(volume.node(), volume.reserved_ebs))
        }
        Location::UbiDevice { device, volume } => Err(format!(
            "there is no volume {volume} on ubi{}: the next boot creates it",
            device.num
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
        Target::Ubi(vol, lebs) => {
            crate::flash::ubi::clear_volume(&LinuxSys, vol, *lebs).map_err(|e| e.to_string())
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ubi::tests::dev;

    /// A UBI volume is reclaimed by emptying it (jffs2mark on UBI); a
    /// missing one has nothing to reclaim.
    #[test]
    fn ubi_targets() {
        let d = dev(0, 2, 0, false, &[("rootfs_data", 1)]);
        let loc = Location::UbiVolume {
            device: d.clone(),
            volume: d.volumes[0].clone(),
        };
        assert_eq!(target_of(&loc), Ok(Target::Ubi("/dev/ubi0_1".into(), 200)));
        let loc = Location::UbiDevice {
            device: d,
            volume: "data".into(),
        };
        assert_eq!(
            target_of(&loc),
            Err("there is no volume data on ubi0: the next boot creates it".into())
        );
    }
}
