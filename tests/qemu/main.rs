//! QEMU ARM boot tests: the real kernel, the real initramfs, real disks.
//!
//! Ignored in a plain `cargo test` (they need qemu/build.sh's artifacts and
//! take seconds per boot); qemu/test.sh runs them with `-- --ignored`.
//! See harness.rs for the device layout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a test stops at the first failure, by design

mod badinput;
mod debian;
mod harness;
mod nor;
mod openwrt;
mod pid1;
mod plan;
mod powercut;
mod recovery;
mod reset;
mod size;
mod upgrade;
mod walks;
mod wear;

use harness::{boot, fingerprint, out_dir, partition, partuuid, scribble, Work};

/// Facts every script prints: the filesystem types of /, /rom, /overlay.
pub const MOUNTS: &str =
    r#"fact root "$(fstype /)"; fact rom "$(fstype /rom)"; fact overlay "$(fstype /overlay)""#;

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn first_boot_on_blank_flash_formats_and_enters_the_overlay() {
    let w = Work::new("first-boot");
    let disk = w.standard_disk();
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\nstatus\nstatus --json | grep -q '\"persistent\":true' && fact json ok\nfact pid1 \"$(cat /proc/1/comm)\"\nfact initramfs_left \"$(ls /newroot 2>&1 | head -1)\""));
    b.expect_clean_run();
    assert_eq!(b.fact("root"), "overlay");
    assert_eq!(b.fact("rom"), "squashfs");
    assert_eq!(b.fact("overlay"), "ext4");
    assert_eq!(b.fact("status_exit"), "0");
    assert_eq!(b.fact("json"), "ok");
    assert_eq!(b.fact("pid1"), "init", "the real init runs as PID 1");
    b.expect("first boot: formatting blank /dev/vda2 as ext4");
    b.expect("persistent: yes, changes are saved on /dev/vda2 (ext4)");
    // dmesg has our lines, with kernel timestamps.
    assert!(
        b.console
            .lines()
            .any(|l| l.starts_with('[') && l.contains("] overlay-init: pre-init done in")),
        "{}",
        b.console
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn changes_survive_a_reboot_and_the_lower_stays_unchanged() {
    let w = Work::new("persist");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        r##"
echo kept > /root/new-file
echo "# changed by test" >> /etc/profile
rm /bin/vi
fact vi_gone "$([ -e /bin/vi ] && echo no || echo yes)"
"##,
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("vi_gone"), "yes");
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!(
            r#"{MOUNTS}
fact new "$(cat /root/new-file)"
fact profile_tail "$(tail -n1 /etc/profile)"
fact rom_profile_tail "$(tail -n1 /rom/etc/profile)"
fact vi "$([ -e /bin/vi ] && echo present || echo absent)"
fact rom_vi "$([ -L /rom/bin/vi ] && echo present || echo absent)"
fact whiteout "$(stat -c '%F %t:%T' /overlay/upper/bin/vi)"
"#
        ),
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("overlay"), "ext4");
    assert_eq!(b2.fact("new"), "kept");
    assert_eq!(b2.fact("profile_tail"), "# changed by test");
    assert_ne!(
        b2.fact("rom_profile_tail"),
        "# changed by test",
        "the squashfs is unchanged"
    );
    assert_eq!(b2.fact("vi"), "absent");
    assert_eq!(b2.fact("rom_vi"), "present");
    assert_eq!(
        b2.fact("whiteout"),
        "character special file 0:0",
        "a deletion is a whiteout"
    );
    assert!(
        !b2.has("formatting blank"),
        "an existing upper is not formatted again"
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn after_a_power_cut_the_upper_is_checked_and_its_synced_data_kept() {
    let w = Work::new("power-cut");
    let disk = w.standard_disk();
    // sysrq 'b': immediate reboot, no unmount, no sync: a power cut.
    let b1 = boot(&w, &disk, "", "echo synced > /root/before-cut && sync\necho unsynced > /root/after-sync\necho b > /proc/sysrq-trigger\nsleep 5");
    b1.expect("overlay-demo: real init reached");
    assert!(
        !b1.has("overlay-demo: script exit"),
        "the cut must land before the script ends"
    );
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nfact before \"$(cat /root/before-cut)\""),
    );
    b2.expect_clean_run();
    b2.expect("/dev/vda2: journal needs recovery (not cleanly unmounted): checking");
    b2.expect("chroot /rom /sbin/e2fsck -p /dev/vda2");
    assert_eq!(b2.fact("overlay"), "ext4");
    assert_eq!(b2.fact("before"), "synced");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn several_lower_layers_stack_leftmost_first() {
    let w = Work::new("lowers");
    // Two layers as in the overlayfs documentation's example: the upper-most
    // (leftmost) layer wins for file2, each layer contributes its own files.
    let l1 = w.squashfs(
        "l1",
        &[
            ("/layers/file1", "file1 from layer1"),
            ("/layers/file2", "file2 from layer1"),
        ],
    );
    let l2 = w.squashfs(
        "l2",
        &[
            ("/layers/file2", "file2 from layer2"),
            ("/layers/file3", "file3 from layer2"),
            ("/etc/profile", "from layer2"),
        ],
    );
    let rootfs = out_dir().join("rootfs.squashfs");
    let disk = w.disk(
        "disk.img",
        &[
            format!("rootfs:auto:{}", rootfs.display()),
            format!("layer1:auto:{}", l1.display()),
            format!("layer2:auto:{}", l2.display()),
            "rootfs_data:64".into(),
        ],
    );
    let b = boot(
        &w,
        &disk,
        "root=/dev/vda1 overlay.lower=PARTLABEL=layer1,PARTLABEL=layer2",
        r#"
for f in 1 2 3; do fact file$f "$(cat /layers/file$f)"; done
fact profile "$(cat /etc/profile)"
fact sbin_init "$([ -x /sbin/init ] && echo from-root)"
status
"#,
    );
    b.expect_clean_run();
    assert_eq!(b.fact("file1"), "file1 from layer1");
    assert_eq!(b.fact("file2"), "file2 from layer1");
    assert_eq!(b.fact("file3"), "file3 from layer2");
    assert_eq!(
        b.fact("profile"),
        "from layer2",
        "an extra layer shadows root="
    );
    assert_eq!(b.fact("sbin_init"), "from-root");
    b.expect("lowerdir=/run/overlay-init/lower/0:/run/overlay-init/lower/1:/rom,");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn an_f2fs_upper_is_detected_by_its_superblock() {
    let w = Work::new("f2fs");
    let data = w.path("data.f2fs");
    std::fs::write(&data, vec![0u8; 64 << 20]).unwrap();
    let st = std::process::Command::new("mkfs.f2fs")
        .args(["-q", "-l", "rootfs_data"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success(), "mkfs.f2fs");
    let rootfs = out_dir().join("rootfs.squashfs");
    let disk = w.disk(
        "disk.img",
        &[
            format!("rootfs:auto:{}", rootfs.display()),
            format!("rootfs_data:64:{}", data.display()),
        ],
    );
    let b1 = boot(&w, &disk, "", &format!("{MOUNTS}\necho on-f2fs > /root/f"));
    b1.expect_clean_run();
    assert_eq!(
        b1.fact("overlay"),
        "f2fs",
        "no overlay.fstype given: detected"
    );
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nfact f \"$(cat /root/f)\""),
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("f"), "on-f2fs");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn no_data_partition_runs_on_tmpfs_and_says_why() {
    let w = Work::new("no-data");
    let rootfs = out_dir().join("rootfs.squashfs");
    let disk = w.disk("disk.img", &[format!("rootfs:auto:{}", rootfs.display())]);
    let b = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nstatus\necho x > /root/ram && fact writable yes"),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("root"), "overlay");
    assert_eq!(b.fact("overlay"), "tmpfs");
    assert_eq!(b.fact("writable"), "yes");
    assert_eq!(b.fact("status_exit"), "2");
    b.expect("reason:     no data partition PARTLABEL=rootfs_data");
    b.expect("RUNNING ON RAM (tmpfs upper): changes will be LOST at reboot");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_corrupt_data_partition_is_left_byte_for_byte_untouched() {
    let w = Work::new("corrupt");
    let disk = w.standard_disk();
    let (off, len) = partition(&disk, "rootfs_data");
    scribble(&disk, off, len as usize, 0x5eed);
    let before = fingerprint(&disk, off, len);
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\nstatus"));
    b.expect_clean_run();
    assert_eq!(b.fact("overlay"), "tmpfs");
    assert_eq!(b.fact("status_exit"), "2");
    b.expect("neither ext4 nor f2fs nor blank; left untouched");
    assert_eq!(
        fingerprint(&disk, off, len),
        before,
        "the partition's bytes changed"
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_full_flash_without_room_for_the_work_dir_falls_back_to_tmpfs() {
    let w = Work::new("full");
    let disk = w.standard_disk();
    // Boot 1: take the work dir away, then fill the filesystem (as root, the
    // reserved blocks too), as a flash filled by a runaway logger would be.
    let b1 = boot(&w, &disk, "", "mv /overlay/work /overlay/work.old\ndd if=/dev/zero of=/overlay/fill bs=64k 2>/dev/null\ni=0; while touch /overlay/f$i 2>/dev/null && [ $i -lt 100000 ]; do i=$((i+1)); done\nsync\nfact df \"$(df /overlay | tail -1)\"");
    b1.expect_clean_run();
    let b2 = boot(&w, &disk, "", &format!("{MOUNTS}\nstatus"));
    b2.expect_clean_run();
    assert_eq!(b2.fact("overlay"), "tmpfs");
    b2.expect("cannot create /overlay/work: No space left on device");
    assert_eq!(b2.fact("status_exit"), "2");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn an_upper_that_shadows_init_with_a_broken_file_boots_the_lower() {
    let w = Work::new("broken-init");
    let disk = w.standard_disk();
    let b1 = boot(&w, &disk, "", "rm /sbin/init && printf 'not a program' > /sbin/init && chmod 755 /sbin/init && fact broken yes");
    b1.expect_clean_run();
    assert_eq!(b1.fact("broken"), "yes");
    let b2 = boot(&w, &disk, "", &format!("{MOUNTS}\nstatus"));
    b2.expect_clean_run();
    assert_eq!(b2.fact("overlay"), "tmpfs");
    b2.expect(
        "the upper layer breaks the init: /sbin/init is neither an ELF binary nor a #! script",
    );
    assert_eq!(b2.fact("status_exit"), "2");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_aliases_name_and_type_the_data_partition() {
    let w = Work::new("openwrt");
    let rootfs = out_dir().join("rootfs.squashfs");
    let disk = w.disk(
        "disk.img",
        &[
            format!("rootfs:auto:{}", rootfs.display()),
            "userdata:32".into(),
        ],
    );
    // root= by PARTUUID too (upper case, as blkid users often paste it).
    let uuid = partuuid(&disk, "rootfs");
    let root = format!("root=PARTUUID={}", uuid.to_uppercase());
    let b = boot(
        &w,
        &disk,
        &format!("{root} fstools_overlay_name=userdata fstools_overlay_fstype=ext4"),
        &format!("{MOUNTS}\nstatus"),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("overlay"), "ext4");
    b.expect("persistent: yes, changes are saved on /dev/vda2 (ext4)");
    b.expect(&format!(
        "root PARTUUID={} = /dev/vda1 (squashfs)",
        uuid.to_lowercase()
    ));
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn ubuntu_overlayroot_tmpfs_device_and_disabled() {
    let w = Work::new("ubuntu");
    let rootfs = out_dir().join("rootfs.squashfs");
    let disk = w.disk(
        "disk.img",
        &[
            format!("rootfs:auto:{}", rootfs.display()),
            "rootfs_data:32".into(),
            "other:32".into(),
        ],
    );
    let script = format!("{MOUNTS}\nstatus\ntouch /probe 2>/dev/null && fact rw yes || fact rw no");

    let t = boot(
        &w,
        &disk,
        "overlayroot=tmpfs overlay.tmpfs_size=16m",
        &format!("{script}\nfact tmpfs_kib \"$(df -k /overlay | awk 'NR==2 {{print $2}}')\""),
    );
    t.expect_clean_run();
    assert_eq!(t.fact("overlay"), "tmpfs");
    assert_eq!(t.fact("status_exit"), "2");
    t.expect("persistent: no, changes live in RAM (tmpfs, up to 16777216) as configured");
    assert_eq!(
        t.fact("tmpfs_kib"),
        "16384",
        "overlay.tmpfs_size bounds the tmpfs upper"
    );
    assert!(
        !t.has("RUNNING ON RAM"),
        "asked-for tmpfs is not a fallback banner"
    );

    let d = boot(
        &w,
        &disk,
        "overlayroot=device:dev=PARTLABEL=other,timeout=5",
        &script,
    );
    d.expect_clean_run();
    assert_eq!(d.fact("overlay"), "ext4");
    d.expect("persistent: yes, changes are saved on /dev/vda3 (ext4)");

    let r = boot(&w, &disk, "overlayroot=disabled", &script);
    r.expect_clean_run();
    assert_eq!(r.fact("root"), "squashfs");
    assert_eq!(r.fact("rw"), "no");
    assert_eq!(r.fact("status_exit"), "3");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_command_line_values_are_reported_and_defaults_used() {
    let w = Work::new("bad-cmdline");
    let disk = w.standard_disk();
    let b = boot(&w, &disk, "overlay.tmpfs_size=lots overlay.fstype=btrfs init=sbin/init overlay.bogus=1 overlayroot=crypt:x overlay.data=sda2 overlay.lower=,", &format!("{MOUNTS}\nstatus"));
    b.expect_clean_run();
    for msg in [
        "bad setting overlay.tmpfs_size=lots: not a size",
        "bad setting overlay.fstype=btrfs: unsupported filesystem (use auto, ext4 or f2fs); using auto",
        "bad setting init=sbin/init: not an absolute path; using /sbin/init",
        "bad setting overlay.bogus=1: unknown overlay-init key",
        "bad setting overlayroot=crypt:x: unsupported",
        "bad setting overlay.data=sda2: not a device",
    ] {
        b.expect(msg);
    }
    // The defaults: the flash partition named rootfs_data, persistent.
    assert_eq!(b.fact("overlay"), "ext4");
    assert_eq!(b.fact("status_exit"), "0");
    b.expect("warning:    bad setting overlay.fstype=btrfs");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_missing_root_is_a_clear_fatal_error_then_a_reboot_never_a_panic() {
    let w = Work::new("no-root");
    let disk = w.standard_disk();
    let b = boot(
        &w,
        &disk,
        "root=PARTLABEL=nosuch rootwait=1 panic=1",
        "fact unreachable yes",
    );
    b.expect("FATAL: root device PARTLABEL=nosuch did not appear within 1 s");
    b.expect("rebooting in 1 s");
    assert!(!b.has("Kernel panic"), "PID 1 must not die:\n{}", b.console);
    assert!(!b.has("overlay-demo: real init reached"));
    assert_eq!(
        b.code,
        Some(0),
        "the guest rebooted, which ends QEMU (-no-reboot)"
    );
}

/// The lines of ours the console showed before the real init's first line:
/// echoed by the kernel (`[ t] overlay-init: ...`) or printed by us.
fn our_console_lines(b: &harness::Boot) -> Vec<String> {
    b.console
        .lines()
        .take_while(|l| !l.contains("overlay-demo: real init reached"))
        .filter_map(|l| {
            l.split_once("overlay-init: ")
                .map(|(_, m)| m.trim_end().to_string())
        })
        .collect()
}

/// The details of the boot that must be in dmesg, though not on the console.
const DETAILS_IN_DMESG: &str = r#"
fact d_overlay "$(dmesg | grep -c 'overlay-init: mount -t overlay')"
fact d_done "$(dmesg | grep -c 'overlay-init: pre-init done in [0-9.]* ms (early-mounts')"
fact d_floor "$(dmesg | grep -c 'overlay-init: time in syscalls and children: ')"
fact d_memory "$(dmesg | grep -c 'overlay-init: peak memory (VmHWM) ')"
fact d_start "$(dmesg | grep -c 'overlay-init: overlay-init [0-9.]* (.*), started ')""#;

fn expect_details_in_dmesg(b: &harness::Boot) {
    for k in ["d_overlay", "d_done", "d_floor", "d_memory", "d_start"] {
        assert_eq!(b.fact(k), "1", "{k}: in dmesg once:\n{}", b.console);
    }
}

/// Issue 14, console cost: at the kernel's default loglevel a normal boot
/// prints one line of ours on the (synchronous, 87 µs a byte at 115200 baud)
/// serial console, as fstools' mount_root does; every step, the stage times,
/// the floor and the peak memory are in dmesg (KERN_DEBUG); `loglevel=8`
/// (the demo boards') shows them on the console too, `quiet` none of ours.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn the_console_shows_the_decision_and_dmesg_every_step() {
    // The block board, initramfs: first boot (formats), then a steady boot.
    let w = Work::new("console-lines");
    let disk = w.standard_disk();
    let b = boot(&w, &disk, "loglevel=7", DETAILS_IN_DMESG);
    b.expect_clean_run();
    expect_details_in_dmesg(&b);
    let lines = our_console_lines(&b);
    assert!(
        lines
            .iter()
            .any(|l| l == "first boot: formatting blank /dev/vda2 as ext4")
            && lines
                .iter()
                .any(|l| l == "upper: /dev/vda2 (ext4) at /overlay")
            && !lines
                .iter()
                .any(|l| l.starts_with("mount ") || l.starts_with("pre-init done")),
        "first boot: the format and the upper, no step lines: {lines:?}"
    );
    let b = boot(&w, &disk, "loglevel=7", DETAILS_IN_DMESG);
    b.expect_clean_run();
    expect_details_in_dmesg(&b);
    assert_eq!(
        our_console_lines(&b),
        ["upper: /dev/vda2 (ext4) at /overlay"],
        "{}",
        b.console
    );
    // The board's own loglevel=8: every step on the console as well.
    let b = boot(&w, &disk, "", "true");
    b.expect_clean_run();
    b.expect("overlay-init: mount -t overlay overlay -o ");
    b.expect("overlay-init: pre-init done in ");

    // The NOR board, pivot_root: a steady JFFS2 boot, then under quiet.
    let w = Work::new("console-lines-nor");
    let flash = w.nor_flash(None);
    let first = harness::boot_nor(&w, &flash, "loglevel=7", "true");
    first.expect_clean_run();
    let b = harness::boot_nor(&w, &flash, "loglevel=7", DETAILS_IN_DMESG);
    b.expect_clean_run();
    expect_details_in_dmesg(&b);
    assert_eq!(
        our_console_lines(&b),
        ["upper: mtd:rootfs_data (jffs2) at /overlay"],
        "{}",
        b.console
    );
    let b = harness::boot_nor(&w, &flash, "quiet", DETAILS_IN_DMESG);
    b.expect_clean_run();
    expect_details_in_dmesg(&b);
    assert_eq!(our_console_lines(&b), Vec::<String>::new(), "{}", b.console);
}
