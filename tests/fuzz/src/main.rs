//! Coverage-guided fuzzing (libFuzzer, through libfuzzer-sys) of every
//! parser of untrusted input in overlay-init, and of the reset's walks over
//! trees generated from the input. One binary, the target chosen by
//! `OVERLAY_FUZZ_TARGET` (one build and link for all of them); `tests/fuzz/run.sh`
//! builds it with the sanitizer-coverage flags, which are stable rustc
//! options, and runs the targets. See README.md, "Fuzzing".
//!
//! Each case is checked for:
//! - no panic (libFuzzer reports the abort and saves the input);
//! - no hang: libFuzzer's `-timeout` (run.sh sets it) bounds each case;
//! - no allocation beyond the target's bound: a counting global allocator
//!   ([`alloc`]) measures the peak of live heap bytes during the case.

#![no_main]

mod alloc;
mod targets;
mod tree;

use std::sync::OnceLock;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn target() -> &'static targets::Target {
    static T: OnceLock<&'static targets::Target> = OnceLock::new();
    T.get_or_init(|| {
        // The generated trees are removed with one fd per level (std's
        // remove_dir_all): the harness may use all the fds it is allowed;
        // the product code runs under PID 1's limit (tree::with_pid1_fd_limit).
        let mut nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        nofile.current = nofile.maximum;
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, nofile);
        let name = std::env::var("OVERLAY_FUZZ_TARGET").unwrap_or_default();
        targets::TARGETS
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = targets::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("OVERLAY_FUZZ_TARGET={name:?}: one of {}", names.join(", "));
                std::process::exit(2)
            })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let t = target();
    let peak = alloc::measure(|| (t.run)(data));
    assert!(
        peak <= t.max_heap,
        "target {}: {peak} bytes of heap at peak, over its bound of {} (input {} bytes)",
        t.name,
        t.max_heap,
        data.len()
    );
});
