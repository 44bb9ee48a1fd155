//! `overlay-reset --format`: the explicit way to reclaim a data partition
//! that holds something overlay-init does not recognise (it never erases
//! such a partition on its own, and boots on tmpfs saying why). It writes
//! OpenWrt's `0xdeadc0de` "format me" marker at the start of the partition;
//! the next boot sees the marker, formats (a block partition with the
//! lower's mkfs, an MTD partition by erasing it for JFFS2) and uses it. A
//! UBI volume is emptied instead (every LEB unmapped, as fstools' `jffs2mark`
//! empties it with a zero-byte volume update), under its formatting name
//! (flash/ubi.rs `formatting_name`) first: a cut among the unmaps leaves a
//! volume the next boot knows as a format to finish, not one whose LEB 0
//! is gone and masters are not (unrecognised, left alone). The next boot
//! formats it and names it back.
//! Only while the partition is not mounted: this boot must be on RAM.

use crate::backend::{self, Location};
use crate::flash::jffs2;
use crate::flash::ubi::{clear_volume, formatting_name, rename_volume, UbiVolume, FORMATTING};
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
    /// A UBI volume, and the name it takes before it is emptied (`None`:
    /// it bears its formatting name already).
    Ubi(UbiVolume, Option<String>),
}

impl Target {
    /// The device node the marker goes to.
    pub fn node(&self) -> PathBuf {
        match self {
            Target::Mtd(d) | Target::Block(d) => d.clone(),
            Target::Ubi(v, _) => v.node(),
        }
    }
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
        Location::UbiVolume { volume, .. } => match formatting_name(&volume.name) {
            Some(name) => Ok(Target::Ubi(volume.clone(), Some(name))),
            None => Err(format!(
                "the name of {} is too long to bear \"{FORMATTING}\" (UBI allows 127 bytes)",
                volume.name
            )),
        },
        Location::UbiFormatting { volume, .. } => Ok(Target::Ubi(volume.clone(), None)),
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
        Target::Ubi(vol, formatting) => {
            if let Some(name) = formatting {
                rename_volume(&LinuxSys, vol.ubi, vol.id, name).map_err(|e| e.to_string())?;
            }
            clear_volume(&LinuxSys, &vol.node(), vol.reserved_ebs).map_err(|e| e.to_string())
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

    /// A UBI volume is reclaimed by emptying it (jffs2mark on UBI) under
    /// its formatting name; a missing one has nothing to reclaim.
    #[test]
    fn ubi_targets() {
        let d = dev(0, 2, 0, false, &[("rootfs_data", 1)]);
        let loc = Location::UbiVolume {
            device: d.clone(),
            volume: d.volumes[0].clone(),
        };
        let t = target_of(&loc).unwrap();
        assert_eq!(
            t,
            Target::Ubi(d.volumes[0].clone(), Some("rootfs_data.formatting".into()))
        );
        assert_eq!(t.node(), PathBuf::from("/dev/ubi0_1"));
        let loc = Location::UbiFormatting {
            device: d.clone(),
            volume: d.volumes[0].clone(),
            name: "rootfs_data".into(),
        };
        assert_eq!(target_of(&loc), Ok(Target::Ubi(d.volumes[0].clone(), None)));
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
