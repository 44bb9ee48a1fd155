//! The plan matrix (issue 10): each mode (initramfs/switch_root, pivot_root)
//! × each upper (block ext4, blank, garbage, a filesystem due for fsck, UBI
//! volume, UBI device lacking the volume, JFFS2, JFFS2 marked for format,
//! no data partition) × each situation (normal; worn flash under protect,
//! tmpfs or warn; a reset pending; `overlay.data=tmpfs`; `overlay.data=none`).
//! For each cell: the action, both places of every mount and layer, and the
//! writes the plan makes to the flash, against a literal table. The
//! executor is run over the same cells in boot/tests.rs.

use super::decide::{self, DataFacts, Facts, PendingReset, Places, Records};
use super::{Action, Place, Plan, Step, Write};
use crate::backend::{Content, Location, PrepareEnv, Tools};
use crate::config::{Config, FsChoice};
use crate::devices::BlockDev;
use crate::flash::jffs2::RawKind;
use crate::flash::mtd::{MtdInfo, MtdKind};
use crate::flash::ubi::{UbiDevice, UbiVolume, VolumeContent};
use crate::probe::FsKind;
use crate::reason::{NotFound, Reason};
use crate::upgrade::identity::tests::id;
use crate::wear::config::Policy;
use crate::wear::policy::{decide as wear_decide, Decision};
use crate::wear::Level;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Initramfs,
    Pivot,
}

pub const MODES: [Mode; 2] = [Mode::Initramfs, Mode::Pivot];

/// The places each mode must use: literal, not computed by the code under
/// test (boot/mod.rs `Mode::places` is checked against these too).
pub fn places(mode: Mode) -> Places {
    match mode {
        Mode::Initramfs => Places {
            data: Place::new("/overlay", "/overlay"),
            ram: Place::new("/run/overlay-init/ram", "/run/overlay-init/ram"),
        },
        Mode::Pivot => Places {
            data: Place::new("/run/overlay-init/overlay", "/overlay"),
            ram: Place::new("/run/overlay-init/ram", "/run/overlay-init/ram"),
        },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpperKind {
    Ext4,
    Ext4Fsck,
    Blank,
    Garbage,
    UbiVolume,
    UbiNoVolume,
    Jffs2,
    Jffs2Marker,
    Missing,
}

pub const UPPERS: [UpperKind; 9] = [
    UpperKind::Ext4,
    UpperKind::Ext4Fsck,
    UpperKind::Blank,
    UpperKind::Garbage,
    UpperKind::UbiVolume,
    UpperKind::UbiNoVolume,
    UpperKind::Jffs2,
    UpperKind::Jffs2Marker,
    UpperKind::Missing,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Situation {
    Normal,
    WornProtect,
    WornTmpfs,
    WornWarn,
    ResetPending,
    DataTmpfs,
    DataNone,
    /// `overlay.failsafe=1` (or the button, or the key): decided before any
    /// device is used.
    Failsafe,
    /// `overlay.boot_attempts=3` and 3 boots without mark-good recorded.
    CountExceeded,
}

pub const SITUATIONS: [Situation; 9] = [
    Situation::Normal,
    Situation::WornProtect,
    Situation::WornTmpfs,
    Situation::WornWarn,
    Situation::ResetPending,
    Situation::DataTmpfs,
    Situation::DataNone,
    Situation::Failsafe,
    Situation::CountExceeded,
];

/// An ext4 superblock: cleanly unmounted, or due for a check.
pub fn ext4_head(clean: bool) -> Vec<u8> {
    let mut v = vec![0u8; 4096];
    v[1024 + 56] = 0x53;
    v[1024 + 57] = 0xEF;
    if clean {
        v[1024 + 0x3A] = 1; // s_state: EXT4_VALID_FS
    }
    v
}

pub fn ubi_device(volumes: &[(&str, u32)]) -> UbiDevice {
    UbiDevice {
        num: 0,
        mtd_num: 2,
        leb_size: 262016,
        total_ebs: 192,
        avail_ebs: if volumes.is_empty() { 188 } else { 0 },
        bad_pebs: 0,
        max_ec: 1,
        read_only: false,
        volumes: volumes
            .iter()
            .map(|(name, id)| UbiVolume {
                ubi: 0,
                id: *id,
                name: (*name).into(),
                data_bytes: 0,
                reserved_ebs: 188,
                usable_eb_size: 262016,
                dynamic: true,
                corrupted: false,
                upd_marker: false,
            })
            .collect(),
    }
}

pub fn mtd2() -> MtdInfo {
    MtdInfo {
        index: 2,
        name: "rootfs_data".into(),
        size: 48 << 20,
        erasesize: 256 << 10,
        writesize: Some(1),
        kind: MtdKind::Nor,
        read_only: false,
    }
}

pub fn block_vda2() -> BlockDev {
    BlockDev {
        name: "vda2".into(),
        node: "/dev/vda2".into(),
        disk: Some("vda".into()),
        partn: Some(2),
        partlabel: Some("rootfs_data".into()),
        partuuid: None,
        size: 64 << 20,
    }
}

/// What the data search finds for an upper kind.
pub fn data_facts(kind: UpperKind) -> DataFacts {
    let block = |k: FsKind, head: Vec<u8>| DataFacts::Found {
        loc: Location::Block(block_vda2()),
        content: Ok(Content::Block { kind: k, head }),
    };
    let mtd = |k: RawKind| DataFacts::Found {
        loc: Location::Mtd {
            mtd: mtd2(),
            volume: "rootfs_data".into(),
        },
        content: Ok(Content::Raw(k)),
    };
    match kind {
        UpperKind::Ext4 => block(FsKind::Ext4, ext4_head(true)),
        UpperKind::Ext4Fsck => block(FsKind::Ext4, ext4_head(false)),
        UpperKind::Blank => block(FsKind::Blank, vec![0; 4096]),
        UpperKind::Garbage => block(FsKind::Unknown, vec![7; 4096]),
        UpperKind::UbiVolume => {
            let d = ubi_device(&[("rootfs_data", 0)]);
            DataFacts::Found {
                loc: Location::UbiVolume {
                    volume: d.volumes[0].clone(),
                    device: d,
                },
                content: Ok(Content::Volume(Some(VolumeContent::Ubifs))),
            }
        }
        UpperKind::UbiNoVolume => DataFacts::Found {
            loc: Location::UbiDevice {
                device: ubi_device(&[]),
                volume: "rootfs_data".into(),
            },
            content: Ok(Content::NoVolume),
        },
        UpperKind::Jffs2 => mtd(RawKind::Jffs2),
        UpperKind::Jffs2Marker => mtd(RawKind::FormatMarker),
        UpperKind::Missing => DataFacts::Missing(Reason::NotFound {
            what: NotFound::Partition("PARTLABEL=rootfs_data".into()),
            waited: Duration::from_secs(1),
        }),
    }
}

pub fn wear(s: Situation) -> Option<Decision> {
    let worn = |p| Some(wear_decide(Level::Critical, p));
    match s {
        Situation::WornProtect => worn(Policy::Protect),
        Situation::WornTmpfs => worn(Policy::Tmpfs),
        Situation::WornWarn => worn(Policy::Warn),
        _ => Some(wear_decide(Level::Ok, Policy::Protect)),
    }
}

pub fn facts(mode: Mode, kind: UpperKind, s: Situation) -> Facts {
    let data = match s {
        Situation::DataTmpfs => DataFacts::Found {
            loc: Location::Ram,
            content: Ok(Content::Ram),
        },
        Situation::DataNone => DataFacts::Disabled,
        _ => data_facts(kind),
    };
    Facts {
        places: places(mode),
        data,
        wear: wear(s),
        lower_devices: vec!["/dev/vda1".into()],
        failsafe: (s == Situation::Failsafe)
            .then_some(crate::recovery::failsafe::FailsafeReason::CommandLine),
    }
}

pub fn records(s: Situation) -> Records {
    Records {
        reset: if s == Situation::ResetPending {
            PendingReset::Request { seq: 3, keep: 1 }
        } else {
            PendingReset::None
        },
        // A system overlay-init booted before: fstools' state is READY.
        fs_state: crate::openwrt::fs_state::FsState::Ready,
        count: (s == Situation::CountExceeded).then_some(
            crate::recovery::bootcount::CountState::Ok(crate::recovery::bootcount::CountRecord {
                seq: 3,
                attempts: 3,
                good_boot: 0,
            }),
        ),
        ..Records::default()
    }
}

/// The configuration of a cell: boot counting on where it counts.
pub fn config(s: Situation) -> Config {
    let mut cfg = Config::default();
    if s == Situation::CountExceeded {
        cfg.recovery.boot_attempts = 3;
    }
    cfg
}

pub fn tools() -> Tools {
    Tools {
        mkfs_ext4: Some("/sbin/mkfs.ext4".into()),
        mkfs_f2fs: None,
        fsck_ext4: Some("/sbin/e2fsck".into()),
        fsck_f2fs: None,
    }
}

/// The whole plan of a cell: the upper, then the data steps from the
/// records (as the executor asks for them once the data is mounted).
pub fn whole(mode: Mode, kind: UpperKind, s: Situation) -> (Plan, Vec<Step>) {
    let cfg = config(s);
    let t = tools();
    let env = PrepareEnv {
        fstype: FsChoice::Auto,
        tools: &t,
        erase_budget: Duration::from_secs(5),
    };
    let mut plan = decide::upper(&cfg, facts(mode, kind, s), &env);
    let data = match decide::data(&cfg, &plan.upper, records(s)).unwrap() {
        decide::DataPlan::Steps(steps) => steps,
        // As the executor does: the rung becomes a failsafe one.
        decide::DataPlan::Failsafe { reason, steps } => {
            plan.upper.action = Action::Failsafe;
            plan.upper.reason = Some(Reason::Failsafe(reason));
            plan.upper.upper_base = Some(places(mode).ram);
            if let Some(fs) = plan.upper.data.as_mut() {
                fs.read_write = false;
            }
            steps
        }
    };
    (plan, data)
}

/// A step's short name, for the table.
fn name(s: &Step) -> &'static str {
    match s {
        Step::LoadFs { .. } => "loadfs",
        Step::Attach { .. } => "attach",
        Step::CreateVolume { .. } => "mkvol",
        Step::ClearVolume { .. } => "clear",
        Step::MarkFormatting { .. } => "mark-formatting",
        Step::NameVolume { .. } => "name",
        Step::Erase { .. } => "erase",
        Step::Mkfs { .. } => "mkfs",
        Step::Fsck { .. } => "fsck",
        Step::Mount {
            read_only: true, ..
        } => "mount-ro",
        Step::Mount { .. } => "mount-rw",
        Step::ReadRecords { .. } => "records",
        Step::RemountRw { .. } => "remount-rw",
        Step::Reset(_) => "reset",
        Step::DeleteTrash { .. } => "trash",
        Step::UpperDirs { .. } => "dirs",
        Step::WearLog => "wearlog",
        Step::MountRam { .. } => "ram",
        Step::RescueMount { .. } => "rescue-mount",
        Step::CountBoot { .. } => "count",
        Step::Upgrade(_) => "upgrade",
        Step::UpgradeBackground => "upgrade-bg",
        Step::FsStateReady => "fs_state",
        Step::RestoreSettings => "restore",
    }
}

use Situation as S;
use UpperKind as U;

/// The literal expectations: action, and the names of the steps that write
/// the flash, in order. Tmpfs and none write nothing by construction (the
/// tmpfs rung's steps are checked to be RAM only).
fn expected(kind: UpperKind, s: Situation) -> (Action, &'static [&'static str]) {
    const NONE: &[&str] = &[];
    match (kind, s) {
        (_, S::DataNone) => (Action::None, NONE),
        // Failsafe writes nothing, whatever the flash holds.
        (_, S::Failsafe) => (Action::Failsafe, NONE),
        (U::Ext4 | U::Ext4Fsck | U::UbiVolume | U::Jffs2, S::CountExceeded) if true => (
            Action::Failsafe,
            if matches!(kind, U::Ext4Fsck) {
                &["fsck"]
            } else {
                NONE
            },
        ),
        (_, S::DataTmpfs | S::WornTmpfs) => (Action::Tmpfs, NONE),
        (U::Garbage | U::Missing, _) => (Action::Tmpfs, NONE),
        // Worn, protected: what holds data is shown read-only; what would
        // need a format, an erase or a new volume holds nothing to show.
        (U::Ext4 | U::Ext4Fsck | U::UbiVolume | U::Jffs2, S::WornProtect) => {
            (Action::Protect, NONE)
        }
        (U::Blank | U::UbiNoVolume | U::Jffs2Marker, S::WornProtect) => (Action::Tmpfs, NONE),
        (U::Ext4 | U::UbiVolume | U::Jffs2, S::ResetPending) => {
            (Action::Mount, &["remount-rw", "reset", "trash", "dirs"])
        }
        (U::Ext4Fsck, S::ResetPending) => (
            Action::CheckMount,
            &["fsck", "remount-rw", "reset", "trash", "dirs"],
        ),
        (U::Ext4 | U::UbiVolume | U::Jffs2, _) => (Action::Mount, &["remount-rw", "dirs"]),
        (U::Ext4Fsck, _) => (Action::CheckMount, &["fsck", "remount-rw", "dirs"]),
        // Made at this boot: no records, so a reset request cannot exist,
        // and the count starts (from 0) with this boot.
        (U::Blank, S::CountExceeded) => {
            (Action::FormatMount, &["mkfs", "mount-rw", "count", "dirs"])
        }
        (U::UbiNoVolume, S::CountExceeded) => (
            Action::FormatMount,
            &["mkvol", "mount-rw", "name", "count", "dirs"],
        ),
        (U::Jffs2Marker, S::CountExceeded) => {
            (Action::EraseMount, &["erase", "mount-rw", "count", "dirs"])
        }
        (U::Blank, _) => (Action::FormatMount, &["mkfs", "mount-rw", "dirs"]),
        (U::UbiNoVolume, _) => (Action::FormatMount, &["mkvol", "mount-rw", "name", "dirs"]),
        (U::Jffs2Marker, _) => (Action::EraseMount, &["erase", "mount-rw", "dirs"]),
    }
}

/// Every mount and layer of a plan, as (what, place).
fn places_of(plan: &Plan, data: &[Step]) -> Vec<(&'static str, Place)> {
    let u = &plan.upper;
    let mut v = Vec::new();
    for s in u.steps.iter().chain(data) {
        match s {
            Step::Mount { place, .. } => v.push(("mount", place.clone())),
            Step::MountRam { place, .. } => v.push(("ram", place.clone())),
            Step::RescueMount { place, .. } => v.push(("mount", place.clone())),
            Step::RemountRw { place } => v.push(("remount", place.clone())),
            Step::UpperDirs { base, .. } => v.push(("dirs", base.clone())),
            _ => {}
        }
    }
    if let Some(p) = &u.upper_base {
        v.push(("upper_base", p.clone()));
    }
    if let Some(p) = &u.top_lower {
        v.push(("top_lower", p.clone()));
    }
    if let Some(fs) = &u.data {
        v.push(("data", fs.place.clone()));
    }
    v
}

#[test]
fn the_matrix_actions_places_and_writes() {
    let mut cells = 0;
    for mode in MODES {
        let p = places(mode);
        for kind in UPPERS {
            for s in SITUATIONS {
                let cell = format!("{mode:?} × {kind:?} × {s:?}");
                let (plan, data) = whole(mode, kind, s);
                let (action, writes) = expected(kind, s);
                assert_eq!(plan.upper.action, action, "{cell}");
                // The writes, in order, and nothing else writes.
                let got: Vec<&str> = plan
                    .upper
                    .steps
                    .iter()
                    .chain(&data)
                    .filter(|st| st.writes() != Write::None)
                    .map(name)
                    .collect();
                assert_eq!(got, writes, "{cell}: {:?} + {data:?}", plan.upper.steps);
                // Both places of every mount and layer: the data (or the
                // tmpfs upper) where the mode keeps it; RAM of a protected
                // boot in /run; the protected layer below both.
                for (what, place) in places_of(&plan, &data) {
                    let want = match (what, action) {
                        ("ram" | "dirs" | "upper_base", Action::Protect | Action::Failsafe) => {
                            p.ram.clone()
                        }
                        ("top_lower", _) => p.data.join("upper"),
                        _ => p.data.clone(),
                    };
                    assert_eq!(place, want, "{cell}: {what}");
                }
                // The layers: protect stacks the flash's upper/ read-only
                // under a RAM upper; tmpfs and flash have their own upper;
                // none has none.
                let u = &plan.upper;
                match action {
                    Action::Protect => {
                        assert_eq!(u.top_lower, Some(p.data.join("upper")), "{cell}");
                        assert_eq!(u.upper_base, Some(p.ram.clone()), "{cell}");
                        assert!(!u.data.as_ref().unwrap().read_write, "{cell}");
                    }
                    Action::None => assert_eq!(u.upper_base, None, "{cell}"),
                    // Failsafe: the user's upper is not a layer; the data,
                    // where it mounts, read-only for rescue.
                    Action::Failsafe => {
                        assert_eq!(u.top_lower, None, "{cell}");
                        assert_eq!(u.upper_base, Some(p.ram.clone()), "{cell}");
                        assert!(u.data.as_ref().is_none_or(|fs| !fs.read_write), "{cell}");
                        assert!(matches!(u.reason, Some(Reason::Failsafe(_))), "{cell}");
                    }
                    _ => {
                        assert_eq!(u.top_lower, None, "{cell}");
                        assert_eq!(u.upper_base, Some(p.data.clone()), "{cell}");
                    }
                }
                // The reason: present exactly when the flash is not used as
                // asked (tmpfs/none asked for have none).
                let asked = matches!(s, S::DataTmpfs | S::DataNone);
                let fallback = matches!(action, Action::Tmpfs | Action::Protect | Action::Failsafe);
                assert_eq!(
                    u.reason.is_some(),
                    fallback && !asked,
                    "{cell}: {:?}",
                    u.reason
                );
                // The ladder below it.
                let ladder: Vec<Action> = plan.fallbacks.iter().map(|f| f.action).collect();
                let want: &[Action] = match action {
                    Action::None => &[],
                    Action::Tmpfs => &[Action::None],
                    _ => &[Action::Tmpfs, Action::None],
                };
                assert_eq!(ladder, want, "{cell}");
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 2 * 9 * 9);
}

#[test]
fn the_reasons_are_typed() {
    let (plan, _) = whole(Mode::Pivot, U::Jffs2Marker, S::WornTmpfs);
    assert!(matches!(plan.upper.reason, Some(Reason::WornTmpfs { .. })));
    let (plan, _) = whole(Mode::Pivot, U::UbiNoVolume, S::WornProtect);
    assert!(matches!(
        plan.upper.reason,
        Some(Reason::WornProtect { .. })
    ));
    let (plan, _) = whole(Mode::Initramfs, U::Garbage, S::Normal);
    assert!(matches!(
        plan.upper.reason,
        Some(Reason::Unrecognised { .. })
    ));
    let (plan, _) = whole(Mode::Initramfs, U::Missing, S::Normal);
    assert!(matches!(
        plan.upper.reason,
        Some(Reason::NotFound {
            what: NotFound::Partition(_),
            ..
        })
    ));
}

#[test]
fn the_data_partition_is_never_a_lower_too() {
    let cfg = Config::default();
    let t = tools();
    let env = PrepareEnv {
        fstype: FsChoice::Auto,
        tools: &t,
        erase_budget: Duration::from_secs(5),
    };
    let mut f = facts(Mode::Initramfs, U::Blank, S::Normal);
    f.lower_devices.push("/dev/vda2".into());
    let plan = decide::upper(&cfg, f, &env);
    assert_eq!(plan.upper.action, Action::Tmpfs);
    assert!(matches!(
        plan.upper.reason,
        Some(Reason::DataIsLower { .. })
    ));
    assert!(plan.upper.writes().is_empty());
}

#[test]
fn an_mtd_holding_ubi_is_attached_unless_the_flash_is_off_limits() {
    let cfg = Config::default();
    let t = tools();
    let env = PrepareEnv {
        fstype: FsChoice::Auto,
        tools: &t,
        erase_budget: Duration::from_secs(5),
    };
    for (s, want) in [
        (S::Normal, Action::Attach),
        // Protect attaches (UBI writes only to repair) to show the data.
        (S::WornProtect, Action::Attach),
        (S::WornTmpfs, Action::Tmpfs),
    ] {
        let mut f = facts(Mode::Pivot, U::Jffs2, s);
        f.data = DataFacts::Found {
            loc: Location::Mtd {
                mtd: mtd2(),
                volume: "rootfs_data".into(),
            },
            content: Ok(Content::Raw(RawKind::Ubi)),
        };
        let plan = decide::upper(&cfg, f, &env);
        assert_eq!(plan.upper.action, want, "{s:?}");
        assert!(plan.upper.writes().is_empty(), "{s:?}");
    }
}

#[test]
fn a_bad_layout_or_unreadable_reset_area_leaves_the_data_unwritten() {
    let cfg = Config::default();
    let (plan, _) = whole(Mode::Initramfs, U::Ext4, S::Normal);
    let r = Records {
        layout: Some(Reason::Layout {
            path: "/overlay/upper".into(),
            is: "a regular file",
        }),
        ..Records::default()
    };
    assert!(matches!(
        decide::data(&cfg, &plan.upper, r),
        Err(Reason::Layout { .. })
    ));
}

#[test]
fn the_steps_read_as_shell_commands() {
    let (plan, data) = whole(Mode::Pivot, U::Jffs2Marker, S::Normal);
    let lines: Vec<String> = plan
        .upper
        .steps
        .iter()
        .chain(&data)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "flash_erase /dev/mtd2 0 0",
            "modprobe jffs2",
            "mount -t jffs2 mtd:rootfs_data /run/overlay-init/overlay",
            "# /run/overlay-init/overlay: a new filesystem, no records",
            "mkdir /run/overlay-init/overlay/upper /run/overlay-init/overlay/work",
        ]
    );
    let (plan, data) = whole(Mode::Initramfs, U::Ext4, S::WornProtect);
    let lines: Vec<String> = plan
        .upper
        .steps
        .iter()
        .chain(&data)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "modprobe ext4",
            "mount -o ro,noload -t ext4 /dev/vda2 /overlay",
            "mount -t tmpfs -o size=25% tmpfs /run/overlay-init/ram",
            "mkdir /run/overlay-init/ram/upper /run/overlay-init/ram/work",
        ]
    );
}

/// fstools' `.fs_state`: PENDING (a reset fstools was cut short in) is
/// finished as a reset (keeping sysupgrade.tgz), then READY is written;
/// READY writes nothing; unknown writes READY once.
#[test]
fn fstools_state_pending_is_a_reset_ready_writes_nothing() {
    use crate::openwrt::fs_state::FsState;
    let cfg = Config::default();
    let (plan, _) = whole(Mode::Pivot, U::Jffs2, S::Normal);
    for (state, want) in [
        (
            FsState::Pending,
            vec!["remount-rw", "reset", "trash", "dirs", "fs_state"],
        ),
        (FsState::Ready, vec!["remount-rw", "dirs"]),
        (FsState::Unknown, vec!["remount-rw", "dirs", "fs_state"]),
    ] {
        let r = Records {
            fs_state: state,
            ..Records::default()
        };
        let decide::DataPlan::Steps(steps) = decide::data(&cfg, &plan.upper, r).unwrap() else {
            panic!()
        };
        let got: Vec<&str> = steps
            .iter()
            .filter(|s| s.writes() != Write::None)
            .map(name)
            .collect();
        assert_eq!(got, want, "{state:?}");
        if state == FsState::Pending {
            assert!(steps.contains(&Step::Reset(super::ResetStep::FsToolsPending)));
        }
    }
}

/// The upgrade's facts of an upper made with image 1 (recorded, with its
/// manifest), no upgrade pending; `reset_done` resets done, a full reset
/// pending or not.
fn upgraded_from_image_1(reset_done: u64, reset_pending: bool) -> crate::upgrade::merge::Facts {
    use crate::upgrade::record;
    crate::upgrade::merge::Facts {
        state: Ok(Some(record::State {
            lowers: vec![record::Lower { id: id(1) }],
        })),
        pending: Ok(None),
        upper_empty: false,
        reset_done,
        reset_pending,
        manifests: vec![Some(id(1))],
    }
}

/// `overlay.upgrade=reset` on a new image: the factory reset is asked for
/// whatever else the reset area holds, except a full reset that happens at
/// this boot anyway (pending, or on the command line). A stale or corrupt
/// request, or a per-path revert, used to suppress it (issue 12): the
/// upgrade then recorded a reset that never happened.
#[test]
fn an_upgrade_with_policy_reset_resets_whatever_else_is_pending() {
    use crate::plan::{ResetStep, UpgradeStep};
    use crate::upgrade::Policy;
    let (plan, _) = whole(Mode::Initramfs, U::Ext4, S::Normal);
    let cfg = Config {
        upgrade: Policy::Reset,
        ..Config::default()
    };
    let steps = |reset: PendingReset, full_pending: bool, cmdline: bool| {
        let mut cfg = cfg.clone();
        cfg.reset = cmdline;
        let facts = upgraded_from_image_1(2, full_pending);
        let r = Records {
            reset,
            upgrade: Some(Ok((facts, vec![id(2)]))),
            ..Records::default()
        };
        match decide::data(&cfg, &plan.upper, r).unwrap() {
            decide::DataPlan::Steps(s) => s,
            decide::DataPlan::Failsafe { .. } => panic!(),
        }
    };
    let resets = |s: &[Step]| -> Vec<ResetStep> {
        s.iter()
            .filter_map(|s| match s {
                Step::Reset(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    };
    for (pending, want) in [
        (PendingReset::None, vec![ResetStep::ForUpgrade]),
        (
            PendingReset::Stale(2),
            vec![ResetStep::Stale { seq: 2 }, ResetStep::ForUpgrade],
        ),
        (
            PendingReset::Corrupt,
            vec![ResetStep::Corrupt, ResetStep::ForUpgrade],
        ),
        // A per-path revert (not a full reset: merge's reset_pending false).
        (
            PendingReset::Request { seq: 3, keep: 0 },
            vec![
                ResetStep::Request { seq: 3, keep: 0 },
                ResetStep::ForUpgrade,
            ],
        ),
    ] {
        let s = steps(pending.clone(), false, false);
        assert_eq!(resets(&s), want, "{pending:?}");
        assert!(s
            .iter()
            .any(|s| matches!(s, Step::Upgrade(UpgradeStep::FinishReset(_)))));
    }
    // A full reset pending, or on the command line: one reset, not two.
    let s = steps(PendingReset::Request { seq: 3, keep: 1 }, true, false);
    assert_eq!(resets(&s), [ResetStep::Request { seq: 3, keep: 1 }]);
    let s = steps(PendingReset::None, false, true);
    assert_eq!(resets(&s), [ResetStep::FromCommandLine]);
}

/// The merge of an upgrade moves the unchanged copies into the reset's
/// trash: the same boot deletes it within its budget (it was left for
/// the next boot, found by tests/qemu/upgrade.rs's figures run).
#[test]
fn an_upgrade_merge_deletes_its_trash_at_the_same_boot() {
    use crate::upgrade::Policy;
    let (plan, _) = whole(Mode::Initramfs, U::Ext4, S::Normal);
    for (policy, trash) in [(Policy::Merge, true), (Policy::Keep, false)] {
        let cfg = Config {
            upgrade: policy,
            ..Config::default()
        };
        let facts = upgraded_from_image_1(0, false);
        let r = Records {
            upgrade: Some(Ok((facts, vec![id(2)]))),
            ..Records::default()
        };
        let decide::DataPlan::Steps(steps) = decide::data(&cfg, &plan.upper, r).unwrap() else {
            panic!()
        };
        let names: Vec<&str> = steps.iter().map(name).collect();
        let merge_at = names.iter().position(|n| *n == "upgrade").unwrap();
        let trash_at = names.iter().position(|n| *n == "trash");
        assert_eq!(trash_at.is_some(), trash, "{policy:?}: {names:?}");
        if let Some(t) = trash_at {
            assert!(t > merge_at, "after the merge: {names:?}");
        }
    }
}
