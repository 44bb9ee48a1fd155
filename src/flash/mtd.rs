//! MTD partitions: discovery from sysfs (`/sys/class/mtd/mtdN/`) or
//! `/proc/mtd`, and erasing through the MTD character device (`/dev/mtdN`),
//! as fstools' libfstools/mtd.c does it.
//!
//! `parse_*` functions are pure; `read_*` read below a [`SysRoot`]; erasing
//! goes through [`Sys`], so tests run it against the recording fake.

use super::FlashError;
use crate::paths::SysRoot;
use crate::sys::{FlashIo, MtdGeometry, Sys};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PROC_MTD: &str = "/proc/mtd";
pub const SYS_CLASS_MTD: &str = "/sys/class/mtd";

/// What kind of memory an MTD device is: sysfs `type`, as
/// drivers/mtd/mtdcore.c `mtd_type_show` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtdKind {
    Nor,
    Nand,
    MlcNand,
    DataFlash,
    /// An MTD emulated on a UBI volume (gluebi).
    Ubi,
    Ram,
    Rom,
    Absent,
    /// Not reported (`/proc/mtd` has no type) or a type we do not know.
    Unknown,
}

impl MtdKind {
    /// Parses sysfs `type`: "nor", "nand", "mlc-nand", "dataflash", "ubi",
    /// "ram", "rom", "absent" (anything else → `Unknown`).
    pub fn parse(s: &str) -> MtdKind {
        match s.trim() {
            "nor" => MtdKind::Nor,
            "nand" => MtdKind::Nand,
            "mlc-nand" => MtdKind::MlcNand,
            "dataflash" => MtdKind::DataFlash,
            "ubi" => MtdKind::Ubi,
            "ram" => MtdKind::Ram,
            "rom" => MtdKind::Rom,
            "absent" => MtdKind::Absent,
            _ => MtdKind::Unknown,
        }
    }

    /// NAND may have bad blocks; asking NOR is pointless (the kernel answers 0).
    pub fn has_bad_blocks(self) -> bool {
        matches!(self, MtdKind::Nand | MtdKind::MlcNand)
    }
}

/// One MTD device (usually a partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtdInfo {
    /// N of `mtdN`.
    pub index: u32,
    /// The partition name (`mtdparts=...(rootfs_data)`, device tree `label`).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Bytes; never 0 in a parsed `MtdInfo`.
    pub erasesize: u32,
    /// Smallest programmable unit (1 on NOR); `None` from `/proc/mtd`.
    pub writesize: Option<u32>,
    pub kind: MtdKind,
    /// `MTD_WRITEABLE` clear in sysfs `flags` (a `ro` partition).
    pub read_only: bool,
}

impl MtdInfo {
    /// The character device: `/dev/mtdN`.
    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/mtd{}", self.index))
    }

    /// Number of erase blocks.
    pub fn blocks(&self) -> u64 {
        self.size / u64::from(self.erasesize.max(1))
    }
}

/// `MTD_WRITEABLE` (include/uapi/mtd/mtd-abi.h).
const MTD_WRITEABLE: u64 = 0x400;

fn parse_index(dev: &str) -> Option<u32> {
    let n = dev.strip_prefix("mtd")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

/// Parses `/proc/mtd` (drivers/mtd/mtdcore.c `mtd_proc_show`):
///
/// ```text
/// dev:    size   erasesize  name
/// mtd0: 04000000 00040000 "fw"
/// ```
///
/// Sizes are hex without `0x`; the name is quoted and may hold spaces.
/// Lines that do not parse are skipped, each with a note saying why.
pub fn parse_proc_mtd(text: &str) -> (Vec<MtdInfo>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with("dev:") {
            continue;
        }
        match parse_proc_line(line) {
            Some(m) => out.push(m),
            None => notes.push(format!("{PROC_MTD}: skipped unreadable line {line:?}")),
        }
    }
    (out, notes)
}

fn parse_proc_line(line: &str) -> Option<MtdInfo> {
    let (dev, rest) = line.split_once(':')?;
    let index = parse_index(dev.trim())?;
    let mut words = rest.split_whitespace();
    let size = parse_hex(words.next()?)?;
    let erasesize = u32::try_from(parse_hex(words.next()?)?).ok()?;
    let quoted = rest.trim();
    let open = quoted.find('"')?;
    let close = quoted.rfind('"')?;
    let name = quoted.get(open + 1..close)?;
    if erasesize == 0 || close <= open {
        return None;
    }
    Some(MtdInfo {
        index,
        name: name.to_string(),
        size,
        erasesize,
        writesize: None,
        kind: MtdKind::Unknown,
        read_only: false,
    })
}

/// Builds an [`MtdInfo`] from the attribute files of `/sys/class/mtd/mtdN`
/// (drivers/mtd/mtdcore.c: `name`, `size` and `erasesize`, `writesize`,
/// `oobsize` in decimal, `flags` as `0x%lx`, `type` as a word).
/// `attr` returns a file's content, `None` when missing. `Err` says what is
/// wrong; `name`, `size` and `erasesize` are required.
pub fn parse_sysfs_mtd(
    dir_name: &str,
    attr: impl Fn(&str) -> Option<String>,
) -> Result<MtdInfo, String> {
    let index = parse_index(dir_name).ok_or("not an mtdN directory")?;
    let dec = |key: &str| -> Result<u64, String> {
        let v = attr(key).ok_or_else(|| format!("no {key}"))?;
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{key} {:?} is not a number", v.trim()))
    };
    let name = attr("name").ok_or("no name")?;
    let name = name.strip_suffix('\n').unwrap_or(&name).to_string();
    let size = dec("size")?;
    let erasesize = u32::try_from(dec("erasesize")?).map_err(|_| "erasesize too large")?;
    if erasesize == 0 {
        return Err("erasesize 0".into());
    }
    let writesize = dec("writesize").ok().and_then(|w| u32::try_from(w).ok());
    let kind = attr("type").map_or(MtdKind::Unknown, |t| MtdKind::parse(&t));
    let read_only = attr("flags")
        .and_then(|f| parse_hex(&f))
        .is_some_and(|f| f & MTD_WRITEABLE == 0);
    Ok(MtdInfo {
        index,
        name,
        size,
        erasesize,
        writesize,
        kind,
        read_only,
    })
}

/// Lists the MTD devices: from sysfs when it has them (it also gives the
/// type, write size and flags), else from `/proc/mtd`. Sorted by index;
/// the notes say what was skipped and why.
pub fn read_mtd_devices(root: &SysRoot) -> (Vec<MtdInfo>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let class = root.path(SYS_CLASS_MTD);
    if let Ok(names) = crate::fsio::dir_names(&class) {
        for entry in names {
            let name = entry.to_string_lossy().into_owned();
            // mtdNro are the read-only twins of mtdN: same device.
            if parse_index(&name).is_none() {
                continue;
            }
            let path = class.join(&entry);
            match parse_sysfs_mtd(&name, |k| std::fs::read_to_string(path.join(k)).ok()) {
                Ok(m) => out.push(m),
                Err(why) => notes.push(format!("{SYS_CLASS_MTD}/{name}: skipped: {why}")),
            }
        }
    }
    if out.is_empty() {
        if let Ok(text) = std::fs::read_to_string(root.path(PROC_MTD)) {
            let (list, n) = parse_proc_mtd(&text);
            out = list;
            notes.extend(n);
        }
    }
    out.sort_unstable_by_key(|m| m.index);
    (out, notes)
}

/// Finds an MTD device by name: the lowest index wins, as the kernel's
/// `get_mtd_device_nm` (behind `mount -t jffs2 mtd:NAME`) picks it.
pub fn find_by_name<'a>(mtds: &'a [MtdInfo], name: &str) -> Option<&'a MtdInfo> {
    mtds.iter()
        .filter(|m| m.name == name && m.kind != MtdKind::Absent)
        .min_by_key(|m| m.index)
}

/// How far an erase went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EraseOutcome {
    /// Every good block is erased.
    Done { erased: u64, bad: u64 },
    /// The deadline passed: blocks `0..remaining_blocks` are not erased yet
    /// (the first good block, which holds the marker, is among them). Pass
    /// `remaining_blocks` as `blocks` to [`erase`] to go on.
    Stopped {
        erased: u64,
        total: u64,
        remaining_blocks: u64,
    },
}

/// Percentage for progress messages: `done` of `total`, 100 when there is nothing.
pub fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from(done.saturating_mul(100) / total).unwrap_or(100)
}

/// Rate-limits progress messages to one per 10 % step: returns the
/// percentage to print when `done` enters a new step since the last print.
#[derive(Debug, Default)]
pub struct ProgressSteps {
    last: Option<u8>,
}

impl ProgressSteps {
    pub fn next(&mut self, done: u64, total: u64) -> Option<u8> {
        let step = percent(done, total) / 10 * 10;
        if self.last.is_some_and(|l| l >= step) {
            return None;
        }
        self.last = Some(step);
        Some(step)
    }
}

/// The geometry the device node reports, checked to be usable for erasing.
pub fn geometry(sys: &dyn FlashIo, dev: &Path) -> Result<MtdGeometry, FlashError> {
    let g = sys.mtd_geometry(dev).map_err(|err| FlashError::Geometry {
        dev: dev.into(),
        err,
    })?;
    if g.erasesize == 0 || g.size < u64::from(g.erasesize) {
        return Err(FlashError::BadGeometry {
            dev: dev.into(),
            why: "erase size 0 or larger than the device",
        });
    }
    if !g.writeable {
        return Err(FlashError::ReadOnly { dev: dev.into() });
    }
    Ok(g)
}

/// Whether erase block `block` is bad. Only NAND (`nand`) is asked: NOR has
/// no bad blocks and the kernel would only answer 0.
pub fn is_bad(
    sys: &dyn FlashIo,
    dev: &Path,
    nand: bool,
    erasesize: u32,
    block: u64,
) -> Result<bool, FlashError> {
    if !nand {
        return Ok(false);
    }
    let offset = block * u64::from(erasesize);
    sys.mtd_is_bad(dev, offset)
        .map_err(|err| FlashError::BadBlockQuery {
            dev: dev.into(),
            offset,
            err,
        })
}

/// The first of `blocks` erase blocks that is not bad: where OpenWrt's
/// marker lives.
pub fn first_good_block(
    sys: &dyn FlashIo,
    dev: &Path,
    nand: bool,
    erasesize: u32,
    blocks: u64,
) -> Result<u64, FlashError> {
    for b in 0..blocks {
        if !is_bad(sys, dev, nand, erasesize, b)? {
            return Ok(b);
        }
    }
    Err(FlashError::NoGoodBlock { dev: dev.into() })
}

/// Erases blocks `0..blocks` (all of them when `None`) of the MTD device
/// `dev`, skipping bad ones, **last block first**, so that the first good
/// block, which holds OpenWrt's `0xdeadc0de` marker, is erased last: an erase
/// cut short (deadline, power loss) leaves the marker in place and the next
/// boot erases again instead of taking half-erased flash for data.
///
/// `progress(done, total)` is called after each block (`total` counts the
/// blocks to visit, bad ones included). After `deadline` (measured with
/// `sys.now()` from the call) the erase stops between blocks and says how
/// far it got. A block that fails to erase stops everything: NOR reports no
/// bad blocks, and on NAND marking blocks bad is for UBI/JFFS2 or the
/// operator (mtd-utils' flash_erase -N), not a boot program.
pub fn erase(
    sys: &dyn Sys,
    dev: &Path,
    blocks: Option<u64>,
    deadline: Option<Duration>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EraseOutcome, FlashError> {
    let g = geometry(sys, dev)?;
    let es = u64::from(g.erasesize);
    let all = g.size / es;
    let total = blocks.map_or(all, |b| b.min(all));
    let start = sys.now();
    let (mut erased, mut bad) = (0u64, 0u64);
    for (done, block) in (0..total).rev().enumerate() {
        let done = done as u64;
        if let Some(d) = deadline {
            if sys.now().saturating_sub(start) >= d {
                return Ok(EraseOutcome::Stopped {
                    erased,
                    total,
                    remaining_blocks: block + 1,
                });
            }
        }
        if is_bad(sys, dev, g.has_bad_blocks(), g.erasesize, block)? {
            bad += 1;
        } else {
            let offset = block * es;
            sys.mtd_erase(dev, offset, es)
                .map_err(|err| FlashError::Erase {
                    dev: dev.into(),
                    offset,
                    err,
                })?;
            erased += 1;
        }
        progress(done + 1, total);
    }
    Ok(EraseOutcome::Done { erased, bad })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{Call, FakeSys};
    use crate::testutil::TempDir;

    const PROC: &str = "dev:    size   erasesize  name\n\
mtd0: 04000000 00040000 \"fw\"\n\
mtd1: 00400000 00040000 \"rootfs\"\n\
mtd2: 03c00000 00040000 \"rootfs_data\"\n";

    #[test]
    fn proc_mtd_lines() {
        let (m, notes) = parse_proc_mtd(PROC);
        assert!(notes.is_empty());
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[2],
            MtdInfo {
                index: 2,
                name: "rootfs_data".into(),
                size: 0x03c0_0000,
                erasesize: 0x40000,
                writesize: None,
                kind: MtdKind::Unknown,
                read_only: false,
            }
        );
        assert_eq!(m[2].blocks(), 240);
        assert_eq!(m[2].node(), PathBuf::from("/dev/mtd2"));
    }

    #[test]
    fn proc_mtd_names_with_spaces_and_bad_lines() {
        let text = "dev:    size   erasesize  name\n\
mtd0: 00100000 00010000 \"u-boot env\"\n\
mtd1: zz 00010000 \"x\"\n\
mtd2: 00100000 00000000 \"zero erase\"\n\
mtd3 00100000 00010000 \"no colon\"\n\
mtdX: 00100000 00010000 \"bad index\"\n\
mtd4: 00100000 00010000 no-quotes\n\
mtd5: 00100000\n\
\n\
mtd6: 00200000 00020000 \"ok\"\n";
        let (m, notes) = parse_proc_mtd(text);
        assert_eq!(
            m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["u-boot env", "ok"]
        );
        assert_eq!(notes.len(), 6, "{notes:?}");
        assert!(notes[0].contains("mtd1: zz"), "{notes:?}");
        assert_eq!(parse_proc_mtd("").0, vec![]);
    }

    fn sysfs(dir: &TempDir, n: &str, attrs: &[(&str, &str)]) {
        for (k, v) in attrs {
            dir.write(&format!("sys/class/mtd/{n}/{k}"), format!("{v}\n"));
        }
    }

    const NOR_DATA: [(&str, &str); 7] = [
        ("name", "rootfs_data"),
        ("size", "67108864"),
        ("erasesize", "262144"),
        ("writesize", "1"),
        ("type", "nor"),
        ("flags", "0xc00"),
        ("oobsize", "0"),
    ];

    #[test]
    fn sysfs_attributes() {
        let dir = TempDir::new("mtd-sysfs");
        sysfs(
            &dir,
            "mtd0",
            &[
                ("name", "fw"),
                ("size", "67108864"),
                ("erasesize", "262144"),
                ("writesize", "1"),
                ("type", "nor"),
                ("flags", "0x800"),
            ],
        );
        sysfs(&dir, "mtd0ro", &[("name", "fw")]);
        sysfs(&dir, "mtd1", &NOR_DATA);
        sysfs(
            &dir,
            "mtd2",
            &[
                ("name", "ubi"),
                ("size", "134217728"),
                ("erasesize", "131072"),
                ("writesize", "2048"),
                ("type", "mlc-nand"),
                ("flags", "0x400"),
            ],
        );
        sysfs(&dir, "mtd3", &[("name", "broken"), ("size", "lots")]);
        sysfs(&dir, "mtd4", &[("size", "1"), ("erasesize", "1")]);
        dir.write("proc/mtd", PROC); // ignored: sysfs has the devices
        let (m, notes) = read_mtd_devices(&SysRoot::new(dir.path()));
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes
            .iter()
            .any(|n| n.contains("mtd3") && n.contains("size \"lots\"")));
        assert!(notes
            .iter()
            .any(|n| n.contains("mtd4") && n.contains("no name")));
        assert!(m[0].read_only, "fw: MTD_WRITEABLE clear");
        assert_eq!(
            m[1],
            MtdInfo {
                index: 1,
                name: "rootfs_data".into(),
                size: 64 << 20,
                erasesize: 256 << 10,
                writesize: Some(1),
                kind: MtdKind::Nor,
                read_only: false,
            }
        );
        assert_eq!(m[2].kind, MtdKind::MlcNand);
        assert!(m[2].kind.has_bad_blocks());
        assert_eq!(find_by_name(&m, "rootfs_data").map(|m| m.index), Some(1));
        assert!(find_by_name(&m, "nothing").is_none());
    }

    #[test]
    fn proc_mtd_when_sysfs_has_nothing() {
        let dir = TempDir::new("mtd-proc");
        dir.write("proc/mtd", PROC);
        let (m, _) = read_mtd_devices(&SysRoot::new(dir.path()));
        assert_eq!(m.len(), 3);
        // Neither: no MTD at all, no note.
        let empty = TempDir::new("mtd-none");
        assert_eq!(
            read_mtd_devices(&SysRoot::new(empty.path())),
            (vec![], vec![])
        );
    }

    #[test]
    fn every_sysfs_type_word() {
        for (w, k) in [
            ("nor", MtdKind::Nor),
            ("nand", MtdKind::Nand),
            ("mlc-nand", MtdKind::MlcNand),
            ("dataflash", MtdKind::DataFlash),
            ("ubi", MtdKind::Ubi),
            ("ram", MtdKind::Ram),
            ("rom", MtdKind::Rom),
            ("absent", MtdKind::Absent),
            ("unknown", MtdKind::Unknown),
            ("", MtdKind::Unknown),
        ] {
            assert_eq!(MtdKind::parse(&format!("{w}\n")), k, "{w}");
        }
    }

    #[test]
    fn first_name_wins_like_the_kernel() {
        let (mut m, _) = parse_proc_mtd(PROC);
        let mut dup = m[0].clone();
        dup.index = 7;
        dup.name = "rootfs_data".into();
        m.insert(0, dup);
        assert_eq!(find_by_name(&m, "rootfs_data").map(|m| m.index), Some(2));
    }

    #[test]
    fn progress_every_ten_percent() {
        let mut p = ProgressSteps::default();
        let printed: Vec<u8> = (1..=240).filter_map(|d| p.next(d, 240)).collect();
        assert_eq!(printed, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        let mut p = ProgressSteps::default();
        assert_eq!(
            (1..=3).filter_map(|d| p.next(d, 3)).collect::<Vec<_>>(),
            [30, 60, 100]
        );
        assert_eq!(percent(0, 0), 100);
    }

    const DEV: &str = "/dev/mtd2";

    fn nor(blocks: u64) -> MtdGeometry {
        MtdGeometry {
            kind: 3,
            writeable: true,
            size: blocks * 0x40000,
            erasesize: 0x40000,
            writesize: 1,
        }
    }

    fn fake_with(g: MtdGeometry) -> FakeSys {
        let sys = FakeSys::default();
        sys.mtd_geometry.borrow_mut().push((DEV.into(), g));
        sys
    }

    fn erases(sys: &FakeSys) -> Vec<u64> {
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::MtdErase { offset, len, .. } => {
                    assert_eq!(len, 0x40000);
                    Some(offset / 0x40000)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn erase_nor_last_block_first_without_bad_block_queries() {
        let sys = fake_with(nor(4));
        let mut seen = Vec::new();
        let out = erase(&sys, Path::new(DEV), None, None, &mut |d, t| {
            seen.push((d, t))
        })
        .unwrap();
        assert_eq!(out, EraseOutcome::Done { erased: 4, bad: 0 });
        assert_eq!(erases(&sys), [3, 2, 1, 0]);
        assert_eq!(seen, [(1, 4), (2, 4), (3, 4), (4, 4)]);
        assert!(!sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::MtdIsBad { .. })));
    }

    #[test]
    fn erase_nand_skips_bad_blocks() {
        let g = MtdGeometry { kind: 4, ..nor(5) };
        let sys = fake_with(g);
        sys.bad_blocks.borrow_mut().push((DEV.into(), 0x40000));
        sys.bad_blocks.borrow_mut().push((DEV.into(), 4 * 0x40000));
        let out = erase(&sys, Path::new(DEV), None, None, &mut |_, _| {}).unwrap();
        assert_eq!(out, EraseOutcome::Done { erased: 3, bad: 2 });
        assert_eq!(erases(&sys), [3, 2, 0]);
    }

    #[test]
    fn erase_stops_at_the_deadline_and_resumes() {
        let sys = fake_with(nor(10));
        // The fake clock advances 1 ms per now(): the start read, then one per block.
        let out = erase(
            &sys,
            Path::new(DEV),
            None,
            Some(Duration::from_millis(4)),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            out,
            EraseOutcome::Stopped {
                erased: 3,
                total: 10,
                remaining_blocks: 7
            }
        );
        assert_eq!(erases(&sys), [9, 8, 7], "block 0 (the marker) is left");
        let sys2 = fake_with(nor(10));
        let out = erase(&sys2, Path::new(DEV), Some(7), None, &mut |_, _| {}).unwrap();
        assert_eq!(out, EraseOutcome::Done { erased: 7, bad: 0 });
        assert_eq!(erases(&sys2), [6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn erase_failure_names_the_block_and_keeps_the_marker() {
        let sys = fake_with(nor(4));
        sys.fail_when(5, |c| {
            matches!(
                c,
                Call::MtdErase {
                    offset: 0x80000,
                    ..
                }
            )
        });
        let err = erase(&sys, Path::new(DEV), None, None, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(&err, FlashError::Erase { offset: 0x80000, err, .. } if err.raw_os_error() == Some(5))
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot erase /dev/mtd2 at 0x80000: {}",
                std::io::Error::from_raw_os_error(5)
            )
        );
        assert_eq!(erases(&sys), [3, 2], "stopped before block 0");
    }

    #[test]
    fn erase_refuses_odd_geometry_and_read_only_flash() {
        let sys = fake_with(MtdGeometry {
            erasesize: 0,
            ..nor(1)
        });
        assert!(matches!(
            erase(&sys, Path::new(DEV), None, None, &mut |_, _| {}),
            Err(FlashError::BadGeometry { .. })
        ));
        let sys = fake_with(MtdGeometry {
            writeable: false,
            ..nor(4)
        });
        assert!(matches!(
            erase(&sys, Path::new(DEV), None, None, &mut |_, _| {}),
            Err(FlashError::ReadOnly { .. })
        ));
        let sys = FakeSys::default(); // no such device
        assert!(matches!(
            erase(&sys, Path::new(DEV), None, None, &mut |_, _| {}),
            Err(FlashError::Geometry { .. })
        ));
    }

    #[test]
    fn first_good_block_on_nand() {
        let g = MtdGeometry { kind: 8, ..nor(3) };
        let sys = fake_with(g);
        sys.bad_blocks.borrow_mut().push((DEV.into(), 0));
        let first = |sys: &FakeSys| first_good_block(sys, Path::new(DEV), true, g.erasesize, 3);
        assert_eq!(first(&sys).unwrap(), 1);
        for b in 1..3 {
            sys.bad_blocks.borrow_mut().push((DEV.into(), b * 0x40000));
        }
        assert!(matches!(first(&sys), Err(FlashError::NoGoodBlock { .. })));
    }
}
