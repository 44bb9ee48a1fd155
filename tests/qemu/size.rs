//! The size budget of the armv7 binary (issue 5): every role (pre-init,
//! overlay-status, overlay-reset) in one static executable that sits in the
//! initramfs of devices with a few MiB of flash.

use crate::harness::repo;

/// The build fails above this (bytes): a guard against growth nobody
/// meant, not the goal. It was 300 KiB while the binary was 240 KiB; the
/// firmware upgrades, recovery and OpenWrt roles (issues 12, 13, 15) took
/// it to 345 KiB, and this round's cuts back to 313 KiB (320,768 bytes).
/// The goal is still [`TARGET`] (issue 14, open).
pub const BUDGET: u64 = 320 * 1024;
/// The test-only keys (feature test-hooks).
const TEST_HOOK_KEYS: &[&str] = &[
    "test_crash",
    "test_fault",
    "test_hang",
    "test_slow",
    "recovery-selftest",
];

/// What we aim at; above it the test prints a warning, not a failure.
pub const TARGET: u64 = 256 * 1024;

#[test]
#[ignore = "needs the ARM build: run qemu/test.sh"]
fn armv7_binary_is_within_the_size_budget() {
    let bin = repo().join("target/armv7-unknown-linux-musleabihf/release/overlay-init");
    let size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("{}: {e}: run qemu/build-binary.sh", bin.display()))
        .len();
    eprintln!(
        "armv7 overlay-init: {size} bytes ({} KiB); budget {} KiB, target {} KiB",
        size / 1024,
        BUDGET / 1024,
        TARGET / 1024
    );
    if size > TARGET {
        eprintln!("warning: above the {} KiB target", TARGET / 1024);
    }
    // Test-only hooks are compiled into the test build only (feature
    // test-hooks, qemu/build-binary.sh --test-hooks): none of their keys may
    // be in the release binary.
    let bytes = std::fs::read(&bin).unwrap();
    for key in TEST_HOOK_KEYS {
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the release binary contains the test-only key {key}"
        );
    }
    assert!(
        size <= BUDGET,
        "overlay-init is {size} bytes, over the {BUDGET}-byte budget: \
         qemu/bench.sh lists the biggest contributors"
    );
}
