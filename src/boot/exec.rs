//! The executor: carries out the plan's steps through [`Sys`], logging each
//! as the shell command it amounts to. When a step fails, what the rung
//! mounted is undone and the plan's next fallback is taken, with the typed
//! reason of the failure. It never improvises: every choice is the plan's
//! (plan/decide.rs).

use super::Boot;
use crate::backend::{block, Location, PrepareEnv};
use crate::flash::{mtd, ubi};
use crate::paths;
use crate::plan::decide::{self, DataFacts};
use crate::plan::{Action, Plan, Step, UpperPlan};
use crate::reason::Reason;
use crate::reset::boot::{self as reset_boot, PowerCut};
use crate::state::Upper;
use crate::sys::MountFlags;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an erase of the data partition may hold the boot; the rest is
/// finished in the background and the flash is used from the next boot.
const ERASE_BUDGET: Duration = Duration::from_secs(5);
/// devtmpfs shows /dev/ubiN shortly after an attach.
const NODE_WAIT: Duration = Duration::from_secs(2);
/// A data filesystem with less free space than this (or than 1 % of it) is
/// called full: the boot goes on on flash, and says so.
const FULL_BYTES: u64 = 256 * 1024;

/// Writes (or, `on` false, zeroes) the format's intent tag at the tail of
/// the block device `node`, synced.
fn write_intent(node: &Path, on: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(node)?;
    let size = std::io::Seek::seek(&mut &f, std::io::SeekFrom::End(0))?;
    let bytes = if on {
        crate::probe::format_intent(size)
    } else {
        vec![0u8; crate::probe::INTENT_LEN]
    };
    f.write_all_at(&bytes, crate::probe::intent_offset(size))?;
    f.sync_all()
}

/// The long operations: what the watchdog's feeding is measured over (and
/// the test build's `overlay.test_slow=` stretches).
fn is_long(step: &Step) -> bool {
    matches!(
        step,
        Step::Mkfs { .. }
            | Step::Fsck { .. }
            | Step::Erase { .. }
            | Step::CreateVolume { .. }
            | Step::ClearVolume { .. }
            | Step::Reset(_)
            | Step::DeleteTrash { .. }
            | Step::Upgrade(crate::plan::UpgradeStep::Merge(_))
    )
}

/// A rung failed with `err`; `prev` is the reason the rung itself ran for.
fn combine(prev: Option<Reason>, err: Reason) -> Reason {
    match (prev, err) {
        // It says the reason already ("...; and it cannot be mounted").
        (_, e @ Reason::ProtectMount { .. }) => e,
        (Some(p), e) => p.then(e),
        (None, e) => e,
    }
}

impl<'a> Boot<'a> {
    /// Facts, plan, execution. An attach is carried out at once and the
    /// plan made again from what it shows (once).
    pub(super) fn run_upper_stage(&mut self) {
        let mut cut = PowerCut::new(self.sys, &self.cfg);
        let mut attached = None;
        let plan = loop {
            let facts = self.gather();
            let tools = match &facts.data {
                DataFacts::Found {
                    loc: Location::Block(_),
                    ..
                } => self.tools(),
                _ => Default::default(),
            };
            let env = PrepareEnv {
                fstype: self.cfg.fstype,
                tools: &tools,
                erase_budget: ERASE_BUDGET,
            };
            let mut plan = decide::upper(&self.cfg, facts, &env);
            crate::debug!(
                "plan: {} {}{}",
                plan.upper.backend.name(),
                plan.upper.action.name(),
                plan.upper
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            if !plan.upper.rescans() {
                break plan;
            }
            // The attach's MTD number, not a clone of the step (a Step's
            // Clone is ~700 bytes of code).
            let attach = match plan.upper.steps.first() {
                Some(Step::Attach { mtd }) => Some(*mtd),
                _ => None,
            };
            let outcome = match (attached, attach) {
                (Some(mtd), _) => Err(Reason::StillUnattached { mtd }),
                (None, Some(mtd)) => {
                    attached = Some(mtd);
                    let mut rung = std::mem::replace(&mut plan.upper, decide::none(None));
                    let r = self.run_step(&mut rung, &Step::Attach { mtd }, &mut cut);
                    plan.upper = rung;
                    r
                }
                (None, None) => Ok(()),
            };
            if let Err(reason) = outcome {
                // The attach failed: the next rung, with the reason.
                let mut next = plan.fallbacks.remove(0);
                next.reason = Some(reason);
                plan.upper = next;
                break plan;
            }
        };
        self.carry_out(plan, &mut cut);
    }

    /// [`Boot::carry_out`] of a plan made elsewhere (the plan matrix).
    #[cfg(test)]
    pub(super) fn execute(&mut self, plan: Plan) {
        let mut cut = PowerCut::new(self.sys, &self.cfg);
        self.carry_out(plan, &mut cut);
    }

    /// Runs the plan's upper, falling back rung by rung.
    fn carry_out(&mut self, plan: Plan, cut: &mut PowerCut) {
        let Plan {
            upper,
            mut fallbacks,
        } = plan;
        let mut rung = upper;
        loop {
            self.announce(&rung);
            match self.run_rung(&mut rung, cut) {
                Ok(()) => break,
                Err(err) => {
                    self.undo();
                    let reason = combine(rung.reason.take(), err);
                    let mut next = if fallbacks.is_empty() {
                        decide::none(None)
                    } else {
                        fallbacks.remove(0)
                    };
                    if next.action == Action::None {
                        crate::error!("{reason}; the root will be read-only");
                    }
                    next.reason = Some(reason);
                    rung = next;
                }
            }
        }
        self.finish(rung);
        self.fallbacks = fallbacks;
    }

    fn announce(&self, rung: &UpperPlan) {
        match (rung.action, &rung.reason) {
            (Action::Tmpfs, Some(r)) => crate::error!("running on RAM: {r}"),
            (Action::None, None) => {
                crate::info!("overlay disabled: the root is the lower layer alone, read-only")
            }
            _ => {}
        }
    }

    /// The rung worked: the state says what the upper is.
    fn finish(&mut self, rung: UpperPlan) {
        let size = self.cfg.tmpfs_size.to_string();
        let reason = rung.reason.as_ref().map(ToString::to_string);
        self.state.data_sysfs = rung.data.as_ref().map(|fs| fs.sysfs_name.clone());
        self.state.upper = match (rung.action, &rung.data) {
            (Action::None, _) => Upper::None { reason },
            (Action::Failsafe, data) => {
                if let Some(Reason::Failsafe(why)) = &rung.reason {
                    self.state.recovery.failsafe = Some(why.to_string());
                    self.failsafe = Some(why.clone());
                }
                self.state.recovery.failsafe_data = data
                    .as_ref()
                    .map(|fs| (fs.device.clone(), fs.fstype.to_string()));
                Upper::Tmpfs { reason, size }
            }
            (Action::Tmpfs, _) => Upper::Tmpfs { reason, size },
            (Action::Protect, Some(fs)) => {
                crate::warn!(
                    "flash protected: {} is read-only at {}, its upper layer shown under a RAM upper",
                    fs.device,
                    fs.place.after.display()
                );
                Upper::Tmpfs { reason, size }
            }
            (_, Some(fs)) => {
                crate::info!(
                    "upper: {} ({}) at {}",
                    fs.device,
                    fs.fstype,
                    fs.place.after.display()
                );
                self.check_free_space(&fs.place.at_boot, &fs.device);
                Upper::Flash {
                    device: fs.device.clone(),
                    fstype: fs.fstype.into(),
                }
            }
            (_, None) => Upper::None { reason },
        };
        self.upper = Some(rung);
    }

    /// A full data filesystem still boots on flash (its data is the user's),
    /// with a warning: changes may not be saved.
    fn check_free_space(&mut self, at: &Path, device: &str) {
        let Ok((free, total)) = self.sys.fs_space(at) else {
            return;
        };
        if free < FULL_BYTES.max(total / 100) {
            self.warn(format!(
                "the data filesystem {device} is full ({} KiB free of {} KiB): changes may not be saved",
                free / 1024,
                total / 1024
            ));
        }
    }

    /// Unmounts what the failed rung mounted, last first.
    fn undo(&mut self) {
        while let Some(target) = self.mounted.pop() {
            if let Err(e) = self.sys.unmount(&target, false) {
                crate::warn!("cannot unmount {}: {e}; detaching it", target.display());
                if let Err(e) = self.sys.unmount(&target, true) {
                    crate::warn!("cannot detach {}: {e}", target.display());
                }
            }
        }
    }

    /// Drops the upper in effect (the overlay on it unmounted first) for
    /// the next rung of the ladder.
    pub(super) fn fall_back(&mut self, reason: Reason) {
        if self.newroot_mounted {
            let nr = Path::new(self.mode.newroot());
            if let Err(e) = self
                .sys
                .unmount(nr, false)
                .or_else(|_| self.sys.unmount(nr, true))
            {
                crate::warn!("cannot unmount {}: {e}", nr.display());
            }
            self.newroot_mounted = false;
        }
        self.undo();
        let prev = self.upper.take().and_then(|u| u.reason);
        let mut next = if self.fallbacks.is_empty() {
            decide::none(None)
        } else {
            self.fallbacks.remove(0)
        };
        next.reason = Some(combine(prev, reason));
        let fallbacks = std::mem::take(&mut self.fallbacks);
        let mut cut = PowerCut::new(self.sys, &self.cfg);
        self.carry_out(
            Plan {
                upper: next,
                fallbacks,
            },
            &mut cut,
        );
    }

    fn run_rung(&mut self, rung: &mut UpperPlan, cut: &mut PowerCut) -> Result<(), Reason> {
        // The steps are taken out while they run and put back, rather than
        // cloned (ReadRecords passes its `fresh` to decide::data_of).
        let steps = std::mem::take(&mut rung.steps);
        let mut done = Ok(());
        for step in &steps {
            done = self.run_step(rung, step, cut);
            if done.is_err() {
                break;
            }
        }
        rung.steps = steps;
        done
    }

    fn device(rung: &UpperPlan) -> String {
        rung.data
            .as_ref()
            .map_or_else(|| "tmpfs".to_string(), |fs| fs.device.clone())
    }

    /// One step. Logged first, as the command it amounts to.
    fn run_step(
        &mut self,
        rung: &mut UpperPlan,
        step: &Step,
        cut: &mut PowerCut,
    ) -> Result<(), Reason> {
        match step {
            // Their command lines are logged as they run (run_in_lower).
            Step::Mkfs { .. } | Step::Fsck { .. } => crate::debug!("{step}"),
            _ => crate::detail!("{step}"),
        }
        self.run_step_inner(rung, step, cut)?;
        // A long operation: the longest interval between two feeds of the
        // watchdog during it is logged (measured from the end of the step
        // before), and the test build stretches it (the watchdog tests): a
        // child (mkfs, fsck) sleeps before it runs, so that the child wait
        // feeds; the others are followed by the stretch, fed as they feed.
        let long = is_long(step);
        #[cfg(feature = "test-hooks")]
        if let (Some(d), true, false) = (
            self.cfg.test_slow,
            long,
            matches!(step, Step::Mkfs { .. } | Step::Fsck { .. }),
        ) {
            crate::warn!(
                "test hook: stretching `{step}` by {} ms",
                crate::state::WholeMillis(d)
            );
            crate::recovery::watchdog::with_feeder(|f| crate::recovery::watchdog::test_slow(f, d));
        }
        crate::recovery::watchdog::log_longest_gap(step, long);
        Ok(())
    }

    fn run_step_inner(
        &mut self,
        rung: &mut UpperPlan,
        step: &Step,
        cut: &mut PowerCut,
    ) -> Result<(), Reason> {
        match step {
            Step::LoadFs { fstype } => self.ensure_fs(fstype),
            Step::Attach { mtd } => {
                crate::detail!("mtd{mtd} holds UBI: attaching it");
                let num = ubi::attach(self.sys, &self.root, *mtd, NODE_WAIT)?;
                let sysfs = self.root.path(&format!("{}/ubi{num}", ubi::SYS_CLASS_UBI));
                if !sysfs.is_dir() {
                    return Err(Reason::AttachedNotInSysfs { mtd: *mtd, num });
                }
            }
            Step::CreateVolume {
                ubi: n,
                name,
                bytes,
            } => {
                crate::info!(
                    "creating UBI volume {name} on ubi{n} ({} KiB)",
                    bytes / 1024
                );
                let id = ubi::make_volume(self.sys, *n, name, *bytes)?;
                // The plan mounts the node UBI gives a new volume
                // (backend/ubi.rs `next_volume_id`); another one is never
                // mounted in its place.
                let node = format!("/dev/ubi{n}_{id}");
                if let Some(fs) = rung.data.as_ref().filter(|fs| fs.device != node) {
                    return Err(Reason::Mount {
                        source: fs.device.clone(),
                        fstype: fs.fstype,
                        err: std::io::Error::other(format!(
                            "UBI made the new volume {name} {node}; it is used from the next boot"
                        )),
                    });
                }
            }
            Step::MarkFormatting {
                ubi: n,
                id,
                from,
                to,
            }
            | Step::NameVolume {
                ubi: n,
                id,
                from,
                to,
            } => {
                if step.follows_the_mount() {
                    crate::detail!("UBIFS formatted on ubi{n}:{from}: naming it {to}");
                } else {
                    crate::detail!("{from} on ubi{n} is to be formatted: named {to} until it is");
                }
                ubi::rename_volume(self.sys, *n, *id, to)?;
            }
            Step::ClearVolume { vol, lebs, why } => {
                crate::info!("{why}: unmapping its {lebs} LEBs for UBIFS to format it");
                ubi::clear_volume(self.sys, vol, *lebs)?;
            }
            Step::Erase { mtd, name, budget } => self.erase(*mtd, name, *budget)?,
            Step::Mkfs {
                fstype,
                device,
                prog,
            } => {
                crate::info!("first boot: formatting blank {device} as {fstype}");
                let mkfs = format!("mkfs.{fstype}");
                // The intent tag at the tail first: a cut in mkfs leaves a
                // partition the next boot formats again, not one it leaves
                // alone as unknown data (probe::format_intent).
                let node = self.root.join(std::path::Path::new(device));
                if let Err(err) = write_intent(&node, true) {
                    return Err(Reason::Read {
                        device: device.clone(),
                        err,
                    });
                }
                let argv = block::mkfs_argv(fstype, prog, device);
                #[cfg(feature = "test-hooks")]
                let argv = crate::recovery::watchdog::slow_child(argv, self.cfg.test_slow);
                match self.run_in_lower(argv) {
                    Ok(0) => {
                        if let Err(e) = write_intent(&node, false) {
                            self.warn(format!(
                                "{device}: cannot remove the format's intent tag: {e}"
                            ));
                        }
                    }
                    Ok(code) => {
                        return Err(Reason::MkfsFailed {
                            mkfs,
                            device: device.clone(),
                            code,
                        })
                    }
                    Err(err) => return Err(Reason::MkfsSpawn { mkfs, err }),
                }
            }
            Step::Fsck {
                fstype,
                device,
                prog,
                due,
            } => {
                crate::info!("{device}: {due}: checking");
                let argv = block::fsck_argv(fstype, prog, device);
                #[cfg(feature = "test-hooks")]
                let argv = crate::recovery::watchdog::slow_child(argv, self.cfg.test_slow);
                match self.run_in_lower(argv) {
                    Err(e) => self.warn(format!(
                        "cannot run {prog}: {e}; mounting {device} unchecked"
                    )),
                    Ok(code) => match block::fsck_verdict(fstype, code) {
                        block::FsckVerdict::Clean => {}
                        block::FsckVerdict::Repaired => {
                            self.warn(format!("{prog} repaired errors on {device}"))
                        }
                        block::FsckVerdict::Refuse(why) => {
                            return Err(Reason::FsckRefused {
                                device: device.clone(),
                                why,
                            })
                        }
                    },
                }
            }
            Step::Mount {
                source,
                fstype,
                place,
                read_only,
                data,
                or_rw,
            } => {
                let _ = self.sys.mkdir(&place.at_boot, 0o755);
                let flags = MountFlags {
                    readonly: *read_only,
                    noatime: true,
                    ..MountFlags::NONE
                };
                let mut mounted = self.sys.mount(source, &place.at_boot, fstype, flags, data);
                if let (Err(e), true) = (&mounted, *or_rw) {
                    crate::warn!(
                        "{source} does not mount read-only ({e}): it needs its own recovery, mounting it read-write"
                    );
                    let rw = MountFlags {
                        noatime: true,
                        ..MountFlags::NONE
                    };
                    mounted = self.sys.mount(source, &place.at_boot, fstype, rw, data);
                }
                if let Err(err) = mounted {
                    return Err(match (&rung.reason, rung.action) {
                        (Some(Reason::WornProtect { summary }), Action::Protect) => {
                            Reason::ProtectMount {
                                summary,
                                source: source.clone(),
                                err,
                            }
                        }
                        _ => Reason::Mount {
                            source: source.clone(),
                            fstype,
                            err,
                        },
                    });
                }
                self.mounted.push(place.at_boot.clone());
            }
            Step::ReadRecords { fresh, .. } => {
                let Some(fs) = rung.data.clone() else {
                    return Ok(());
                };
                let records = if *fresh {
                    self.fresh_records(&fs)
                } else {
                    self.read_records(&fs)
                };
                let steps = match decide::data_of(&self.cfg, rung, *fresh, records)? {
                    decide::DataPlan::Steps(steps) => steps,
                    decide::DataPlan::Failsafe { reason, steps } => {
                        // The boot counter says failsafe: this rung becomes
                        // one (the data stays read-only, for rescue).
                        rung.action = Action::Failsafe;
                        rung.reason = Some(Reason::Failsafe(reason));
                        rung.upper_base = Some(self.mode.places().ram);
                        if let Some(fs) = rung.data.as_mut() {
                            fs.read_write = false;
                        }
                        steps
                    }
                };
                for s in steps {
                    self.run_step(rung, &s, cut)?;
                }
            }
            Step::RemountRw { place } => {
                let flags = MountFlags {
                    noatime: true,
                    ..MountFlags::NONE
                };
                if let Err(err) = self.sys.remount(&place.at_boot, flags) {
                    let (source, fstype) = rung
                        .data
                        .as_ref()
                        .map_or((String::new(), ""), |fs| (fs.device.clone(), fs.fstype));
                    return Err(Reason::Mount {
                        source,
                        fstype,
                        err,
                    });
                }
            }
            Step::Reset(r) => {
                let data = self.data_dir(rung);
                let rom = self.root.path(self.mode.rom());
                let mut warnings = Vec::new();
                let done = reset_boot::carry_out(self.sys, &data, &rom, r, cut, &mut warnings);
                self.state.warnings.extend(warnings);
                if let Some(line) = done.map_err(Reason::Reset)? {
                    self.state.reset = Some(line);
                }
            }
            Step::DeleteTrash { budget } => {
                let data = self.data_dir(rung);
                if let Some(w) = reset_boot::delete_trash(self.sys, &data, *budget, cut) {
                    self.warn(w);
                }
            }
            Step::UpperDirs { base, .. } => {
                // overlayfs needs upper/ and work/ on the same filesystem
                // (work/ is used for atomic copy-up and whiteouts).
                for d in ["upper", "work"] {
                    let p = base.at_boot.join(d);
                    self.sys.mkdir(&p, 0o755).map_err(|err| Reason::UpperDirs {
                        path: p.display().to_string(),
                        err,
                        on: Self::device(rung),
                    })?;
                }
            }
            Step::WearLog => {
                let data = self.data_dir(rung);
                if let (Some(w), Some(state)) = (&self.wear, &self.wear_log) {
                    match crate::wear::boot::append(&self.root, &data, state, w) {
                        Ok(seq) => crate::detail!("wear log: record #{seq} written"),
                        Err(e) => self.warn(e),
                    }
                }
            }
            Step::RescueMount {
                source,
                fstype,
                place,
                data,
            } => {
                let _ = self.sys.mkdir(&place.at_boot, 0o755);
                let flags = MountFlags {
                    readonly: true,
                    noatime: true,
                    ..MountFlags::NONE
                };
                match self.sys.mount(source, &place.at_boot, fstype, flags, data) {
                    Ok(()) => self.mounted.push(place.at_boot.clone()),
                    Err(e) => {
                        self.warn(format!(
                            "failsafe: {source} ({fstype}) does not mount read-only ({e}): your data is not available at /overlay"
                        ));
                        rung.data = None;
                    }
                }
            }
            Step::CountBoot { restart } => {
                let data = self.data_dir(rung);
                let hook = &mut |s: &str| cut.changed(s);
                match crate::recovery::bootcount::count_boot_with(&data, *restart, hook) {
                    Ok(rec) => self.state.recovery.boot_count = Some(rec.attempts),
                    Err(e) => self.warn(format!("boot counter: {e}; this boot is not counted")),
                }
                self.state.recovery.boot_attempts = self.cfg.recovery.boot_attempts;
            }
            Step::Upgrade(u) => self.upgrade_step(rung, u, cut),
            Step::UpgradeBackground => self.upgrade_background(rung),
            Step::FsStateReady => match crate::openwrt::fs_state::set_ready(&self.data_dir(rung)) {
                Ok(true) => crate::detail!("fstools' .fs_state set to READY"),
                Ok(false) => {}
                Err(e) => self.warn(format!("cannot set fstools' .fs_state: {e}")),
            },
            // Its place is after the overlay's mount (Boot::assemble).
            Step::RestoreSettings => self.restore_settings = true,
            Step::MountRam { place, size } => {
                let _ = self.sys.mkdir(&place.at_boot, 0o755);
                let data = format!("mode=0755,size={size}");
                self.sys
                    .mount("tmpfs", &place.at_boot, "tmpfs", MountFlags::NONE, &data)
                    .map_err(|err| Reason::Tmpfs {
                        what: if place.at_boot == Path::new(self.mode.overlay()) {
                            "upper".into()
                        } else {
                            format!("at {}", place.at_boot.display())
                        },
                        err,
                    })?;
                self.mounted.push(place.at_boot.clone());
            }
        }
        Ok(())
    }

    /// The data filesystem of a rung, as a path of this process.
    pub(super) fn data_dir(&self, rung: &UpperPlan) -> PathBuf {
        let at = rung.data.as_ref().map_or_else(
            || PathBuf::from(paths::OVERLAY),
            |fs| fs.place.at_boot.clone(),
        );
        self.root.join(&at)
    }

    /// Erases `/dev/mtdN` for JFFS2 (the marker block last, so that a cut
    /// erases again); past `budget` the rest goes to a background process
    /// and the boot runs on RAM this time.
    fn erase(&mut self, index: u32, name: &str, budget: Duration) -> Result<(), Reason> {
        let dev = PathBuf::from(format!("/dev/mtd{index}"));
        crate::info!("{name}: format marker found: erasing {}", dev.display());
        let mut steps = mtd::ProgressSteps::default();
        let outcome = mtd::erase(self.sys, &dev, None, Some(budget), &mut |d, t| {
            crate::recovery::watchdog::feed();
            if let Some(p) = steps.next(d, t) {
                crate::info!("erasing {name}: {p}%");
            }
        })?;
        let mtd::EraseOutcome::Stopped {
            total,
            remaining_blocks,
            ..
        } = outcome
        else {
            return Ok(());
        };
        let sys = self.sys;
        let what = format!("mtd{index} ({name})");
        let shown = dev.display().to_string();
        let started = sys.background(&mut || match mtd::erase(
            sys,
            &dev,
            Some(remaining_blocks),
            None,
            &mut |_, _| {},
        ) {
            Ok(_) => crate::info!("{shown}: erase finished; mtd:{name} is used from the next boot"),
            Err(e) => crate::warn!("{shown}: background erase stopped: {e}; the next boot goes on"),
        });
        Err(Reason::EraseUnfinished {
            what,
            percent: mtd::percent(total.saturating_sub(remaining_blocks), total),
            budget,
            background: started.is_ok(),
        })
    }
}
