//! What `overlay-status --upgrade`, its `"upgrade"` JSON member and
//! `overlay-status --changes` show.
//!
//! `--upgrade`:
//! ```text
//! manifest: recorded
//! last upgrade: 2026-11-30 12:00:00, policy merge
//! from: squashfs 5120 KiB #1a2b3c4d
//! to: squashfs 5120 KiB #5e6f7a8b +manifest
//! 2 removed, 1 kept, 1 conflicts
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
#[inline(never)]
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
    ("recorded", String::new())
}

/// The words after a line's path.
#[inline(never)]
pub fn words(r: &Report, l: &record::Line) -> String {
    let mut w = String::from(l.why.words());
    let (say, at) = match l.news {
        News::None => ("", false),
        News::Changed => ("; the new image changed it: ", true),
        News::Removed => ("; the new image removed it", false),
        News::Added => ("; the new image adds it: ", true),
        News::AddsInside(_) => ("; it hides ", false),
        News::Shadows => ("; it shadows ", true),
    };
    w.push_str(say);
    if at {
        w.push_str(&record::new_version_at(r, l));
    }
    if let News::AddsInside(k) = l.news {
        num(&mut w, k.into());
        w.push_str(" new entries of the new image");
    }
    w
}

/// Text built by pieces: one small call each, where every `write!` would
/// cost its own formatting code in the binary.
fn num(s: &mut String, n: u64) {
    let _ = write!(s, "{n}");
}

fn push_all(s: &mut String, parts: &[&str]) {
    for p in parts {
        s.push_str(p);
    }
}

/// The upgrade view: the text of `--upgrade`, or the JSON member.
#[inline(never)]
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
    let q = |x: &str| if json { js(x) } else { x.to_string() };
    if json {
        let why = if why.is_empty() {
            "null".into()
        } else {
            js(&why)
        };
        let p = if pending { "true" } else { "false" };
        push_all(
            &mut s,
            &[
                "{\"manifest\":\"",
                word,
                "\",\"why\":",
                &why,
                ",\"pending\":",
                p,
                ",\"last\":",
            ],
        );
    } else {
        push_all(&mut s, &["manifest: ", word]);
        if !why.is_empty() {
            push_all(&mut s, &[" (", &why, ")"]);
        }
        s.push('\n');
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
            if json {
                s.push_str("null}");
            } else {
                push_all(&mut s, &["last upgrade: ", &why, "\n"]);
            }
            return s;
        }
    };
    let when = show_time(r.when);
    let (open, close, eol) = if json { ("[", "]", "") } else { ("", "", "\n") };
    if json {
        s.push_str("{\"when\":");
        num(&mut s, r.when);
        push_all(
            &mut s,
            &[
                ",\"time\":\"",
                &when,
                "\",\"policy\":\"",
                r.policy.name(),
                "\"",
            ],
        );
    } else {
        push_all(
            &mut s,
            &["last upgrade: ", &when, ", policy ", r.policy.name(), "\n"],
        );
    }
    let from: Vec<String> = r.old.iter().map(|l| l.id.to_string()).collect();
    let to: Vec<String> = r.new.iter().map(|i| i.to_string()).collect();
    for (k, v) in [("from", &from), ("to", &to), ("notes", &r.notes)] {
        if json {
            push_all(&mut s, &[",\"", k, "\":", open]);
        }
        for (i, x) in v.iter().enumerate() {
            if json && i > 0 {
                s.push(',');
            }
            if !json {
                push_all(&mut s, &[k.trim_end_matches('s'), ": "]);
            }
            push_all(&mut s, &[&q(x), eol]);
        }
        s.push_str(close);
    }
    for (k, n) in ["removed", "kept", "conflicts"].iter().zip(r.counts) {
        if json {
            push_all(&mut s, &[",\"", k, "\":"]);
            num(&mut s, n);
        } else {
            s.push_str(if *k == "removed" { "" } else { ", " });
            num(&mut s, n);
            push_all(&mut s, &[" ", k]);
        }
    }
    push_all(&mut s, &[if json { ",\"paths\":[" } else { "\n" }]);
    for (i, l) in r.lines.iter().enumerate() {
        let (word, path, words) = (l.class.word(), show_path(&l.path), words(&r, l));
        if json {
            if i > 0 {
                s.push(',');
            }
            push_all(
                &mut s,
                &[
                    "{\"class\":\"",
                    word,
                    "\",\"path\":",
                    &js(&path),
                    ",\"words\":",
                    &js(&words),
                    "}",
                ],
            );
        } else {
            push_all(
                &mut s,
                &[
                    "  ",
                    word,
                    &"        "[word.len().min(8)..],
                    " ",
                    &path,
                    " (",
                    &words,
                    ")\n",
                ],
            );
        }
    }
    let more = r
        .counts
        .iter()
        .sum::<u64>()
        .saturating_sub(r.lines.len() as u64);
    if json {
        s.push_str("],\"not_listed\":");
        num(&mut s, more);
        s.push_str("}}");
    } else if more > 0 {
        s.push_str("  ... and ");
        num(&mut s, more);
        s.push_str(" more, not listed\n");
    }
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
        let inside = mine
            .iter()
            .any(|d| path.starts_with(d) && path.get(d.len()) == Some(&b'/'));
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
    let _ = writeln!(
        out,
        "{copies} unchanged copies of the lowers' files (not listed)"
    );
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
