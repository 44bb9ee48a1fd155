//! The decisions, pure: facts in, a [`Plan`] out. No file is read and no
//! syscall made here; boot/facts.rs gathers what these functions need, and
//! plan/tests.rs runs them over the matrix of modes, uppers and situations.
//!
//! Two calls make a boot's plan, because some facts live on the data
//! filesystem itself (a reset request, the wear log, the layout of
//! `upper/` and `work/`): [`upper`] decides from what can be known without
//! mounting it (the device, what it holds, its wear, the configuration),
//! and mounts an existing filesystem read-only; [`data`] decides the rest
//! from its records, and only then does the first write (the remount
//! read-write) happen. A filesystem made at this boot has no records: its
//! plan mounts it read-write at once.
//!
//! The fallback ladder is fstools' `start`: flash overlay → tmpfs overlay
//! → the lower alone, read-only.

use super::{Action, BackendId, DataFs, Place, Plan, ResetStep, Step, UpgradeStep, UpperPlan};
use crate::backend::{self, Content, Location, PrepareEnv, Prepared};
use crate::config::{Config, TmpfsSize};
use crate::reason::Reason;
use crate::recovery::bootcount::CountState;
use crate::recovery::failsafe::{self, FailsafeReason};
use crate::upgrade::identity::Identity;
use crate::upgrade::merge;
use crate::wear::policy::{Decision, UpperAction};
use std::time::Duration;

/// Where the pre-init mounts what, by how it was started (boot/mod.rs
/// `Mode::places`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Places {
    /// The data filesystem, or the tmpfs upper: `/overlay` from an
    /// initramfs; staged in /run/overlay-init/overlay in pivot mode, at
    /// /overlay after the switch.
    pub data: Place,
    /// The RAM upper of a protected boot.
    pub ram: Place,
}

/// What the data search found.
#[derive(Debug)]
pub enum DataFacts {
    /// `overlay.data=none`: no upper wanted.
    Disabled,
    /// Not found (within the wait): why.
    Missing(Reason),
    /// Found, with what it holds (or why that could not be read).
    Found {
        loc: Location,
        content: Result<Content, Reason>,
    },
}

/// Everything [`upper`] decides from.
#[derive(Debug)]
pub struct Facts {
    pub places: Places,
    pub data: DataFacts,
    /// What the wear policy says about this flash (`None`: wear off).
    pub wear: Option<Decision>,
    /// Devices already in use as read-only layers (root=, overlay.lower=).
    pub lower_devices: Vec<String>,
    /// A failsafe boot asked for before any device was used (command line,
    /// button, console key).
    pub failsafe: Option<FailsafeReason>,
}

/// The factory-reset facts read from the data filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PendingReset {
    #[default]
    None,
    Request {
        seq: u64,
        keep: usize,
    },
    Stale(u64),
    Corrupt,
}

/// What the data filesystem holds beside `upper/` (read while it is mounted
/// read-only).
#[derive(Debug, Default)]
pub struct Records {
    pub reset: PendingReset,
    /// `.reset/trash` holds something.
    pub trash: bool,
    /// `upper/` or `work/` exists and is not a directory.
    pub layout: Option<Reason>,
    /// The wear log's interval allows this boot's record.
    pub wear_log_due: bool,
    /// The boot counter (read when boot counting is on).
    pub count: Option<CountState>,
    /// fstools' `.fs_state` (OpenWrt's tools read and write it).
    pub fs_state: crate::openwrt::fs_state::FsState,
    /// A `sysupgrade.tgz` (OpenWrt's saved settings) waits to be restored.
    pub sysupgrade: bool,
    /// The upgrade facts and the identity of each lower, top first; `Err`
    /// when an identity cannot be read (nothing is decided this boot).
    pub upgrade: Option<Result<(merge::Facts, Vec<Identity>), String>>,
}

/// What the records make of the rest of the boot.
#[derive(Debug)]
pub enum DataPlan {
    /// The steps, the first of which writes (the remount).
    Steps(Vec<Step>),
    /// The boot counter says failsafe: the data stays read-only, the lowers
    /// boot under a RAM upper, nothing is written.
    Failsafe {
        reason: FailsafeReason,
        steps: Vec<Step>,
    },
}

/// How long a boot may spend deleting a reset's trash; the rest is deleted
/// by a background process at the lowest priority (and, after a power cut,
/// by the next boot). Bounds the boot delay of resetting a huge upper.
pub const TRASH_BUDGET: Duration = Duration::from_secs(1);

/// The tmpfs rung.
pub fn tmpfs(places: &Places, size: TmpfsSize, reason: Option<Reason>) -> UpperPlan {
    UpperPlan {
        backend: BackendId::Tmpfs,
        action: Action::Tmpfs,
        reason,
        steps: vec![
            Step::MountRam {
                place: places.data.clone(),
                size,
            },
            Step::UpperDirs {
                base: places.data.clone(),
                on_flash: false,
            },
        ],
        upper_base: Some(places.data.clone()),
        top_lower: None,
        data: None,
    }
}

/// The last rung: the lower root alone, read-only.
pub fn none(reason: Option<Reason>) -> UpperPlan {
    UpperPlan {
        backend: BackendId::None,
        action: Action::None,
        reason,
        steps: Vec::new(),
        upper_base: None,
        top_lower: None,
        data: None,
    }
}

fn with_fallbacks(cfg: &Config, places: &Places, upper: UpperPlan) -> Plan {
    let fallbacks = match upper.action {
        Action::None => Vec::new(),
        Action::Tmpfs => vec![none(None)],
        _ => vec![tmpfs(places, cfg.tmpfs_size, None), none(None)],
    };
    Plan { upper, fallbacks }
}

/// The plan for the upper, from what is known before the data filesystem is
/// mounted. Policies that keep the flash untouched (wear today) are decided
/// here, before any step that writes.
pub fn upper(cfg: &Config, facts: Facts, env: &PrepareEnv) -> Plan {
    let Facts {
        places,
        data,
        wear,
        lower_devices,
        failsafe,
    } = facts;
    let ram = |reason| tmpfs(&places, cfg.tmpfs_size, reason);
    if let Some(why) = failsafe {
        let plan = failsafe_plan(cfg, &places, data, env, why);
        return with_fallbacks(cfg, &places, plan);
    }
    let plan = match data {
        DataFacts::Disabled => none(None),
        DataFacts::Missing(r) => ram(Some(r)),
        DataFacts::Found {
            loc: Location::Ram, ..
        } => ram(None),
        DataFacts::Found { loc, content } => {
            let found = Found {
                places: &places,
                wear,
                lower_devices: &lower_devices,
            };
            match flash_upper(cfg, &found, &loc, content, env) {
                Ok(p) => p,
                Err(reason) => ram(Some(reason)),
            }
        }
    };
    with_fallbacks(cfg, &places, plan)
}

/// The steps of a failsafe boot's RAM upper: the lowers under a tmpfs in
/// /run (the data's place holds the data, read-only, for rescue).
fn failsafe_ram(cfg: &Config, places: &Places) -> Vec<Step> {
    vec![
        Step::MountRam {
            place: places.ram.clone(),
            size: cfg.tmpfs_size,
        },
        Step::UpperDirs {
            base: places.ram.clone(),
            on_flash: false,
        },
    ]
}

/// A failsafe boot: the firmware as shipped. Nothing prepared, checked or
/// written; the data, when there is one that holds a filesystem, mounted
/// read-only at /overlay for rescue (and not at all when it does not mount).
fn failsafe_plan(
    cfg: &Config,
    places: &Places,
    data: DataFacts,
    env: &PrepareEnv,
    why: FailsafeReason,
) -> UpperPlan {
    let mut steps = Vec::new();
    let mut fs = None;
    if let DataFacts::Found {
        loc,
        content: Ok(content),
    } = data
    {
        if let Ok(backend::Prepared::Ready {
            mount,
            fresh: false,
            ..
        }) = backend::backend_of(&loc).prepare(&loc, &content, env)
        {
            if loc != Location::Ram {
                steps.push(Step::LoadFs {
                    fstype: mount.fstype,
                });
                steps.push(Step::RescueMount {
                    source: mount.source.clone(),
                    fstype: mount.fstype,
                    place: places.data.clone(),
                    data: failsafe::readonly_mount_data(mount.fstype),
                });
                fs = Some(DataFs {
                    device: mount.source,
                    fstype: mount.fstype,
                    place: places.data.clone(),
                    read_write: false,
                    sysfs_name: loc.sysfs_name(),
                });
            }
        }
    }
    steps.extend(failsafe_ram(cfg, places));
    UpperPlan {
        backend: fs.as_ref().map_or(BackendId::Tmpfs, |_| BackendId::None),
        action: Action::Failsafe,
        reason: Some(Reason::Failsafe(why)),
        steps,
        upper_base: Some(places.ram.clone()),
        top_lower: None,
        data: fs,
    }
}

/// The facts beside the location.
struct Found<'a> {
    places: &'a Places,
    wear: Option<Decision>,
    lower_devices: &'a [String],
}

fn flash_upper(
    cfg: &Config,
    facts: &Found,
    loc: &Location,
    content: Result<Content, Reason>,
    env: &PrepareEnv,
) -> Result<UpperPlan, Reason> {
    if let Some(node) = loc.block_node() {
        if facts.lower_devices.contains(&node) {
            return Err(Reason::DataIsLower { device: node });
        }
    }
    let content = content?;
    // Wear first: a worn flash under the tmpfs policy is not even prepared.
    let wear = facts.wear.map(|d| (d.upper, d.summary()));
    if let Some((UpperAction::Tmpfs, summary)) = wear {
        return Err(Reason::WornTmpfs { summary });
    }
    let protect = match wear {
        Some((UpperAction::FlashReadOnlyUnderTmpfs, summary)) => Some(summary),
        _ => None,
    };
    let prepared = backend::backend_of(loc).prepare(loc, &content, env)?;
    let (action, prep_steps, mount, fresh) = match prepared {
        // Attaching writes nothing UBI does not repair on its own: allowed
        // under protect too (the data cannot be shown otherwise); the plan
        // is made again from what the attach shows.
        Prepared::Attach { mtd } => {
            return Ok(UpperPlan {
                backend: loc.backend(),
                action: Action::Attach,
                reason: None,
                steps: vec![Step::Attach { mtd }],
                upper_base: None,
                top_lower: None,
                data: None,
            })
        }
        Prepared::Ready {
            action,
            steps,
            mount,
            fresh,
        } => (action, steps, mount, fresh),
    };
    let places = facts.places;
    let data = |read_write| DataFs {
        device: mount.source.clone(),
        fstype: mount.fstype,
        place: places.data.clone(),
        read_write,
        sysfs_name: loc.sysfs_name(),
    };
    if let Some(summary) = protect {
        // Nothing written: no fsck, no format, no erase, no journal replay.
        // What needs preparing holds no data to show: RAM.
        if fresh {
            return Err(Reason::WornProtect { summary });
        }
        return Ok(UpperPlan {
            backend: loc.backend(),
            action: Action::Protect,
            reason: Some(Reason::WornProtect { summary }),
            steps: vec![
                Step::LoadFs {
                    fstype: mount.fstype,
                },
                Step::Mount {
                    source: mount.source.clone(),
                    fstype: mount.fstype,
                    place: places.data.clone(),
                    read_only: true,
                    data: mount.quiet_ro,
                    or_rw: false,
                },
                Step::MountRam {
                    place: places.ram.clone(),
                    size: cfg.tmpfs_size,
                },
                Step::UpperDirs {
                    base: places.ram.clone(),
                    on_flash: false,
                },
            ],
            upper_base: Some(places.ram.clone()),
            top_lower: Some(places.data.join("upper")),
            data: Some(data(false)),
        });
    }
    let (after_mount, mut steps): (Vec<Step>, Vec<Step>) =
        prep_steps.into_iter().partition(Step::follows_the_mount);
    steps.push(Step::LoadFs {
        fstype: mount.fstype,
    });
    steps.push(Step::Mount {
        source: mount.source.clone(),
        fstype: mount.fstype,
        place: places.data.clone(),
        // An existing filesystem is mounted read-only first: its records
        // are read before anything is written.
        read_only: !fresh,
        data: "",
        or_rw: !fresh,
    });
    steps.extend(after_mount);
    steps.push(Step::ReadRecords {
        place: places.data.clone(),
        fresh,
    });
    Ok(UpperPlan {
        backend: loc.backend(),
        action,
        reason: None,
        steps,
        upper_base: Some(places.data.clone()),
        top_lower: None,
        data: Some(data(true)),
    })
}

/// The steps after the data filesystem is mounted, from its records: the
/// boot counter (a failsafe boot when it says so: nothing written), the
/// remount read-write (unless the filesystem was made at this boot), the
/// boot's count, the factory reset, the firmware upgrade, the trash,
/// `upper/` and `work/`, the wear record, the upgrade's background job.
/// `Err` is the reason not to use it (it is still unwritten).
pub fn data(cfg: &Config, upper: &UpperPlan, records: Records) -> Result<DataPlan, Reason> {
    let fresh = upper
        .steps
        .iter()
        .any(|s| matches!(s, Step::ReadRecords { fresh: true, .. }));
    data_of(cfg, upper, fresh, records)
}

/// [`data`] with the `fresh` of the plan's one `ReadRecords` step (the
/// executor runs the steps taken out of `upper`).
pub fn data_of(
    cfg: &Config,
    upper: &UpperPlan,
    fresh: bool,
    records: Records,
) -> Result<DataPlan, Reason> {
    // Protected (read-only) or no data filesystem: nothing to write.
    let Some(fs) = upper.data.as_ref().filter(|fs| fs.read_write) else {
        return Ok(DataPlan::Steps(Vec::new()));
    };
    if let Some(r) = records.layout {
        return Err(r);
    }
    // A filesystem made at this boot has nothing to reset.
    let reset = match &records.reset {
        _ if fresh => None,
        PendingReset::Request { seq, keep } => Some(ResetStep::Request {
            seq: *seq,
            keep: *keep,
        }),
        _ if cfg.reset => Some(ResetStep::FromCommandLine),
        // A reset fstools began and did not finish (`.fs_state` PENDING).
        _ if crate::openwrt::fs_state::todo(records.fs_state).reset => {
            Some(ResetStep::FsToolsPending)
        }
        PendingReset::Stale(seq) => Some(ResetStep::Stale { seq: *seq }),
        PendingReset::Corrupt => Some(ResetStep::Corrupt),
        PendingReset::None => None,
    };
    let mut wipes = matches!(
        reset,
        Some(ResetStep::Request { .. } | ResetStep::FromCommandLine | ResetStep::FsToolsPending)
    );
    // The boot counter, before anything is written: a reset removes what
    // may be broken and starts the count again.
    let limit = cfg.recovery.boot_attempts;
    if let (false, Some(count)) = (fresh, &records.count) {
        if let Some(reason) = failsafe::from_count(limit, count, wipes) {
            return Ok(DataPlan::Failsafe {
                reason,
                steps: vec![
                    Step::MountRam {
                        place: ram(),
                        size: cfg.tmpfs_size,
                    },
                    Step::UpperDirs {
                        base: ram(),
                        on_flash: false,
                    },
                ],
            });
        }
    }
    let mut steps = Vec::new();
    if !fresh {
        steps.push(Step::RemountRw {
            place: fs.place.clone(),
        });
    }
    // The firmware upgrade, decided from the records and the images.
    let mut upgrade = Vec::new();
    let mut trashes = false;
    // A reset at this boot first, then the upgrade (which then finds little
    // to classify): merge::decide knows a pending request.
    if let Some(Ok((facts, ids))) = &records.upgrade {
        {
            match merge::decide(facts, ids, cfg.upgrade) {
                merge::Decision::None => {}
                merge::Decision::Record => upgrade.push(Step::Upgrade(UpgradeStep::Record)),
                merge::Decision::Upgrade(up) => {
                    // The copies it removes go to the reset's trash, and
                    // out of it within this boot's budget.
                    trashes = up.policy == crate::upgrade::Policy::Merge;
                    upgrade.push(Step::Upgrade(UpgradeStep::Merge(up)))
                }
                merge::Decision::Reset { up, request } => {
                    if !up.resume {
                        upgrade.push(Step::Upgrade(UpgradeStep::BeginReset(up.clone())));
                    }
                    // `request`: no factory reset is pending. One asked for
                    // on the command line runs at this boot anyway; a stale
                    // or corrupt request, or a per-path revert, is no reset.
                    if request && reset != Some(ResetStep::FromCommandLine) {
                        upgrade.push(Step::Reset(ResetStep::ForUpgrade));
                        wipes = true;
                    }
                    upgrade.push(Step::Upgrade(UpgradeStep::FinishReset(up)));
                }
            }
        }
    }
    if limit > 0 {
        steps.push(Step::CountBoot {
            restart: fresh || wipes,
        });
    }
    if let Some(r) = reset {
        steps.push(Step::Reset(r));
    }
    steps.extend(upgrade);
    if (records.trash && !fresh) || wipes || trashes {
        steps.push(Step::DeleteTrash {
            budget: TRASH_BUDGET,
        });
    }
    steps.push(Step::UpperDirs {
        base: fs.place.clone(),
        on_flash: true,
    });
    // OpenWrt's tools: READY once in use (written only when it changes),
    // and the settings a sysupgrade saved, restored into the new root once
    // the overlay is there.
    if crate::openwrt::fs_state::todo(records.fs_state).write {
        steps.push(Step::FsStateReady);
    }
    if records.sysupgrade {
        steps.push(Step::RestoreSettings);
    }
    if records.wear_log_due {
        steps.push(Step::WearLog);
    }
    if let Some(Ok((facts, ids))) = &records.upgrade {
        if merge::needs_background(facts, ids) {
            steps.push(Step::UpgradeBackground);
        }
    }
    Ok(DataPlan::Steps(steps))
}

/// Where a protected or failsafe boot keeps its RAM upper, in every mode
/// (in /run, which moves into the new root whole).
fn ram() -> Place {
    Place::new(crate::paths::PROTECT_RAM, crate::paths::PROTECT_RAM)
}
