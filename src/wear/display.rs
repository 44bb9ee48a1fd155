//! `overlay-status --wear`: the table of sources, and its JSON.
//!
//! ```text
//! flash wear: warn
//! SOURCE            LEVEL     LIFE USED  FIGURES
//! ubi0              ok        38%        max_ec=2000, bad_peb_count=0, ...
//! mmcblk0           warn      80%        life_time_a=0x08 (70-80%), ...
//!   ! eMMC life-time estimate: 80% of its life used (warn at 80%, critical at 95%)
//!   ? /sys/block/mmcblk0/device/pre_eol_info: "x" is not 0xNN
//! projected life:   about 4.1 years at 1.2 GiB/day (0.0667% of rated life a day)
//! ```
//!
//! `!` lines say why a level is above ok, `?` lines are files that could
//! not be read. JSON is written by hand, as `status.rs` does (no serde in a
//! pre-init).

use super::projection::{LifeLeft, Outcome, Projection};
use super::sources::{SourceReading, Value};
use super::Level;
use crate::fixed::fixed;
use crate::json::js;
use std::fmt::Write as _;

/// Everything the wear table shows.
#[derive(Clone, Copy, Debug)]
pub struct WearView<'a> {
    pub readings: &'a [SourceReading],
    /// The device level (the worst source).
    pub level: Level,
    /// From the wear log; `None` when there is no log to read.
    pub projection: Option<&'a Outcome>,
    /// Lines shown under the table: the boot's decision, a corrupt log.
    pub remarks: &'a [String],
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{} {name}", fixed(v, 1))
    }
}

/// Days as a person reads them: `41 days`, `about 3.2 years`.
pub fn human_days(d: u64) -> String {
    if d >= 730 {
        format!("about {} years", fixed(d as f64 / 365.25, 1))
    } else if d == 1 {
        "1 day".into()
    } else {
        format!("{d} days")
    }
}

/// The projection in one line.
pub fn projection_text(o: &Outcome) -> String {
    match o {
        Outcome::NotEnoughHistory { records, span_secs } => format!(
            "not enough history ({records} record(s) over {} h; needs a day)",
            fixed(*span_secs as f64 / 3600.0, 1)
        ),
        Outcome::Projected(p) => {
            let rate = rate_text(p);
            match p.life_left {
                LifeLeft::Days(d) => format!("{} at {rate}", human_days(d)),
                LifeLeft::NoWear => format!("no wear at the current rate ({rate})"),
                LifeLeft::Unknown => {
                    format!("unknown: rated endurance not set (overlay.wear=pe_cycles:N); {rate}")
                }
            }
        }
    }
}

fn rate_text(p: &Projection) -> String {
    let mut parts = Vec::new();
    if let Some(b) = p.bytes_per_day {
        parts.push(format!("{}/day", human_bytes(b)));
    }
    if let Some(e) = p.mean_ec_per_day_x100 {
        parts.push(format!("{}.{:02} erase cycles/day", e / 100, e % 100));
    }
    if let Some(pct) = p.pct_per_day {
        parts.push(format!("{}% of rated life a day", fixed(pct, 4)));
    }
    if parts.is_empty() {
        "no rate".into()
    } else {
        parts.join(", ")
    }
}

fn figures_text(r: &SourceReading) -> String {
    r.figures
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table, one row per source.
pub fn render_text(v: &WearView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "flash wear: {}", v.level);
    if v.readings.is_empty() {
        let _ = writeln!(
            s,
            "no wear source on this device (no UBI, MTD, eMMC, ext4/f2fs or disk counters)"
        );
    } else {
        let _ = writeln!(
            s,
            "{:<18}{:<10}{:<11}FIGURES",
            "SOURCE", "LEVEL", "LIFE USED"
        );
    }
    for r in v.readings {
        let life = r.life_used_pct.map_or("-".to_string(), |p| format!("{p}%"));
        let _ = writeln!(
            s,
            "{:<18}{:<10}{:<11}{}",
            r.id,
            r.level.as_str(),
            life,
            figures_text(r)
        );
        for why in &r.reasons {
            let _ = writeln!(s, "  ! {why}");
        }
        for note in &r.notes {
            let _ = writeln!(s, "  ? {note}");
        }
    }
    if let Some(o) = v.projection {
        let _ = writeln!(s, "projected life:   {}", projection_text(o));
    }
    for line in v.remarks {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// A JSON number, or `null` for what JSON cannot hold.
fn jf(x: f64) -> String {
    if x.is_finite() {
        fixed(x, 6)
    } else {
        "null".into()
    }
}

fn jopt<T: std::fmt::Display>(x: Option<T>) -> String {
    x.map_or("null".to_string(), |v| v.to_string())
}

fn projection_json(o: &Outcome) -> String {
    match o {
        Outcome::NotEnoughHistory { records, span_secs } => format!(
            "{{\"status\":\"not_enough_history\",\"records\":{records},\"span_secs\":{span_secs}}}"
        ),
        Outcome::Projected(p) => {
            let (life, days) = match p.life_left {
                LifeLeft::Days(d) => ("days", Some(d)),
                LifeLeft::NoWear => ("no_wear", None),
                LifeLeft::Unknown => ("unknown", None),
            };
            format!(
                "{{\"status\":\"projected\",\"from_seq\":{},\"to_seq\":{},\"span_secs\":{},\"bytes_per_day\":{},\"mean_ec_per_day\":{},\"pct_per_day\":{},\"used_pct\":{},\"remaining_bytes\":{},\"life_left\":{},\"days_left\":{}}}",
                p.from_seq,
                p.to_seq,
                p.span_secs,
                jopt(p.bytes_per_day),
                p.mean_ec_per_day_x100.map_or("null".into(), |e| jf(e as f64 / 100.0)),
                p.pct_per_day.map_or("null".into(), jf),
                p.used_pct.map_or("null".into(), jf),
                jopt(p.remaining_bytes),
                js(life),
                jopt(days)
            )
        }
    }
}

fn source_json(r: &SourceReading) -> String {
    let figures: Vec<String> = r
        .figures
        .iter()
        .map(|(n, v)| {
            let val = match v {
                Value::Num(x) => x.to_string(),
                Value::Text(t) => js(t),
            };
            format!("{}:{val}", js(n))
        })
        .collect();
    let list = |v: &[String]| v.iter().map(|x| js(x)).collect::<Vec<_>>().join(",");
    format!(
        "{{\"id\":{},\"kind\":{},\"level\":{},\"life_used_pct\":{},\"bad_reserve_pct\":{},\"figures\":{{{}}},\"reasons\":[{}],\"notes\":[{}]}}",
        js(&r.id),
        js(r.kind.as_str()),
        js(r.level.as_str()),
        jopt(r.life_used_pct),
        jopt(r.bad_reserve_pct),
        figures.join(","),
        list(&r.reasons),
        list(&r.notes)
    )
}

/// The same as one JSON object (no trailing newline: a fragment to embed
/// in `overlay-status --json` as `"wear":{...}`).
pub fn render_json(v: &WearView) -> String {
    let sources: Vec<String> = v.readings.iter().map(source_json).collect();
    let remarks: Vec<String> = v.remarks.iter().map(|r| js(r)).collect();
    format!(
        "{{\"level\":{},\"sources\":[{}],\"projection\":{},\"remarks\":[{}]}}",
        js(v.level.as_str()),
        sources.join(","),
        v.projection.map_or("null".into(), projection_json),
        remarks.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wear::projection::Cut;
    use crate::wear::sources::Kind;

    fn readings() -> Vec<SourceReading> {
        let mut u = SourceReading::new("ubi0", Kind::Ubi);
        u.figures.push(("max_ec", Value::Num(2000)));
        u.figures.push(("mean_ec", Value::Text("1166.66".into())));
        u.life_used_pct = Some(38);
        u.level = Level::Ok;
        let mut e = SourceReading::new("mmcblk0", Kind::Emmc);
        e.figures
            .push(("life_time_a", Value::Text("0x08 (70-80%)".into())));
        e.life_used_pct = Some(80);
        e.level = Level::Warn;
        e.reasons.push("eMMC life-time estimate: 80% used".into());
        e.notes
            .push("/sys/block/mmcblk0/device/pre_eol_info: \"x\" is not 0xNN".into());
        vec![u, e]
    }

    fn projection() -> Outcome {
        Outcome::Projected(Projection {
            from_seq: 1,
            to_seq: 9,
            span_secs: 8 * 86_400,
            cut: Cut::None,
            bytes_per_day: Some(1 << 30),
            mean_ec_per_day_x100: Some(150),
            pct_per_day: Some(0.0625),
            used_pct: Some(80.0),
            remaining_bytes: Some(10 << 30),
            life_left: LifeLeft::Days(320),
        })
    }

    #[test]
    fn text_table() {
        let r = readings();
        let p = projection();
        let remarks = ["wear log corrupt: x: 3 bytes, not 4160; starting a new one".to_string()];
        let t = render_text(&WearView {
            readings: &r,
            level: Level::Warn,
            projection: Some(&p),
            remarks: &remarks,
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "flash wear: warn");
        assert_eq!(lines[1], "SOURCE            LEVEL     LIFE USED  FIGURES");
        assert_eq!(
            lines[2],
            "ubi0              ok        38%        max_ec=2000, mean_ec=1166.66"
        );
        assert_eq!(
            lines[3],
            "mmcblk0           warn      80%        life_time_a=0x08 (70-80%)"
        );
        assert_eq!(lines[4], "  ! eMMC life-time estimate: 80% used");
        assert!(lines[5].starts_with("  ? /sys/block/mmcblk0"));
        assert_eq!(
            lines[6],
            "projected life:   320 days at 1.0 GiB/day, 1.50 erase cycles/day, 0.0625% of rated life a day"
        );
        assert_eq!(lines[7], remarks[0]);
    }

    #[test]
    fn projection_lines() {
        assert_eq!(
            projection_text(&Outcome::NotEnoughHistory {
                records: 1,
                span_secs: 5400
            }),
            "not enough history (1 record(s) over 1.5 h; needs a day)"
        );
        let Outcome::Projected(p) = projection() else {
            unreachable!()
        };
        let years = Outcome::Projected(Projection {
            life_left: LifeLeft::Days(1500),
            ..p
        });
        assert!(projection_text(&years).starts_with("about 4.1 years at "));
        let none = Outcome::Projected(Projection {
            life_left: LifeLeft::NoWear,
            bytes_per_day: Some(0),
            mean_ec_per_day_x100: None,
            pct_per_day: Some(0.0),
            ..p
        });
        assert_eq!(
            projection_text(&none),
            "no wear at the current rate (0 B/day, 0.0000% of rated life a day)"
        );
        let unknown = Outcome::Projected(Projection {
            life_left: LifeLeft::Unknown,
            mean_ec_per_day_x100: None,
            pct_per_day: None,
            ..p
        });
        assert_eq!(
            projection_text(&unknown),
            "unknown: rated endurance not set (overlay.wear=pe_cycles:N); 1.0 GiB/day"
        );
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(human_days(1), "1 day");
    }

    #[test]
    fn an_empty_device() {
        let t = render_text(&WearView {
            readings: &[],
            level: Level::Unknown,
            projection: None,
            remarks: &[],
        });
        assert_eq!(
            t,
            "flash wear: unknown\nno wear source on this device (no UBI, MTD, eMMC, ext4/f2fs or disk counters)\n"
        );
    }

    #[test]
    fn json_fragment() {
        let r = readings();
        let p = projection();
        let j = render_json(&WearView {
            readings: &r,
            level: Level::Warn,
            projection: Some(&p),
            remarks: &[],
        });
        assert!(j.starts_with(r#"{"level":"warn","sources":[{"id":"ubi0","kind":"ubi","level":"ok","life_used_pct":38,"bad_reserve_pct":null,"figures":{"max_ec":2000,"mean_ec":"1166.66"},"reasons":[],"notes":[]}"#), "{j}");
        assert!(
            j.contains(r#""notes":["/sys/block/mmcblk0/device/pre_eol_info: \"x\" is not 0xNN"]"#),
            "{j}"
        );
        assert!(j.contains(r#""projection":{"status":"projected","from_seq":1,"to_seq":9,"span_secs":691200,"bytes_per_day":1073741824,"mean_ec_per_day":1.500000,"pct_per_day":0.062500,"used_pct":80.000000,"remaining_bytes":10737418240,"life_left":"days","days_left":320}"#), "{j}");
        assert!(j.ends_with(r#""remarks":[]}"#));
        let short = render_json(&WearView {
            readings: &[],
            level: Level::Unknown,
            projection: Some(&Outcome::NotEnoughHistory {
                records: 0,
                span_secs: 0,
            }),
            remarks: &[],
        });
        assert_eq!(
            short,
            r#"{"level":"unknown","sources":[],"projection":{"status":"not_enough_history","records":0,"span_secs":0},"remarks":[]}"#
        );
        assert_eq!(jf(f64::INFINITY), "null");
        assert_eq!(jf(f64::NAN), "null");
    }
}
