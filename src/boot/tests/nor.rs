//! The executor on raw flash, in pivot mode (the NOR board's way): a
//! fixture tree holds sysfs (mtd2 "rootfs_data", and UBI once attached),
//! /dev/mtd2's bytes and the root; the fake Sys plays the kernel's MTD and
//! UBI ioctls.

use super::super::*;
use crate::flash::jffs2::{FORMAT_MARKER, JFFS2_MAGIC};
use crate::flash::ubi::tests::fixture_ubi;
use crate::flash::ubi::UBIFS_NODE_MAGIC;
use crate::sys::fake::{Call, FakeSys};
use crate::sys::MtdGeometry;
use crate::testutil::TempDir;
use std::os::unix::fs::PermissionsExt;

const ES: u64 = 256 << 10;
const BLOCKS: u64 = 32;
const DATA: &str = "/run/overlay-init/overlay";

struct Nor {
    dir: TempDir,
    sys: FakeSys,
}

impl Nor {
    /// mtd2 `rootfs_data` holding `img`, an executable /sbin/init in the
    /// root and in the merged root.
    fn new(cmdline: &str, img: &[u8]) -> Nor {
        let dir = TempDir::new("nor");
        dir.write("proc/cmdline", format!("root=/dev/mtdblock1 {cmdline}\n"));
        dir.write("proc/filesystems", "nodev\toverlay\n\tjffs2\n\tubifs\n");
        for (k, v) in [
            ("name", "rootfs_data"),
            ("size", &(BLOCKS * ES).to_string()),
            ("erasesize", &ES.to_string()),
            ("writesize", "1"),
            ("type", "nor"),
            ("flags", "0xc00"),
        ] {
            dir.write(&format!("sys/class/mtd/mtd2/{k}"), format!("{v}\n"));
        }
        dir.write("dev/mtd2", img);
        for p in ["sbin/init", "run/overlay-init/root/sbin/init"] {
            let f = dir.write(p, b"\x7fELF");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join(DATA.trim_start_matches('/'))).unwrap();
        let sys = FakeSys::default();
        sys.root_magic.set(0x7371_7368); // squashfs: started as init= (pivot mode)
        sys.mtd_geometry.borrow_mut().push((
            "/dev/mtd2".into(),
            MtdGeometry {
                kind: 3,
                writeable: true,
                size: BLOCKS * ES,
                erasesize: ES as u32,
                writesize: 1,
            },
        ));
        Nor { dir, sys }
    }

    fn boot(&self) -> Boot<'_> {
        let mut b = Boot::new(&self.sys, SysRoot::new(self.dir.path()), Mode::Pivot);
        b.read_config();
        b.mount_lowers().unwrap();
        b.setup_upper();
        b
    }

    /// The fake plays the kernel's attach: sysfs ubi0 on mtd2 (with
    /// `volumes`) and /dev/ubi0.
    fn kernel_attaches(&self, avail: u64, volumes: &'static [(&'static str, u32, u64)]) {
        let base = self.dir.path().to_path_buf();
        self.sys.on_call(move |c| {
            if let Call::UbiAttach { mtd, .. } = c {
                fixture_ubi(&base, 0, *mtd, avail, volumes);
                std::fs::write(base.join("dev/ubi0"), "").unwrap();
            }
        });
    }
}

fn blank() -> Vec<u8> {
    vec![0xFF; (BLOCKS * ES) as usize]
}

fn ubi_image() -> Vec<u8> {
    let mut img = blank();
    for b in 0..BLOCKS {
        img[(b * ES) as usize..(b * ES) as usize + 4].copy_from_slice(b"UBI#");
    }
    img
}

fn reason(b: &Boot) -> String {
    match &b.state.upper {
        Upper::Tmpfs {
            reason: Some(r), ..
        } => r.clone(),
        other => panic!("expected a RAM upper with a reason, got {other:?}"),
    }
}

fn erased(sys: &FakeSys) -> Vec<u64> {
    sys.calls()
        .iter()
        .filter_map(|c| match c {
            Call::MtdErase { offset, .. } => Some(offset / ES),
            _ => None,
        })
        .collect()
}

fn flash_writes(sys: &FakeSys) -> Vec<Call> {
    sys.calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Call::MtdErase { .. }
                    | Call::MtdWrite { .. }
                    | Call::UbiMkvol { .. }
                    | Call::UbiLebUnmap { .. }
                    | Call::Remount(_)
            ) || matches!(c, Call::Mount { flags, fstype, .. } if !flags.readonly && (fstype == "jffs2" || fstype == "ubifs"))
        })
        .collect()
}

#[test]
fn blank_nor_mounts_as_jffs2_read_only_first_then_read_write() {
    let n = Nor::new("", &blank());
    let b = n.boot();
    assert_eq!(
        b.state.upper,
        Upper::Flash {
            device: "mtd:rootfs_data".into(),
            fstype: "jffs2".into()
        }
    );
    assert!(erased(&n.sys).is_empty(), "blank flash is not erased");
    let c = n.sys.calls();
    let ro = c
        .iter()
        .position(|x| matches!(x, Call::Mount { source, flags, .. } if source == "mtd:rootfs_data" && flags.readonly))
        .unwrap();
    let rw = c
        .iter()
        .position(|x| *x == Call::Remount(DATA.into()))
        .unwrap();
    assert!(ro < rw, "read-only first: {c:?}");
}

#[test]
fn a_marker_erases_every_block_the_marker_last() {
    let mut img = blank();
    img[..4].copy_from_slice(&FORMAT_MARKER);
    // Old JFFS2 behind the marker, as sysupgrade leaves it.
    img[(5 * ES) as usize..(5 * ES) as usize + 2].copy_from_slice(&JFFS2_MAGIC.to_ne_bytes());
    let n = Nor::new("", &img);
    let b = n.boot();
    assert!(
        matches!(b.state.upper, Upper::Flash { .. }),
        "{:?}",
        b.state.upper
    );
    let want: Vec<u64> = (0..BLOCKS).rev().collect();
    assert_eq!(erased(&n.sys), want);
    // Made at this boot: mounted read-write at once, nothing to read first.
    assert!(n.sys.calls().iter().any(|c| matches!(c, Call::Mount { source, flags, .. } if source == "mtd:rootfs_data" && !flags.readonly)));
}

#[test]
fn an_erase_past_its_budget_leaves_the_marker_and_boots_on_ram() {
    let mut img = blank();
    img[..4].copy_from_slice(&FORMAT_MARKER);
    let n = Nor::new("", &img);
    // 400 ms a block: the 5 s budget covers about 12 of the 32.
    n.sys.erase_time.set(Duration::from_millis(400));
    let b = n.boot();
    let r = reason(&b);
    assert!(
        r.starts_with("formatting mtd2 (rootfs_data): ")
            && r.contains("% erased in 5 s; the rest is erased in the background"),
        "{r}"
    );
    // The background job (run inline by the fake) erases the rest, the
    // marker block last; the boot itself never erased block 0.
    let e = erased(&n.sys);
    let bg = n
        .sys
        .calls()
        .iter()
        .position(|c| *c == Call::Background)
        .unwrap();
    let before_bg = n.sys.calls()[..bg]
        .iter()
        .filter(|c| matches!(c, Call::MtdErase { offset: 0, .. }))
        .count();
    assert_eq!(before_bg, 0, "{e:?}");
    assert_eq!(e.last(), Some(&0));
}

#[test]
fn unknown_data_is_never_erased() {
    let mut img = blank();
    img[..4].copy_from_slice(b"hsqs");
    let n = Nor::new("", &img);
    let b = n.boot();
    assert_eq!(
        reason(&b),
        "rootfs_data holds unrecognised data; not erasing it (overlay-reset --format reclaims it)"
    );
    assert_eq!(flash_writes(&n.sys), []);
}

#[test]
fn an_erase_failure_is_the_reason() {
    let mut img = blank();
    img[..4].copy_from_slice(&FORMAT_MARKER);
    let n = Nor::new("", &img);
    n.sys.fail_when(5, |c| matches!(c, Call::MtdErase { .. }));
    let b = n.boot();
    assert_eq!(
        reason(&b),
        format!(
            "cannot erase /dev/mtd2 at 0x7c0000: {}",
            std::io::Error::from_raw_os_error(5)
        )
    );
}

#[test]
fn ubi_on_mtd_is_attached_and_gets_a_volume() {
    let n = Nor::new("", &ubi_image());
    n.kernel_attaches(240, &[]);
    let b = n.boot();
    assert_eq!(
        b.state.upper,
        Upper::Flash {
            device: "/dev/ubi0_0".into(),
            fstype: "ubifs".into()
        }
    );
    // Created under its formatting name, named after the mount that
    // formatted it.
    assert_eq!(
        ubi_calls(&n.sys),
        [
            "attach mtd2",
            "mkvol /dev/ubi0 rootfs_data.formatting 62883840",
            "mount /dev/ubi0_0",
            "rename /dev/ubi0 0 rootfs_data",
        ]
    );
}

/// The UBI calls and mounts of a boot, in order, short.
fn ubi_calls(sys: &FakeSys) -> Vec<String> {
    sys.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UbiAttach { mtd, .. } => Some(format!("attach mtd{mtd}")),
            Call::UbiMkvol { dev, name, bytes } => {
                Some(format!("mkvol {} {name} {bytes}", dev.display()))
            }
            Call::UbiRename { dev, vol_id, name } => {
                Some(format!("rename {} {vol_id} {name}", dev.display()))
            }
            Call::UbiLebUnmap { lnum, .. } if lnum > 0 => None,
            Call::UbiLebUnmap { vol, .. } => Some(format!("unmap {} 0..", vol.display())),
            Call::Mount { source, fstype, .. } if fstype == "ubifs" => {
                Some(format!("mount {source}"))
            }
            _ => None,
        })
        .collect()
}

/// The plan mounts `/dev/ubi0_0`, the id UBI gives the first volume; a
/// kernel that numbers it otherwise gets no mount of the wrong volume: the
/// boot runs on RAM, saying so, and the next boot finds the volume by name.
#[test]
fn a_new_volume_numbered_otherwise_is_not_mounted() {
    let n = Nor::new("", &ubi_image());
    n.kernel_attaches(240, &[]);
    n.sys.ubi_vol_id.set(3);
    let b = n.boot();
    assert_eq!(
        reason(&b),
        "cannot mount /dev/ubi0_0 (ubifs): UBI made the new volume rootfs_data.formatting /dev/ubi0_3; it is used from the next boot"
    );
    assert!(!n
        .sys
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "ubifs")));
}

#[test]
fn ubi_on_mtd_with_the_volume_is_mounted_after_attaching() {
    let n = Nor::new("", &ubi_image());
    n.kernel_attaches(0, &[("rootfs_data", 0, 200)]);
    let mut head = vec![0xFF; 3 * 262016];
    head[..4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    head[262016..262020].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    n.dir.write("dev/ubi0_0", &head);
    let b = n.boot();
    assert!(
        matches!(b.state.upper, Upper::Flash { .. }),
        "{:?}",
        b.state.upper
    );
    assert!(!n
        .sys
        .calls()
        .iter()
        .any(|c| matches!(c, Call::UbiMkvol { .. })));
}

#[test]
fn an_attach_failure_is_the_reason() {
    let n = Nor::new("", &ubi_image());
    n.sys.fail_when(19, |c| matches!(c, Call::UbiAttach { .. }));
    let b = n.boot();
    assert_eq!(
        reason(&b),
        format!(
            "cannot attach mtd2 to UBI through /dev/ubi_ctrl: {}",
            std::io::Error::from_raw_os_error(19)
        )
    );
}

#[test]
fn attached_but_missing_from_sysfs() {
    let n = Nor::new("", &ubi_image());
    let p = n.dir.path().join("dev/ubi0");
    n.sys.on_call(move |c| {
        if matches!(c, Call::UbiAttach { .. }) {
            std::fs::write(&p, "").unwrap();
        }
    });
    let b = n.boot();
    assert!(
        reason(&b).contains("/sys/class/ubi/ubi0 is missing"),
        "{}",
        reason(&b)
    );
}

/// What a power cut in UBIFS's own first format leaves (its LEB properties
/// tree mapped, no superblock; or a superblock and no master node): UBIFS
/// would neither mount it nor format it again, so every LEB is unmapped
/// first.
#[test]
fn a_volume_whose_ubifs_format_was_cut_is_cleared_then_mounted() {
    const LEB: usize = 262016;
    for superblock in [false, true] {
        let n = Nor::new("ubi.mtd=rootfs_data", &ubi_image());
        fixture_ubi(n.dir.path(), 0, 2, 0, &[("rootfs_data", 1, 20)]);
        let mut img = vec![0xFF; 6 * LEB];
        img[5 * LEB..5 * LEB + 8].copy_from_slice(b"LPT.LPT.");
        if superblock {
            img[..4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
        }
        n.dir.write("dev/ubi0_1", &img);
        let b = n.boot();
        assert!(
            matches!(b.state.upper, Upper::Flash { .. }),
            "{:?}",
            b.state.upper
        );
        let unmapped: Vec<u32> = n
            .sys
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::UbiLebUnmap { lnum, .. } => Some(*lnum),
                _ => None,
            })
            .collect();
        assert_eq!(
            unmapped,
            (0..20).collect::<Vec<_>>(),
            "superblock: {superblock}"
        );
        assert_eq!(
            ubi_calls(&n.sys),
            [
                "rename /dev/ubi0 1 rootfs_data.formatting",
                "unmap /dev/ubi0_1 0..",
                "mount /dev/ubi0_1",
                "rename /dev/ubi0 1 rootfs_data",
            ]
        );
    }
}

/// A volume under the formatting name (a power cut struck between its
/// creation and its naming) holds the pieces of a format, however far it
/// got: a superblock and a master node, here, which UBIFS would try to
/// mount and refuse for the log head it never wrote. It is cleared,
/// formatted and named.
#[test]
fn a_format_cut_before_the_volume_was_named_is_done_again() {
    const LEB: usize = 262016;
    let n = Nor::new("ubi.mtd=rootfs_data", &ubi_image());
    fixture_ubi(n.dir.path(), 0, 2, 0, &[("rootfs_data.formatting", 0, 20)]);
    let mut img = vec![0xFF; 3 * LEB];
    img[..4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    img[LEB..LEB + 4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    n.dir.write("dev/ubi0_0", &img);
    let b = n.boot();
    assert_eq!(
        b.state.upper,
        Upper::Flash {
            device: "/dev/ubi0_0".into(),
            fstype: "ubifs".into()
        }
    );
    assert_eq!(
        ubi_calls(&n.sys),
        [
            "unmap /dev/ubi0_0 0..",
            "mount /dev/ubi0_0",
            "rename /dev/ubi0 0 rootfs_data",
        ]
    );
}

#[test]
fn existing_volume_with_foreign_data_is_left_alone() {
    let n = Nor::new("", &ubi_image());
    fixture_ubi(n.dir.path(), 0, 2, 0, &[("rootfs_data", 1, 100)]);
    n.dir.write("dev/ubi0_1", b"hsqs....");
    let b = n.boot();
    assert_eq!(
        reason(&b),
        "ubi0:rootfs_data holds data that is not UBIFS; left untouched"
    );
    assert_eq!(flash_writes(&n.sys), []);
}

/// Issue 10, defect 1: pivot mode + protect. The flash is mounted at its
/// staging place and the overlay must name it there, not where it will be
/// after the switch.
#[test]
fn a_worn_ubi_volume_is_protected_in_pivot_mode() {
    let n = Nor::new("overlay.wear=pe_cycles:1", &ubi_image());
    fixture_ubi(n.dir.path(), 0, 2, 0, &[("rootfs_data", 1, 100)]);
    let mut vol = vec![0xFF; 3 * 262016];
    vol[..4].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    vol[262016..262020].copy_from_slice(&UBIFS_NODE_MAGIC.to_le_bytes());
    n.dir.write("dev/ubi0_1", &vol);
    let mut b = n.boot();
    assert!(
        reason(&b).starts_with("flash worn out: its data is shown read-only"),
        "{}",
        reason(&b)
    );
    b.assemble().unwrap();
    let opts = n.sys.calls().into_iter().find_map(|c| match c {
        Call::Mount { fstype, data, .. } if fstype == "overlay" => Some(data),
        _ => None,
    });
    assert_eq!(
        opts.as_deref(),
        Some("lowerdir=/run/overlay-init/overlay/upper:/,upperdir=/run/overlay-init/ram/upper,workdir=/run/overlay-init/ram/work")
    );
    assert_eq!(flash_writes(&n.sys), [], "protect writes nothing");
    b.switch().unwrap();
    assert_eq!(b.state.lowers[0].mountpoint, "/overlay/upper");
    assert_eq!(b.state.lowers[0].device, "/dev/ubi0_1");
}

/// UBI erase-count headers (count 5) on every block of the partition.
fn worn_ubi_image() -> Vec<u8> {
    let mut img = blank();
    let hdr = crate::wear::ubi_ec::encode_ec_header(&crate::wear::ubi_ec::EcHeader {
        version: 1,
        ec: 5,
        vid_hdr_offset: 64,
        data_offset: 128,
        image_seq: 1,
    });
    for b in 0..BLOCKS {
        let at = (b * ES) as usize;
        img[at..at + 64].copy_from_slice(&hdr);
    }
    img
}

/// Issue 10, defect 2: the raw flash is not written (not even attached,
/// erased or given a volume) before the wear policy is decided.
#[test]
fn a_worn_flash_under_the_tmpfs_policy_is_not_even_attached() {
    let mut marked = worn_ubi_image();
    marked[..4].copy_from_slice(&FORMAT_MARKER);
    for (what, img) in [("UBI", worn_ubi_image()), ("marked", marked)] {
        let n = Nor::new("overlay.wear=pe_cycles:1 overlay.wear_policy=tmpfs", &img);
        let b = n.boot();
        assert!(
            reason(&b).contains("overlay.wear_policy=tmpfs"),
            "{what}: {}",
            reason(&b)
        );
        assert!(
            !n.sys
                .calls()
                .iter()
                .any(|c| matches!(c, Call::UbiAttach { .. })),
            "{what}"
        );
        assert_eq!(flash_writes(&n.sys), [], "{what}");
    }
    // An attached device lacking the volume: no volume is created.
    let n = Nor::new(
        "overlay.wear=pe_cycles:1 overlay.wear_policy=tmpfs",
        &worn_ubi_image(),
    );
    fixture_ubi(n.dir.path(), 0, 2, 100, &[]);
    let b = n.boot();
    assert!(
        reason(&b).contains("overlay.wear_policy=tmpfs"),
        "{}",
        reason(&b)
    );
    assert_eq!(flash_writes(&n.sys), []);
}

/// A filesystem cut short in its own writes (a UBIFS log head, seen after a
/// cut in its first format) refuses a read-only mount: it recovers only
/// read-write, so that mount is retried read-write, and the boot stays on
/// flash.
#[test]
fn a_filesystem_that_recovers_only_read_write_is_mounted_read_write() {
    let n = Nor::new("", &blank());
    n.sys.fail_when(
        22,
        |c| matches!(c, Call::Mount { fstype, flags, .. } if fstype == "jffs2" && flags.readonly),
    );
    let b = n.boot();
    assert!(
        matches!(b.state.upper, Upper::Flash { .. }),
        "{:?}",
        b.state.upper
    );
    let mounts: Vec<bool> = n
        .sys
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Mount { fstype, flags, .. } if fstype == "jffs2" => Some(flags.readonly),
            _ => None,
        })
        .collect();
    assert_eq!(mounts, [true, false]);
}
