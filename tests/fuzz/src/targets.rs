//! The targets: one per parser (or family of parsers) of untrusted input,
//! and the reset's two walks. Each is thin: it feeds the input to the
//! product's public API and checks what must always hold; the product's
//! own unit tests hold the regressions of what these found.

use crate::tree::{self, Bytes};
use overlay_init::{cmdline, config, devices, flash, kmsg, modules, probe, reset, state, wear};

pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Most heap bytes a case may hold at once.
    pub max_heap: usize,
}

/// PID 1's memory budget (README, "Robustness"): no input may cost more.
const MIB: usize = 1 << 20;

pub const TARGETS: &[Target] = &[
    Target {
        name: "cmdline",
        run: cmdline_config,
        max_heap: MIB,
    },
    Target {
        name: "state",
        run: state_file,
        max_heap: MIB,
    },
    Target {
        name: "reset_record",
        run: reset_record,
        max_heap: MIB,
    },
    Target {
        name: "keep_list",
        run: keep_list,
        max_heap: MIB,
    },
    Target {
        name: "glob",
        run: glob,
        max_heap: MIB,
    },
    Target {
        name: "wear_log",
        run: wear_log,
        max_heap: MIB,
    },
    Target {
        name: "sysfs_block",
        run: sysfs_block,
        max_heap: MIB,
    },
    Target {
        name: "wear_sources",
        run: wear_sources,
        max_heap: MIB,
    },
    Target {
        name: "mtd",
        run: mtd,
        max_heap: MIB,
    },
    Target {
        name: "ubi",
        run: ubi,
        max_heap: MIB,
    },
    Target {
        name: "modules_dep",
        run: modules_dep,
        max_heap: MIB,
    },
    Target {
        name: "probe",
        run: probe_magic,
        max_heap: MIB,
    },
    Target {
        name: "partition_table",
        run: partition_table,
        max_heap: MIB,
    },
    Target {
        name: "ubi_ec",
        run: ubi_ec,
        max_heap: MIB,
    },
    Target {
        name: "jffs2",
        run: jffs2,
        max_heap: MIB,
    },
    Target {
        name: "wipe",
        run: wipe,
        max_heap: 4 * MIB,
    },
    Target {
        name: "dry_run",
        run: dry_run,
        max_heap: 4 * MIB,
    },
];

/// Splits at the first NUL: two inputs from one.
fn two(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The board file (before the first NUL) and the command line (after it):
/// tokenizer, config, and every message they produce through the logger's
/// formatting (bounded, reason kept).
fn cmdline_config(data: &[u8]) {
    let (board, line) = two(data);
    for p in cmdline::parse(line).chain(cmdline::parse_file(board)) {
        let _ = (p.key.len(), p.value.map(<[u8]>::len));
    }
    let (cfg, errors) = config::Config::from_bytes(Some(board), line);
    assert!(errors.len() <= config::MAX_ERRORS + 2);
    assert!(cfg.lowers.len() <= config::MAX_ITEMS && cfg.modules.len() <= config::MAX_ITEMS);
    for e in &errors {
        let m = kmsg::format_message(format_args!("bad setting {e}"));
        assert!(m.len() <= kmsg::MESSAGE);
        assert!(
            !m.bytes().any(|b| b < 0x20 && b != b'\t'),
            "a control byte in {m:?}"
        );
    }
    let shown = cmdline::shown(data, 96);
    assert!(shown.len() <= 96 + "…".len() + 4 * 4);
    let _ = cfg.wear.to_string();
}

/// /run/overlay-init/state, as overlay-status and the monitor read it: a
/// state that parses renders and parses again.
fn state_file(data: &[u8]) {
    if let Ok(s) = state::BootState::parse(&text(data)) {
        let again = state::BootState::parse(&s.render());
        assert!(
            again.is_ok(),
            "a rendered state does not parse: {:?}",
            s.render()
        );
    }
}

/// The reset request and done records, as they are and with their length
/// and CRC fixed up (so that the payload parser is reached, not only the
/// checksum): a record that decodes encodes to one that decodes the same.
fn reset_record(data: &[u8]) {
    let mut fixed = data.to_vec();
    if fixed.len() >= 24 {
        let len = u32::try_from(fixed.len() - 24).unwrap_or(0);
        fixed[16..20].copy_from_slice(&len.to_le_bytes());
        fixed[20..24].fill(0);
        let crc = crc32fast::hash(&fixed);
        fixed[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    for b in [data, &fixed] {
        if let Ok(r) = reset::Request::decode(b) {
            // What the reader took, the writer writes (and reads back).
            let again = r.encode().expect("a request the reader took encodes");
            assert_eq!(reset::Request::decode(&again).as_ref(), Ok(&r));
        }
        if let Ok(seq) = reset::decode_done(b) {
            assert_eq!(reset::decode_done(&reset::encode_done(seq)), Ok(seq));
        }
    }
}

/// The keep file (before the first NUL) and paths to test against it.
fn keep_list(data: &[u8]) {
    let (keep, paths) = two(data);
    let keep = text(keep);
    let patterns = match reset::parse_keep_file(&keep) {
        Ok(p) => p,
        Err(_) => keep.lines().map(str::to_string).collect(),
    };
    for p in &patterns {
        let _ = reset::validate_pattern(p);
        let _ = reset::components(p).count();
    }
    let set = reset::KeepSet::new(&patterns);
    for path in text(paths).lines().take(64) {
        let _ = set.keeps(path.as_bytes());
        let _ = set.may_keep_below(path.as_bytes());
    }
}

/// One glob component against one name (bounded in time: the glob must
/// not be exponential, issue 11 defect 5).
fn glob(data: &[u8]) {
    let (pat, name) = two(data);
    let _ = reset::glob_component(pat, name);
}

/// `.wear/log`: the file and a record; a record that decodes re-encodes to
/// the same bytes' meaning.
fn wear_log(data: &[u8]) {
    let _ = wear::log::decode_log(data);
    // Every 64-byte record with its CRC (bytes 60..64) fixed up.
    let mut fixed = data.to_vec();
    for r in fixed.chunks_exact_mut(64) {
        let crc = crc32fast::hash(&r[..60]);
        r[60..].copy_from_slice(&crc.to_le_bytes());
    }
    let _ = wear::log::decode_log(&fixed);
    for b in [data, &fixed[..fixed.len().min(64)]] {
        if let Ok(r) = wear::log::WearRecord::decode(b) {
            assert_eq!(wear::log::WearRecord::decode(&r.encode()), Ok(r));
        }
    }
    let _ = wear::log::parse_boot_id(&text(data));
}

/// Block devices' sysfs and /proc text: uevent, mountinfo, device specs.
fn sysfs_block(data: &[u8]) {
    let t = text(data);
    let _ = devices::parse_uevent(&t);
    let _ = devices::root_mount(&t);
    for line in t.lines().take(16) {
        if let Ok(spec) = devices::parse_spec(line) {
            let _ = spec.to_string();
        }
        let _ = flash::parse_flash_spec(line);
    }
}

/// The wear sources' sysfs/proc files: eMMC life, block stat, counters,
/// /proc/PID/io and stat.
fn wear_sources(data: &[u8]) {
    let t = text(data);
    let _ = wear::sources::parse_life_time(&t);
    let _ = wear::sources::parse_pre_eol(&t);
    let _ = wear::sources::parse_block_stat(&t);
    let _ = wear::sources::parse_decimal(&t);
    let _ = wear::sources::disk_of(&t);
    let _ = wear::sources::is_virtual_block(&t);
    if let Some(&b) = data.first() {
        let _ = wear::sources::emmc_life_pct(b);
    }
    let _ = wear::monitor::parse_proc_io(&t);
    let _ = wear::monitor::parse_stat_starttime(&t);
}

/// `key=value` lines as a sysfs directory's attributes.
fn attrs(t: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| {
        t.lines().find_map(|l| {
            l.split_once('=')
                .filter(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        })
    }
}

/// /proc/mtd and /sys/class/mtd/mtdN (directory name on the first line).
fn mtd(data: &[u8]) {
    let t = text(data);
    let _ = flash::mtd::parse_proc_mtd(&t);
    let (dir, rest) = t.split_once('\n').unwrap_or((&t, ""));
    let _ = flash::mtd::parse_sysfs_mtd(dir, attrs(rest));
    let _ = flash::mtd::MtdKind::parse(dir);
}

/// /sys/class/ubi (directory name on the first line) and the volume
/// content identification (three LEBs from the bytes).
fn ubi(data: &[u8]) {
    let t = text(data);
    let (dir, rest) = t.split_once('\n').unwrap_or((&t, ""));
    let _ = flash::ubi::parse_ubi_device(dir, attrs(rest));
    let _ = flash::ubi::parse_ubi_volume(dir, attrs(rest));
    let third = data.len() / 3;
    let (a, bc) = data.split_at(third);
    let (b, c) = bc.split_at(third.min(bc.len()));
    let _ = flash::ubi::identify_volume(a, b, c);
}

/// modules.dep (before the first NUL) and the modules wanted (after it).
fn modules_dep(data: &[u8]) {
    let (dep, wanted) = two(data);
    let table = modules::parse_modules_dep(&text(dep));
    let _ = modules::parse_builtin(&text(dep));
    let wanted: Vec<String> = text(wanted)
        .split(',')
        .take(32)
        .map(str::to_string)
        .collect();
    let _ = table.load_order(&wanted, &|m| m.len() % 3 == 0);
}

/// The magic-number probe on a device's first bytes.
fn probe_magic(data: &[u8]) {
    let _ = probe::identify(data);
    let _ = probe::ext4_needs_check(data);
    let _ = probe::ext4_kbytes_written(data);
    let _ = probe::is_uniform(data);
}

/// GPT and MBR from a disk's first sectors.
fn partition_table(data: &[u8]) {
    for e in devices::parse_partition_table(data) {
        let _ = format!("{e:?}");
    }
}

/// UBI erase-counter headers: one header, and a scan over the input as a
/// device of small erase blocks (the first byte picks the geometry).
fn ubi_ec(data: &[u8]) {
    let _ = wear::ubi_ec::parse_ec_header(data);
    if data.len() >= 64 {
        let mut h = data[..64].to_vec();
        let crc = wear::ubi_ec::ubi_crc32(&h[..60]);
        h[60..].copy_from_slice(&crc.to_be_bytes());
        let _ = wear::ubi_ec::parse_ec_header(&h);
    }
    let erasesize = 64 << (data.first().copied().unwrap_or(0) % 4);
    let mut dev = std::io::Cursor::new(data);
    let _ = wear::ubi_ec::scan_ec(&mut dev, data.len() as u64, erasesize, &mut |off| {
        off % 7 == 3
    });
}

/// JFFS2 / UBI / marker identification of raw flash samples (the input
/// cut into blocks of a size the first byte picks).
fn jffs2(data: &[u8]) {
    let size = 16 << (data.first().copied().unwrap_or(0) % 6);
    let samples: Vec<&[u8]> = data.chunks(size).take(16).collect();
    let _ = flash::jffs2::identify(&samples);
}

/// The keep list from the input (one pattern a line, up to the first NUL),
/// the tree from the rest.
fn keep_and_tree(data: &[u8]) -> (Vec<String>, Bytes<'_>) {
    let (keep, rest) = two(data);
    let keep = text(keep)
        .lines()
        .filter(|p| reset::validate_pattern(p).is_ok())
        .take(16)
        .map(str::to_string)
        .collect();
    (keep, Bytes(rest))
}

/// A factory reset (ResetArea::carry_out) then the trash deletion
/// (delete_trash) over a generated upper, with PID 1's fd limit. An
/// error is an outcome (the boot goes on); a panic, a hang or runaway
/// memory is not. A deletion that says it finished left no trash.
fn wipe(data: &[u8]) {
    let (keep, mut input) = keep_and_tree(data);
    let root = tree::scratch();
    tree::clear(&root);
    let upper = root.join("upper");
    if std::fs::create_dir_all(&upper).is_err() || std::fs::create_dir(root.join("work")).is_err() {
        return;
    }
    tree::build(&upper, &mut input);
    tree::with_pid1_fd_limit(|| {
        let Ok(area) = reset::wipe::ResetArea::open(&root, true) else {
            return;
        };
        let Ok(req) = area.write_request(keep) else {
            return;
        };
        if area.carry_out(&req, &mut |_| {}).is_err() {
            return;
        }
        let mut removed = 0;
        if let Ok(reset::wipe::TrashEnd::Empty) = area.delete_trash(None, &mut removed, &mut |_| {}) {
            assert!(!area.has_trash(), "delete_trash said done, trash left");
        }
    });
    tree::clear(&root);
}

/// `overlay-reset --dry-run` over a generated upper (its listing goes to
/// stdout: run.sh passes -close_fd_mask=1).
fn dry_run(data: &[u8]) {
    let (keep, mut input) = keep_and_tree(data);
    let root = tree::scratch();
    tree::clear(&root);
    let upper = root.join("upper");
    if std::fs::create_dir_all(&upper).is_err() {
        return;
    }
    tree::build(&upper, &mut input);
    tree::with_pid1_fd_limit(|| {
        let _ = reset::cli::dry_run(&root, &keep);
    });
    tree::clear(&root);
}
