#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![deny(clippy::undocumented_unsafe_blocks)]
//! overlay-init: a multi-call binary, chosen by argv[0] (as fstools'
//! factoryreset is): PID 1 → the pre-init; `overlay-status` → the status
//! tool; `overlay-init status ...` works too.

mod boot;
mod cmdline;
mod config;
mod devices;
mod error;
mod fixed;
mod flash;
mod kmsg;
mod modules;
mod paths;
mod pid1;
mod plan;
mod probe;
mod reset;
mod state;
mod status;
mod switch;
mod sys;
#[cfg(test)]
mod testutil;
mod wear;

const USAGE: &str = "overlay-init: pre-init for a squashfs + flash overlay root.
Run by the kernel as PID 1 (/init in an initramfs, or init=). As a command:
  overlay-status [--json] [--wear]  how this boot's root was assembled
  overlay-reset [-y] ...      factory reset at the next boot (--help)
  overlay-wear-monitor ...    watch the flash write rate (--help)
  overlay-init status|reset|wear-monitor   the same
  overlay-init --version
";

fn main() {
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
        _ => match rest.first().map(String::as_str) {
            Some("status") => status::main(rest.get(1..).unwrap_or(&[])),
            Some("reset") => reset::cli::main(rest.get(1..).unwrap_or(&[])),
            Some("wear-monitor") => wear_monitor(rest.get(1..).unwrap_or(&[])),
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
