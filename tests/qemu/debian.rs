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
        timeout: 300,
        ..Run::disk(disk)
    }
}

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
    let first = r#"
fact init "$(cat /proc/1/comm)"
fact target "$(systemctl is-active multi-user.target)"
fact machine_id "$(cat /etc/machine-id)"
fact root "$(awk '$2=="/" {print $3}' /proc/mounts)"
fact overlay "$(awk '$2=="/overlay" {print $3}' /proc/mounts)"
overlay-status; fact status_exit $?
fact markgood "$(systemctl is-active overlay-mark-good.service)"
fact markgood_said "$(journalctl -b -u overlay-mark-good.service -o cat | grep overlay-status | tail -n1)"
fact boot_dir "$(ls -d /overlay/.boot 2>/dev/null || echo none)"
echo kept-by-debian > /root/persist
# Boot counting under systemd: a counted boot, marked by the unit.
/run/overlay-init/bin/overlay-init recovery-selftest count /overlay | sed 's/^T:count=/T:counted=/'
systemctl restart overlay-mark-good.service
/run/overlay-init/bin/overlay-init recovery-selftest read /overlay
fact uptime "$(cut -d' ' -f1 /proc/uptime)"
"#;
    let d1 = drive(&w, &debian_run(&disk), first);
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
    assert_eq!(
        b1.fact("markgood"),
        "active",
        "overlay-mark-good.service ran"
    );
    assert_eq!(
        b1.fact("markgood_said"),
        "overlay-status: boot counting is off: nothing to mark"
    );
    assert_eq!(
        b1.fact("boot_dir"),
        "none",
        "boot counting off: nothing written"
    );
    assert_eq!(b1.fact("counted"), "1");
    assert!(
        b1.fact("read").contains("attempts: 0"),
        "the unit marked the counted boot good: {}",
        b1.fact("read")
    );
    let id = b1.fact("machine_id");
    assert_eq!(id.len(), 32, "a machine id was made: {id:?}");

    let second = r#"
fact machine_id "$(cat /etc/machine-id)"
fact persist "$(cat /root/persist)"
fact uptime "$(cut -d' ' -f1 /proc/uptime)"
"#;
    let d2 = drive(&w, &debian_run(&disk), second);
    let b2 = &d2.boot;
    b2.expect_clean_run();
    assert_eq!(b2.fact("machine_id"), id, "the machine id persists");
    assert_eq!(b2.fact("persist"), "kept-by-debian");
    assert!(
        !b2.has("formatting blank"),
        "the upper is not formatted again"
    );
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
