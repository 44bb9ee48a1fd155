//! Flash wear at boot (issue 4): read what the device says about its wear
//! before the data filesystem is mounted, act on it per
//! `overlay.wear_policy`, and keep the wear log (one small write per
//! interval at most).

use super::Boot;
use crate::paths;
use crate::state::{Layer, Upper};
use crate::sys::MountFlags;
use crate::wear::log as wlog;
use crate::wear::policy::UpperAction;
use crate::wear::sources::{self, ReadOptions, SourceReading};
use crate::wear::{self, Assessment};
use std::path::{Path, PathBuf};

/// Where the RAM upper of a protected boot lives (moved into the new root
/// with /run).
pub const PROTECT_RAM: &str = "/run/overlay-init/ram";

/// The wear readings and assessment of this boot.
pub struct BootWear {
    pub assessment: Assessment,
    pub readings: Vec<SourceReading>,
    /// `vda2`, `mmcblk0p3`, `mtd3`: the data device's name.
    pub data_dev: String,
}

impl Boot<'_> {
    /// Reads the wear sources (ext4's lifetime writes from the superblock in
    /// `head`: nothing is mounted yet), logs the level and decision, and
    /// records them in the state. `None` when `overlay.wear=off`.
    pub(super) fn wear_assess(
        &mut self,
        node: &str,
        fstype: &str,
        head: &[u8],
    ) -> Option<BootWear> {
        if !self.cfg.wear.enabled {
            return None;
        }
        let dev = node.rsplit('/').next().unwrap_or(node).to_string();
        let mut readings =
            sources::read_sources(&self.root, &self.cfg.wear, &ReadOptions { scan_ec: true });
        if fstype == "ext4" {
            if let Some(kb) = crate::probe::ext4_kbytes_written(head) {
                readings.push(sources::fs_from_counter(
                    &self.root,
                    "ext4",
                    &dev,
                    kb,
                    &self.cfg.wear,
                ));
            }
        }
        let assessment = wear::assess(&readings, &self.cfg.wear, Some(&dev));
        for r in &readings {
            for why in &r.reasons {
                log::warn!("flash wear: {}: {why}", r.id);
            }
        }
        let line = format!(
            "{} (device level {})",
            assessment.decision.summary(),
            assessment.level.as_str()
        );
        if assessment.decision.writes_flash() && assessment.level <= wear::Level::Ok {
            log::info!("{line}");
        } else {
            log::warn!("{line}");
        }
        self.state.wear = Some(line);
        Some(BootWear {
            assessment,
            readings,
            data_dev: dev,
        })
    }

    /// Whether the policy keeps this boot off the flash: `Err(reason)` for a
    /// tmpfs upper, `Ok(true)` to protect (read-only under RAM).
    pub(super) fn wear_action(w: &BootWear) -> Result<bool, String> {
        match w.assessment.decision.upper {
            UpperAction::Flash => Ok(false),
            UpperAction::Tmpfs => Err(format!(
                "{} (overlay.wear_policy=tmpfs)",
                w.assessment.decision.summary()
            )),
            UpperAction::FlashReadOnlyUnderTmpfs => Ok(true),
        }
    }

    /// `protect`: the data filesystem read-only at /overlay (no journal
    /// replay, no fsck, no reset: nothing is written), its upper/ the top
    /// lower layer, under a tmpfs upper in [`PROTECT_RAM`].
    pub(super) fn protect(
        &mut self,
        node: &str,
        fstype: &str,
        why: String,
    ) -> Result<Upper, String> {
        self.ensure_fs(fstype);
        let target = Path::new(self.mode.overlay());
        let _ = self.sys.mkdir(target, 0o755);
        // A read-only mount still replays ext4's journal and runs f2fs's
        // roll-forward unless told not to.
        let data = match fstype {
            "ext4" => "noload",
            "f2fs" => "norecovery",
            _ => "",
        };
        self.sys
            .mount(node, target, fstype, MountFlags::RDONLY, data)
            .map_err(|e| format!("{why}; and {node} cannot be mounted read-only: {e}"))?;
        self.upper_on_flash = true;
        let size = self.cfg.tmpfs_size.to_string();
        if let Err(e) = self.mount_ram(Path::new(PROTECT_RAM), &format!("at {PROTECT_RAM}")) {
            self.unmount_upper();
            return Err(format!("{why}; {e}"));
        }
        self.upper_base = PathBuf::from(PROTECT_RAM);
        if let Err(e) = self.make_upper_dirs() {
            self.upper_base = PathBuf::from(self.mode.overlay());
            self.unmount_upper();
            return Err(format!("{why}; {e}"));
        }
        self.state.lowers.insert(
            0,
            Layer {
                device: node.to_string(),
                fstype: fstype.to_string(),
                mountpoint: format!("{}/upper", paths::OVERLAY),
            },
        );
        log::warn!(
            "flash protected: {node} is read-only at {}, its upper layer shown under a RAM upper",
            paths::OVERLAY
        );
        Ok(Upper::Tmpfs {
            reason: Some(why),
            size,
        })
    }

    /// After a read-write mount of the data filesystem: reads the wear log,
    /// logs the projection, and appends this boot's record when the interval
    /// allows (one 64-byte write; never twice in a boot).
    pub(super) fn wear_log(&mut self, w: &BootWear) {
        let data = self.root.join(Path::new(self.mode.overlay()));
        let state = match wlog::read_log(&data) {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("wear log: {e}"));
                return;
            }
        };
        let path = wlog::log_path(Path::new(paths::OVERLAY));
        if let Some(p) = state.problem(&path) {
            self.warn(p);
        }
        for l in state.skipped_lines(&path) {
            log::warn!("{l}");
        }
        let outcome = crate::wear::projection::project(
            state.records(),
            &w.assessment.endurance,
            w.assessment.used_pct,
        );
        log::info!(
            "flash wear projection: {}",
            crate::wear::display::projection_text(&outcome)
        );
        let now = wear::wall_clock_secs();
        let boot_id = wear::read_boot_id(&self.root).unwrap_or(0);
        if !wlog::boot_write_allowed(state.newest(), now, self.cfg.wear.log_interval, boot_id) {
            log::debug!("wear log: last record is recent, nothing written");
            return;
        }
        let rec = wlog::WearRecord::from_readings(
            &w.readings,
            Some(&w.data_dev),
            w.assessment.level,
            now,
            boot_id,
        );
        match wlog::append(&data, &state, &rec) {
            Ok(r) => log::info!("wear log: record #{} written", r.seq),
            Err(e) => self.warn(format!("wear log: {e}")),
        }
    }
}
