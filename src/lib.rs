//! overlay-init: a multi-call binary, chosen by argv[0] (as fstools'
//! factoryreset is): PID 1 → the pre-init; `overlay-status` → the status
//! tool; `overlay-init status ...` works too.
//!
//! The crate is a library with a thin `main.rs`, so that the fuzz targets
//! (tests/fuzz/) and host commands reach the parsers. The PID-1 lint policy (no
//! unwrap, expect, panic or indexing outside tests) lives in Cargo.toml
//! `[lints]` and clippy.toml.

/// The log macros of the crate: `log`'s, without the module path and the
/// target per call site that `crate::info!` and co. build (the logger,
/// kmsg.rs, prints the level and the message only), through one function
/// ([`kmsg::log`]).
#[macro_export]
macro_rules! info {
    ($($a:tt)+) => { $crate::kmsg::log(::log::Level::Info, ::std::format_args!($($a)+)) };
}
/// See [`info!`].
#[macro_export]
macro_rules! warn {
    ($($a:tt)+) => { $crate::kmsg::log(::log::Level::Warn, ::std::format_args!($($a)+)) };
}
/// See [`info!`].
#[macro_export]
macro_rules! error {
    ($($a:tt)+) => { $crate::kmsg::log(::log::Level::Error, ::std::format_args!($($a)+)) };
}
/// The boot's details: each step as its shell line, the stage times, the
/// routine findings. Always in /dev/kmsg (`dmesg`), at KERN_DEBUG, so that
/// the console stays quiet at the kernel's default loglevel (a serial
/// console at 115200 baud costs 87 µs a byte of boot time): shown there
/// only with `loglevel=8` or `overlay.debug=1`.
#[macro_export]
macro_rules! detail {
    ($($a:tt)+) => { $crate::kmsg::log(::log::Level::Debug, ::std::format_args!($($a)+)) };
}
/// Only with `overlay.debug=1`: what a developer wants besides the details.
#[macro_export]
macro_rules! debug {
    ($($a:tt)+) => { $crate::kmsg::log(::log::Level::Trace, ::std::format_args!($($a)+)) };
}

pub mod backend;
pub mod boot;
pub mod cmdline;
pub mod config;
pub mod crc32;
pub mod devices;
pub mod error;
pub mod fixed;
pub mod flash;
pub mod fsio;
pub mod json;
pub mod kmsg;
pub mod le;
pub mod modules;
pub mod openwrt;
pub mod paths;
pub mod pid1;
pub mod plan;
pub mod probe;
pub mod reason;
pub mod recovery;
pub mod reset;
pub mod state;
pub mod status;
pub mod switch;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod upgrade;
pub mod walk;
pub mod wear;

const USAGE: &str = "overlay-init: pre-init for a squashfs + flash overlay root.
Run by the kernel as PID 1 (/init in an initramfs, or init=). As a command:
  overlay-status [--json] [--wear]  how this boot's root was assembled
  overlay-reset [-y] ...      factory reset at the next boot (--help)
  overlay-wear-monitor ...    watch the flash write rate (--help)
  overlay-init status|reset|wear-monitor   the same
  overlay-init manifest ROOTDIR [-o FILE]  an image's manifest (--help)
  overlay-init --version
";

/// The entry point of every role: PID 1 (the pre-init), or a command
/// chosen by argv[0]. Never returns.
///
/// PID 1 is decided first, by a raw getpid(2), before anything else runs
/// (argument parsing included): `pid1::main` installs the fault handler as
/// its first act, and reads its arguments as bytes. (`std::env::args()`
/// panics on a word that is not UTF-8, and the kernel passes the command
/// line's bytes as they are: that killed PID 1, issue 11 defect 2.)
pub fn main() -> ! {
    if rustix::process::getpid().is_init() {
        pid1::main();
    }
    kmsg::init_cli("overlay-init");
    // A command's output piped into `head` must end it quietly, not make
    // print! panic on EPIPE (std ignores SIGPIPE at start).
    // SAFETY: single-threaded here; SIG_DFL is always a valid disposition.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = argv
        .first()
        .map(|a| role(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .unwrap_or_default();
    // The commands take text. A word that is not UTF-8 is refused by
    // position, never converted lossily (a changed `--keep` path would
    // keep another file than the one named).
    let rest = match utf8_args(argv.get(1..).unwrap_or(&[])) {
        Ok(rest) => rest,
        Err(n) => {
            eprintln!("overlay-init: argument {n} is not valid UTF-8 text");
            std::process::exit(2);
        }
    };
    let code = match name {
        b"overlay-status" => status::main(&rest),
        b"overlay-reset" => reset::cli::main(&rest),
        b"overlay-wear-monitor" => wear_monitor(&rest),
        // OpenWrt's names (fstools): firstboot, jffs2reset, jffs2mark, ...
        n if openwrt::names::lookup(n).is_some() => openwrt::names::main(n, &rest),
        _ => match rest.first().map(String::as_str) {
            Some("status") => status::main(rest.get(1..).unwrap_or(&[])),
            Some("reset") => reset::cli::main(rest.get(1..).unwrap_or(&[])),
            Some("wear-monitor") => wear_monitor(rest.get(1..).unwrap_or(&[])),
            #[cfg(feature = "test-hooks")]
            Some("recovery-selftest") => recovery::selftest::main(rest.get(1..).unwrap_or(&[])),
            Some("manifest") => upgrade::manifest::main(rest.get(1..).unwrap_or(&[])),
            Some("--version") => {
                println!("overlay-init {}", env!("CARGO_PKG_VERSION"));
                0
            }
            Some("-h" | "--help") => {
                print!("{USAGE}");
                0
            }
            _ => {
                eprint!("{USAGE}");
                1
            }
        },
    };
    std::process::exit(code);
}

/// The role a program name selects: argv[0]'s last path component, bytes.
pub fn role(argv0: &[u8]) -> &[u8] {
    argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0)
}

/// The arguments as text, or the position (1 = the first after argv[0]) of
/// the first that is not UTF-8.
pub fn utf8_args(args: &[std::ffi::OsString]) -> Result<Vec<String>, usize> {
    args.iter()
        .enumerate()
        .map(|(i, a)| a.to_str().map(str::to_string).ok_or(i + 1))
        .collect()
}

/// The monitor logs to the kernel log (dmesg, syslog) and the console, like
/// the pre-init, not to stderr only.
fn wear_monitor(args: &[String]) -> i32 {
    kmsg::init("overlay-wear-monitor", log::LevelFilter::Info);
    kmsg::reinit(&paths::SysRoot::host(), false);
    wear::daemon::main(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn the_role_is_the_last_component_of_argv0_in_bytes() {
        assert_eq!(
            role(b"/run/overlay-init/bin/overlay-status"),
            b"overlay-status"
        );
        assert_eq!(role(b"overlay-reset"), b"overlay-reset");
        assert_eq!(role(b"/init"), b"init");
        assert_eq!(role(b"dir/"), b"");
        assert_eq!(role(b"/x/caf\xe9"), b"caf\xe9");
    }

    #[test]
    fn a_word_that_is_not_utf8_is_refused_by_position_not_changed() {
        let ok = [OsString::from("--keep"), OsString::from("/etc/a")];
        assert_eq!(utf8_args(&ok), Ok(vec!["--keep".into(), "/etc/a".into()]));
        let bad = [
            OsString::from("--keep"),
            OsString::from_vec(b"/etc/caf\xe9".to_vec()),
        ];
        assert_eq!(utf8_args(&bad), Err(2));
    }
}
