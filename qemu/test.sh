#!/usr/bin/env bash
# Everything CI runs: host packages, host unit tests, the ARM build, and the
# QEMU boot tests (tests/qemu, #[ignore]d in a plain cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

./qemu/setup.sh
cargo test
./qemu/build.sh
cargo test --test qemu -- --ignored --test-threads=2
