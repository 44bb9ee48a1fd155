//! The NOR board (qemu-armv7-nor): own kernel, no initramfs, the root
//! squashfs and the data partition on the virt machine's CFI NOR flash.

use crate::harness::{boot_nor, fingerprint, flash_partition, Work};

/// The board itself: the kernel finds the flash, splits it by mtdparts=,
/// mounts the squashfs from mtdblock1 as the root, and JFFS2 on the erased
/// data partition persists in the flash image.
///
/// The script runs with `init=/etc/init.d/rcS` (the demo rootfs's rcS as
/// PID 1), not through overlay-init: on this board overlay-init starts on the
/// kernel's root (pivot_root mode), knows no MTD partitions yet, and takes
/// `init=` (itself) as the real init.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_board_mounts_the_squashfs_root_from_flash_and_jffs2_persists() {
    let w = Work::new("nor-board");
    let flash = w.nor_flash(None);
    let (rootfs_off, rootfs_len) = flash_partition("rootfs");
    let (data_off, data_len) = flash_partition("rootfs_data");
    let rootfs_before = fingerprint(&flash, rootfs_off, rootfs_len);
    let erased = fingerprint(&flash, data_off, data_len);

    let b1 = boot_nor(
        &w,
        &flash,
        "init=/etc/init.d/rcS",
        r#"
for m in mtd0 mtd1 mtd2; do fact $m "$(grep "^$m:" /proc/mtd)"; done
fact root "$(fstype /)"
fact rootdev "$(awk '$5 == "/" {print $3}' /proc/self/mountinfo)"
fact cmdline_root "$(tr ' ' '\n' < /proc/cmdline | grep '^root=')"
mount -t jffs2 mtd2 /mnt && fact data "$(fstype /mnt)"
echo persisted > /mnt/f && sync && umount /mnt && fact umount ok
"#,
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("mtd0"), r#"mtd0: 04000000 00040000 "fw""#);
    assert_eq!(b1.fact("mtd1"), r#"mtd1: 01000000 00040000 "rootfs""#);
    assert_eq!(b1.fact("mtd2"), r#"mtd2: 03000000 00040000 "rootfs_data""#);
    assert_eq!(b1.fact("root"), "squashfs");
    assert_eq!(b1.fact("rootdev"), "31:1", "the root is mtdblock1");
    assert_eq!(b1.fact("cmdline_root"), "root=/dev/mtdblock1");
    b1.expect("VFS: Mounted root (squashfs filesystem) readonly on device 31:1");
    assert!(!b1.has("initramfs"), "the board boots without an initramfs");
    assert_eq!(b1.fact("data"), "jffs2");
    assert_eq!(b1.fact("umount"), "ok");

    assert_eq!(
        fingerprint(&flash, rootfs_off, rootfs_len),
        rootfs_before,
        "the rootfs partition is read-only"
    );
    assert_ne!(
        fingerprint(&flash, data_off, data_len),
        erased,
        "JFFS2 wrote into the image's rootfs_data"
    );

    let b2 = boot_nor(
        &w,
        &flash,
        "init=/etc/init.d/rcS",
        r#"mount -t jffs2 mtd2 /mnt && fact f "$(cat /mnt/f)""#,
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("f"), "persisted");
}
