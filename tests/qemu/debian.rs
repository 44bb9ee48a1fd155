//! A real distribution through overlay-init: Debian bookworm armhf with
//! systemd (qemu/debian-rootfs.sh builds it with mmdebstrap, cached in
//! qemu/cache/debian-rootfs/), booted by the qemu-armv7 board's kernel and
//! initramfs with -m 512.
//!
//! Device layout: one GPT disk, `rootfs` = the Debian squashfs, `rootfs_data`
//! = 128 MiB blank; the script disk as in harness.rs, run by
//! overlay-test-script.service once multi-user.target is reached (after
//! overlay-mark-good.service), which then powers off.

use crate::harness::{repo, Work};
use crate::recovery::{drive, Run};
use std::path::PathBuf;
use std::process::Command;

/// The Debian rootfs squashfs (built on first use, then cached).
pub fn debian_rootfs() -> PathBuf {
    let out = Command::new(repo().join("qemu/debian-rootfs.sh"))
        .output()
        .expect("qemu/debian-rootfs.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qemu/debian-rootfs.sh failed:\n{}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(path.is_file(), "no squashfs at {}", path.display());
    path
}

fn debian_run(disk: &std::path::Path) -> Run<'static> {
    Run {
        qemu: vec!["-m".into(), "512".into()],
        // Boot counting on: overlay-mark-good.service must mark each boot.
        append: "overlay.boot_attempts=2",
        timeout: 300,
        ..Run::disk(disk)
    }
}

/// What the boot counter and overlay-mark-good.service did.
const MARK_FACTS: &str = r#"
overlay-status > /tmp/st; fact status_exit $?
cat /tmp/st
fact count_line "$(grep '^boot count:' /tmp/st)"
fact state_count "$(grep '^boot_count=' /run/overlay-init/state)"
fact markgood "$(systemctl is-active overlay-mark-good.service)"
fact markgood_said "$(journalctl -b -u overlay-mark-good.service -o cat | grep overlay-status | tail -n1)"
"#;

/// Debian with systemd through overlay-init, twice, with boot counting on
/// (`overlay.boot_attempts=2`): systemd runs, overlay-status works under
/// it, overlay-mark-good.service marks each boot good (so the second
/// boot's count is 1 again, not 2), and the changes persist (the
/// machine-id made at the first boot, a file).
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn debian_with_systemd_boots_through_overlay_init_and_keeps_its_changes() {
    let w = Work::new("debian");
    let sqfs = debian_rootfs();
    let disk = w.disk(
        "disk.img",
        &[
            format!("rootfs:auto:{}", sqfs.display()),
            "rootfs_data:128".into(),
        ],
    );
    let first = format!(
        r#"
fact init "$(cat /proc/1/comm)"
fact target "$(systemctl is-active multi-user.target)"
fact machine_id "$(cat /etc/machine-id)"
fact root "$(awk '$2=="/" {{print $3}}' /proc/mounts)"
fact overlay "$(awk '$2=="/overlay" {{print $3}}' /proc/mounts)"
{MARK_FACTS}
echo kept-by-debian > /root/persist
fact uptime "$(cut -d' ' -f1 /proc/uptime)"
"#
    );
    let d1 = drive(&w, &debian_run(&disk), &first);
    let b1 = &d1.boot;
    b1.expect_clean_run();
    assert_eq!(b1.fact("init"), "systemd");
    assert_eq!(b1.fact("target"), "active");
    assert_eq!(b1.fact("root"), "overlay");
    assert_eq!(b1.fact("overlay"), "ext4");
    assert_eq!(
        b1.fact("status_exit"),
        "0",
        "overlay-status under systemd: persistent"
    );
    b1.expect("persistent: yes, changes are saved on /dev/vda2 (ext4)");
    let marked = |b: &crate::harness::Boot| {
        assert_eq!(
            b.fact("markgood"),
            "active",
            "overlay-mark-good.service ran"
        );
        assert_eq!(
            b.fact("markgood_said"),
            "overlay-status: this boot is marked good"
        );
        assert_eq!(
            b.fact("count_line"),
            "boot count: 0 of 2 boots without mark-good; this boot is marked good"
        );
        assert_eq!(
            b.fact("state_count"),
            "boot_count=1",
            "the pre-init counted it"
        );
    };
    marked(b1);
    let id = b1.fact("machine_id");
    assert_eq!(id.len(), 32, "a machine id was made: {id:?}");

    let second = format!(
        r#"
fact machine_id "$(cat /etc/machine-id)"
fact persist "$(cat /root/persist)"
{MARK_FACTS}
fact uptime "$(cut -d' ' -f1 /proc/uptime)"
"#
    );
    let d2 = drive(&w, &debian_run(&disk), &second);
    let b2 = &d2.boot;
    b2.expect_clean_run();
    assert_eq!(b2.fact("machine_id"), id, "the machine id persists");
    assert_eq!(b2.fact("persist"), "kept-by-debian");
    assert!(
        !b2.has("formatting blank"),
        "the upper is not formatted again"
    );
    // 1, not 2: the first boot's mark reset the count.
    marked(b2);
    eprintln!(
        "Debian boots: first {:.1} s to the test script ({} s uptime at its end), whole run {:.1} s; second {:.1} s ({} s uptime), whole run {:.1} s",
        (d1.at("real init reached") - d1.lines[0].0).as_secs_f64(),
        b1.fact("uptime"),
        b1.wall.as_secs_f64(),
        (d2.at("real init reached") - d2.lines[0].0).as_secs_f64(),
        b2.fact("uptime"),
        b2.wall.as_secs_f64()
    );
}
