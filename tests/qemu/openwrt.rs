//! Issue 15: an OpenWrt image on overlay-init, with OpenWrt's real tools.
//!
//! The NOR board (qemu-armv7-nor) booted from a test-only variant of its
//! root squashfs (qemu/openwrt-rootfs.sh): fstools' static `mount_root` and
//! `jffs2reset` (as `/sbin/mount_root`, `/sbin/jffs2reset`,
//! `/sbin/jffs2mark`) and the anchors' `owrt-preinit` (a stock `mount_root`
//! boot with `init=/sbin/owrt-preinit`), and overlay-init's own answers to
//! those names under `/opt/oi` (`PATH=/opt/oi:$PATH`). Each test builds its
//! own flash image; JFFS2 on the MTD partition `rootfs_data`, or UBIFS on a
//! UBI volume of that name (the first boot appends `ubi.mtd=rootfs_data`).
//!
//! fstools picks jffs2mark's mode from argv[0] being exactly `jffs2mark`:
//! the scripts run it from PATH, as a user does.
//!
//! The `.fs_state` and `sysupgrade.tgz` tests need the boot to call
//! `openwrt::fs_state` and `openwrt::restore` (wired by the plan).

use crate::harness::{
    boot_nor, boot_nor_cut, cut_by_test_hook, flash_partition, out_dir_for, read_bytes, repo,
    ubi_image, Boot, Fs, Work, NOR_BOARD,
};
use crate::reset::{CHANGES, VIEW_VS_ROM};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Facts about the upper and fstools' state.
const FACTS: &str = r#"fact root "$(fstype /)"; fact overlay "$(fstype /overlay)"
fact src "$(awk '$2=="/overlay" {s=$1} END {print s}' /proc/mounts)"
fact fs_state "$(readlink /overlay/.fs_state)"
fact fs_state_id "$(stat -c '%i %Z' /overlay/.fs_state 2>&1)"
"#;

/// JFFS2 writes its clean markers lazily after a mount: wait for them (and
/// sync) before anything that reads the partition's first bytes.
const SETTLE: &str = "sync; sleep 2; sync";

/// The boot ran on the flash upper `fs`, from the device fstools matches.
fn expect_flash(b: &Boot, fs: Fs) {
    b.expect_clean_run();
    assert!(
        !b.has("RUNNING ON RAM"),
        "no tmpfs fallback:\n{}",
        b.console
    );
    assert_eq!(b.fact("root"), "overlay");
    assert_eq!(b.fact("overlay"), fs.name());
    assert_eq!(b.fact("src"), fs.source());
}

/// The device of the upper on `fs` as fstools' messages name it.
fn fstools_dev(fs: Fs) -> &'static str {
    match fs {
        Fs::Jffs2 => "/dev/mtdblock2",
        Fs::Ubifs => "/dev/ubi0_0",
    }
}

/// A flash image whose `rootfs` is the test variant with OpenWrt's tools.
fn flash(w: &Work) -> PathBuf {
    let sq = w.path("rootfs-openwrt.sqfs");
    let st = Command::new(repo().join("qemu/openwrt-rootfs.sh"))
        .arg(out_dir_for(NOR_BOARD).join("rootfs.squashfs"))
        .arg(&sq)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "qemu/openwrt-rootfs.sh failed");
    w.flash("flash.img", &[("rootfs", &sq)])
}

/// One entry of a test archive.
struct E<'a> {
    name: &'a str,
    typ: u8,
    data: &'a [u8],
    link: &'a str,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        name,
        typ: b'0',
        data,
        link: "",
    }
}

/// A gzipped ustar archive of `entries`, as busybox's tar writes one.
fn tgz(entries: &[E]) -> Vec<u8> {
    let mut t = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        let mode = if e.typ == b'5' {
            "0000755\0"
        } else {
            "0000644\0"
        };
        h[100..108].copy_from_slice(mode.as_bytes());
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", e.data.len()).as_bytes());
        h[136..148].copy_from_slice(b"14000000000\0");
        h[156] = e.typ;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        t.extend_from_slice(&h);
        t.extend_from_slice(e.data);
        t.resize(t.len().next_multiple_of(512), 0);
    }
    t.resize(t.len() + 1024, 0);
    let mut gz = Command::new("gzip")
        .arg("-9nc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gz.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&t).unwrap());
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

/// Shell lines writing `bytes` to `path` in the guest (base64 here-doc).
fn put(path: &str, bytes: &[u8]) -> String {
    let mut b64 = Command::new("base64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    b64.stdin.take().unwrap().write_all(bytes).unwrap();
    let text = String::from_utf8(b64.wait_with_output().unwrap().stdout).unwrap();
    format!("base64 -d > {path} <<'B64'\n{text}B64\n")
}

/// The settings a sysupgrade keeps: a config file, and an /etc/passwd of
/// the old image (it lacks the new image's `nobody`).
fn settings() -> Vec<u8> {
    tgz(&[
        E {
            name: "etc/config/",
            typ: b'5',
            data: b"",
            link: "",
        },
        file("etc/config/network", b"config interface 'lan'\n"),
        file(
            "etc/passwd",
            b"root:$1$kept$:0:0:root:/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n",
        ),
    ])
}

const RESTORED: &str = r#"
fact network "$(cat /etc/config/network 2>&1)"
fact passwd "$(cat /etc/passwd | tr '\n' ' ')"
fact archive "$(ls /overlay/sysupgrade.tgz /sysupgrade.tgz /overlay/sysupgrade.tgz.failed 2>/dev/null | tr '\n' ' ')"
"#;

/// fstools' `jffs2reset -y` on a running system finds the data mount (on
/// UBIFS too, now that it is mounted from /dev/ubi0_0), deletes the upper's
/// files (not those in hidden directories: fstools' glob skips them), and
/// the next boot is on flash.
fn fstools_jffs2reset(fs: Fs) {
    let w = Work::new(&format!("owrt-jffs2reset-{}", fs.name()));
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        fs.first_append(),
        &format!(
            r#"{FACTS}
echo junk > /root/junk; mkdir -p /root/.ssh; echo key > /root/.ssh/key; echo x > /etc/changed
{SETTLE}
jffs2reset -y; fact rc $?"#
        ),
    );
    expect_flash(&b1, fs);
    assert_eq!(b1.fact("rc"), "0", "{}", b1.console);
    let dev = fstools_dev(fs);
    b1.expect(&format!("{dev} is mounted as /overlay, only erasing files"));
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            r#"{FACTS}
fact junk "$(cat /root/junk 2>&1)"; fact changed "$(cat /etc/changed 2>&1)"; fact key "$(cat /root/.ssh/key)"
status"#
        ),
    );
    expect_flash(&b2, fs);
    assert!(
        b2.fact("junk").contains("No such file"),
        "reset: {}",
        b2.console
    );
    assert!(b2.fact("changed").contains("No such file"));
    assert_eq!(
        b2.fact("key"),
        "key",
        "fstools' reset leaves hidden directories"
    );
    assert_eq!(b2.fact("status_exit"), "0");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_fstools_jffs2reset_resets_the_upper_on_jffs2() {
    fstools_jffs2reset(Fs::Jffs2);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_fstools_jffs2reset_resets_the_upper_on_ubifs() {
    fstools_jffs2reset(Fs::Ubifs);
}

/// fstools' `jffs2mark -y` on JFFS2 writes 0xdeadc0de over the mounted
/// partition's first bytes; the next boot erases the partition and formats
/// it.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_fstools_jffs2mark_reformats_jffs2() {
    let w = Work::new("owrt-jffs2mark-jffs2");
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\necho mine > /root/f\n{SETTLE}\njffs2mark -y; fact rc $?"),
    );
    expect_flash(&b1, Fs::Jffs2);
    assert_eq!(b1.fact("rc"), "0");
    b1.expect("/dev/mtdblock2 will be erased on next mount");
    let (off, _) = flash_partition("rootfs_data");
    assert_eq!(read_bytes(&flash, off, 4), [0xde, 0xad, 0xc0, 0xde]);
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\nfact f \"$(cat /root/f 2>&1)\""),
    );
    expect_flash(&b2, Fs::Jffs2);
    b2.expect("overlay-init: rootfs_data: format marker found: erasing /dev/mtd2");
    assert!(b2.fact("f").contains("No such file"));
}

/// On UBIFS, fstools' `jffs2mark` empties the volume with a zero-byte
/// volume update, which UBI refuses while UBIFS has the volume open for
/// writing (one writer): rc 255 on a mounted upper, as on stock OpenWrt
/// (overlay-init's own jffs2mark resets it instead, below). On a boot that
/// does not use the volume it works, and the next boot formats it.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_fstools_jffs2mark_reformats_an_unused_ubifs_volume() {
    let w = Work::new("owrt-jffs2mark-ubifs");
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        Fs::Ubifs.first_append(),
        &format!("{FACTS}\necho mine > /root/f; sync\njffs2mark -y; fact rc $?"),
    );
    expect_flash(&b1, Fs::Ubifs);
    assert_eq!(
        b1.fact("rc"),
        "255",
        "UBI's one-writer rule: {}",
        b1.console
    );
    let b2 = boot_nor(
        &w,
        &flash,
        "overlay.data=tmpfs ubi.mtd=rootfs_data",
        "fact overlay \"$(fstype /overlay)\"\njffs2mark -y; fact rc $?",
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("overlay"), "tmpfs");
    assert_eq!(b2.fact("rc"), "0", "{}", b2.console);
    let b3 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\nfact f \"$(cat /root/f 2>&1)\""),
    );
    expect_flash(&b3, Fs::Ubifs);
    b3.expect("UBIFS (ubi0:0): default file-system created");
    assert!(b3.fact("f").contains("No such file"));
}

/// `mount_root done` (S95done, every boot), `PREINIT=1 mount_root` and
/// `mount_root stop`, fstools' and overlay-init's, change nothing: the same
/// mounts, the same flash bytes. `.fs_state` reads 2 from the first boot
/// on, and the second boot does not rewrite it (same inode, same ctime).
fn mount_root_changes_nothing(fs: Fs) {
    let w = Work::new(&format!("owrt-mount-root-{}", fs.name()));
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        fs.first_append(),
        &format!("{FACTS}\necho mine > /root/f\n{SETTLE}"),
    );
    expect_flash(&b1, fs);
    assert_eq!(b1.fact("fs_state"), "2", "READY from the first boot");
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            r#"{FACTS}
{SETTLE}
mounts() {{ cut -d' ' -f3- /proc/self/mountinfo | tr '\n' ';'; }}
fact mounts_before "$(mounts)"
fact flash_before "$(md5sum < /dev/mtd2)"
mount_root done; fact done_rc $?
PREINIT=1 mount_root; fact preinit_rc $?
mount_root stop; fact stop_rc $?
/opt/oi/mount_root done; fact oi_done_rc $?
PREINIT=1 /opt/oi/mount_root; fact oi_preinit_rc $?
/opt/oi/mount_root stop; fact oi_stop_rc $?
sync
fact mounts_after "$(mounts)"
fact flash_after "$(md5sum < /dev/mtd2)"
fact f "$(cat /root/f)""#
        ),
    );
    expect_flash(&b2, fs);
    assert_eq!(b2.fact("fs_state"), "2");
    assert_eq!(
        b2.fact("fs_state_id"),
        b1.fact("fs_state_id"),
        "not rewritten"
    );
    let dev = fstools_dev(fs);
    b2.expect(&format!("rootfs_data:{dev} is already mounted as /overlay"));
    for (k, v) in [
        ("done_rc", "0"),
        ("preinit_rc", "0"),
        ("stop_rc", "255"),
        ("oi_done_rc", "0"),
        ("oi_preinit_rc", "0"),
        ("oi_stop_rc", "0"),
    ] {
        assert_eq!(b2.fact(k), v, "{k}");
    }
    assert_eq!(b2.fact("mounts_after"), b2.fact("mounts_before"));
    assert_eq!(
        b2.fact("flash_after"),
        b2.fact("flash_before"),
        "flash bytes changed"
    );
    assert_eq!(b2.fact("f"), "mine");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_mount_root_and_fs_state_change_nothing_on_jffs2() {
    mount_root_changes_nothing(Fs::Jffs2);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_mount_root_and_fs_state_change_nothing_on_ubifs() {
    mount_root_changes_nothing(Fs::Ubifs);
}

/// overlay-init's answers to OpenWrt's names: `firstboot -y` is the full
/// reset (hidden files too; the keep list kept); `jffs2reset -y -k` keeps
/// /sysupgrade.tgz, which the next boot then restores; `jffs2mark -y` on
/// the upper in use is a reset that keeps nothing.
fn own_names(fs: Fs) {
    let w = Work::new(&format!("owrt-names-{}", fs.name()));
    let flash = flash(&w);
    let oi = "PATH=/opt/oi:$PATH";
    let b1 = boot_nor(
        &w,
        &flash,
        fs.first_append(),
        &format!("{FACTS}\n{CHANGES}\n/opt/oi/factoryreset -x; fact bad_rc $?\n{oi} firstboot -y; fact rc $?"),
    );
    expect_flash(&b1, fs);
    assert_eq!(b1.fact("bad_rc"), "2");
    b1.expect("usage: factoryreset [-y] [-r] [-k]");
    assert_eq!(b1.fact("rc"), "0", "{}", b1.console);
    b1.expect("overlay-reset: reset #1 scheduled for the next boot");

    let by_k = tgz(&[file("etc/by-k", b"kept by -k\n")]);
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            "{FACTS}\n{VIEW_VS_ROM}\necho junk > /root/junk\n{}sync\n{oi} jffs2reset -y -k; fact rc $?",
            put("/sysupgrade.tgz", &by_k)
        ),
    );
    expect_flash(&b2, fs);
    assert_eq!(
        b2.fact("diff"),
        "+./etc/keep +./etc/keep/.b ba7790b1 +./etc/keep/a dd02c7c2 +./etc/overlay-reset.keep ab877a0e ",
        "firstboot: the squashfs plus the keep list, hidden files gone:\n{}",
        b2.console
    );
    assert_eq!(b2.fact("rc"), "0", "{}", b2.console);

    let b3 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            "{FACTS}\nfact junk \"$(cat /root/junk 2>&1)\"\nfact by_k \"$(cat /etc/by-k 2>&1)\"\nfact archive \"$(ls /sysupgrade.tgz 2>&1)\"\n{oi} jffs2mark -y; fact rc $?"
        ),
    );
    expect_flash(&b3, fs);
    assert!(b3.fact("junk").contains("No such file"));
    assert_eq!(
        b3.fact("by_k"),
        "kept by -k",
        "-k kept it and the boot restored it"
    );
    assert!(b3.fact("archive").contains("No such file"));
    assert_eq!(b3.fact("rc"), "0", "{}", b3.console);

    let b4 = boot_nor(&w, &flash, "", &format!("{FACTS}\n{VIEW_VS_ROM}"));
    expect_flash(&b4, fs);
    assert_eq!(
        b4.fact("diff"),
        "",
        "jffs2mark keeps nothing:\n{}",
        b4.console
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_own_names_on_jffs2() {
    own_names(Fs::Jffs2);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_own_names_on_ubifs() {
    own_names(Fs::Ubifs);
}

/// overlay-init's `jffs2mark -y` on a boot that does not use the flash (a
/// UBI volume holding something that is not UBIFS: the boot is on RAM)
/// empties the volume (`overlay-reset --format`, now on UBI); the next boot
/// formats it and uses it.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_own_jffs2mark_reclaims_a_foreign_ubi_volume() {
    let w = Work::new("owrt-oi-mark-ubi");
    let sq = w.squashfs("foreign", &[("/x", "x")]);
    let ubi = ubi_image(&w, "rootfs_data", &sq, "8MiB");
    flash(&w); // builds rootfs-openwrt.sqfs
    let flash = w.flash(
        "flash-ubi.img",
        &[
            ("rootfs", &w.path("rootfs-openwrt.sqfs")),
            ("rootfs_data", &ubi),
        ],
    );
    let b1 = boot_nor(
        &w,
        &flash,
        "",
        "fact overlay \"$(fstype /overlay)\"\nPATH=/opt/oi:$PATH jffs2mark -y; fact rc $?\nfact head \"$(head -c 4 /dev/ubi0_0 | od -An -tx1 | tr -d ' ')\"",
    );
    b1.expect_clean_run();
    b1.expect("ubi0:rootfs_data holds data that is not UBIFS; left untouched");
    assert_eq!(b1.fact("overlay"), "tmpfs");
    assert_eq!(b1.fact("rc"), "0", "{}", b1.console);
    assert_eq!(b1.fact("head"), "ffffffff", "emptied");
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\necho new > /root/f && sync && fact write ok"),
    );
    expect_flash(&b2, Fs::Ubifs);
    b2.expect("UBIFS (ubi0:0): default file-system created");
    assert_eq!(b2.fact("write"), "ok");
}

/// A `sysupgrade.tgz` at the root of the data filesystem is restored at the
/// next boot, once: the archive is removed, the image's users kept
/// (`nobody` is appended to the old /etc/passwd), and a later edit of a
/// restored file survives the boots after.
fn sysupgrade_restored_once(fs: Fs) {
    let w = Work::new(&format!("owrt-sysupgrade-{}", fs.name()));
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        fs.first_append(),
        &format!(
            "{FACTS}\n{}sync",
            put("/overlay/sysupgrade.tgz", &settings())
        ),
    );
    expect_flash(&b1, fs);
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\n{RESTORED}\necho edited > /etc/config/network; sync\nstatus"),
    );
    expect_flash(&b2, fs);
    b2.expect("overlay-init: /overlay/sysupgrade.tgz: restoring the settings kept by sysupgrade");
    b2.expect("sysupgrade.tgz: settings restored (3 entries, 1 KiB; 1 account line(s) of the image added)");
    assert_eq!(b2.fact("network"), "config interface 'lan'");
    assert_eq!(
        b2.fact("passwd"),
        "root:$1$kept$:0:0:root:/root:/bin/sh admin:x:1000:1000::/home/admin:/bin/sh nobody:x:65534:65534:nobody:/nonexistent:/bin/false "
    );
    assert_eq!(b2.fact("archive"), "", "the archive is gone");
    assert_eq!(b2.fact("status_exit"), "0");
    eprintln!(
        "figure: restore of a 3-entry sysupgrade.tgz on {}: {:.0} ms (kernel timestamps)",
        fs.name(),
        (b2.time_of("settings restored") - b2.time_of("restoring the settings kept")) * 1000.0
    );
    let b3 = boot_nor(&w, &flash, "", &format!("{FACTS}\n{RESTORED}"));
    expect_flash(&b3, fs);
    assert!(!b3.has("restoring the settings"), "restored once");
    assert_eq!(b3.fact("network"), "edited", "the user's edit stays");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_sysupgrade_tgz_is_restored_once_on_jffs2() {
    sysupgrade_restored_once(Fs::Jffs2);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_sysupgrade_tgz_is_restored_once_on_ubifs() {
    sysupgrade_restored_once(Fs::Ubifs);
}

/// Power cuts in the restore: after the extraction (before the sync and the
/// removal: what tar wrote may be lost), after the removal, and QEMU killed
/// during the extraction. Each next boot ends restored, the archive gone.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_sysupgrade_tgz_survives_a_power_cut_at_each_step() {
    let w = Work::new("owrt-sysupgrade-cut");
    let flash = flash(&w);
    // Many files: the extraction takes long enough to be cut in.
    let names: Vec<String> = (0..300).map(|i| format!("etc/many/f{i:03}")).collect();
    let mut entries = vec![E {
        name: "etc/many/",
        typ: b'5',
        data: b"",
        link: "",
    }];
    entries.extend(names.iter().map(|n| file(n, b"restored\n")));
    entries.push(file("etc/config/network", b"config interface 'lan'\n"));
    let b1 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            "{FACTS}\n{}{SETTLE}",
            put("/overlay/sysupgrade.tgz", &tgz(&entries))
        ),
    );
    expect_flash(&b1, Fs::Jffs2);
    let check =
        format!("{FACTS}\n{RESTORED}\nfact many \"$(cat /etc/many/f* | grep -c restored)\"");
    let expect_restored = |b: &Boot, what: &str| {
        expect_flash(b, Fs::Jffs2);
        assert_eq!(b.fact("network"), "config interface 'lan'", "{what}");
        assert_eq!(b.fact("many"), "300", "{what}: every file whole");
        assert_eq!(b.fact("archive"), "", "{what}: archive gone");
    };
    for point in ["sysupgrade:1", "sysupgrade:2"] {
        let copy = cut_by_test_hook(&w, &flash, point, boot_nor);
        let after = boot_nor(&w, &copy, "", &check);
        expect_restored(&after, point);
        assert_eq!(
            after.has("settings restored"),
            point == "sysupgrade:1",
            "{point}: restored again only when the archive was still there"
        );
    }
    let copy = w.path("cut-kill.img");
    std::fs::copy(&flash, &copy).unwrap();
    let cut = boot_nor_cut(
        &w,
        &copy,
        "",
        "fact reached yes",
        "restoring the settings kept by sysupgrade",
        Duration::from_millis(300),
    );
    assert!(cut.killed, "{}", cut.console);
    let after = boot_nor(&w, &copy, "", &check);
    expect_restored(&after, "killed during the extraction");
    let took = after.time_of("settings restored") - after.time_of("restoring the settings kept");
    eprintln!(
        "figure: restore of 302 entries: {:.0} ms (kernel timestamps); the kill landed {} it ended",
        took * 1000.0,
        if cut.has("settings restored") {
            "after"
        } else {
            "before"
        }
    );
}

/// Hostile archives: a device node (refused before anything is extracted),
/// a gzip bomb (stopped by the staging tmpfs), a symlink out of the root
/// and an absolute name (contained in the new root). The boot goes on, on
/// flash; a refusal is a warning in overlay-status, the archive kept aside.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_hostile_sysupgrade_tgz_is_refused_or_contained() {
    let w = Work::new("owrt-sysupgrade-hostile");
    let flash = flash(&w);
    let node = tgz(&[
        file("etc/benign", b"b\n"),
        E {
            name: "etc/mtd",
            typ: b'4',
            data: b"",
            link: "",
        },
    ]);
    let b1 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\n{}sync", put("/overlay/sysupgrade.tgz", &node)),
    );
    expect_flash(&b1, Fs::Jffs2);

    let zeros = vec![0u8; 20 << 20];
    let bomb = tgz(&[file("big", &zeros)]);
    assert!(bomb.len() < 64 << 10, "a bomb: {} bytes", bomb.len());
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            "{FACTS}\nfact benign \"$(cat /etc/benign 2>&1)\"\nfact failed \"$(ls /overlay/sysupgrade.tgz.failed)\"\nstatus\nrm /overlay/sysupgrade.tgz.failed\n{}sync",
            put("/overlay/sysupgrade.tgz", &bomb)
        ),
    );
    expect_flash(&b2, Fs::Jffs2);
    let refused = "sysupgrade.tgz not restored: it holds a device node; it is kept as /overlay/sysupgrade.tgz.failed";
    b2.expect(&format!("warning:    {refused}"));
    assert!(
        b2.fact("benign").contains("No such file"),
        "nothing extracted"
    );
    assert_eq!(b2.fact("failed"), "/overlay/sysupgrade.tgz.failed");
    assert_eq!(b2.fact("status_exit"), "0", "still on flash");

    let escape = tgz(&[
        E {
            name: "etc/esc",
            typ: b'2',
            data: b"",
            link: "/run/overlay-init",
        },
        file("etc/esc/evil", b"evil\n"),
        file("/abs-file", b"abs\n"),
    ]);
    let b3 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            "{FACTS}\nfact big \"$(ls /big 2>&1)\"\nstatus\n{}sync",
            put("/overlay/sysupgrade.tgz", &escape)
        ),
    );
    expect_flash(&b3, Fs::Jffs2);
    b3.expect(
        "sysupgrade.tgz not restored: gunzip exit 1: not gzip, damaged, or over 16 MiB unpacked",
    );
    assert!(b3.fact("big").contains("No such file"));

    let b4 = boot_nor(
        &w,
        &flash,
        "",
        &format!(
            r#"{FACTS}
fact evil "$(ls /run/overlay-init/evil 2>&1)"
fact esc "$(stat -c %F /etc/esc 2>&1)"
fact abs "$(cat /abs-file 2>&1)"
fact state "$(grep -c '^persistent=yes' /run/overlay-init/state)"
status"#
        ),
    );
    expect_flash(&b4, Fs::Jffs2);
    assert!(
        b4.fact("evil").contains("No such file"),
        "nothing written outside the root"
    );
    assert_ne!(
        b4.fact("esc"),
        "symbolic link",
        "busybox skips a symlink out of the root"
    );
    assert_eq!(b4.fact("abs"), "abs", "an absolute name lands in the root");
    assert_eq!(b4.fact("state"), "1");
    assert_eq!(b4.fact("status_exit"), "0");
}

/// A `.fs_state` of 1 (PENDING: a reset fstools began and a cut stopped) is
/// a reset request: the next boot resets the upper and sets READY.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_pending_fs_state_is_finished_as_a_reset() {
    let w = Work::new("owrt-pending");
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\necho junk > /root/junk\nln -sfn 1 /overlay/.fs_state\n{SETTLE}"),
    );
    expect_flash(&b1, Fs::Jffs2);
    let b2 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\nfact junk \"$(cat /root/junk 2>&1)\""),
    );
    expect_flash(&b2, Fs::Jffs2);
    assert!(b2.fact("junk").contains("No such file"), "{}", b2.console);
    assert_eq!(b2.fact("fs_state"), "2");
}

/// Flashing back to stock: fstools' `mount_root` (owrt-preinit as init=)
/// boots the data overlay-init left as it is (READY: no wipe), and
/// overlay-init takes it back after.
fn flash_back(fs: Fs) {
    let w = Work::new(&format!("owrt-flash-back-{}", fs.name()));
    let flash = flash(&w);
    let b1 = boot_nor(
        &w,
        &flash,
        fs.first_append(),
        &format!("{FACTS}\necho mine > /root/mine; mkdir -p /root/.ssh; echo key > /root/.ssh/key\n{SETTLE}"),
    );
    expect_flash(&b1, fs);
    let stock = format!("init=/sbin/owrt-preinit {}", fs.first_append());
    let b2 = boot_nor(
        &w,
        &flash,
        &stock,
        r#"fact root "$(fstype /)"; fact overlay "$(fstype /overlay)"
fact mine "$(cat /root/mine 2>&1)"; fact key "$(cat /root/.ssh/key 2>&1)"
echo stock > /root/stock; sync"#,
    );
    b2.expect_clean_run();
    b2.expect("owrt-preinit: mount_root exit 0");
    assert!(!b2.has("overlay-init: overlay-init"), "a stock boot");
    assert!(
        !b2.has("has not been fully initialized"),
        "no wipe:\n{}",
        b2.console
    );
    assert_eq!(b2.fact("root"), "overlay");
    assert_eq!(b2.fact("overlay"), fs.name());
    assert_eq!(
        b2.fact("mine"),
        "mine",
        "the user's data kept:\n{}",
        b2.console
    );
    assert_eq!(b2.fact("key"), "key");
    let b3 = boot_nor(
        &w,
        &flash,
        "",
        &format!("{FACTS}\nfact mine \"$(cat /root/mine)\"; fact stock \"$(cat /root/stock)\""),
    );
    expect_flash(&b3, fs);
    assert_eq!(b3.fact("mine"), "mine");
    assert_eq!(b3.fact("stock"), "stock");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_flash_back_to_stock_mount_root_keeps_the_data_on_jffs2() {
    flash_back(Fs::Jffs2);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn openwrt_flash_back_to_stock_mount_root_keeps_the_data_on_ubifs() {
    flash_back(Fs::Ubifs);
}
