//! The raw-flash backend against a real kernel: the real [`LinuxSys`] ioctls
//! on a real MTD partition. Ignored on the host; `qemu/flash-guest-test.sh`
//! boots a kernel with CFI NOR flash partitioned
//! `mtdparts=0.flash:64M(fw)ro,16M(rootfs)ro,-(rootfs_data)` (rootfs_data
//! erased), with this test binary as /init, and runs only this test.
//!
//! It destroys whatever `rootfs_data` holds: it refuses to run unless it is
//! PID 1 (in the guest), so `cargo test -- --ignored` on a host cannot
//! touch a real flash.

use super::decide::FlashAction;
use super::jffs2::{self, RawKind, FORMAT_MARKER};
use super::locate::{self, DataLocation, FlashLocation};
use super::mtd::{self, EraseOutcome, MtdInfo, MtdKind};
use super::prepare::{self, FlashUpper, Options, Prepared};
use super::ubi::{self, VolumeContent};
use crate::paths::SysRoot;
use crate::sys::linux::LinuxSys;
use crate::sys::{MountFlags, Sys};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

fn step(what: &str) {
    println!("flash-guest: {what}");
}

fn head(dev: &Path, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

fn data_partition(root: &SysRoot) -> MtdInfo {
    let (mtds, notes) = mtd::read_mtd_devices(root);
    assert!(notes.is_empty(), "{notes:?}");
    mtd::find_by_name(&mtds, "rootfs_data").unwrap().clone()
}

fn location(m: &MtdInfo) -> FlashLocation {
    FlashLocation::Mtd {
        mtd: m.clone(),
        volume: "rootfs_data".into(),
    }
}

fn mount_and_write(sys: &LinuxSys, source: &str, fstype: &str) {
    let mnt = Path::new("/mnt");
    sys.mkdir(mnt, 0o755).unwrap();
    sys.mount(source, mnt, fstype, MountFlags::NONE, "")
        .unwrap();
    std::fs::write(mnt.join("hello"), "from the guest test\n").unwrap();
    sys.sync();
    assert_eq!(
        std::fs::read_to_string(mnt.join("hello")).unwrap(),
        "from the guest test\n"
    );
    sys.unmount(mnt, false).unwrap();
}

#[test]
#[ignore = "destroys a real MTD partition: run by qemu/flash-guest-test.sh in a QEMU guest"]
fn raw_flash_on_a_real_kernel() {
    assert!(
        rustix::process::getpid().is_init(),
        "only as /init of the QEMU guest (qemu/flash-guest-test.sh)"
    );
    let sys = LinuxSys;
    let root = SysRoot::host();
    for (src, dir, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        sys.mkdir(Path::new(dir), 0o755).unwrap();
        sys.mount(src, Path::new(dir), fs, MountFlags::NONE, "")
            .unwrap();
    }

    step("MTD discovery: sysfs and /proc/mtd agree");
    let m = data_partition(&root);
    println!("flash-guest: {m:?}");
    assert_eq!(m.kind, MtdKind::Nor);
    assert_eq!((m.erasesize, m.writesize), (256 << 10, Some(1)));
    assert!(!m.read_only);
    let proc = std::fs::read_to_string("/proc/mtd").unwrap();
    let (from_proc, notes) = mtd::parse_proc_mtd(&proc);
    assert!(notes.is_empty(), "{notes:?}");
    let p = mtd::find_by_name(&from_proc, "rootfs_data").unwrap();
    assert_eq!(
        (p.index, p.size, p.erasesize),
        (m.index, m.size, m.erasesize)
    );
    let dev = m.node();

    step("MEMGETINFO and MEMGETBADBLOCK on NOR");
    let g = sys.mtd_geometry(&dev).unwrap();
    println!("flash-guest: {g:?}");
    assert_eq!(
        (g.kind, g.size, g.erasesize, g.writesize),
        (3, m.size, m.erasesize, 1)
    );
    assert!(g.writeable && !g.has_bad_blocks());
    assert!(!sys.mtd_is_bad(&dev, 0).unwrap());
    assert!(!sys
        .mtd_is_bad(&dev, m.size - u64::from(m.erasesize))
        .unwrap());

    step("a read-only partition is refused before any erase");
    let (mtds, _) = mtd::read_mtd_devices(&root);
    let fw = mtd::find_by_name(&mtds, "fw").unwrap();
    assert!(fw.read_only);
    assert!(!sys.mtd_geometry(&fw.node()).unwrap().writeable);
    assert!(matches!(
        mtd::erase(&sys, &fw.node(), None, None, &mut |_, _| {}),
        Err(super::FlashError::ReadOnly { .. })
    ));

    step("erased flash is blank and mounts as JFFS2 without an erase");
    assert_eq!(jffs2::read_kind(&sys, &root, &m).unwrap(), RawKind::Blank);

    step("the format marker (MEMERASE of block 0, then write)");
    jffs2::write_format_marker(&sys, &dev).unwrap();
    let h = head(&dev, 8);
    assert_eq!(h[..4], FORMAT_MARKER);
    assert_eq!(h[4..], [0xFF; 4]);
    assert_eq!(
        jffs2::read_kind(&sys, &root, &m).unwrap(),
        RawKind::FormatMarker
    );

    step("an erase past its deadline keeps the marker and resumes");
    let got = prepare::prepare(
        &sys,
        &root,
        location(&m),
        Options {
            erase_deadline: Some(Duration::ZERO),
            ..Options::default()
        },
    )
    .unwrap();
    let Prepared::EraseUnfinished {
        remaining_blocks, ..
    } = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(remaining_blocks, m.blocks());
    assert_eq!(head(&dev, 4), FORMAT_MARKER);
    let mut calls = 0;
    let out = mtd::erase(&sys, &dev, Some(remaining_blocks), None, &mut |_, _| {
        calls += 1
    })
    .unwrap();
    assert_eq!(
        out,
        EraseOutcome::Done {
            erased: m.blocks(),
            bad: 0
        }
    );
    assert_eq!(calls, m.blocks());
    assert_eq!(jffs2::read_kind(&sys, &root, &m).unwrap(), RawKind::Blank);

    step("marker → prepare erases it all → JFFS2 mounts, keeps a file");
    jffs2::write_format_marker(&sys, &dev).unwrap();
    let jffs2_upper = FlashUpper {
        source: "mtd:rootfs_data".into(),
        fstype: "jffs2",
    };
    assert_eq!(
        prepare::prepare(&sys, &root, location(&m), Options::default()),
        Ok(Prepared::Ready(jffs2_upper.clone()))
    );
    assert_eq!(head(&dev, 4), [0xFF; 4]);
    mount_and_write(&sys, "mtd:rootfs_data", "jffs2");
    // A young JFFS2 on NOR writes its few nodes into whichever block it
    // picked and erases the rest lazily: the samples may all still read
    // 0xFF. Blank and Jffs2 lead to the same mount, so either is right.
    let k = jffs2::read_kind(&sys, &root, &m).unwrap();
    println!(
        "flash-guest: after JFFS2: {k:?}, head {:02x?}",
        head(&dev, 16)
    );
    assert!(matches!(k, RawKind::Jffs2 | RawKind::Blank), "{k:?}");
    assert_eq!(
        prepare::prepare(&sys, &root, location(&m), Options::default()),
        Ok(Prepared::Ready(jffs2_upper))
    );

    step("erase, attach to UBI (UBI_IOCATT), create the volume (UBI_IOCMKVOL)");
    mtd::erase(&sys, &dev, None, None, &mut |_, _| {}).unwrap();
    let num = ubi::attach(&sys, &root, m.index, Duration::from_secs(5)).unwrap();
    let (ubis, notes) = ubi::read_ubi_devices(&root);
    assert!(notes.is_empty(), "{notes:?}");
    let d = ubis.iter().find(|d| d.num == num).unwrap().clone();
    println!("flash-guest: {d:?}");
    assert_eq!(d.mtd_num, m.index);
    assert_eq!(d.leb_size, 262_016, "PEB 256 KiB minus two 64-byte headers");
    assert!(d.volumes.is_empty());
    let k = jffs2::read_kind(&sys, &root, &m).unwrap();
    println!(
        "flash-guest: after attach: {k:?}, head {:02x?}",
        head(&dev, 8)
    );
    assert_eq!(k, RawKind::Ubi);
    // The search now goes through the attached device, and creates the volume.
    let (mtds, _) = mtd::read_mtd_devices(&root);
    let DataLocation::Flash(loc @ FlashLocation::UbiDevice { .. }) =
        locate::locate_named("rootfs_data", &mtds, &ubis)
    else {
        panic!("not the UBI device")
    };
    let probed = prepare::probe(&sys, &root, &loc).unwrap();
    assert_eq!(
        super::decide::decide(&loc, &probed),
        FlashAction::CreateVolume {
            ubi: num,
            name: "rootfs_data".into(),
            bytes: d.free_bytes()
        }
    );
    let ubifs_upper = FlashUpper {
        source: format!("ubi{num}:rootfs_data"),
        fstype: "ubifs",
    };
    assert_eq!(
        prepare::prepare(&sys, &root, loc, Options::default()),
        Ok(Prepared::Ready(ubifs_upper.clone()))
    );
    let (ubis, _) = ubi::read_ubi_devices(&root);
    let d2 = ubis.iter().find(|x| x.num == num).unwrap();
    let v = d2.volume("rootfs_data").unwrap().clone();
    println!("flash-guest: {v:?}");
    assert!(v.dynamic && !v.corrupted && !v.upd_marker);
    assert_eq!(v.reserved_ebs, d.avail_ebs);
    assert_eq!(d2.avail_ebs, 0);

    step("UBIFS formats the empty volume at its first mount, keeps a file");
    assert!(super::wait_for_node(
        &sys,
        &root,
        &v.node(),
        Duration::from_secs(5)
    ));
    assert_eq!(
        ubi::read_volume_content(&root, &v).unwrap(),
        VolumeContent::Empty
    );
    mount_and_write(&sys, &ubifs_upper.source, "ubifs");
    assert_eq!(
        ubi::read_volume_content(&root, &v).unwrap(),
        VolumeContent::Ubifs
    );
    let (mtds, _) = mtd::read_mtd_devices(&root);
    let DataLocation::Flash(loc) = locate::locate_named("rootfs_data", &mtds, &ubis) else {
        panic!("no flash location")
    };
    assert_eq!(
        prepare::prepare(&sys, &root, loc, Options::default()),
        Ok(Prepared::Ready(ubifs_upper))
    );
    step("all steps passed");
}
