//! overlay-reset on the real ARM kernel: the view after a reset equals the
//! squashfs, the keep list survives, power cuts at every step resume.

use crate::harness::{boot, cut_by_test_hook, Work};
use crate::MOUNTS;

/// Prints a fact `diff` listing what differs between the merged root and the
/// squashfs (paths and file contents), ignoring the mount points.
pub const VIEW_VS_ROM: &str = r#"
list() { (cd "$1" && find . -xdev | sort | while read -r p; do
  if [ -f "$p" ] && [ ! -L "$p" ]; then echo "$p $(md5sum < "$p" | cut -c1-8)"; else echo "$p"; fi; done); }
list / > /tmp/view; list /rom > /tmp/rom
fact diff "$(diff /tmp/rom /tmp/view | grep '^[-+]\.' | tr '\n' ' ')"
"#;

/// The user's changes of every kind, a keep list, and its kept files.
pub const CHANGES: &str = r##"
printf '/etc/overlay-reset.keep\n/etc/keep/*\n' > /etc/overlay-reset.keep
mkdir -p /etc/keep && echo secret > /etc/keep/a && echo other > /etc/keep/.b
echo junk > /root/junk
mkdir -p /root/.hidden/dir && echo h > /root/.hidden/dir/f && echo h > /.dotfile
echo "# modified" >> /etc/profile
rm /bin/vi
rm /etc/group
# An opaque directory: a lower directory deleted and made again.
rm -r /usr/lib && mkdir /usr/lib && echo x > /usr/lib/new-in-opaque-dir
mkdir /newdir && ln -s /rom /newdir/link-to-rom
"##;

fn expect_reset_view(b: &crate::harness::Boot) {
    assert_eq!(
        b.fact("diff"),
        "+./etc/keep +./etc/keep/.b ba7790b1 +./etc/keep/a dd02c7c2 +./etc/overlay-reset.keep ab877a0e ",
        "after the reset the root is the squashfs plus the kept files:\n{}",
        b.console
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_reset_restores_the_squashfs_view_keeps_the_list_and_happens_once() {
    let w = Work::new("reset");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        &format!("{CHANGES}\noverlay-reset -y --no-reboot; fact reset_exit $?\nstatus"),
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("reset_exit"), "0");
    b1.expect("reset:      PENDING: reset #1 at the next boot (keeping 2 path(s))");
    let b2 = boot(
        &w,
        &disk,
        "",
        &format!(
            "{VIEW_VS_ROM}\nfact keep \"$(cat /etc/keep/a)\"\nstatus\necho new > /root/after-reset"
        ),
    );
    b2.expect_clean_run();
    b2.expect("factory reset #1: wiping the upper layer (keeping 2 path(s))");
    b2.expect("reset:      at this boot: reset #1 done in");
    assert_eq!(b2.fact("keep"), "secret");
    expect_reset_view(&b2);
    // No wipe loop: what is written after the reset stays.
    let b3 = boot(&w, &disk, "", "fact after \"$(cat /root/after-reset)\"");
    b3.expect_clean_run();
    assert_eq!(b3.fact("after"), "new");
    assert!(
        !b3.has("factory reset #"),
        "a completed reset is never repeated"
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn reset_dry_run_cancel_and_refusals() {
    let w = Work::new("reset-cli");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        r#"
echo data > /root/data
overlay-reset --dry-run --keep /root/data > /tmp/dry; fact dry_exit $?
fact dry_keep "$(grep -c '^keep   /root/data$' /tmp/dry)"
overlay-reset --dry-run > /tmp/dry2; fact dry_remove "$(grep -c '^remove /root/data$' /tmp/dry2)"
fact after_dry "$(cat /root/data) $(ls /overlay/.reset 2>/dev/null | wc -l)"
overlay-reset --no-reboot < /dev/null; fact notty_exit $?
su -s /bin/sh -c "/usr/sbin/overlay-reset -y --no-reboot" nobody; fact nonroot_exit $?
overlay-reset --keep relative/path -y --no-reboot; fact badarg_exit $?
overlay-reset --help | grep -q -- '--dry-run' && fact help ok
overlay-reset -y --no-reboot; fact sched_exit $?
overlay-status | grep -q PENDING && fact pending yes
overlay-reset --cancel; fact cancel_exit $?
overlay-status | grep -q PENDING && fact pending_after_cancel yes || fact pending_after_cancel no
"#,
    );
    b1.expect_clean_run();
    assert_eq!(b1.fact("dry_exit"), "0");
    assert_eq!(b1.fact("dry_keep"), "1");
    assert_eq!(b1.fact("dry_remove"), "1");
    assert_eq!(b1.fact("after_dry"), "data 0", "a dry run changes nothing");
    assert_eq!(b1.fact("notty_exit"), "1");
    b1.expect("refusing without confirmation: no terminal to ask on; pass -y");
    assert_eq!(b1.fact("nonroot_exit"), "1");
    b1.expect("overlay-reset: must be run as root");
    assert_eq!(b1.fact("badarg_exit"), "2");
    assert_eq!(b1.fact("help"), "ok");
    assert_eq!(b1.fact("sched_exit"), "0");
    assert_eq!(b1.fact("pending"), "yes");
    assert_eq!(b1.fact("cancel_exit"), "0");
    assert_eq!(b1.fact("pending_after_cancel"), "no");
    let b2 = boot(&w, &disk, "", "fact data \"$(cat /root/data)\"");
    b2.expect_clean_run();
    assert_eq!(b2.fact("data"), "data", "a cancelled reset does not happen");
    assert!(!b2.has("factory reset #"));

    let t = boot(
        &w,
        &disk,
        "overlayroot=tmpfs",
        "overlay-reset -y --no-reboot; fact tmpfs_exit $?",
    );
    t.expect_clean_run();
    assert_eq!(t.fact("tmpfs_exit"), "1");
    t.expect("the upper layer is a tmpfs: nothing to reset");
}

/// Every step of the wipe, and the trash deletion early and late.
pub const KILL_POINTS: [&str; 10] = [
    "keep:1",
    "keep:2",
    "trash:1",
    "trash:2",
    "fresh:1",
    "restore:1",
    "done:1",
    "clear:1",
    "delete:1",
    // Deep in the deletion, yet within what a loaded machine deletes in
    // the boot's 1 s budget (about 300 entries seen under load).
    "delete:150",
];

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_power_cut_at_any_step_of_the_reset_is_finished_by_the_next_boot() {
    let w = Work::new("reset-cut");
    let disk = w.standard_disk();
    let prep = boot(&w, &disk, "", &format!("{CHANGES}\nmkdir /root/many; i=0; while [ $i -lt 500 ]; do : > /root/many/f$i; i=$((i+1)); done\noverlay-reset -y --no-reboot; fact reset_exit $?"));
    prep.expect_clean_run();
    for point in KILL_POINTS {
        let d = cut_by_test_hook(&w, &disk, point, boot);
        let after = boot(&w, &d, "", &format!("{VIEW_VS_ROM}\nfact request \"$(ls /overlay/.reset/request 2>&1 | grep -c 'No such')\""));
        after.expect_clean_run();
        expect_reset_view(&after);
        assert_eq!(
            after.fact("request"),
            "1",
            "{point}: the request is gone once the reset is complete"
        );
    }
    eprintln!(
        "reset power-cut points tried: {} ({})",
        KILL_POINTS.len(),
        KILL_POINTS.join(", ")
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn the_wipe_never_follows_symlinks_out_of_the_upper() {
    let w = Work::new("reset-symlinks");
    let disk = w.standard_disk();
    let b1 = boot(
        &w,
        &disk,
        "",
        r#"
echo precious > /overlay/precious-outside-upper
ln -s /overlay /root/to-data-root
ln -s /rom/bin /root/to-rom
ln -s / /root/to-root
ln -s /overlay/precious-outside-upper /root/to-file
overlay-reset -y --no-reboot; fact reset_exit $?
"#,
    );
    b1.expect_clean_run();
    let b2 = boot(&w, &disk, "", &format!("{MOUNTS}\nfact precious \"$(cat /overlay/precious-outside-upper)\"\nfact rom \"$(ls /rom/bin | wc -l)\"\nfact links \"$(ls -d /root/to-* 2>/dev/null | wc -l)\""));
    b2.expect_clean_run();
    assert_eq!(b2.fact("precious"), "precious");
    assert_eq!(b2.fact("links"), "0", "the symlinks themselves are removed");
    assert_ne!(b2.fact("rom"), "0");
    assert_eq!(b2.fact("overlay"), "ext4");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_corrupt_reset_request_is_reported_and_ignored() {
    let w = Work::new("reset-corrupt");
    let disk = w.standard_disk();
    let b1 = boot(&w, &disk, "", "echo mine > /root/mine\nmkdir -p /overlay/.reset\nprintf 'OVRESET1garbage-garbage-garbage' > /overlay/.reset/request");
    b1.expect_clean_run();
    let b2 = boot(&w, &disk, "", "fact mine \"$(cat /root/mine)\"\nstatus");
    b2.expect_clean_run();
    b2.expect("factory reset: the request record is unusable");
    assert_eq!(b2.fact("mine"), "mine");
    assert_eq!(b2.fact("status_exit"), "0");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn resetting_ten_thousand_files_is_bounded_at_boot_and_finished_in_background() {
    let w = Work::new("reset-10k");
    let disk = w.standard_disk();
    let b1 = boot(&w, &disk, "", "mkdir /root/many; i=0; while [ $i -lt 10000 ]; do : > /root/many/f$i; i=$((i+1)); done\nsync\nfact n \"$(ls /root/many | wc -l)\"\noverlay-reset -y --no-reboot");
    b1.expect_clean_run();
    assert_eq!(b1.fact("n"), "10000");
    let b2 = boot(&w, &disk, "", "while [ -n \"$(ls /overlay/.reset/trash 2>/dev/null)\" ]; do sleep 0.2; done\nfact gone \"$([ -e /root/many ] && echo no || echo yes)\"\ndmesg | grep 'background trash deletion done' | sed 's/^/T:dmesg_bg=/'");
    b2.expect_clean_run();
    assert_eq!(b2.fact("gone"), "yes");
    let lines: Vec<&str> = b2
        .console
        .lines()
        .filter(|l| l.contains("factory reset"))
        .collect();
    assert!(lines.iter().any(|l| l.contains("done in")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("trash deleted") || l.contains("background trash deletion done")),
        "{lines:#?}"
    );
    if b2.has("the rest goes in the background") {
        assert!(
            b2.fact("dmesg_bg")
                .contains("overlay-init: factory reset: background trash deletion done"),
            "the background deleter logs to dmesg"
        );
    }
    for l in lines {
        eprintln!("10k reset: {l}");
    }
}
