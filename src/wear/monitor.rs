//! Run-time monitor, pure part: who writes, how fast, and whether the flash
//! lasts the board's target lifetime at that rate.
//!
//! Sources:
//! - `/proc/PID/io` (`proc(5)`): `write_bytes` is what the process caused to
//!   be sent to storage, counted when it dirties page-cache pages (so a
//!   flusher thread's writeback is charged to the process that dirtied the
//!   data); `cancelled_write_bytes` is what it dirtied and then truncated
//!   before writeback, which never reached the flash and is subtracted.
//!   Readable by the process's owner (or with ptrace access): the monitor
//!   runs as root.
//! - `/proc/PID/comm`: the name; `/proc/PID/stat` field 22 (`starttime`,
//!   clock ticks after boot) tells a reused PID from the process that had it.
//! - `/sys/block/DEV/stat`: sectors written since boot, per disk.
//!
//! Block counters do not see raw NAND: UBIFS writes go through UBI to MTD,
//! not the block layer. Without any block device the system rate is the
//! sum of the per-process deltas (it misses processes that exited between
//! two samples; the wear log's erase counts are the long-term measure there).
//!
//! The kernel rate-limits `/dev/kmsg` writers (`printk.devkmsg`), and a
//! monitor that logs every sample would hide the boot's own lines, so
//! [`Monitor::sample`] says when the verdict *changed*: log then only.

use super::sources::parse_block_stat;
use super::{PROC, SYS_BLOCK};
use crate::paths::SysRoot;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY + DAY / 4;

/// The write counters of `/proc/PID/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcIo {
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}

impl ProcIo {
    /// Bytes that reach storage: written minus cancelled.
    pub fn net(&self) -> u64 {
        self.write_bytes.saturating_sub(self.cancelled_write_bytes)
    }
}

/// `/proc/PID/io`: `name: value` lines (`rchar`, `wchar`, `syscr`, `syscw`,
/// `read_bytes`, `write_bytes`, `cancelled_write_bytes`). `write_bytes` is
/// required; a kernel without CONFIG_TASK_IO_ACCOUNTING has no such file.
pub fn parse_proc_io(text: &str) -> Result<ProcIo, String> {
    let mut io = ProcIo::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let num = || {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{k}: {:?} is not a number", v.trim()))
        };
        match k.trim() {
            "write_bytes" => {
                io.write_bytes = num()?;
                seen = true;
            }
            "cancelled_write_bytes" => io.cancelled_write_bytes = num()?,
            _ => {}
        }
    }
    if !seen {
        return Err("no write_bytes line".into());
    }
    Ok(io)
}

/// `starttime` from `/proc/PID/stat`: `PID (COMM) STATE PPID ...`, field 22.
/// COMM may hold spaces and parentheses, so fields are counted after the
/// last `)`; the first one there is field 3.
pub fn parse_stat_starttime(text: &str) -> Result<u64, String> {
    let (_, rest) = text
        .rsplit_once(')')
        .ok_or_else(|| "no (comm) in stat".to_string())?;
    let f = rest
        .split_whitespace()
        .nth(22 - 3)
        .ok_or_else(|| "fewer than 22 fields".to_string())?;
    f.parse()
        .map_err(|_| format!("starttime {f:?} is not a number"))
}

/// One process at one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcSample {
    pub pid: u32,
    pub comm: String,
    /// Clock ticks after boot: with the PID, identifies the process.
    pub start_time: u64,
    /// Net bytes written to storage so far.
    pub written: u64,
}

/// Reads every process. Processes that exit while being read, and files
/// that cannot be read (no io accounting, a kernel thread being torn down),
/// are skipped: a monitor sample is best effort.
pub fn read_processes(root: &SysRoot) -> Vec<ProcSample> {
    let proc = root.path(PROC);
    let Ok(names) = crate::fsio::dir_names(&proc) else {
        return Vec::new();
    };
    let mut v: Vec<ProcSample> = names
        .iter()
        .filter_map(|n| n.to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let dir = proc.join(pid.to_string());
            let io = parse_proc_io(&std::fs::read_to_string(dir.join("io")).ok()?).ok()?;
            let start_time =
                parse_stat_starttime(&std::fs::read_to_string(dir.join("stat")).ok()?).ok()?;
            let comm = std::fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim_end_matches('\n').to_string())
                .unwrap_or_default();
            Some(ProcSample {
                pid,
                comm,
                start_time,
                written: io.net(),
            })
        })
        .collect();
    // One /proc entry per PID: unique, so unstable sorts the same.
    v.sort_unstable_by_key(|p| p.pid);
    v
}

/// What one process wrote between two samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcDelta {
    pub pid: u32,
    pub comm: String,
    pub bytes: u64,
    /// Not in the previous sample (started since, or its PID was reused):
    /// everything it wrote counts.
    pub new: bool,
}

/// Per-process writes between `prev` and `cur`. A process is the same when
/// PID and start time match; a reused PID is a new process. Processes that
/// exited are absent from `cur`; the kernel adds a reaped child's I/O to its
/// parent's counters, so a loop of short-lived writers (a shell running dd
/// over and over) is named by the loop itself.
///
/// A linear search per process (a sample is a few hundred processes): a
/// HashMap here cost ~3.4 KiB of the binary (SipHash, random keys, the
/// table). Searching from the end keeps what the map kept for a key listed
/// twice: the last one.
pub fn deltas(prev: &[ProcSample], cur: &[ProcSample]) -> Vec<ProcDelta> {
    cur.iter()
        .map(|p| {
            let old = prev
                .iter()
                .rev()
                .find(|q| (q.pid, q.start_time) == (p.pid, p.start_time))
                .map(|q| q.written);
            ProcDelta {
                pid: p.pid,
                comm: p.comm.clone(),
                bytes: p.written.saturating_sub(old.unwrap_or(0)),
                new: old.is_none(),
            }
        })
        .collect()
}

/// The `n` processes that wrote most, most first (ties by PID); only
/// processes that wrote something.
pub fn top_writers(deltas: &[ProcDelta], n: usize) -> Vec<ProcDelta> {
    let mut v: Vec<ProcDelta> = deltas.iter().filter(|d| d.bytes > 0).cloned().collect();
    v.sort_unstable_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
    v.truncate(n);
    v
}

/// Sectors written on one disk since boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSample {
    pub dev: String,
    pub sectors_written: u64,
}

/// The disks of `/sys/block` that can be flash (not loop, RAM, zram,
/// device-mapper or md, whose writes are counted on the device below).
pub fn read_block_samples(root: &SysRoot) -> Vec<BlockSample> {
    let dir = root.path(SYS_BLOCK);
    let Ok(names) = crate::fsio::dir_names(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<BlockSample> = names
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|d| !super::sources::is_virtual_block(d))
        .filter_map(|dev| {
            let t = std::fs::read_to_string(dir.join(&dev).join("stat")).ok()?;
            let sectors_written = parse_block_stat(&t).ok()?;
            Some(BlockSample {
                dev,
                sectors_written,
            })
        })
        .collect();
    // Names from one directory listing: unique, so unstable sorts the same.
    v.sort_unstable_by(|a, b| a.dev.cmp(&b.dev));
    v
}

/// Sectors written between two readings of one counter. The kernel prints
/// it as `unsigned long`, 32 bits on 32-bit ARM, so it wraps at 2^32
/// sectors (2 TiB): a smaller value under 2^32 after one under 2^32 is a
/// wrap. Any other decrease (the device went away and came back) is unknown.
pub fn sectors_delta(prev: u64, cur: u64) -> Option<u64> {
    const WRAP: u64 = 1 << 32;
    if cur >= prev {
        Some(cur - prev)
    } else if prev < WRAP {
        Some(WRAP - prev + cur)
    } else {
        None
    }
}

/// Bytes per day written to all disks between two samples `secs` apart;
/// `None` when no disk is in both, or a counter cannot be followed.
pub fn system_rate(prev: &[BlockSample], cur: &[BlockSample], secs: u64) -> Option<u64> {
    if secs == 0 {
        return None;
    }
    let mut total: u64 = 0;
    let mut any = false;
    for c in cur {
        let Some(p) = prev.iter().find(|p| p.dev == c.dev) else {
            continue;
        };
        total = total.saturating_add(sectors_delta(p.sectors_written, c.sectors_written)?);
        any = true;
    }
    any.then(|| rate_per_day(total.saturating_mul(512), secs))
}

/// `bytes` over `secs` → bytes per day.
pub fn rate_per_day(bytes: u64, secs: u64) -> u64 {
    super::mul_div(bytes, DAY, secs).unwrap_or(u64::MAX)
}

/// Seconds of the target lifetime left for a device in service since
/// `since` (the wear log's first record).
pub fn remaining_target_secs(since: u64, now: u64, target_years: u32) -> u64 {
    let end = since.saturating_add(u64::from(target_years).saturating_mul(YEAR));
    end.saturating_sub(now)
}

/// Whether the flash lasts the target lifetime at a write rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// The endurance lasts; `days_left` at this rate (`None`: nothing written).
    Within { days_left: Option<u64> },
    /// The endurance runs out `days_left` days from now, before the target.
    Exhausts {
        days_left: u64,
        target_days_left: u64,
    },
}

/// `rate` bytes/day against `remaining_endurance_bytes` and the seconds of
/// target lifetime left: exhausts when rate × time left > endurance left.
pub fn budget_verdict(
    rate: u64,
    remaining_endurance_bytes: u64,
    remaining_target_secs: u64,
) -> Budget {
    if rate == 0 {
        return Budget::Within { days_left: None };
    }
    let days_left = remaining_endurance_bytes / rate;
    // rate × time left / DAY; `None`: beyond any u64, so beyond the endurance.
    let needed = super::mul_div(rate, remaining_target_secs, DAY);
    if needed.is_none_or(|n| n > remaining_endurance_bytes) {
        Budget::Exhausts {
            days_left,
            target_days_left: remaining_target_secs / DAY,
        }
    } else {
        Budget::Within {
            days_left: Some(days_left),
        }
    }
}

/// The bytes/day a flash may take to last the target: the budget.
pub fn budget_rate(remaining_endurance_bytes: u64, remaining_target_secs: u64) -> u64 {
    rate_per_day(remaining_endurance_bytes, remaining_target_secs)
}

/// What one monitor sample found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Bytes/day over the last interval.
    pub rate: Option<u64>,
    /// Against the endurance left, when known.
    pub budget: Option<Budget>,
    pub top: Vec<ProcDelta>,
    /// The budget verdict differs from the previous sample's: log it.
    pub changed: bool,
}

/// Sampling state: the previous sample and verdict.
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    prev: Option<(u64, Vec<ProcSample>, Vec<BlockSample>)>,
    exhausting: Option<bool>,
}

impl Monitor {
    /// Takes a sample at `now` (monotonic seconds). The first sample only
    /// sets the baseline (`None`). `endurance_left`: bytes of rated
    /// endurance left, if known; `target_left`: seconds of target lifetime
    /// left. The rate is the block devices' (the processes' sum when there
    /// is no block device).
    pub fn sample(
        &mut self,
        now: u64,
        procs: Vec<ProcSample>,
        blocks: Vec<BlockSample>,
        endurance_left: Option<u64>,
        target_left: u64,
        top_n: usize,
    ) -> Option<Report> {
        let prev = self.prev.replace((now, procs, blocks));
        let (t0, p0, b0) = prev?;
        let (_, p1, b1) = self.prev.as_ref()?;
        let secs = now.saturating_sub(t0);
        let d = deltas(&p0, p1);
        let rate = if b1.is_empty() {
            let sum = d.iter().fold(0u64, |a, x| a.saturating_add(x.bytes));
            (secs > 0).then(|| rate_per_day(sum, secs))
        } else {
            system_rate(&b0, b1, secs)
        };
        let budget = rate
            .zip(endurance_left)
            .map(|(r, e)| budget_verdict(r, e, target_left));
        let exhausting = budget.map(|b| matches!(b, Budget::Exhausts { .. }));
        let changed = exhausting.is_some() && exhausting != self.exhausting;
        if exhausting.is_some() {
            self.exhausting = exhausting;
        }
        Some(Report {
            rate,
            budget,
            top: top_writers(&d, top_n),
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const IO: &str = "rchar: 323934931\nwchar: 323929600\nsyscr: 632687\nsyscw: 632675\nread_bytes: 0\nwrite_bytes: 323932160\ncancelled_write_bytes: 4096\n";
    const STAT: &str = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 1039 0 0 0 2 3 0 0 20 0 1 0 5821 8577024 1047 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0\n";

    #[test]
    fn proc_io_and_stat() {
        let io = parse_proc_io(IO).unwrap();
        assert_eq!(io.write_bytes, 323_932_160);
        assert_eq!(io.net(), 323_928_064);
        assert_eq!(
            parse_proc_io("rchar: 1\n"),
            Err("no write_bytes line".into())
        );
        assert!(parse_proc_io("write_bytes: lots\n").is_err());
        assert_eq!(parse_proc_io("write_bytes: 5\n").map(|i| i.net()), Ok(5));
        let weird = ProcIo {
            write_bytes: 1,
            cancelled_write_bytes: 9,
        };
        assert_eq!(weird.net(), 0);
        assert_eq!(parse_stat_starttime(STAT), Ok(5821));
        assert!(parse_stat_starttime("1 (x) S 1 2\n").is_err());
        assert!(parse_stat_starttime("no parens").is_err());
    }

    fn proc_tree(d: &TempDir, pid: u32, comm: &str, start: u64, written: u64) {
        d.write(&format!("proc/{pid}/comm"), format!("{comm}\n"));
        d.write(
            &format!("proc/{pid}/stat"),
            format!("{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n"),
        );
        d.write(
            &format!("proc/{pid}/io"),
            format!("rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: 0\nwrite_bytes: {written}\ncancelled_write_bytes: 0\n"),
        );
    }

    #[test]
    fn reading_processes_from_a_tree() {
        let d = TempDir::new("wear-proc");
        proc_tree(&d, 1, "init", 1, 4096);
        proc_tree(&d, 812, "dropbear", 900, 0);
        proc_tree(&d, 40, "kworker/0:1", 10, 0);
        d.write("proc/77/comm", "gone\n"); // exited mid-read: no io
        d.write("proc/78/io", "garbage");
        d.write("proc/78/stat", STAT);
        d.write("proc/self/io", IO);
        d.write("proc/meminfo", "MemTotal: 1 kB\n");
        let v = read_processes(&SysRoot::new(d.path()));
        let pids: Vec<u32> = v.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [1, 40, 812]);
        assert_eq!(v[0].comm, "init");
        assert_eq!(v[0].written, 4096);
        assert_eq!(v[1].comm, "kworker/0:1");
        assert!(read_processes(&SysRoot::new(d.path().join("nowhere"))).is_empty());
    }

    fn s(pid: u32, comm: &str, start: u64, written: u64) -> ProcSample {
        ProcSample {
            pid,
            comm: comm.into(),
            start_time: start,
            written,
        }
    }

    #[test]
    fn deltas_follow_processes_not_pids() {
        let prev = [
            s(1, "init", 1, 100),
            s(50, "logd", 20, 1000),
            s(60, "old", 30, 5000),
            s(70, "gone", 40, 9),
        ];
        let cur = [
            s(1, "init", 1, 100),
            s(50, "logd", 20, 6000),
            s(60, "new", 900, 700), // PID reused
            s(80, "fresh", 950, 300),
        ];
        let d = deltas(&prev, &cur);
        let got: Vec<(u32, u64, bool)> = d.iter().map(|x| (x.pid, x.bytes, x.new)).collect();
        assert_eq!(
            got,
            [
                (1, 0, false),
                (50, 5000, false),
                (60, 700, true),
                (80, 300, true)
            ]
        );
        let top = top_writers(&d, 2);
        let names: Vec<&str> = top.iter().map(|t| t.comm.as_str()).collect();
        assert_eq!(names, ["logd", "new"]);
        assert_eq!(
            top_writers(&d, 10).len(),
            3,
            "silent processes are left out"
        );
        // A counter that went down (should not happen) counts as nothing.
        let d = deltas(&[s(5, "x", 1, 10)], &[s(5, "x", 1, 3)]);
        assert_eq!(d[0].bytes, 0);
    }

    #[test]
    fn ties_are_ordered_by_pid() {
        let d = deltas(&[], &[s(9, "b", 1, 10), s(3, "a", 1, 10)]);
        let pids: Vec<u32> = top_writers(&d, 5).iter().map(|t| t.pid).collect();
        assert_eq!(pids, [3, 9]);
    }

    #[test]
    fn block_rates_and_wrap() {
        assert_eq!(sectors_delta(10, 30), Some(20));
        assert_eq!(
            sectors_delta(u32::MAX as u64 - 9, 10),
            Some(20),
            "32-bit wrap"
        );
        assert_eq!(sectors_delta(1 << 40, 5), None);
        let b = |dev: &str, s: u64| BlockSample {
            dev: dev.into(),
            sectors_written: s,
        };
        let prev = [b("mmcblk0", 1000), b("sda", 0)];
        let cur = [
            b("mmcblk0", 1000 + 2 * 1024 * 1024),
            b("sda", 0),
            b("sdb", 77),
        ];
        // 1 GiB in an hour: 24 GiB/day; sdb is new and not counted yet.
        assert_eq!(system_rate(&prev, &cur, 3600), Some(24 << 30));
        assert_eq!(system_rate(&prev, &cur, 0), None);
        assert_eq!(system_rate(&[], &cur, 60), None);
        assert_eq!(
            system_rate(&[b("x", 1 << 40)], &[b("x", 1)], 60),
            None,
            "a counter that cannot be followed"
        );
    }

    #[test]
    fn reading_block_samples() {
        let d = TempDir::new("wear-mon-blk");
        d.write(
            "sys/block/mmcblk0/stat",
            "1 2 3 4 5 6 700 8 9 10 11 12 13 14 15 16 17\n",
        );
        d.write("sys/block/loop0/stat", "1 2 3 4 5 6 7 8 9 10 11\n");
        d.write("sys/block/sda/stat", "broken\n");
        let v = read_block_samples(&SysRoot::new(d.path()));
        assert_eq!(
            v,
            [BlockSample {
                dev: "mmcblk0".into(),
                sectors_written: 700
            }]
        );
    }

    #[test]
    fn budget() {
        const GIB: u64 = 1 << 30;
        // 100 GiB left, 10 GiB/day: 10 days; target 5 days left: fine.
        assert_eq!(
            budget_verdict(10 * GIB, 100 * GIB, 5 * DAY),
            Budget::Within {
                days_left: Some(10)
            }
        );
        assert_eq!(
            budget_verdict(10 * GIB, 100 * GIB, 30 * DAY),
            Budget::Exhausts {
                days_left: 10,
                target_days_left: 30
            }
        );
        assert_eq!(
            budget_verdict(10 * GIB, 100 * GIB, 10 * DAY),
            Budget::Within {
                days_left: Some(10)
            },
            "exactly the target"
        );
        assert_eq!(
            budget_verdict(0, 0, 10 * DAY),
            Budget::Within { days_left: None }
        );
        assert_eq!(
            budget_verdict(1, 0, 10 * DAY),
            Budget::Exhausts {
                days_left: 0,
                target_days_left: 10
            }
        );
        assert!(matches!(
            budget_verdict(u64::MAX, u64::MAX, u64::MAX),
            Budget::Exhausts { .. }
        ));
        assert_eq!(budget_rate(100 * GIB, 10 * DAY), 10 * GIB);
        let t0 = 1_750_000_000;
        assert_eq!(remaining_target_secs(t0, t0, 1), YEAR);
        assert_eq!(remaining_target_secs(t0, t0 + 2 * YEAR, 1), 0);
        assert_eq!(remaining_target_secs(u64::MAX, 0, u32::MAX), u64::MAX);
    }

    #[test]
    fn the_monitor_reports_changes_only() {
        const GIB: u64 = 1 << 30;
        let blk = |s: u64| {
            vec![BlockSample {
                dev: "mmcblk0".into(),
                sectors_written: s,
            }]
        };
        let procs = |w: u64| vec![s(100, "logger", 5, w), s(1, "init", 1, 0)];
        let mut m = Monitor::default();
        assert_eq!(
            m.sample(0, procs(0), blk(0), Some(100 * GIB), 30 * DAY, 3),
            None
        );
        // 1 GiB in 600 s: 144 GiB/day, 100 GiB left, 30 days to go: exhausts.
        let r = m
            .sample(
                600,
                procs(GIB),
                blk(2 * 1024 * 1024),
                Some(100 * GIB),
                30 * DAY,
                3,
            )
            .unwrap();
        assert_eq!(r.rate, Some(144 * GIB));
        assert!(matches!(
            r.budget,
            Some(Budget::Exhausts { days_left: 0, .. })
        ));
        assert!(r.changed);
        assert_eq!(r.top.len(), 1);
        assert_eq!(r.top[0].comm, "logger");
        // Same again: no change to log.
        let r = m
            .sample(
                1200,
                procs(2 * GIB),
                blk(4 * 1024 * 1024),
                Some(100 * GIB),
                30 * DAY,
                3,
            )
            .unwrap();
        assert!(!r.changed);
        // Quiet: back within budget, a change.
        let r = m
            .sample(
                1800,
                procs(2 * GIB),
                blk(4 * 1024 * 1024),
                Some(100 * GIB),
                30 * DAY,
                3,
            )
            .unwrap();
        assert_eq!(r.budget, Some(Budget::Within { days_left: None }));
        assert!(r.changed);
        assert!(r.top.is_empty());
        // Unknown endurance: a rate, no verdict, nothing to announce.
        let r = m
            .sample(
                2400,
                procs(3 * GIB),
                blk(6 * 1024 * 1024),
                None,
                30 * DAY,
                3,
            )
            .unwrap();
        assert_eq!((r.budget, r.changed), (None, false));
    }

    #[test]
    fn without_block_devices_the_processes_give_the_rate() {
        let mut m = Monitor::default();
        m.sample(0, vec![s(7, "ubifs-writer", 1, 0)], vec![], None, DAY, 3);
        let r = m
            .sample(
                3600,
                vec![s(7, "ubifs-writer", 1, 1 << 20)],
                vec![],
                None,
                DAY,
                3,
            )
            .unwrap();
        assert_eq!(r.rate, Some(24 << 20));
    }
}
