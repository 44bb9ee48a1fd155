//! Hostile uppers and hostile records on the real ARM kernel: a factory
//! reset and its dry run over trees no walk may choke on (a 1,100-level nest
//! made by an unprivileged user, an immutable file, an append-only
//! directory, FIFOs and device nodes, a tree deeper than PATH_MAX), and
//! reset records and keep files that are FIFOs or too large. Whatever the
//! upper holds, every boot stays on flash; what cannot be deleted is said
//! and left for the next boot.

use crate::harness::{boot, boot_qemu, repo, Work};
use crate::reset::VIEW_VS_ROM;
use crate::MOUNTS;

/// Shell lines that install `chattr` (e2fsprogs', from the armhf root the
/// rootfs is built from; its libraries are in the rootfs already) as
/// /tmp/chattr: Debian's busybox has no chattr applet.
fn install_chattr() -> String {
    let bin = repo().join("qemu/cache/armhf-root/usr/bin/chattr");
    let bytes = std::fs::read(&bin)
        .unwrap_or_else(|e| panic!("{}: {e} (run qemu/fetch.sh)", bin.display()));
    format!(
        "base64 -d > /tmp/chattr <<'EOF'\n{}\nEOF\nchmod 755 /tmp/chattr\n",
        base64(&bytes)
    )
}

/// Standard base64 with line breaks every 76 characters.
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in b.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Waits (at most 60 s) until the reset trash is empty, then reports
/// `trash_left` (the number of entries left in it).
const WAIT_FOR_TRASH: &str = r#"
n=0; while [ -n "$(ls -A /overlay/.reset/trash 2>/dev/null)" ] && [ $n -lt 300 ]; do sleep 0.2; n=$((n+1)); done
fact trash_left "$(ls -A /overlay/.reset/trash 2>/dev/null | wc -l)"
"#;

/// Issue 11, defect 1: a nest deeper than the fd limit, made by `nobody`,
/// used to make the reset's trash deletion fail with EMFILE, and the boot
/// then fell back to RAM at every boot (under a realistic CPU rate;
/// `-icount shift=0`). Now the walk holds two fds whatever the depth.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_reset_of_an_1100_level_nest_made_by_a_user_finishes_and_every_boot_stays_on_flash() {
    let w = Work::new("walks-nest");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        r#"
mkdir -p /home/nobody && chown nobody /home/nobody
su -s /bin/sh -c 'cd /home/nobody && i=0; while [ $i -lt 1100 ]; do mkdir a && cd a || exit 1; i=$((i+1)); done; echo deep > bottom && echo "T:depth=$(echo "$PWD" | tr -cd / | wc -c)"' nobody
fact nest_exit $?
overlay-reset -y --no-reboot; fact reset_exit $?
"#,
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("nest_exit"), "0");
    assert_eq!(b1.fact("depth"), "1102", "/home/nobody + 1,100 levels");
    assert_eq!(b1.fact("reset_exit"), "0");
    let icount: Vec<String> = vec!["-icount".into(), "shift=0".into()];
    let b2 = boot_qemu(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nstatus\n{WAIT_FOR_TRASH}\nfact nest \"$(ls -d /home/nobody 2>/dev/null | wc -l)\""),
        &icount,
    );
    b2.expect_clean_run();
    b2.expect("factory reset #1: done in");
    assert_eq!(
        b2.fact("overlay"),
        "ext4",
        "the reset boot is on flash:\n{}",
        b2.console
    );
    b2.expect("persistent: yes");
    assert_eq!(b2.fact("status_exit"), "0");
    assert_eq!(
        b2.fact("trash_left"),
        "0",
        "the nest is deleted:\n{}",
        b2.console
    );
    assert_eq!(b2.fact("nest"), "0");
    for b in [&b2] {
        for l in b.console.lines().filter(|l| l.contains("trash")) {
            eprintln!("nest reset: {l}");
        }
    }
    let b3 = boot_qemu(&w, &disk, "", &format!("{MOUNTS}\nstatus"), &icount);
    b3.expect_clean_run();
    assert_eq!(b3.fact("overlay"), "ext4");
    b3.expect("persistent: yes");
    assert!(!b3.has("trash"), "nothing left to delete:\n{}", b3.console);
}

/// An immutable file, an append-only directory, a FIFO and a device node in
/// the upper: the reset happens, what cannot be deleted stays in the trash
/// (said on the console and in overlay-status), every boot stays on flash,
/// and once the attributes are cleared the next boot deletes the rest.
///
/// The attributes are set on the data filesystem (`/overlay/upper`): a
/// `chattr +i` through the overlay does not reach the upper file (overlayfs
/// keeps it in its `overlay.protattr` xattr), so it never blocks the trash.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn undeletable_files_in_the_trash_are_reported_and_the_boot_stays_on_flash() {
    let w = Work::new("walks-immutable");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        &format!(
            r#"{}
mkfifo /root/fifo && mknod /root/null c 1 3
echo i > /root/immutable && /tmp/chattr +i /overlay/upper/root/immutable; fact chattr_i $?
mkdir /root/appendonly && echo a > /root/appendonly/f && /tmp/chattr +a /overlay/upper/root/appendonly; fact chattr_a $?
rm -f /overlay/upper/root/immutable 2>/dev/null; fact rm_refused $?
overlay-reset -y --no-reboot; fact reset_exit $?
"#,
            install_chattr()
        ),
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("chattr_i"), "0");
    assert_eq!(b1.fact("chattr_a"), "0");
    assert_eq!(b1.fact("rm_refused"), "1", "the file really is immutable");
    assert_eq!(b1.fact("reset_exit"), "0");
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nstatus\n{VIEW_VS_ROM}\nfact left \"$(ls /overlay/.reset/trash/1-upper/root | sort | tr '\\n' ' ')\""),
    );
    b2.expect_clean_run();
    b2.expect("factory reset #1: done in");
    assert_eq!(b2.fact("overlay"), "ext4", "on flash:\n{}", b2.console);
    b2.expect("persistent: yes");
    assert_eq!(b2.fact("diff"), "", "the view is the squashfs");
    assert_eq!(
        b2.fact("left"),
        "appendonly immutable ",
        "only what cannot be deleted is left:\n{}",
        b2.console
    );
    b2.expect("2 entries could not be deleted (first: 1-upper/root/");
    b2.expect(": Operation not permitted");
    b2.expect("they stay in .reset/trash, the next boot tries again");
    let b3 = boot(
        &w,
        &disk,
        "",
        &format!(
            "{}\n{MOUNTS}\n/tmp/chattr -i /overlay/.reset/trash/1-upper/root/immutable\n/tmp/chattr -a /overlay/.reset/trash/1-upper/root/appendonly\nfact cleared $?",
            install_chattr()
        ),
    );
    b3.expect_clean_run();
    assert_eq!(b3.fact("overlay"), "ext4", "every boot stays on flash");
    b3.expect("could not be deleted");
    assert_eq!(b3.fact("cleared"), "0");
    let b4 = boot(&w, &disk, "", &format!("{MOUNTS}\n{WAIT_FOR_TRASH}"));
    b4.expect_clean_run();
    assert_eq!(b4.fact("overlay"), "ext4");
    assert_eq!(b4.fact("trash_left"), "0", "the next boot deletes the rest");
    assert!(!b4.has("could not be deleted"));
}

/// Issue 11, defect 8: the dry run walked the upper by path and silently
/// skipped what lies deeper than PATH_MAX. 200 levels of 50-byte names
/// (10,200 bytes of path; built from the inside out by renames, since the
/// shell cannot `cd` past PATH_MAX) are now listed to the bottom.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn the_dry_run_lists_a_tree_deeper_than_path_max() {
    let w = Work::new("walks-dry");
    let disk = w.standard_disk();
    let n50 = "d".repeat(50);
    let b = boot(
        &w,
        &disk,
        "",
        &format!(
            r#"
mkfifo /root/fifo
cd /root && mkdir {n50} && echo x > {n50}/bottom
i=1; while [ $i -lt 200 ]; do mkdir t && mv {n50} t/ && mv t {n50} || exit 1; i=$((i+1)); done; fact nest_exit $?
cd /
timeout 60 overlay-reset --dry-run --keep /root/fifo > /tmp/dry; fact dry_exit $?
fact bottom "$(grep -c '/bottom$' /tmp/dry)"
fact longest "$(grep '/bottom$' /tmp/dry | wc -c)"
fact dirs "$(grep -c '^remove /root/{n50}' /tmp/dry)"
fact fifo "$(grep -c '^keep   /root/fifo$' /tmp/dry)"
fact summary "$(tail -n1 /tmp/dry)"
"#
        ),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("nest_exit"), "0");
    assert_eq!(b.fact("dry_exit"), "0");
    assert_eq!(
        b.fact("bottom"),
        "1",
        "the bottom of the nest is listed:\n{}",
        b.console
    );
    assert_eq!(
        b.fact("longest"),
        "10220",
        "remove /root + 200 × /d…d + /bottom + newline"
    );
    assert_eq!(b.fact("dirs"), "201", "200 directories and the file");
    assert_eq!(b.fact("fifo"), "1");
    assert!(
        b.fact("summary").contains("nothing changed"),
        "{}",
        b.fact("summary")
    );
}

/// Issue 11, defects 4 and 6: a keep list larger than a request record can
/// hold was accepted by overlay-reset and refused by the next boot; a FIFO
/// as the keep file hung overlay-reset (and PID 1 with overlay.reset=1); a
/// FIFO as the request record hung overlay-status and PID 1.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn oversized_keep_lists_and_fifos_as_records_are_refused_without_hanging() {
    let w = Work::new("walks-records");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        r#"
echo mine > /root/mine
i=0; while [ $i -lt 1250 ]; do echo "/etc/keep/a-rather-long-file-name-to-keep-number-$i-pad"; i=$((i+1)); done > /etc/overlay-reset.keep
fact keep_size "$(wc -c < /etc/overlay-reset.keep)"
timeout 20 overlay-reset -y --no-reboot > /tmp/out 2>&1; fact big_exit $?; cat /tmp/out
fact big_pending "$(ls /overlay/.reset/request 2>/dev/null | wc -l)"
rm /etc/overlay-reset.keep && mkfifo /etc/overlay-reset.keep
timeout 20 overlay-reset -y --no-reboot; fact fifo_keep_exit $?
mkdir -p /overlay/.reset && mkfifo /overlay/.reset/request
timeout 20 overlay-status > /dev/null; fact status_fifo_exit $?
"#,
    );
    b1.expect_clean_run();
    assert!(b1.fact("keep_size").parse::<u32>().unwrap() > 70_000);
    assert_eq!(b1.fact("big_exit"), "1", "refused at write time");
    b1.expect("65536");
    assert_eq!(b1.fact("big_pending"), "0");
    assert_eq!(b1.fact("fifo_keep_exit"), "1", "refused, not hung");
    b1.expect("/etc/overlay-reset.keep: not a regular file");
    assert_ne!(
        b1.fact("status_fifo_exit"),
        "124",
        "overlay-status does not hang"
    );
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!("{MOUNTS}\nfact mine \"$(cat /root/mine)\""),
    );
    b2.expect_clean_run();
    b2.expect("factory reset: the request record is unusable");
    b2.expect("not a regular file");
    assert_eq!(b2.fact("overlay"), "ext4");
    assert_eq!(b2.fact("mine"), "mine", "nothing wiped");
    // The keep file is still a FIFO: a reset from the command line goes
    // on without a keep list, and says why.
    let b3 = boot(
        &w,
        &disk,
        "overlay.reset=1",
        &format!("{MOUNTS}\nfact mine \"$(cat /root/mine 2>/dev/null)\""),
    );
    b3.expect_clean_run();
    b3.expect("/etc/overlay-reset.keep: not a regular file");
    b3.expect("factory reset #1: done in");
    assert_eq!(b3.fact("overlay"), "ext4");
    assert_eq!(b3.fact("mine"), "", "the reset happened");
}
