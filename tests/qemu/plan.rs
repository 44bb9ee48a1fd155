//! The boot's decision core on the real kernel (issue 10): every policy is
//! decided before the first write, so a worn flash under `protect` boots in
//! pivot mode (the NOR board) with its data visible and unchanged, and under
//! `tmpfs` is left byte for byte as it was: a UBIFS, a partition marked for
//! formatting, a UBI device lacking the volume, a block partition marked
//! for formatting (whose old ext4 superblock tells how worn it is).
//!
//! "Worn" comes from the settings (`pe_cycles:1`: rated for one write of the
//! flash), as in tests/qemu/wear.rs; the erase counters UBI keeps on the
//! flash and ext4's lifetime writes are real.

use crate::harness::{boot, boot_nor, fingerprint, flash_partition, partition, write_bytes, Work};
use std::path::Path;

const FORMAT_MARKER: [u8; 4] = [0xde, 0xad, 0xc0, 0xde];

/// The NOR board's data partition, as (offset, length) in the image.
fn data_region() -> (u64, u64) {
    flash_partition("rootfs_data")
}

fn data_bytes(flash: &Path) -> u32 {
    let (off, len) = data_region();
    fingerprint(flash, off, len)
}

/// The first boot: the kernel attaches the blank partition (ubi.mtd=),
/// overlay-init creates the volume `name`, UBIFS formats it, and a user
/// file is written and synced; the demo's poweroff remounts it read-only.
fn ubifs_with_a_file(w: &Work, name_arg: &str) -> std::path::PathBuf {
    let flash = w.nor_flash(None);
    let b = boot_nor(
        w,
        &flash,
        &format!("ubi.mtd=rootfs_data {name_arg}"),
        "echo mine > /root/f && sync && fact write ok\nstatus",
    );
    b.expect_clean_run();
    assert_eq!(b.fact("write"), "ok", "{}", b.console);
    assert_eq!(b.fact("status_exit"), "0", "on flash: {}", b.console);
    flash
}

/// Issue 10, defect 1: protect in pivot mode used to end in an emergency
/// shell (the overlay named the flash where it would be after the switch).
/// Then defect 2: under the tmpfs policy the same worn flash, and the same
/// flash marked for formatting, are not written at all.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_worn_ubifs_is_protected_in_pivot_mode_and_never_written() {
    let w = Work::new("plan-nor-protect");
    let flash = ubifs_with_a_file(&w, "");
    let before = data_bytes(&flash);

    let b2 = boot_nor(
        &w,
        &flash,
        "overlay.wear=pe_cycles:1",
        r#"fact f "$(cat /root/f)"
fact overlay_mount "$(grep ' /overlay ' /proc/mounts)"
echo new > /root/new && fact new "$(cat /root/new)"
touch /overlay/direct 2>/dev/null && fact flash_writable yes || fact flash_writable no
sync
status"#,
    );
    b2.expect_clean_run();
    assert!(!b2.has("FATAL"), "{}", b2.console);
    b2.expect("flash protected: /dev/ubi0_0 is read-only at /overlay");
    b2.expect("lowerdir=/run/overlay-init/overlay/upper:/,upperdir=/run/overlay-init/ram/upper");
    assert_eq!(b2.fact("f"), "mine", "the user's file is visible");
    assert!(
        b2.fact("overlay_mount").contains(" ubifs ro,"),
        "/overlay is mounted read-only: {}",
        b2.fact("overlay_mount")
    );
    assert_eq!(b2.fact("flash_writable"), "no");
    assert_eq!(b2.fact("new"), "new", "new files go to RAM");
    assert_eq!(b2.fact("status_exit"), "2");
    b2.expect("lower 0:    /dev/ubi0_0 (ubifs, extra) at /overlay/upper");
    assert_eq!(
        data_bytes(&flash),
        before,
        "the protected boot changed the flash"
    );

    // The tmpfs policy: not even mounted.
    let b3 = boot_nor(
        &w,
        &flash,
        "overlay.wear=pe_cycles:1 overlay.wear_policy=tmpfs",
        "fact f \"$(cat /root/f 2>&1)\"\nstatus",
    );
    b3.expect_clean_run();
    b3.expect("(overlay.wear_policy=tmpfs)");
    assert!(b3.fact("f").contains("No such file"), "{}", b3.fact("f"));
    assert_eq!(
        data_bytes(&flash),
        before,
        "the tmpfs policy wrote the flash"
    );

    // The same worn flash marked for formatting (jffs2mark writes the
    // marker over the first block): its erase counters are still on the
    // other blocks; the worn flash is neither erased nor attached.
    let (off, _) = data_region();
    write_bytes(&flash, off, &FORMAT_MARKER);
    let marked = data_bytes(&flash);
    let b4 = boot_nor(
        &w,
        &flash,
        "overlay.wear=pe_cycles:1 overlay.wear_policy=tmpfs",
        "status",
    );
    b4.expect_clean_run();
    b4.expect("(overlay.wear_policy=tmpfs)");
    assert!(!b4.has("format marker found"), "{}", b4.console);
    assert!(!b4.has("ubi0: attached"), "{}", b4.console);
    assert_eq!(
        data_bytes(&flash),
        marked,
        "the marked worn flash was written"
    );
}

/// A UBI device that lacks the volume (here it holds another one): a worn
/// one under the tmpfs policy gets no new volume.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_worn_ubi_device_without_the_volume_gets_none_under_tmpfs() {
    let w = Work::new("plan-nor-novol");
    // The first boot makes the volume "other" and uses it.
    let flash = ubifs_with_a_file(&w, "overlay.data=ubi:ubi0:other");
    let before = data_bytes(&flash);
    let b2 = boot_nor(
        &w,
        &flash,
        "ubi.mtd=rootfs_data overlay.wear=pe_cycles:1 overlay.wear_policy=tmpfs",
        "fact vols \"$(cat /sys/class/ubi/ubi0/volumes_count)\"\nstatus",
    );
    b2.expect_clean_run();
    b2.expect("overlay-init: data on raw flash: ubi0:rootfs_data (to be created)");
    b2.expect("(overlay.wear_policy=tmpfs)");
    assert!(!b2.has("creating UBI volume"), "{}", b2.console);
    assert_eq!(b2.fact("vols"), "1");
    assert_eq!(data_bytes(&flash), before, "no volume may be created");
}

/// Issue 10, defect 3: a block partition due for formatting was formatted
/// without any wear assessment. One marked for formatting over a worn ext4
/// (overlay-reset --format writes the marker over its first bytes only) is
/// left alone under the tmpfs policy.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_worn_block_partition_marked_for_formatting_is_not_formatted_under_tmpfs() {
    let w = Work::new("plan-block-worn-blank");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        "dd if=/dev/urandom of=/root/big bs=1M count=8 2>/dev/null && sync && fact write ok",
    );
    b1.expect_clean_run();
    b1.expect("first boot: formatting blank /dev/vda2 as ext4");
    let (off, len) = partition(&disk, "rootfs_data");
    write_bytes(&disk, off, &FORMAT_MARKER);
    let before = fingerprint(&disk, off, len);
    let b2 = boot(
        &w,
        &disk,
        "overlay.wear=pe_cycles:1,warn:5,critical:10 overlay.wear_policy=tmpfs",
        "status",
    );
    b2.expect_clean_run();
    b2.expect("flash wear: ext4:vda2: writes since mkfs against capacity × P/E cycles: ");
    b2.expect("(overlay.wear_policy=tmpfs)");
    assert!(!b2.has("formatting blank"), "{}", b2.console);
    assert_eq!(
        fingerprint(&disk, off, len),
        before,
        "the worn partition was written"
    );
    // Not worn (default settings): the marker means "format me".
    let b3 = boot(&w, &disk, "", "status");
    b3.expect_clean_run();
    b3.expect("first boot: formatting blank /dev/vda2 as ext4");
    b3.expect("persistent: yes");
}
