//! Carries out the decisions for a raw-flash upper through [`Sys`]: probe,
//! decide, act (attach, create a volume, erase), until what is left is a
//! mount. The mount itself stays with the boot (boot.rs), which mounts every
//! upper the same way: `mount(source, /overlay, fstype, MS_NOATIME)`.

use super::decide::{decide, FlashAction, Probed};
use super::locate::FlashLocation;
use super::mtd::{self, EraseOutcome, ProgressSteps};
use super::{jffs2, ubi, FlashError};
use crate::paths::SysRoot;
use crate::sys::Sys;
use std::path::PathBuf;
use std::time::Duration;

/// What to mount at /overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlashUpper {
    /// The mount(2) source: `ubi0:rootfs_data` or `mtd:rootfs_data`.
    pub source: String,
    /// `ubifs` or `jffs2`.
    pub fstype: &'static str,
}

/// The outcome of [`prepare`] when the flash can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Mount it.
    Ready(FlashUpper),
    /// The erase deadline passed. Blocks `0..remaining_blocks` of `dev` are
    /// not erased yet (the marker block among them, so a reboot now erases
    /// again). Boot on tmpfs; to finish, call
    /// `mtd::erase(sys, dev, Some(remaining_blocks), None, ..)`, then `upper`
    /// can be mounted.
    EraseUnfinished {
        dev: PathBuf,
        remaining_blocks: u64,
        percent: u8,
        upper: FlashUpper,
    },
}

/// Bounds on the slow steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long to wait for devtmpfs to show `/dev/ubiN` after attaching.
    pub node_wait: Duration,
    /// Stop erasing after this long (`None`: erase all of it). NOR erases
    /// take 0.2–2 s per 64–256 KiB block on real chips: a 64 MiB partition
    /// may take minutes.
    pub erase_deadline: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_wait: Duration::from_secs(2),
            erase_deadline: None,
        }
    }
}

/// Reads what a location holds: the raw blocks of an MTD partition, the
/// start of a UBI volume (unreadable → `None`: UBIFS then decides safely).
pub fn probe(sys: &dyn Sys, root: &SysRoot, loc: &FlashLocation) -> Result<Probed, FlashError> {
    Ok(match loc {
        FlashLocation::UbiVolume { volume, .. } => {
            Probed::UbiVolume(match ubi::read_volume_content(root, volume) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::debug!("cannot read {}: {e}", volume.node().display());
                    None
                }
            })
        }
        FlashLocation::UbiDevice { .. } => Probed::UbiDevice,
        FlashLocation::Mtd { mtd, .. } => Probed::Mtd(jffs2::read_kind(sys, root, mtd)?),
    })
}

fn ubifs(source: String) -> Prepared {
    Prepared::Ready(FlashUpper {
        source,
        fstype: "ubifs",
    })
}

/// Makes `loc` mountable: probes it, decides, and acts until a mount is
/// left (at most one attach on the way). `Err` is the reason to run on
/// tmpfs, for the console and the state record.
pub fn prepare(
    sys: &dyn Sys,
    root: &SysRoot,
    loc: FlashLocation,
    opts: Options,
) -> Result<Prepared, String> {
    let mut loc = loc;
    let mut attached = false;
    loop {
        let probed = probe(sys, root, &loc).map_err(|e| e.to_string())?;
        log::debug!("{}: {probed:?}", loc.describe());
        match decide(&loc, &probed) {
            FlashAction::MountUbifs { source } => return Ok(ubifs(source)),
            FlashAction::ClearThenMountUbifs {
                source,
                ubi,
                id,
                lebs,
                why,
            } => {
                log::info!("{why}: unmapping its {lebs} LEBs for UBIFS to format it");
                let vol = PathBuf::from(format!("/dev/ubi{ubi}_{id}"));
                ubi::clear_volume(sys, &vol, lebs).map_err(|e| e.to_string())?;
                return Ok(ubifs(source));
            }
            FlashAction::MountJffs2 { source } => {
                return Ok(Prepared::Ready(FlashUpper {
                    source,
                    fstype: "jffs2",
                }))
            }
            FlashAction::Tmpfs { reason } => return Err(reason),
            FlashAction::CreateVolume { ubi, name, bytes } => {
                let FlashLocation::UbiDevice { device, .. } = &loc else {
                    return Err(format!("internal error: no UBI device for {name}"));
                };
                log::info!(
                    "creating UBI volume {name} on ubi{ubi} ({} KiB)",
                    bytes / 1024
                );
                ubi::create_volume(sys, device, &name).map_err(|e| e.to_string())?;
                return Ok(ubifs(format!("ubi{ubi}:{name}")));
            }
            FlashAction::Attach { mtd } => {
                let FlashLocation::Mtd { volume, .. } = &loc else {
                    return Err(format!("internal error: no MTD partition mtd{mtd}"));
                };
                if attached {
                    return Err(format!(
                        "mtd{mtd} still looks unattached after attaching it"
                    ));
                }
                attached = true;
                log::info!("mtd{mtd} holds UBI: attaching it");
                let num = ubi::attach(sys, root, mtd, opts.node_wait).map_err(|e| e.to_string())?;
                let (ubis, notes) = ubi::read_ubi_devices(root);
                for n in notes {
                    log::debug!("{n}");
                }
                let device = ubis.into_iter().find(|d| d.num == num).ok_or_else(|| {
                    format!("mtd{mtd} was attached as ubi{num}, but /sys/class/ubi/ubi{num} is missing or unreadable")
                })?;
                let volume = volume.clone();
                loc = match device.volume(&volume).cloned() {
                    Some(v) => FlashLocation::UbiVolume { device, volume: v },
                    None => FlashLocation::UbiDevice { device, volume },
                };
            }
            FlashAction::EraseThenMountJffs2 { mtd, name, source } => {
                let dev = PathBuf::from(format!("/dev/mtd{mtd}"));
                log::info!("{name}: format marker found: erasing {}", dev.display());
                let mut steps = ProgressSteps::default();
                let outcome = mtd::erase(sys, &dev, None, opts.erase_deadline, &mut |d, t| {
                    if let Some(p) = steps.next(d, t) {
                        log::info!("erasing {name}: {p}%");
                    }
                })
                .map_err(|e| e.to_string())?;
                let upper = FlashUpper {
                    source,
                    fstype: "jffs2",
                };
                return Ok(match outcome {
                    EraseOutcome::Done { .. } => Prepared::Ready(upper),
                    EraseOutcome::Stopped {
                        total,
                        remaining_blocks,
                        ..
                    } => Prepared::EraseUnfinished {
                        dev,
                        remaining_blocks,
                        percent: mtd::percent(total - remaining_blocks, total),
                        upper,
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::jffs2::FORMAT_MARKER;
    use crate::flash::mtd::{MtdInfo, MtdKind};
    use crate::flash::ubi::tests::fixture_ubi;
    use crate::sys::fake::{Call, FakeSys};
    use crate::sys::MtdGeometry;
    use crate::testutil::TempDir;

    const ES: u64 = 0x10000;
    const BLOCKS: u64 = 32;

    /// mtd1 "rootfs_data" on NOR, its content in /dev/mtd1, its geometry in the fake.
    fn nor(dir: &TempDir, img: &[u8]) -> (FakeSys, SysRoot, FlashLocation) {
        dir.write("dev/mtd1", img);
        let sys = FakeSys::default();
        sys.mtd_geometry.borrow_mut().push((
            "/dev/mtd1".into(),
            MtdGeometry {
                kind: 3,
                writeable: true,
                size: img.len() as u64,
                erasesize: ES as u32,
                writesize: 1,
            },
        ));
        let loc = FlashLocation::Mtd {
            mtd: MtdInfo {
                index: 1,
                name: "rootfs_data".into(),
                size: img.len() as u64,
                erasesize: ES as u32,
                writesize: Some(1),
                kind: MtdKind::Nor,
                read_only: false,
            },
            volume: "rootfs_data".into(),
        };
        (sys, SysRoot::new(dir.path()), loc)
    }

    fn blank() -> Vec<u8> {
        vec![0xFF; (BLOCKS * ES) as usize]
    }

    fn jffs2_upper() -> FlashUpper {
        FlashUpper {
            source: "mtd:rootfs_data".into(),
            fstype: "jffs2",
        }
    }

    fn erased_blocks(sys: &FakeSys) -> Vec<u64> {
        sys.calls()
            .iter()
            .filter_map(|c| match c {
                Call::MtdErase { offset, .. } => Some(offset / ES),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn blank_nor_mounts_as_jffs2_untouched() {
        let dir = TempDir::new("prep-blank");
        let (sys, root, loc) = nor(&dir, &blank());
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Ok(Prepared::Ready(jffs2_upper()))
        );
        assert_eq!(sys.calls(), []);
    }

    #[test]
    fn marker_erases_everything_marker_last() {
        let dir = TempDir::new("prep-marker");
        let mut img = blank();
        img[..4].copy_from_slice(&FORMAT_MARKER);
        // Old JFFS2 behind the marker, as sysupgrade leaves it.
        img[(5 * ES) as usize..(5 * ES) as usize + 2]
            .copy_from_slice(&crate::flash::jffs2::JFFS2_MAGIC.to_ne_bytes());
        let (sys, root, loc) = nor(&dir, &img);
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Ok(Prepared::Ready(jffs2_upper()))
        );
        let want: Vec<u64> = (0..BLOCKS).rev().collect();
        assert_eq!(erased_blocks(&sys), want);
    }

    #[test]
    fn erase_deadline_leaves_the_marker_and_says_how_far() {
        let dir = TempDir::new("prep-deadline");
        let mut img = blank();
        img[..4].copy_from_slice(&FORMAT_MARKER);
        let (sys, root, loc) = nor(&dir, &img);
        let opts = Options {
            erase_deadline: Some(Duration::from_millis(8)),
            ..Options::default()
        };
        let got = prepare(&sys, &root, loc, opts).unwrap();
        assert_eq!(
            got,
            Prepared::EraseUnfinished {
                dev: "/dev/mtd1".into(),
                remaining_blocks: 25,
                percent: 21,
                upper: jffs2_upper(),
            }
        );
        assert!(!erased_blocks(&sys).contains(&0));
    }

    #[test]
    fn unknown_data_is_never_erased() {
        let dir = TempDir::new("prep-unknown");
        let mut img = blank();
        img[..4].copy_from_slice(b"hsqs");
        let (sys, root, loc) = nor(&dir, &img);
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Err("rootfs_data holds unrecognised data; not erasing it (overlay-reset --format reclaims it)".into())
        );
        assert_eq!(sys.calls(), []);
    }

    #[test]
    fn erase_failure_is_the_reason() {
        let dir = TempDir::new("prep-erase-fail");
        let mut img = blank();
        img[..4].copy_from_slice(&FORMAT_MARKER);
        let (sys, root, loc) = nor(&dir, &img);
        sys.fail_when(5, |c| matches!(c, Call::MtdErase { .. }));
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Err(format!(
                "cannot erase /dev/mtd1 at 0x1f0000: {}",
                std::io::Error::from_raw_os_error(5)
            ))
        );
    }

    /// The fake plays the kernel's attach: sysfs ubi0 (with `volumes`) and /dev/ubi0.
    fn kernel_attaches(sys: &FakeSys, dir: &TempDir, volumes: &'static [(&'static str, u32, u64)]) {
        let base = dir.path().to_path_buf();
        sys.on_call(move |c| {
            if let Call::UbiAttach { mtd, .. } = c {
                fixture_ubi(&base, 0, *mtd, 240, volumes);
                std::fs::write(base.join("dev/ubi0"), "").unwrap();
            }
        });
    }

    #[test]
    fn ubi_on_mtd_is_attached_and_gets_a_volume() {
        let dir = TempDir::new("prep-attach");
        let mut img = blank();
        for b in 0..BLOCKS {
            img[(b * ES) as usize..(b * ES) as usize + 4].copy_from_slice(b"UBI#");
        }
        let (sys, root, loc) = nor(&dir, &img);
        sys.ubi_vol_id.set(0);
        kernel_attaches(&sys, &dir, &[]);
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Ok(Prepared::Ready(FlashUpper {
                source: "ubi0:rootfs_data".into(),
                fstype: "ubifs"
            }))
        );
        assert_eq!(
            sys.calls(),
            [
                Call::UbiAttach {
                    ctrl: "/dev/ubi_ctrl".into(),
                    mtd: 1
                },
                Call::UbiMkvol {
                    dev: "/dev/ubi0".into(),
                    name: "rootfs_data".into(),
                    bytes: 240 * 262016
                },
            ]
        );
    }

    #[test]
    fn ubi_on_mtd_with_the_volume_is_mounted_after_attaching() {
        let dir = TempDir::new("prep-attach-vol");
        let mut img = blank();
        img[..4].copy_from_slice(b"UBI#");
        let (sys, root, loc) = nor(&dir, &img);
        kernel_attaches(&sys, &dir, &[("rootfs_data", 0, 200)]);
        let mut ubifs_head = vec![0xFF; 4096];
        ubifs_head[..4].copy_from_slice(&0x0610_1831u32.to_le_bytes());
        dir.write("dev/ubi0_0", &ubifs_head);
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Ok(ubifs("ubi0:rootfs_data".into()))
        );
        assert!(!sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::UbiMkvol { .. })));
    }

    #[test]
    fn attach_failure_is_the_reason() {
        let dir = TempDir::new("prep-attach-fail");
        let mut img = blank();
        img[..4].copy_from_slice(b"UBI#");
        let (sys, root, loc) = nor(&dir, &img);
        sys.fail_when(19, |c| matches!(c, Call::UbiAttach { .. }));
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Err(format!(
                "cannot attach mtd1 to UBI through /dev/ubi_ctrl: {}",
                std::io::Error::from_raw_os_error(19)
            ))
        );
    }

    #[test]
    fn attached_but_missing_from_sysfs() {
        let dir = TempDir::new("prep-attach-nosys");
        let mut img = blank();
        img[..4].copy_from_slice(b"UBI#");
        let (sys, root, loc) = nor(&dir, &img);
        let p = dir.path().join("dev/ubi0");
        sys.on_call(move |c| {
            if matches!(c, Call::UbiAttach { .. }) {
                std::fs::write(&p, "").unwrap();
            }
        });
        let err = prepare(&sys, &root, loc, Options::default()).unwrap_err();
        assert!(err.contains("/sys/class/ubi/ubi0 is missing"), "{err}");
    }

    /// What a power cut in UBIFS's own first format leaves (its LEB
    /// properties tree mapped, no superblock; or a superblock and no master
    /// node): UBIFS would neither mount it nor format it again, so every LEB
    /// is unmapped first.
    #[test]
    fn a_volume_whose_ubifs_format_was_cut_is_cleared_then_mounted() {
        const LEB: usize = 262016;
        for superblock in [false, true] {
            let dir = TempDir::new("prep-cut-format");
            fixture_ubi(dir.path(), 0, 4, 0, &[("rootfs_data", 1, 20)]);
            let mut img = vec![0xFF; 6 * LEB];
            img[5 * LEB..5 * LEB + 8].copy_from_slice(b"LPT.LPT.");
            if superblock {
                img[..4].copy_from_slice(&ubi::UBIFS_NODE_MAGIC.to_le_bytes());
            }
            dir.write("dev/ubi0_1", &img);
            let root = SysRoot::new(dir.path());
            let (ubis, _) = ubi::read_ubi_devices(&root);
            let loc = FlashLocation::UbiVolume {
                device: ubis[0].clone(),
                volume: ubis[0].volumes[0].clone(),
            };
            let sys = FakeSys::default();
            assert_eq!(
                prepare(&sys, &root, loc, Options::default()),
                Ok(ubifs("ubi0:rootfs_data".into())),
                "superblock: {superblock}"
            );
            let want: Vec<Call> = (0..20)
                .map(|lnum| Call::UbiLebUnmap {
                    vol: "/dev/ubi0_1".into(),
                    lnum,
                })
                .collect();
            assert_eq!(sys.calls(), want);
        }
    }

    #[test]
    fn existing_volume_with_foreign_data_is_left_alone() {
        let dir = TempDir::new("prep-foreign");
        fixture_ubi(dir.path(), 0, 4, 0, &[("rootfs_data", 1, 100)]);
        dir.write("dev/ubi0_1", b"hsqs....");
        let root = SysRoot::new(dir.path());
        let (ubis, _) = ubi::read_ubi_devices(&root);
        let loc = FlashLocation::UbiVolume {
            device: ubis[0].clone(),
            volume: ubis[0].volumes[0].clone(),
        };
        let sys = FakeSys::default();
        assert_eq!(
            prepare(&sys, &root, loc, Options::default()),
            Err("ubi0:rootfs_data holds data that is not UBIFS; left untouched".into())
        );
        assert_eq!(sys.calls(), []);
    }
}
