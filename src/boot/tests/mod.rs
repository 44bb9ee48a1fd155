//! Executor tests: a fixture tree stands in for /sys, /dev and the mounted
//! layers; the fake Sys records every call and injects failures.

use super::*;
use crate::probe::BLANK_HEAD_LEN;
use crate::reset::wipe::{Pending, ResetArea};
use crate::sys::fake::{Call, FakeSys};
use crate::testutil::TempDir;
use std::os::unix::fs::PermissionsExt;

const MIB: usize = 1 << 20;

/// A disk vda with GPT partitions rootfs (squashfs) and rootfs_data (content
/// given), an executable /sbin/init in the merged root, and mkfs/e2fsck in /rom.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(cmdline: &str, data: Option<Vec<u8>>) -> Fixture {
        let dir = TempDir::new("boot");
        dir.write("proc/cmdline", format!("{cmdline}\n"));
        dir.write(
            "proc/filesystems",
            "nodev\ttmpfs\n\tsquashfs\n\text4\nnodev\toverlay\n",
        );
        let mut parts = vec![("rootfs", b"hsqs".to_vec())];
        if let Some(d) = data {
            parts.push(("rootfs_data", d));
        }
        let disk = dir.path().join("sys/devices/virtio0/block/vda");
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::write(disk.join("uevent"), "DEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/virtio0/block/vda",
            dir.path().join("sys/class/block/vda"),
        )
        .unwrap();
        for (i, (name, content)) in parts.iter().enumerate() {
            let n = format!("vda{}", i + 1);
            let pdir = disk.join(&n);
            std::fs::create_dir_all(&pdir).unwrap();
            std::fs::write(
                pdir.join("uevent"),
                format!(
                    "DEVNAME={n}\nDEVTYPE=partition\nPARTN={}\nPARTNAME={name}\n",
                    i + 1
                ),
            )
            .unwrap();
            std::fs::write(pdir.join("size"), format!("{}\n", content.len() / 512)).unwrap();
            std::os::unix::fs::symlink(
                format!("../../devices/virtio0/block/vda/{n}"),
                dir.path().join(format!("sys/class/block/{n}")),
            )
            .unwrap();
            dir.write(&format!("dev/{n}"), content);
        }
        for d in ["rom/dev", "rom/proc", "rom/sys"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let f = Fixture { dir };
        f.exe("rom/sbin/mkfs.ext4", b"\x7fELF");
        f.exe("rom/sbin/e2fsck", b"\x7fELF");
        f.exe("newroot/sbin/init", b"\x7fELF");
        // The lower's own init (what the merged root shows unless the
        // upper shadows it).
        f.exe("rom/sbin/init", b"\x7fELF");
        f
    }

    fn exe(&self, rel: &str, content: &[u8]) {
        let p = self.dir.write(rel, content);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn boot<'a>(&self, sys: &'a FakeSys) -> Boot<'a> {
        let mut b = Boot::new(sys, SysRoot::new(self.dir.path()), Mode::Initramfs);
        b.read_config();
        b
    }

    /// Config, lowers and upper done: where most decisions have been taken.
    fn boot_to_upper<'a>(&self, sys: &'a FakeSys) -> Boot<'a> {
        let mut b = self.boot(sys);
        b.mount_lowers().unwrap();
        b.setup_upper();
        b
    }
}

fn ext4_image() -> Vec<u8> {
    let mut v = vec![0u8; 2 * MIB];
    v[1024 + 56] = 0x53;
    v[1024 + 57] = 0xEF;
    v
}

fn mounts(sys: &FakeSys) -> Vec<(String, String, String)> {
    sys.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Mount {
                source,
                target,
                fstype,
                ..
            } => Some((source, target.display().to_string(), fstype)),
            _ => None,
        })
        .collect()
}

fn runs(sys: &FakeSys) -> Vec<String> {
    sys.calls()
        .into_iter()
        .filter_map(|c| {
            if let Call::Run(c) = c {
                Some(c.to_string())
            } else {
                None
            }
        })
        .collect()
}

fn upper_reason(b: &Boot) -> String {
    match &b.state.upper {
        Upper::Tmpfs {
            reason: Some(r), ..
        } => r.clone(),
        other => panic!("expected a tmpfs fallback, got {other:?}"),
    }
}

const CMD: &str = "console=ttyAMA0 root=PARTLABEL=rootfs";

#[test]
fn blank_flash_is_formatted_with_the_lowers_mkfs_then_assembled() {
    let f = Fixture::new(CMD, Some(vec![0u8; 4 * MIB]));
    let sys = FakeSys::default();
    let mut b = f.boot_to_upper(&sys);
    b.assemble().unwrap();
    assert_eq!(
        b.state.upper,
        Upper::Flash {
            device: "/dev/vda2".into(),
            fstype: "ext4".into()
        }
    );
    assert_eq!(
        runs(&sys),
        ["chroot /rom /sbin/mkfs.ext4 -q -E nodiscard -F -L rootfs_data /dev/vda2"]
    );
    assert_eq!(
        mounts(&sys),
        [
            ("/dev/vda1".into(), "/rom".into(), "squashfs".into()),
            ("/dev/vda2".into(), "/overlay".into(), "ext4".into()),
            ("overlay".into(), "/newroot".into(), "overlay".into()),
        ]
    );
    let opts = sys.calls().into_iter().find_map(|c| match c {
        Call::Mount { fstype, data, .. } if fstype == "overlay" => Some(data),
        _ => None,
    });
    assert_eq!(
        opts.as_deref(),
        Some("lowerdir=/rom,upperdir=/overlay/upper,workdir=/overlay/work")
    );
    let bind = |d: &str| Call::MountBind {
        from: d.into(),
        to: format!("/rom{d}").into(),
    };
    let c = sys.calls();
    let mkfs = c.iter().position(|x| matches!(x, Call::Run(_))).unwrap();
    assert_eq!(
        c[mkfs - 3..mkfs],
        [bind("/dev"), bind("/proc"), bind("/sys")],
        "mkfs sees /dev, /proc, /sys"
    );
    // The binds into /rom are undone after mkfs.
    let unmounted: Vec<_> = sys
        .calls()
        .into_iter()
        .filter_map(|c| {
            if let Call::Unmount(p) = c {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        unmounted,
        [
            PathBuf::from("/rom/sys"),
            "/rom/proc".into(),
            "/rom/dev".into()
        ]
    );
}

#[test]
fn existing_ext4_is_checked_then_mounted() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert_eq!(runs(&sys), ["chroot /rom /sbin/e2fsck -p /dev/vda2"]);
    assert!(matches!(b.state.upper, Upper::Flash { .. }));
}

#[test]
fn a_cleanly_unmounted_ext4_is_mounted_without_starting_fsck() {
    let mut img = ext4_image();
    img[1024 + 0x3A] = 1; // s_state: EXT4_VALID_FS
    let f = Fixture::new(CMD, Some(img));
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert!(runs(&sys).is_empty(), "{:?}", runs(&sys));
    assert!(matches!(b.state.upper, Upper::Flash { .. }));
}

#[test]
fn unknown_data_is_never_touched() {
    let mut junk = vec![0u8; 4 * MIB];
    junk.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7 % 251) as u8);
    let f = Fixture::new(CMD, Some(junk));
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert!(
        upper_reason(&b).contains("neither ext4 nor f2fs nor blank; left untouched"),
        "{}",
        upper_reason(&b)
    );
    assert!(runs(&sys).is_empty(), "no mkfs, no fsck");
    assert!(
        !mounts(&sys).iter().any(|m| m.0 == "/dev/vda2"),
        "never mounted"
    );
    assert_eq!(
        mounts(&sys).last().unwrap(),
        &("tmpfs".into(), "/overlay".into(), "tmpfs".into())
    );
}

#[test]
fn a_blank_head_with_data_further_in_is_not_formatted() {
    let mut d = vec![0u8; 4 * MIB];
    d[BLANK_HEAD_LEN + 5] = 1;
    d[2 * MIB + 17] = 1;
    let f = Fixture::new(CMD, Some(d));
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert!(runs(&sys).is_empty());
    upper_reason(&b);
}

#[test]
fn missing_data_partition_falls_back_to_a_bounded_tmpfs() {
    let f = Fixture::new(&format!("{CMD} overlay.tmpfs_size=32m"), None);
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert_eq!(
        upper_reason(&b),
        "no data partition PARTLABEL=rootfs_data (waited 1000 ms)"
    );
    let tmpfs = sys.calls().into_iter().find_map(|c| match c {
        Call::Mount { fstype, data, .. } if fstype == "tmpfs" => Some(data),
        _ => None,
    });
    assert_eq!(tmpfs.as_deref(), Some("mode=0755,size=33554432"));
    assert!(b.ram_banner().iter().any(|l| l.contains("LOST at reboot")));
}

#[test]
fn a_raw_flash_data_spec_without_that_partition_runs_on_tmpfs_untouched() {
    let f = Fixture::new(
        &format!("{CMD} overlay.data=mtd:rootfs_data"),
        Some(ext4_image()),
    );
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    let reason = upper_reason(&b);
    assert!(
        reason.contains("rootfs_data") && reason.contains("waited 1000 ms"),
        "{reason}"
    );
    assert!(!sys.calls().iter().any(|c| matches!(
        c,
        Call::MtdErase { .. }
            | Call::MtdWrite { .. }
            | Call::UbiAttach { .. }
            | Call::UbiMkvol { .. }
    )));
}

#[test]
fn fsck_that_cannot_repair_leaves_the_flash_alone() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    let sys = FakeSys::default();
    sys.run_results.borrow_mut().push(4);
    let b = f.boot_to_upper(&sys);
    assert!(
        upper_reason(&b).contains("e2fsck -p could not repair it (exit 4"),
        "{}",
        upper_reason(&b)
    );
    assert!(!mounts(&sys).iter().any(|m| m.0 == "/dev/vda2"));
}

#[test]
fn blank_flash_without_mkfs_in_the_lower_runs_on_ram() {
    let f = Fixture::new(CMD, Some(vec![0xFFu8; 2 * MIB]));
    std::fs::remove_file(f.dir.path().join("rom/sbin/mkfs.ext4")).unwrap();
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert_eq!(
        upper_reason(&b),
        "/dev/vda2 is blank, and the lower root has no mkfs.ext4 to format it"
    );
}

#[test]
fn full_flash_work_dir_failure_unmounts_and_falls_back() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    let sys = FakeSys::default();
    // Only the flash is full: the tmpfs mounted after it has room.
    let first = std::cell::Cell::new(true);
    sys.fail_when(28, move |c| {
        matches!(c, Call::Mkdir(p) if p == Path::new("/overlay/work")) && first.replace(false)
    });
    let b = f.boot_to_upper(&sys);
    assert_eq!(
        upper_reason(&b),
        "cannot create /overlay/work: No space left on device (os error 28) on /dev/vda2"
    );
    assert!(sys.calls().contains(&Call::Unmount("/overlay".into())));
}

#[test]
fn read_only_overlay_on_flash_falls_back() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    // The kernel reports the overlay on flash read-only (only a flash upper is checked).
    let sys = FakeSys::default();
    sys.readonly.borrow_mut().push("/newroot".into());
    let mut b = f.boot_to_upper(&sys);
    b.assemble().unwrap();
    assert!(
        upper_reason(&b).starts_with("the kernel mounted the overlay read-only"),
        "{}",
        upper_reason(&b)
    );
    let overlays = mounts(&sys).iter().filter(|m| m.2 == "overlay").count();
    assert_eq!(overlays, 2, "mounted on flash, then again on tmpfs");
}

#[test]
fn an_upper_that_breaks_init_is_dropped_for_tmpfs() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    f.exe("newroot/sbin/init", b"garbage"); // as the flash upper shadows it
    let sys = FakeSys::default();
    let good_init = f.dir.path().join("newroot/sbin/init");
    // Remounting with a tmpfs upper shows the lower's init again.
    sys.fail_when(0, move |c| {
        if matches!(c, Call::Mount { fstype, .. } if fstype == "tmpfs") {
            std::fs::write(&good_init, b"\x7fELF").unwrap();
        }
        false
    });
    let mut b = f.boot_to_upper(&sys);
    b.assemble().unwrap();
    let r = upper_reason(&b);
    assert!(
        r.starts_with("the upper layer breaks the init: /sbin/init is neither an ELF"),
        "{r}"
    );
    let c = sys.calls();
    let un_newroot = c
        .iter()
        .position(|x| *x == Call::Unmount("/newroot".into()))
        .unwrap();
    let un_overlay = c
        .iter()
        .position(|x| *x == Call::Unmount("/overlay".into()))
        .unwrap();
    assert!(
        un_newroot < un_overlay,
        "overlay unmounted before its upper"
    );
}

#[test]
fn a_lower_without_init_is_fatal() {
    let f = Fixture::new(
        "root=PARTLABEL=rootfs overlay.data=tmpfs",
        Some(ext4_image()),
    );
    std::fs::remove_file(f.dir.path().join("newroot/sbin/init")).unwrap();
    let sys = FakeSys::default();
    let mut b = f.boot_to_upper(&sys);
    assert_eq!(
        b.state.upper,
        Upper::Tmpfs {
            reason: None,
            size: "25%".into()
        }
    );
    let e = b.assemble().unwrap_err();
    assert!(matches!(e, BootError::NoInit { .. }), "{e}");
    assert_eq!(e.to_string(), "no runnable init /sbin/init: does not exist");
}

#[test]
fn missing_root_is_fatal_after_the_bounded_wait() {
    let f = Fixture::new("root=PARTLABEL=nosuch rootwait=2", None);
    let sys = FakeSys::default();
    let mut b = f.boot(&sys);
    let e = b.mount_lowers().unwrap_err();
    assert_eq!(
        e.to_string(),
        "root device PARTLABEL=nosuch did not appear within 2 s"
    );
    let slept: Duration = sys
        .calls()
        .iter()
        .filter_map(|c| {
            if let Call::Sleep(d) = c {
                Some(*d)
            } else {
                None
            }
        })
        .sum();
    // The fake clock also ticks 1 ms per reading, so the sleeps add up to a bit under 2 s.
    assert!(
        slept > Duration::from_millis(1800) && slept <= Duration::from_secs(2),
        "{slept:?}"
    );
}

#[test]
fn no_root_spec_from_an_initramfs_is_fatal() {
    let f = Fixture::new("console=ttyAMA0", None);
    let sys = FakeSys::default();
    assert!(matches!(
        f.boot(&sys).mount_lowers(),
        Err(BootError::NoRootSpec)
    ));
}

#[test]
fn extra_lowers_stack_leftmost_first_root_last() {
    let f = Fixture::new(
        "root=/dev/vda1 overlay.lower=PARTLABEL=rootfs_data overlay.data=tmpfs",
        Some({
            let mut v = vec![0u8; MIB];
            v[..4].copy_from_slice(b"hsqs");
            v
        }),
    );
    let sys = FakeSys::default();
    let mut b = f.boot_to_upper(&sys);
    b.assemble().unwrap();
    let opts = sys.calls().into_iter().find_map(|c| match c {
        Call::Mount { fstype, data, .. } if fstype == "overlay" => Some(data),
        _ => None,
    });
    assert_eq!(
        opts.as_deref(),
        Some(
            "lowerdir=/run/overlay-init/lower/0:/rom,upperdir=/overlay/upper,workdir=/overlay/work"
        )
    );
}

#[test]
fn overlay_disabled_boots_the_lower_alone() {
    let f = Fixture::new(&format!("{CMD} overlayroot=disabled"), Some(ext4_image()));
    let sys = FakeSys::default();
    let mut b = f.boot_to_upper(&sys);
    b.assemble().unwrap();
    b.switch().unwrap();
    assert_eq!(b.state.upper, Upper::None { reason: None });
    assert!(sys.calls().contains(&Call::MountMove {
        from: "/rom".into(),
        to: "/newroot".into()
    }));
    assert!(!mounts(&sys)
        .iter()
        .any(|m| m.0 == "/dev/vda2" || m.2 == "overlay"));
    assert!(!sys.calls().contains(&Call::MountMove {
        from: "/overlay".into(),
        to: "/newroot/overlay".into()
    }));
}

#[test]
fn stages_are_timed_in_order() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    let sys = FakeSys::default();
    let mut b = f.boot(&sys);
    b.load_modules("6.1.0");
    b.mount_lowers().unwrap();
    b.setup_upper();
    b.assemble().unwrap();
    b.switch().unwrap();
    let names: Vec<&str> = b.state.stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["config", "modules", "lowers", "upper", "overlay", "switch"]
    );
}

#[test]
fn a_pending_reset_is_carried_out_before_the_upper_is_used() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    // The "mounted" data fs is the fixture's /overlay.
    f.dir.write("overlay/upper/etc/config/network", "net");
    f.dir.write("overlay/upper/.hidden/x", "x");
    f.dir.write("overlay/work/work/.keep", "");
    let data = f.dir.path().join("overlay");
    ResetArea::open(&data, true)
        .unwrap()
        .write_request(vec!["/etc/config/network".into()])
        .unwrap();
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert!(
        matches!(b.state.upper, Upper::Flash { .. }),
        "{:?}",
        b.state.upper
    );
    assert!(
        b.state
            .reset
            .as_deref()
            .unwrap()
            .starts_with("reset #1 done in"),
        "{:?}",
        b.state.reset
    );
    assert!(!data.join("upper/.hidden").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("upper/etc/config/network")).unwrap(),
        "net"
    );
    assert!(
        !ResetArea::open(&data, false).unwrap().has_trash(),
        "small trash deleted within the budget"
    );
    assert_eq!(
        ResetArea::open(&data, false).unwrap().pending().unwrap(),
        Pending::None
    );
}

#[test]
fn a_corrupt_reset_request_is_reported_and_nothing_is_wiped() {
    let f = Fixture::new(CMD, Some(ext4_image()));
    f.dir.write("overlay/upper/user-file", "mine");
    f.dir.write("overlay/.reset/request", "not a record");
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    assert!(matches!(b.state.upper, Upper::Flash { .. }));
    assert!(
        b.state
            .warnings
            .iter()
            .any(|w| w.starts_with("factory reset: the request record is unusable")),
        "{:?}",
        b.state.warnings
    );
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("overlay/upper/user-file")).unwrap(),
        "mine"
    );
}

#[test]
fn a_command_line_reset_uses_the_roots_keep_list() {
    let f = Fixture::new(
        &format!("{CMD} systemd.factory_reset=1"),
        Some(ext4_image()),
    );
    f.dir.write(
        "rom/etc/overlay-reset.keep",
        "# from the firmware\n/etc/keep-me\nrelative/bad\n",
    );
    f.dir.write("overlay/upper/etc/keep-me", "k");
    f.dir.write("overlay/upper/etc/drop-me", "d");
    let sys = FakeSys::default();
    let b = f.boot_to_upper(&sys);
    let data = f.dir.path().join("overlay");
    assert!(data.join("upper/etc/keep-me").exists());
    assert!(!data.join("upper/etc/drop-me").exists());
    assert!(
        b.state
            .warnings
            .iter()
            .any(|w| w.contains("relative/bad: not an absolute path")),
        "{:?}",
        b.state.warnings
    );
}

/// The plan matrix (plan/tests.rs) run through the executor with the fake
/// Sys: the calls that write the flash are exactly the plan's writes that go
/// through Sys, in order; a plan without writes makes none. (The reset and
/// the wear log write files on the mounted data filesystem directly, which
/// the host tests of reset/ and wear/ exercise on real directories.)
#[test]
fn the_executor_writes_what_the_plan_says_and_nothing_else() {
    use crate::plan::tests::{self as m, MODES, SITUATIONS, UPPERS};
    use crate::plan::Write;
    let mut cells = 0;
    for mode in MODES {
        for kind in UPPERS {
            for s in SITUATIONS {
                let cell = format!("{mode:?} × {kind:?} × {s:?}");
                let (plan, data) = m::whole(mode, kind, s);
                let sys_writes =
                    |steps: &mut dyn Iterator<Item = &crate::plan::Step>| -> Vec<&'static str> {
                        steps
                            .filter(|st| st.writes() != Write::None)
                            .filter_map(|st| match st {
                                crate::plan::Step::Mkfs { .. } => Some("mkfs"),
                                crate::plan::Step::Fsck { .. } => Some("fsck"),
                                crate::plan::Step::Mount { .. } => Some("mount-rw"),
                                crate::plan::Step::RemountRw { .. } => Some("remount-rw"),
                                crate::plan::Step::Erase { .. } => Some("erase"),
                                crate::plan::Step::CreateVolume { .. } => Some("mkvol"),
                                crate::plan::Step::ClearVolume { .. } => Some("clear"),
                                crate::plan::Step::UpperDirs { on_flash: true, .. } => Some("dirs"),
                                _ => None,
                            })
                            .collect()
                    };
                let want = sys_writes(&mut plan.upper.steps.iter().chain(&data));
                let dir = TempDir::new("matrix");
                let places = m::places(mode);
                let data_dir = dir
                    .path()
                    .join(places.data.at_boot.strip_prefix("/").unwrap());
                std::fs::create_dir_all(&data_dir).unwrap();
                // The data device (its tail takes a format's intent tag).
                std::fs::create_dir_all(dir.path().join("dev")).unwrap();
                std::fs::File::create(dir.path().join("dev/vda2"))
                    .unwrap()
                    .set_len(64 << 20)
                    .unwrap();
                if s == m::Situation::ResetPending {
                    ResetArea::open(&data_dir, true)
                        .unwrap()
                        .write_request(vec!["/etc/x".into()])
                        .unwrap();
                }
                let sys = FakeSys::default();
                sys.mtd_geometry.borrow_mut().push((
                    "/dev/mtd2".into(),
                    crate::sys::MtdGeometry {
                        kind: 3,
                        writeable: true,
                        size: 48 << 20,
                        erasesize: 256 << 10,
                        writesize: 1,
                    },
                ));
                let bmode = match mode {
                    m::Mode::Initramfs => Mode::Initramfs,
                    m::Mode::Pivot => Mode::Pivot,
                };
                assert_eq!(bmode.places(), places, "{cell}: the mode's places");
                let mut b = Boot::new(&sys, SysRoot::new(dir.path()), bmode);
                b.execute(plan);
                let data_at = places.data.at_boot.clone();
                let mut got: Vec<&str> = Vec::new();
                for c in sys.calls() {
                    let w = match &c {
                        Call::Mount {
                            target,
                            flags,
                            fstype,
                            ..
                        } if *target == data_at && !flags.readonly && fstype != "tmpfs" => {
                            Some("mount-rw")
                        }
                        Call::Remount(_) => Some("remount-rw"),
                        Call::Run(cmd) if cmd.argv[0].contains("mkfs") => Some("mkfs"),
                        Call::Run(cmd) if cmd.argv[0].contains("fsck") => Some("fsck"),
                        Call::Run(_) => Some("run"),
                        Call::MtdErase { .. } => Some("erase"),
                        Call::MtdWrite { .. } => Some("mtd-write"),
                        Call::UbiMkvol { .. } => Some("mkvol"),
                        Call::UbiLebUnmap { .. } => Some("clear"),
                        Call::UbiAttach { .. } => Some("attach"),
                        Call::Mkdir(p) if p.parent() == Some(&data_at) && p.ends_with("work") => {
                            // upper/ and work/ on the data place: on flash
                            // unless the data place holds a tmpfs.
                            (!sys.calls().iter().any(|x| matches!(x, Call::Mount { target, fstype, .. } if *target == data_at && fstype == "tmpfs")))
                                .then_some("dirs")
                        }
                        _ => None,
                    };
                    if let Some(w) = w {
                        if got.last() != Some(&w) || w != "erase" {
                            got.push(w);
                        }
                    }
                }
                assert_eq!(got, want, "{cell}: {:?}", sys.calls());
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 162);
}

mod nor;

/// An upper that shadows the init with something that cannot run is found
/// while the data is still read-only: the flash is not written (no remount,
/// no upper/work, no wear record) before it is dropped for RAM (issue 11's
/// bad-input matrix: a dangling upper/sbin/init).
#[test]
fn an_upper_that_breaks_init_is_found_before_the_flash_is_written() {
    let mut img = ext4_image();
    img[1024 + 0x3A] = 1; // clean: no fsck
    let f = Fixture::new(CMD, Some(img));
    std::fs::create_dir_all(f.dir.path().join("overlay/upper/sbin")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", f.dir.path().join("overlay/upper/sbin/init"))
        .unwrap();
    // What the read-only overlay for the check shows.
    f.exe("newroot/sbin/init", b"garbage");
    let sys = FakeSys::default();
    let good_init = f.dir.path().join("newroot/sbin/init");
    sys.fail_when(0, move |c| {
        if matches!(c, Call::Mount { fstype, .. } if fstype == "tmpfs") {
            std::fs::write(&good_init, b"\x7fELF").unwrap();
        }
        false
    });
    let b = f.boot_to_upper(&sys);
    let r = upper_reason(&b);
    assert!(
        r.starts_with("the upper layer breaks the init: /sbin/init"),
        "{r}"
    );
    assert!(
        !sys.calls().iter().any(|c| matches!(c, Call::Remount(_))),
        "{:?}",
        sys.calls()
    );
    // upper/ and work/ are made only on the RAM upper that replaces it.
    let c = sys.calls();
    let ram = c
        .iter()
        .position(|x| matches!(x, Call::Mount { fstype, .. } if fstype == "tmpfs"))
        .unwrap();
    assert!(!c[..ram]
        .iter()
        .any(|x| matches!(x, Call::Mkdir(p) if p == Path::new("/overlay/upper"))));
}

/// Issue 11, defect 10: `init=/nonexistent` first blamed and dropped a
/// healthy flash upper, then ended FATAL. An init that runs in no lower is
/// not the upper's fault: the flash is kept and the boot ends FATAL at once.
#[test]
fn an_init_missing_everywhere_does_not_drop_a_healthy_flash_upper() {
    let mut img = ext4_image();
    img[1024 + 0x3A] = 1;
    let f = Fixture::new(&format!("{CMD} init=/nonexistent"), Some(img));
    let sys = FakeSys::default();
    let mut b = f.boot_to_upper(&sys);
    let e = b.assemble().unwrap_err();
    assert_eq!(
        e.to_string(),
        "no runnable init /nonexistent: does not exist"
    );
    assert!(
        matches!(b.state.upper, Upper::Flash { .. }),
        "{:?}",
        b.state.upper
    );
    assert!(
        !sys.calls()
            .iter()
            .any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "tmpfs")),
        "no fall back to RAM"
    );
}
