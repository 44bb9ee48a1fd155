//! Write rate and remaining life, from the wear log.
//!
//! The rate is taken between the oldest and the newest record of the
//! longest consistent run that ends at the newest record: walking back from
//! the newest, the run stops at a record whose time is later than its
//! successor's (the clock went back: RTC reset, a board without RTC) or
//! whose counters are higher (the filesystem was re-created, so its
//! lifetime counter restarted). Counters never run backwards within a run,
//! so no rate is negative. A run shorter than [`MIN_SPAN_SECS`] says "not
//! enough history" rather than extrapolating an hour to years.
//!
//! Two wear measures, whichever the log has:
//! - bytes written (ext4/f2fs lifetime counter) against the rated endurance
//!   in bytes (capacity × P/E cycles; ignores write amplification inside
//!   the flash, so it is optimistic on an FTL device);
//! - the mean UBI erase count against the rated P/E cycles (this one is the
//!   wear itself).
//!
//! When both are known the faster one is used: life left is the shorter.

use super::log::WearRecord;

/// Shortest history a rate is computed from.
pub const MIN_SPAN_SECS: u64 = 86_400;
const DAY: u64 = 86_400;

/// The board's rated endurance, as far as it is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endurance {
    /// capacity × P/E cycles.
    pub bytes: Option<u64>,
    pub pe_cycles: Option<u32>,
}

/// Life left at the current rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LifeLeft {
    Days(u64),
    /// Nothing was worn over the window: no end in sight at this rate.
    NoWear,
    /// The rated endurance is unknown (set `pe_cycles` in `overlay.wear=`).
    Unknown,
}

/// Why the run that the rate is computed over starts where it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The run reaches the oldest record of the log.
    None,
    ClockBack,
    CounterRestart,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    /// seq of the first and last record used.
    pub from_seq: u64,
    pub to_seq: u64,
    pub span_secs: u64,
    pub cut: Cut,
    pub bytes_per_day: Option<u64>,
    /// Mean erase-count increase per day, × 100.
    pub mean_ec_per_day_x100: Option<u64>,
    /// Share of the rated endurance used per day, in percent.
    pub pct_per_day: Option<f64>,
    /// Share used now, in percent (the caller's figure if it had one).
    pub used_pct: Option<f64>,
    /// Rated endurance left, in bytes.
    pub remaining_bytes: Option<u64>,
    pub life_left: LifeLeft,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Fewer than two records in the run, or a span under [`MIN_SPAN_SECS`].
    NotEnoughHistory {
        records: usize,
        span_secs: u64,
    },
    Projected(Projection),
}

fn rises(old: Option<u64>, new: Option<u64>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o <= n,
        _ => true,
    }
}

/// The start index of the consistent run ending at the last record.
fn run_start(records: &[WearRecord]) -> (usize, Cut) {
    let mut start = records.len().saturating_sub(1);
    while let (Some(prev), Some(cur)) = (
        start.checked_sub(1).and_then(|i| records.get(i)),
        records.get(start),
    ) {
        if prev.time > cur.time {
            return (start, Cut::ClockBack);
        }
        if !rises(prev.written_bytes, cur.written_bytes)
            || !rises(
                prev.mean_ec_x100.map(u64::from),
                cur.mean_ec_x100.map(u64::from),
            )
        {
            return (start, Cut::CounterRestart);
        }
        start -= 1;
    }
    (start, Cut::None)
}

/// `delta` per `span` seconds → per day.
fn per_day(delta: u64, span: u64) -> u64 {
    super::mul_div(delta, DAY, span).unwrap_or(u64::MAX)
}

/// The rate and remaining life from `records` (ordered by seq, as
/// `LogContents::records` are). `used_pct_now`: the device's life used as
/// the sources report it (e.g. eMMC), preferred over what the log implies.
pub fn project(
    records: &[WearRecord],
    endurance: &Endurance,
    used_pct_now: Option<u32>,
) -> Outcome {
    let (start, cut) = run_start(records);
    let run = records.get(start..).unwrap_or(&[]);
    let (Some(old), Some(new)) = (run.first(), run.last()) else {
        return Outcome::NotEnoughHistory {
            records: 0,
            span_secs: 0,
        };
    };
    let span = new.time.saturating_sub(old.time);
    if run.len() < 2 || span < MIN_SPAN_SECS {
        return Outcome::NotEnoughHistory {
            records: run.len(),
            span_secs: span,
        };
    }
    let bytes_per_day = match (old.written_bytes, new.written_bytes) {
        (Some(o), Some(n)) => Some(per_day(n.saturating_sub(o), span)),
        _ => None,
    };
    let ec_per_day = match (old.mean_ec_x100, new.mean_ec_x100) {
        (Some(o), Some(n)) => Some(per_day(u64::from(n.saturating_sub(o)), span)),
        _ => None,
    };
    let end_bytes = endurance.bytes.filter(|&b| b > 0);
    let pe = endurance.pe_cycles.filter(|&p| p > 0).map(f64::from);

    let by_bytes = bytes_per_day
        .zip(end_bytes)
        .map(|(r, e)| r as f64 * 100.0 / e as f64);
    let by_ec = ec_per_day.zip(pe).map(|(r, pe)| r as f64 / pe);
    let pct_per_day = match (by_bytes, by_ec) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let used_pct = used_pct_now.map(f64::from).or_else(|| {
        let ec = new.mean_ec_x100.zip(pe).map(|(m, pe)| f64::from(m) / pe);
        let bytes = new
            .written_bytes
            .zip(end_bytes)
            .map(|(w, e)| w as f64 * 100.0 / e as f64);
        match (ec, bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    });
    let left_pct = used_pct.map(|u| (100.0 - u).max(0.0));
    let remaining_bytes = end_bytes
        .zip(left_pct)
        .map(|(e, l)| (e as f64 * l / 100.0) as u64);
    let life_left = match (pct_per_day, left_pct) {
        (Some(r), _) if r <= 0.0 => LifeLeft::NoWear,
        (Some(r), Some(l)) => LifeLeft::Days((l / r) as u64),
        (Some(r), None) => LifeLeft::Days((100.0 / r) as u64),
        (None, _) => LifeLeft::Unknown,
    };
    Outcome::Projected(Projection {
        from_seq: old.seq,
        to_seq: new.seq,
        span_secs: span,
        cut,
        bytes_per_day,
        mean_ec_per_day_x100: ec_per_day,
        pct_per_day,
        used_pct,
        remaining_bytes,
        life_left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wear::Level;

    const T0: u64 = 1_750_000_000;
    const GIB: u64 = 1 << 30;

    fn r(seq: u64, time: u64, written: Option<u64>, mean_x100: Option<u32>) -> WearRecord {
        WearRecord {
            seq,
            time,
            since: T0,
            boot_id: seq,
            level: Level::Ok,
            written_bytes: written,
            max_ec: None,
            mean_ec_x100: mean_x100,
            bad_blocks: None,
            emmc_life: None,
            pre_eol: None,
        }
    }

    fn projected(o: Outcome) -> Projection {
        match o {
            Outcome::Projected(p) => p,
            other => panic!("{other:?}"),
        }
    }

    /// 128 GiB of eMMC rated for 50 cycles: 6400 GiB of endurance.
    fn emmc() -> Endurance {
        Endurance {
            bytes: Some(128 * GIB * 50),
            pe_cycles: Some(50),
        }
    }

    #[test]
    fn bytes_rate_and_life_left() {
        let recs = [
            r(1, T0, Some(10 * GIB), None),
            r(2, T0 + DAY, Some(11 * GIB), None),
            r(3, T0 + 10 * DAY, Some(20 * GIB), None),
        ];
        let p = projected(project(&recs, &emmc(), None));
        assert_eq!((p.from_seq, p.to_seq, p.cut), (1, 3, Cut::None));
        assert_eq!(p.span_secs, 10 * DAY);
        assert_eq!(p.bytes_per_day, Some(GIB));
        // 1 GiB of 6400 GiB a day: 0.015625 %/day; 20 GiB used: 0.3125 %.
        assert!((p.pct_per_day.unwrap() - 0.015625).abs() < 1e-9);
        assert!((p.used_pct.unwrap() - 0.3125).abs() < 1e-9);
        assert_eq!(p.life_left, LifeLeft::Days(6380));
        assert_eq!(p.remaining_bytes, Some(6380 * GIB));
    }

    #[test]
    fn the_sources_figure_wins_for_life_used() {
        let recs = [
            r(1, T0, Some(0), None),
            r(2, T0 + 2 * DAY, Some(2 * GIB), None),
        ];
        let p = projected(project(&recs, &emmc(), Some(90)));
        assert_eq!(p.used_pct, Some(90.0));
        // 10 % left at 0.015625 %/day.
        assert_eq!(p.life_left, LifeLeft::Days(640));
        let worn = projected(project(&recs, &emmc(), Some(130)));
        assert_eq!(worn.life_left, LifeLeft::Days(0));
        assert_eq!(worn.remaining_bytes, Some(0));
    }

    #[test]
    fn erase_counts_against_pe_cycles() {
        // Mean EC 1000.00 → 1010.00 in 10 days: 1 cycle a day of 3000.
        let recs = [
            r(1, T0, None, Some(100_000)),
            r(2, T0 + 10 * DAY, None, Some(101_000)),
        ];
        let e = Endurance {
            bytes: None,
            pe_cycles: Some(3000),
        };
        let p = projected(project(&recs, &e, None));
        assert_eq!(p.mean_ec_per_day_x100, Some(100));
        assert_eq!(p.bytes_per_day, None);
        let used = p.used_pct.unwrap();
        assert!((used - 1010.0 / 30.0).abs() < 1e-9, "{used}");
        assert_eq!(p.life_left, LifeLeft::Days(1990));
    }

    #[test]
    fn the_faster_measure_wins() {
        let recs = [
            r(1, T0, Some(0), Some(0)),
            r(2, T0 + DAY, Some(GIB), Some(1)), // 0.01 cycles/day of 50: 0.02 %/day
        ];
        let p = projected(project(&recs, &emmc(), Some(0)));
        // bytes: 0.015625 %/day; EC: 0.02 %/day.
        assert!((p.pct_per_day.unwrap() - 0.02).abs() < 1e-9);
        assert_eq!(p.life_left, LifeLeft::Days(5000));
    }

    #[test]
    fn no_writes_means_no_wear_and_no_endurance_means_unknown() {
        let recs = [r(1, T0, Some(5), None), r(2, T0 + 3 * DAY, Some(5), None)];
        let p = projected(project(&recs, &emmc(), None));
        assert_eq!(p.bytes_per_day, Some(0));
        assert_eq!(p.life_left, LifeLeft::NoWear);
        let p = projected(project(&recs, &Endurance::default(), None));
        assert_eq!(p.life_left, LifeLeft::Unknown);
        assert_eq!(p.pct_per_day, None);
        assert_eq!(p.used_pct, None);
    }

    #[test]
    fn not_enough_history() {
        assert_eq!(
            project(&[], &emmc(), None),
            Outcome::NotEnoughHistory {
                records: 0,
                span_secs: 0
            }
        );
        assert_eq!(
            project(&[r(1, T0, Some(1), None)], &emmc(), None),
            Outcome::NotEnoughHistory {
                records: 1,
                span_secs: 0
            }
        );
        let short = [r(1, T0, Some(1), None), r(2, T0 + 3600, Some(GIB), None)];
        assert_eq!(
            project(&short, &emmc(), None),
            Outcome::NotEnoughHistory {
                records: 2,
                span_secs: 3600
            }
        );
        let same_time = [r(1, T0, Some(1), None), r(2, T0, Some(2), None)];
        assert!(matches!(
            project(&same_time, &emmc(), None),
            Outcome::NotEnoughHistory { records: 2, .. }
        ));
    }

    #[test]
    fn a_clock_that_went_back_starts_a_new_run() {
        let recs = [
            r(1, T0, Some(0), None),
            r(2, T0 + 5 * DAY, Some(5 * GIB), None),
            // RTC reset: a year earlier than record 2.
            r(3, T0 - 365 * DAY, Some(6 * GIB), None),
            r(4, T0 - 363 * DAY, Some(8 * GIB), None),
        ];
        let p = projected(project(&recs, &emmc(), None));
        assert_eq!((p.from_seq, p.to_seq, p.cut), (3, 4, Cut::ClockBack));
        assert_eq!(p.bytes_per_day, Some(GIB));
        // Only one record after the jump: not enough.
        assert!(matches!(
            project(&recs[..3], &emmc(), None),
            Outcome::NotEnoughHistory { records: 1, .. }
        ));
    }

    #[test]
    fn a_restarted_counter_starts_a_new_run() {
        let recs = [
            r(1, T0, Some(50 * GIB), None),
            r(2, T0 + DAY, Some(GIB), None), // mkfs: the counter restarted
            r(3, T0 + 3 * DAY, Some(3 * GIB), None),
        ];
        let p = projected(project(&recs, &emmc(), None));
        assert_eq!((p.from_seq, p.cut), (2, Cut::CounterRestart));
        assert_eq!(p.bytes_per_day, Some(GIB));
    }

    #[test]
    fn huge_figures_do_not_overflow() {
        let recs = [
            r(1, T0, Some(0), Some(0)),
            r(2, T0 + DAY, Some(u64::MAX), Some(u32::MAX)),
        ];
        let p = projected(project(
            &recs,
            &Endurance {
                bytes: Some(1),
                pe_cycles: Some(1),
            },
            None,
        ));
        assert_eq!(p.bytes_per_day, Some(u64::MAX));
        assert_eq!(p.life_left, LifeLeft::Days(0));
    }
}
