//! Booting the ARM image in QEMU for tests.
//!
//! Device layout of every boot on the default board (qemu-armv7): one virtio
//! disk (GPT, built per test with qemu/mkdisk.sh: `rootfs` squashfs, usually
//! `rootfs_data`, sometimes more lower layers), plus a small read-only disk
//! with serial `testscript` that holds a shell script. The demo rootfs's rcS
//! runs that script and powers off. The script reports facts as lines
//! `T:key=value` on the console. Disks live in a per-test temp dir, never in
//! qemu/out (QEMU locks images, and the pristine image must stay blank).
//!
//! The NOR board (qemu-armv7-nor, [`boot_nor`]) has no initramfs and no GPT
//! disk: its root squashfs and data partition are MTD partitions of a pflash
//! image built per test ([`Work::flash`], qemu/mkflash.sh); the script disk
//! is the same. [`boot_nor_cut`] is a power cut at a chosen moment: QEMU
//! killed with SIGKILL after a given console line.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default board: Debian's kernel, an initramfs, a GPT disk.
pub const BOARD: &str = "qemu-armv7";
/// The OpenWrt-style board: own kernel, no initramfs, CFI NOR flash.
pub const NOR_BOARD: &str = "qemu-armv7-nor";

/// Appended to the first boot of a UBIFS test: the kernel attaches the blank
/// partition (UBI formats it) and overlay-init creates the volume.
pub const UBI_ATTACH: &str = "ubi.mtd=rootfs_data";

/// The upper filesystems of the NOR board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    Jffs2,
    Ubifs,
}

impl Fs {
    pub fn name(self) -> &'static str {
        match self {
            Fs::Jffs2 => "jffs2",
            Fs::Ubifs => "ubifs",
        }
    }

    /// The mount source overlay-init uses (the device fstools looks for in
    /// mountinfo).
    pub fn source(self) -> &'static str {
        match self {
            Fs::Jffs2 => "mtd:rootfs_data",
            Fs::Ubifs => "/dev/ubi0_0",
        }
    }

    /// What the first boot on blank flash appends to the command line.
    pub fn first_append(self) -> &'static str {
        match self {
            Fs::Jffs2 => "",
            Fs::Ubifs => UBI_ATTACH,
        }
    }
}

/// The built artifacts of the default board (qemu/build.sh): kernel,
/// initramfs.cpio.gz, rootfs.squashfs, disk.img, cmdline.
/// `OVERLAY_INIT_OUT` overrides the directory.
pub fn out_dir() -> PathBuf {
    out_dir_for(BOARD)
}

/// The built artifacts of `board` that the tests boot (qemu/build.sh
/// --test-hooks BOARD: around the test build of overlay-init, whose
/// test-only keys such as `overlay.test_crash=` the release binary lacks),
/// checked to be there: kernel, rootfs.squashfs, cmdline, and disk.img +
/// initramfs.cpio.gz or (the NOR board) flash.img.
pub fn out_dir_for(board: &str) -> PathBuf {
    let default = repo().join("qemu/out").join(format!("{board}-test-hooks"));
    let out = match std::env::var_os("OVERLAY_INIT_OUT") {
        Some(dir) if board == BOARD => PathBuf::from(dir),
        _ => default,
    };
    let files: &[&str] = if board == NOR_BOARD {
        &["kernel", "rootfs.squashfs", "flash.img", "cmdline"]
    } else {
        &[
            "kernel",
            "initramfs.cpio.gz",
            "rootfs.squashfs",
            "disk.img",
            "cmdline",
        ]
    };
    for f in files {
        assert!(
            out.join(f).exists(),
            "{} missing: run qemu/build.sh --test-hooks {board} first (qemu/test.sh does)",
            out.join(f).display()
        );
    }
    out
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for one test, removed at the end unless the test failed.
pub struct Work {
    pub dir: PathBuf,
}

impl Work {
    pub fn new(name: &str) -> Work {
        compact_console_in_panics();
        let dir =
            std::env::temp_dir().join(format!("overlay-init-qemu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Work { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A GPT disk from `NAME:SIZE_MIB[:FILE]` specs (see qemu/mkdisk.sh).
    pub fn disk(&self, name: &str, parts: &[String]) -> PathBuf {
        let out = self.path(name);
        let st = Command::new(repo().join("qemu/mkdisk.sh"))
            .arg(&out)
            .args(parts)
            .status()
            .unwrap();
        assert!(st.success(), "mkdisk.sh failed for {parts:?}");
        out
    }

    /// The standard disk: rootfs squashfs + a blank 64 MiB rootfs_data.
    pub fn standard_disk(&self) -> PathBuf {
        let rootfs = out_dir().join("rootfs.squashfs");
        self.disk(
            "disk.img",
            &[
                format!("rootfs:auto:{}", rootfs.display()),
                "rootfs_data:64".into(),
            ],
        )
    }

    /// A pflash bank image for the NOR board (qemu/mkflash.sh --board): the
    /// board's squashfs in `rootfs` (unless `parts` names `rootfs`), each
    /// (partition, file) of `parts` written at the start of its partition,
    /// everything else erased (0xFF).
    pub fn flash(&self, name: &str, parts: &[(&str, &Path)]) -> PathBuf {
        let out = self.path(name);
        let rootfs = out_dir_for(NOR_BOARD).join("rootfs.squashfs");
        let mut args: Vec<String> = Vec::new();
        if !parts.iter().any(|(p, _)| *p == "rootfs") {
            args.push(format!("rootfs={}", rootfs.display()));
        }
        args.extend(parts.iter().map(|(p, f)| format!("{p}={}", f.display())));
        let st = Command::new(repo().join("qemu/mkflash.sh"))
            .args(["--board", NOR_BOARD])
            .arg(&out)
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "mkflash.sh failed for {args:?}");
        out
    }

    /// The standard NOR flash: the squashfs in `rootfs`, `rootfs_data` erased,
    /// or holding `data` when given.
    pub fn nor_flash(&self, data: Option<&Path>) -> PathBuf {
        match data {
            Some(d) => self.flash("flash.img", &[("rootfs_data", d)]),
            None => self.flash("flash.img", &[]),
        }
    }

    /// A squashfs holding `files` (path, content).
    pub fn squashfs(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let src = self.path(&format!("{name}.d"));
        for (p, content) in files {
            let f = src.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, content).unwrap();
        }
        let img = self.path(&format!("{name}.sqfs"));
        let st = Command::new("mksquashfs")
            .args([&src, &img])
            .args(["-comp", "xz", "-all-root", "-noappend", "-quiet"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "mksquashfs failed");
        img
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A UBI image (ubinize, the board's geometry: PEB 256 KiB, min I/O 1)
/// with one dynamic volume `name` of `size` (ubinize's spelling, `8MiB`)
/// holding `content`.
pub fn ubi_image(w: &Work, name: &str, content: &Path, size: &str) -> PathBuf {
    let ini = w.path("ubi.ini");
    std::fs::write(
        &ini,
        format!(
            "[data]\nmode=ubi\nimage={}\nvol_id=0\nvol_type=dynamic\nvol_name={name}\nvol_size={size}\n",
            content.display()
        ),
    )
    .unwrap();
    let img = w.path("ubi.img");
    let st = Command::new("ubinize")
        .args(["-p", "256KiB", "-m", "1", "-o"])
        .arg(&img)
        .arg(&ini)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ubinize");
    img
}

/// Kernel lines of a console that a failure report keeps: ours, the
/// flash filesystems', and the kernel's own alarms.
const TELLING: [&str; 14] = [
    "overlay-init",
    "Run ",
    "UBI",
    "jffs2",
    "JFFS2",
    "EXT4",
    "F2FS",
    "overlay",
    "error",
    "panic",
    "Oops",
    "BUG",
    "watchdog",
    "Power down",
];

/// A panic's message with every console in it cut to its telling lines:
/// the guest's own lines (no `[ time]` prefix) and the kernel lines that
/// name [`TELLING`]. A failing boot test prints its whole console (300
/// lines and more); a CI log that shows only its head and tail then hides
/// the line that says why. The whole message is written to
/// target/qemu-failures/TEST.txt.
pub fn compact_console(message: &str) -> (String, usize) {
    let mut left_out = 0;
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| {
            let kernel = l.trim_start().starts_with('[') && l.contains("] ");
            let keep = !kernel || TELLING.iter().any(|t| l.contains(t));
            left_out += usize::from(!keep);
            keep
        })
        .collect();
    (kept.join("\n"), left_out)
}

/// Installs (once) the panic hook that prints [`compact_console`]'s cut of
/// a failing test's message, then the default report's location.
fn compact_console_in_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            let Some(message) = message else {
                return default(info);
            };
            let (short, left_out) = compact_console(message);
            if left_out == 0 {
                return default(info);
            }
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("unnamed");
            let dir = repo().join("target/qemu-failures");
            let file = dir.join(format!("{}.txt", test.replace("::", "-")));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(&file, message);
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!(
                "test {test} failed at {at}:\n{short}\n({left_out} routine kernel lines left out; the whole message: {})",
                file.display()
            );
        }));
    });
}

/// What one boot printed.
pub struct Boot {
    pub console: String,
    pub code: Option<i32>,
    /// QEMU was killed on purpose (a power cut, [`boot_nor_cut`]).
    pub killed: bool,
    /// Wall time of qemu/run.sh, from spawn to exit (or to the kill).
    pub wall: Duration,
}

impl Boot {
    /// `T:key=value` lines, last one wins.
    pub fn facts(&self) -> BTreeMap<String, String> {
        self.console
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once("T:").map(|(_, kv)| kv))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn fact(&self, key: &str) -> String {
        self.facts()
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("no T:{key}= on the console:\n{}", self.console))
    }

    pub fn has(&self, needle: &str) -> bool {
        self.console.contains(needle)
    }

    /// Asserts the console holds `needle`, showing the console when not.
    pub fn expect(&self, needle: &str) {
        assert!(
            self.has(needle),
            "expected {needle:?} on the console:\n{}",
            self.console
        );
    }

    /// A figure of overlay-init's `pre-init done in N ms (early-mounts A,
    /// ..., upper B, ... ms)` line, in ms: the total (`None`) or one stage's.
    pub fn preinit_ms(&self, stage: Option<&str>) -> f64 {
        let line = self
            .console
            .lines()
            .find_map(|l| l.split_once("pre-init done in ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no \"pre-init done in\" line:\n{}", self.console));
        let num = |s: &str| -> f64 {
            s.trim()
                .trim_end_matches(" ms")
                .parse()
                .unwrap_or_else(|_| panic!("not a figure {s:?} in {line}"))
        };
        let (total, rest) = line.split_once(" ms (").unwrap();
        match stage {
            None => num(total),
            Some(st) => {
                let stages = rest.split(')').next().unwrap();
                let v = stages
                    .split(", ")
                    .find_map(|kv| kv.strip_prefix(&format!("{st} ")))
                    .unwrap_or_else(|| panic!("no stage {st} in {line}"));
                num(v)
            }
        }
    }

    /// The kernel timestamp (s) of the first console line holding `needle`.
    pub fn time_of(&self, needle: &str) -> f64 {
        let line = self
            .console
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", self.console));
        line.trim_start_matches('[')
            .split(']')
            .next()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no timestamp on {line:?}"))
    }

    /// The boot reached the real init, ran the test script and powered off cleanly.
    pub fn expect_clean_run(&self) {
        self.expect("overlay-demo: real init reached");
        self.expect("overlay-demo: script exit 0");
        assert!(!self.has("Kernel panic"), "kernel panic:\n{}", self.console);
        assert_eq!(
            self.code,
            Some(0),
            "QEMU did not end cleanly:\n{}",
            self.console
        );
    }
}

/// Shell lines every test script starts with: fact helpers.
pub const PRELUDE: &str = r#"
fact() { echo "T:$1=$2"; }
fstype() { awk -v m="$1" '$2==m {t=$3} END {print t}' /proc/mounts; }
status() { overlay-status "$@"; echo "T:status_exit=$?"; }
"#;

/// Boots `disk` with the board's command line plus `append`, running `script`.
pub fn boot(work: &Work, disk: &Path, append: &str, script: &str) -> Boot {
    let mut storage = Command::new(repo().join("qemu/run.sh"));
    storage
        .args(["--board", BOARD, "--out"])
        .arg(out_dir())
        .arg("--disk")
        .arg(disk);
    run(work, storage, append, script, &[])
}

/// [`boot`] with more QEMU arguments (run.sh's `-- ARGS`), e.g. `-rtc base=…`.
pub fn boot_qemu(work: &Work, disk: &Path, append: &str, script: &str, qemu: &[String]) -> Boot {
    let mut storage = Command::new(repo().join("qemu/run.sh"));
    storage
        .args(["--board", BOARD, "--out"])
        .arg(out_dir())
        .arg("--disk")
        .arg(disk);
    run(work, storage, append, script, qemu)
}

/// Boots the NOR board from pflash image `flash` (see [`Work::flash`]) with
/// its command line plus `append`, running `script`.
pub fn boot_nor(work: &Work, flash: &Path, append: &str, script: &str) -> Boot {
    let mut storage = Command::new(repo().join("qemu/run.sh"));
    storage
        .args(["--board", NOR_BOARD, "--out"])
        .arg(out_dir_for(NOR_BOARD))
        .arg("--flash")
        .arg(flash);
    run(work, storage, append, script, &[])
}

/// Boots a copy of `image` (made in `work`) with `overlay.test_crash=point`
/// through `boot_fn` (boot or boot_nor) and checks that the hook cut the
/// power there: its line printed, before the real init, without a kernel
/// panic. Returns the copy's path, for the boot after the cut.
pub fn cut_by_test_hook(
    work: &Work,
    image: &Path,
    point: &str,
    boot_fn: fn(&Work, &Path, &str, &str) -> Boot,
) -> PathBuf {
    let copy = work.path(&format!("cut-{}.img", point.replace(':', "-")));
    std::fs::copy(image, &copy).unwrap();
    let cut = boot_fn(
        work,
        &copy,
        &format!("overlay.test_crash={point}"),
        "fact reached yes",
    );
    cut.expect(&format!(
        "test hook: power cut after {}",
        point.replace(':', " #")
    ));
    assert!(
        !cut.has("real init reached"),
        "{point}: the cut must come before init"
    );
    assert!(!cut.has("Kernel panic"), "{point}");
    copy
}

/// Boots the NOR board like [`boot_nor`], then pulls the plug: `delay`
/// after the first console line holding `marker`, QEMU gets SIGKILL, with
/// run.sh and timeout(1), all in a process group of their own. Nothing in the
/// guest runs after that instant (no sync, no unmount, no flush of the
/// kernel's buffers); what the guest had written to the flash stays in the
/// image file, since QEMU's pflash writes each guest write through to it.
/// The console is what QEMU printed before the kill. A boot that ends
/// without printing `marker` is returned as it ended, with `killed` false.
pub fn boot_nor_cut(
    work: &Work,
    flash: &Path,
    append: &str,
    script: &str,
    marker: &str,
    delay: Duration,
) -> Boot {
    let mut storage = Command::new(repo().join("qemu/run.sh"));
    storage
        .args(["--board", NOR_BOARD, "--out"])
        .arg(out_dir_for(NOR_BOARD))
        .arg("--flash")
        .arg(flash);
    run_cut(work, storage, append, script, marker, delay)
}

/// Sets up `run_sh` (qemu/run.sh with the board and storage options) with the
/// prelude + `script` as the test script and `append` on the command line.
fn command(work: &Work, run_sh: &mut Command, append: &str, script: &str, qemu: &[String]) {
    let script_file = work.path("script.sh");
    std::fs::write(&script_file, format!("{PRELUDE}\n{script}\n")).unwrap();
    run_sh
        .args(["--append", append, "--script"])
        .arg(&script_file)
        .args(["--timeout", "90"])
        .arg("--")
        .args(qemu)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
}

/// Runs the boot to its end.
fn run(work: &Work, mut run_sh: Command, append: &str, script: &str, qemu: &[String]) -> Boot {
    command(work, &mut run_sh, append, script, qemu);
    let t = Instant::now();
    let out = run_sh.output().expect("qemu/run.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    Boot {
        console,
        code: out.status.code(),
        killed: false,
        wall: t.elapsed(),
    }
}

/// Runs the boot, reading the console line by line, and kills the whole
/// process group with SIGKILL `delay` after the `marker` line.
fn run_cut(
    work: &Work,
    mut run_sh: Command,
    append: &str,
    script: &str,
    marker: &str,
    delay: Duration,
) -> Boot {
    command(work, &mut run_sh, append, script, &[]);
    // A killed run.sh leaves its temp dir (the script image): in the work dir.
    run_sh
        .env("TMPDIR", &work.dir)
        .process_group(0)
        .stdout(Stdio::piped());
    let t = Instant::now();
    let mut child = run_sh.spawn().expect("qemu/run.sh");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (rx, reader) = console_lines(child.stdout.take().unwrap());
    let mut console = String::new();
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    while let Some((_, line)) = next_line_or_kill(&rx, kill_at, pgid, &mut killed) {
        if kill_at.is_none() && line.contains(marker) {
            kill_at = Some(Instant::now() + delay);
        }
        console.push_str(&line);
    }
    let wall = t.elapsed();
    // What QEMU had printed before it died.
    for (_, line) in rx {
        console.push_str(&line);
    }
    reader.join().unwrap();
    let status = child.wait().expect("wait for qemu/run.sh");
    Boot {
        console,
        code: status.code(),
        killed,
        wall,
    }
}

/// Reads `stdout` line by line on a thread of its own: each line (lossy
/// UTF-8, with its newline) with the instant it arrived, until the end of
/// the output or until the receiver is dropped. Join the thread after
/// draining the receiver.
pub fn console_lines(stdout: ChildStdout) -> (mpsc::Receiver<(Instant, String)>, JoinHandle<()>) {
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
    (rx, reader)
}

/// The next line of [`console_lines`]; `None` at the end of the output,
/// or once `kill_at` has come: then the process group `pgid` got SIGKILL
/// and `killed` is set.
pub fn next_line_or_kill(
    rx: &mpsc::Receiver<(Instant, String)>,
    kill_at: Option<Instant>,
    pgid: nix::unistd::Pid,
    killed: &mut bool,
) -> Option<(Instant, String)> {
    loop {
        let Some(at) = kill_at else {
            return rx.recv().ok();
        };
        let now = Instant::now();
        if now >= at {
            nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL)
                .expect("kill -9 the QEMU process group");
            *killed = true;
            return None;
        }
        match rx.recv_timeout(at - now) {
            Ok(l) => return Some(l),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// CRC32 of a byte range of a file: any change of those bytes changes it
/// (for a test that asserts a partition was left untouched).
pub fn fingerprint(file: &Path, offset: u64, len: u64) -> u32 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).unwrap();
    crc32fast::hash(&buf)
}

/// `len` bytes of `file` from `offset`.
pub fn read_bytes(file: &Path, offset: u64, len: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Writes `data` into `file` at `offset`.
pub fn write_bytes(file: &Path, offset: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

/// Fills a file region with pseudo-random bytes (xorshift), deterministic per seed.
pub fn scribble(file: &Path, offset: u64, len: usize, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut x = seed | 1;
    let buf: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&buf).unwrap();
}

/// The `sfdisk --dump` line of partition `name`:
/// `IMG2 : start= 8192, size= 131072, type=..., uuid=..., name="rootfs_data"`.
fn dump_line(disk: &Path, name: &str) -> String {
    let out = Command::new("sfdisk")
        .arg("--dump")
        .arg(disk)
        .output()
        .expect("sfdisk");
    let dump = String::from_utf8_lossy(&out.stdout);
    let line = dump
        .lines()
        .find(|l| l.contains(&format!("name=\"{name}\"")))
        .unwrap_or_else(|| panic!("no partition {name} in {}:\n{dump}", disk.display()));
    line.to_string()
}

fn dump_field(line: &str, key: &str) -> String {
    let f = line.split(',').find_map(|f| {
        f.split(':')
            .next_back()?
            .trim()
            .strip_prefix(&format!("{key}="))
    });
    f.unwrap_or_else(|| panic!("no {key}= in {line}"))
        .trim()
        .to_string()
}

/// Byte offset and length of partition `name` in a GPT image.
pub fn partition(disk: &Path, name: &str) -> (u64, u64) {
    let line = dump_line(disk, name);
    let num = |key: &str| -> u64 { dump_field(&line, key).parse::<u64>().unwrap() * 512 };
    (num("start"), num("size"))
}

/// Byte offset in the image and length of MTD partition `name` of the NOR
/// board's flash (qemu/mkflash.sh --print; panics for a partition outside
/// the image, such as the volatile bank 0).
pub fn flash_partition(name: &str) -> (u64, u64) {
    let out = Command::new(repo().join("qemu/mkflash.sh"))
        .args(["--board", NOR_BOARD, "--print"])
        .output()
        .expect("qemu/mkflash.sh");
    assert!(out.status.success(), "mkflash.sh --print failed");
    let table = String::from_utf8_lossy(&out.stdout);
    // mtdN NAME DEVICE_OFFSET SIZE IMAGE_OFFSET
    let f: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 5 && f[1] == name)
        .unwrap_or_else(|| panic!("no MTD partition {name}:\n{table}"));
    let off = f[4]
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("partition {name} is not in the image:\n{table}"));
    (off, f[3].parse().unwrap())
}

/// The unique GUID (PARTUUID) of partition `name`.
pub fn partuuid(disk: &Path, name: &str) -> String {
    dump_field(&dump_line(disk, name), "uuid")
}

#[test]
fn a_failure_report_keeps_the_telling_lines_of_a_console() {
    let console = "expected \"x\" on the console:\n[    0.000000] Booting Linux on physical CPU 0x0\n[    0.5] overlay-init: upper: tmpfs at /overlay: rootfs_data does not mount\n[    0.6] random: crng init done\nT:overlay=tmpfs\n";
    let (short, left_out) = compact_console(console);
    assert_eq!(left_out, 2);
    assert_eq!(
        short,
        "expected \"x\" on the console:\n[    0.5] overlay-init: upper: tmpfs at /overlay: rootfs_data does not mount\nT:overlay=tmpfs"
    );
}
