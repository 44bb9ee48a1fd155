//! Flash wear at boot (issue 4): what the device says about its wear, read
//! before anything of the data is written (the plan applies
//! `overlay.wear_policy` to it), and the wear log, read while the data
//! filesystem is still read-only and appended to once it is read-write (one
//! small write per interval at most).

use crate::paths::{self, SysRoot};
use crate::wear::config::WearConfig;
use crate::wear::log::{self as wlog, LogState};
use crate::wear::sources::{self, ReadOptions, SourceReading};
use crate::wear::{self, Assessment};
use std::path::Path;

/// The wear readings and assessment of this boot.
pub struct BootWear {
    pub assessment: Assessment,
    pub readings: Vec<SourceReading>,
    /// `vda2`, `mmcblk0p3`, `mtd3`, `ubi0`: the data device's name.
    pub data_dev: String,
}

/// What the data location offers besides sysfs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra<'a> {
    /// The block device's first bytes: an ext4 superblock there (also one
    /// left under OpenWrt's format marker) gives its lifetime writes.
    pub head: Option<&'a [u8]>,
    /// An MTD partition holding UBI, not attached yet: its EC headers.
    pub unattached_ubi: Option<u32>,
}

/// Reads every wear source and assesses them for `data_dev`; logs each
/// reason and the decision. Reads only: nothing is mounted or written.
pub fn assess(root: &SysRoot, cfg: &WearConfig, data_dev: &str, extra: Extra) -> BootWear {
    let mut readings = sources::read_sources(root, cfg, &ReadOptions { scan_ec: true });
    if let Some(kb) = extra.head.and_then(crate::probe::ext4_kbytes_written) {
        readings.push(sources::fs_from_counter(root, "ext4", data_dev, kb, cfg));
    }
    if let Some(mtd) = extra.unattached_ubi {
        readings.push(sources::read_unattached_ubi(root, mtd, cfg));
    }
    let assessment = wear::assess(&readings, cfg, Some(data_dev));
    for r in &readings {
        for why in &r.reasons {
            crate::warn!("flash wear: {}: {why}", r.id);
        }
    }
    BootWear {
        assessment,
        readings,
        data_dev: data_dev.to_string(),
    }
}

impl BootWear {
    /// The line for the log and the state: the decision and the level.
    pub fn line(&self) -> String {
        format!(
            "{} (device level {})",
            self.assessment.decision.summary(),
            self.assessment.level.as_str()
        )
    }

    /// Logs [`BootWear::line`]: a detail when all is well, a warning
    /// otherwise.
    pub fn log(&self) {
        let line = self.line();
        if self.assessment.decision.writes_flash() && self.assessment.level <= wear::Level::Ok {
            crate::detail!("{line}");
        } else {
            crate::warn!("{line}");
        }
    }
}

/// The wear log of the data filesystem at `data` (mounted, read-only is
/// enough): logs what is wrong with it and the projection, and says whether
/// this boot's record is due. `warnings` gets what overlay-status shows.
pub fn read_log(
    root: &SysRoot,
    data: &Path,
    w: &BootWear,
    cfg: &WearConfig,
    warnings: &mut Vec<String>,
) -> Option<(LogState, bool)> {
    let state = match wlog::read_log(data) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("wear log: {e}");
            crate::warn!("{msg}");
            warnings.push(msg);
            return None;
        }
    };
    let path = wlog::log_path(Path::new(paths::OVERLAY));
    if let Some(p) = state.problem(&path) {
        crate::warn!("{p}");
        warnings.push(p);
    }
    for l in state.skipped_lines(&path) {
        crate::warn!("{l}");
    }
    let outcome = crate::wear::projection::project(
        state.records(),
        &w.assessment.endurance,
        w.assessment.used_pct,
    );
    crate::detail!(
        "flash wear projection: {}",
        crate::wear::display::projection_text(&outcome)
    );
    let due = wlog::boot_write_allowed(
        state.newest(),
        wear::wall_clock_secs(),
        cfg.log_interval,
        wear::read_boot_id(root).unwrap_or(0),
    );
    if !due {
        crate::debug!("wear log: last record is recent, nothing written");
    }
    Some((state, due))
}

/// Appends this boot's record (one 64-byte write; never twice in a boot).
pub fn append(root: &SysRoot, data: &Path, state: &LogState, w: &BootWear) -> Result<u64, String> {
    let rec = wlog::WearRecord::from_readings(
        &w.readings,
        Some(&w.data_dev),
        w.assessment.level,
        wear::wall_clock_secs(),
        wear::read_boot_id(root).unwrap_or(0),
    );
    wlog::append(data, state, &rec)
        .map(|r| r.seq)
        .map_err(|e| format!("wear log: {e}"))
}
