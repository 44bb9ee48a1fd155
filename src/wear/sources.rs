//! Wear sources read from sysfs: what each kind of flash says about itself.
//!
//! Only what the device has is read; an absent directory or file is simply
//! skipped. A file that is there but does not parse gives a note naming the
//! path (never a panic) and the other figures and sources are still read.
//! sysfs attributes are one value in decimal text with a trailing newline
//! unless said otherwise below.
//!
//! | source (id) | files | life used | level also from |
//! | --- | --- | --- | --- |
//! | UBI (`ubi0`) | `/sys/class/ubi/ubiN/{max_ec,bad_peb_count,reserved_for_bad,total_eraseblocks,ro_mode,mtd_num}`; EC headers of `/dev/mtdN` ([`super::ubi_ec`]) | mean erase count (max without a scan) / rated P/E cycles | bad-block reserve consumed; `ro_mode` 1 is critical |
//! | MTD (`mtd2`) | `/sys/class/mtd/mtdN/{name,type,size,erasesize,bad_blocks,bbt_blocks,ecc_failures,corrected_bits}` | — | NAND: bad blocks / the 2 % a datasheet allows; `ecc_failures` > 0 warns |
//! | eMMC (`mmcblk0`) | `/sys/block/mmcblkN/device/life_time` (`0x01 0x02`: types A and B), `pre_eol_info` (`0x01`) | top of the worse band (0x01 = 0–10 % → 10 %, 0x0B = exceeded → 100 %) | pre-EOL 2 warns, 3 is critical |
//! | ext4/f2fs (`ext4:vda2`) | `/sys/fs/{ext4,f2fs}/DEV/lifetime_write_kbytes` | bytes written / (capacity × P/E cycles) | — |
//! | block (`blk:vda`) | `/sys/block/DEV/stat`: field 7 = sectors written since boot (512-byte units) | — | — |

use super::config::WearConfig;
use super::ubi_ec::{self, EcStats};
use super::{Level, DEV_DIR, SYS_BLOCK, SYS_CLASS_MTD, SYS_CLASS_UBI, SYS_FS_EXT4, SYS_FS_F2FS};
use crate::paths::SysRoot;
use std::fmt;
use std::io;
use std::path::Path;

/// What kind of counter a reading comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ubi,
    Mtd,
    Emmc,
    /// ext4 or f2fs lifetime writes.
    Fs,
    /// Block-layer writes since boot.
    Block,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ubi => "ubi",
            Kind::Mtd => "mtd",
            Kind::Emmc => "emmc",
            Kind::Fs => "fs",
            Kind::Block => "block",
        }
    }
}

/// One displayed figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Num(u64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// What one source says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReading {
    /// `ubi0`, `mtd2`, `mmcblk0`, `ext4:vda2`, `f2fs:mmcblk0p3`, `blk:vda`.
    pub id: String,
    pub kind: Kind,
    /// name → value, in reading order, for display.
    pub figures: Vec<(&'static str, Value)>,
    /// Share of the rated endurance used, in percent (may exceed 100).
    pub life_used_pct: Option<u32>,
    /// Share of the bad-block reserve consumed, in percent.
    pub bad_reserve_pct: Option<u32>,
    /// UBI: the EC header scan, when one was made.
    pub ec: Option<EcStats>,
    /// eMMC: life_time types A and B, and pre_eol_info, as read.
    pub emmc_life: Option<(u8, u8)>,
    pub pre_eol: Option<u8>,
    /// `Unknown` when nothing could be read.
    pub level: Level,
    /// Why the level is above ok.
    pub reasons: Vec<String>,
    /// Files that are there but could not be read or parsed.
    pub notes: Vec<String>,
}

impl SourceReading {
    pub fn new(id: impl Into<String>, kind: Kind) -> Self {
        SourceReading {
            id: id.into(),
            kind,
            figures: Vec::new(),
            life_used_pct: None,
            bad_reserve_pct: None,
            ec: None,
            emmc_life: None,
            pre_eol: None,
            level: Level::Unknown,
            reasons: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A numeric figure by name.
    pub fn figure(&self, name: &str) -> Option<u64> {
        self.figures.iter().find_map(|(n, v)| match v {
            Value::Num(x) if *n == name => Some(*x),
            _ => None,
        })
    }

    /// A text figure by name.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.figures.iter().find_map(|(n, v)| match v {
            Value::Text(t) if *n == name => Some(t.as_str()),
            _ => None,
        })
    }

    fn raise(&mut self, level: Level, reason: String) {
        if level > Level::Ok {
            self.reasons.push(reason);
        }
        self.level = self.level.max(level);
    }

    /// Reads a decimal attribute `dir/file` into figure `file`; absent: `None`
    /// silently; malformed: a note.
    fn num(&mut self, dir: &Path, file: &'static str) -> Option<u64> {
        match read_num(&dir.join(file))? {
            Ok(n) => {
                self.figures.push((file, Value::Num(n)));
                Some(n)
            }
            Err(e) => {
                self.notes.push(e);
                None
            }
        }
    }

    /// Reads a one-line text attribute into a figure.
    fn text_attr(&mut self, dir: &Path, file: &'static str) -> Option<String> {
        match read_attr(&dir.join(file))? {
            Ok(t) => {
                let t = t.trim().to_string();
                self.figures.push((file, Value::Text(t.clone())));
                Some(t)
            }
            Err(e) => {
                self.notes.push(e);
                None
            }
        }
    }

    fn life_used(&mut self, pct: u32, what: &str, cfg: &WearConfig) {
        self.life_used_pct = Some(pct);
        let l = Level::from_thresholds(pct, cfg.warn_pct, cfg.critical_pct);
        self.raise(
            l,
            format!(
                "{what}: {pct}% of its life used (warn at {}%, critical at {}%)",
                cfg.warn_pct, cfg.critical_pct
            ),
        );
    }

    fn bad_reserve(&mut self, pct: u32, what: String, cfg: &WearConfig) {
        self.bad_reserve_pct = Some(pct);
        let l = Level::from_thresholds(pct, cfg.bad_warn_pct, cfg.bad_critical_pct);
        self.raise(
            l,
            format!(
                "{what}: {pct}% of the bad-block reserve used (warn at {}%, critical at {}%)",
                cfg.bad_warn_pct, cfg.bad_critical_pct
            ),
        );
    }

    /// Something was read: at least ok.
    fn finish(mut self) -> Self {
        if self.level == Level::Unknown && !self.figures.is_empty() {
            self.level = Level::Ok;
        }
        self
    }
}

/// What [`read_sources`] does beyond sysfs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read the UBI EC header of every PEB from `/dev/mtdN` for the mean and
    /// spread of erase counts (see [`ubi_ec`] for the cost).
    pub scan_ec: bool,
}

/// Reads every wear source the device has, in a fixed order: UBI, MTD,
/// eMMC, ext4, f2fs, block devices; within a kind by name (numerically).
pub fn read_sources(root: &SysRoot, cfg: &WearConfig, opts: &ReadOptions) -> Vec<SourceReading> {
    let mut out = Vec::new();
    for n in numbered(root, SYS_CLASS_UBI, "ubi") {
        out.push(read_ubi(root, n, cfg, opts));
    }
    for n in numbered(root, SYS_CLASS_MTD, "mtd") {
        out.push(read_mtd(root, n, cfg));
    }
    for n in numbered(root, SYS_BLOCK, "mmcblk") {
        if let Some(r) = read_emmc(root, n, cfg) {
            out.push(r);
        }
    }
    for (fs, dir) in [("ext4", SYS_FS_EXT4), ("f2fs", SYS_FS_F2FS)] {
        for dev in names(&root.path(dir)) {
            if let Some(r) = read_fs(root, fs, &dev, cfg) {
                out.push(r);
            }
        }
    }
    for dev in names(&root.path(SYS_BLOCK)) {
        if !is_virtual_block(&dev) {
            out.push(read_block(root, &dev));
        }
    }
    out
}

/// UBI device `ubiN`.
pub fn read_ubi(root: &SysRoot, n: u32, cfg: &WearConfig, opts: &ReadOptions) -> SourceReading {
    let id = format!("ubi{n}");
    let dir = root.path(SYS_CLASS_UBI).join(&id);
    let mut r = SourceReading::new(&id, Kind::Ubi);
    let max_ec = r.num(&dir, "max_ec");
    let bad = r.num(&dir, "bad_peb_count");
    let reserved = r.num(&dir, "reserved_for_bad");
    r.num(&dir, "total_eraseblocks");
    let ro = r.num(&dir, "ro_mode");
    let mtd = r.num(&dir, "mtd_num");
    if ro == Some(1) {
        r.raise(
            Level::Critical,
            "UBI switched to read-only mode after an error (ro_mode=1)".into(),
        );
    }
    let mut mean_x100 = None;
    if let (true, Some(m)) = (opts.scan_ec, mtd) {
        match read_ec_stats(root, m) {
            Ok(st) => {
                mean_x100 = st.mean_x100();
                push_ec_figures(&mut r, &st);
                r.ec = Some(st);
            }
            Err(e) => r.notes.push(e),
        }
    }
    if let Some(pe) = cfg.pe_cycles.filter(|&p| p > 0) {
        let pe100 = u64::from(pe) * 100;
        let (ec_x100, what) = match (mean_x100, max_ec) {
            (Some(m), _) => (Some(m), "mean erase count"),
            (None, Some(m)) => (m.checked_mul(100), "highest erase count"),
            (None, None) => (None, ""),
        };
        if let Some(e) = ec_x100 {
            r.life_used(pct_of(e, pe100), what, cfg);
        }
    }
    if let (Some(b), Some(res)) = (bad, reserved) {
        if let Some(total) = b.checked_add(res).filter(|&t| t > 0) {
            r.bad_reserve(pct_of(b, total), format!("{b} bad PEBs, {res} spare"), cfg);
        }
    }
    r.finish()
}

/// An MTD partition holding UBI that no UBI device is attached to yet: its
/// erase counts from the EC headers on the raw flash (what UBI would read
/// when attaching it), so that the wear policy is decided before the attach.
pub fn read_unattached_ubi(root: &SysRoot, mtd: u32, cfg: &WearConfig) -> SourceReading {
    let mut r = SourceReading::new(format!("ubi:mtd{mtd}"), Kind::Ubi);
    r.figures.push(("mtd_num", Value::Num(u64::from(mtd))));
    match read_ec_stats(root, u64::from(mtd)) {
        Ok(st) => {
            if let Some(m) = st.max {
                r.figures.push(("max_ec", Value::Num(m)));
            }
            push_ec_figures(&mut r, &st);
            if let (Some(pe), Some(m)) = (cfg.pe_cycles.filter(|&p| p > 0), st.mean_x100()) {
                r.life_used(pct_of(m, u64::from(pe) * 100), "mean erase count", cfg);
            }
            r.ec = Some(st);
        }
        Err(e) => r.notes.push(e),
    }
    r.finish()
}

fn push_ec_figures(r: &mut SourceReading, st: &EcStats) {
    if let Some(m) = st.mean_x100() {
        r.figures.push((
            "mean_ec",
            Value::Text(format!("{}.{:02}", m / 100, m % 100)),
        ));
    }
    if let Some(m) = st.min {
        r.figures.push(("min_ec", Value::Num(m)));
    }
    if let Some(s) = st.spread() {
        r.figures.push(("ec_spread", Value::Num(s)));
    }
    r.figures.push(("ec_headers", Value::Num(st.valid)));
    r.figures.push(("ec_unknown", Value::Num(st.erased)));
    let bad = st
        .corrupt
        .saturating_add(st.not_ubi)
        .saturating_add(st.unreadable);
    if bad > 0 {
        r.figures.push(("ec_corrupt", Value::Num(bad)));
    }
}

/// Scans `/dev/mtdN` with the geometry sysfs gives for `mtdN`.
pub fn read_ec_stats(root: &SysRoot, mtd: u64) -> Result<EcStats, String> {
    let dir = root.path(SYS_CLASS_MTD).join(format!("mtd{mtd}"));
    let attr = |f: &str| -> Result<u64, String> {
        let p = dir.join(f);
        read_num(&p).unwrap_or_else(|| Err(path_err(&p, "missing")))
    };
    let size = attr("size")?;
    let erasesize = attr("erasesize")?;
    let dev = root.path(DEV_DIR).join(format!("mtd{mtd}"));
    let mut f = std::fs::File::open(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    ubi_ec::scan_ec(&mut f, size, erasesize, &mut |_| false)
        .map_err(|e| format!("{}: {e}", dev.display()))
}

/// A datasheet's usual bound on bad blocks over the life of a NAND: 20 per
/// 1024 (the "minimum valid blocks" of e.g. 1004 of 1024), which is also
/// UBI's default bad-PEB reserve (CONFIG_MTD_UBI_BEB_LIMIT).
pub const NAND_BAD_PER_1024: u64 = 20;

/// MTD device `mtdN`.
pub fn read_mtd(root: &SysRoot, n: u32, cfg: &WearConfig) -> SourceReading {
    let id = format!("mtd{n}");
    let dir = root.path(SYS_CLASS_MTD).join(&id);
    let mut r = SourceReading::new(&id, Kind::Mtd);
    r.text_attr(&dir, "name");
    let kind = r.text_attr(&dir, "type");
    let size = r.num(&dir, "size");
    let erasesize = r.num(&dir, "erasesize");
    let bad = r.num(&dir, "bad_blocks");
    r.num(&dir, "bbt_blocks");
    let ecc_failures = r.num(&dir, "ecc_failures");
    r.num(&dir, "corrected_bits");
    if let Some(f) = ecc_failures.filter(|&f| f > 0) {
        r.raise(
            Level::Warn,
            format!("{f} uncorrectable ECC errors since boot"),
        );
    }
    let nand = matches!(kind.as_deref(), Some("nand" | "mlc-nand"));
    if let (true, Some(b), Some(s), Some(e)) = (nand, bad, size, erasesize) {
        if let Some(blocks) = s.checked_div(e).filter(|&b| b > 0) {
            let allowed = (blocks * NAND_BAD_PER_1024 / 1024).max(1);
            r.bad_reserve(
                pct_of(b, allowed),
                format!("{b} bad of {blocks} blocks ({allowed} expected at most)"),
                cfg,
            );
        }
    }
    r.finish()
}

/// eMMC life-time estimate (EXT_CSD DEVICE_LIFE_TIME_EST_TYP_A/B) → the top
/// of its band in percent: 0x01 is 0–10 % used … 0x0A 90–100 %, 0x0B
/// exceeded. The top is taken so a threshold is reached as soon as the
/// device says it may be. 0x00 (not defined) and reserved values: `None`.
pub fn emmc_life_pct(v: u8) -> Option<u32> {
    match v {
        1..=10 => Some(u32::from(v) * 10),
        11 => Some(100),
        _ => None,
    }
}

fn emmc_band(v: u8) -> String {
    match v {
        1..=10 => format!("0x{v:02x} ({}-{}%)", (v - 1) * 10, v * 10),
        11 => format!("0x{v:02x} (exceeded)"),
        _ => format!("0x{v:02x} (not defined)"),
    }
}

/// `0xNN` as the mmc driver prints a byte.
fn parse_hex_byte(s: &str) -> Result<u8, String> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| format!("{s:?} is not 0xNN"))?;
    u8::from_str_radix(h, 16).map_err(|_| format!("{s:?} is not 0xNN"))
}

/// `life_time`: `"0x01 0x02\n"` (type A, type B).
pub fn parse_life_time(text: &str) -> Result<(u8, u8), String> {
    let mut it = text.split_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((parse_hex_byte(a)?, parse_hex_byte(b)?)),
        _ => Err(format!("{:?} is not two bytes 0xNN 0xNN", text.trim())),
    }
}

/// `pre_eol_info`: `"0x01\n"`; 1 normal, 2 warning (80 % of the reserved
/// blocks consumed), 3 urgent (90 %).
pub fn parse_pre_eol(text: &str) -> Result<u8, String> {
    parse_hex_byte(text.trim())
}

/// eMMC `mmcblkN`; `None` when the card reports neither attribute (an SD
/// card, or eMMC older than 5.0).
pub fn read_emmc(root: &SysRoot, n: u32, cfg: &WearConfig) -> Option<SourceReading> {
    let id = format!("mmcblk{n}");
    let disk = root.path(SYS_BLOCK).join(&id);
    let dev = disk.join("device");
    let life = read_attr(&dev.join("life_time"));
    let eol = read_attr(&dev.join("pre_eol_info"));
    if life.is_none() && eol.is_none() {
        return None;
    }
    let mut r = SourceReading::new(&id, Kind::Emmc);
    match read_num(&disk.join("size")) {
        Some(Ok(sectors)) => r
            .figures
            .push(("size_bytes", Value::Num(sectors.saturating_mul(512)))),
        Some(Err(e)) => r.notes.push(e),
        None => {}
    }
    let life_path = dev.join("life_time");
    match life.map(|t| t.and_then(|t| parse_life_time(&t).map_err(|e| path_err(&life_path, e)))) {
        Some(Ok((a, b))) => {
            r.emmc_life = Some((a, b));
            r.figures.push(("life_time_a", Value::Text(emmc_band(a))));
            r.figures.push(("life_time_b", Value::Text(emmc_band(b))));
            if let Some(p) = [a, b].into_iter().filter_map(emmc_life_pct).max() {
                r.life_used(p, "eMMC life-time estimate", cfg);
            }
        }
        Some(Err(e)) => r.notes.push(e),
        None => {}
    }
    let eol_path = dev.join("pre_eol_info");
    match eol.map(|t| t.and_then(|t| parse_pre_eol(&t).map_err(|e| path_err(&eol_path, e)))) {
        Some(Ok(v)) => {
            r.pre_eol = Some(v);
            let (what, level) = match v {
                1 => ("normal", Level::Ok),
                2 => ("warning", Level::Warn),
                3 => ("urgent", Level::Critical),
                _ => ("not defined", Level::Unknown),
            };
            r.figures
                .push(("pre_eol", Value::Text(format!("0x{v:02x} ({what})"))));
            r.raise(
                level,
                format!("eMMC pre-EOL: {what} (reserved blocks running out)"),
            );
        }
        Some(Err(e)) => r.notes.push(e),
        None => {}
    }
    Some(r.finish())
}

/// The whole disk a block device name belongs to, by the kernel's naming:
/// `mmcblk0p3` → `mmcblk0`, `nvme0n1p2` → `nvme0n1`, `vda2` → `vda`.
pub fn disk_of(dev: &str) -> &str {
    let digits = dev.trim_end_matches(|c: char| c.is_ascii_digit());
    if digits.len() == dev.len() {
        return dev;
    }
    match digits.strip_suffix('p') {
        // mmcblk0p3, nvme0n1p2, loop0p1: "p" after a digit separates the partition
        Some(base) if base.ends_with(|c: char| c.is_ascii_digit()) => base,
        _ if dev.starts_with("mmcblk")
            || dev.starts_with("nvme")
            || dev.starts_with("mtdblock") =>
        {
            dev
        }
        _ => digits,
    }
}

/// Size in bytes of the disk holding `dev` (`/sys/block/DISK/size`, 512-byte sectors).
fn disk_bytes(root: &SysRoot, dev: &str) -> Option<u64> {
    let base = root.path(SYS_BLOCK);
    let p = if base.join(dev).is_dir() {
        base.join(dev).join("size")
    } else {
        base.join(disk_of(dev)).join("size")
    };
    read_num(&p)?.ok()?.checked_mul(512)
}

/// ext4 or f2fs on `dev`; `None` for directories without a lifetime counter
/// (`/sys/fs/ext4/features`).
pub fn read_fs(root: &SysRoot, fs: &str, dev: &str, cfg: &WearConfig) -> Option<SourceReading> {
    let dir = root
        .path(if fs == "f2fs" {
            SYS_FS_F2FS
        } else {
            SYS_FS_EXT4
        })
        .join(dev);
    if !dir.join("lifetime_write_kbytes").exists() {
        return None;
    }
    let mut r = SourceReading::new(format!("{fs}:{dev}"), Kind::Fs);
    let kb = r.num(&dir, "lifetime_write_kbytes");
    Some(fs_life(r, root, dev, kb, cfg))
}

/// ext4 or f2fs on `dev` from a lifetime write counter read elsewhere (the
/// superblock, before mounting).
pub fn fs_from_counter(
    root: &SysRoot,
    fs: &str,
    dev: &str,
    kb: u64,
    cfg: &WearConfig,
) -> SourceReading {
    let mut r = SourceReading::new(format!("{fs}:{dev}"), Kind::Fs);
    r.figures.push(("lifetime_write_kbytes", Value::Num(kb)));
    fs_life(r, root, dev, Some(kb), cfg)
}

/// Capacity and life used of a filesystem reading.
fn fs_life(
    mut r: SourceReading,
    root: &SysRoot,
    dev: &str,
    kb: Option<u64>,
    cfg: &WearConfig,
) -> SourceReading {
    let capacity = cfg.capacity.or_else(|| disk_bytes(root, dev));
    if let Some(c) = capacity {
        r.figures.push(("capacity_bytes", Value::Num(c)));
    }
    if let (Some(kb), Some(end)) = (kb, cfg.endurance_bytes(capacity)) {
        let written = kb.saturating_mul(1024);
        r.life_used(
            pct_of(written, end),
            "writes since mkfs against capacity × P/E cycles",
            cfg,
        );
    }
    r.finish()
}

/// `/sys/block/DEV/stat`: 11 fields (before 4.18), 15 (discards, 4.18) or
/// 17 (flushes, 5.5), whitespace-separated and right-aligned; field 7
/// (index 6) is sectors written, always in 512-byte units. Returns it.
pub fn parse_block_stat(text: &str) -> Result<u64, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 11 {
        return Err(format!("{} fields, expected 11, 15 or 17", fields.len()));
    }
    let w = fields.get(6).copied().unwrap_or("");
    w.parse()
        .map_err(|_| format!("sectors written {w:?} is not a number"))
}

/// Devices that do not write to flash: loop, RAM and compressed RAM disks,
/// device-mapper and md (their writes land on a real device counted on its own).
pub fn is_virtual_block(dev: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd"]
        .iter()
        .any(|p| dev.starts_with(p))
}

/// Block device `dev`: bytes written since boot.
pub fn read_block(root: &SysRoot, dev: &str) -> SourceReading {
    let p = root.path(SYS_BLOCK).join(dev).join("stat");
    let mut r = SourceReading::new(format!("blk:{dev}"), Kind::Block);
    match read_attr(&p) {
        Some(Ok(t)) => match parse_block_stat(&t) {
            Ok(s) => {
                r.figures.push(("sectors_written", Value::Num(s)));
                r.figures
                    .push(("written_since_boot", Value::Num(s.saturating_mul(512))));
            }
            Err(e) => r.notes.push(path_err(&p, e)),
        },
        Some(Err(e)) => r.notes.push(e),
        None => {}
    }
    r.finish()
}

/// `part × 100 / whole`, rounded down, saturating at u32::MAX.
fn pct_of(part: u64, whole: u64) -> u32 {
    super::mul_div(part, 100, whole)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(u32::MAX)
}

fn path_err(p: &Path, e: impl fmt::Display) -> String {
    format!("{}: {e}", p.display())
}

/// A sysfs attribute: `None` when absent, `Some(Err)` (with the path) when
/// unreadable. sysfs files are small; more than 4 KiB is not an attribute.
fn read_attr(p: &Path) -> Option<Result<String, String>> {
    match std::fs::read(p) {
        Ok(b) if b.len() > 4096 => Some(Err(path_err(p, "larger than a sysfs attribute"))),
        Ok(b) => Some(String::from_utf8(b).map_err(|_| path_err(p, "not text"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(path_err(p, e))),
    }
}

/// A decimal attribute: `None` when absent, errors with the path.
fn read_num(p: &Path) -> Option<Result<u64, String>> {
    Some(read_attr(p)?.and_then(|t| parse_decimal(&t).map_err(|e| path_err(p, e))))
}

/// A decimal attribute, `"1234\n"`.
pub fn parse_decimal(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty".into());
    }
    t.parse().map_err(|_| format!("{t:?} is not a number"))
}

/// Entries of a directory, sorted; none when it is absent.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = crate::fsio::dir_names(dir)
        .map(|names| {
            names
                .into_iter()
                .filter_map(|n| n.into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    // Equal strings are indistinguishable: unstable sorts the same.
    v.sort_unstable();
    v
}

/// The N of entries named exactly `PREFIX` + digits (`ubi0`, not `ubi0_0`
/// or `version`; `mtd2`, not `mtd2ro`), in numeric order.
fn numbered(root: &SysRoot, dir: &str, prefix: &str) -> Vec<u32> {
    let mut v: Vec<u32> = names(&root.path(dir))
        .iter()
        .filter_map(|n| {
            let d = n.strip_prefix(prefix)?;
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            d.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use crate::wear::ubi_ec::fixture_image;

    /// A 5.x kernel's 17-field stat line, padded as the kernel prints it.
    const STAT17: &str = "    4916     1794   387362     2236    21567    16234  1268584    31452        0    28364    37220        0        0        0        0     2741     3531\n";
    const STAT11: &str = "     612      30    23380     320       88      51     1560     110        0     360      430\n";

    fn cfg() -> WearConfig {
        WearConfig {
            pe_cycles: Some(3000),
            ..WearConfig::default()
        }
    }

    fn ubi_tree(d: &TempDir, max_ec: &str, bad: &str, reserved: &str, ro: &str) {
        d.write("sys/class/ubi/version", "1\n");
        d.write("sys/class/ubi/ubi0_0/name", "rootfs_data\n");
        d.write("sys/class/ubi/ubi0/max_ec", max_ec);
        d.write("sys/class/ubi/ubi0/bad_peb_count", bad);
        d.write("sys/class/ubi/ubi0/reserved_for_bad", reserved);
        d.write("sys/class/ubi/ubi0/total_eraseblocks", "1024\n");
        d.write("sys/class/ubi/ubi0/ro_mode", ro);
        d.write("sys/class/ubi/ubi0/mtd_num", "3\n");
    }

    fn mtd_tree(d: &TempDir, n: u32, kind: &str, size: u64, es: u64, bad: &str, ecc: &str) {
        let m = format!("sys/class/mtd/mtd{n}");
        d.write(&format!("{m}/name"), "ubi\n");
        d.write(&format!("{m}/type"), format!("{kind}\n"));
        d.write(&format!("{m}/size"), format!("{size}\n"));
        d.write(&format!("{m}/erasesize"), format!("{es}\n"));
        d.write(&format!("{m}/bad_blocks"), bad);
        d.write(&format!("{m}/bbt_blocks"), "4\n");
        d.write(&format!("{m}/ecc_failures"), ecc);
        d.write(&format!("{m}/corrected_bits"), "17\n");
        d.write(&format!("sys/class/mtd/mtd{n}ro/name"), "ubi\n");
    }

    #[test]
    fn an_empty_root_has_no_sources() {
        let d = TempDir::new("wear-empty");
        assert!(read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default()).is_empty());
    }

    #[test]
    fn ubi_from_max_ec_and_bad_block_reserve() {
        let d = TempDir::new("wear-ubi");
        ubi_tree(&d, "1500\n", "2\n", "18\n", "0\n");
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        assert_eq!(r.len(), 1, "{r:?}");
        let u = &r[0];
        assert_eq!((u.id.as_str(), u.kind.as_str()), ("ubi0", "ubi"));
        assert_eq!(u.figure("max_ec"), Some(1500));
        assert_eq!(u.figure("total_eraseblocks"), Some(1024));
        assert_eq!(u.life_used_pct, Some(50));
        assert_eq!(u.bad_reserve_pct, Some(10));
        assert_eq!(u.level, Level::Ok);
        assert!(u.notes.is_empty(), "{:?}", u.notes);

        let mut c = cfg();
        c.pe_cycles = None;
        let r = read_ubi(&SysRoot::new(d.path()), 0, &c, &ReadOptions::default());
        assert_eq!(r.life_used_pct, None, "no endurance, no life figure");
    }

    #[test]
    fn ubi_levels() {
        let d = TempDir::new("wear-ubi-lv");
        ubi_tree(&d, "2900\n", "2\n", "18\n", "0\n");
        let root = SysRoot::new(d.path());
        let r = read_ubi(&root, 0, &cfg(), &ReadOptions::default());
        assert_eq!((r.life_used_pct, r.level), (Some(96), Level::Critical));
        ubi_tree(&d, "10\n", "12\n", "8\n", "0\n");
        let r = read_ubi(&root, 0, &cfg(), &ReadOptions::default());
        assert_eq!((r.bad_reserve_pct, r.level), (Some(60), Level::Warn));
        assert!(
            r.reasons[0].contains("12 bad PEBs, 8 spare"),
            "{:?}",
            r.reasons
        );
        ubi_tree(&d, "10\n", "20\n", "0\n", "1\n");
        let r = read_ubi(&root, 0, &cfg(), &ReadOptions::default());
        assert_eq!((r.bad_reserve_pct, r.level), (Some(100), Level::Critical));
        assert_eq!(r.reasons.len(), 2, "{:?}", r.reasons);
        assert!(r.reasons[0].contains("read-only"));
    }

    #[test]
    fn ubi_with_an_ec_scan_uses_the_mean() {
        let d = TempDir::new("wear-ubi-ec");
        ubi_tree(&d, "2000\n", "0\n", "20\n", "0\n");
        mtd_tree(&d, 3, "nand", 8 * 4096, 4096, "0\n", "0\n");
        let mut img = fixture_image(
            4096,
            &[
                Some(1000),
                Some(1200),
                None,
                Some(2000),
                Some(800),
                Some(1000),
                Some(1000),
                Some(1000),
            ],
        );
        img[4096 * 7 + 9] ^= 0x40; // one header damaged
        d.write("dev/mtd3", &img);
        let root = SysRoot::new(d.path());
        let r = read_ubi(&root, 0, &cfg(), &ReadOptions { scan_ec: true });
        assert_eq!(r.text("mean_ec"), Some("1166.66"));
        assert_eq!(r.figure("min_ec"), Some(800));
        assert_eq!(r.figure("ec_spread"), Some(1200));
        assert_eq!(r.figure("ec_headers"), Some(6));
        assert_eq!(r.figure("ec_unknown"), Some(1));
        assert_eq!(r.figure("ec_corrupt"), Some(1));
        assert_eq!(r.ec.and_then(|e| e.mean_x100()), Some(116_666));
        assert_eq!(r.life_used_pct, Some(38), "mean 1166.66 of 3000");
        assert!(r.reasons.is_empty());
        // No /dev/mtd3: a note, the sysfs figures stay.
        std::fs::remove_file(d.path().join("dev/mtd3")).unwrap();
        let r = read_ubi(&root, 0, &cfg(), &ReadOptions { scan_ec: true });
        assert_eq!(r.life_used_pct, Some(66), "max_ec 2000 of 3000");
        assert!(r.notes[0].contains("dev/mtd3"), "{:?}", r.notes);
    }

    #[test]
    fn malformed_ubi_files_are_noted_and_the_rest_is_read() {
        let d = TempDir::new("wear-ubi-bad");
        ubi_tree(&d, "lots\n", "\n", "18\n", "0\n");
        let r = read_ubi(&SysRoot::new(d.path()), 0, &cfg(), &ReadOptions::default());
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(
            r.notes[0].ends_with("ubi0/max_ec: \"lots\" is not a number"),
            "{}",
            r.notes[0]
        );
        assert!(r.notes[1].ends_with("bad_peb_count: empty"));
        assert_eq!(r.figure("reserved_for_bad"), Some(18));
        assert_eq!(r.life_used_pct, None);
        assert_eq!(r.level, Level::Ok);
    }

    #[test]
    fn a_ubi_directory_with_nothing_readable_is_unknown() {
        let d = TempDir::new("wear-ubi-none");
        d.write("sys/class/ubi/ubi1/max_ec", "x\n");
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].level, Level::Unknown);
    }

    #[test]
    fn mtd_bad_blocks_and_ecc() {
        let d = TempDir::new("wear-mtd");
        // 128 MiB of 128 KiB: 1024 blocks, 20 allowed bad.
        mtd_tree(&d, 2, "nand", 128 << 20, 128 << 10, "11\n", "0\n");
        mtd_tree(&d, 10, "nor", 4 << 20, 64 << 10, "0\n", "3\n");
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["mtd2", "mtd10"], "numeric order, mtdNro skipped");
        assert_eq!(r[0].text("type"), Some("nand"));
        assert_eq!(r[0].bad_reserve_pct, Some(55));
        assert_eq!(r[0].level, Level::Warn);
        assert_eq!(r[1].bad_reserve_pct, None, "NOR has no bad blocks");
        assert_eq!(r[1].level, Level::Warn);
        assert!(r[1].reasons[0].contains("3 uncorrectable ECC errors"));
    }

    #[test]
    fn emmc_life_time_and_pre_eol() {
        let d = TempDir::new("wear-emmc");
        d.write("sys/block/mmcblk0/size", "30535680\n");
        d.write("sys/block/mmcblk0/stat", STAT17);
        d.write("sys/block/mmcblk0/device/life_time", "0x01 0x02\n");
        d.write("sys/block/mmcblk0/device/pre_eol_info", "0x01\n");
        d.write("sys/block/mmcblk0boot0/stat", STAT11);
        // An SD card: no life_time: no eMMC reading, only its block counters.
        d.write("sys/block/mmcblk1/stat", STAT11);
        d.write("sys/block/mmcblk1/device/type", "SD\n");
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["mmcblk0", "blk:mmcblk0", "blk:mmcblk0boot0", "blk:mmcblk1"]
        );
        let e = &r[0];
        assert_eq!(e.text("life_time_a"), Some("0x01 (0-10%)"));
        assert_eq!(e.text("life_time_b"), Some("0x02 (10-20%)"));
        assert_eq!(e.text("pre_eol"), Some("0x01 (normal)"));
        assert_eq!(e.figure("size_bytes"), Some(30535680 * 512));
        assert_eq!((e.life_used_pct, e.level), (Some(20), Level::Ok));
        assert_eq!((e.emmc_life, e.pre_eol), (Some((1, 2)), Some(1)));

        d.write("sys/block/mmcblk0/device/life_time", "0x0b 0x09\n");
        d.write("sys/block/mmcblk0/device/pre_eol_info", "0x02\n");
        let e = read_emmc(&SysRoot::new(d.path()), 0, &cfg()).unwrap();
        assert_eq!((e.life_used_pct, e.level), (Some(100), Level::Critical));
        assert_eq!(e.text("life_time_a"), Some("0x0b (exceeded)"));
        assert_eq!(e.reasons.len(), 2);

        d.write("sys/block/mmcblk0/device/life_time", "0x01 0x01\n");
        d.write("sys/block/mmcblk0/device/pre_eol_info", "0x03\n");
        let e = read_emmc(&SysRoot::new(d.path()), 0, &cfg()).unwrap();
        assert_eq!(e.level, Level::Critical, "pre-EOL urgent alone is critical");
    }

    #[test]
    fn malformed_emmc_attributes() {
        let d = TempDir::new("wear-emmc-bad");
        d.write("sys/block/mmcblk0/device/life_time", "0x0c 0xzz\n");
        d.write("sys/block/mmcblk0/device/pre_eol_info", "normal\n");
        let e = read_emmc(&SysRoot::new(d.path()), 0, &cfg()).unwrap();
        assert_eq!(e.notes.len(), 2, "{:?}", e.notes);
        assert!(
            e.notes[0].contains("life_time: \"0xzz\" is not 0xNN"),
            "{}",
            e.notes[0]
        );
        assert_eq!(e.level, Level::Unknown);
        d.write("sys/block/mmcblk0/device/life_time", "0x0c 0x00\n");
        let e = read_emmc(&SysRoot::new(d.path()), 0, &cfg()).unwrap();
        assert_eq!(
            e.life_used_pct, None,
            "reserved and undefined values give no figure"
        );
        assert_eq!(e.text("life_time_a"), Some("0x0c (not defined)"));
        assert_eq!(
            parse_life_time("0x01\n"),
            Err("\"0x01\" is not two bytes 0xNN 0xNN".into())
        );
        assert!(parse_life_time("0x01 0x02 0x03").is_err());
        assert_eq!(parse_pre_eol("0x03\n"), Ok(3));
        assert_eq!(emmc_life_pct(0), None);
        assert_eq!(emmc_life_pct(7), Some(70));
    }

    #[test]
    fn filesystems_lifetime_writes() {
        let d = TempDir::new("wear-fs");
        d.write("sys/fs/ext4/features/lazy_itable_init", "supported\n");
        d.write("sys/fs/ext4/mmcblk0p3/lifetime_write_kbytes", "12582912\n");
        d.write("sys/fs/f2fs/vda2/lifetime_write_kbytes", "garbage\n");
        d.write("sys/block/mmcblk0/size", "2097152\n"); // 1 GiB disk
        d.write("sys/block/mmcblk0/mmcblk0p3/size", "1048576\n");
        let root = SysRoot::new(d.path());
        let r = read_sources(&root, &cfg(), &ReadOptions::default());
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ext4:mmcblk0p3", "f2fs:vda2", "blk:mmcblk0"]);
        let e = &r[0];
        assert_eq!(e.figure("lifetime_write_kbytes"), Some(12 << 20));
        assert_eq!(e.figure("capacity_bytes"), Some(1 << 30), "the whole disk");
        // 12 GiB written on 1 GiB × 3000 cycles.
        assert_eq!(e.life_used_pct, Some(0));
        let mut c = cfg();
        c.pe_cycles = Some(10);
        c.capacity = Some(1 << 30);
        let e = read_fs(&root, "ext4", "mmcblk0p3", &c).unwrap();
        assert_eq!((e.life_used_pct, e.level), (Some(120), Level::Critical));
        let f = &r[1];
        assert_eq!(f.level, Level::Unknown);
        assert!(f.notes[0].contains("f2fs/vda2/lifetime_write_kbytes"));
        assert_eq!(f.figure("capacity_bytes"), None, "no /sys/block/vda");
    }

    #[test]
    fn block_stat_formats() {
        assert_eq!(parse_block_stat(STAT17), Ok(1268584));
        assert_eq!(parse_block_stat(STAT11), Ok(1560));
        let stat15 = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n";
        assert_eq!(parse_block_stat(stat15), Ok(7));
        assert!(parse_block_stat("1 2 3 4 5\n").is_err());
        assert!(parse_block_stat("1 2 3 4 5 6 x 8 9 10 11\n").is_err());
        assert!(parse_block_stat("").is_err());
        let d = TempDir::new("wear-blk");
        d.write("sys/block/vda/stat", STAT17);
        d.write("sys/block/vdb/stat", "1 2 3\n");
        d.write("sys/block/loop0/stat", STAT17);
        d.write("sys/block/zram0/stat", STAT17);
        d.write("sys/block/dm-0/stat", STAT17);
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["blk:vda", "blk:vdb"]);
        assert_eq!(r[0].figure("written_since_boot"), Some(1268584 * 512));
        assert_eq!(r[0].level, Level::Ok);
        assert_eq!(r[1].level, Level::Unknown);
        assert!(
            r[1].notes[0].contains("vdb/stat: 3 fields"),
            "{:?}",
            r[1].notes
        );
    }

    /// An OpenWrt NAND router: NOR and NAND partitions, UBI on mtd5 with
    /// its volume directories, a zram swap, no eMMC.
    #[test]
    fn an_openwrt_nand_board() {
        let d = TempDir::new("wear-openwrt");
        for (n, name, kind, size, es) in [
            (0, "u-boot", "nor", 512 << 10, 64 << 10),
            (1, "u-boot-env", "nor", 64 << 10, 64 << 10),
            (5, "ubi", "nand", 120 << 20, 128 << 10),
        ] {
            let m = format!("sys/class/mtd/mtd{n}");
            d.write(&format!("{m}/name"), format!("{name}\n"));
            d.write(&format!("{m}/type"), format!("{kind}\n"));
            d.write(&format!("{m}/size"), format!("{size}\n"));
            d.write(&format!("{m}/erasesize"), format!("{es}\n"));
            d.write(&format!("{m}/bad_blocks"), "0\n");
            d.write(&format!("{m}/bbt_blocks"), "0\n");
            d.write(&format!("{m}/ecc_failures"), "0\n");
            d.write(&format!("{m}/corrected_bits"), "0\n");
            d.write(&format!("{m}/flags"), "0x800\n");
            d.write(&format!("sys/class/mtd/mtd{n}ro/name"), format!("{name}\n"));
        }
        ubi_tree(&d, "12\n", "0\n", "19\n", "0\n");
        d.write("sys/class/ubi/ubi0/mtd_num", "5\n");
        d.write("sys/class/ubi/ubi0_1/name", "rootfs_data\n");
        d.write("sys/block/zram0/stat", STAT11);
        d.write("sys/block/mtdblock0/stat", STAT11);
        let r = read_sources(&SysRoot::new(d.path()), &cfg(), &ReadOptions::default());
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ubi0", "mtd0", "mtd1", "mtd5", "blk:mtdblock0"]);
        assert!(
            r.iter().all(|x| x.level == Level::Ok && x.notes.is_empty()),
            "{r:?}"
        );
        assert_eq!(r[0].bad_reserve_pct, Some(0));
        assert_eq!(r[3].text("name"), Some("ubi"));
        assert_eq!(crate::wear::device_level(&r), Level::Ok);
    }

    #[test]
    fn disk_names() {
        for (dev, disk) in [
            ("vda2", "vda"),
            ("sda", "sda"),
            ("sda10", "sda"),
            ("mmcblk0p3", "mmcblk0"),
            ("mmcblk0", "mmcblk0"),
            ("nvme0n1p2", "nvme0n1"),
            ("nvme0n1", "nvme0n1"),
            ("mtdblock3", "mtdblock3"),
        ] {
            assert_eq!(disk_of(dev), disk, "{dev}");
        }
    }

    #[test]
    fn unreadable_and_oversized_files_are_notes() {
        let d = TempDir::new("wear-unread");
        d.write("sys/class/ubi/ubi0/max_ec", vec![b'1'; 5000]);
        std::fs::create_dir_all(d.path().join("sys/class/ubi/ubi0/ro_mode")).unwrap();
        d.write("sys/class/ubi/ubi0/mtd_num", [0xff, 0xfe, b'\n']);
        let r = read_ubi(&SysRoot::new(d.path()), 0, &cfg(), &ReadOptions::default());
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
        assert!(r.notes[0].contains("larger than a sysfs attribute"));
        assert!(r.notes[2].contains("not text"));
    }
}
