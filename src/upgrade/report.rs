//! What `overlay-status --upgrade`, its `"upgrade"` JSON member and
//! `overlay-status --changes` show.
//!
//! `--upgrade`:
//! ```text
//! manifest: recorded
//! last upgrade: 2026-11-30 12:00:00, policy merge: 2 removed, 1 kept, 1 conflict
//! from: squashfs 5120 KiB, mkfs 2026-11-30 11:00:00, #1a2b3c4d
//! to: squashfs 5120 KiB, mkfs 2026-11-30 11:00:00, manifest, #5e6f7a8b
//!   removed  /etc/profile (unchanged copy)
//!   kept     /etc/config/network (modified)
//!   conflict /etc/config/system (modified; the new image changed it: /rom/etc/config/system)
//! ```
//! The first line is `manifest: recorded`, `manifest: pending` (the
//! background has not recorded this image's manifest yet) or
//! `manifest: none (why)`.

use super::classify::{classify, Class, News, Old, Upper, Why};
use super::manifest::{Kind, Meta};
use super::record::{self, Content, ManifestRecord, Report, State, LAST, PENDING, STATE};
use super::scan::{self, Lowers};
use super::{show_path, show_time, Error};
use crate::status::js;
use rustix::fd::{AsFd, BorrowedFd};
use std::fmt::Write as _;
use std::path::Path;

/// `("recorded" | "pending" | "none", why)` for the data filesystem whose
/// `.upgrade/` is `area`.
pub fn manifest_status(area: Option<BorrowedFd>) -> (&'static str, String) {
    let state = match area.map(|a| record::load(a, STATE, State::decode)) {
        Some(Ok(Some(Ok(s)))) => s,
        Some(Ok(Some(Err(e)))) => return ("none", format!("unusable state record: {e}")),
        Some(Err(e)) => return ("none", e.to_string()),
        _ => return ("none", "nothing recorded yet".into()),
    };
    for (n, lower) in state.lowers.iter().enumerate() {
        let name = record::manifest_name(n);
        match area.map(|a| record::load(a, &name, ManifestRecord::decode)) {
            Some(Ok(Some(Ok(rec)))) if rec.id == lower.id => {
                if let Content::None(why) = rec.content {
                    return ("none", format!("lower {n}: {why}"));
                }
            }
            Some(Ok(Some(Err(e)))) => return ("none", format!("unusable {name}: {e}")),
            _ => return ("pending", String::new()),
        }
    }
    let why = if state.changed {
        "the image was replaced: the next boot upgrades"
    } else {
        ""
    };
    ("recorded", why.into())
}

/// The words after a line's path.
pub fn words(r: &Report, l: &record::Line) -> String {
    let at = || record::new_version_at(r, l);
    let news = match l.news {
        News::None => String::new(),
        News::Changed => format!("; the new image changed it: {}", at()),
        News::Removed => "; the new image removed it".into(),
        News::Added => format!("; the new image adds it: {}", at()),
        News::AddsInside(k) => format!("; it hides {k} new entries of the new image"),
        News::Shadows => format!("; it shadows {}", at()),
    };
    format!("{}{news}", l.why.words())
}

/// The upgrade view: the text of `--upgrade`, or the JSON member.
fn render(data: &Path, not_flash: Option<&str>, json: bool) -> String {
    let fd = super::merge::open_data(data).ok();
    let area = match not_flash {
        Some(_) => None,
        None => fd
            .as_ref()
            .and_then(|d| record::open_area(d.as_fd(), false).ok().flatten()),
    };
    let area = area.as_ref().map(|a| a.as_fd());
    let (word, why) = match not_flash {
        Some(w) => ("none", w.to_string()),
        None => manifest_status(area),
    };
    let pending = area.is_some_and(|a| matches!(record::read(a, PENDING), Ok(Some(_))));
    let last = area.map(|a| record::load(a, LAST, Report::decode));
    let mut s = String::new();
    if json {
        let why = if why.is_empty() { "null".into() } else { js(&why) };
        let _ = write!(s, "{{\"manifest\":\"{word}\",\"why\":{why},\"pending\":{pending},\"last\":");
    } else {
        let why = if why.is_empty() { why } else { format!(" ({why})") };
        let _ = writeln!(s, "manifest: {word}{why}");
        if pending {
            s.push_str("upgrade: pending, finished at the next boot\n");
        }
    }
    let r = match last {
        Some(Ok(Some(Ok(r)))) => r,
        other => {
            let why = match other {
                Some(Ok(Some(Err(e)))) => format!("unusable report: {e}"),
                Some(Err(e)) => e.to_string(),
                _ => "none".into(),
            };
            let _ = if json {
                write!(s, "null}}")
            } else {
                writeln!(s, "last upgrade: {why}")
            };
            return s;
        }
    };
    let [removed, kept, conflicts] = r.counts;
    let when = show_time(r.when);
    let from: Vec<String> = r.old.iter().map(|l| l.id.to_string()).collect();
    let to: Vec<String> = r.new.iter().map(|i| i.to_string()).collect();
    if json {
        let list = |v: &[String]| v.iter().map(|x| js(x)).collect::<Vec<_>>().join(",");
        let _ = write!(
            s,
            "{{\"when\":{},\"time\":\"{when}\",\"policy\":\"{}\",\"from\":[{}],\"to\":[{}],\"notes\":[{}],\"removed\":{removed},\"kept\":{kept},\"conflicts\":{conflicts},\"paths\":[",
            r.when,
            r.policy,
            list(&from),
            list(&to),
            list(&r.notes),
        );
    } else {
        let _ = writeln!(
            s,
            "last upgrade: {when}, policy {}: {removed} removed, {kept} kept, {conflicts} conflicts",
            r.policy
        );
        for (k, v) in [("from", &from), ("to", &to), ("note", &r.notes)] {
            for x in v {
                let _ = writeln!(s, "{k}: {x}");
            }
        }
    }
    for (i, l) in r.lines.iter().enumerate() {
        let (word, path, words) = (l.class.word(), show_path(&l.path), words(&r, l));
        let _ = if json {
            let sep = if i == 0 { "" } else { "," };
            write!(
                s,
                "{sep}{{\"class\":\"{word}\",\"path\":{},\"words\":{}}}",
                js(&path),
                js(&words)
            )
        } else {
            writeln!(s, "  {word:<8} {path} ({words})")
        };
    }
    let more = (removed + kept + conflicts).saturating_sub(r.lines.len() as u64);
    let _ = if json {
        write!(s, "],\"not_listed\":{more}}}}}")
    } else if more > 0 {
        writeln!(s, "  ... and {more} more, not listed")
    } else {
        Ok(())
    };
    s
}

/// `overlay-status --upgrade` for the data filesystem at `data` (`/overlay`).
/// `not_flash`: why there is no flash upper, when there is none.
pub fn render_text(data: &Path, not_flash: Option<&str>) -> String {
    render(data, not_flash, false)
}

/// The `"upgrade"` member of `overlay-status --json`.
pub fn render_json(data: &Path, not_flash: Option<&str>) -> String {
    render(data, not_flash, true)
}

/// `overlay-status --changes`: the user's changes now, the upper at
/// `upper` against the lowers at `lowers` (top first): what a factory
/// reset would erase. Unchanged copies are counted, not listed.
pub fn changes(upper: &Path, lowers: &[&Path]) -> Result<String, Error> {
    let fds = lowers
        .iter()
        .map(|p| super::merge::open_data(p))
        .collect::<Result<Vec<_>, _>>()?;
    let roots: Vec<BorrowedFd> = fds.iter().map(|f| f.as_fd()).collect();
    let mut lw = Lowers::new(&roots);
    let up = super::merge::open_data(upper)?;
    let mut mine: Vec<Vec<u8>> = Vec::new();
    let mut out = String::new();
    let mut copies = 0u64;
    scan::walk_tree(up.as_fd(), &mut |path, st, dir| {
        let inside = mine.iter().any(|d| path.starts_with(d) && path.get(d.len()) == Some(&b'/'));
        let x = scan::overlay_xattrs(dir, scan::name_of(path), st);
        let mut meta = Meta::of_stat(st);
        let size = meta.size;
        let low = if inside {
            None
        } else {
            lw.get(path, &|n: &Meta| {
                n.kind == Kind::Symlink || (n.kind == Kind::File && n.size == size)
            })?
            .map(|(m, _)| m)
        };
        let old = match &low {
            Some(m) => Old::Has(m),
            None => Old::Absent,
        };
        let unread = meta.clone();
        let mut u = Upper {
            meta: &unread,
            nlink: scan::nlink(st),
            opaque: x.opaque,
            redirect: x.redirect,
            metacopy: x.metacopy,
        };
        let need = super::classify::needs_crc(&u, old, low.as_ref()) || meta.kind == Kind::Symlink;
        if need && !inside {
            scan::read_content(dir, path, &mut meta)?;
            u.meta = &meta;
        }
        let v = classify(&u, inside, old, low.as_ref(), 0);
        if meta.kind == Kind::Dir && (x.opaque || x.redirect) && !inside {
            mine.push(path.to_vec());
        }
        let word = match (v.class, v.why) {
            (None, _) | (Some(Class::Removed), Why::Redundant) => return Ok(()),
            (Some(Class::Removed), _) => {
                copies += 1;
                return Ok(());
            }
            (_, Why::Added | Why::Inside) => "added",
            (_, Why::Deleted) => "deleted",
            (_, Why::Opaque) => "opaque",
            _ => "modified",
        };
        let _ = writeln!(out, "  {word:<8} {}", show_path(path));
        Ok(())
    })?;
    let _ = writeln!(out, "{copies} unchanged copies of the lowers' files (not listed)");
    Ok(out)
}

/// Why the boot in `st` has no flash upper to follow an image with.
fn not_flash(st: &crate::state::BootState) -> Option<&'static str> {
    match st.upper {
        crate::state::Upper::Flash { .. } => None,
        crate::state::Upper::Tmpfs { .. } => Some("the upper is in RAM this boot"),
        crate::state::Upper::None { .. } => Some("there is no upper"),
    }
}

/// `overlay-status --upgrade` for the boot described by `st`.
pub fn status_text(st: &crate::state::BootState) -> String {
    render_text(Path::new(crate::paths::OVERLAY), not_flash(st))
}

/// The `"upgrade"` member of `overlay-status --json`.
pub fn status_json(st: &crate::state::BootState) -> String {
    render_json(Path::new(crate::paths::OVERLAY), not_flash(st))
}

/// `overlay-status --changes` for the boot described by `st`: its upper
/// (`/overlay/upper`) against its lowers.
pub fn status_changes(st: &crate::state::BootState) -> Result<String, Error> {
    let upper = Path::new(crate::paths::OVERLAY).join("upper");
    let lowers: Vec<&Path> = st.lowers.iter().map(|l| Path::new(&l.mountpoint)).collect();
    changes(&upper, &lowers)
}
