//! `overlay-reset`: records a factory-reset request for the next boot.

use super::wipe::{Pending, ResetArea};
use super::{parse_keep_file, validate_pattern, KeepSet, KEEP_FILE, MAX_KEEP_FILE};
use crate::paths;
use crate::state::{BootState, Upper};
use crate::walk::{self, Entry, Kind, Limits, Problem, Step, Visitor};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// The largest state file read (/run/overlay-init/state is a few hundred bytes).
const MAX_STATE_FILE: usize = 64 * 1024;

/// The dry run lists trees this deep (paths this long); deeper parts are
/// said ("skip"), never silently left out.
pub const DRY_RUN_LIMITS: Limits = Limits {
    max_depth: 4096,
    max_path: 64 * 1024,
    deadline: None,
};

const HELP: &str =
    "usage: overlay-reset [-y] [--no-reboot] [--keep PATH]... [--keep-none] [--dry-run] [--cancel]
       overlay-reset --path PATH... [-y] [--no-reboot] [--dry-run]
       overlay-reset --format [-y] [--no-reboot]

Factory reset: at the next boot, everything in the writable layer (the upper
on flash) is erased, so the root shows the read-only firmware again. Hidden
files included. The reset is safe against power loss at any instant: a cut
boot finishes it at the next boot, and a finished reset is never repeated.

  -y, --yes      do not ask for confirmation (required without a terminal)
  --no-reboot    only schedule the reset; it happens at the next boot
  --keep PATH    keep PATH (absolute; a glob like /etc/dropbear/* works) through
                 the reset; repeatable. Added to the keep list in
                 /etc/overlay-reset.keep (one path or glob a line, # comments)
  --keep-none    do not read /etc/overlay-reset.keep: keep only what --keep names
  --path PATH    remove only PATH from the writable layer (absolute; globs
                 as --keep; repeatable; added to a revert already pending):
                 the firmware's version shows again, everything else stays.
                 E.g. take the new image's version of a file in conflict
                 after an upgrade (overlay-status --upgrade)
  --dry-run      list what would be removed and what kept; change nothing
  --cancel       withdraw a pending reset or revert
  --format       reclaim a data partition that holds something unrecognised
                 (this boot runs on RAM because of it): mark it for formatting
                 (OpenWrt's 0xdeadc0de marker); the next boot formats it.
                 Everything on it is lost; refused while it is in use
  -h, --help     this text

The kernel command line can ask for a reset too: overlay.reset=1 (or
systemd.factory_reset=1), with the same keep list.
Exit status: 0 done, 1 refused or failed, 2 bad arguments.
";

#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    yes: bool,
    no_reboot: bool,
    dry_run: bool,
    cancel: bool,
    format: bool,
    keep_none: bool,
    keep: Vec<String>,
    paths: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-y" | "--yes" => a.yes = true,
            "--no-reboot" => a.no_reboot = true,
            "--dry-run" | "-n" => a.dry_run = true,
            "--cancel" => a.cancel = true,
            "--format" => a.format = true,
            "--keep-none" => a.keep_none = true,
            "--keep" | "--path" => {
                let p = it.next().ok_or_else(|| format!("{arg} needs a path"))?;
                validate_pattern(p).map_err(|e| format!("{arg} {p}: {e}"))?;
                if arg == "--keep" {
                    a.keep.push(p.clone());
                } else {
                    a.paths.push(p.clone());
                }
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.cancel && (a.dry_run || a.keep_none || !a.keep.is_empty()) {
        return Err("--cancel takes no other option".into());
    }
    if a.format
        && (a.cancel || a.dry_run || a.keep_none || !a.keep.is_empty() || !a.paths.is_empty())
    {
        return Err("--format takes only -y and --no-reboot".into());
    }
    if !a.paths.is_empty() && (a.cancel || !a.keep.is_empty()) {
        return Err("--path takes no --keep or --cancel (nothing else is removed)".into());
    }
    Ok(Some(a))
}

fn refuse(msg: &str) -> i32 {
    eprintln!("overlay-reset: {msg}");
    1
}

pub fn main(args: &[String]) -> i32 {
    let a = match parse_args(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return 0;
        }
        Err(e) => {
            eprintln!("overlay-reset: {e}\n\n{HELP}");
            return 2;
        }
    };
    if !rustix::process::geteuid().is_root() {
        return refuse("must be run as root");
    }
    let state = match read_state() {
        Ok(s) => s,
        Err(e) => return refuse(&e),
    };
    if a.format {
        return format(&a, &state);
    }
    match &state.upper {
        Upper::Flash { .. } => {}
        Upper::Tmpfs { .. } => {
            return refuse(
                "the upper layer is a tmpfs: nothing to reset (changes are already lost at reboot)",
            )
        }
        Upper::None { .. } => {
            return refuse("the root is read-only: there is no upper layer to reset")
        }
    }
    let data = Path::new(paths::OVERLAY);
    if a.cancel {
        // No reset area at all: nothing was ever requested.
        let removed = ResetArea::open(data, false).map_or(Ok(false), |ar| ar.remove_request());
        return match removed {
            Ok(true) => {
                println!("overlay-reset: the pending reset is cancelled");
                0
            }
            Ok(false) => {
                println!("overlay-reset: no reset is pending");
                0
            }
            Err(e) => refuse(&format!("cannot cancel: {e}")),
        };
    }
    if !a.paths.is_empty() {
        return revert(&a, data);
    }
    // Read like a record: a regular file (a FIFO would block), bounded.
    let read = if a.keep_none {
        Ok(None)
    } else {
        crate::fsio::read_path(Path::new(KEEP_FILE), MAX_KEEP_FILE)
    };
    let mut keep = match read {
        Ok(None) => Vec::new(),
        Ok(Some(b)) => match std::str::from_utf8(&b) {
            Err(_) => return refuse(&format!("{KEEP_FILE}: not UTF-8")),
            Ok(t) => match parse_keep_file(t) {
                Ok(k) => k,
                Err(e) => return refuse(&format!("{KEEP_FILE}: {e}")),
            },
        },
        Err(e) => return refuse(&format!("{KEEP_FILE}: {e}")),
    };
    keep.extend(a.keep.iter().cloned());
    if a.dry_run {
        return dry_run(data, &keep);
    }
    let area = match open_area(data) {
        Ok(ar) => ar,
        Err(code) => return code,
    };
    let question = format!(
        "Erase all changes to this system at the next boot{}?",
        if keep.is_empty() {
            String::new()
        } else {
            format!(" (keeping {})", keep.join(", "))
        }
    );
    if let Err(e) = confirm(a.yes, &question) {
        return refuse(e);
    }
    let req = match area.write_request(keep) {
        Ok(r) => r,
        Err(e) => return refuse(&format!("cannot record the request: {e}")),
    };
    println!("overlay-reset: reset #{} scheduled for the next boot (keeping {} path(s)); cancel with overlay-reset --cancel", req.seq, req.keep.len());
    if a.no_reboot {
        return 0;
    }
    reboot("the reset")
}

/// The reset area on the data filesystem at `data`, made if missing; the
/// exit status of the refusal when it cannot be opened.
fn open_area(data: &Path) -> Result<ResetArea, i32> {
    ResetArea::open(data, true).map_err(|e| {
        refuse(&format!(
            "cannot open {}/{}: {e}",
            data.display(),
            super::RESET_DIR
        ))
    })
}

/// `--path`: schedule (or, with `--dry-run`, list) the removal of those
/// paths from the upper at the next boot.
fn revert(a: &Args, data: &Path) -> i32 {
    if a.dry_run {
        return dry_run_with(data, &a.paths, true);
    }
    let area = match open_area(data) {
        Ok(ar) => ar,
        Err(code) => return code,
    };
    let question = format!(
        "Remove {} from the writable layer at the next boot (the firmware's version shows again)?",
        a.paths.join(", ")
    );
    if let Err(e) = confirm(a.yes, &question) {
        return refuse(e);
    }
    let req = match area.write_revert(a.paths.clone()) {
        Ok(r) => r,
        Err(e) => return refuse(&format!("cannot record the request: {e}")),
    };
    println!(
        "overlay-reset: revert #{} scheduled for the next boot: {}; cancel with overlay-reset --cancel",
        req.seq,
        req.revert.join(", ")
    );
    if a.no_reboot {
        return 0;
    }
    reboot("the revert")
}

/// This boot's state (/run/overlay-init/state); `Err` says why there is none.
pub fn read_state() -> Result<BootState, String> {
    crate::fsio::read_path(Path::new(paths::STATE_FILE), MAX_STATE_FILE)
        .map_err(|e| e.to_string())
        .and_then(|b| b.ok_or_else(|| "no such file".to_string()))
        .and_then(|b| BootState::parse(&String::from_utf8_lossy(&b)).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "cannot read {}: {e} (was this system booted by overlay-init?)",
                paths::STATE_FILE
            )
        })
}

/// Asks on the terminal unless `yes`. `Err` is why not to go on.
fn confirm(yes: bool, question: &str) -> Result<(), &'static str> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err("refusing without confirmation: no terminal to ask on; pass -y");
    }
    print!("{question} Type yes: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() != "yes" {
        return Err("not confirmed; nothing changed");
    }
    Ok(())
}

fn reboot(what: &str) -> i32 {
    println!("overlay-reset: rebooting");
    // SAFETY: overlay-reset is single-threaded; no hook.
    match unsafe { crate::sys::spawn::Program::new("reboot").status(None) } {
        Ok(s) if s.success() => 0,
        Ok(s) => refuse(&format!(
            "reboot failed ({s}); {what} happens at the next boot"
        )),
        Err(e) => refuse(&format!(
            "cannot run reboot: {e}; {what} happens at the next boot"
        )),
    }
}

/// `--format`: mark the data partition for formatting at the next boot.
fn format(a: &Args, state: &BootState) -> i32 {
    use super::format::{find_target, in_use, write_marker};
    if let Some(why) = in_use(state) {
        return refuse(&why);
    }
    let target = match find_target(&crate::paths::SysRoot::host()) {
        Ok(t) => t,
        Err(e) => return refuse(&e),
    };
    let dev = target.node().display().to_string();
    if let Err(e) = confirm(
        a.yes,
        &format!("Erase everything on {dev} (the next boot formats it)?"),
    ) {
        return refuse(e);
    }
    if let Err(e) = write_marker(&target) {
        return refuse(&e);
    }
    println!("overlay-reset: {dev} is marked for formatting; the next boot formats it and uses it as the upper");
    if a.no_reboot {
        return 0;
    }
    reboot("the format")
}

/// The dry run's walk: each entry of the upper as `remove PATH` (a
/// directory with a `/`) or `keep   PATH`; what cannot be walked as
/// `skip   PATH: why`. Paths are escaped ([`walk::escape_into`]).
struct DryRun<'a, W: Write> {
    set: &'a KeepSet,
    /// `set` names what to remove (`--path`), not what to keep.
    revert: bool,
    out: W,
    line: String,
    removed: u64,
    kept: u64,
    skipped: u64,
}

impl<W: Write> DryRun<'_, W> {
    fn say(&mut self, what: &str, path: &[u8], tail: &str) {
        self.line.clear();
        self.line.push_str(what);
        self.line.push('/');
        walk::escape_into(&mut self.line, path);
        self.line.push_str(tail);
        self.line.push('\n');
        let _ = self.out.write_all(self.line.as_bytes());
    }
}

impl<W: Write> Visitor for DryRun<'_, W> {
    fn enter(&mut self, e: &Entry<'_>) -> Step {
        let dir = e.kind == Kind::Dir;
        if self.revert {
            return if self.set.keeps(e.path) {
                self.say("remove ", e.path, if dir { "/" } else { "" });
                self.removed += 1;
                Step::Next
            } else if dir && self.set.may_keep_below(e.path) {
                Step::Into
            } else {
                Step::Next
            };
        }
        if self.set.keeps(e.path) {
            self.say("keep   ", e.path, "");
            self.kept += 1;
            return Step::Next;
        }
        if !dir || !self.set.may_keep_below(e.path) {
            self.say("remove ", e.path, if dir { "/" } else { "" });
            self.removed += 1;
        }
        Step::Into
    }

    fn problem(&mut self, path: &[u8], p: Problem) {
        self.say("skip   ", path, &format!(": {p}"));
        self.skipped += 1;
    }
}

/// Lists the upper's entries as `remove PATH` or `keep PATH`, changing
/// nothing. The upper is walked like the wipe walks it: by directory fds
/// from the data filesystem at `data`, never following a symlink (so it
/// cannot be raced through one), never crossing a mount, to any depth
/// within [`DRY_RUN_LIMITS`] (beyond: said). Entries come in directory
/// order. Exit 0 when everything was listed. Public for the fuzz target
/// over generated trees (tests/fuzz/).
pub fn dry_run(data: &Path, keep: &[String]) -> i32 {
    dry_run_with(data, keep, false)
}

/// [`dry_run`] of a reset keeping `set`, or (`revert`) of a revert of `set`.
fn dry_run_with(data: &Path, set: &[String], revert: bool) -> i32 {
    let upper = rustix::fs::open(
        data,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .and_then(|root| {
        walk::open_subdir(
            rustix::fd::AsFd::as_fd(&root),
            std::ffi::OsStr::new("upper"),
        )
    });
    let upper = match upper {
        Ok(fd) => fd,
        Err(e) => return refuse(&format!("cannot open {}/upper: {e}", data.display())),
    };
    let set = KeepSet::new(set);
    let mut v = DryRun {
        set: &set,
        revert,
        out: std::io::stdout().lock(),
        line: String::new(),
        removed: 0,
        kept: 0,
        skipped: 0,
    };
    let out = walk::walk(rustix::fd::AsFd::as_fd(&upper), &DRY_RUN_LIMITS, &mut v);
    let complete = out.is_ok_and(|o| o.end == walk::End::Done) && v.skipped == 0;
    let _ = writeln!(
        v.out,
        "overlay-reset: dry run: {} to remove, {} to keep{}; nothing changed",
        v.removed,
        v.kept,
        if complete {
            String::new()
        } else {
            format!(
                ", {} part(s) not listed (see the skip lines)",
                v.skipped.max(1)
            )
        }
    );
    let _ = v.out.flush();
    if complete {
        0
    } else {
        1
    }
}

/// One line for overlay-status about a pending reset.
pub fn pending_line(data: &Path) -> Option<String> {
    let area = ResetArea::open(data, false).ok()?;
    match area.pending().ok()? {
        Pending::Request(r) if !r.revert.is_empty() => Some(format!(
            "reset:      PENDING: revert #{} at the next boot: {}",
            r.seq,
            r.revert.join(", ")
        )),
        Pending::Request(r) => Some(format!(
            "reset:      PENDING: reset #{} at the next boot (keeping {} path(s))",
            r.seq,
            r.keep.len()
        )),
        Pending::Corrupt(e) => Some(format!(
            "reset:      an unusable request record ({e}): it will be ignored"
        )),
        Pending::None | Pending::Stale(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = args(&["-y", "--keep", "/etc/config/*", "--no-reboot"])
            .unwrap()
            .unwrap();
        assert!(a.yes && a.no_reboot && !a.dry_run);
        assert_eq!(a.keep, ["/etc/config/*"]);
        assert_eq!(args(&["--help"]), Ok(None));
        assert!(args(&["--keep"]).is_err());
        assert!(args(&["--keep", "etc/x"])
            .unwrap_err()
            .contains("not an absolute path"));
        assert!(args(&["--keep", "/etc/../x"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--cancel", "--dry-run"]).is_err());
        let a = args(&["-y", "--keep-none", "--keep", "/sysupgrade.tgz"])
            .unwrap()
            .unwrap();
        assert!(a.keep_none && a.yes);
        assert!(args(&["--format", "--keep-none"]).is_err());
        assert!(args(&["--cancel", "--keep-none"]).is_err());
        let a = args(&["--path", "/etc/a", "--path", "/etc/b/*", "-y"])
            .unwrap()
            .unwrap();
        assert_eq!(a.paths, ["/etc/a", "/etc/b/*"]);
        assert!(a.keep.is_empty());
        assert!(args(&["--path"]).is_err());
        assert!(args(&["--path", "rel"]).unwrap_err().contains("--path rel"));
        assert!(args(&["--path", "/a", "--keep", "/b"]).is_err());
        assert!(args(&["--path", "/a", "--cancel"]).is_err());
        assert!(args(&["--path", "/a", "--format"]).is_err());
        assert!(args(&["--path", "/a", "--dry-run"]).is_ok());
    }
}
