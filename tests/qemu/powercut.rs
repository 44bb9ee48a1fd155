//! Random power cuts as a campaign (issue 11): `qemu/powercut.sh` runs
//! [`powercut_campaign`] with its options in `POWERCUT_*` variables.
//!
//! For every upper filesystem (ext4 on the qemu-armv7 GPT disk; JFFS2 and
//! UBIFS on the qemu-armv7-nor flash) and every operation (`writes`,
//! `format`, `reset`, `wearlog`) the campaign
//! 1. prepares an image in the state just before the operation (a few
//!    boots, once per filesystem and operation);
//! 2. measures the operation's window: one boot without a cut, host
//!    arrival times of a marker line before it and of its first and last
//!    console lines;
//! 3. for each cut: boots a copy of that image and kills QEMU with SIGKILL
//!    (its whole process group, as [`crate::harness::boot_nor_cut`] does) at a
//!    random instant after the marker, drawn over the window and a margin
//!    on both sides (seeded: [`Rng`]), so that cuts land before, during and
//!    after the operation; then boots the image again and checks that this
//!    boot reaches the real init on the flash upper (not on RAM), that the
//!    upper is writable, and that every file whose fsync completed is
//!    intact.
//!
//! Every boot that writes runs [`WRITER`]: numbered files, each unique,
//! each written with `dd conv=fsync` and its directory fsynced, then one line
//! `pc N SIZE MD5 end` appended to `/root/pc/manifest` and fsynced, then
//! `T:pc=N` on the console. A manifest line on flash therefore means that
//! file's fsync completed; a `T:pc=N` the host saw means that line's fsync
//! completed too. [`CHECKER`] (the boot after the cut) checks each manifest
//! line's file (size and md5sum) and lists the numbers it found: a file is
//! lost when its content is wrong or missing, or when the console had
//! confirmed it and the manifest lacks it.
//!
//! The report (Markdown and JSON, in `POWERCUT_OUT`) has a row per scenario:
//! cuts, where they landed, boots that reached init on flash, files checked,
//! files lost; the consoles of every cut with a problem are kept next to it.
//! The test fails when any cut has a problem.

use crate::harness::{
    console_lines, flash_partition, next_line_or_kill, out_dir_for, repo, scribble, write_bytes,
    Work, BOARD, NOR_BOARD, PRELUDE,
};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The writer and its helpers, in the guest's busybox sh.
///
/// `pc_write FIRST COUNT` writes `/root/pc/fN` for N = FIRST..FIRST+COUNT-1:
/// a header naming the file and the boot, then a slice of the busybox
/// binary (not /dev/urandom: reading it before the kernel's crng is ready
/// stalls for seconds under TCG, at a different moment each boot), made in
/// /tmp (tmpfs) and summed there, copied to the flash
/// with `dd conv=fsync`, the directory fsynced (`sync DIR`: busybox fsyncs
/// each argument), then the manifest line appended and fsynced; sizes vary
/// from 1 KiB to 29 KiB (plus the header), every tenth file 256 KiB.
pub const WRITER: &str = r#"
pc_write() {
  mkdir -p /root/pc
  [ -e /root/pc/manifest ] || : > /root/pc/manifest
  sync
  i=$1; end=$(($1 + $2))
  echo "T:writes=start"
  while [ $i -lt $end ]; do
    case $((i % 10)) in 9) kb=256 ;; *) kb=$(( (i * 7) % 29 + 1 )) ;; esac
    { echo "pc file $i of boot $(cat /proc/sys/kernel/random/boot_id)"
      dd if=/rom/bin/busybox bs=1024 skip=$(( (i * 53) % 990 )) count=$kb 2>/dev/null; } > /tmp/pc.new
    sum=$(md5sum < /tmp/pc.new | cut -d' ' -f1)
    dd if=/tmp/pc.new of=/root/pc/f$i bs=4096 conv=fsync 2>/dev/null || { echo "T:write_failed=$i"; break; }
    sync /root/pc || { echo "T:dirsync_failed=$i"; break; }
    echo "pc $i $(stat -c %s /tmp/pc.new) $sum end" >> /root/pc/manifest && sync /root/pc/manifest ||
      { echo "T:manifest_failed=$i"; break; }
    echo "T:pc=$i"
    i=$((i + 1))
  done
  echo "T:writes=end"
}
"#;

/// `pc_check`: every well-formed manifest line's file is checked (size,
/// md5sum). Facts: `pc_checked` (lines checked), `pc_lost` (numbers whose
/// file is wrong or missing), `pc_have` (the numbers in the manifest, as
/// ranges `A-B`), `pc_bad` (malformed lines), `pc_badmid` (malformed lines
/// followed by a good one: more than a torn last append).
pub const CHECKER: &str = r#"
pc_check() {
  n=0; lost=; bad=0; badmid=0; have=; start=; prev=
  if [ -f /root/pc/manifest ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      set -- $line
      if [ $# != 5 ] || [ "$1" != pc ] || [ "$5" != end ]; then bad=$((bad + 1)); continue; fi
      [ $bad = 0 ] || badmid=$bad
      n=$((n + 1))
      f=/root/pc/f$2
      if [ "$(stat -c %s $f 2>/dev/null)" != "$3" ] || [ "$(md5sum < $f 2>/dev/null | cut -d' ' -f1)" != "$4" ]; then
        lost="$lost $2"
      fi
      if [ -z "$start" ]; then start=$2
      elif [ "$2" != $((prev + 1)) ]; then have="$have $start-$prev"; start=$2
      fi
      prev=$2
    done < /root/pc/manifest
    [ -z "$start" ] || have="$have $start-$prev"
  fi
  echo "T:pc_checked=$n"
  echo "T:pc_lost=$lost"
  echo "T:pc_have=$have"
  echo "T:pc_bad=$bad"
  echo "T:pc_badmid=$badmid"
}
"#;

/// Facts of the boot after a cut: the filesystem types, the manifest check,
/// a write that must reach the flash, overlay-status.
const AFTER_CUT: &str = r#"
echo "T:root=$(fstype /)"
echo "T:overlay=$(fstype /overlay)"
pc_check
echo after > /root/pc-after && sync && echo "T:rw=ok"
echo "T:junk=$([ -e /root/junk ] && echo present || echo gone)"
echo "T:request=$([ -e /overlay/.reset/request ] && echo pending || echo none)"
echo "T:wearlog=$(head -c 8 /overlay/.wear/log 2>/dev/null)"
status
"#;

/// Files written by the boot that prepares the formatted image.
const PREP_FILES: u32 = 20;
/// First file number of the boot that is cut.
const CUT_FIRST: u32 = 1000;
/// Files in the junk tree the reset deletes (so that the wipe and the
/// bounded trash deletion take a while).
const JUNK_FILES: u32 = 1500;

/// An upper filesystem and the board it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fs {
    Ext4,
    Jffs2,
    Ubifs,
}

impl Fs {
    const ALL: [Fs; 3] = [Fs::Ext4, Fs::Jffs2, Fs::Ubifs];

    fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Jffs2 => "jffs2",
            Fs::Ubifs => "ubifs",
        }
    }

    fn board(self) -> &'static str {
        match self {
            Fs::Ext4 => BOARD,
            Fs::Jffs2 | Fs::Ubifs => NOR_BOARD,
        }
    }

    /// overlay-init's line once the upper is mounted.
    fn upper_line(self) -> &'static str {
        match self {
            Fs::Ext4 => "overlay-init: upper: /dev/vda2 (ext4) at /overlay",
            Fs::Jffs2 => "overlay-init: upper: mtd:rootfs_data (jffs2) at /overlay",
            Fs::Ubifs => "overlay-init: upper: /dev/ubi0_0 (ubifs) at /overlay",
        }
    }

    /// The kernel's line as it starts overlay-init.
    fn run_init_line(self) -> &'static str {
        match self {
            Fs::Ext4 => "Run /init as init process",
            Fs::Jffs2 | Fs::Ubifs => "Run /sbin/overlay-init as init process",
        }
    }

    /// The command line of the boot that formats a blank partition.
    fn first_append(self) -> &'static str {
        match self {
            Fs::Ubifs => "ubi.mtd=rootfs_data",
            Fs::Ext4 | Fs::Jffs2 => "",
        }
    }
}

/// What the cut interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// The writer itself.
    Writes,
    /// The first boot's format: ext4 mkfs of a blank partition; the erase of
    /// a JFFS2 partition carrying OpenWrt's 0xdeadc0de marker; UBI's attach
    /// of blank flash, the volume creation and UBIFS's first format.
    Format,
    /// A factory reset's wipe and in-boot trash deletion.
    Reset,
    /// The wear log: its creation (the first boot on a formatted upper
    /// without one) and a record appended (the guest clock moved on).
    WearLog,
}

impl Op {
    const ALL: [Op; 4] = [Op::Writes, Op::Format, Op::Reset, Op::WearLog];

    fn name(self) -> &'static str {
        match self {
            Op::Writes => "writes",
            Op::Format => "format",
            Op::Reset => "reset",
            Op::WearLog => "wearlog",
        }
    }
}

/// Where a cut landed, from what the cut boot printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landed {
    /// The operation's first line was not printed.
    Before,
    /// Its first line, not its last.
    During,
    /// Both.
    After,
    /// The boot ended before the instant: no cut (shown, not a problem).
    NoCut,
}

impl Landed {
    fn name(self) -> &'static str {
        match self {
            Landed::Before => "before",
            Landed::During => "during",
            Landed::After => "after",
            Landed::NoCut => "no cut",
        }
    }
}

/// One way into an operation: the image it starts from and how the cut boot
/// is run.
struct Variant {
    label: &'static str,
    base: PathBuf,
    append: String,
    qemu: Vec<String>,
    /// The cut is timed from this line's arrival.
    marker: &'static str,
    /// The operation's first and last lines.
    start: &'static str,
    end: &'static str,
    /// The files the image holds, confirmed by the boot that wrote them.
    confirmed: BTreeSet<u32>,
    /// Files the cut boot writes.
    writes: u32,
    /// The command line of the boot after the cut.
    after_append: String,
}

/// The window measured on a boot without a cut, in host seconds after the
/// marker line, and the range the cut instants are drawn from.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: f64,
    end: f64,
    lo: f64,
    hi: f64,
}

impl Window {
    fn new(start: f64, end: f64) -> Window {
        let pad = ((end - start) / 4.0).clamp(0.1, 1.0);
        Window {
            start,
            end,
            lo: (start - pad).max(0.0),
            hi: end + pad,
        }
    }

    /// A cut instant: 60% uniform in the window itself (so that a window of
    /// a few ms still gets cuts), 40% uniform over it and its margins.
    fn draw(&self, rng: &mut Rng) -> f64 {
        if rng.unit() < 0.6 {
            self.start + rng.unit() * (self.end - self.start)
        } else {
            self.lo + rng.unit() * (self.hi - self.lo)
        }
    }
}

/// SplitMix64: reproducible from the seed, one stream per (scenario, cut).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, scenario: &str, cut: usize) -> Rng {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in scenario.bytes().chain((cut as u64).to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one boot printed, with the host's arrival time of each line.
struct Timed {
    console: String,
    /// (seconds since QEMU was started, line)
    lines: Vec<(f64, String)>,
    killed: bool,
    code: Option<i32>,
    wall: f64,
}

impl Timed {
    fn has(&self, needle: &str) -> bool {
        self.console.contains(needle)
    }

    /// Arrival time of the first line holding `needle`.
    fn at(&self, needle: &str) -> Option<f64> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    /// Every value of fact `key` (`T:key=value` lines), in order.
    fn all(&self, key: &str) -> Vec<String> {
        let tag = format!("T:{key}=");
        self.console
            .lines()
            .filter_map(|l| {
                l.trim_end_matches('\r')
                    .split_once(&tag)
                    .map(|(_, v)| v.to_string())
            })
            .collect()
    }

    fn fact(&self, key: &str) -> Option<String> {
        self.all(key).pop()
    }

    /// The file numbers the writer confirmed (`T:pc=N`).
    fn confirmed(&self) -> BTreeSet<u32> {
        self.all("pc")
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect()
    }

    /// The console, each line after its host arrival time (`+S.mmm`), and
    /// how the boot ended.
    fn stamped(&self) -> String {
        let mut o = String::new();
        for (t, l) in &self.lines {
            let _ = write!(o, "+{t:7.3} {l}");
        }
        let _ = writeln!(
            o,
            "+{:7.3} ({}, exit {:?})",
            self.wall,
            if self.killed { "killed" } else { "ended" },
            self.code
        );
        o
    }

    /// The boot reached the real init, ran its script and powered off.
    fn clean(&self) -> bool {
        self.has("overlay-demo: real init reached")
            && self.has("overlay-demo: script exit 0")
            && !self.has("Kernel panic")
            && self.code == Some(0)
    }
}

/// Boots `image` on `fs`'s board with the board's command line plus
/// `append`, running [`PRELUDE`], [`WRITER`], [`CHECKER`] and `script`.
/// With `cut = Some((marker, s))`, QEMU's process group gets SIGKILL `s`
/// seconds after the first line holding `marker` arrived.
fn boot_timed(
    w: &Work,
    fs: Fs,
    image: &Path,
    append: &str,
    script: &str,
    qemu: &[String],
    cut: Option<(&str, f64)>,
) -> Timed {
    let script_file = w.path("script.sh");
    std::fs::write(
        &script_file,
        format!("{PRELUDE}\n{WRITER}\n{CHECKER}\n{script}\n"),
    )
    .unwrap();
    let board = fs.board();
    let mut cmd = Command::new(repo().join("qemu/run.sh"));
    cmd.args(["--board", board, "--out"])
        .arg(out_dir_for(board))
        .arg(if fs == Fs::Ext4 { "--disk" } else { "--flash" })
        .arg(image)
        .args(["--append", append, "--script"])
        .arg(&script_file)
        .args(["--timeout", "90", "--"])
        .args(qemu)
        // A killed run.sh leaves its temp dir behind: in the work dir.
        .env("TMPDIR", &w.dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("qemu/run.sh");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (rx, reader) = console_lines(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    while let Some((t, line)) = next_line_or_kill(&rx, kill_at, pgid, &mut killed) {
        if let Some((marker, s)) = cut {
            if kill_at.is_none() && line.contains(marker) {
                kill_at = Some(t + Duration::from_secs_f64(s));
            }
        }
        lines.push(((t - t0).as_secs_f64(), line));
    }
    let wall = t0.elapsed().as_secs_f64();
    // What QEMU had printed before it died.
    for (t, line) in rx {
        lines.push(((t - t0).as_secs_f64(), line));
    }
    reader.join().unwrap();
    let status = child.wait().expect("wait for qemu/run.sh");
    let console = lines.iter().map(|(_, l)| l.as_str()).collect();
    Timed {
        console,
        lines,
        killed,
        code: status.code(),
        wall,
    }
}

/// The result of one cut.
struct CutResult {
    scenario: String,
    variant: &'static str,
    index: usize,
    delay: f64,
    landed: Landed,
    on_flash: bool,
    checked: usize,
    lost: Vec<u32>,
    problems: Vec<String>,
    /// Wall time of the cut boot and of the boot after it.
    secs: f64,
}

/// Settings from the environment (qemu/powercut.sh).
struct Settings {
    cuts: usize,
    seed: u64,
    scenarios: Vec<(Fs, Op)>,
    out: PathBuf,
    cut_at: Option<f64>,
    /// Keep the consoles of every cut, not only of those with a problem.
    keep_consoles: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cuts = var("POWERCUT_CUTS").map_or(10, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("POWERCUT_CUTS={v}: not a number"))
        });
        let seed = var("POWERCUT_SEED").map_or_else(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            },
            |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("POWERCUT_SEED={v}: not a number"))
            },
        );
        // Operation by operation, so that a short run (cuts < scenarios)
        // still covers every filesystem.
        let all: Vec<(Fs, Op)> = Op::ALL
            .iter()
            .flat_map(|&o| Fs::ALL.iter().map(move |&f| (f, o)))
            .collect();
        let scenarios = match var("POWERCUT_SCENARIOS") {
            None => all,
            Some(list) => {
                let words: Vec<&str> = list.split(',').map(str::trim).collect();
                for word in &words {
                    assert!(
                        all.iter().any(|&(f, o)| scenario_matches(f, o, word)),
                        "POWERCUT_SCENARIOS: {word:?} names no scenario (FS, OP or FS-OP; FS: ext4 jffs2 ubifs, OP: writes format reset wearlog)"
                    );
                }
                all.into_iter()
                    .filter(|&(f, o)| words.iter().any(|w| scenario_matches(f, o, w)))
                    .collect()
            }
        };
        let out =
            var("POWERCUT_OUT").map_or_else(|| repo().join("qemu/out/powercut"), PathBuf::from);
        let cut_at = var("POWERCUT_CUT_AT_MS").map(|v| {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("POWERCUT_CUT_AT_MS={v}: not a number"))
                / 1000.0
        });
        Settings {
            cuts,
            seed,
            scenarios,
            out,
            cut_at,
            keep_consoles: var("POWERCUT_CONSOLES").is_some_and(|v| v == "1"),
        }
    }
}

fn scenario_matches(fs: Fs, op: Op, word: &str) -> bool {
    word == fs.name() || word == op.name() || word == format!("{}-{}", fs.name(), op.name())
}

/// The images a filesystem's scenarios start from, made once.
struct Prepared {
    /// Formatted, [`PREP_FILES`] files written, the wear log holding record #1.
    formatted: PathBuf,
    confirmed: BTreeSet<u32>,
}

/// A boot that prepares an image: it must run cleanly on the flash upper.
fn prep_boot(w: &Work, fs: Fs, image: &Path, append: &str, script: &str) -> Timed {
    let b = boot_timed(w, fs, image, append, script, &[], None);
    assert!(
        b.clean() && b.has(fs.upper_line()) && !b.has("RUNNING ON RAM"),
        "{}: preparing {}: the boot did not run cleanly on the flash upper:\n{}",
        fs.name(),
        image.display(),
        b.console
    );
    b
}

/// A blank image of `fs`'s board: a GPT disk with a blank rootfs_data, or
/// an erased flash.
fn blank_image(w: &Work, fs: Fs, name: &str) -> PathBuf {
    match fs {
        Fs::Ext4 => {
            let rootfs = out_dir_for(BOARD).join("rootfs.squashfs");
            w.disk(
                name,
                &[
                    format!("rootfs:auto:{}", rootfs.display()),
                    "rootfs_data:64".into(),
                ],
            )
        }
        Fs::Jffs2 | Fs::Ubifs => w.flash(name, &[]),
    }
}

fn prepare(w: &Work, fs: Fs) -> Prepared {
    let img = blank_image(w, fs, &format!("{}-formatted.img", fs.name()));
    // Boot 1 formats and writes the files; 2 s more so that JFFS2 has
    // written its clean markers (QEMU-NOTES), then a sync.
    let b1 = prep_boot(
        w,
        fs,
        &img,
        fs.first_append(),
        &format!("pc_write 0 {PREP_FILES}\nsleep 2; sync"),
    );
    let confirmed = b1.confirmed();
    assert_eq!(confirmed.len(), PREP_FILES as usize, "{}", b1.console);
    // Boot 2: the first boot on the formatted upper (ext4: creates the wear log).
    let b2 = prep_boot(w, fs, &img, "", "pc_check");
    assert_eq!(
        b2.fact("pc_checked").as_deref(),
        Some(PREP_FILES.to_string().as_str()),
        "{}",
        b2.console
    );
    assert_eq!(b2.fact("pc_lost").as_deref(), Some(""), "{}", b2.console);
    assert!(
        b1.has("wear log: record #1 written") || b2.has("wear log: record #1 written"),
        "{}",
        b2.console
    );
    Prepared {
        formatted: img,
        confirmed,
    }
}

/// `-rtc base=` for a guest clock `secs` ahead of the host's.
fn clock_ahead(secs: u64) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S", "-d"])
        .arg(format!("@{}", now + secs))
        .output()
        .expect("date");
    assert!(out.status.success());
    vec![
        "-rtc".into(),
        format!("base={}", String::from_utf8(out.stdout).unwrap().trim()),
    ]
}

/// The variants of scenario (fs, op), at most `max` of them (a short run
/// does not prepare what it will not cut), their images made from `prep`.
fn variants(w: &Work, fs: Fs, op: Op, prep: &mut Option<Prepared>, max: usize) -> Vec<Variant> {
    let run_init = fs.run_init_line();
    let mut formatted = || -> (PathBuf, BTreeSet<u32>) {
        let p = prep.get_or_insert_with(|| prepare(w, fs));
        (p.formatted.clone(), p.confirmed.clone())
    };
    let variant = |label, base, marker, start, end, confirmed| Variant {
        label,
        base,
        append: String::new(),
        qemu: Vec::new(),
        marker,
        start,
        end,
        confirmed,
        writes: 15,
        after_append: String::new(),
    };
    match op {
        Op::Writes => {
            let (base, confirmed) = formatted();
            let mut v = variant(
                "writes",
                base,
                "overlay-demo: running test script",
                "T:writes=start",
                "T:writes=end",
                confirmed,
            );
            v.writes = 100;
            vec![v]
        }
        Op::Format => {
            let base = blank_image(w, fs, &format!("{}-blank.img", fs.name()));
            let mut v = match fs {
                Fs::Ext4 => variant(
                    "mkfs",
                    base,
                    run_init,
                    "overlay-init: first boot: formatting blank",
                    fs.upper_line(),
                    BTreeSet::new(),
                ),
                Fs::Jffs2 => {
                    // The marker on a partition of random bytes: the erase
                    // has every block to do.
                    let (off, len) = flash_partition("rootfs_data");
                    scribble(&base, off, len as usize, 0x9c);
                    write_bytes(&base, off, &[0xde, 0xad, 0xc0, 0xde]);
                    variant(
                        "marker-erase",
                        base,
                        run_init,
                        "format marker found: erasing",
                        fs.upper_line(),
                        BTreeSet::new(),
                    )
                }
                Fs::Ubifs => variant(
                    "ubi-attach-mkvol-ubifs",
                    base,
                    "jffs2: version",
                    "ubi0: attaching mtd2",
                    fs.upper_line(),
                    BTreeSet::new(),
                ),
            };
            v.append = fs.first_append().to_string();
            v.after_append = fs.first_append().to_string();
            vec![v]
        }
        Op::Reset => {
            let (formatted, confirmed) = formatted();
            let base = w.path(&format!("{}-reset.img", fs.name()));
            std::fs::copy(&formatted, &base).unwrap();
            let b = prep_boot(
                w,
                fs,
                &base,
                "",
                &format!(
                    "mkdir /root/junk; i=0; while [ $i -lt {JUNK_FILES} ]; do : > /root/junk/f$i; i=$((i + 1)); done\noverlay-reset -y --no-reboot --keep /root/pc; echo \"T:reset_exit=$?\""
                ),
            );
            assert_eq!(b.fact("reset_exit").as_deref(), Some("0"), "{}", b.console);
            vec![variant(
                "wipe",
                base,
                run_init,
                "wiping the upper layer",
                "overlay-init: factory reset: ",
                confirmed,
            )]
        }
        Op::WearLog => {
            let (formatted, confirmed) = formatted();
            let create = w.path(&format!("{}-nolog.img", fs.name()));
            std::fs::copy(&formatted, &create).unwrap();
            prep_boot(w, fs, &create, "", "rm -rf /overlay/.wear && sync");
            let create = variant(
                "create",
                create,
                // A few ms before the write: a marker further back (the
                // kernel's) varies by more than the whole window. The
                // records are read on the read-only mount, before the
                // upper's line (the plan of issue 10).
                RO_MOUNT_LINE,
                "flash wear projection",
                "wear log: record #1 written",
                confirmed.clone(),
            );
            if max < 2 {
                return vec![create];
            }
            let mut append = variant(
                "append",
                formatted,
                RO_MOUNT_LINE,
                "flash wear projection",
                "wear log: record #2 written",
                confirmed.clone(),
            );
            // Two minutes on with a one-minute interval: record #2 is due.
            append.append = "overlay.wear=log_interval:1m".into();
            append.qemu = clock_ahead(120);
            vec![create, append]
        }
    }
}

/// The cut boot's script: the writer, then idle, so that a cut drawn after
/// the operation still finds the guest running.
fn cut_script(v: &Variant) -> String {
    format!("pc_write {CUT_FIRST} {}\nsleep 3", v.writes)
}

/// The data filesystem's read-only mount, from which the records (the wear
/// log among them) are read: the last line before the wear log's write
/// that every filesystem prints.
const RO_MOUNT_LINE: &str = "overlay-init: mount -o ro -t ";

/// Boots once without a cut and measures the window.
fn calibrate(w: &Work, fs: Fs, v: &Variant) -> Window {
    let img = w.path("calibrate.img");
    std::fs::copy(&v.base, &img).unwrap();
    let script = format!("pc_write {CUT_FIRST} {}", v.writes);
    let b = boot_timed(w, fs, &img, &v.append, &script, &v.qemu, None);
    std::fs::remove_file(&img).unwrap();
    let (m, s, e) = (b.at(v.marker), b.at(v.start), b.at(v.end));
    let (Some(m), Some(s), Some(e)) = (m, s, e) else {
        panic!(
            "{}-{}: the boot without a cut lacks a window line (marker {:?}: {m:?}, start {:?}: {s:?}, end {:?}: {e:?}):\n{}",
            fs.name(),
            v.label,
            v.marker,
            v.start,
            v.end,
            b.console
        )
    };
    assert!(m <= s && s <= e, "{m} {s} {e}:\n{}", b.console);
    Window::new(s - m, e - m)
}

/// The numbers of `have` ranges (`A-B A-B`).
fn parse_ranges(have: &str) -> BTreeSet<u32> {
    have.split_whitespace()
        .filter_map(|r| r.split_once('-'))
        .filter_map(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .flat_map(|(a, b)| a..=b)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn one_cut(
    w: &Work,
    fs: Fs,
    op: Op,
    v: &Variant,
    index: usize,
    delay: f64,
    consoles: &Path,
    keep_consoles: bool,
) -> CutResult {
    let scenario = format!("{}-{}", fs.name(), op.name());
    let img = w.path("cut.img");
    std::fs::copy(&v.base, &img).unwrap();
    let cut = boot_timed(
        w,
        fs,
        &img,
        &v.append,
        &cut_script(v),
        &v.qemu,
        Some((v.marker, delay)),
    );
    let landed = if !cut.killed {
        Landed::NoCut
    } else if !cut.has(v.start) {
        Landed::Before
    } else if !cut.has(v.end) {
        Landed::During
    } else {
        Landed::After
    };
    let after = boot_timed(w, fs, &img, &v.after_append, AFTER_CUT, &[], None);
    std::fs::remove_file(&img).unwrap();

    // A boot that ended before the instant (the calibration boot was
    // slower) was not cut: nothing to hold against the product, and the
    // boot after it is checked all the same; the report's "landed" column
    // shows it as no cut.
    let mut problems = Vec::new();
    let on_flash = after.clean()
        && after.has(fs.upper_line())
        && !after.has("RUNNING ON RAM")
        && after.fact("overlay").as_deref() == Some(fs.name())
        && after.fact("root").as_deref() == Some("overlay")
        && after.fact("status_exit").as_deref() == Some("0");
    if !on_flash {
        let reason = after
            .console
            .lines()
            .find(|l| l.contains("running on RAM") || l.contains("reason:"))
            .unwrap_or("");
        problems.push(format!(
            "the boot after the cut did not reach init on the flash upper (clean run {}, upper fs {:?}, overlay-status exit {:?}) {reason}",
            after.clean(),
            after.fact("overlay"),
            after.fact("status_exit")
        ));
    }
    if on_flash && after.fact("rw").as_deref() != Some("ok") {
        problems.push("the upper is not writable after the cut".into());
    }
    let mut confirmed = v.confirmed.clone();
    confirmed.extend(cut.confirmed());
    let have = after.fact("pc_have").map(|h| parse_ranges(&h));
    let mut lost: BTreeSet<u32> = after
        .fact("pc_lost")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let checked = match &have {
        Some(have) => {
            lost.extend(confirmed.difference(have));
            have.union(&confirmed).count()
        }
        // No check ran (the boot did not reach init): every confirmed file
        // is unaccounted for.
        None => {
            lost.extend(&confirmed);
            confirmed.len()
        }
    };
    if !lost.is_empty() {
        problems.push(format!("files lost: {lost:?}"));
    }
    if after.fact("pc_badmid").is_some_and(|b| b != "0") {
        problems.push("malformed manifest lines before good ones".into());
    }
    if op == Op::Reset && on_flash {
        if after.fact("junk").as_deref() != Some("gone") {
            problems.push("the reset was not finished: the junk is still there".into());
        }
        if after.fact("request").as_deref() != Some("none") {
            problems.push("the reset request is still pending".into());
        }
    }
    if let Some(l) = after
        .console
        .lines()
        .find(|l| l.contains("wear log corrupt"))
    {
        problems.push(format!("the wear log was lost: {l}"));
    }
    if !problems.is_empty() || keep_consoles {
        std::fs::create_dir_all(consoles).unwrap();
        let stem = format!("{scenario}-{}-{index}", v.label);
        std::fs::write(consoles.join(format!("{stem}-cut.txt")), cut.stamped()).unwrap();
        std::fs::write(consoles.join(format!("{stem}-after.txt")), after.stamped()).unwrap();
    }
    CutResult {
        scenario,
        variant: v.label,
        index,
        delay,
        landed,
        on_flash,
        checked,
        lost: lost.into_iter().collect(),
        problems,
        secs: cut.wall + after.wall,
    }
}

/// One row of the table.
#[derive(Default)]
struct Row {
    cuts: usize,
    before: usize,
    during: usize,
    after: usize,
    on_flash: usize,
    checked: usize,
    lost: usize,
    problem_cuts: usize,
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn write_report(
    s: &Settings,
    windows: &[(String, &'static str, Window)],
    results: &[CutResult],
    secs: f64,
) -> String {
    // Rows filesystem by filesystem.
    let order: Vec<String> = Fs::ALL
        .iter()
        .flat_map(|f| {
            Op::ALL
                .iter()
                .map(move |o| format!("{}-{}", f.name(), o.name()))
        })
        .filter(|name| results.iter().any(|r| &r.scenario == name))
        .collect();
    let row = |name: &str| {
        let mut row = Row::default();
        for r in results.iter().filter(|r| r.scenario == name) {
            row.cuts += 1;
            match r.landed {
                Landed::Before => row.before += 1,
                Landed::During => row.during += 1,
                Landed::After => row.after += 1,
                Landed::NoCut => {}
            }
            row.on_flash += usize::from(r.on_flash);
            row.checked += r.checked;
            row.lost += r.lost.len();
            row.problem_cuts += usize::from(!r.problems.is_empty());
        }
        row
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Power-cut campaign: {} cuts, seed {}, {:.0} s (QEMU TCG, SIGKILL at a random instant; `qemu/powercut.sh --seed {}` draws the same instants).\n",
        results.len(),
        s.seed,
        secs,
        s.seed
    );
    md.push_str("| scenario | cuts | landed before / during / after | boots that reached init on flash | files checked | files lost | cuts with a problem |\n|---|---|---|---|---|---|---|\n");
    let mut total = Row::default();
    for name in &order {
        let r = row(name);
        let _ = writeln!(
            md,
            "| {name} | {} | {} / {} / {} | {} | {} | {} | {} |",
            r.cuts, r.before, r.during, r.after, r.on_flash, r.checked, r.lost, r.problem_cuts
        );
        total.cuts += r.cuts;
        total.before += r.before;
        total.during += r.during;
        total.after += r.after;
        total.on_flash += r.on_flash;
        total.checked += r.checked;
        total.lost += r.lost;
        total.problem_cuts += r.problem_cuts;
    }
    let _ = writeln!(
        md,
        "| **all** | **{}** | {} / {} / {} | **{}** | **{}** | **{}** | **{}** |",
        total.cuts,
        total.before,
        total.during,
        total.after,
        total.on_flash,
        total.checked,
        total.lost,
        total.problem_cuts
    );
    md.push_str("\nWindows measured on a boot without a cut (host seconds after the marker line; cut instants drawn from `range`, 60% inside the window):\n\n| scenario | variant | window | range |\n|---|---|---|---|\n");
    let mut windows: Vec<&(String, &str, Window)> = windows.iter().collect();
    windows.sort_by_key(|(name, _, _)| order.iter().position(|o| o == name));
    for (name, label, win) in &windows {
        let _ = writeln!(
            md,
            "| {name} | {label} | {:.3}–{:.3} s | {:.3}–{:.3} s |",
            win.start, win.end, win.lo, win.hi
        );
    }
    let bad: Vec<&CutResult> = results.iter().filter(|r| !r.problems.is_empty()).collect();
    if !bad.is_empty() {
        md.push_str("\nProblems (consoles in `consoles/`):\n\n");
        for r in &bad {
            let _ = writeln!(
                md,
                "- {} ({}) cut {} at {:.0} ms, landed {}: {}",
                r.scenario,
                r.variant,
                r.index,
                r.delay * 1000.0,
                r.landed.name(),
                r.problems.join("; ")
            );
        }
    }

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"seed\":{},\"cuts\":{},\"seconds\":{:.1},\"rows\":[",
        s.seed,
        results.len(),
        secs
    );
    for (i, name) in order.iter().enumerate() {
        let r = row(name);
        let _ = write!(
            json,
            "{}{{\"scenario\":{},\"cuts\":{},\"before\":{},\"during\":{},\"after\":{},\"reached_init_on_flash\":{},\"files_checked\":{},\"files_lost\":{},\"cuts_with_problems\":{}}}",
            if i > 0 { "," } else { "" },
            json_str(name),
            r.cuts, r.before, r.during, r.after, r.on_flash, r.checked, r.lost, r.problem_cuts
        );
    }
    json.push_str("],\"windows\":[");
    for (i, (name, label, win)) in windows.iter().enumerate() {
        let _ = write!(
            json,
            "{}{{\"scenario\":{},\"variant\":{},\"start_s\":{:.4},\"end_s\":{:.4},\"lo_s\":{:.4},\"hi_s\":{:.4}}}",
            if i > 0 { "," } else { "" },
            json_str(name),
            json_str(label),
            win.start,
            win.end,
            win.lo,
            win.hi
        );
    }
    json.push_str("],\"cuts_detail\":[");
    for (i, r) in results.iter().enumerate() {
        let lost: Vec<String> = r.lost.iter().map(u32::to_string).collect();
        let problems: Vec<String> = r.problems.iter().map(|p| json_str(p)).collect();
        let _ = write!(
            json,
            "{}{{\"scenario\":{},\"variant\":{},\"index\":{},\"delay_ms\":{:.1},\"landed\":{},\"reached_init_on_flash\":{},\"files_checked\":{},\"files_lost\":[{}],\"problems\":[{}],\"seconds\":{:.1}}}",
            if i > 0 { "," } else { "" },
            json_str(&r.scenario),
            json_str(r.variant),
            r.index,
            r.delay * 1000.0,
            json_str(r.landed.name()),
            r.on_flash,
            r.checked,
            lost.join(","),
            problems.join(","),
            r.secs
        );
    }
    json.push_str("]}\n");
    std::fs::create_dir_all(&s.out).unwrap();
    std::fs::write(s.out.join("results.md"), &md).unwrap();
    std::fs::write(s.out.join("results.json"), json).unwrap();
    md
}

/// The campaign; `qemu/powercut.sh --help` documents the settings
/// (`POWERCUT_CUTS`, default 10; `POWERCUT_SEED`, default the time;
/// `POWERCUT_SCENARIOS`, default all twelve; `POWERCUT_OUT`, default
/// qemu/out/powercut; `POWERCUT_CUT_AT_MS`: every cut at that instant).
#[test]
#[ignore = "boots QEMU hundreds of times: run qemu/powercut.sh"]
fn powercut_campaign() {
    let s = Settings::from_env();
    assert!(!s.scenarios.is_empty());
    let t0 = Instant::now();
    let w = Work::new("powercut");
    let consoles = s.out.join("consoles");
    let _ = std::fs::remove_dir_all(&consoles);
    let n = s.scenarios.len();
    eprintln!(
        "powercut: {} cuts over {n} scenario(s), seed {}, report in {}",
        s.cuts,
        s.seed,
        s.out.display()
    );
    let mut results = Vec::new();
    let mut windows = Vec::new();
    let mut prepared: Vec<(Fs, Option<Prepared>)> = Fs::ALL.iter().map(|&f| (f, None)).collect();
    for (k, &(fs, op)) in s.scenarios.iter().enumerate() {
        // The cuts, spread evenly; the first scenarios take the remainder.
        let cuts = s.cuts / n + usize::from(k < s.cuts % n);
        if cuts == 0 {
            continue;
        }
        let scenario = format!("{}-{}", fs.name(), op.name());
        let prep = &mut prepared.iter_mut().find(|(f, _)| *f == fs).unwrap().1;
        let vs = variants(&w, fs, op, prep, cuts);
        let wins: Vec<Window> = vs.iter().map(|v| calibrate(&w, fs, v)).collect();
        for (v, win) in vs.iter().zip(&wins) {
            eprintln!(
                "powercut: {scenario} ({}): window {:.3}-{:.3} s after {:?}; cuts drawn in {:.3}-{:.3} s",
                v.label, win.start, win.end, v.marker, win.lo, win.hi
            );
            windows.push((scenario.clone(), v.label, *win));
        }
        for i in 0..cuts {
            let vi = i % vs.len();
            let mut rng = Rng::new(s.seed, &scenario, i);
            let delay = s.cut_at.unwrap_or_else(|| wins[vi].draw(&mut rng));
            let r = one_cut(&w, fs, op, &vs[vi], i, delay, &consoles, s.keep_consoles);
            eprintln!(
                "powercut: {scenario} ({}) cut {}/{cuts} at {:.0} ms: landed {}; after: {}, {} files checked, {} lost{}",
                r.variant,
                i + 1,
                delay * 1000.0,
                r.landed.name(),
                if r.on_flash { "init on flash" } else { "NOT on flash" },
                r.checked,
                r.lost.len(),
                if r.problems.is_empty() { String::new() } else { format!("; PROBLEM: {}", r.problems.join("; ")) }
            );
            results.push(r);
        }
        // The scenario's own images; the formatted ones serve the next.
        let keep: Vec<&PathBuf> = prepared
            .iter()
            .filter_map(|(_, p)| p.as_ref().map(|p| &p.formatted))
            .collect();
        for v in vs.iter().filter(|v| !keep.contains(&&v.base)) {
            let _ = std::fs::remove_file(&v.base);
        }
    }
    // The images (hundreds of MiB) go now, even when a cut failed: the
    // report keeps the consoles of every problem cut.
    drop(w);
    let md = write_report(&s, &windows, &results, t0.elapsed().as_secs_f64());
    eprintln!("{md}");
    let bad: Vec<&CutResult> = results.iter().filter(|r| !r.problems.is_empty()).collect();
    assert!(
        bad.is_empty(),
        "{} of {} cuts had a problem (see {}):\n{}",
        bad.len(),
        results.len(),
        s.out.join("results.md").display(),
        bad.iter()
            .map(|r| format!(
                "{} ({}) cut {} at {:.0} ms: {}",
                r.scenario,
                r.variant,
                r.index,
                r.delay * 1000.0,
                r.problems.join("; ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn powercut_ranges_and_rng() {
    assert_eq!(
        parse_ranges(" 0-2 1000-1001"),
        BTreeSet::from([0, 1, 2, 1000, 1001])
    );
    assert!(parse_ranges("").is_empty());
    let a: Vec<u64> = (0..3)
        .map(|_| Rng::new(7, "ext4-writes", 1).next())
        .collect();
    assert!(a.windows(2).all(|p| p[0] == p[1]), "reproducible");
    assert_ne!(
        Rng::new(7, "ext4-writes", 1).next(),
        Rng::new(7, "ext4-writes", 2).next()
    );
    let win = Window::new(1.0, 1.01);
    let mut rng = Rng::new(1, "x", 0);
    let draws: Vec<f64> = (0..1000).map(|_| win.draw(&mut rng)).collect();
    assert!(draws.iter().all(|&d| d >= win.lo && d <= win.hi));
    assert!(draws.iter().any(|&d| d < win.start) && draws.iter().any(|&d| d > win.end));
    let inside = draws
        .iter()
        .filter(|&&d| d >= win.start && d <= win.end)
        .count();
    assert!(inside > 550, "{inside}");
}
