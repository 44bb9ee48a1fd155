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
use super::record::{self, Content, ManifestRecord, Report, State, PENDING, STATE, LAST};
use super::scan::{self, Lowers};
use super::{show_path, show_time, Error};
use crate::status::js;
use rustix::fd::{AsFd, BorrowedFd};
use std::fmt::Write as _;
use std::path::Path;

/// `("recorded" | "pending" | "none", why)` for the data filesystem whose
/// `.upgrade/` is `area`.
pub fn manifest_status(area: Option<BorrowedFd>) -> (&'static str, String) {
    let none = |why: String| ("none", why);
    let Some(area) = area else {
        return none("no upgrade records on the data filesystem yet".into());
    };
    let state = match record::load(area, STATE, State::decode) {
        Ok(Some(Ok(s))) => s,
        Ok(None) => return none("no upgrade records on the data filesystem yet".into()),
        Ok(Some(Err(e))) => return none(format!("the state record is unusable: {e}")),
        Err(e) => return none(e.to_string()),
    };
    let many = state.lowers.len() > 1;
    for (n, lower) in state.lowers.iter().enumerate() {
        let at = if many { format!("lower {n}: ") } else { String::new() };
        let name = record::manifest_name(n);
        match record::load(area, &name, ManifestRecord::decode) {
            Ok(None) => return ("pending", at),
            Ok(Some(Err(e))) => return none(format!("{at}.upgrade/{name} is unusable: {e}")),
            Err(e) => return none(format!("{at}{e}")),
            Ok(Some(Ok(rec))) if rec.id != lower.id => return ("pending", at),
            Ok(Some(Ok(rec))) => {
                if let Content::None(why) = rec.content {
                    return none(format!("{at}{why}"));
                }
            }
        }
    }
    let why = if state.changed {
        "the image was replaced under the same identity: the next boot upgrades".into()
    } else {
        String::new()
    };
    ("recorded", why)
}

/// The words after a line's path.
pub fn words(r: &Report, l: &record::Line) -> String {
    let mut w = l.why.words().to_string();
    let _ = match l.news {
        News::None => Ok(()),
        News::Changed => write!(w, "; the new image changed it: {}", record::new_version_at(r, l)),
        News::Removed => write!(w, "; the new image removed it"),
        News::Added => write!(w, "; the new image adds it: {}", record::new_version_at(r, l)),
        News::AddsInside(k) => write!(w, "; it hides {k} new entries of the new image"),
        News::Shadows => write!(w, "; it shadows {}", record::new_version_at(r, l)),
    };
    w
}

fn counts(r: &Report) -> String {
    format!(
        "{} removed, {} kept, {} conflict{}",
        r.counts[0],
        r.counts[1],
        r.counts[2],
        if r.counts[2] == 1 { "" } else { "s" }
    )
}

/// `overlay-status --upgrade` for the data filesystem at `data` (`/overlay`).
/// `not_flash`: why there is no flash upper, when there is none.
pub fn render_text(data: &Path, not_flash: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(why) = not_flash {
        let _ = writeln!(s, "manifest: none ({why})");
        return s;
    }
    let area = super::merge::open_data(data)
        .ok()
        .and_then(|d| record::open_area(d.as_fd(), false).ok().flatten());
    let area = area.as_ref().map(|a| a.as_fd());
    let (word, why) = manifest_status(area);
    let _ = if why.is_empty() {
        writeln!(s, "manifest: {word}")
    } else {
        writeln!(s, "manifest: {word} ({why})")
    };
    let Some(area) = area else { return s };
    if let Ok(Some(_)) = record::read(area, PENDING) {
        let _ = writeln!(s, "upgrade: pending, finished at the next boot");
    }
    match record::load(area, LAST, Report::decode) {
        Ok(None) => {
            let _ = writeln!(s, "last upgrade: none");
        }
        Ok(Some(Err(e))) => {
            let _ = writeln!(s, "last upgrade: the report is unusable: {e}");
        }
        Err(e) => {
            let _ = writeln!(s, "last upgrade: {e}");
        }
        Ok(Some(Ok(r))) => {
            let _ = writeln!(
                s,
                "last upgrade: {}, policy {}: {}",
                show_time(r.when),
                r.policy,
                counts(&r)
            );
            for l in &r.old {
                let _ = writeln!(s, "from: {}", l.id);
            }
            for id in &r.new {
                let _ = writeln!(s, "to: {id}");
            }
            for n in &r.notes {
                let _ = writeln!(s, "note: {n}");
            }
            for l in &r.lines {
                let _ = writeln!(
                    s,
                    "  {:<8} {} ({})",
                    l.class.word(),
                    show_path(&l.path),
                    words(&r, l)
                );
            }
            let listed = r.lines.len() as u64;
            let all: u64 = r.counts.iter().sum();
            if all > listed {
                let _ = writeln!(s, "  ... and {} more, not listed", all - listed);
            }
        }
    }
    s
}

/// The `"upgrade"` member of `overlay-status --json`.
pub fn render_json(data: &Path, not_flash: Option<&str>) -> String {
    let area = match not_flash {
        Some(_) => None,
        None => super::merge::open_data(data)
            .ok()
            .and_then(|d| record::open_area(d.as_fd(), false).ok().flatten()),
    };
    let area = area.as_ref().map(|a| a.as_fd());
    let (word, why) = match not_flash {
        Some(w) => ("none", w.to_string()),
        None => manifest_status(area),
    };
    let why = if why.is_empty() { "null".into() } else { js(&why) };
    let pending = area.is_some_and(|a| matches!(record::read(a, PENDING), Ok(Some(_))));
    let last = match area.map(|a| record::load(a, LAST, Report::decode)) {
        Some(Ok(Some(Ok(r)))) => {
            let ids = |v: Vec<String>| v.iter().map(|x| js(x)).collect::<Vec<_>>().join(",");
            let paths: Vec<String> = r
                .lines
                .iter()
                .map(|l| {
                    format!(
                        "{{\"class\":\"{}\",\"path\":{},\"words\":{}}}",
                        l.class.word(),
                        js(&show_path(&l.path)),
                        js(&words(&r, l))
                    )
                })
                .collect();
            format!(
                "{{\"when\":{},\"policy\":\"{}\",\"from\":[{}],\"to\":[{}],\"notes\":[{}],\"removed\":{},\"kept\":{},\"conflicts\":{},\"paths\":[{}]}}",
                r.when,
                r.policy,
                ids(r.old.iter().map(|l| l.id.to_string()).collect()),
                ids(r.new.iter().map(|i| i.to_string()).collect()),
                ids(r.notes.clone()),
                r.counts[0],
                r.counts[1],
                r.counts[2],
                paths.join(",")
            )
        }
        _ => "null".into(),
    };
    format!("{{\"manifest\":\"{word}\",\"why\":{why},\"pending\":{pending},\"last\":{last}}}")
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
