//! Bad input at boot (issue 11, "Bad-input boots in QEMU"): a damaged root
//! squashfs, hostile command lines, a damaged or full data filesystem, an
//! upper whose layout is wrong, an init in the upper that leads nowhere.
//!
//! Every row checks that
//! - the boot reaches an init, or ends with a clear fatal message (a
//!   `FATAL:` line that gives the reason, then a reboot), never a kernel
//!   panic or a hang;
//! - the reason is on the console (overlay-init's own lines) and, when an
//!   init is reached, in `overlay-status` (a `reason:` or `warning:` line);
//! - the bad medium's bytes are unchanged ([`fingerprint`] before and after:
//!   the partition itself, not a file on it).
//!
//! The block board (qemu-armv7) for every row; the NOR board
//! (qemu-armv7-nor) where the row exists there too: the data partition
//! named as the root or as a lower, an upper whose `upper/` is a file
//! (JFFS2) or whose `work/` is a symlink (UBIFS), a dangling init link
//! (JFFS2). The root squashfs rows are block only: on the NOR board the
//! kernel mounts the root itself, before overlay-init exists.

use crate::harness::{
    boot, boot_nor, boot_nor_cut, fingerprint, flash_partition, out_dir, partition, read_bytes,
    repo, write_bytes, Boot, Work, BOARD, PRELUDE,
};
use crate::MOUNTS;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Facts and overlay-status, its lines marked `S:` (so that they are told
/// apart from the kernel's and overlay-init's console lines).
const STATUS: &str = r#"
fact root "$(fstype /)"; fact overlay "$(fstype /overlay)"
overlay-status > /tmp/status 2>&1; fact status_exit $?
sed 's/^/S:/' /tmp/status
"#;

/// [`crate::harness::boot`] with a command-line tail of any bytes (the
/// harness takes `&str`): qemu/run.sh passes it to QEMU's `-append` as it is.
fn boot_bytes(w: &Work, disk: &Path, append: &OsStr, script: &str) -> Boot {
    let script_file = w.path("script.sh");
    std::fs::write(&script_file, format!("{PRELUDE}\n{script}\n")).unwrap();
    let t = std::time::Instant::now();
    let out = Command::new(repo().join("qemu/run.sh"))
        .args(["--board", BOARD, "--out"])
        .arg(out_dir())
        .arg("--disk")
        .arg(disk)
        .arg("--append")
        .arg(append)
        .arg("--script")
        .arg(&script_file)
        .args(["--timeout", "90"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("qemu/run.sh");
    Boot {
        console: String::from_utf8_lossy(&out.stdout).into_owned(),
        code: out.status.code(),
        killed: false,
        wall: t.elapsed(),
    }
}

/// overlay-status's `reason:` and `warning:` lines (needs [`STATUS`]).
fn status_reasons(b: &Boot) -> Vec<String> {
    b.console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once("S:").map(|(_, s)| s))
        .filter(|s| s.starts_with("reason:") || s.starts_with("warning:"))
        .map(str::to_string)
        .collect()
}

/// overlay-init's own console lines (not overlay-status's `S:` copies).
fn init_lines(b: &Boot) -> Vec<&str> {
    b.console
        .lines()
        .filter(|l| !l.contains("S:") && l.contains("overlay-init: "))
        .collect()
}

/// How a boot ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The real init ran the script (on whatever upper).
    Init,
    /// overlay-init's fatal path: a FATAL line, then the reboot.
    Fatal,
}

/// Checks the row's common demands: an init or a clear fatal message, no
/// panic, no hang; the reason, holding one of `why` (case-insensitive): in
/// overlay-status (a `reason:` or `warning:` line) and the same text on
/// overlay-init's console lines when an init ran, else in the FATAL line.
fn expect_reason(b: &Boot, why: &[&str]) -> End {
    assert!(!b.has("Kernel panic"), "a kernel panic:\n{}", b.console);
    assert!(!b.has("run.sh: timed out"), "the boot hung:\n{}", b.console);
    let holds = |l: &str| {
        let l = l.to_lowercase();
        why.iter().any(|w| l.contains(&w.to_lowercase()))
    };
    let lines = init_lines(b);
    if b.has("overlay-demo: real init reached") {
        b.expect_clean_run();
        let st = status_reasons(b);
        let reason = st.iter().find(|l| holds(l)).unwrap_or_else(|| {
            panic!(
                "overlay-status gives no reason (any of {why:?}); its reason/warning lines: {st:?}\n{}",
                b.console
            )
        });
        // The same reason on the console (its start: a console line may
        // carry more, e.g. the banner's "* reason: ").
        let text = reason
            .split_once(':')
            .map_or(reason.as_str(), |(_, t)| t.trim());
        let head: String = text.chars().take(48).collect();
        assert!(
            lines.iter().any(|l| l.contains(&head)),
            "overlay-status's reason {text:?} is not on the console:\n{}",
            b.console
        );
        eprintln!("outcome: init reached; overlay-status: {reason}");
        End::Init
    } else {
        let fatal = lines
            .iter()
            .find(|l| l.contains("FATAL:"))
            .unwrap_or_else(|| panic!("neither the real init nor a FATAL line:\n{}", b.console));
        let text = fatal.split_once("FATAL:").unwrap().1.trim();
        assert!(
            !text.is_empty() && holds(text),
            "the FATAL line gives no reason (any of {why:?}): {fatal:?}\n{}",
            b.console
        );
        // Then the documented end: a reboot (QEMU ends: -no-reboot), or an
        // emergency shell where the root has one (the NOR board), which
        // [`boot_nor_or_shell`] ends.
        let shell = b.killed && b.has("overlay-init: starting an emergency shell");
        assert!(
            b.code == Some(0) || shell,
            "after the FATAL line neither a reboot nor an emergency shell:\n{}",
            b.console
        );
        eprintln!("outcome: {}", fatal.trim());
        End::Fatal
    }
}

/// Asserts that a partition's fingerprint is what it was before boot `b`,
/// showing overlay-init's lines of that boot when not.
fn expect_unchanged(now: u32, before: u32, b: &Boot, what: &str) {
    assert!(
        now == before,
        "{what}'s bytes changed (crc32 {before:08x} -> {now:08x}); overlay-init said:\n{}",
        init_lines(b).join("\n")
    );
}

/// [`boot_nor`], but a boot that ends in overlay-init's emergency shell
/// (the NOR board's root has /bin/sh; nothing types into it here) is cut
/// a second after the shell starts, not left to the 90 s timeout.
fn boot_nor_or_shell(w: &Work, flash: &Path, append: &str, script: &str) -> Boot {
    boot_nor_cut(
        w,
        flash,
        append,
        script,
        "overlay-init: starting an emergency shell",
        std::time::Duration::from_secs(1),
    )
}

/// Fingerprint of GPT partition `name` of `disk`.
fn part_print(disk: &Path, name: &str) -> u32 {
    let (off, len) = partition(disk, name);
    fingerprint(disk, off, len)
}

/// Fingerprint of MTD partition `name` of a NOR flash image.
fn mtd_print(flash: &Path, name: &str) -> u32 {
    let (off, len) = flash_partition(name);
    fingerprint(flash, off, len)
}

/// A disk whose `rootfs` partition holds the board's squashfs, damaged by
/// `damage` (given the partition's offset and the squashfs's length), and
/// a blank `rootfs_data`.
fn damaged_root_disk(w: &Work, damage: impl Fn(&Path, u64, u64)) -> std::path::PathBuf {
    let disk = w.standard_disk();
    let len = std::fs::metadata(out_dir().join("rootfs.squashfs"))
        .unwrap()
        .len();
    let (off, _) = partition(&disk, "rootfs");
    damage(&disk, off, len);
    disk
}

/// The root squashfs cut to half its length (the rest of its partition
/// zeros), as a flash write interrupted halfway leaves it: the superblock
/// claims the whole size, the tables at the end are gone.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_root_squashfs_truncated_is_a_clear_fatal_error_and_left_unchanged() {
    let w = Work::new("bad-root-truncated");
    let disk = damaged_root_disk(&w, |d, off, len| {
        write_bytes(d, off + len / 2, &vec![0u8; (len - len / 2) as usize]);
    });
    let root = part_print(&disk, "rootfs");
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "rootwait=1", &format!("{MOUNTS}\n{STATUS}"));
    expect_reason(&b, &["root", "/dev/vda1", "squashfs"]);
    expect_unchanged(part_print(&disk, "rootfs"), root, &b, "rootfs");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// The root squashfs with 64 bits flipped in its inode and directory
/// tables (where the superblock says they are; the data blocks are left,
/// so that what breaks is the lookup of the init, not busybox's code).
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_root_squashfs_with_bit_flips_is_a_clear_outcome_and_left_unchanged() {
    let w = Work::new("bad-root-flips");
    let disk = damaged_root_disk(&w, |d, off, len| {
        let sb = read_bytes(d, off, 96);
        let le64 = |at: usize| u64::from_le_bytes(sb[at..at + 8].try_into().unwrap());
        // squashfs 4 superblock: inode_table_start at 64, fragment table at 80.
        let (tables, end) = (le64(64), le64(80).min(len));
        assert!(tables < end && end <= len, "{tables} {end} {len}");
        let mut x: u64 = 0x5eed_f1195;
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = off + tables + x % (end - tables);
            let mut byte = read_bytes(d, at, 1);
            byte[0] ^= 1 << (x >> 61);
            write_bytes(d, at, &byte);
        }
    });
    let root = part_print(&disk, "rootfs");
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "rootwait=1", &format!("{MOUNTS}\n{STATUS}"));
    if expect_reason(&b, &["root", "/dev/vda1", "squashfs", "init", "/rom"]) == End::Init {
        assert_ne!(
            b.fact("status_exit"),
            "0",
            "a damaged root is not a normal persistent boot:\n{}",
            b.console
        );
    }
    expect_unchanged(part_print(&disk, "rootfs"), root, &b, "rootfs");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// The value of a 3,000-byte `overlay.lower=` (the kernel keeps the first
/// 1,023 bytes of the command line on ARM: what arrives is still some 900
/// bytes) naming no partition, waited for 1 s.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_cmdline_a_3000_byte_value_keeps_its_reason() {
    let w = Work::new("bad-cmdline-long");
    let disk = w.standard_disk();
    let root = part_print(&disk, "rootfs");
    let value = format!("PARTLABEL={}", "B".repeat(2990));
    let b = boot(
        &w,
        &disk,
        &format!("rootwait=1 overlay.lower={value}"),
        &format!("{MOUNTS}\n{STATUS}"),
    );
    expect_reason(&b, &["PARTLABEL=BBBBBBBB"]);
    // The message keeps its reason: words after the (shortened) value.
    let line = init_lines(&b)
        .into_iter()
        .find(|l| l.contains("PARTLABEL=BBBBBBBB"))
        .unwrap();
    let rest = line.rsplit_once("BBBB").map_or("", |(_, r)| r);
    assert!(
        rest.trim_start_matches(['B', '.', '…', ' ']).trim().len() >= 8,
        "the line ends with the value, its reason lost: {line:?}"
    );
    expect_unchanged(part_print(&disk, "rootfs"), root, &b, "rootfs");
}

/// Non-UTF-8 bytes in an overlay-init key and in init's arguments: the bad
/// value is reported (the rest of the line still applies), the boot goes on
/// on flash (tests/qemu/pid1.rs checks the real init gets its argument
/// byte for byte). No medium
/// is bad in this row; the root's bytes are checked all the same.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_cmdline_non_utf8_bytes_are_reported_and_the_boot_goes_on() {
    let w = Work::new("bad-cmdline-bytes");
    let disk = w.standard_disk();
    let root = part_print(&disk, "rootfs");
    let mut append = b"overlay.fstype=ext\xe94 -- caf\xe9".to_vec();
    append.insert(0, b' ');
    let b = boot_bytes(
        &w,
        &disk,
        &OsString::from_vec(append),
        &format!("{MOUNTS}\n{STATUS}"),
    );
    assert_eq!(expect_reason(&b, &["overlay.fstype="]), End::Init);
    assert_eq!(b.fact("overlay"), "ext4", "the boot is on flash");
    assert_eq!(b.fact("status_exit"), "0");
    // That the init gets `caf\xe9` byte for byte is tests/qemu/pid1.rs's
    // (busybox init blanks its own /proc/1/cmdline: it needs a script init).
    expect_unchanged(part_print(&disk, "rootfs"), root, &b, "rootfs");
}

/// `overlay.data=` naming the root's own partition (a squashfs): never
/// formatted or written; the boot reaches init on RAM and says why.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_cmdline_data_naming_the_root_partition_leaves_it_alone() {
    let w = Work::new("bad-cmdline-data-root");
    let disk = w.standard_disk();
    let root = part_print(&disk, "rootfs");
    let data = part_print(&disk, "rootfs_data");
    let b = boot(
        &w,
        &disk,
        "overlay.data=PARTLABEL=rootfs",
        &format!("{MOUNTS}\n{STATUS}"),
    );
    assert_eq!(
        expect_reason(&b, &["PARTLABEL=rootfs", "/dev/vda1"]),
        End::Init
    );
    assert_ne!(b.fact("status_exit"), "0", "not persistent");
    expect_unchanged(part_print(&disk, "rootfs"), root, &b, "rootfs");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// Boot 1 of the rows below: formats the blank data partition and writes a
/// user file (and `extra`), cleanly powered off.
fn formatted_disk_with_user_file(w: &Work, extra: &str) -> std::path::PathBuf {
    let disk = w.standard_disk();
    let b = boot(
        w,
        &disk,
        "",
        &format!("echo mine > /root/mine && sync && fact mine ok\n{extra}"),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("mine"), "ok");
    if extra.contains("fact made") {
        assert_eq!(b.fact("made"), "yes", "boot 1 damaged the upper");
    }
    disk
}

/// After a row's bad boot: a normal boot (through `boot_fn`) finds the
/// user's file on the flash upper `fs`.
fn expect_user_file_kept(
    w: &Work,
    image: &Path,
    boot_fn: fn(&Work, &Path, &str, &str) -> Boot,
    fs: &str,
) {
    let b = boot_fn(
        w,
        image,
        "",
        &format!("{MOUNTS}\nfact mine \"$(cat /root/mine)\""),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("overlay"), fs);
    assert_eq!(b.fact("mine"), "mine", "the user's file survived");
}

/// `overlay.lower=` naming the data partition: the same filesystem would be
/// a read-only lower and the read-write upper at once. The boot must not
/// write the data partition (its bytes unchanged), must say why, and the
/// next normal boot finds the user's file.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_cmdline_lower_naming_the_data_partition_is_refused() {
    let w = Work::new("bad-cmdline-lower-data");
    let disk = formatted_disk_with_user_file(&w, "");
    let data = part_print(&disk, "rootfs_data");
    let b = boot(
        &w,
        &disk,
        "overlay.lower=PARTLABEL=rootfs_data",
        &format!("{MOUNTS}\n{STATUS}"),
    );
    // The reason names the cause, the `overlay.lower=` setting, not only
    // a symptom such as a failed mount.
    expect_reason(&b, &["lower"]);
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
    expect_user_file_kept(&w, &disk, boot, "ext4");
}

/// The data partition's ext4 primary superblock damaged (its counts and
/// geometry scribbled, the magic kept, so that it is still taken for ext4):
/// e2fsck -p cannot repair that alone; the boot runs on RAM, says why, and
/// writes nothing to the partition.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_data_corrupt_ext4_superblock_is_left_unchanged() {
    let w = Work::new("bad-data-sb");
    let disk = formatted_disk_with_user_file(&w, "");
    let (off, _) = partition(&disk, "rootfs_data");
    // Superblock at 1024: bytes 0..0x38 (inode/block counts, first data
    // block, block size, ...) before the magic at 0x38.
    let mut x: u32 = 0x5b;
    let junk: Vec<u8> = (0..0x38)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    write_bytes(&disk, off + 1024, &junk);
    assert_eq!(
        read_bytes(&disk, off + 1024 + 0x38, 2),
        [0x53, 0xef],
        "magic kept"
    );
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(
        expect_reason(&b, &["/dev/vda2", "superblock", "fsck"]),
        End::Init
    );
    assert_eq!(b.fact("overlay"), "tmpfs");
    assert_eq!(b.fact("status_exit"), "2");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// An ext4 upper filled to 100% (as root: the reserved blocks too) with its
/// `work/` in place, by boot 2, after the wear log exists (so that no
/// log write of boot 3 fails and warns by chance): boot 3 stays on flash
/// (the user's data is there) and overlay-status warns that it is full.
/// The flash is in read-write use, so its bytes are not compared: the
/// user's file is.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_data_a_full_ext4_upper_boots_on_flash_with_a_warning() {
    let w = Work::new("bad-data-full");
    let disk = formatted_disk_with_user_file(&w, "");
    let fill = boot(
        &w,
        &disk,
        "",
        "fact log \"$(stat -c %s /overlay/.wear/log)\"\ndd if=/dev/zero of=/overlay/fill bs=64k 2>/dev/null; sync\nfact avail \"$(df -k /overlay | awk 'NR==2 {print $4}')\"",
    );
    fill.expect_clean_run();
    assert_eq!(fill.fact("log"), "4160", "the wear log exists");
    assert_eq!(fill.fact("avail"), "0", "the upper is full");
    let b = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\n{STATUS}\nfact mine \"$(cat /root/mine)\"\nfact use \"$(df /overlay | awk 'NR==2 {{print $5}}')\""),
    );
    assert_eq!(expect_reason(&b, &["full", "no space"]), End::Init);
    assert_eq!(b.fact("overlay"), "ext4", "on flash");
    assert_eq!(b.fact("status_exit"), "0");
    assert_eq!(b.fact("mine"), "mine");
    assert_eq!(b.fact("use"), "100%", "the upper is full");
}

/// An upper whose `upper/` is a regular file (made by boot 1 under the
/// running overlay): no overlay on it; the boot reaches init, says why, and
/// leaves the partition's bytes unchanged.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_upper_whose_upper_dir_is_a_file_is_left_unchanged() {
    let w = Work::new("bad-upper-file");
    let disk = formatted_disk_with_user_file(
        &w,
        "mv /overlay/upper /overlay/upper.old && echo not-a-dir > /overlay/upper && sync && fact made yes",
    );
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["upper"]), End::Init);
    assert_ne!(b.fact("status_exit"), "0");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// An upper whose `work/` is a symlink (to /tmp): never followed; the boot
/// reaches init, says why, and leaves the partition's bytes unchanged.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_upper_whose_work_dir_is_a_symlink_is_left_unchanged() {
    let w = Work::new("bad-work-link");
    let disk = formatted_disk_with_user_file(
        &w,
        "mv /overlay/work /overlay/work.old && ln -s /tmp /overlay/work && sync && fact made yes",
    );
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["work"]), End::Init);
    assert_ne!(b.fact("status_exit"), "0");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// `upper/sbin/init` a dangling symlink: the init check refuses it; the
/// lowers boot with a RAM upper, saying why; the partition's bytes unchanged.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn bad_upper_with_a_dangling_init_symlink_is_left_unchanged() {
    let w = Work::new("bad-init-link");
    let disk = formatted_disk_with_user_file(
        &w,
        "rm /sbin/init && ln -s /nonexistent/init /sbin/init && sync && fact made yes",
    );
    let data = part_print(&disk, "rootfs_data");
    let b = boot(&w, &disk, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["init"]), End::Init);
    assert_eq!(b.fact("status_exit"), "2");
    expect_unchanged(part_print(&disk, "rootfs_data"), data, &b, "rootfs_data");
}

/// Boot 1 of the NOR rows: the blank flash becomes `fs` (`ubi.mtd=` for
/// UBIFS), a user file and `extra` written, 2 s for JFFS2's clean markers.
fn nor_flash_with_user_file(w: &Work, fs: &str, extra: &str) -> std::path::PathBuf {
    let flash = w.nor_flash(None);
    let append = if fs == "ubifs" {
        "ubi.mtd=rootfs_data"
    } else {
        ""
    };
    let b = boot_nor(
        w,
        &flash,
        append,
        &format!(
            "{MOUNTS}\necho mine > /root/mine && sync && fact mine ok\n{extra}\nsleep 2; sync"
        ),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("overlay"), fs);
    assert_eq!(b.fact("mine"), "ok");
    if extra.contains("fact made") {
        assert_eq!(b.fact("made"), "yes", "boot 1 damaged the upper");
    }
    flash
}

/// NOR: `overlay.data=mtd:rootfs`, the squashfs's own (read-only) MTD
/// partition: left alone, the boot on RAM says why.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_bad_cmdline_data_naming_the_root_partition_leaves_it_alone() {
    let w = Work::new("nor-bad-data-root");
    let flash = w.nor_flash(None);
    let root = mtd_print(&flash, "rootfs");
    let data = mtd_print(&flash, "rootfs_data");
    let b = boot_nor_or_shell(
        &w,
        &flash,
        "overlay.data=mtd:rootfs",
        &format!("{MOUNTS}\n{STATUS}"),
    );
    assert_eq!(
        expect_reason(&b, &["mtd:rootfs", "mtd1", "\"rootfs\""]),
        End::Init
    );
    assert_ne!(b.fact("status_exit"), "0", "not persistent");
    expect_unchanged(mtd_print(&flash, "rootfs"), root, &b, "rootfs");
    expect_unchanged(mtd_print(&flash, "rootfs_data"), data, &b, "rootfs_data");
}

/// NOR: `overlay.lower=/dev/mtdblock2`, the JFFS2 data partition as a
/// lower too: not written by this boot, the reason given, the user's file
/// there at the next normal boot.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_bad_cmdline_lower_naming_the_data_partition_is_refused() {
    let w = Work::new("nor-bad-lower-data");
    let flash = nor_flash_with_user_file(&w, "jffs2", "");
    let data = mtd_print(&flash, "rootfs_data");
    let b = boot_nor_or_shell(
        &w,
        &flash,
        "overlay.lower=/dev/mtdblock2",
        &format!("{MOUNTS}\n{STATUS}"),
    );
    expect_reason(&b, &["lower"]);
    expect_unchanged(mtd_print(&flash, "rootfs_data"), data, &b, "rootfs_data");
    expect_user_file_kept(&w, &flash, boot_nor, "jffs2");
}

/// NOR, JFFS2: `upper/` a regular file.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_bad_upper_whose_upper_dir_is_a_file_is_left_unchanged() {
    let w = Work::new("nor-bad-upper-file");
    let flash = nor_flash_with_user_file(
        &w,
        "jffs2",
        "mv /overlay/upper /overlay/upper.old && echo not-a-dir > /overlay/upper && sync && fact made yes",
    );
    let data = mtd_print(&flash, "rootfs_data");
    let b = boot_nor_or_shell(&w, &flash, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["upper"]), End::Init);
    assert_ne!(b.fact("status_exit"), "0");
    expect_unchanged(mtd_print(&flash, "rootfs_data"), data, &b, "rootfs_data");
}

/// NOR, UBIFS: `work/` a symlink.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_bad_upper_whose_work_dir_is_a_symlink_is_left_unchanged() {
    let w = Work::new("nor-bad-work-link");
    let flash = nor_flash_with_user_file(
        &w,
        "ubifs",
        "mv /overlay/work /overlay/work.old && ln -s /tmp /overlay/work && sync && fact made yes",
    );
    let data = mtd_print(&flash, "rootfs_data");
    let b = boot_nor_or_shell(&w, &flash, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["work"]), End::Init);
    assert_ne!(b.fact("status_exit"), "0");
    expect_unchanged(mtd_print(&flash, "rootfs_data"), data, &b, "rootfs_data");
}

/// NOR, JFFS2: `upper/sbin/init` a dangling symlink.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn nor_bad_upper_with_a_dangling_init_symlink_is_left_unchanged() {
    let w = Work::new("nor-bad-init-link");
    let flash = nor_flash_with_user_file(
        &w,
        "jffs2",
        "rm /sbin/init && ln -s /nonexistent/init /sbin/init && sync && fact made yes",
    );
    let data = mtd_print(&flash, "rootfs_data");
    let b = boot_nor_or_shell(&w, &flash, "", &format!("{MOUNTS}\n{STATUS}"));
    assert_eq!(expect_reason(&b, &["init"]), End::Init);
    assert_eq!(b.fact("status_exit"), "2");
    expect_unchanged(mtd_print(&flash, "rootfs_data"), data, &b, "rootfs_data");
}
