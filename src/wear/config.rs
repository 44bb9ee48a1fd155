//! Wear settings from the board file and the command line.
//!
//! ```text
//! overlay.wear=warn:70,critical:90,pe_cycles:3000,target_years:5,log_interval:1d,sample:10m
//! overlay.wear=off
//! overlay.wear_policy=warn|protect|tmpfs
//! ```
//!
//! `overlay.wear=` is a comma-separated list of `name:value` items, plus the
//! bare items `on` and `off`. Each item sets one field on top of what is
//! already set, so the board file can give the endurance
//! (`pe_cycles:3000,capacity:128m`) and the command line change one threshold
//! (`overlay.wear=warn:60`) without repeating the rest. A value with any bad
//! item is refused whole (the settings stay as they were, and the caller
//! reports `bad setting overlay.wear=…: why; using …`), as `overlay.lower=`
//! is: half-applied lists are harder to reason about than refused ones.
//!
//! | item | meaning | default |
//! | --- | --- | --- |
//! | `warn:P`, `critical:P` | life used (percent of rated endurance) that warns / is critical | 80, 95 |
//! | `bad_warn:P`, `bad_critical:P` | share of the bad-block reserve consumed | 50, 90 |
//! | `pe_cycles:N` | rated program/erase cycles of the flash | unknown |
//! | `capacity:N[k\|m\|g\|t]` | flash capacity for endurance (default: the device's size) | from sysfs |
//! | `target_years:N` | the lifetime the board must reach | 5 |
//! | `log_interval:D` | least time between two wear-log records | 1d |
//! | `sample:D` | monitor sampling interval | 10m |
//! | `on`, `off` | wear monitoring as a whole | on |
//!
//! Durations are `N` seconds or `N` with `s`, `m`, `h` or `d`.

use std::fmt;
use std::time::Duration;

/// What the boot does when the device level is critical.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Log the condition, boot as usual.
    Warn,
    /// Keep the user's data visible but stop writing to the flash: the flash
    /// upper becomes a read-only lower layer under a fresh tmpfs upper.
    #[default]
    Protect,
    /// Boot on a tmpfs upper; the flash data is not shown.
    Tmpfs,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Warn => "warn",
            Policy::Protect => "protect",
            Policy::Tmpfs => "tmpfs",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds, rated endurance and intervals of wear monitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WearConfig {
    /// `overlay.wear=off` clears it: no readings, no log, no monitor.
    pub enabled: bool,
    /// Life used (percent of rated endurance) at which a source warns.
    pub warn_pct: u32,
    /// Life used at which a source is critical.
    pub critical_pct: u32,
    /// Share of the bad-block reserve consumed at which a source warns.
    pub bad_warn_pct: u32,
    pub bad_critical_pct: u32,
    /// Rated program/erase cycles (datasheet); `None` = unknown, so no
    /// endurance-based percentage can be derived (eMMC reports its own).
    pub pe_cycles: Option<u32>,
    /// Flash capacity in bytes for the endurance (capacity × P/E cycles);
    /// `None` = the size sysfs reports for the device.
    pub capacity: Option<u64>,
    /// The lifetime the board must reach, for the write budget.
    pub target_years: u32,
    /// Least time between two wear-log records.
    pub log_interval: Duration,
    /// Monitor sampling interval.
    pub sample: Duration,
    pub policy: Policy,
}

pub const DEFAULT_WARN_PCT: u32 = 80;
pub const DEFAULT_CRITICAL_PCT: u32 = 95;
pub const DEFAULT_BAD_WARN_PCT: u32 = 50;
pub const DEFAULT_BAD_CRITICAL_PCT: u32 = 90;
pub const DEFAULT_TARGET_YEARS: u32 = 5;
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_SAMPLE: Duration = Duration::from_secs(600);

const ITEMS: &str =
    "warn, critical, bad_warn, bad_critical, pe_cycles, capacity, target_years, log_interval, sample, on, off";

impl Default for WearConfig {
    fn default() -> Self {
        WearConfig {
            enabled: true,
            warn_pct: DEFAULT_WARN_PCT,
            critical_pct: DEFAULT_CRITICAL_PCT,
            bad_warn_pct: DEFAULT_BAD_WARN_PCT,
            bad_critical_pct: DEFAULT_BAD_CRITICAL_PCT,
            pe_cycles: None,
            capacity: None,
            target_years: DEFAULT_TARGET_YEARS,
            log_interval: DEFAULT_LOG_INTERVAL,
            sample: DEFAULT_SAMPLE,
            policy: Policy::Protect,
        }
    }
}

impl WearConfig {
    /// Applies one `overlay.wear=` value. On error nothing changes and the
    /// message says why (the caller adds the key and what is kept, as
    /// `config.rs` does for every key).
    pub fn apply_list(&mut self, value: Option<&str>) -> Result<(), String> {
        let v = match value.map(str::trim) {
            Some(s) if !s.is_empty() => s,
            _ => return Err("needs a value (off, or a list like warn:80,critical:95)".into()),
        };
        let mut next = self.clone();
        for item in v.split(',').map(str::trim) {
            next.apply_item(item)?;
        }
        if next.warn_pct > next.critical_pct {
            return Err(format!(
                "warn:{} is above critical:{}",
                next.warn_pct, next.critical_pct
            ));
        }
        if next.bad_warn_pct > next.bad_critical_pct {
            return Err(format!(
                "bad_warn:{} is above bad_critical:{}",
                next.bad_warn_pct, next.bad_critical_pct
            ));
        }
        *self = next;
        Ok(())
    }

    fn apply_item(&mut self, item: &str) -> Result<(), String> {
        match item {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "" => return Err("empty item".into()),
            _ => {
                let Some((name, val)) = item.split_once(':') else {
                    return Err(format!("{item}: not a name:value item ({ITEMS})"));
                };
                let bad = |why: &str| format!("{item}: {why}");
                match name {
                    "warn" => self.warn_pct = percent(val).map_err(&bad)?,
                    "critical" => self.critical_pct = percent(val).map_err(&bad)?,
                    "bad_warn" => self.bad_warn_pct = percent(val).map_err(&bad)?,
                    "bad_critical" => self.bad_critical_pct = percent(val).map_err(&bad)?,
                    "pe_cycles" => {
                        self.pe_cycles = Some(
                            number(val, 1, 10_000_000)
                                .map_err(&bad)?
                                .try_into()
                                .map_err(|_| bad("too large"))?,
                        )
                    }
                    "capacity" => self.capacity = Some(parse_bytes(val).map_err(&bad)?),
                    "target_years" => {
                        self.target_years = number(val, 1, 100)
                            .map_err(&bad)?
                            .try_into()
                            .map_err(|_| bad("too large"))?
                    }
                    "log_interval" => {
                        self.log_interval =
                            duration_in(val, 60, 366 * 86_400).map_err(|e| bad(&e))?
                    }
                    "sample" => self.sample = duration_in(val, 1, 86_400).map_err(|e| bad(&e))?,
                    _ => return Err(format!("{name}: unknown item ({ITEMS})")),
                }
            }
        }
        Ok(())
    }

    /// Applies one `overlay.wear_policy=` value.
    pub fn apply_policy(&mut self, value: Option<&str>) -> Result<(), String> {
        self.policy = match value.map(str::trim) {
            Some("warn") => Policy::Warn,
            Some("protect") => Policy::Protect,
            Some("tmpfs") => Policy::Tmpfs,
            _ => return Err("unknown policy (use warn, protect or tmpfs)".into()),
        };
        Ok(())
    }

    /// Rated endurance in bytes (capacity × P/E cycles) when both are known;
    /// `device_capacity` is the size sysfs gave, used when the board names none.
    pub fn endurance_bytes(&self, device_capacity: Option<u64>) -> Option<u64> {
        let cap = self.capacity.or(device_capacity)?;
        cap.checked_mul(u64::from(self.pe_cycles?))
    }
}

/// The settings in `overlay.wear=` syntax (the policy has its own key), so a
/// "using …" message can be pasted back.
impl fmt::Display for WearConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            f.write_str("off,")?;
        }
        write!(
            f,
            "warn:{},critical:{},bad_warn:{},bad_critical:{}",
            self.warn_pct, self.critical_pct, self.bad_warn_pct, self.bad_critical_pct
        )?;
        if let Some(pe) = self.pe_cycles {
            write!(f, ",pe_cycles:{pe}")?;
        }
        if let Some(c) = self.capacity {
            write!(f, ",capacity:{}", format_bytes_exact(c))?;
        }
        write!(
            f,
            ",target_years:{},log_interval:{},sample:{}",
            self.target_years,
            format_duration(self.log_interval),
            format_duration(self.sample)
        )
    }
}

fn number(s: &str, min: u64, max: u64) -> Result<u64, &'static str> {
    let n: u64 = s.parse().map_err(|_| "not a number")?;
    if n < min || n > max {
        return Err("out of range");
    }
    Ok(n)
}

fn percent(s: &str) -> Result<u32, &'static str> {
    let n: u32 = s.parse().map_err(|_| "not a percentage (1-100)")?;
    if !(1..=100).contains(&n) {
        return Err("not a percentage (1-100)");
    }
    Ok(n)
}

/// `N` seconds, or `N` with `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix('s') {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400)
    } else {
        (s, 1)
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "not a duration (N with s, m, h or d)".to_string())?;
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| "too large".to_string())
}

fn duration_in(s: &str, min: u64, max: u64) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.as_secs() < min || d.as_secs() > max {
        return Err(format!(
            "out of range ({} to {})",
            format_duration(Duration::from_secs(min)),
            format_duration(Duration::from_secs(max))
        ));
    }
    Ok(d)
}

/// The largest unit that divides the duration exactly: `1d`, `10m`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `N` bytes or `N` with `k`, `m`, `g`, `t` (binary units), at least 1 MiB.
pub fn parse_bytes(s: &str) -> Result<u64, &'static str> {
    let lower = s.to_ascii_lowercase();
    let (num, shift) = if let Some(n) = lower.strip_suffix('k') {
        (n, 10)
    } else if let Some(n) = lower.strip_suffix('m') {
        (n, 20)
    } else if let Some(n) = lower.strip_suffix('g') {
        (n, 30)
    } else if let Some(n) = lower.strip_suffix('t') {
        (n, 40)
    } else {
        (lower.as_str(), 0)
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "not a size (N with k, m, g or t)")?;
    let bytes = n.checked_mul(1u64 << shift).ok_or("too large")?;
    if bytes < 1 << 20 {
        return Err("smaller than 1 MiB");
    }
    Ok(bytes)
}

fn format_bytes_exact(b: u64) -> String {
    for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if b.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(v: &str) -> Result<WearConfig, String> {
        let mut c = WearConfig::default();
        c.apply_list(Some(v)).map(|()| c)
    }

    #[test]
    fn the_issue_example() {
        let c =
            applied("warn:70,critical:90,pe_cycles:3000,target_years:5,log_interval:1d,sample:10m")
                .unwrap();
        assert_eq!(c.warn_pct, 70);
        assert_eq!(c.critical_pct, 90);
        assert_eq!(c.pe_cycles, Some(3000));
        assert_eq!(c.target_years, 5);
        assert_eq!(c.log_interval, Duration::from_secs(86_400));
        assert_eq!(c.sample, Duration::from_secs(600));
        assert!(c.enabled);
        assert_eq!(c.policy, Policy::Protect);
    }

    #[test]
    fn off_on_and_capacity() {
        assert!(!applied("off").unwrap().enabled);
        let c = applied("off,on,capacity:64m,bad_warn:20,bad_critical:40").unwrap();
        assert!(c.enabled);
        assert_eq!(c.capacity, Some(64 << 20));
        assert_eq!((c.bad_warn_pct, c.bad_critical_pct), (20, 40));
        assert_eq!(applied("capacity:2G").unwrap().capacity, Some(2 << 30));
    }

    #[test]
    fn bad_items_keep_everything_as_it_was() {
        for (v, why) in [
            ("warn:70,bogus:1", "bogus: unknown item"),
            ("warn:0", "warn:0: not a percentage"),
            ("critical:101", "critical:101: not a percentage"),
            ("warn:x", "warn:x: not a percentage"),
            ("warn:90,critical:80", "warn:90 is above critical:80"),
            ("bad_warn:95", "bad_warn:95 is above bad_critical:90"),
            ("pe_cycles:0", "pe_cycles:0: out of range"),
            ("capacity:1k", "capacity:1k: smaller than 1 MiB"),
            ("capacity:lots", "capacity:lots: not a size"),
            (
                "log_interval:10s",
                "log_interval:10s: out of range (1m to 366d)",
            ),
            ("sample:5x", "sample:5x: not a duration"),
            ("sample:2d", "sample:2d: out of range"),
            ("target_years:0", "target_years:0: out of range"),
            ("warn", "warn: not a name:value item"),
            ("warn:70,", "empty item"),
            ("", "needs a value"),
        ] {
            let mut c = WearConfig::default();
            let e = c.apply_list(Some(v)).unwrap_err();
            assert!(e.starts_with(why), "{v}: {e}");
            assert_eq!(c, WearConfig::default(), "{v}");
        }
        let mut c = WearConfig::default();
        assert!(c.apply_list(None).is_err());
    }

    #[test]
    fn later_values_change_only_their_items() {
        let mut c = WearConfig::default();
        c.apply_list(Some("pe_cycles:3000,capacity:128m")).unwrap();
        c.apply_list(Some("warn:60")).unwrap();
        assert_eq!(c.pe_cycles, Some(3000));
        assert_eq!(c.warn_pct, 60);
        assert_eq!(c.endurance_bytes(None), Some(3000 * (128 << 20)));
    }

    #[test]
    fn display_round_trips() {
        for v in [
            "warn:70,critical:90,pe_cycles:3000,target_years:5,log_interval:1d,sample:10m",
            "off,capacity:3g,log_interval:90m,sample:45s",
            "capacity:1500k",
        ] {
            let c = applied(v).unwrap();
            let back = applied(&c.to_string()).unwrap();
            assert_eq!(back, c, "{c}");
        }
        assert_eq!(
            WearConfig::default().to_string(),
            "warn:80,critical:95,bad_warn:50,bad_critical:90,target_years:5,log_interval:1d,sample:10m"
        );
    }

    #[test]
    fn policy_and_durations() {
        let mut c = WearConfig::default();
        c.apply_policy(Some("tmpfs")).unwrap();
        assert_eq!(c.policy, Policy::Tmpfs);
        assert!(c.apply_policy(Some("panic")).is_err());
        assert!(c.apply_policy(None).is_err());
        assert_eq!(c.policy, Policy::Tmpfs);
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615d").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    }

    #[test]
    fn endurance_needs_both_figures() {
        let mut c = WearConfig::default();
        assert_eq!(c.endurance_bytes(Some(64 << 20)), None);
        c.pe_cycles = Some(100_000);
        assert_eq!(
            c.endurance_bytes(Some(64 << 20)),
            Some(100_000 * (64 << 20))
        );
        assert_eq!(c.endurance_bytes(None), None);
        c.capacity = Some(u64::MAX);
        assert_eq!(c.endurance_bytes(None), None, "overflow is unknown");
    }
}
