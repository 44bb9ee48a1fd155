//! The raw-flash backend against a real kernel: the real [`LinuxSys`] ioctls
//! on a real MTD partition. Ignored on the host; `qemu/flash-guest-test.sh`
//! boots a kernel with CFI NOR flash partitioned
//! `mtdparts=0.flash:64M(fw)ro,16M(rootfs)ro,-(rootfs_data)` (rootfs_data
//! erased), with this test binary as /init, and runs only this test.
//!
//! It destroys whatever `rootfs_data` holds: it refuses to run unless it is
//! PID 1 (in the guest), so `cargo test -- --ignored` on a host cannot
//! touch a real flash.

use super::jffs2::{self, RawKind, FORMAT_MARKER};
use super::mtd::{self, EraseOutcome, MtdInfo, MtdKind};
use super::ubi::{self, VolumeContent};
use crate::backend::{
    self, Content, Inventory, Location, MountSpec, PrepareEnv, Prepared, Tools, Wanted,
};
use crate::paths::SysRoot;
use crate::plan::{Action, Step};
use crate::sys::linux::LinuxSys;
use crate::sys::{FlashIo, MountFlags, Sys};
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

fn location(m: &MtdInfo) -> Location {
    Location::Mtd {
        mtd: m.clone(),
        volume: "rootfs_data".into(),
    }
}

/// What the backend table finds for `rootfs_data`, what it holds, and what
/// preparing it takes.
fn prepared(sys: &LinuxSys, root: &SysRoot, loc: Option<Location>) -> (Location, Prepared) {
    let loc = loc.unwrap_or_else(|| {
        backend::locate(&Wanted::Named("rootfs_data".into()), &Inventory::read(root)).unwrap()
    });
    let b = backend::backend_of(&loc);
    let content = b.probe(sys, root, &loc).unwrap();
    let tools = Tools::default();
    let env = PrepareEnv {
        fstype: crate::config::FsChoice::Auto,
        tools: &tools,
        erase_budget: Duration::from_secs(5),
    };
    let p = b.prepare(&loc, &content, &env).unwrap();
    println!("flash-guest: {} holds {content:?}: {p:?}", loc.describe());
    (loc, p)
}

fn mount_of(p: &Prepared) -> &MountSpec {
    match p {
        Prepared::Ready { mount, .. } => mount,
        Prepared::Attach { .. } => panic!("{p:?}"),
    }
}

/// Runs the preparation steps with the flash primitives, as the boot's
/// executor does: those before the mount, or (`after_mount`) those after.
fn run_steps(sys: &LinuxSys, p: &Prepared, after_mount: bool) {
    let Prepared::Ready { steps, .. } = p else {
        panic!("{p:?}")
    };
    for s in steps
        .iter()
        .filter(|s| s.follows_the_mount() == after_mount)
    {
        match s {
            Step::MarkFormatting { ubi: n, id, to, .. }
            | Step::NameVolume { ubi: n, id, to, .. } => {
                ubi::rename_volume(sys, *n, *id, to).unwrap();
            }
            Step::Erase { mtd: n, .. } => {
                mtd::erase(
                    sys,
                    Path::new(&format!("/dev/mtd{n}")),
                    None,
                    None,
                    &mut |_, _| {},
                )
                .unwrap();
            }
            Step::CreateVolume {
                ubi: n,
                name,
                bytes,
            } => {
                ubi::make_volume(sys, *n, name, *bytes).unwrap();
            }
            Step::ClearVolume { vol, lebs, .. } => ubi::clear_volume(sys, vol, *lebs).unwrap(),
            other => panic!("not a raw-flash step: {other}"),
        }
    }
}

fn mount_and_write(sys: &LinuxSys, source: &str, fstype: &str) {
    let mnt = Path::new("/mnt");
    std::fs::create_dir_all(mnt).unwrap();
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
    let (_, p) = prepared(&sys, &root, Some(location(&m)));
    assert!(
        matches!(&p, Prepared::Ready { action: Action::EraseMount, steps, .. } if matches!(steps[..], [Step::Erase { .. }])),
        "{p:?}"
    );
    let got = mtd::erase(&sys, &dev, None, Some(Duration::ZERO), &mut |_, _| {}).unwrap();
    let EraseOutcome::Stopped {
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

    step("marker → the plan's erase erases it all → JFFS2 mounts, keeps a file");
    jffs2::write_format_marker(&sys, &dev).unwrap();
    let (_, p) = prepared(&sys, &root, Some(location(&m)));
    run_steps(&sys, &p, false);
    assert_eq!(mount_of(&p).source, "mtd:rootfs_data");
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
    let (_, p) = prepared(&sys, &root, Some(location(&m)));
    assert!(
        matches!(&p, Prepared::Ready { action: Action::Mount, steps, .. } if steps.is_empty()),
        "{p:?}"
    );

    step("erase; the table finds UBI headers: attach (UBI_IOCATT)");
    mtd::erase(&sys, &dev, None, None, &mut |_, _| {}).unwrap();
    // Blank, then UBI headers once UBI has attached it (it writes them).
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

    step("the search goes through the attached device: create the volume (UBI_IOCMKVOL) under its formatting name");
    let (loc, p) = prepared(&sys, &root, None);
    assert!(matches!(loc, Location::UbiDevice { .. }), "{loc:?}");
    assert_eq!(
        p,
        Prepared::Ready {
            action: Action::FormatMount,
            steps: vec![
                Step::CreateVolume {
                    ubi: num,
                    name: "rootfs_data.formatting".into(),
                    bytes: d.free_bytes()
                },
                Step::NameVolume {
                    ubi: num,
                    id: 0,
                    from: "rootfs_data.formatting".into(),
                    to: "rootfs_data".into()
                },
            ],
            // The volume's node, as fstools finds it in mountinfo (issue
            // 15): the first volume of an empty device is number 0.
            mount: MountSpec {
                source: format!("/dev/ubi{num}_0"),
                fstype: "ubifs",
                quiet_ro: "",
            },
            fresh: true,
        }
    );
    run_steps(&sys, &p, false);
    let (ubis, _) = ubi::read_ubi_devices(&root);
    let d2 = ubis.iter().find(|x| x.num == num).unwrap();
    let v = d2.volume("rootfs_data.formatting").unwrap().clone();
    println!("flash-guest: {v:?}");
    assert!(v.dynamic && !v.corrupted && !v.upd_marker);
    assert_eq!(v.reserved_ebs, d.avail_ebs);
    assert_eq!(d2.avail_ebs, 0);

    step("a cut now: the next search finds the format to finish");
    assert!(super::wait_for_node(
        &sys,
        &root,
        &v.node(),
        Duration::from_secs(5)
    ));
    let (loc, p) = prepared(&sys, &root, None);
    assert!(matches!(loc, Location::UbiFormatting { .. }), "{loc:?}");
    assert!(
        matches!(&p, Prepared::Ready { action: Action::FormatMount, steps, .. } if matches!(steps[..], [Step::ClearVolume { .. }, Step::NameVolume { .. }])),
        "{p:?}"
    );

    step("UBIFS formats the empty volume at its first mount; renamed while mounted (UBI_IOCRNVOL); keeps a file");
    run_steps(&sys, &p, false);
    let mnt = Path::new("/mnt");
    std::fs::create_dir_all(mnt).unwrap();
    sys.mount(&mount_of(&p).source, mnt, "ubifs", MountFlags::NONE, "")
        .unwrap();
    run_steps(&sys, &p, true);
    let named = || {
        let (ubis, _) = ubi::read_ubi_devices(&root);
        let d = ubis.iter().find(|x| x.num == num).unwrap().clone();
        d.volumes.iter().map(|v| v.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(named(), ["rootfs_data"]);
    std::fs::write(mnt.join("hello"), "from the guest test\n").unwrap();
    sys.sync();
    sys.unmount(mnt, false).unwrap();
    let v = v.clone();
    assert_eq!(
        ubi::read_volume_content(&root, &v).unwrap(),
        VolumeContent::Ubifs
    );
    let (_, p) = prepared(&sys, &root, None);
    assert!(
        matches!(&p, Prepared::Ready { action: Action::Mount, steps, .. } if steps.is_empty()),
        "{p:?}"
    );
    mount_and_write(&sys, &mount_of(&p).source, "ubifs");

    step("emptied (overlay-reset --format): named for the format, formatted, named back");
    ubi::clear_volume(&sys, &v.node(), v.reserved_ebs).unwrap();
    assert_eq!(
        ubi::read_volume_content(&root, &v).unwrap(),
        VolumeContent::Empty
    );
    let (_, p) = prepared(&sys, &root, None);
    assert!(
        matches!(&p, Prepared::Ready { action: Action::FormatMount, steps, .. } if matches!(steps[..], [Step::MarkFormatting { .. }, Step::ClearVolume { .. }, Step::NameVolume { .. }])),
        "{p:?}"
    );
    run_steps(&sys, &p, false);
    assert_eq!(named(), ["rootfs_data.formatting"]);
    sys.mount(&mount_of(&p).source, mnt, "ubifs", MountFlags::NONE, "")
        .unwrap();
    run_steps(&sys, &p, true);
    sys.unmount(mnt, false).unwrap();
    assert_eq!(named(), ["rootfs_data"]);
    assert_eq!(
        ubi::read_volume_content(&root, &v).unwrap(),
        VolumeContent::Ubifs
    );
    let _ = Content::NoVolume;
    step("all steps passed");
}
