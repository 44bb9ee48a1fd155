//! The upper on raw flash (issue 6): a UBI volume (UBIFS) or an MTD
//! partition (JFFS2), found by name as fstools does (UBI volume, then MTD
//! partition, then the GPT partition of that name) or named by
//! `overlay.data=mtd:NAME` / `ubi:[ubiN:]VOLUME`. The flash module finds,
//! identifies, attaches, creates and erases; this file mounts the result.

use super::Boot;
use crate::config::DEFAULT_DATA_NAME;
use crate::flash::locate::{self, DataLocation, FlashLocation};
use crate::flash::prepare::{self, Options, Prepared};
use crate::flash::{mtd, ubi, FlashSpec};
use crate::state::Upper;
use std::time::Duration;

/// How long an erase of the data partition may hold the boot; the rest is
/// finished in the background and the flash is used from the next boot.
const ERASE_BUDGET: Duration = Duration::from_secs(5);
/// devtmpfs shows /dev/ubiN shortly after an attach.
const NODE_WAIT: Duration = Duration::from_secs(2);

impl Boot<'_> {
    /// The MTD partitions and UBI devices the kernel shows now.
    fn raw_flash(&self) -> (Vec<mtd::MtdInfo>, Vec<ubi::UbiDevice>) {
        let (mtds, notes) = mtd::read_mtd_devices(&self.root);
        let (ubis, more) = ubi::read_ubi_devices(&self.root);
        for n in notes.iter().chain(&more) {
            log::debug!("{n}");
        }
        (mtds, ubis)
    }

    /// The data location for a name: raw flash first; a board without MTD
    /// gets the GPT partition of that name.
    pub(super) fn upper_by_name(&mut self, name: &str) -> Result<Upper, String> {
        let (mtds, ubis) = self.raw_flash();
        match locate::locate_named(name, &mtds, &ubis) {
            DataLocation::Flash(loc) => self.try_raw_flash(loc),
            DataLocation::Block(spec) => self.try_flash(&spec),
        }
    }

    /// `overlay.data=mtd:NAME` or `ubi:...`: waits up to overlay.datawait
    /// for it to appear.
    pub(super) fn upper_by_flash_spec(&mut self, spec: &FlashSpec) -> Result<Upper, String> {
        let start = self.sys.now();
        loop {
            let (mtds, ubis) = self.raw_flash();
            match locate::locate(spec, DEFAULT_DATA_NAME, &mtds, &ubis) {
                Ok(loc) => return self.try_raw_flash(loc),
                Err(e) if self.sys.now().saturating_sub(start) >= self.cfg.data_wait => {
                    return Err(format!(
                        "{e} (waited {} ms)",
                        self.cfg.data_wait.as_millis()
                    ))
                }
                Err(_) => self.sys.sleep(super::POLL),
            }
        }
    }

    fn try_raw_flash(&mut self, loc: FlashLocation) -> Result<Upper, String> {
        let what = loc.describe();
        log::info!("data on raw flash: {what}");
        let opts = Options {
            node_wait: NODE_WAIT,
            erase_deadline: Some(ERASE_BUDGET),
        };
        let upper = match prepare::prepare(self.sys, &self.root, loc, opts)? {
            Prepared::Ready(u) => u,
            Prepared::EraseUnfinished {
                dev,
                remaining_blocks,
                percent,
                upper,
            } => {
                // The marker block is erased last: a cut here leaves it, and
                // the next boot erases again. Never a half-erased "unknown".
                let sys = self.sys;
                let name = dev.display().to_string();
                let started = sys.background(&mut || match mtd::erase(
                    sys,
                    &dev,
                    Some(remaining_blocks),
                    None,
                    &mut |_, _| {},
                ) {
                    Ok(_) => log::info!(
                        "{name}: erase finished; {} is used from the next boot",
                        upper.source
                    ),
                    Err(e) => {
                        log::warn!("{name}: background erase stopped: {e}; the next boot goes on")
                    }
                });
                let tail = match started {
                    Ok(()) => "the rest is erased in the background; the flash upper is used from the next boot",
                    Err(_) => "the next boot goes on erasing",
                };
                return Err(format!(
                    "formatting {what}: {percent}% erased in {} s; {tail}",
                    ERASE_BUDGET.as_secs()
                ));
            }
        };
        let wear = self.wear_assess(&upper.source, upper.fstype, &[]);
        if let Some(w) = &wear {
            if Self::wear_action(w)? {
                let why = w.assessment.decision.summary().to_string();
                return self.protect(&upper.source, upper.fstype, why);
            }
        }
        self.mount_upper_fs(&upper.source, upper.fstype)?;
        if let Some(w) = &wear {
            self.wear_log(w);
        }
        Ok(Upper::Flash {
            device: upper.source,
            fstype: upper.fstype.into(),
        })
    }
}
