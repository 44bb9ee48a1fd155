//! The targets: one per parser (or family of parsers) of untrusted input,
//! and the reset's two walks. Each is thin: it feeds the input to the
//! product's public API and checks what must always hold; the product's
//! own unit tests hold the regressions of what these found.

use crate::tree::{self, Bytes};
use overlay_init::{
    cmdline, config, devices, flash, kmsg, modules, openwrt, probe, recovery, reset, state,
    upgrade, wear,
};

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
        name: "upgrade_record",
        run: upgrade_record,
        max_heap: MIB,
    },
    Target {
        name: "manifest",
        run: manifest,
        max_heap: MIB,
    },
    Target {
        name: "squashfs_sb",
        run: squashfs_sb,
        max_heap: MIB,
    },
    Target {
        name: "boot_count",
        run: boot_count,
        max_heap: MIB,
    },
    Target {
        name: "recovery",
        run: recovery_text,
        max_heap: MIB,
    },
    Target {
        name: "fs_state",
        run: fs_state,
        max_heap: MIB,
    },
    Target {
        name: "sysupgrade_tar",
        run: sysupgrade_tar,
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

/// The magics of the records under `.upgrade/` (record.rs): state,
/// manifest.N, pending/last.
const UPGRADE_MAGICS: [&[u8; 8]; 3] = [b"OVUPSTA2", b"OVUPMAN2", b"OVUPRPT2"];

/// The records under `.upgrade/` (state, manifest.N, pending and last) and
/// their framing: the input as it is, and as the payload of a good frame
/// of each kind (so that the payload decoders are reached, not only the
/// checksum). A record that decodes encodes to one that decodes the same;
/// a frame that checks out is the frame of its payload.
fn upgrade_record(data: &[u8]) {
    use upgrade::identity::Identity;
    use upgrade::record::{self, ManifestRecord, Report, State};
    for magic in UPGRADE_MAGICS {
        let _ = upgrade::frame_header(magic, data);
        if let Ok(p) = upgrade::unframe(magic, data) {
            assert_eq!(
                upgrade::frame(magic, p),
                data,
                "unframe took a frame frame() does not write"
            );
        }
    }
    // The payload's varints and strings, one by one: what Dec reads, Enc
    // writes, and Dec reads back.
    let mut d = upgrade::Dec(data);
    for _ in 0..64 {
        let Ok(v) = d.u() else { break };
        let mut e = upgrade::Enc::default();
        e.u(v);
        assert_eq!(upgrade::Dec(&e.0).u(), Ok(v));
        if let Ok(b) = d.b() {
            let mut e = upgrade::Enc::default();
            e.b(b);
            assert_eq!(upgrade::Dec(&e.0).b(), Ok(b));
        }
    }
    // The identity at the start of a manifest.N payload (recorded_id).
    if let Ok(id) = Identity::decode(&mut upgrade::Dec(data)) {
        let mut e = upgrade::Enc::default();
        id.encode(&mut e);
        assert_eq!(Identity::decode(&mut upgrade::Dec(&e.0)).as_ref(), Ok(&id));
        let _ = id.to_string();
    }
    let framed = UPGRADE_MAGICS.map(|m| upgrade::frame(m, data));
    for b in [data, &framed[0], &framed[1], &framed[2]] {
        if let Ok(s) = State::decode(b) {
            assert_eq!(State::decode(&s.encode()).as_ref(), Ok(&s));
        }
        if let Ok(m) = ManifestRecord::decode(b) {
            assert_eq!(ManifestRecord::decode(&m.encode()).as_ref(), Ok(&m));
            if let record::Content::Shipped(x) | record::Content::Computed(x) = &m.content {
                check_manifest(x);
            }
        }
        if let Ok(r) = Report::decode(b) {
            assert_eq!(Report::decode(&r.encode()).as_ref(), Ok(&r));
            // What overlay-status shows of it.
            let _ = upgrade::show_time(r.when);
            for l in r.lines.iter().take(64) {
                let _ = upgrade::report::words(&r, l);
                let shown = upgrade::show_path(&l.path);
                assert!(
                    !shown.contains('\n'),
                    "a path shown on two lines: {shown:?}"
                );
            }
        }
    }
}

/// What must hold of a manifest that decoded: its entries read back one
/// by one (lookup by path), by directory, and re-encoded.
fn check_manifest(m: &upgrade::manifest::Manifest) {
    use upgrade::manifest::{Entry, Manifest};
    let mut entries = Vec::new();
    m.for_each(&mut |p, meta| {
        entries.push(Entry {
            path: p.to_vec(),
            meta,
        })
    });
    assert_eq!(entries.len() as u64, m.len(), "for_each missed entries");
    for e in entries.iter().take(256) {
        assert_eq!(
            m.get(&e.path).as_ref(),
            Some(&e.meta),
            "lookup of {:?}",
            text(&e.path)
        );
    }
    assert_eq!(
        m.get(b"\xff\xff"),
        entries
            .iter()
            .find(|e| e.path == b"\xff\xff")
            .map(|e| e.meta.clone())
    );
    // The names in the root and in the first directories.
    let parent = |p: &[u8]| -> (Vec<u8>, Vec<u8>) {
        match p.iter().rposition(|&c| c == b'/') {
            Some(i) => (p[..i].to_vec(), p[i + 1..].to_vec()),
            None => (Vec::new(), p.to_vec()),
        }
    };
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    dirs.extend(entries.iter().take(8).map(|e| parent(&e.path).0));
    for dir in &dirs {
        let want: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| parent(&e.path))
            .filter(|(d, _)| d == dir)
            .map(|(_, n)| n)
            .collect();
        assert_eq!(m.children(dir), want, "children of {:?}", text(dir));
    }
    let again =
        Manifest::from_entries(entries.clone()).expect("a decoded manifest's entries encode");
    let mut back = Vec::new();
    again.for_each(&mut |p, meta| {
        back.push(Entry {
            path: p.to_vec(),
            meta,
        })
    });
    assert_eq!(back, entries, "re-encoded entries differ");
    assert_eq!(Manifest::from_shipped(&m.shipped_file()).as_ref(), Ok(m));
}

/// A manifest file (`etc/overlay-init.manifest` of an image, or the
/// manifest in a `.upgrade/manifest.N`): the input as a shipped file, and
/// as a payload.
fn manifest(data: &[u8]) {
    use upgrade::manifest::{Manifest, SHIPPED_MAGIC};
    let shipped = Manifest::from_shipped(data);
    let payload = Manifest::decode(data.to_vec());
    assert_eq!(
        Manifest::from_shipped(&upgrade::frame(SHIPPED_MAGIC, data)),
        payload,
        "a payload reads differently framed"
    );
    for m in [shipped, payload].iter().flatten() {
        check_manifest(m);
    }
}

/// A lower's squashfs superblock (identity.rs), against a device of the
/// input's size and of any size.
fn squashfs_sb(data: &[u8]) {
    for size in [data.len() as u64, u64::MAX, 0] {
        match upgrade::identity::parse_squashfs(data, size) {
            None => assert!(!data.starts_with(b"hsqs")),
            Some(Ok(s)) => assert!(s.inode_table_start < s.bytes_used && s.bytes_used <= size),
            Some(Err(_)) => assert!(data.starts_with(b"hsqs")),
        }
    }
}

/// `.boot/count`: two 32-byte slots (from the input, also with their CRCs
/// fixed up), the file as the boot reads it, and the records the boot and
/// `--mark-good` write next: a slot that decodes encodes to the same
/// record, and a record written into its slot is what the file then reads.
fn boot_count(data: &[u8]) {
    use recovery::bootcount::{self as bc, CountRecord, CountState, SLOT_SIZE};
    let slot = |i: usize| -> [u8; SLOT_SIZE] {
        let mut s = [0u8; SLOT_SIZE];
        let from = data.get(i * SLOT_SIZE..).unwrap_or_default();
        let n = from.len().min(SLOT_SIZE);
        s[..n].copy_from_slice(&from[..n]);
        s
    };
    let mut slots = [slot(0), slot(1)];
    for (i, s) in slots.iter().enumerate() {
        let _ = CountRecord::decode(data.get(i * SLOT_SIZE..).unwrap_or_default(), i);
        if let Ok(r) = CountRecord::decode(s, i) {
            assert_eq!(r.slot(), i);
            assert_eq!(CountRecord::decode(&r.encode(), i), Ok(r));
        }
    }
    let len = u64::from(data.get(2 * SLOT_SIZE).copied().unwrap_or(0) != 0x55) * bc::FILE_SIZE;
    for fix in [false, true] {
        if fix {
            for s in &mut slots {
                let crc = crc32fast::hash(&s[..28]);
                s[28..].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let state = bc::decode_file(len, &slots[0], &slots[1]);
        let _ = state.attempts();
        let boot_id = u64::from_le_bytes(slot(2)[..8].try_into().unwrap_or_default());
        let counted = bc::next_count(&state, boot_id % 2 == 1);
        let marked = bc::next_mark(&state, boot_id);
        for rec in std::iter::once(counted).chain(marked) {
            if let CountState::Ok(_) | CountState::Corrupt(bc::CountCorrupt::NoRecord(..)) = state {
                // Written in place: the other slot stays.
                let mut after = slots;
                after[rec.slot()] = rec.encode();
                assert_eq!(
                    bc::decode_file(bc::FILE_SIZE, &after[0], &after[1]),
                    CountState::Ok(rec),
                    "the record written is not the one read (from {state:?})"
                );
            }
        }
        if let CountState::Ok(r) = state {
            assert!(counted.seq >= r.seq && counted.attempts >= r.attempts.min(1));
        }
    }
}

/// Recovery settings (before the first NUL: `key=value` lines, applied as
/// the board file and the command line are, and `CHIP:LINE` / `DEV:S`
/// specs) and the recovery lines of the state file (after it): a spec that
/// parses is shown as one that parses the same, a state renders and parses
/// the same once rendered.
fn recovery_text(data: &[u8]) {
    use recovery::gpio::GpioSpec;
    use recovery::state::RecoveryState;
    use recovery::watchdog::WatchdogSpec;
    let (settings, st) = two(data);
    let settings = text(settings);
    let mut cfg = recovery::RecoveryConfig::default();
    for line in settings.lines().take(64) {
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if cfg.apply(k, v).is_ok() {
            let _ = cfg.current(k);
        }
        for k in recovery::RecoveryConfig::KEYS {
            let _ = cfg.apply(k, Some(line));
        }
        if let Ok(g) = GpioSpec::parse(line) {
            assert_eq!(
                GpioSpec::parse(&g.to_string()).as_ref(),
                Ok(&g),
                "shown as {g}"
            );
        }
        if let Ok(w) = WatchdogSpec::parse(line) {
            assert_eq!(
                WatchdogSpec::parse(&w.to_string()).as_ref(),
                Ok(&w),
                "shown as {w}"
            );
        }
    }
    for k in recovery::RecoveryConfig::KEYS {
        let _ = cfg.current(k);
    }
    let parsed = RecoveryState::parse(&text(st));
    let mut once = String::new();
    parsed.render_into(&mut once);
    let again = RecoveryState::parse(&once);
    let mut twice = String::new();
    again.render_into(&mut twice);
    assert_eq!(once, twice, "a rendered recovery state renders differently");
    assert_eq!(RecoveryState::parse(&twice), again);
    let live = recovery::bootcount::decode_file(0, &[], &[]);
    for l in [None, Some(&live)] {
        let _ = parsed.status_text(l, 1);
        let _ = parsed.json_members(l, 1);
    }
}

/// fstools' `.fs_state` link target: as fstools' atoi reads it.
fn fs_state(data: &[u8]) {
    use openwrt::fs_state::{self, FsState};
    let s = fs_state::parse(data);
    // A reference reading: atoi (white space, a sign, digits, wrapping as
    // a uint32 once negative) and only 1 and 2 are states.
    let t = data.trim_ascii_start();
    let (neg, t) = match t.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        _ => (false, t),
    };
    let digits: Vec<u8> = t.iter().copied().take_while(u8::is_ascii_digit).collect();
    let nonzero = digits.iter().skip_while(|&&b| b == b'0').count();
    let want = match (neg, nonzero, digits.last()) {
        (false, 1, Some(b'1')) => FsState::Pending,
        (false, 1, Some(b'2')) => FsState::Ready,
        _ => FsState::Unknown,
    };
    assert_eq!(s, want);
    let todo = fs_state::todo(s);
    assert_eq!(todo.write, s != FsState::Ready);
}

/// The sysupgrade.tgz tar stream, decompressed, as restore.rs checks it
/// before busybox tar reads it (also with every header's checksum fixed
/// up), and OpenWrt's account merge (`missing_lines`) from two texts.
fn sysupgrade_tar(data: &[u8]) {
    use openwrt::restore;
    let mut fixed = data.to_vec();
    for h in fixed.chunks_exact_mut(512) {
        if &h[257..262] == b"ustar" {
            h[148..156].fill(b' ');
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            let field = format!("{sum:06o}\0 ");
            h[148..156].copy_from_slice(field.as_bytes());
        }
    }
    for b in [data, &fixed] {
        let len = b.len() as u64;
        if let Ok(s) = restore::check_tar(&mut std::io::Cursor::new(b), len) {
            assert!(s.entries <= restore::MAX_ENTRIES && s.bytes <= len);
            assert!(s.entries * 512 <= len, "{s:?} from {len} bytes");
        }
    }
    let (image, restored) = two(data);
    let (image, restored) = (text(image), text(restored));
    let out = restore::missing_lines(&image, &restored);
    // Split at '\n' only: a line of the image may end in '\r'.
    for l in out.split('\n').filter(|l| !l.is_empty()) {
        assert!(
            image.lines().any(|i| i == l),
            "{l:?} is not a line of the image's file"
        );
    }
}
