#!/usr/bin/env bash
# Everything CI runs: host packages, host unit tests, the ARM build and the
# images of every QEMU board, and the QEMU boot tests (tests/qemu, #[ignore]d
# in a plain cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

./qemu/setup.sh
# PID 1 must not panic: no unwrap/expect/panic/indexing outside tests (src/main.rs).
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings
# --all-features: the test-hooks code is tested too.
cargo test --all-features
# Fuzzing (tests/fuzz/, libFuzzer): every target briefly, from its committed seed
# corpus (which replays the inputs that once crashed): about 80 s of build
# and 5 s per target. tests/fuzz/run.sh --time N TARGET runs one for longer.
./tests/fuzz/run.sh --time 5
# Both boards: qemu-armv7 (Debian kernel, initramfs, GPT disk) and
# qemu-armv7-nor (own kernel, cached in qemu/cache: about 2-3 min on a fresh
# machine; CFI NOR flash, no initramfs).
# The release binary (its size is tested; it has no test hooks) ...
./qemu/build-binary.sh
# ... and the images the tests boot, around the test build (feature
# test-hooks), in qemu/out/BOARD-test-hooks.
for board in qemu-armv7 qemu-armv7-nor; do
  ./qemu/build.sh --test-hooks "$board"
done
# The raw-flash primitives' real ioctls on the NOR board's kernel (the unit
# test binary booted as /init; issue 10: run in CI).
./qemu/flash-guest-test.sh --kernel qemu/out/qemu-armv7-nor-test-hooks/kernel
# (The power-cut campaign is its own command, below; the upgrade's figures
# for the README are a measurement, run by hand.)
cargo test --test qemu -- --ignored --test-threads=2 --skip powercut::powercut_campaign --skip upgrade::figures_of_the_upgrade
# A short sample of the power-cut campaign (about 10 cuts, 2.5 min), so that
# the command keeps working; a fixed seed, so that CI is repeatable (the
# documented long runs pick their own).
./qemu/powercut.sh --no-build --cuts 10 --seed 1 --out qemu/out/powercut-ci
# The benchmark runs too, briefly, so that its command keeps working (figures
# from two boots are not worth reading; README shows a full run's).
./qemu/bench.sh --runs 2 --reset-sizes 1000 --out qemu/out/bench-ci
# ... and the NOR board's, against OpenWrt's mount_root: one run of each
# configuration (about 30 s).
./qemu/bench.sh --board nor --runs 1 --out qemu/out/bench-nor-ci
# ... and its translation profile of overlay-init's own work (one boot of the
# release code built for it: about 1.5 min).
./qemu/bench.sh --board nor --profile --out qemu/out/bench-nor-ci
