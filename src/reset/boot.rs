//! The factory reset at boot: what the plan's `Reset` and `DeleteTrash`
//! steps do, on the mounted (read-write) data filesystem, before the
//! overlay exists. The wipe itself is wipe.rs; the decision to run it is
//! the plan's (plan/decide.rs), from the records read beforehand.

use super::wipe::{Pending, ResetArea, TrashEnd};
use crate::config::Config;
use crate::plan::ResetStep;
use crate::state::WholeMillis;
use crate::sys::Sys;
use std::path::Path;
use std::time::Duration;

/// The power-cut test hook (feature test-hooks, `overlay.test_crash=STEP[:N]`):
/// reboots, unsynced, right after the N-th change of that step. In the
/// release build it is compiled out: `changed` only feeds the watchdog.
pub struct PowerCut<'a> {
    #[cfg(feature = "test-hooks")]
    sys: &'a dyn Sys,
    #[cfg(feature = "test-hooks")]
    at: Option<(String, u32)>,
    #[cfg(feature = "test-hooks")]
    count: u32,
    #[cfg(not(feature = "test-hooks"))]
    sys: std::marker::PhantomData<&'a dyn Sys>,
}

impl<'a> PowerCut<'a> {
    #[cfg(feature = "test-hooks")]
    pub fn new(sys: &'a dyn Sys, cfg: &Config) -> PowerCut<'a> {
        PowerCut {
            sys,
            at: cfg.test_crash.clone(),
            count: 0,
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    pub fn new(sys: &'a dyn Sys, cfg: &Config) -> PowerCut<'a> {
        let _ = (sys, cfg);
        PowerCut {
            sys: std::marker::PhantomData,
        }
    }

    /// Called after each change of a step: feeds the watchdog (these are
    /// the long operations' loops), then the test hook.
    pub fn changed(&mut self, step: &str) {
        crate::recovery::watchdog::feed();
        #[cfg(feature = "test-hooks")]
        self.hook(step);
        #[cfg(not(feature = "test-hooks"))]
        let _ = step;
    }

    #[cfg(feature = "test-hooks")]
    fn hook(&mut self, step: &str) {
        let Some((at, n)) = &self.at else { return };
        if at != step {
            return;
        }
        self.count += 1;
        if self.count == *n {
            crate::warn!("test hook: power cut after {step} #{n}");
            let err = self.sys.reboot();
            crate::warn!("test hook: reboot failed: {err}");
        }
    }
}

/// Carries out `step` on the data filesystem at `data`; `rom` is the lower
/// root (for the keep list of a reset asked for on the command line).
/// `Ok(Some(line))` is what overlay-status shows of a completed reset;
/// `Err` is the reason to run on RAM (the reset resumes at the next boot).
pub fn carry_out(
    sys: &dyn Sys,
    data: &Path,
    rom: &Path,
    step: &ResetStep,
    cut: &mut PowerCut,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, String> {
    let area =
        ResetArea::open(data, true).map_err(|e| format!("cannot open the reset area: {e}"))?;
    let pending = area
        .pending()
        .map_err(|e| format!("cannot read the reset request: {e}"))?;
    let mut hook = |s: &str| cut.changed(s);
    // A pending per-path revert is replaced by a reset: it removes those
    // paths too.
    let full_pending = matches!(&pending, Pending::Request(r) if r.revert.is_empty());
    let req = match (step, pending) {
        (ResetStep::Corrupt, Pending::Corrupt(e)) => {
            let msg = format!(
                "factory reset: the request record is unusable ({e}): ignored, nothing wiped"
            );
            crate::warn!("{msg}");
            warnings.push(msg);
            area.remove_request()
                .map_err(|e| format!("cannot remove the unusable request: {e}"))?;
            return Ok(None);
        }
        (ResetStep::Stale { seq }, _) => {
            crate::info!(
                "factory reset #{seq} was already completed; removing its leftover request"
            );
            area.finish_stale(*seq, &mut hook)
                .map_err(|e| format!("cannot finish reset #{seq}: {e}"))?;
            return Ok(None);
        }
        (ResetStep::FromCommandLine | ResetStep::ForUpgrade | ResetStep::FsToolsPending, _)
            if !full_pending =>
        {
            let mut keep = keep_list(&data.join("upper"), rom, warnings);
            if *step == ResetStep::FsToolsPending {
                keep.push(crate::openwrt::fs_state::KEEP_ON_PENDING.into());
            }
            let req = area
                .write_request(keep)
                .map_err(|e| format!("cannot record the reset request: {e}"))?;
            if *step == ResetStep::ForUpgrade {
                crate::warn!(
                    "factory reset #{} for the new image (overlay.upgrade=reset)",
                    req.seq
                );
            } else if *step == ResetStep::FsToolsPending {
                crate::warn!(
                    "factory reset #{}: fstools began one and was cut short (.fs_state PENDING): finishing it",
                    req.seq
                );
            } else {
                crate::warn!(
                    "factory reset #{} asked for on the kernel command line",
                    req.seq
                );
            }
            req
        }
        (_, Pending::Request(req)) => req,
        // The records changed between reading them and now: nothing to do.
        _ => return Ok(None),
    };
    if !req.revert.is_empty() {
        return revert(sys, &area, &req, &mut hook);
    }
    crate::warn!(
        "factory reset #{}: wiping the upper layer (keeping {} path(s))",
        req.seq,
        req.keep.len()
    );
    let t = sys.now();
    let report = area
        .carry_out(&req, &mut hook)
        .map_err(|e| format!("factory reset #{} failed: {e}", req.seq))?;
    let ms = WholeMillis(sys.now().saturating_sub(t));
    let kept = if report.kept.is_empty() {
        "nothing".to_string()
    } else {
        report.kept.join(", ")
    };
    crate::warn!("factory reset #{}: done in {ms} ms; kept: {kept}", req.seq);
    Ok(Some(format!(
        "reset #{} done in {ms} ms, kept: {kept}",
        req.seq
    )))
}

/// A per-path revert (`overlay-reset --path`): what it matches leaves the
/// upper, the lowers' versions show. `Ok(Some(line))` for overlay-status.
fn revert(
    sys: &dyn Sys,
    area: &ResetArea,
    req: &super::Request,
    hook: &mut dyn FnMut(&str),
) -> Result<Option<String>, String> {
    crate::warn!(
        "revert #{}: removing {} from the upper layer",
        req.seq,
        req.revert.join(", ")
    );
    let t = sys.now();
    let report = area
        .carry_out(req, hook)
        .map_err(|e| format!("revert #{} failed: {e}", req.seq))?;
    let ms = WholeMillis(sys.now().saturating_sub(t));
    let removed = if report.kept.is_empty() {
        "nothing (no such entry in the upper)".to_string()
    } else {
        report.kept.join(", ")
    };
    crate::warn!("revert #{}: done in {ms} ms; removed: {removed}", req.seq);
    Ok(Some(format!(
        "revert #{} done in {ms} ms, removed: {removed}",
        req.seq
    )))
}

/// Deletes what resets left in the trash, for at most `budget`; the rest
/// goes to a background process at the lowest priority. Never costs the
/// boot its flash: what cannot be deleted stays for the next boot or the
/// background deleter, and the reason is returned as a warning.
pub fn delete_trash(
    sys: &dyn Sys,
    data: &Path,
    budget: Duration,
    cut: &mut PowerCut,
) -> Option<String> {
    let area = match ResetArea::open(data, false) {
        Ok(a) => a,
        Err(e) => {
            return Some(format!(
                "cannot open the reset area to delete its trash: {e}"
            ))
        }
    };
    if !area.has_trash() {
        return None;
    }
    let t = std::time::Instant::now();
    let mut removed = 0;
    let mut hook = |s: &str| cut.changed(s);
    match area.delete_trash(Some(t + budget), &mut removed, &mut hook) {
        Ok(TrashEnd::Empty) => {
            crate::info!(
                "factory reset: trash deleted ({removed} entries in {} ms)",
                WholeMillis(t.elapsed())
            );
            None
        }
        Ok(TrashEnd::Left(why)) => Some(format!(
            "factory reset: {removed} trash entries deleted; {why}: they stay in {}/trash, the next boot tries again",
            super::RESET_DIR
        )),
        Err(e) => Some(format!(
            "cannot delete the reset trash: {e}; it stays, the next boot tries again"
        )),
        Ok(TrashEnd::Deadline) => {
            crate::info!(
                "factory reset: {removed} entries deleted in {} ms; the rest goes in the background",
                WholeMillis(t.elapsed())
            );
            let started = sys.background(&mut || {
                match area.delete_trash(None, &mut removed, &mut |_| {}) {
                    Ok(TrashEnd::Empty) => crate::info!(
                        "factory reset: background trash deletion done ({removed} entries in {} ms)",
                        WholeMillis(t.elapsed())
                    ),
                    Ok(end) => crate::warn!(
                        "factory reset: background trash deletion stopped: {end}; the next boot tries again"
                    ),
                    Err(e) => crate::warn!(
                        "factory reset: background trash deletion stopped: {e}; the next boot tries again"
                    ),
                }
            });
            started.err().map(|e| {
                format!("cannot start the background trash deletion: {e}; the next boot goes on")
            })
        }
    }
}

/// The keep list for a reset asked for on the command line: the root's
/// /etc/overlay-reset.keep as the booted system would see it (the upper's
/// copy, else the lower's). What is not kept is said.
pub fn keep_list(upper: &Path, rom: &Path, warnings: &mut Vec<String>) -> Vec<String> {
    let list = super::read_keep_list(upper, rom);
    for w in &list.warnings {
        let msg = w.to_string();
        crate::warn!("{msg}");
        warnings.push(msg);
    }
    list.patterns
}
