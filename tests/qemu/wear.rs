//! Flash wear on the real ARM kernel (issue 4): what a critically worn flash
//! does under each `overlay.wear_policy`, the wear log across boots, the
//! run-time monitor naming a writer, and `overlay-status --wear` / `--json`.
//!
//! The flash is made "worn" by the settings, not by writing it for years:
//! `pe_cycles:1` rates it for one write of its capacity, so the ext4
//! lifetime write counter of a few MiB is already a large part of its life.

use crate::harness::{boot, boot_qemu, fingerprint, partition, Boot, Work};
use crate::MOUNTS;

/// Shell helper: sectors written since boot to the data partition (found by
/// its GPT name, never by position), field 7 of its `stat`.
const DATA_SECTORS: &str = r#"
data_sectors() {
  for u in /sys/class/block/*/uevent; do
    if grep -q '^PARTNAME=rootfs_data$' "$u"; then awk '{print $7}' "${u%/uevent}/stat"; return; fi
  done
  echo none
}
"#;

/// Shell helper: md5sum of a file, the sum only.
const SUM: &str = r#"
sum() { md5sum < "$1" | cut -d' ' -f1; }
"#;

/// Boot 1 of several tests: formats the blank flash and writes a user file
/// of `mib` MiB, synced; returns its md5sum.
fn first_boot_with_file(w: &Work, disk: &std::path::Path, name: &str, mib: u32) -> String {
    let b = boot(
        w,
        disk,
        "",
        &format!(
            "{SUM}\ndd if=/dev/urandom of=/root/{name} bs=1M count={mib} 2>/dev/null && sync\nfact sum \"$(sum /root/{name})\""
        ),
    );
    b.expect_clean_run();
    b.expect("first boot: formatting blank /dev/vda2 as ext4");
    let sum = b.fact("sum");
    assert_eq!(sum.len(), 32, "{}", b.console);
    sum
}

/// The data partition's bytes (host side), to prove a boot left them alone.
fn data_fingerprint(disk: &std::path::Path) -> u32 {
    let (off, len) = partition(disk, "rootfs_data");
    fingerprint(disk, off, len)
}

/// The line of the console that contains `needle` (first one).
fn line_with<'a>(b: &'a Boot, needle: &str) -> &'a str {
    b.console
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} on the console:\n{}", b.console))
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_critical_flash_is_protected_read_only_and_nothing_is_lost() {
    let w = Work::new("wear-protect");
    let disk = w.standard_disk();
    let sum = first_boot_with_file(&w, &disk, "big", 8);

    // Boot 2: 8 MiB written on a flash rated for one write of its 69 MiB
    // disk: 12% of its life, critical at 10%. Default policy: protect.
    let before = data_fingerprint(&disk);
    let b2 = boot(
        &w,
        &disk,
        "overlay.wear=pe_cycles:1,warn:5,critical:10",
        &format!(
            r#"{DATA_SECTORS}{SUM}{MOUNTS}
fact w_start "$(data_sectors)"
fact sum "$(sum /root/big)"
dd if=/dev/urandom of=/root/new bs=1M count=2 2>/dev/null && sync && fact new_written yes
fact new_sum "$(sum /root/new)"
touch /overlay/direct 2>/dev/null && fact flash_writable yes || fact flash_writable no
sync
fact w_end "$(data_sectors)"
fact overlay_mount "$(mount | grep ' on /overlay ')"
fact ram "$(fstype /run/overlay-init/ram)"
status
"#
        ),
    );
    b2.expect_clean_run();
    b2.expect("flash wear: ext4:vda2: writes since mkfs against capacity × P/E cycles: ");
    b2.expect("of its life used (warn at 5%, critical at 10%)");
    b2.expect("flash protected: /dev/vda2 is read-only at /overlay");
    assert_eq!(b2.fact("sum"), sum, "the user's file, from the flash");
    assert_eq!(b2.fact("new_written"), "yes", "new files work (in RAM)");
    assert_eq!(b2.fact("new_sum").len(), 32);
    assert_eq!(b2.fact("flash_writable"), "no");
    assert_eq!(
        b2.fact("w_start"),
        "0",
        "nothing written to the flash by the boot"
    );
    assert_eq!(
        b2.fact("w_end"),
        "0",
        "a new file and sync still write nothing to the flash"
    );
    let m = b2.fact("overlay_mount");
    assert!(
        m.starts_with("/dev/vda2 on /overlay type ext4 (ro,"),
        "the flash is mounted read-only: {m}"
    );
    assert_eq!(b2.fact("ram"), "tmpfs");
    assert_eq!(b2.fact("root"), "overlay");
    assert_eq!(b2.fact("status_exit"), "2");
    b2.expect("persistent: NO, changes live in RAM");
    b2.expect("lower 0:    /dev/vda2 (ext4, extra) at /overlay/upper");
    // The RAM upper is not at /overlay: that is the read-only flash.
    b2.expect("upper:      tmpfs (25% of RAM at most) at /run/overlay-init/ram");
    b2.expect("wear:       flash worn out: its data is shown read-only under a tmpfs upper, changes are lost at reboot (device level critical) (overlay-status --wear)");
    assert!(
        !b2.has("wear log: record #"),
        "a protected boot keeps no log"
    );
    assert_eq!(
        data_fingerprint(&disk),
        before,
        "the protected boot changed the data partition (poweroff included)"
    );

    // Boot 3, default settings: persistent again; the RAM file is gone, the
    // user's file is still there.
    let b3 = boot(
        &w,
        &disk,
        "",
        &format!(
            "{SUM}{MOUNTS}\nfact sum \"$(sum /root/big)\"\nfact new \"$([ -e /root/new ] && echo present || echo absent)\"\nstatus"
        ),
    );
    b3.expect_clean_run();
    assert_eq!(b3.fact("sum"), sum, "data not lost");
    assert_eq!(b3.fact("new"), "absent", "what boot 2 wrote was in RAM");
    assert_eq!(b3.fact("overlay"), "ext4");
    assert_eq!(b3.fact("status_exit"), "0");
    b3.expect("persistent: yes, changes are saved on /dev/vda2 (ext4)");
    b3.expect("flash wear ok (device level ok)");
    b3.expect("wear log: record #1 written");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_policy_tmpfs_runs_on_ram_and_keeps_the_flash_for_later() {
    let w = Work::new("wear-tmpfs");
    let disk = w.standard_disk();
    let sum = first_boot_with_file(&w, &disk, "mine", 2);

    // 2 MiB on a flash rated for 1 MiB of writes: critical at the default 95%.
    let before = data_fingerprint(&disk);
    let b2 = boot(
        &w,
        &disk,
        "overlay.wear_policy=tmpfs overlay.wear=pe_cycles:1,capacity:1m",
        &format!(
            "{MOUNTS}\nfact mine \"$([ -e /root/mine ] && echo visible || echo hidden)\"\necho ram > /root/ram && fact writable yes\nstatus"
        ),
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("overlay"), "tmpfs");
    assert_eq!(b2.fact("root"), "overlay");
    assert_eq!(
        b2.fact("mine"),
        "hidden",
        "a plain tmpfs upper: the flash's files are not shown"
    );
    assert_eq!(b2.fact("writable"), "yes");
    assert_eq!(b2.fact("status_exit"), "2");
    b2.expect("RUNNING ON RAM (tmpfs upper): changes will be LOST at reboot");
    b2.expect("* reason: flash worn out: booting on a tmpfs upper, changes are lost at reboot (overlay.wear_policy=tmpfs)");
    b2.expect("reason:     flash worn out: booting on a tmpfs upper, changes are lost at reboot (overlay.wear_policy=tmpfs)");
    b2.expect("(warn at 80%, critical at 95%)");
    assert_eq!(data_fingerprint(&disk), before, "the flash was not touched");

    let b3 = boot(
        &w,
        &disk,
        "",
        &format!(
            "{SUM}{MOUNTS}\nfact sum \"$(sum /root/mine)\"\nfact ram \"$([ -e /root/ram ] && echo present || echo absent)\"\nstatus"
        ),
    );
    b3.expect_clean_run();
    assert_eq!(b3.fact("overlay"), "ext4");
    assert_eq!(b3.fact("sum"), sum, "nothing lost");
    assert_eq!(b3.fact("ram"), "absent");
    assert_eq!(b3.fact("status_exit"), "0");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_policy_warn_boots_read_write_with_a_warning() {
    let w = Work::new("wear-warn");
    let disk = w.standard_disk();
    let sum = first_boot_with_file(&w, &disk, "mine", 2);
    let b2 = boot(
        &w,
        &disk,
        "overlay.wear_policy=warn overlay.wear=pe_cycles:1,capacity:1m",
        &format!(
            r#"{DATA_SECTORS}{SUM}{MOUNTS}
fact sum "$(sum /root/mine)"
w0=$(data_sectors)
echo kept > /root/kept && sync
fact grew "$([ "$(data_sectors)" -gt "$w0" ] && echo yes || echo no)"
fact overlay_mount "$(mount | grep ' on /overlay ')"
status
"#
        ),
    );
    b2.expect_clean_run();
    b2.expect("flash wear: ext4:vda2: writes since mkfs against capacity × P/E cycles: ");
    b2.expect("flash worn out: booting normally as the policy says (overlay.wear_policy=warn) (device level critical)");
    assert!(!b2.has("RUNNING ON RAM"), "{}", b2.console);
    assert!(!b2.has("flash protected"), "{}", b2.console);
    assert_eq!(b2.fact("overlay"), "ext4");
    assert_eq!(b2.fact("sum"), sum);
    assert_eq!(b2.fact("grew"), "yes", "writes reach the flash");
    let m = b2.fact("overlay_mount");
    assert!(
        m.starts_with("/dev/vda2 on /overlay type ext4 (rw,"),
        "read-write: {m}"
    );
    assert_eq!(b2.fact("status_exit"), "0");
    b2.expect("persistent: yes, changes are saved on /dev/vda2 (ext4)");
    b2.expect("wear:       flash worn out: booting normally as the policy says (overlay.wear_policy=warn) (device level critical)");
    b2.expect("wear log: record #1 written");
}

/// `-rtc base=` for a guest clock `secs` seconds ahead of the host's (the
/// PL031 RTC sets the guest's clock at boot: CONFIG_RTC_HCTOSYS).
fn clock_ahead(secs: u64) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S", "-d"])
        .arg(format!("@{}", now + secs))
        .output()
        .expect("date");
    assert!(out.status.success());
    let base = String::from_utf8(out.stdout).unwrap();
    vec!["-rtc".into(), format!("base={}", base.trim())]
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_log_survives_reboots_is_written_once_per_interval_and_a_corrupt_one_restarts() {
    let w = Work::new("wear-log");
    let disk = w.standard_disk();
    let facts = format!(
        r#"{DATA_SECTORS}{SUM}{MOUNTS}
fact w_start "$(data_sectors)"
L=/overlay/.wear/log
if [ -e $L ]; then fact log "$(sum $L) $(stat -c %s $L)"; fact head "$(head -c 8 $L)"; else fact log none; fi
sync; fact w_synced "$(data_sectors)"
"#
    );
    // Boot 1 formats: nothing to log yet.
    let b1 = boot(&w, &disk, "", &facts);
    b1.expect_clean_run();
    assert!(!b1.has("wear log: record #"));
    assert_eq!(b1.fact("log"), "none", "no log after the first boot");

    // Boot 2: the first on an existing filesystem writes record #1.
    let b2 = boot(&w, &disk, "", &facts);
    b2.expect_clean_run();
    b2.expect("wear log: record #1 written");
    b2.expect("flash wear projection: not enough history (0 record(s)");
    let log2 = b2.fact("log");
    assert!(log2.ends_with(" 4160"), "a 4160-byte file: {log2}");
    assert_eq!(b2.fact("head"), "OVWEARLG");

    // Boot 3, right after: within the interval (1 day), nothing written.
    let b3 = boot(&w, &disk, "", &facts);
    b3.expect_clean_run();
    assert!(!b3.has("wear log: record #"), "{}", b3.console);
    b3.expect("flash wear projection: not enough history (1 record(s)");
    assert_eq!(
        b3.fact("log"),
        log2,
        "the log is not rewritten at every boot"
    );

    // Two minutes later (guest clock): still within the default day.
    let later = clock_ahead(120);
    let b4 = boot_qemu(&w, &disk, "", &facts, &later);
    b4.expect_clean_run();
    assert!(!b4.has("wear log: record #"), "{}", b4.console);
    assert_eq!(b4.fact("log"), log2);

    // Two minutes later with overlay.wear=log_interval:1m: record #2. Then
    // the script damages the log's header.
    let b5 = boot_qemu(
        &w,
        &disk,
        "overlay.wear=log_interval:1m",
        &format!(
            "{facts}\nprintf 'GARBAGE!' | dd of=/overlay/.wear/log bs=8 count=1 conv=notrunc 2>/dev/null && sync && fact damaged \"$(head -c 8 /overlay/.wear/log)\""
        ),
        &later,
    );
    b5.expect_clean_run();
    b5.expect("wear log: record #2 written");
    let log5 = b5.fact("log");
    assert_ne!(log5, log2, "record #2 is in the file");
    assert!(log5.ends_with(" 4160"), "the file never grows: {log5}");
    assert_eq!(b5.fact("damaged"), "GARBAGE!");

    // The damaged log is reported, replaced by a new one, and the boot is normal.
    let b6 = boot(&w, &disk, "", &format!("{facts}\nstatus"));
    b6.expect_clean_run();
    b6.expect("wear log corrupt: /overlay/.wear/log: not a wear log; starting a new one");
    b6.expect(
        "warning:    wear log corrupt: /overlay/.wear/log: not a wear log; starting a new one",
    );
    b6.expect("wear log: record #1 written");
    assert_eq!(b6.fact("head"), "OVWEARLG");
    assert!(b6.fact("log").ends_with(" 4160"));
    assert_eq!(b6.fact("overlay"), "ext4");
    assert_eq!(b6.fact("status_exit"), "0");

    // What the monitoring costs: 512-byte sectors written to the data
    // partition by the boot (when the script starts / after a sync): the
    // log created (boot 2), nothing logged (boots 3, 4), one record
    // appended (boot 5). The first mounts after mkfs may also carry ext4's
    // background inode-table zeroing (lazy_itable_init, about 1 MiB here):
    // compare boots 4 and 5 for the cost of a record.
    for (name, b) in [
        ("created", &b2),
        ("none", &b3),
        ("none", &b4),
        ("appended", &b5),
    ] {
        eprintln!(
            "wear log cost: record {name}: {} / {} sectors",
            b.fact("w_start"),
            b.fact("w_synced")
        );
    }
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_monitor_names_the_process_that_writes_too_much() {
    let w = Work::new("wear-monitor");
    let disk = w.standard_disk();
    // The writer: a script (its comm is its name) running dd in a loop. Each
    // dd's writes are charged to the loop when it reaps the dd.
    let b = boot(
        &w,
        &disk,
        "overlay.wear=pe_cycles:1,target_years:10",
        r#"
fact proc_io "$(grep -c '^write_bytes:' /proc/self/io)"
printf '#!/bin/sh\nwhile :; do dd if=/dev/zero of=/root/junk bs=64k count=32 conv=fsync 2>/dev/null; done\n' > /root/flashhog
chmod 755 /root/flashhog
/root/flashhog &
fact writer $!
overlay-wear-monitor --interval 2s --samples 3; fact monitor_exit $?
kill $!
fact dmesg "$(dmesg | grep -c "overlay-wear-monitor: flash writes at .* top writers: flashhog (pid $!)")"
"#,
    );
    b.expect_clean_run();
    assert_eq!(b.fact("proc_io"), "1", "the kernel has /proc/PID/io");
    assert_eq!(b.fact("monitor_exit"), "0");
    b.expect("overlay-wear-monitor: watching flash writes every 2s (target lifetime 10 years)");
    let pid = b.fact("writer");
    let l = line_with(&b, "overlay-wear-monitor: flash writes at ");
    assert!(
        l.contains("/day wear the flash out in ")
            && l.contains(" days, before the target lifetime (")
            && l.contains(&format!("top writers: flashhog (pid {pid}) ")),
        "the warning names the writer first: {l}"
    );
    assert_eq!(b.fact("dmesg"), "1", "the warning is in the kernel log");
}

/// Checks that `s` is one JSON value (RFC 8259 syntax), nothing after it.
fn json_ok(s: &str) -> Result<(), String> {
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    }
    fn value(b: &[u8], i: &mut usize) -> Result<(), String> {
        ws(b, i);
        let err = |i: usize, what: &str| Err(format!("{what} at byte {i}"));
        match b.get(*i) {
            Some(b'{') | Some(b'[') => {
                let (close, obj) = if b[*i] == b'{' {
                    (b'}', true)
                } else {
                    (b']', false)
                };
                *i += 1;
                ws(b, i);
                if b.get(*i) == Some(&close) {
                    *i += 1;
                    return Ok(());
                }
                loop {
                    if obj {
                        ws(b, i);
                        if b.get(*i) != Some(&b'"') {
                            return err(*i, "expected a key");
                        }
                        value(b, i)?;
                        ws(b, i);
                        if b.get(*i) != Some(&b':') {
                            return err(*i, "expected ':'");
                        }
                        *i += 1;
                    }
                    value(b, i)?;
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(c) if *c == close => {
                            *i += 1;
                            return Ok(());
                        }
                        _ => return err(*i, "expected ',' or a closing bracket"),
                    }
                }
            }
            Some(b'"') => {
                *i += 1;
                while let Some(&c) = b.get(*i) {
                    *i += 1;
                    match c {
                        b'"' => return Ok(()),
                        b'\\' => match b.get(*i) {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 1,
                            Some(b'u')
                                if b.len() >= *i + 5
                                    && b[*i + 1..*i + 5].iter().all(u8::is_ascii_hexdigit) =>
                            {
                                *i += 5
                            }
                            _ => return err(*i, "bad escape"),
                        },
                        c if c < 0x20 => return err(*i, "control character in a string"),
                        _ => {}
                    }
                }
                err(*i, "unterminated string")
            }
            Some(b't') if b[*i..].starts_with(b"true") => {
                *i += 4;
                Ok(())
            }
            Some(b'f') if b[*i..].starts_with(b"false") => {
                *i += 5;
                Ok(())
            }
            Some(b'n') if b[*i..].starts_with(b"null") => {
                *i += 4;
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = *i;
                while *i < b.len()
                    && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    *i += 1;
                }
                std::str::from_utf8(&b[start..*i])
                    .ok()
                    .and_then(|n| n.parse::<f64>().ok())
                    .map(|_| ())
                    .ok_or_else(|| format!("bad number at byte {start}"))
            }
            _ => err(*i, "expected a value"),
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    value(b, &mut i)?;
    ws(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing bytes at {i}"));
    }
    Ok(())
}

#[test]
fn wear_json_checker_checks() {
    for ok in [
        r#"{"a":[1,-2.5e3,true,false,null,"x\"\u00e9"],"b":{}}"#,
        "[]",
        " 0 ",
    ] {
        assert_eq!(json_ok(ok), Ok(()), "{ok}");
    }
    for bad in [
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        "[1 2]",
        r#""\x""#,
        "{}}",
        r#"{"a":tru}"#,
        "",
    ] {
        assert!(json_ok(bad).is_err(), "{bad}");
    }
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn wear_table_and_json_in_overlay_status() {
    let w = Work::new("wear-status");
    let disk = w.standard_disk();
    let b1 = boot(&w, &disk, "", "true");
    b1.expect_clean_run();
    let b2 = boot(
        &w,
        &disk,
        "",
        r#"
status
overlay-status --wear > /tmp/wear; fact wear_exit $?
sed 's/^/W:/' /tmp/wear
echo "T:json=$(overlay-status --json)"
"#,
    );
    b2.expect_clean_run();
    assert_eq!(b2.fact("status_exit"), "0");
    assert_eq!(b2.fact("wear_exit"), "0");
    b2.expect("wear:       flash wear ok (device level ok) (overlay-status --wear)");
    let table: Vec<&str> = b2
        .console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("W:"))
        .collect();
    let text = table.join("\n");
    assert!(
        text.contains("\nflash wear: ok\nSOURCE            LEVEL     LIFE USED  FIGURES\n"),
        "{text}"
    );
    let row = |id: &str| {
        table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no {id} row:\n{text}"))
            .to_string()
    };
    let ext4 = row("ext4:vda2");
    assert!(
        ext4.contains(" ok ")
            && ext4.contains("lifetime_write_kbytes=")
            && ext4.contains("capacity_bytes="),
        "{ext4}"
    );
    let blk = row("blk:vda");
    assert!(
        blk.contains(" ok ") && blk.contains("sectors_written="),
        "{blk}"
    );
    assert!(
        text.contains("projected life:   not enough history (1 record(s)"),
        "{text}"
    );
    assert!(
        text.contains("at boot: flash wear ok (device level ok)"),
        "{text}"
    );

    let json = b2.fact("json");
    json_ok(&json).unwrap_or_else(|e| panic!("overlay-status --json is not JSON ({e}): {json}"));
    for member in [
        "\"persistent\":true",
        "\"wear\":{\"level\":\"ok\"",
        "\"id\":\"ext4:vda2\"",
        "\"id\":\"blk:vda\"",
    ] {
        assert!(json.contains(member), "no {member} in {json}");
    }
}
