//! `overlay-reset --format`: the explicit way to reclaim a data partition
//! that holds something overlay-init does not recognise (it never erases
//! such a partition on its own, and boots on tmpfs saying why). It writes
//! OpenWrt's `0xdeadc0de` "format me" marker at the start of the partition;
//! the next boot sees the marker, formats (a block partition with the
//! lower's mkfs, an MTD partition by erasing it for JFFS2) and uses it.
//! Only while the partition is not mounted: this boot must be on RAM.

use crate::config::{Config, DataSource};
use crate::devices::{self, DeviceSpec};
use crate::flash::locate::{self, DataLocation, FlashLocation};
use crate::flash::{jffs2, mtd, ubi, FlashSpec};
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

/// The data partition this system boots with, from the command line and the
/// board file (as the pre-init finds it). `Err` says why there is none to
/// format.
pub fn find_target(root: &SysRoot) -> Result<Target, String> {
    // Bytes (cmdline::read_text): with read_to_string, one word that is not
    // UTF-8 anywhere on the command line lost all of it, and the default
    // data partition would have been marked instead of overlay.data='s.
    let read = crate::cmdline::read_text;
    let cmdline = read(&root.path(paths::PROC_CMDLINE)).unwrap_or_default();
    let board = read(&root.path(paths::BOARD_CONFIG))
        .or_else(|_| read(&root.path("/rom/etc/overlay-init.conf")))
        .ok();
    let (cfg, _) = Config::from_bytes(board.as_deref(), &cmdline);
    let (mtds, _) = mtd::read_mtd_devices(root);
    let (ubis, _) = ubi::read_ubi_devices(root);
    let loc = match &cfg.data {
        DataSource::Named(n) => locate::locate_named(n, &mtds, &ubis),
        DataSource::Flash(spec @ FlashSpec::Mtd(_)) => {
            DataLocation::Flash(locate::locate(spec, crate::config::DEFAULT_DATA_NAME, &mtds, &ubis)?)
        }
        DataSource::Flash(spec) => {
            return Err(format!(
                "overlay.data={spec} is a UBI volume: remove and recreate it (ubirmvol, ubimkvol) to reclaim it"
            ))
        }
        DataSource::Device(spec) => DataLocation::Block(spec.clone()),
        DataSource::Tmpfs | DataSource::Disabled => {
            return Err("this system is set to boot without a flash upper".into())
        }
    };
    match loc {
        DataLocation::Flash(FlashLocation::Mtd { mtd, .. }) => {
            if mtd.read_only {
                return Err(format!("mtd{} ({}) is read-only", mtd.index, mtd.name));
            }
            Ok(Target::Mtd(PathBuf::from(format!("/dev/mtd{}", mtd.index))))
        }
        DataLocation::Flash(other) => Err(format!(
            "{} is a UBI volume: remove and recreate it (ubirmvol, ubimkvol) to reclaim it",
            other.describe()
        )),
        DataLocation::Block(spec) => block_target(root, &spec),
    }
}

fn block_target(root: &SysRoot, spec: &DeviceSpec) -> Result<Target, String> {
    let devs = devices::read_block_devices(root);
    let d = devices::find(&devs, spec).ok_or_else(|| format!("no data partition {spec}"))?;
    Ok(Target::Block(d.node))
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
