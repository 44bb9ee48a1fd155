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

use crate::harness::{console_lines, out_dir_for, repo, Boot, Work, BOARD, NOR_BOARD, PRELUDE};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let (rx, reader) = console_lines(child.stdout.take().unwrap());
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
# Until 6 s pass with nothing written (at most a minute): a first boot's
# background work (ext4's lazy inode-table init, the upgrade's manifest)
# must not count as a step's.
quiet() { i=0; while [ $i -lt 10 ]; do a=$(sectors); settle; [ "$(sectors)" = "$a" ] && return; i=$((i + 1)); done; }
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
quiet
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

// ---------------------------------------------------------------------------
// End to end: the boot itself (issue 13), on both boards.
// ---------------------------------------------------------------------------

/// A board under test, with its storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// qemu-armv7: Debian's kernel, the initramfs, ext4 on a GPT partition.
    Block,
    /// qemu-armv7-nor: own kernel, pivot_root, JFFS2 on a NOR partition.
    Nor,
}

impl Board {
    /// Fresh storage: the squashfs and a blank data partition.
    pub fn storage(self, w: &Work) -> std::path::PathBuf {
        match self {
            Board::Block => w.standard_disk(),
            Board::Nor => w.nor_flash(None),
        }
    }

    pub fn run<'a>(self, img: &Path) -> Run<'a> {
        match self {
            Board::Block => Run::disk(img),
            Board::Nor => Run::nor(img),
        }
    }

    /// Where the data partition is in the image (offset, length).
    pub fn data_region(self, img: &Path) -> (u64, u64) {
        match self {
            Board::Block => crate::harness::partition(img, "rootfs_data"),
            Board::Nor => crate::harness::flash_partition("rootfs_data"),
        }
    }

    /// CRC32 of the data partition's bytes.
    pub fn data_crc(self, img: &Path) -> u32 {
        let (off, len) = self.data_region(img);
        crate::harness::fingerprint(img, off, len)
    }

    /// The data filesystem's mount source, as the boot names it.
    pub fn data_source(self) -> &'static str {
        match self {
            Board::Block => "/dev/vda2",
            Board::Nor => "mtd:rootfs_data",
        }
    }

    pub fn data_fstype(self) -> &'static str {
        match self {
            Board::Block => "ext4",
            Board::Nor => "jffs2",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Board::Block => "block",
            Board::Nor => "nor",
        }
    }
}

/// Shell lines: what a failsafe boot shows, as facts.
const FAILSAFE_FACTS: &str = r#"
fact user "$(cat /root/user-file 2>/dev/null || echo absent)"
fact profile_tail "$(tail -n1 /etc/profile)"
fact rescue "$(cat /overlay/upper/root/user-file 2>&1)"
fact overlay_fs "$(awk '$2=="/overlay" {print $3}' /proc/mounts)"
fact overlay_opts "$(awk '$2=="/overlay" {print $4}' /proc/mounts)"
fact root_opts "$(awk '$2=="/" && $3=="overlay" {print $4}' /proc/mounts)"
echo written-in-failsafe > /root/ram-file && fact ram_write "$(cat /root/ram-file)"
fact ram_where "$(ls /run/overlay-init/ram/upper/root/ram-file 2>&1)"
fact ram_fs "$(df /run/overlay-init/ram | awk 'NR==2 {print $1}')"
if touch /overlay/upper/probe 2>/dev/null; then fact overlay_rw yes; else fact overlay_rw no; fi
fact env "$(tr '\0' '\n' < /proc/1/environ | grep '^FAILSAFE=' || echo none)"
overlay-status > /tmp/st; fact status_exit $?
cat /tmp/st
fact status_failsafe "$(grep '^failsafe:' /tmp/st)"
fact status_upper "$(grep '^upper:' /tmp/st)"
overlay-status --json | grep -o '"failsafe":"[^"]*"' | sed 's/^/T:json=/'
sync
"#;

/// Asserts what every failsafe boot shows (facts of [`FAILSAFE_FACTS`]):
/// the user's changes absent from the root, their file readable under
/// /overlay/upper, the data read-only, a write in RAM, FAILSAFE=1 for the
/// init, `overlay-status` saying so and why, exit 2, the banner.
fn assert_failsafe(board: Board, b: &crate::harness::Boot, why: &str) {
    b.expect_clean_run();
    assert_eq!(
        b.fact("user"),
        "absent",
        "the user's file is not in the root"
    );
    assert_ne!(b.fact("profile_tail"), "# user change", "nor their edit");
    assert_eq!(b.fact("rescue"), "user-data", "readable for rescue");
    assert_eq!(b.fact("overlay_fs"), board.data_fstype());
    assert!(
        b.fact("overlay_opts").starts_with("ro,"),
        "/overlay read-only: {}",
        b.fact("overlay_opts")
    );
    assert_eq!(b.fact("overlay_rw"), "no");
    assert!(
        b.fact("root_opts")
            .contains("upperdir=/run/overlay-init/ram/upper"),
        "the root's upper is in RAM: {}",
        b.fact("root_opts")
    );
    assert!(
        !b.fact("root_opts").contains("/overlay/upper"),
        "the user's upper is not a layer: {}",
        b.fact("root_opts")
    );
    assert_eq!(b.fact("ram_write"), "written-in-failsafe");
    assert_eq!(
        b.fact("ram_where"),
        "/run/overlay-init/ram/upper/root/ram-file"
    );
    assert_eq!(b.fact("ram_fs"), "tmpfs");
    assert_eq!(b.fact("env"), "FAILSAFE=1", "the init sees FAILSAFE=1");
    assert_eq!(b.fact("status_exit"), "2");
    assert_eq!(b.fact("status_failsafe"), format!("failsafe:   YES: {why}"));
    assert!(
        b.fact("status_upper").ends_with("at /run/overlay-init/ram"),
        "{}",
        b.fact("status_upper")
    );
    assert_eq!(b.fact("json"), format!("\"failsafe\":\"{why}\""));
    b.expect("your files: /overlay/upper");
    // The banner, on the console (and in dmesg).
    b.expect("overlay-init: *** FAILSAFE BOOT ***");
    b.expect(&format!("overlay-init: *** why: {why}"));
    b.expect(&format!(
        "overlay-init: *** your data ({}) is read-only at /overlay: your files are in /overlay/upper",
        board.data_source()
    ));
    // Nothing that writes ran.
    for step in [
        "remount",
        "# count this boot",
        "wear record",
        "e2fsck",
        "mkfs",
        "flash_erase",
    ] {
        assert!(
            !b.console
                .lines()
                .any(|l| l.contains("overlay-init:") && l.contains(step)),
            "{step} in a failsafe boot:\n{}",
            b.console
        );
    }
}

/// The user's changes, made in a normal boot.
const USER_CHANGES: &str = r##"
echo user-data > /root/user-file
echo "# user change" >> /etc/profile
fact boot_dir "$(ls -d /overlay/.boot 2>/dev/null || echo none)"
sync
"##;

/// Failsafe by the command line, then by the key on the serial console,
/// then a normal boot again: the flash is unchanged byte for byte by both
/// failsafe boots, and the next normal boot has the user's data (and not
/// what the failsafe boot wrote).
fn failsafe_by_command_line_and_by_key(board: Board) {
    let w = Work::new(&format!("failsafe-{}", board.name()));
    let img = board.storage(&w);
    let run = Run {
        append: "overlay.debug",
        ..board.run(&img)
    };
    let d = drive(&w, &run, USER_CHANGES);
    d.boot.expect_clean_run();
    assert_eq!(
        d.boot.fact("boot_dir"),
        "none",
        "boot counting is off by default: no .boot written"
    );
    // The key window's cost at its default (0): nothing read, no wait
    // (tens of µs of clock reads under TCG; up to a millisecond when the
    // emulated CPU is preempted meanwhile).
    let cost = entry_us(&d.boot);
    assert!(
        cost < 20_000,
        "the failsafe entry took {cost} µs at the defaults"
    );
    let before = board.data_crc(&img);

    // A factory reset asked for beside it is not acted on (nothing is
    // written; the user's data is there at the last boot below).
    let run = Run {
        append: "overlay.failsafe=1 overlay.reset=1",
        ..board.run(&img)
    };
    let d = drive(&w, &run, FAILSAFE_FACTS);
    let why = "overlay.failsafe=1 on the command line";
    assert_failsafe(board, &d.boot, why);
    assert!(
        !d.boot.has("for a failsafe boot"),
        "no key window by default"
    );
    assert_eq!(board.data_crc(&img), before, "the flash is unchanged");

    let run = Run {
        append: "overlay.failsafe_wait=20000",
        keys: vec![("within 20000 ms for a failsafe boot", b"f")],
        ..board.run(&img)
    };
    let d = drive(&w, &run, FAILSAFE_FACTS);
    assert_failsafe(board, &d.boot, "the [f] key was pressed on the console");
    let waited = d.at("FAILSAFE BOOT") - d.at("within 20000 ms for a failsafe boot");
    assert!(
        waited < Duration::from_secs(12),
        "the key is seen when typed, not at the end of the window: {waited:?}"
    );
    assert_eq!(board.data_crc(&img), before, "the flash is unchanged");

    // The window without a key: a normal boot, with the user's data.
    let run = Run {
        append: "overlay.failsafe_wait=1000 overlay.debug",
        ..board.run(&img)
    };
    let d = drive(
        &w,
        &run,
        r#"
fact user "$(cat /root/user-file 2>/dev/null || echo absent)"
fact ram_file "$(cat /root/ram-file 2>/dev/null || echo absent)"
fact env "$(tr '\0' '\n' < /proc/1/environ | grep '^FAILSAFE=' || echo none)"
overlay-status >/dev/null; fact status_exit $?
"#,
    );
    let b = &d.boot;
    b.expect_clean_run();
    b.expect("overlay-init: press [f] within 1000 ms for a failsafe boot");
    assert!(!b.has("FAILSAFE BOOT"));
    assert_eq!(b.fact("user"), "user-data");
    assert_eq!(
        b.fact("ram_file"),
        "absent",
        "the failsafe boot's writes were in RAM"
    );
    assert_eq!(b.fact("env"), "none");
    assert_eq!(b.fact("status_exit"), "0");
    let window = entry_us(b);
    assert!(
        (1_000_000..1_500_000).contains(&window),
        "a 1000 ms window: {window} µs"
    );
    eprintln!(
        "{}: the failsafe entry took {cost} µs at the defaults, {window} µs with a 1000 ms window and no key",
        board.name()
    );
}

/// The time the boot's failsafe entry took (its debug line), in µs.
fn entry_us(b: &crate::harness::Boot) -> u64 {
    b.console
        .lines()
        .find_map(|l| l.split_once("failsafe entry checked in ").map(|(_, r)| r))
        .and_then(|r| r.trim().trim_end_matches(" µs").parse().ok())
        .unwrap_or_else(|| panic!("no failsafe entry time:\n{}", b.console))
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn failsafe_on_the_block_board_by_command_line_and_by_key() {
    failsafe_by_command_line_and_by_key(Board::Block);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn failsafe_on_the_nor_board_by_command_line_and_by_key() {
    failsafe_by_command_line_and_by_key(Board::Nor);
}

/// The longest intervals between two feeds the executor logged, one line
/// per long operation: (operation, ms).
fn feed_gaps(b: &crate::harness::Boot) -> Vec<(String, u64)> {
    b.console
        .lines()
        .filter_map(|l| {
            let rest = l
                .split_once("watchdog: longest interval between feeds during `")?
                .1;
            let (op, ms) = rest.split_once("`: ")?;
            Some((
                op.to_string(),
                ms.trim().trim_end_matches(" ms").parse().ok()?,
            ))
        })
        .collect()
}

/// The script of a boot whose init never feeds the watchdog: when it was
/// handed over, then a long sleep it must not survive.
const NEVER_FEEDS: &str = r#"
fact handed_over_at "$(cut -d' ' -f1 /proc/uptime)"
fact overlay "$(fstype /overlay)"
for w in /sys/class/watchdog/watchdog*; do fact "${w##*/}" "$(cat $w/identity): $(cat $w/state)"; done
overlay-status | grep '^watchdog:' | sed 's/^/T:status_/; s/:   /=/'
sleep 60
fact survived yes
"#;

/// The script of a boot whose init feeds the watchdog it was handed (as
/// procd or systemd would): busybox `watchdog`, then twice the timeout.
const INIT_FEEDS: &str = r#"
if watchdog -T 5 -t 1 /dev/watchdog0; then fact feeder started; fi
sleep 12
fact survived yes
"#;

/// The init took the watchdog over and the system stayed up.
fn assert_init_feeds_it(b: &crate::harness::Boot) {
    assert_eq!(b.fact("feeder"), "started", "the init can open it");
    assert_eq!(b.fact("survived"), "yes");
}

/// Asserts that the board was reset by the watchdog handed to an init that
/// never feeds it (timeout `secs`), within a few timeouts of the hand-over.
fn assert_reset_after_hand_over(d: &Driven, dev: &str, secs: u32) {
    let b = &d.boot;
    b.expect("overlay-demo: real init reached");
    b.expect(&format!(
        "watchdog {dev} ({secs} s) handed to the init armed: it must feed it"
    ));
    assert_eq!(
        b.fact("status_watchdog"),
        format!("watchdog {dev} ({secs} s) handed to the init armed: it must feed it")
    );
    let n = dev.trim_start_matches("/dev/");
    assert!(b.fact(n).ends_with(": active"), "{}", b.fact(n));
    assert!(
        !b.has("T:survived"),
        "nothing fed it: the board must be reset\n{}",
        b.console
    );
    assert!(!b.has("script exit"), "{}", b.console);
    assert_eq!(b.code, Some(0), "QEMU ended by the reset (-no-reboot)");
    let after = d.end - d.at("T:handed_over_at");
    eprintln!("{dev}: reset {after:?} after the init started (timeout {secs} s)");
    assert!(
        after >= Duration::from_secs(u64::from(secs) / 2)
            && after < Duration::from_secs(u64::from(secs) * 5),
        "reset {after:?} after the hand-over (timeout {secs} s)"
    );
}

/// How long the test build stretches a long operation: more than three
/// watchdog timeouts of [`WDT_SECS`].
const SLOW_SECS: u64 = 16;
const WDT_SECS: u32 = 5;

/// The block board, softdog (Debian's module, loaded by the board file's
/// `overlay.modules.watchdog=softdog`): a key window and a first-boot
/// format, each longer than three timeouts, complete without a reset; the
/// init gets it armed and, never feeding it, is reset.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn softdog_guards_a_slow_first_boot_and_resets_an_init_that_never_feeds_it() {
    let w = Work::new("wdt-boot-soft");
    let disk = w.standard_disk();
    let append = format!(
        "overlay.watchdog=/dev/watchdog0:{WDT_SECS} overlay.test_slow={SLOW_SECS} overlay.failsafe_wait={}",
        SLOW_SECS * 1000
    );
    let run = Run {
        append: &append,
        timeout: 200,
        ..Run::disk(&disk)
    };
    let d = drive(&w, &run, NEVER_FEEDS);
    let b = &d.boot;
    b.expect(&format!(
        "watchdog /dev/watchdog0: fed every {} ms while the pre-init runs",
        WDT_SECS * 500
    ));
    b.expect("press [f] within 16000 ms for a failsafe boot");
    assert!(
        b.has("first boot: formatting blank /dev/vda2 as ext4"),
        "reset in the key window?\n{}",
        b.console
    );
    let window = d.at("first boot: formatting blank") - d.at("press [f] within 16000 ms");
    assert!(
        window >= Duration::from_secs(SLOW_SECS),
        "the whole window: {window:?}"
    );
    b.expect("test hook: stretching `/sbin/mkfs.ext4");
    assert_eq!(b.fact("watchdog0"), "Software Watchdog: active");
    let gaps = feed_gaps(b);
    eprintln!("softdog ({WDT_SECS} s): longest intervals between feeds: {gaps:?}");
    let mkfs = gaps
        .iter()
        .find(|(op, _)| op.contains("mkfs.ext4"))
        .unwrap_or_else(|| panic!("no interval logged for mkfs:\n{}", b.console));
    assert!(
        mkfs.1 < u64::from(WDT_SECS) * 1000,
        "mkfs: {} ms between two feeds",
        mkfs.1
    );
    assert_reset_after_hand_over(&d, "/dev/watchdog0", WDT_SECS);

    // The boot after that reset: the journal needs recovery (fsck), and a
    // factory reset from the command line with its deletion, each
    // stretched past three timeouts; then the init's own feeder (busybox
    // `watchdog`) opens the device the pre-init handed over, and the
    // system stays up.
    let append = format!(
        "overlay.watchdog=/dev/watchdog0:{WDT_SECS} overlay.test_slow={SLOW_SECS} overlay.reset=1"
    );
    let run = Run {
        append: &append,
        timeout: 200,
        ..Run::disk(&disk)
    };
    let d = drive(&w, &run, INIT_FEEDS);
    let b = &d.boot;
    b.expect_clean_run();
    b.expect("journal needs recovery");
    b.expect("test hook: stretching `/sbin/e2fsck");
    b.expect("test hook: stretching `# factory reset (command line)`");
    let gaps = feed_gaps(b);
    eprintln!("softdog ({WDT_SECS} s): longest intervals between feeds: {gaps:?}");
    for op in ["e2fsck", "# factory reset", "# delete the reset trash"] {
        let (_, ms) = gaps
            .iter()
            .find(|(o, _)| o.contains(op))
            .unwrap_or_else(|| panic!("no interval logged for {op}:\n{}", b.console));
        assert!(
            *ms < u64::from(WDT_SECS) * 1000,
            "{op}: {ms} ms between two feeds"
        );
    }
    assert_init_feeds_it(b);
}

/// A pre-init that hangs (test build: `overlay.test_hang=1`, after the
/// watchdog is armed) stops feeding it: the board is reset.
fn a_hung_pre_init_is_reset(run: Run, dev: &str) {
    let w = Work::new("wdt-hang");
    let append = format!("overlay.watchdog={dev}:{WDT_SECS} overlay.test_hang=1");
    let run = Run {
        append: &append,
        ..run
    };
    let d = drive(&w, &run, "fact reached yes");
    let b = &d.boot;
    b.expect(&format!("watchdog {dev}: fed every"));
    b.expect("test hook: hanging at the lowers stage without feeding the watchdog");
    assert!(!b.has("real init reached"), "{}", b.console);
    assert_eq!(b.code, Some(0), "QEMU ended by the reset:\n{}", b.console);
    let after = d.end - d.at("test hook: hanging");
    eprintln!("{dev}: a hung pre-init reset {after:?} after it stopped feeding");
    assert!(
        after >= Duration::from_secs(2) && after < Duration::from_secs(u64::from(WDT_SECS) * 5),
        "reset {after:?} after the hang (timeout {WDT_SECS} s)"
    );
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn softdog_resets_a_hung_pre_init() {
    let w = Work::new("wdt-hang-soft");
    let disk = w.standard_disk();
    a_hung_pre_init_is_reset(Run::disk(&disk), "/dev/watchdog0");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn i6300esb_resets_a_hung_pre_init() {
    let w = Work::new("wdt-hang-esb");
    let flash = w.nor_flash(None);
    a_hung_pre_init_is_reset(
        Run {
            qemu: esb(),
            ..Run::nor(&flash)
        },
        "/dev/watchdog0",
    );
}

/// The NOR board, i6300esb (watchdog0 there; softdog is watchdog1): the
/// erase of a partition marked for formatting (OpenWrt's 0xdeadc0de),
/// stretched past three timeouts, completes without a reset; the init
/// gets the watchdog armed and, never feeding it, is reset.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn i6300esb_guards_a_slow_erase_and_resets_an_init_that_never_feeds_it() {
    let w = Work::new("wdt-boot-esb");
    let marker = w.path("marker");
    std::fs::write(&marker, [0xde, 0xad, 0xc0, 0xde]).unwrap();
    let flash = w.nor_flash(Some(&marker));
    let append =
        format!("overlay.watchdog=/dev/watchdog0:{WDT_SECS} overlay.test_slow={SLOW_SECS}");
    let run = Run {
        append: &append,
        qemu: esb(),
        timeout: 200,
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, NEVER_FEEDS);
    let b = &d.boot;
    b.expect("rootfs_data: format marker found: erasing /dev/mtd2");
    b.expect("test hook: stretching `flash_erase /dev/mtd2 0 0`");
    assert_eq!(b.fact("watchdog0"), "i6300ESB timer: active");
    let gaps = feed_gaps(b);
    eprintln!("i6300esb ({WDT_SECS} s): longest intervals between feeds: {gaps:?}");
    let erase = gaps
        .iter()
        .find(|(op, _)| op.starts_with("flash_erase"))
        .unwrap_or_else(|| panic!("no interval logged for the erase:\n{}", b.console));
    assert!(
        erase.1 < u64::from(WDT_SECS) * 1000,
        "erase: {} ms between two feeds",
        erase.1
    );
    assert_eq!(b.fact("overlay"), "jffs2", "the erased partition is used");
    assert_reset_after_hand_over(&d, "/dev/watchdog0", WDT_SECS);

    // UBI: the kernel attaches a blank partition (ubi.mtd=), the pre-init
    // creates the volume, stretched past three timeouts; the init's own
    // feeder takes the watchdog over.
    let flash = w.flash("ubi.img", &[]);
    let append = format!(
        "ubi.mtd=rootfs_data overlay.watchdog=/dev/watchdog0:{WDT_SECS} overlay.test_slow={SLOW_SECS}"
    );
    let run = Run {
        append: &append,
        qemu: esb(),
        timeout: 200,
        ..Run::nor(&flash)
    };
    let d = drive(
        &w,
        &run,
        &format!("fact overlay \"$(fstype /overlay)\"\n{INIT_FEEDS}"),
    );
    let b = &d.boot;
    b.expect_clean_run();
    b.expect("test hook: stretching `ubimkvol /dev/ubi0 -N rootfs_data");
    assert_eq!(b.fact("overlay"), "ubifs");
    let gaps = feed_gaps(b);
    eprintln!("i6300esb ({WDT_SECS} s): longest intervals between feeds: {gaps:?}");
    let (_, ms) = gaps
        .iter()
        .find(|(o, _)| o.starts_with("ubimkvol"))
        .unwrap_or_else(|| panic!("no interval logged for ubimkvol:\n{}", b.console));
    assert!(
        *ms < u64::from(WDT_SECS) * 1000,
        "ubimkvol: {ms} ms between two feeds"
    );
    assert_init_feeds_it(b);
}

/// A watchdog armed before Linux starts, as a bootloader leaves one (here
/// softdog with `soft_active_on_boot`: running, and the kernel does not
/// know it, so nothing feeds it and its sysfs state reads `inactive`),
/// named with `overlay.watchdog=DEV` and no timeout: the driver's (5 s)
/// stays, the pre-init feeds it through a 16 s key window, and hands it to
/// the init armed.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_watchdog_armed_before_linux_is_fed_through_the_boot_and_handed_over() {
    let w = Work::new("wdt-early");
    let flash = w.nor_flash(None);
    let run = Run {
        append: "softdog.soft_active_on_boot=1 softdog.soft_margin=5 overlay.watchdog=/dev/watchdog0 overlay.failsafe_wait=16000",
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, NEVER_FEEDS);
    let b = &d.boot;
    b.expect("watchdog /dev/watchdog0: fed every 2500 ms while the pre-init runs");
    b.expect("press [f] within 16000 ms for a failsafe boot");
    assert_eq!(b.fact("watchdog0"), "Software Watchdog: active");
    assert_reset_after_hand_over(&d, "/dev/watchdog0", 5);
}

/// Shell lines: the boot count as `overlay-status` and the state file show it.
const COUNT_FACTS: &str = r#"
overlay-status > /tmp/st; fact status_exit $?
fact count_line "$(grep '^boot count:' /tmp/st || echo none)"
fact state_count "$(grep '^boot_count=' /run/overlay-init/state || echo none)"
"#;

/// Sectors written to the data partition since the kernel started, once
/// what is dirty is synced (block board; `/sys/block/vda/vda2/stat`,
/// field 7).
/// ext4 zeroes a new filesystem's inode tables in the background
/// (ext4lazyinit), starting at a random moment up to 5 s after the mount and
/// carrying on at later mounts: about 1 MiB here, which landed in whichever
/// boot happened to last long enough. The formatting boot waits for it (the
/// partition's written sectors stable for 1 s after 6 s, 30 s at most), so
/// the boots measured below write only their own sectors.
const LAZYINIT_DONE: &str = r#"
sleep 6; n=0; last=
while [ $n -lt 30 ]; do sync; cur=$(awk '{print $7}' /sys/block/vda/vda2/stat); [ "$cur" = "$last" ] && break; last=$cur; sleep 1; n=$((n+1)); done
"#;

const BOOT_SECTORS: &str = r#"
sync; fact boot_sectors "$(awk '{print $7}' /sys/block/vda/vda2/stat)"
"#;

/// Bytes that differ between two images of the NOR data partition, less
/// JFFS2's clean markers (12 bytes at the start of an erase block, which
/// it writes lazily to blocks found erased over the first boots).
fn changed_bytes(a: &[u8], b: &[u8]) -> usize {
    const ERASE_BLOCK: usize = 256 * 1024;
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(i, (x, y))| x != y && i % ERASE_BLOCK >= 12)
        .count()
}

fn data_bytes(board: Board, img: &Path) -> Vec<u8> {
    let (off, len) = board.data_region(img);
    crate::harness::read_bytes(img, off, len)
}

/// `overlay.boot_attempts=2` and an init that never marks good: two
/// counted boots, then failsafe ("2 boots without mark-good"), which
/// writes nothing and does not count; `--mark-good` in failsafe makes the
/// next boot normal again, with the user's data. What a counted boot
/// writes at the device is measured (a mark-good's: the test above).
fn boot_counting_falls_back_after_n_boots(board: Board) {
    let w = Work::new(&format!("count-{}", board.name()));
    let img = board.storage(&w);
    let counted = |append: &'static str| Run {
        append,
        ..board.run(&img)
    };
    let on = "overlay.boot_attempts=2";
    let d =
        drive(
            &w,
            &counted(on),
            &format!(
            "{USER_CHANGES}\n{COUNT_FACTS}\nfact size \"$(stat -c %s /overlay/.boot/count)\"\n{}",
            if board == Board::Block { LAZYINIT_DONE } else { "" }
        ),
        );
    let b = &d.boot;
    b.expect_clean_run();
    // (A new filesystem starts from 0; JFFS2 on erased flash is no new
    // filesystem, and its missing record starts from 0 too.)
    b.expect("overlay-init: # count this boot in .boot/count");
    assert_eq!(
        b.fact("count_line"),
        "boot count: 1 of 2 boots without mark-good; this boot is not marked good"
    );
    assert_eq!(b.fact("state_count"), "boot_count=1");
    assert_eq!(b.fact("size"), "4128");
    assert_eq!(b.fact("status_exit"), "0");

    let d = drive(&w, &counted(on), COUNT_FACTS);
    d.boot.expect_clean_run();
    assert_eq!(
        d.boot.fact("count_line"),
        "boot count: 2 of 2 boots without mark-good; this boot is not marked good"
    );

    // The limit: failsafe, nothing written (the count included).
    let before = board.data_crc(&img);
    let d = drive(
        &w,
        &counted(on),
        &format!("{FAILSAFE_FACTS}\n{COUNT_FACTS}"),
    );
    let why = "2 boots without mark-good";
    assert_failsafe(board, &d.boot, why);
    d.boot.expect(
        "overlay-init: *** `overlay-status --mark-good` makes the next boot a normal one again",
    );
    assert_eq!(
        d.boot.fact("count_line"),
        "boot count: 2 of 2 boots without mark-good; this boot is not marked good",
        "{}",
        d.boot.console
    );
    assert_eq!(board.data_crc(&img), before, "the flash is unchanged");

    // Failsafe again (it did not count), and marked good from there.
    let d = drive(
        &w,
        &counted(on),
        r#"
fact failsafe "$(grep '^failsafe=' /run/overlay-init/state)"
overlay-status --mark-good; fact mark_exit $?
overlay-status > /tmp/st
fact count_line "$(grep '^boot count:' /tmp/st || echo none)"
fact overlay_opts "$(awk '$2=="/overlay" {print $4}' /proc/mounts)"
fact rescue "$(cat /overlay/upper/root/user-file 2>&1)"
overlay-status --mark-good; fact again_exit $?
"#,
    );
    let b = &d.boot;
    b.expect_clean_run();
    assert_eq!(b.fact("failsafe"), format!("failsafe={why}"));
    assert_eq!(b.fact("mark_exit"), "0");
    b.expect("overlay-status: this boot is marked good");
    assert_eq!(
        b.fact("count_line"),
        "boot count: 0 of 2 boots without mark-good; this boot is marked good"
    );
    assert!(
        b.fact("overlay_opts").starts_with("ro,"),
        "read-only again: {}",
        b.fact("overlay_opts")
    );
    assert_eq!(b.fact("rescue"), "user-data");
    assert_eq!(b.fact("again_exit"), "0");
    b.expect("overlay-status: already marked good");

    // Normal again, with the user's data; counted (1), marked good here.
    let pre = data_bytes(board, &img);
    let mark = match board {
        Board::Block => "overlay-status --mark-good",
        Board::Nor => "",
    };
    let d = drive(
        &w,
        &counted(on),
        &format!(
            "fact user \"$(cat /root/user-file 2>/dev/null || echo absent)\"\n{COUNT_FACTS}\n{}\n{mark}",
            if board == Board::Block { BOOT_SECTORS } else { "" }
        ),
    );
    let b = &d.boot;
    b.expect_clean_run();
    assert!(!b.has("FAILSAFE BOOT"));
    assert_eq!(b.fact("user"), "user-data");
    assert_eq!(b.fact("status_exit"), "0");
    assert_eq!(
        b.fact("count_line"),
        "boot count: 1 of 2 boots without mark-good; this boot is not marked good"
    );
    let counted_nor = changed_bytes(&pre, &data_bytes(board, &img));
    let counted_sectors = (board == Board::Block).then(|| b.fact("boot_sectors"));

    // Counting off (the default): the record is neither read nor written.
    let pre = data_bytes(board, &img);
    let d = drive(
        &w,
        &board.run(&img),
        &format!(
            "{COUNT_FACTS}\n{}\noverlay-init recovery-selftest read /overlay",
            match board {
                Board::Block => BOOT_SECTORS,
                // The mark-good of the counted boot, here (its bytes).
                Board::Nor => "overlay-status --mark-good",
            }
        ),
    );
    let b = &d.boot;
    b.expect_clean_run();
    assert!(!b.has("# count this boot"));
    assert_eq!(b.fact("count_line"), "none");
    assert_eq!(b.fact("state_count"), "none");
    assert!(
        b.fact("read").contains("attempts: 0"),
        "marked good in the boot before: {}",
        b.fact("read")
    );
    let uncounted_nor = changed_bytes(&pre, &data_bytes(board, &img));
    match board {
        Board::Block => {
            let c: u64 = counted_sectors.unwrap().parse().unwrap();
            let u: u64 = b.fact("boot_sectors").parse().unwrap();
            eprintln!(
                "block: sectors written to the data partition by a boot (synced): counted {c}, not counted {u}"
            );
            assert!(
                c >= u && c - u <= 16,
                "counting costs a few blocks a boot: {c} vs {u} sectors"
            );
        }
        Board::Nor => {
            // And what a boot writes by itself (counting off, no mark).
            let pre = data_bytes(board, &img);
            let d = drive(&w, &board.run(&img), "true");
            d.boot.expect_clean_run();
            let plain = changed_bytes(&pre, &data_bytes(board, &img));
            eprintln!(
                "nor: bytes changed in rootfs_data by a boot: counted {counted_nor}; not counted, with a mark-good {uncounted_nor}; not counted, no mark-good {plain}"
            );
            assert!(
                counted_nor > plain && counted_nor - plain <= 512,
                "one small JFFS2 node or two: {counted_nor} vs {plain} bytes"
            );

            // A factory reset ends the fallback too: at the limit (1 of 1),
            // a boot with `overlay.reset=1` resets and counts from 0 again.
            let d = drive(&w, &counted("overlay.boot_attempts=1"), COUNT_FACTS);
            d.boot.expect_clean_run();
            assert_eq!(count_of(&d.boot), 1);
            let d = drive(
                &w,
                &counted("overlay.boot_attempts=1 overlay.reset=1"),
                &format!("fact user \"$(cat /root/user-file 2>/dev/null || echo absent)\"\n{COUNT_FACTS}"),
            );
            let b = &d.boot;
            b.expect_clean_run();
            assert!(!b.has("FAILSAFE BOOT"), "{}", b.console);
            assert_eq!(b.fact("user"), "absent", "the reset removed the changes");
            b.expect("overlay-init: # count this boot in .boot/count (from 0)");
            assert_eq!(count_of(b), 1);
        }
    }
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn boot_counting_on_the_block_board() {
    boot_counting_falls_back_after_n_boots(Board::Block);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn boot_counting_on_the_nor_board() {
    boot_counting_falls_back_after_n_boots(Board::Nor);
}

/// The count a boot left (the state file's `boot_count=`), from the facts
/// of [`COUNT_FACTS`].
fn count_of(b: &crate::harness::Boot) -> u32 {
    b.fact("state_count")
        .strip_prefix("boot_count=")
        .unwrap_or_else(|| panic!("no boot count: {}", b.console))
        .parse()
        .unwrap()
}

/// Power cuts at each instant of the counter's writes (the test build's
/// `overlay.test_crash=`: a reboot without sync right there), each
/// followed by the boot that reads what the cut left:
/// - `count-write` (a boot's count written, not yet synced) and
///   `count-sync` (synced): the count is never lost, never reset, never
///   unreadable;
/// - `mark-write` (the mark-good written, not yet synced): on ext4 the
///   write is not durable and the boot counts as a failed attempt, never as
///   a success; `mark-sync`: the mark holds.
///
/// JFFS2 on NOR has no write-back cache (a write is on the flash when
/// write(2) returns): there a cut after the write keeps it, which is the
/// same outcome as a cut after the sync.
fn power_cuts_around_the_counter(board: Board) {
    let w = Work::new(&format!("count-cuts-{}", board.name()));
    let img = board.storage(&w);
    let run = |append: &str, script: &str| {
        let append = format!("overlay.boot_attempts=9 {append}");
        let run = Run {
            append: &append,
            ..board.run(&img)
        };
        drive(&w, &run, script).boot
    };
    let cut_in_the_pre_init = |point: &str| {
        let b = run(&format!("overlay.test_crash={point}"), "fact reached yes");
        b.expect(&format!("test hook: power cut after {point} #1"));
        assert!(!b.has("real init reached"), "{point}: cut before init");
        assert!(!b.has("Kernel panic"), "{point}");
    };
    // The write lands on the device at once on NOR, at the sync on ext4.
    let durable_at_write = board == Board::Nor;

    let b = run("", COUNT_FACTS);
    b.expect_clean_run();
    assert_eq!(count_of(&b), 1);

    cut_in_the_pre_init("count-write");
    let mark_cut = format!("{COUNT_FACTS}\noverlay-status --mark-good\nfact survived yes");
    let b = run("overlay.test_crash=mark-write", &mark_cut);
    let c = count_of(&b);
    assert_eq!(
        c,
        if durable_at_write { 3 } else { 2 },
        "after a cut at count-write: the count of before (1), plus the cut boot if its write had landed, plus this boot"
    );
    b.expect("test hook: power cut after mark-write #1");
    assert!(!b.has("T:survived"));

    let b = run("overlay.test_crash=mark-sync", &mark_cut);
    let c2 = count_of(&b);
    assert_eq!(
        c2,
        if durable_at_write { 1 } else { c + 1 },
        "after a cut at mark-write: on ext4 the mark never happened (a failed attempt)"
    );
    b.expect("test hook: power cut after mark-sync #1");
    assert!(!b.has("T:survived"));

    let b = run("", COUNT_FACTS);
    b.expect_clean_run();
    assert_eq!(count_of(&b), 1, "after a cut at mark-sync: the mark holds");

    cut_in_the_pre_init("count-sync");
    let b = run("", COUNT_FACTS);
    b.expect_clean_run();
    assert_eq!(
        count_of(&b),
        3,
        "after a cut at count-sync: that boot counted"
    );
    assert!(!b.has("unreadable"));
    eprintln!("{}: counts after each cut as expected", board.name());

    // A record that does not check out is not trusted (hostile or
    // damaged): ext4, both slots overwritten; JFFS2, a FIFO in its place.
    // The next boot is failsafe and says why; --mark-good from there
    // writes a good record, and the boot after counts from it.
    let (damage, why) = match board {
        Board::Block => (
            "dd if=/dev/urandom of=/overlay/.boot/count bs=32 count=1 conv=notrunc 2>/dev/null
dd if=/dev/urandom of=/overlay/.boot/count bs=32 count=1 seek=128 conv=notrunc 2>/dev/null",
            "the boot counter record is unreadable (no valid slot (0: not a boot count record; 1: not a boot count record))",
        ),
        Board::Nor => (
            "rm /overlay/.boot/count && mkfifo /overlay/.boot/count",
            "the boot counter record is unreadable (not a regular file of the data filesystem)",
        ),
    };
    let b = run("", &format!("{damage}\nsync\nfact damaged yes"));
    b.expect_clean_run();
    assert_eq!(b.fact("damaged"), "yes");
    let b = run(
        "",
        &format!("{COUNT_FACTS}\nfact failsafe \"$(grep '^failsafe=' /run/overlay-init/state)\"\noverlay-status --mark-good; fact mark_exit $?"),
    );
    b.expect_clean_run();
    assert_eq!(b.fact("failsafe"), format!("failsafe={why}"));
    b.expect(&format!("overlay-init: *** why: {why}"));
    assert!(
        b.fact("count_line")
            .starts_with("boot count: record unreadable ("),
        "{}",
        b.fact("count_line")
    );
    assert_eq!(b.fact("mark_exit"), "0");
    b.expect("overlay-status: this boot is marked good");
    let b = run("", COUNT_FACTS);
    b.expect_clean_run();
    assert!(!b.has("FAILSAFE BOOT"));
    assert_eq!(count_of(&b), 1, "counted from the record the mark wrote");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn power_cuts_around_the_boot_counter_on_the_block_board() {
    power_cuts_around_the_counter(Board::Block);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn power_cuts_around_the_boot_counter_on_the_nor_board() {
    power_cuts_around_the_counter(Board::Nor);
}

/// A failsafe boot whose data partition holds no filesystem it can mount
/// (random bytes): the data is not mounted at all (the banner and
/// overlay-status say so), the boot goes on, on RAM; the partition is
/// unchanged byte for byte. `overlay.reset=1` beside it is not acted on.
fn failsafe_with_data_that_does_not_mount(board: Board) {
    let w = Work::new(&format!("failsafe-nodata-{}", board.name()));
    let img = board.storage(&w);
    let (off, len) = board.data_region(&img);
    crate::harness::scribble(&img, off, len as usize, 0xfa11);
    let before = board.data_crc(&img);
    let run = Run {
        append: "overlay.failsafe=1 overlay.reset=1",
        ..board.run(&img)
    };
    let d = drive(
        &w,
        &run,
        r#"
fact overlay "$(fstype /overlay)"
fact env "$(tr '\0' '\n' < /proc/1/environ | grep '^FAILSAFE=' || echo none)"
echo x > /root/ram-file && fact ram_write yes
overlay-status > /tmp/st; fact status_exit $?
cat /tmp/st
fact data_line "$(grep -A1 '^failsafe:' /tmp/st | tail -n1 | sed 's/^ *//')"
"#,
    );
    let b = &d.boot;
    b.expect_clean_run();
    b.expect("overlay-init: *** FAILSAFE BOOT ***");
    b.expect("overlay-init: *** your data filesystem did not mount: it is not available");
    assert_eq!(b.fact("overlay"), "", "nothing mounted at /overlay");
    assert_eq!(b.fact("env"), "FAILSAFE=1");
    assert_eq!(b.fact("ram_write"), "yes");
    assert_eq!(b.fact("status_exit"), "2");
    assert_eq!(b.fact("data_line"), "your data filesystem did not mount");
    assert!(!b.has("factory reset"), "no reset in a failsafe boot");
    assert_eq!(board.data_crc(&img), before, "the partition is unchanged");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn failsafe_with_data_that_does_not_mount_on_both_boards() {
    failsafe_with_data_that_does_not_mount(Board::Block);
    failsafe_with_data_that_does_not_mount(Board::Nor);
}

/// Real power cuts (QEMU killed with SIGKILL, harness `boot_nor_cut`) a
/// few milliseconds after the boot says it counts itself, on the NOR
/// board (pflash writes reach the image file as the guest makes them):
/// wherever a cut lands in the JFFS2 write, the next boot reads the count
/// of before or the one the cut boot wrote, never an unreadable record.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn sigkill_cuts_while_the_nor_board_counts_keep_the_count() {
    let w = Work::new("count-sigkill");
    let flash = w.nor_flash(None);
    let append = "overlay.boot_attempts=50";
    let run = Run {
        append,
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, COUNT_FACTS);
    d.boot.expect_clean_run();
    let mut count = count_of(&d.boot);
    assert_eq!(count, 1);
    let mut outcomes = Vec::new();
    for ms in [0u64, 2, 5, 10, 20] {
        let cut = crate::harness::boot_nor_cut(
            &w,
            &flash,
            append,
            "fact reached yes",
            "overlay-init: # count this boot in .boot/count",
            Duration::from_millis(ms),
        );
        assert!(cut.killed, "{ms} ms: no cut:\n{}", cut.console);
        let d = drive(&w, &run, COUNT_FACTS);
        d.boot.expect_clean_run();
        assert!(!d.boot.has("FAILSAFE BOOT"), "{}", d.boot.console);
        let now = count_of(&d.boot);
        assert!(
            now == count + 1 || now == count + 2,
            "{ms} ms after the count's line: {count} before, {now} after"
        );
        outcomes.push((ms, now - count - 1));
        count = now;
    }
    eprintln!(
        "SIGKILL cuts (ms after the count's line, 1 = the cut boot's count landed): {outcomes:?}"
    );
}

/// The button, in a whole boot (NOR board; gpio-mockup's lines read low):
/// named active-low it is held, and the boot is failsafe; named
/// active-high it is not, and the boot is normal.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn failsafe_by_the_gpio_button_on_the_nor_board() {
    let w = Work::new("failsafe-gpio");
    let flash = w.nor_flash(None);
    let d = drive(&w, &Run::nor(&flash), USER_CHANGES);
    d.boot.expect_clean_run();
    let before = Board::Nor.data_crc(&flash);
    let run = Run {
        append: "gpio_mockup.gpio_mockup_ranges=-1,8 overlay.failsafe_gpio=gpiochip0:3:active-low",
        ..Run::nor(&flash)
    };
    let d = drive(&w, &run, FAILSAFE_FACTS);
    assert_failsafe(
        Board::Nor,
        &d.boot,
        "the failsafe button (gpiochip0:3:active-low) was held at boot",
    );
    assert_eq!(Board::Nor.data_crc(&flash), before);
    let run = Run {
        append: "gpio_mockup.gpio_mockup_ranges=-1,8 overlay.failsafe_gpio=gpiochip0:3",
        ..Run::nor(&flash)
    };
    let d = drive(
        &w,
        &run,
        "fact user \"$(cat /root/user-file 2>/dev/null || echo absent)\"",
    );
    d.boot.expect_clean_run();
    assert!(!d.boot.has("FAILSAFE BOOT"));
    assert_eq!(d.boot.fact("user"), "user-data");
}
