//! `overlay-wear-monitor` (or `overlay-init wear-monitor`): the run-time
//! half of the wear watch, started by the real init (inittab `respawn`).
//!
//! Every `sample` interval (overlay.wear=sample:D) it reads the block
//! devices' write counters and each process's /proc/PID/io, works out the
//! write rate, and, when that rate would wear the flash out before the
//! board's target lifetime (overlay.wear=pe_cycles:N,target_years:Y), says so
//! on the console and in the kernel log, naming the processes that wrote
//! most. It says it again when the verdict changes, and at most once an hour
//! while it holds. It keeps the wear log going (one record per log_interval)
//! while the boot used the flash read-write. It writes nothing else.

use super::config::WearConfig;
use super::log as wlog;
use super::monitor::{self, Budget, Monitor};
use super::sources::{self, ReadOptions};
use crate::paths::{self, SysRoot};
use crate::state::BootState;
use std::path::Path;
use std::time::{Duration, Instant};

const HELP: &str = "usage: overlay-wear-monitor [--interval DURATION] [--samples N] [--top N]

Watches the flash write rate against the board's rated endurance and target
lifetime, and names the processes that write most when the rate would wear
the flash out too early (console and kernel log). Settings come from the
boot (overlay.wear= on the command line or in the board file); --interval
overrides the sample interval (e.g. 30s, 10m), --samples stops after N
samples (default: run for ever), --top how many writers to name (3).
";

/// Between two warnings while the verdict holds.
const REPEAT: Duration = Duration::from_secs(3600);

pub fn main(args: &[String]) -> i32 {
    let mut interval = None;
    let mut samples: Option<u64> = None;
    let mut top = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let bad = |m: &str| {
            eprintln!("overlay-wear-monitor: {m}\n\n{HELP}");
            2
        };
        match a.as_str() {
            "--interval" => match it.next().map(|v| super::config::parse_duration(v)) {
                Some(Ok(d)) if !d.is_zero() => interval = Some(d),
                _ => return bad("--interval needs a duration such as 30s or 10m"),
            },
            "--samples" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => samples = Some(n),
                None => return bad("--samples needs a number"),
            },
            "--top" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => top = n,
                None => return bad("--top needs a number"),
            },
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            other => return bad(&format!("unknown argument {other}")),
        }
    }
    let root = SysRoot::host();
    let state = std::fs::read_to_string(paths::STATE_FILE)
        .ok()
        .and_then(|t| BootState::parse(&t).ok());
    let mut cfg = WearConfig::default();
    if let Some(w) = state.as_ref().and_then(|s| s.wear_config.as_deref()) {
        if let Err(e) = cfg.apply_list(Some(w)) {
            crate::warn!("wear settings of this boot unusable ({e}); using defaults");
        }
    }
    if !cfg.enabled {
        crate::info!("wear monitoring is off (overlay.wear=off)");
        return 0;
    }
    let flash_rw = state.as_ref().is_some_and(BootState::persistent);
    let data_dev = state.as_ref().and_then(BootState::data_dev);
    let interval = interval.unwrap_or(cfg.sample);
    crate::info!(
        "watching flash writes every {} (target lifetime {} years)",
        super::config::format_duration(interval),
        cfg.target_years
    );
    let start = Instant::now();
    let mut mon = Monitor::default();
    let mut last_warn: Option<Instant> = None;
    let mut n = 0u64;
    loop {
        let readings = sources::read_sources(&root, &cfg, &ReadOptions { scan_ec: false });
        let a = super::assess(&readings, &cfg, data_dev);
        let data = Path::new(paths::OVERLAY);
        let log_state = wlog::read_log(data).ok();
        let now = super::wall_clock_secs();
        let since = log_state
            .as_ref()
            .and_then(|l| l.records().iter().map(|r| r.since).min())
            .unwrap_or(now);
        let written = readings
            .iter()
            .find(|r| {
                r.kind == sources::Kind::Fs
                    && data_dev.is_none_or(|d| r.id.ends_with(&format!(":{d}")))
            })
            .and_then(|r| r.figure("lifetime_write_kbytes"))
            .map_or(0, |kb| kb.saturating_mul(1024));
        let endurance_left = a.endurance.bytes.map(|e| e.saturating_sub(written));
        let target_left = monitor::remaining_target_secs(since, now, cfg.target_years);
        let report = mon.sample(
            start.elapsed().as_secs(),
            monitor::read_processes(&root),
            monitor::read_block_samples(&root),
            endurance_left,
            target_left,
            top,
        );
        if let Some(r) = report {
            let exhausting = matches!(r.budget, Some(Budget::Exhausts { .. }));
            let due = last_warn.is_none_or(|t| t.elapsed() >= REPEAT);
            if r.changed || (exhausting && due) {
                let budget = endurance_left.map(|e| monitor::budget_rate(e, target_left));
                log_report(&r, exhausting, budget);
                if exhausting {
                    last_warn = Some(Instant::now());
                }
            } else {
                // As `{:?}` prints it; Option<u64>'s Debug is ~400 B of code.
                match r.rate {
                    Some(v) => crate::debug!("write rate Some({v}) B/day"),
                    None => crate::debug!("write rate None B/day"),
                }
            }
        }
        if flash_rw {
            keep_log(
                &root,
                &cfg,
                &readings,
                a.level,
                data_dev,
                log_state.as_ref(),
                now,
            );
        }
        n = n.saturating_add(1);
        if samples.is_some_and(|s| n >= s.saturating_add(1)) {
            return 0;
        }
        std::thread::sleep(interval);
    }
}

fn log_report(r: &monitor::Report, exhausting: bool, budget: Option<u64>) {
    let rate = r.rate.map_or("unknown".into(), |b| {
        format!("{}/day", super::display::human_bytes(b))
    });
    let top: Vec<String> = r
        .top
        .iter()
        .map(|d| {
            format!(
                "{} (pid {}) {}",
                d.comm,
                d.pid,
                super::display::human_bytes(d.bytes)
            )
        })
        .collect();
    let top = if top.is_empty() {
        "no process wrote".to_string()
    } else {
        top.join(", ")
    };
    match r.budget {
        Some(Budget::Exhausts {
            days_left,
            target_days_left,
        }) if exhausting => crate::warn!(
            "flash writes at {rate} wear the flash out in {days_left} days, before the target lifetime ({target_days_left} days left; the budget is {}/day); top writers: {top}",
            super::display::human_bytes(budget.unwrap_or(0))
        ),
        _ => crate::info!("flash write rate {rate} is within the flash's budget again; top writers: {top}"),
    }
}

/// One wear-log record per log_interval while the flash is in read-write use.
fn keep_log(
    root: &SysRoot,
    cfg: &WearConfig,
    readings: &[sources::SourceReading],
    level: super::Level,
    data_dev: Option<&str>,
    state: Option<&wlog::LogState>,
    now: u64,
) {
    let Some(state) = state else { return };
    if !wlog::should_write(state.newest().map(|r| r.time), now, cfg.log_interval) {
        return;
    }
    let boot_id = super::read_boot_id(root).unwrap_or(0);
    let rec = wlog::WearRecord::from_readings(readings, data_dev, level, now, boot_id);
    match wlog::append(Path::new(paths::OVERLAY), state, &rec) {
        Ok(r) => crate::info!("wear log: record #{} written", r.seq),
        Err(e) => crate::warn!("wear log: {e}"),
    }
}
