//! The executor's side of the firmware-upgrade steps (issue 12): what
//! `Step::Upgrade` and `Step::UpgradeBackground` do, through the upgrade
//! module, on the mounted (read-write) data filesystem. Each failure is a
//! warning: the upper stays usable (an interrupted merge resumes at the
//! next boot), so the boot stays on flash.

use super::Boot;
use crate::plan::{UpgradeStep, UpperPlan};
use crate::reset::boot::PowerCut;
use crate::upgrade::merge::{self, Lowerdirs, Outcome};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

/// A `kB` field of `self/status` under the /proc at `proc`.
fn status_kb(proc: BorrowedFd, field: &str) -> Option<u64> {
    let fd = rustix::fs::openat(
        proc,
        "self/status",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    crate::pid1::kb_field(std::str::from_utf8(buf.get(..n)?).ok()?, field)
}

fn open_dir(p: &std::path::Path) -> Option<OwnedFd> {
    rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

impl Boot<'_> {
    /// Where the lowers are seen after the boot, top first.
    fn shown_at(&self) -> Vec<String> {
        self.state
            .lowers
            .iter()
            .map(|l| {
                if l.mountpoint == "/" {
                    crate::paths::ROM.to_string()
                } else {
                    l.mountpoint.clone()
                }
            })
            .collect()
    }

    pub(super) fn upgrade_step(
        &mut self,
        rung: &UpperPlan,
        step: &UpgradeStep,
        cut: &mut PowerCut,
    ) {
        let data = self.data_dir(rung);
        let mut hook = |s: &str| cut.changed(&format!("upgrade-{s}"));
        let when = crate::wear::wall_clock_secs();
        let outcome = match step {
            UpgradeStep::Record => merge::record(&data, &self.upgrade_ids).map(|()| None),
            UpgradeStep::Merge(up) => {
                let roots: Vec<OwnedFd> = self
                    .lower_roots()
                    .iter()
                    .filter_map(|(root, _)| open_dir(root))
                    .collect();
                let fds: Vec<BorrowedFd> = roots.iter().map(AsFd::as_fd).collect();
                let shown_at = self.shown_at();
                let lowers = Lowerdirs {
                    roots: &fds,
                    shown_at: &shown_at,
                };
                crate::warn!(
                    "firmware upgrade: a new image; classifying the upper (overlay.upgrade={})",
                    up.policy.name()
                );
                // No deadline: a merge cut short by one leaves stale
                // copies until a later boot finishes it, and each later
                // run walks again what the first kept. It runs once per
                // image, feeding the watchdog at each entry; its cost is
                // the part of the upper that overlaps the images.
                merge::run(&data, &lowers, up, when, None, &mut hook).map(|o| match o {
                    Outcome::Done(r) => Some((true, r)),
                    Outcome::Stopped(r) => Some((false, r)),
                })
            }
            UpgradeStep::BeginReset(up) => {
                let done = crate::reset::wipe::ResetArea::open(&data, false)
                    .ok()
                    .and_then(|a| a.last_done().ok().flatten())
                    .unwrap_or(0);
                merge::begin_reset(&data, up, when, done).map(|()| None)
            }
            UpgradeStep::FinishReset(up) => {
                let what = self
                    .state
                    .reset
                    .clone()
                    .unwrap_or_else(|| "factory reset".into());
                merge::finish_reset(&data, up, what, &mut hook).map(|r| Some((true, r)))
            }
        };
        match outcome {
            Ok(Some((done, r))) => {
                let [removed, kept, conflicts] = r.counts;
                let line = format!(
                    "firmware upgrade{}: {removed} copies of the old image removed, {kept} changes kept, {conflicts} conflicts (overlay-status --upgrade)",
                    if done { "" } else { " (goes on at the next boot)" }
                );
                if conflicts > 0 {
                    self.warn(line);
                } else {
                    crate::info!("{line}");
                }
            }
            Ok(None) => {}
            Err(e) => self.warn(format!(
                "firmware upgrade: {e}; the upper is left as it is and the next boot tries again"
            )),
        }
    }

    /// Forks the background job: the manifest of an image that has none
    /// recorded. Everything it needs is opened here: the boot moves the
    /// lowers away meanwhile. Its log line says what it cost (time, and
    /// how far it raised the child's peak memory above what it inherited).
    pub(super) fn upgrade_background(&mut self, rung: &UpperPlan) {
        let Some(data) = open_dir(&self.data_dir(rung)) else {
            return;
        };
        let lowers = self.lower_roots();
        let roots: Vec<OwnedFd> = lowers.iter().filter_map(|(r, _)| open_dir(r)).collect();
        if roots.len() != lowers.len() {
            return;
        }
        let ids = self.upgrade_ids.clone();
        // /proc as it is now: the boot moves it into the new root while
        // the job runs, and `self` below it names the job.
        let proc = open_dir(&self.root.path("/proc"));
        let started = self.sys.background(&mut || {
            let t = Instant::now();
            // The peak the job inherited is the boot's: reset it (Linux
            // 4.0 clear_refs "5"), then its own peak is what it adds.
            let base = proc.as_ref().and_then(|p| {
                let _ = rustix::fs::openat(
                    p,
                    "self/clear_refs",
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .and_then(|fd| rustix::io::write(fd, b"5"));
                status_kb(p.as_fd(), "VmRSS")
            });
            let fds: Vec<BorrowedFd> = roots.iter().map(AsFd::as_fd).collect();
            match merge::background(data.as_fd(), &fds, &ids) {
                Ok(lines) => {
                    let peak = proc.as_ref().and_then(|p| status_kb(p.as_fd(), "VmHWM"));
                    let grew = peak.zip(base).map_or(0, |(p, b)| p.saturating_sub(b));
                    for l in lines {
                        crate::info!(
                            "firmware upgrade: {l} in {} ms (peak memory +{grew} kB)",
                            crate::state::WholeMillis(t.elapsed())
                        );
                    }
                }
                Err(e) => crate::warn!("firmware upgrade (background): {e}"),
            }
        });
        if let Err(e) = started {
            self.warn(format!(
                "cannot start the firmware upgrade's background job: {e}"
            ));
        }
    }
}
