//! The MTD backend (fstools libfstools/mtd.c, priority 10): the data is a
//! raw MTD partition, mounted as JFFS2. What it holds decides: JFFS2 or
//! erased flash mounts (JFFS2 takes erased flash for an empty filesystem);
//! OpenWrt's `0xdeadc0de` marker is erased first; UBI headers mean the
//! partition is UBI's, to attach (then the UBI backend takes over);
//! anything else is never touched.

use super::{Backend, Content, Inventory, Location, MountSpec, PrepareEnv, Prepared, Wanted};
use crate::config::DEFAULT_DATA_NAME;
use crate::flash::jffs2::{self, RawKind};
use crate::flash::mtd::{self, MtdInfo, MtdKind};
use crate::flash::{ubi, FlashSpec};
use crate::paths::SysRoot;
use crate::plan::{Action, BackendId, Step};
use crate::reason::{NotFound, Reason};
use crate::sys::FlashIo;

pub struct Mtd;

impl Backend for Mtd {
    fn id(&self) -> BackendId {
        BackendId::Mtd
    }

    /// The partition of that name (by name, or `mtd:NAME`), when UBI is
    /// not attached to it.
    fn locate(&self, wanted: &Wanted, inv: &Inventory) -> Option<Result<Location, NotFound>> {
        let (name, volume) = match wanted {
            Wanted::Named(n) => (n.as_str(), n.as_str()),
            Wanted::Flash(FlashSpec::Mtd(n)) => (n.as_str(), DEFAULT_DATA_NAME),
            _ => return None,
        };
        match mtd::find_by_name(&inv.mtds, name) {
            Some(m) if ubi::attached_to(&inv.ubis, m.index).is_some() => None,
            Some(m) => Some(Ok(Location::Mtd {
                mtd: m.clone(),
                volume: volume.into(),
            })),
            None if matches!(wanted, Wanted::Flash(_)) => Some(Err(NotFound::Mtd {
                name: name.into(),
                there: inv
                    .mtds
                    .iter()
                    .map(|m| format!("mtd{} {}", m.index, m.name))
                    .collect(),
            })),
            None => None,
        }
    }

    /// The raw blocks: the first good one and samples across the partition.
    fn probe(&self, io: &dyn FlashIo, root: &SysRoot, loc: &Location) -> Result<Content, Reason> {
        match loc {
            Location::Mtd { mtd, .. } => Ok(Content::Raw(jffs2::read_kind(io, root, mtd)?)),
            _ => Err(Reason::ForeignVolume { at: loc.describe() }),
        }
    }

    fn prepare(
        &self,
        loc: &Location,
        content: &Content,
        env: &PrepareEnv,
    ) -> Result<Prepared, Reason> {
        match (loc, content) {
            (Location::Mtd { mtd, .. }, Content::Raw(kind)) => prepare_mtd(mtd, *kind, env),
            _ => Err(Reason::ForeignVolume { at: loc.describe() }),
        }
    }
}

/// A raw MTD partition (not attached to UBI), given what it holds. Only
/// marked flash is ever erased.
pub fn prepare_mtd(m: &MtdInfo, kind: RawKind, env: &PrepareEnv) -> Result<Prepared, Reason> {
    // fs/jffs2 `get_tree_mtd`: the kernel picks the lowest-numbered MTD of
    // that name, as the search here does.
    let mount = MountSpec {
        source: format!("mtd:{}", m.name),
        fstype: "jffs2",
        quiet_ro: "",
    };
    let what = format!("{} (mtd{})", m.name, m.index);
    if m.read_only {
        return Err(Reason::MtdReadOnly { what });
    }
    match kind {
        // Erased flash is an empty JFFS2 to the kernel; it may also be a
        // young JFFS2 whose nodes the samples missed: mounted the same way,
        // records read first.
        RawKind::Jffs2 | RawKind::Blank => Ok(Prepared::Ready {
            action: Action::Mount,
            steps: Vec::new(),
            mount,
            fresh: false,
        }),
        RawKind::FormatMarker => Ok(Prepared::Ready {
            action: Action::EraseMount,
            steps: vec![Step::Erase {
                mtd: m.index,
                name: m.name.clone(),
                budget: env.erase_budget,
            }],
            mount,
            fresh: true,
        }),
        RawKind::Ubi if m.kind == MtdKind::Ubi => Err(Reason::GluebiHoldsUbi { what }),
        RawKind::Ubi => Ok(Prepared::Attach { mtd: m.index }),
        RawKind::Unknown => Err(Reason::MtdUnknown {
            name: m.name.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ubi::tests::{dev, env, mtd};
    use std::time::Duration;

    fn nor(kind: MtdKind, read_only: bool) -> MtdInfo {
        MtdInfo {
            index: 1,
            kind,
            read_only,
            ..mtd(1, "rootfs_data")
        }
    }

    fn jffs2_mount() -> Prepared {
        Prepared::Ready {
            action: Action::Mount,
            steps: vec![],
            mount: MountSpec {
                source: "mtd:rootfs_data".into(),
                fstype: "jffs2",
                quiet_ro: "",
            },
            fresh: false,
        }
    }

    #[test]
    fn raw_partition_decisions() {
        let n = nor(MtdKind::Nor, false);
        assert_eq!(
            prepare_mtd(&n, RawKind::Jffs2, &env()).unwrap(),
            jffs2_mount()
        );
        assert_eq!(
            prepare_mtd(&n, RawKind::Blank, &env()).unwrap(),
            jffs2_mount()
        );
        assert_eq!(
            prepare_mtd(&nor(MtdKind::Nand, false), RawKind::Jffs2, &env()).unwrap(),
            jffs2_mount()
        );
        assert_eq!(
            prepare_mtd(&n, RawKind::FormatMarker, &env()).unwrap(),
            Prepared::Ready {
                action: Action::EraseMount,
                steps: vec![Step::Erase {
                    mtd: 1,
                    name: "rootfs_data".into(),
                    budget: Duration::from_secs(5)
                }],
                mount: MountSpec {
                    source: "mtd:rootfs_data".into(),
                    fstype: "jffs2",
                    quiet_ro: "",
                },
                fresh: true,
            }
        );
        assert_eq!(
            prepare_mtd(&n, RawKind::Ubi, &env()).unwrap(),
            Prepared::Attach { mtd: 1 }
        );
        let refused = |m: &MtdInfo, k: RawKind| prepare_mtd(m, k, &env()).unwrap_err().to_string();
        assert_eq!(
            refused(&n, RawKind::Unknown),
            "rootfs_data holds unrecognised data; not erasing it (overlay-reset --format reclaims it)"
        );
        for k in [RawKind::Blank, RawKind::FormatMarker] {
            assert_eq!(
                refused(&nor(MtdKind::Nor, true), k),
                "rootfs_data (mtd1) is a read-only partition; left untouched"
            );
        }
        assert_eq!(
            refused(&nor(MtdKind::Ubi, false), RawKind::Ubi),
            "rootfs_data (mtd1) is itself a UBI volume and holds UBI headers; left untouched"
        );
    }

    #[test]
    fn nothing_but_marked_flash_is_ever_erased() {
        for kind in [
            RawKind::Jffs2,
            RawKind::Blank,
            RawKind::Ubi,
            RawKind::Unknown,
        ] {
            for k in [MtdKind::Nor, MtdKind::Nand, MtdKind::Ubi, MtdKind::Unknown] {
                if let Ok(Prepared::Ready { steps, .. }) = prepare_mtd(&nor(k, false), kind, &env())
                {
                    assert!(
                        !steps.iter().any(|s| matches!(s, Step::Erase { .. })),
                        "{kind:?} {k:?}"
                    );
                }
            }
        }
    }

    fn inv(mtds: Vec<MtdInfo>, ubis: Vec<crate::flash::ubi::UbiDevice>) -> Inventory {
        Inventory {
            blocks: vec![],
            mtds,
            ubis,
        }
    }

    #[test]
    fn where_the_partition_is() {
        let mtds = vec![mtd(0, "fw"), mtd(1, "rootfs_data")];
        assert_eq!(
            Mtd.locate(
                &Wanted::Named("rootfs_data".into()),
                &inv(mtds.clone(), vec![])
            ),
            Some(Ok(Location::Mtd {
                mtd: mtds[1].clone(),
                volume: "rootfs_data".into()
            }))
        );
        // fstools_overlay_name=NAME searches the same way for NAME.
        assert_eq!(
            Mtd.locate(&Wanted::Named("fw".into()), &inv(mtds.clone(), vec![])),
            Some(Ok(Location::Mtd {
                mtd: mtds[0].clone(),
                volume: "fw".into()
            }))
        );
        // Attached to UBI: not this backend's.
        assert_eq!(
            Mtd.locate(
                &Wanted::Named("rootfs_data".into()),
                &inv(mtds.clone(), vec![dev(0, 1, 100, false, &[])])
            ),
            None
        );
        let explicit = |n: &str, m: Vec<MtdInfo>| {
            Mtd.locate(&Wanted::Flash(FlashSpec::Mtd(n.into())), &inv(m, vec![]))
        };
        assert_eq!(
            explicit("rootfs_data", mtds.clone()),
            Some(Ok(Location::Mtd {
                mtd: mtds[1].clone(),
                volume: "rootfs_data".into()
            }))
        );
        let missing = |r: Option<Result<Location, NotFound>>| r.unwrap().unwrap_err().to_string();
        assert_eq!(
            missing(explicit("nope", vec![mtd(0, "fw"), mtd(1, "data")])),
            "no MTD partition named nope (there are: mtd0 fw, mtd1 data)"
        );
        assert_eq!(
            missing(explicit("nope", vec![])),
            "no MTD partition named nope (there are: none)"
        );
    }
}
