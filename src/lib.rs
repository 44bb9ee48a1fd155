//! overlay-init: a multi-call binary, chosen by argv[0] (as fstools'
//! factoryreset is): PID 1 → the pre-init; `overlay-status` → the status
//! tool; `overlay-init status ...` works too.
//!
//! The crate is a library with a thin `main.rs`, so that the fuzz targets
//! (fuzz/) and host commands reach the parsers. The PID-1 lint policy (no
//! unwrap, expect, panic or indexing outside tests) lives in Cargo.toml
//! `[lints]` and clippy.toml.

pub mod backend;
pub mod boot;
pub mod cmdline;
pub mod config;
pub mod devices;
pub mod error;
pub mod fixed;
pub mod flash;
pub mod fsio;
pub mod json;
pub mod kmsg;
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
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if rustix::process::getpid().is_init() {
        pid1::main();
    }
    kmsg::init_cli("overlay-init");
    let rest = args.get(1..).unwrap_or(&[]);
    let code = match name.as_str() {
        "overlay-status" => status::main(rest),
        "overlay-reset" => reset::cli::main(rest),
        "overlay-wear-monitor" => wear_monitor(rest),
        // OpenWrt's names (fstools): firstboot, jffs2reset, jffs2mark, ...
        n if openwrt::names::lookup(n.as_bytes()).is_some() => {
            openwrt::names::main(n.as_bytes(), rest)
        }
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

/// The monitor logs to the kernel log (dmesg, syslog) and the console, like
/// the pre-init, not to stderr only.
fn wear_monitor(args: &[String]) -> i32 {
    kmsg::init("overlay-wear-monitor", log::LevelFilter::Info);
    kmsg::reinit(&paths::SysRoot::host(), false);
    wear::daemon::main(args)
}
