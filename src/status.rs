//! `overlay-status`: what the pre-init decided for this boot.
//!
//! Exit status: 0 changes persist (flash upper), 2 changes live in RAM only
//! (tmpfs upper), 3 read-only root (no upper), 1 no usable state / bad usage.

use crate::paths;
use crate::state::{BootState, Micros, Upper};
use std::fmt::Write as _;

pub const EXIT_PERSISTENT: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_RAM: i32 = 2;
pub const EXIT_READONLY: i32 = 3;

const HELP: &str = "usage: overlay-status [--json] [--wear] [--upgrade] [--changes] [--state FILE]
       overlay-status --mark-good

Shows how the root filesystem was assembled at boot: the read-only lower
layers, the writable upper (flash, or tmpfs and why), and the time each
pre-init stage took.

  --json        machine-readable output (with the wear table)
  --wear        the flash wear table: each source, its figures, level and
                the projected life from the wear log (/overlay/.wear/log)
  --upgrade     the image's manifest and the last firmware upgrade: each
                path of the upper removed, kept or in conflict
  --changes     the changes in the upper against the lowers (added,
                modified, deleted, opaque): what a factory reset erases
  --state FILE  read FILE instead of /run/overlay-init/state
  --mark-good   this boot came up: the count of boots without mark-good
                (overlay.boot_attempts=N) goes back to 0 (run by the init
                once the system is up; writes nothing when boot counting is
                off or the count is 0; exit 0 done, 1 failed)

Exit status: 0 changes persist on flash, 2 changes are kept in RAM only and
lost at reboot (tmpfs upper, or a failsafe boot), 3 the root is read-only,
1 error.
";

pub fn main(args: &[String]) -> i32 {
    let mut json = false;
    let mut wear = false;
    let mut mark_good = false;
    let (mut upgrade, mut changes) = (false, false);
    let mut file = paths::STATE_FILE.to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--wear" => wear = true,
            "--mark-good" => mark_good = true,
            "--upgrade" => upgrade = true,
            "--changes" => changes = true,
            "--state" => match it.next() {
                Some(f) => file = f.clone(),
                None => return usage_error("--state needs a file"),
            },
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            other => return usage_error(&format!("unknown argument {other}")),
        }
    }
    if mark_good {
        return crate::recovery::mark::main(&file);
    }
    // Bounded, non-blocking, a regular file only (fsio).
    let read = crate::fsio::read_path(std::path::Path::new(&file), crate::state::MAX_STATE)
        .map_err(|e| e.to_string())
        .and_then(|b| b.ok_or_else(|| "no such file".to_string()));
    let text = match read {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!(
                "overlay-status: cannot read {file}: {e} (was this system booted by overlay-init?)"
            );
            return EXIT_ERROR;
        }
    };
    let st = match BootState::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("overlay-status: {file} is not usable: {e}");
            return EXIT_ERROR;
        }
    };
    let recovery = crate::recovery::state::RecoveryState::for_status(&text);
    if json {
        let w = live_wear(&st);
        let mut out = render_json(&st);
        // more members: the wear view, failsafe and boot count
        if out.ends_with("}\n") {
            out.truncate(out.len() - 2);
            out.push_str(&format!(
                ",\"wear\":{},\"upgrade\":{}{}}}\n",
                crate::wear::display::render_json(&w.view()),
                crate::upgrade::report::status_json(&st),
                recovery.json()
            ));
        }
        print!("{out}");
    } else {
        // --upgrade and --changes show their view alone: its first line
        // (`manifest: ...`) is what scripts read.
        if !(upgrade || changes) {
            print!("{}{}", recovery.text(), render_text(&st));
        }
        if wear {
            println!();
            print!(
                "{}",
                crate::wear::display::render_text(&live_wear(&st).view())
            );
        }
        if upgrade {
            print!("{}", crate::upgrade::report::status_text(&st));
        }
        if changes {
            match crate::upgrade::report::status_changes(&st) {
                Ok(t) => print!("{}{t}", if upgrade { "\n" } else { "" }),
                Err(e) => eprintln!("overlay-status: --changes: {e}"),
            }
        }
    }
    if recovery.failsafe() {
        return EXIT_RAM;
    }
    exit_code(&st)
}

/// The wear sources as they read now, with the wear log's projection.
struct LiveWear {
    readings: Vec<crate::wear::sources::SourceReading>,
    level: crate::wear::Level,
    projection: Option<crate::wear::projection::Outcome>,
    remarks: Vec<String>,
}

impl LiveWear {
    fn view(&self) -> crate::wear::display::WearView<'_> {
        crate::wear::display::WearView {
            readings: &self.readings,
            level: self.level,
            projection: self.projection.as_ref(),
            remarks: &self.remarks,
        }
    }
}

fn live_wear(st: &BootState) -> LiveWear {
    use crate::wear::{self, log as wlog, sources};
    let mut cfg = wear::config::WearConfig::default();
    let mut remarks = Vec::new();
    if let Err(e) = cfg.apply_list(st.wear_config.as_deref()) {
        remarks.push(format!(
            "wear settings from the boot unusable ({e}); defaults shown"
        ));
    }
    let root = crate::paths::SysRoot::host();
    let readings = sources::read_sources(&root, &cfg, &sources::ReadOptions { scan_ec: true });
    let a = wear::assess(&readings, &cfg, st.data_dev());
    if let Some(w) = &st.wear {
        remarks.push(format!("at boot: {w}"));
    }
    let data = std::path::Path::new(paths::OVERLAY);
    let projection = match wlog::read_log(data) {
        Ok(state) => {
            if let Some(p) = state.problem(&wlog::log_path(data)) {
                remarks.push(p);
            }
            Some(wear::projection::project(
                state.records(),
                &a.endurance,
                a.used_pct,
            ))
        }
        Err(e) => {
            remarks.push(format!("wear log: {e}"));
            None
        }
    };
    LiveWear {
        level: a.level,
        readings,
        projection,
        remarks,
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("overlay-status: {msg}\n\n{HELP}");
    EXIT_ERROR
}

pub fn exit_code(st: &BootState) -> i32 {
    match st.upper {
        Upper::Flash { .. } => EXIT_PERSISTENT,
        Upper::Tmpfs { .. } => EXIT_RAM,
        Upper::None { .. } => EXIT_READONLY,
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{} ms", crate::state::Millis(d))
}

pub fn render_text(st: &BootState) -> String {
    let mut s = String::new();
    let _ = match &st.upper {
        Upper::Flash { device, fstype } => writeln!(
            s,
            "persistent: yes, changes are saved on {device} ({fstype})"
        ),
        Upper::Tmpfs { reason: None, size } => writeln!(
            s,
            "persistent: no, changes live in RAM (tmpfs, up to {size}) as configured"
        ),
        Upper::Tmpfs {
            reason: Some(r),
            size,
        } => {
            writeln!(s, "persistent: NO, changes live in RAM (tmpfs, up to {size}) and are lost at reboot\nreason:     {r}")
        }
        Upper::None { reason: None } => writeln!(
            s,
            "persistent: no, the root is read-only (overlay disabled)"
        ),
        Upper::None { reason: Some(r) } => {
            writeln!(s, "persistent: NO, the root is read-only\nreason:     {r}")
        }
    };
    let _ = match &st.upper {
        Upper::Flash { device, fstype } => {
            writeln!(s, "upper:      {device} ({fstype}) at /overlay")
        }
        Upper::Tmpfs { size, .. } => {
            // A protected boot (boot/wear.rs) keeps the read-only flash at
            // /overlay, its upper/ the top lower layer, and a failsafe boot
            // its data there for rescue: the RAM upper is elsewhere.
            let protected = format!("{}/upper", paths::OVERLAY);
            let at = if st.recovery.failsafe.is_some()
                || st.lowers.iter().any(|l| l.mountpoint == protected)
            {
                crate::paths::PROTECT_RAM
            } else {
                paths::OVERLAY
            };
            writeln!(s, "upper:      tmpfs ({size} of RAM at most) at {at}")
        }
        Upper::None { .. } => writeln!(s, "upper:      none"),
    };
    for (i, l) in st.lowers.iter().enumerate() {
        let role = if i + 1 == st.lowers.len() {
            "root"
        } else {
            "extra"
        };
        let _ = writeln!(
            s,
            "lower {i}:    {} ({}, {role}) at {}",
            l.device, l.fstype, l.mountpoint
        );
    }
    let _ = writeln!(s, "init:       {} (entered by {})", st.init, st.mode);
    if let Some(r) = &st.reset {
        let _ = writeln!(s, "reset:      at this boot: {r}");
    }
    if let Some(line) = crate::reset::cli::pending_line(std::path::Path::new(paths::OVERLAY)) {
        let _ = writeln!(s, "{line}");
    }
    if let Some(w) = &st.wear {
        let _ = writeln!(s, "wear:       {w} (overlay-status --wear)");
    }
    for w in &st.warnings {
        let _ = writeln!(s, "warning:    {w}");
    }
    let _ = writeln!(
        s,
        "pre-init:   {} in all, started {} after the kernel",
        ms(st.total()),
        ms(st.started_at)
    );
    for (name, d) in &st.stages {
        let _ = writeln!(s, "  {name:<14}{:>10}", ms(*d));
    }
    s
}

pub(crate) use crate::json::js;

pub fn render_json(st: &BootState) -> String {
    let (kind, device, fstype, reason, size) = match &st.upper {
        Upper::Flash { device, fstype } => ("flash", Some(device), Some(fstype), None, None),
        Upper::Tmpfs { reason, size } => ("tmpfs", None, None, reason.as_ref(), Some(size)),
        Upper::None { reason } => ("none", None, None, reason.as_ref(), None),
    };
    let opt = |v: Option<&String>| v.map_or("null".to_string(), |x| js(x));
    let lowers: Vec<String> = st
        .lowers
        .iter()
        .map(|l| {
            format!(
                "{{\"device\":{},\"fstype\":{},\"mountpoint\":{}}}",
                js(&l.device),
                js(&l.fstype),
                js(&l.mountpoint)
            )
        })
        .collect();
    let stages: Vec<String> = st
        .stages
        .iter()
        .map(|(n, d)| format!("{{\"name\":{},\"us\":{}}}", js(n), Micros(*d)))
        .collect();
    let warnings: Vec<String> = st.warnings.iter().map(|w| js(w)).collect();
    format!(
        "{{\"persistent\":{},\"upper\":{{\"kind\":{},\"device\":{},\"fstype\":{},\"size\":{},\"reason\":{}}},\"lowers\":[{}],\"init\":{},\"mode\":{},\"warnings\":[{}],\"started_at_us\":{},\"total_us\":{},\"stages\":[{}]}}\n",
        st.persistent(),
        js(kind),
        opt(device),
        opt(fstype),
        opt(size),
        opt(reason),
        lowers.join(","),
        js(&st.init),
        js(&st.mode),
        warnings.join(","),
        Micros(st.started_at),
        Micros(st.total()),
        stages.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Layer;
    use std::time::Duration;

    fn tmpfs_state() -> BootState {
        BootState {
            mode: "switch_root".into(),
            init: "/sbin/init".into(),
            data_sysfs: Some("vda2".into()),
            recovery: Default::default(),
            lowers: vec![Layer {
                device: "/dev/vda1".into(),
                fstype: "squashfs".into(),
                mountpoint: "/rom".into(),
            }],
            upper: Upper::Tmpfs {
                reason: Some("no data partition \"x\"\n".into()),
                size: "25%".into(),
            },
            warnings: vec![],
            stages: vec![("upper".into(), Duration::from_micros(1200))],
            started_at: Duration::from_millis(500),
            reset: None,
            wear: None,
            wear_config: None,
        }
    }

    #[test]
    fn text_states_the_reason_and_the_stages() {
        let t = render_text(&tmpfs_state());
        assert!(t.starts_with("persistent: NO, changes live in RAM"), "{t}");
        assert!(t.contains("reason:     no data partition"), "{t}");
        assert!(
            t.contains("lower 0:    /dev/vda1 (squashfs, root) at /rom"),
            "{t}"
        );
        assert!(t.contains("\n  upper             1.2 ms\n"), "{t}");
        assert_eq!(exit_code(&tmpfs_state()), EXIT_RAM);
    }

    #[test]
    fn a_protected_boot_shows_where_its_ram_upper_is() {
        let mut st = tmpfs_state();
        assert!(render_text(&st).contains("upper:      tmpfs (25% of RAM at most) at /overlay\n"));
        st.lowers.insert(
            0,
            Layer {
                device: "/dev/vda2".into(),
                fstype: "ext4".into(),
                mountpoint: "/overlay/upper".into(),
            },
        );
        let t = render_text(&st);
        assert!(
            t.contains("upper:      tmpfs (25% of RAM at most) at /run/overlay-init/ram\n"),
            "{t}"
        );
    }

    #[test]
    fn a_failsafe_boot_shows_where_its_ram_upper_is() {
        // Its data (when it mounted) is at /overlay, read-only, for rescue.
        let mut st = tmpfs_state();
        st.recovery.failsafe = Some("overlay.failsafe=1 on the command line".into());
        let t = render_text(&st);
        assert!(
            t.contains("upper:      tmpfs (25% of RAM at most) at /run/overlay-init/ram\n"),
            "{t}"
        );
    }

    #[test]
    fn json_is_escaped() {
        let j = render_json(&tmpfs_state());
        assert!(
            j.contains(r#""reason":"no data partition \"x\"\u000a""#),
            "{j}"
        );
        assert!(j.contains(r#""persistent":false"#));
        assert!(
            j.contains(r#""stages":[{"name":"upper","us":1200}]"#),
            "{j}"
        );
    }

    #[test]
    fn exit_codes() {
        let flash = BootState {
            upper: Upper::Flash {
                device: "/dev/vda2".into(),
                fstype: "ext4".into(),
            },
            ..tmpfs_state()
        };
        assert_eq!(exit_code(&flash), EXIT_PERSISTENT);
        let ro = BootState {
            upper: Upper::None { reason: None },
            ..tmpfs_state()
        };
        assert_eq!(exit_code(&ro), EXIT_READONLY);
    }

    #[test]
    fn cli_reads_a_state_file_and_refuses_a_broken_one() {
        let d = crate::testutil::TempDir::new("status");
        let good = d.write("state", tmpfs_state().render());
        assert_eq!(
            main(&["--state".into(), good.display().to_string()]),
            EXIT_RAM
        );
        let bad = d.write("bad", "version=1\nupper=flash\n");
        assert_eq!(
            main(&["--state".into(), bad.display().to_string()]),
            EXIT_ERROR
        );
        assert_eq!(main(&["--bogus".into()]), EXIT_ERROR);
        assert_eq!(main(&["--state".into()]), EXIT_ERROR);
    }
}
