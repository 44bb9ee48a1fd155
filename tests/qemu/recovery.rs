//! Issue 13's device code on real kernels, before the boot uses it: the
//! watchdog (i6300esb and softdog on the NOR board's kernel: armed, fed
//! through a busy loop and a child wait, handed over armed, then the board
//! is reset when nothing feeds it), the GPIO button (gpio-mockup), the
//! console key window (a key sent on the serial console), the boot counter's
//! bytes at the device, and mark-good's remount of a read-only data
//! filesystem. The test build's `overlay-init recovery-selftest` runs the
//! code from the test script (src/recovery/selftest.rs).
//!
//! Device layout: as harness.rs; the NOR board gets `-M highmem=off
//! -device i6300esb` (QEMU merges the -M options) for the PCI watchdog.

use crate::harness::{out_dir_for, repo, Boot, Work, BOARD, NOR_BOARD, PRELUDE};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The i6300esb on the virt machine's PCIe host.
fn esb() -> Vec<String> {
    ["-M", "highmem=off", "-device", "i6300esb"]
        .map(String::from)
        .to_vec()
}

/// A boot driven from the host, with the time each console line arrived.
pub struct Driven {
    pub boot: Boot,
    pub lines: Vec<(Instant, String)>,
    /// When QEMU's output ended (it exited).
    pub end: Instant,
}

impl Driven {
    /// When the first line holding `needle` arrived.
    pub fn at(&self, needle: &str) -> Instant {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", self.boot.console))
    }
}

/// How to boot: the board, its storage (`--flash F` or `--disk F`), the
/// command line's additions, QEMU's extra arguments, keys to type, the
/// timeout.
pub struct Run<'a> {
    pub board: &'a str,
    pub storage: Vec<String>,
    pub append: &'a str,
    pub qemu: Vec<String>,
    /// `(marker, bytes)`: `bytes` typed once a console line holds `marker`.
    pub keys: Vec<(&'a str, &'a [u8])>,
    pub timeout: u32,
}

impl<'a> Run<'a> {
    /// The NOR board from pflash image `flash`.
    pub fn nor(flash: &Path) -> Run<'a> {
        Run {
            board: NOR_BOARD,
            storage: vec!["--flash".into(), flash.display().to_string()],
            append: "",
            qemu: vec![],
            keys: vec![],
            timeout: 90,
        }
    }

    /// The default board (Debian's kernel, the initramfs) from `disk`.
    pub fn disk(disk: &Path) -> Run<'a> {
        Run {
            board: BOARD,
            storage: vec!["--disk".into(), disk.display().to_string()],
            ..Run::nor(Path::new(""))
        }
    }
}

/// Boots `run` through qemu/run.sh with the prelude + `script` as the test
/// script; QEMU reads a pipe (run.sh `--stdin`), and each key of `run.keys`
/// is written to it once a console line holds its marker: keys typed on
/// the serial console.
pub fn drive(work: &Work, run: &Run, script: &str) -> Driven {
    let script_file = work.path("script.sh");
    std::fs::write(&script_file, format!("{PRELUDE}\n{script}\n")).unwrap();
    let mut cmd = Command::new(repo().join("qemu/run.sh"));
    cmd.args(["--board", run.board, "--out"])
        .arg(out_dir_for(run.board))
        .args(&run.storage)
        .args(["--append", run.append, "--script"])
        .arg(&script_file)
        .args(["--timeout", &run.timeout.to_string(), "--stdin", "--"])
        .args(&run.qemu)
        .env("TMPDIR", &work.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("qemu/run.sh");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut pending = run.keys.clone();
    let mut lines = Vec::new();
    let mut console = String::new();
    for (t, line) in rx {
        if let Some(i) = pending.iter().position(|(m, _)| line.contains(m)) {
            let (_, bytes) = pending.remove(i);
            // The guest may be a moment from reading: a key early is fine,
            // the line discipline keeps it.
            let _ = stdin.write_all(bytes);
            let _ = stdin.flush();
        }
        console.push_str(&line);
        lines.push((t, line));
    }
    let end = Instant::now();
    reader.join().unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    Driven {
        boot: Boot {
            console,
            code: status.code(),
            killed: false,
            wall: end - t0,
        },
        lines,
        end,
    }
}

/// The watchdog devices by their sysfs identity, as `esb` and `soft`.
const FIND_WATCHDOGS: &str = r#"
for w in /sys/class/watchdog/watchdog*; do
  case "$(cat $w/identity)" in
    "i6300ESB timer") esb=/dev/${w##*/} ;;
    "Software Watchdog") soft=/dev/${w##*/} ;;
  esac
done
fact esb "${esb:-none}"; fact soft "${soft:-none}"
"#;

/// Arms `dev` with a 5 s timeout, feeds it through 8 s of a busy loop and
/// 8 s of a child wait (each more than the timeout), hands it over, checks
/// it is found running and can be opened again (it was closed, not left
/// open: /dev/watchdogN opens once), then stops feeding: the board must be
/// reset about 5 s later.
fn watchdog_is_fed_then_handed_over_armed(name: &str, which: &str) {
    let w = Work::new(name);
    let flash = w.nor_flash(None);
    let script = format!(
        r#"{FIND_WATCHDOGS}
dev=${which}
overlay-init recovery-selftest watchdog $dev 5 8
fact state_after "$(cat /sys/class/watchdog/${{dev##*/}}/state)"
overlay-init recovery-selftest find
overlay-init recovery-selftest watchdog $dev 5 1 | sed 's/^T:/T:again_/'
fact handed_over_at "$(cut -d' ' -f1 /proc/uptime)"
sleep 60
fact survived yes
"#
    );
    let run = Run {
        qemu: esb(),
        timeout: 150,
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, &script);
    let b = &d.boot;
    assert_ne!(
        b.fact(which),
        "none",
        "{which} watchdog present:\n{}",
        b.console
    );
    assert_eq!(b.fact("wdt_open"), "ok");
    assert_eq!(
        b.fact("wdt_timeout"),
        "5",
        "the timeout set is the one read back"
    );
    assert_eq!(b.fact("wdt_magic_close"), "true");
    assert_eq!(b.fact("wdt_state_armed"), "true");
    // Fed at half the timeout: the longest gaps stay near 2.5 s, under 5.
    for gap in ["wdt_busy_gap_ms", "wdt_child_gap_ms"] {
        let ms: u64 = b.fact(gap).parse().unwrap();
        assert!(
            (2400..4500).contains(&ms),
            "{gap} = {ms} ms:\n{}",
            b.console
        );
    }
    assert_eq!(b.fact("wdt_child"), "0", "the child was waited for");
    assert_eq!(b.fact("wdt_armed_after"), "true", "{}", b.console);
    assert_eq!(b.fact("state_after"), "active");
    assert_eq!(
        b.fact("found"),
        b.fact(which),
        "a running watchdog is found by its state"
    );
    assert_eq!(
        b.fact("again_wdt_open"),
        "ok",
        "opened again after the hand-over"
    );
    assert_eq!(b.fact("again_wdt_armed_after"), "true");
    b.expect("(5 s) handed to the init armed: it must feed it");
    b.expect("watchdog did not stop!");
    assert!(
        !b.has("T:survived"),
        "nothing fed it: the board must be reset\n{}",
        b.console
    );
    assert!(!b.has("script exit"), "{}", b.console);
    assert_eq!(b.code, Some(0), "QEMU ended by the reset (-no-reboot)");
    let after = d.end - d.at("T:handed_over_at");
    eprintln!(
        "{which}: longest gaps between feeds: busy loop {} ms, child wait {} ms; reset {after:?} after the hand-over",
        b.fact("wdt_busy_gap_ms"),
        b.fact("wdt_child_gap_ms")
    );
    assert!(
        after >= Duration::from_secs(3) && after < Duration::from_secs(30),
        "reset {after:?} after the hand-over (timeout 5 s)"
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn i6300esb_is_fed_through_long_work_and_handed_over_armed() {
    watchdog_is_fed_then_handed_over_armed("wdt-esb", "esb");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn softdog_is_fed_through_long_work_and_handed_over_armed() {
    watchdog_is_fed_then_handed_over_armed("wdt-soft", "soft");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn the_failsafe_button_is_read_through_the_gpio_character_device() {
    let w = Work::new("gpio");
    let flash = w.nor_flash(None);
    // gpio-mockup: gpiochip0, 8 input lines pulled low.
    let script = r#"
for spec in gpiochip0:3 gpiochip0:3:active-low 0:7:active-low gpiochip0:8 gpiochip5:0; do
  overlay-init recovery-selftest gpio $spec | sed "s/^T:gpio=/T:gpio_$spec=/"
done
overlay-init recovery-selftest early overlay.failsafe_gpio=gpiochip0:3:active-low
overlay-init recovery-selftest early overlay.failsafe_gpio=gpiochip0:3 | sed 's/^T:failsafe=/T:high=/'
"#;
    let run = Run {
        append: "gpio_mockup.gpio_mockup_ranges=-1,8",
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, script);
    let b = &d.boot;
    b.expect_clean_run();
    assert_eq!(b.fact("gpio_gpiochip0:3"), "inactive");
    assert_eq!(b.fact("gpio_gpiochip0:3:active-low"), "active");
    assert_eq!(b.fact("gpio_0:7:active-low"), "active");
    assert!(
        b.fact("gpio_gpiochip0:8")
            .starts_with("error: cannot request the line as an input:"),
        "a line past the chip's last: {}",
        b.fact("gpio_gpiochip0:8")
    );
    assert!(b
        .fact("gpio_gpiochip5:0")
        .starts_with("error: cannot open the chip:"));
    assert_eq!(
        b.fact("failsafe"),
        "the failsafe button (gpiochip0:3:active-low) was held at boot"
    );
    assert_eq!(b.fact("high"), "no");
    let ms: u64 = b.fact("early_ms").parse().unwrap();
    assert!(ms < 500, "read once, no wait: {ms} ms");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_key_on_the_serial_console_asks_for_failsafe() {
    let w = Work::new("key");
    let flash = w.nor_flash(None);
    // Window 1: the host types 'f' when the prompt shows. Window 2: no key.
    // The terminal settings are the same before and after each.
    let script = r#"
fact stty_before "$(stty -g)"
overlay-init recovery-selftest early overlay.failsafe_wait=20000
fact stty_after "$(stty -g)"
overlay-init recovery-selftest early overlay.failsafe_wait=1500 | sed 's/^T:/T:none_/'
fact stty_after2 "$(stty -g)"
overlay-init recovery-selftest early overlay.failsafe_wait=0 | sed 's/^T:/T:zero_/'
"#;
    let run = Run {
        keys: vec![("within 20000 ms for a failsafe boot", b"f")],
        timeout: 120,
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, script);
    let b = &d.boot;
    b.expect_clean_run();
    b.expect("overlay-init: press [f] within 20000 ms for a failsafe boot");
    assert_eq!(b.fact("failsafe"), "the [f] key was pressed on the console");
    let ms: u64 = b.fact("early_ms").parse().unwrap();
    assert!(
        ms < 15_000,
        "seen when typed, not at the end of the window: {ms} ms"
    );
    eprintln!("key window: the key was seen {ms} ms into a 20000 ms window");
    assert_eq!(b.fact("none_failsafe"), "no");
    let ms: u64 = b.fact("none_early_ms").parse().unwrap();
    assert!(
        (1500..3000).contains(&ms),
        "the whole window and no more: {ms} ms"
    );
    assert_eq!(b.fact("stty_after"), b.fact("stty_before"));
    assert_eq!(b.fact("stty_after2"), b.fact("stty_before"));
    // The default: no prompt, no read, no time.
    assert_eq!(b.fact("zero_failsafe"), "no");
    assert_eq!(b.fact("zero_early_ms"), "0");
    assert_eq!(
        b.console.matches("for a failsafe boot").count(),
        2,
        "{}",
        b.console
    );
}

/// Sectors written to the disk holding /overlay (field 7 of
/// /sys/block/vda/stat) around each step; `settle` waits out ext4's 5 s
/// journal commit so that what a step leaves for later counts too.
const SECTORS: &str = r#"
disk=$(awk '$2=="/overlay" {print $1}' /proc/mounts); disk=${disk#/dev/}; disk=${disk%[0-9]*}
sectors() { awk '{print $7}' /sys/block/$disk/stat; }
settle() { sync; sleep 6; }
step() { # NAME COMMAND...: T:NAME_now= sectors at once, T:NAME_later= within the commit
  n=$1; shift; settle; a=$(sectors); "$@"; b=$(sectors); settle; c=$(sectors)
  fact ${n}_now $((b - a)); fact ${n}_later $((c - a))
}
"#;

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn boot_counting_writes_one_small_record_per_boot_and_per_mark_good() {
    let w = Work::new("count-bytes");
    let disk = w.standard_disk();
    let script = format!(
        r#"{SECTORS}
step idle true
step create overlay-init recovery-selftest count /overlay
step count overlay-init recovery-selftest count /overlay
step mark overlay-status --mark-good
step again overlay-status --mark-good
overlay-init recovery-selftest read /overlay
fact size "$(stat -c %s /overlay/.boot/count)"
fact block "$(stat -f -c %S /overlay)"
fact in_upper "$(ls -a /overlay/upper | grep -c boot)"
"#
    );
    let run = Run {
        timeout: 200,
        ..Run::disk(&disk)
    };
    let d = drive(&w, &run, &script);
    let b = &d.boot;
    b.expect_clean_run();
    let n = |k: &str| -> u64 { b.fact(k).parse().unwrap() };
    // The filesystem's block, in sectors (mke2fs gives a 64 MiB partition
    // 1 KiB blocks).
    let blk = n("block") / 512;
    eprintln!(
        "sectors written (at once / within the journal commit), {}-byte blocks: idle {}/{}, create {}/{}, count {}/{}, mark-good {}/{}, second mark-good {}/{}",
        n("block"), n("idle_now"), n("idle_later"), n("create_now"), n("create_later"),
        n("count_now"), n("count_later"), n("mark_now"), n("mark_later"), n("again_now"), n("again_later")
    );
    assert!(
        n("idle_later") <= blk,
        "a quiet system writes (almost) nothing: {}",
        b.console
    );
    // One block in place at once; the inode's time stamps in the next
    // journal commit (a few journal blocks: descriptor, inode table, commit).
    assert_eq!(n("count_now"), blk, "one block");
    assert!(
        n("count_later") <= 5 * blk,
        "count: {} sectors",
        n("count_later")
    );
    assert_eq!(n("mark_now"), blk);
    assert!(n("mark_later") <= 5 * blk);
    assert_eq!(n("again_later"), 0, "nothing to mark: not a byte");
    assert_eq!(b.fact("size"), "4128");
    assert!(b.fact("read").contains("attempts: 0"), "{}", b.fact("read"));
    assert_eq!(b.fact("in_upper"), "0", "the record is outside upper/");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn mark_good_remounts_a_read_only_data_filesystem_and_puts_it_back() {
    let w = Work::new("mark-remount");
    let flash = w.nor_flash(None);
    // An ext4 on a loop device plays the failsafe boot's data filesystem:
    // three boots counted, then mounted as a failsafe boot mounts it.
    let script = r#"
dd if=/dev/zero of=/tmp/data.img bs=1M count=8 2>/dev/null
mkfs.ext4 -q /tmp/data.img && losetup /dev/loop0 /tmp/data.img
mkdir -p /tmp/data
printf 'failsafe=3 boots without mark-good\nfailsafe_data=/dev/loop0 ext4\n' > /tmp/state
counted() { mount /dev/loop0 /tmp/data; for i in 1 2 3; do overlay-init recovery-selftest count /tmp/data >/dev/null; done; umount /tmp/data; mount -o ro,noload /dev/loop0 /tmp/data; }
counted
(cd /tmp/data && overlay-init recovery-selftest mark-good /tmp/state /tmp/data) | sed 's/^T:mark=/T:busy=/'
overlay-init recovery-selftest mark-good /tmp/state /tmp/data
fact opts "$(awk '$2=="/tmp/data" {print $4}' /proc/mounts)"
overlay-init recovery-selftest read /tmp/data
umount /tmp/data; mount -o ro,noload /dev/loop0 /tmp/data
overlay-init recovery-selftest mark-good /tmp/state /tmp/data | sed 's/^T:mark=/T:again=/'
fact opts_again "$(awk '$2=="/tmp/data" {print $4}' /proc/mounts)"
"#;
    let d = drive(&w, &Run::nor(&flash), script);
    let b = &d.boot;
    b.expect_clean_run();
    assert_eq!(b.fact("mark_readonly_before"), "true");
    assert!(
        b.fact("busy").contains("/overlay is in use"),
        "{}",
        b.fact("busy")
    );
    assert_eq!(b.fact("mark"), "Marked { was: 3, remounted: true }");
    assert!(
        b.fact("opts").starts_with("ro,"),
        "read-only again: {}",
        b.fact("opts")
    );
    assert!(b.fact("read").contains("attempts: 0"), "{}", b.fact("read"));
    assert_eq!(b.fact("again"), "AlreadyGood", "no remount for nothing");
    assert!(b.fact("opts_again").contains("noload") || b.fact("opts_again").contains("norecovery"));
}
