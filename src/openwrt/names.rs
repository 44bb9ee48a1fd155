//! OpenWrt's names for fstools' tools, answered by this binary (argv[0],
//! src/lib.rs), with fstools' flags (factoryreset.c, mount_root.c):
//!
//! | name and flags | overlay-init |
//! | --- | --- |
//! | `firstboot`, `jffs2reset`, `factoryreset` `[-y] [-r] [-k]` | `overlay-reset -y`: the full reset at the next boot, hidden files included; `-k` keeps `/sysupgrade.tgz`; without `-r` no reboot (fstools' default). When the flash is not the upper in use, fstools marks the partition instead: `overlay-reset --format` |
//! | `jffs2mark [-y] [-r] [-k]` | the flash not in use: `overlay-reset --format` (now on UBI too: the volume is emptied). In use as the upper: `overlay-reset --keep-none`, everything above the firmware erased at the next boot, the keep list ignored |
//! | `mount_root [start\|ram\|stop\|done]` | nothing to do: rc 0 (rc 1 on a system overlay-init did not boot) |
//!
//! Without `-y` the question is fstools' `[N/y]`, answered by one `y`.

use crate::reset::cli;
use crate::state::Upper;
use std::io::{Read, Write};

/// The names answered here.
pub const NAMES: [&str; 5] = [
    "firstboot",
    "jffs2reset",
    "factoryreset",
    "jffs2mark",
    "mount_root",
];

/// fstools' getopt("yrk").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub yes: bool,
    pub reboot: bool,
    pub keep: bool,
}

/// `-y -r -k`, also joined (`-yr`). `None`: anything else, `-h` included
/// (fstools ignores unknown options; here a typo changes nothing).
pub fn parse_flags(args: &[String]) -> Option<Flags> {
    let mut f = Flags::default();
    for a in args {
        let letters = a.strip_prefix('-').filter(|l| !l.is_empty())?;
        for c in letters.bytes() {
            match c {
                b'y' => f.yes = true,
                b'r' => f.reboot = true,
                b'k' => f.keep = true,
                _ => return None,
            }
        }
    }
    Some(f)
}

/// The `overlay-reset` arguments for a reset (`mark`: jffs2mark) with
/// `flags`, when the flash is (`in_use`) or is not the upper in use. Pure.
pub fn reset_args(mark: bool, flags: Flags, in_use: bool) -> Vec<&'static str> {
    let mut v = Vec::new();
    if in_use {
        v.push("-y");
        if mark {
            v.push("--keep-none");
        }
        if flags.keep {
            v.extend(["--keep", super::fs_state::KEEP_ON_PENDING]);
        }
    } else {
        v.extend(["--format", "-y"]);
    }
    if !flags.reboot {
        v.push("--no-reboot");
    }
    v
}

/// fstools' question: one byte read, `y` goes on.
fn ask(mark: bool) -> bool {
    eprint!(
        "This erases {} at the next boot. Are you sure? [N/y] ",
        if mark {
            "everything on the data partition"
        } else {
            "all settings and installed packages"
        }
    );
    let _ = std::io::stderr().flush();
    let mut b = [0u8];
    matches!(std::io::stdin().read(&mut b), Ok(1)) && b == [b'y']
}

/// The name of [`NAMES`] a role (argv[0]'s last component, bytes) is.
pub fn lookup(role: &[u8]) -> Option<&'static str> {
    NAMES.into_iter().find(|n| n.as_bytes() == role)
}

/// Runs the tool `role` names (one of [`NAMES`]) with `args`; returns the
/// exit status.
pub fn main(role: &[u8], args: &[String]) -> i32 {
    // (Only called for one of NAMES; anything else does nothing, as mount_root.)
    let name = lookup(role).unwrap_or("mount_root");
    if name == "mount_root" {
        return mount_root(args);
    }
    let mark = name == "jffs2mark";
    let Some(flags) = parse_flags(args) else {
        eprintln!("usage: {name} [-y] [-r] [-k]: -y no question, -r reboot, -k keep /sysupgrade.tgz (overlay-reset --help)");
        return 2;
    };
    if !flags.yes && !ask(mark) {
        eprintln!("{name}: not confirmed; nothing changed");
        return 1;
    }
    // No state: overlay-reset refuses, saying why.
    let in_use = cli::read_state().is_ok_and(|s| matches!(s.upper, Upper::Flash { .. }));
    if flags.keep && !in_use {
        eprintln!("{name}: -k: nothing is kept through a format");
    }
    let args: Vec<String> = reset_args(mark, flags, in_use)
        .into_iter()
        .map(String::from)
        .collect();
    cli::main(&args)
}

/// `mount_root`: the root was assembled at boot; every command is done.
fn mount_root(args: &[String]) -> i32 {
    let cmd = args.first().map_or("start", String::as_str);
    if !matches!(cmd, "start" | "ram" | "stop" | "done") {
        eprintln!("mount_root: unknown command {cmd}");
        return 1;
    }
    if let Err(e) = cli::read_state() {
        eprintln!("mount_root: {e}; nothing mounted (boot with init=/sbin/overlay-init)");
        return 1;
    }
    if matches!(cmd, "start" | "ram") {
        eprintln!(
            "mount_root: the root was assembled by overlay-init (overlay-status); nothing to do"
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(v: &[&str]) -> Option<Flags> {
        parse_flags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_by_role() {
        assert_eq!(lookup(b"jffs2mark"), Some("jffs2mark"));
        assert_eq!(lookup(b"firstboot"), Some("firstboot"));
        assert_eq!(lookup(b"overlay-reset"), None);
        assert_eq!(lookup(b"mount_root\0"), None);
    }

    #[test]
    fn fstools_flags() {
        let f = |yes, reboot, keep| Some(Flags { yes, reboot, keep });
        assert_eq!(flags(&[]), f(false, false, false));
        assert_eq!(flags(&["-y"]), f(true, false, false));
        assert_eq!(flags(&["-y", "-r", "-k"]), f(true, true, true));
        assert_eq!(flags(&["-yrk"]), f(true, true, true));
        assert_eq!(flags(&["-ky"]), f(true, false, true));
        for bad in [
            &["-x"][..],
            &["-yx"],
            &["y"],
            &["-"],
            &["--yes"],
            &["-y", "now"],
            &["-h"],
            &["--help"],
        ] {
            assert_eq!(flags(bad), None, "{bad:?}");
        }
    }

    /// Each name and flag set, on a system whose flash is the upper in use
    /// or not, gives these overlay-reset arguments.
    #[test]
    fn mapping_to_overlay_reset() {
        let f = |yes, reboot, keep| Flags { yes, reboot, keep };
        let table: [(bool, Flags, bool, &[&str]); 10] = [
            // firstboot -y / jffs2reset -y / factoryreset -y
            (false, f(true, false, false), true, &["-y", "--no-reboot"]),
            (false, f(true, true, false), true, &["-y"]),
            (
                false,
                f(true, false, true),
                true,
                &["-y", "--keep", "/sysupgrade.tgz", "--no-reboot"],
            ),
            (
                false,
                f(true, true, true),
                true,
                &["-y", "--keep", "/sysupgrade.tgz"],
            ),
            // not mounted: fstools marks the partition
            (
                false,
                f(true, false, false),
                false,
                &["--format", "-y", "--no-reboot"],
            ),
            (false, f(true, true, true), false, &["--format", "-y"]),
            // jffs2mark
            (
                true,
                f(true, false, false),
                true,
                &["-y", "--keep-none", "--no-reboot"],
            ),
            (
                true,
                f(true, true, true),
                true,
                &["-y", "--keep-none", "--keep", "/sysupgrade.tgz"],
            ),
            (
                true,
                f(true, false, false),
                false,
                &["--format", "-y", "--no-reboot"],
            ),
            (true, f(true, true, false), false, &["--format", "-y"]),
        ];
        for (mark, flags, in_use, want) in table {
            assert_eq!(
                reset_args(mark, flags, in_use),
                want,
                "{mark} {flags:?} {in_use}"
            );
        }
    }
}
