#!/usr/bin/env bash
# Everything CI runs: host packages, host unit tests, the ARM build, and the
# QEMU boot tests (tests/qemu, #[ignore]d in a plain cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

./qemu/setup.sh
# PID 1 must not panic: no unwrap/expect/panic/indexing outside tests (src/main.rs).
cargo clippy --all-targets -- -D warnings
cargo test
./qemu/build.sh
cargo test --test qemu -- --ignored --test-threads=2
# The benchmark runs too, briefly, so that its command keeps working (figures
# from two boots are not worth reading; README shows a full run's).
./qemu/bench.sh --runs 2 --reset-sizes 1000 --out qemu/out/bench-ci
