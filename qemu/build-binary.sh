#!/usr/bin/env bash
# Cross-build overlay-init as a static armv7 musl binary with the *stable*
# toolchain (the link recipe: qemu/cross-env.sh), optimised for size.
#
# Output: target/armv7-unknown-linux-musleabihf/release/overlay-init, the
# release binary. With --test-hooks: the test build (feature test-hooks: the
# keys the QEMU tests use to cut the power on demand), in its own target
# directory, target/test-hooks/armv7-unknown-linux-musleabihf/release/overlay-init,
# so that the release binary never carries a test hook. With --profile: the
# release code, unstripped and at another address, in target/profile/ (the
# benchmark's translation profile, qemu/bench/profile_nor.py).
# Extra arguments are passed to cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
features=()
profile=()
if [ "${1:-}" = --test-hooks ]; then
  shift
  features=(--features test-hooks)
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/test-hooks
elif [ "${1:-}" = --profile ]; then
  # The release build, unstripped and linked at 0x20000000 (busybox and
  # every other static binary sit at 0x10000): QEMU's translation log then
  # tells its code apart and names its functions (qemu/bench/profile_nor.py).
  # Its own target directory; never shipped.
  shift
  profile=(--config profile.release.strip=false)
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/profile
  PROFILE_LINK="-C link-arg=-Wl,-Ttext-segment=0x20000000"
fi

# shellcheck source=qemu/cross-env.sh
. qemu/cross-env.sh
OUT=${CARGO_TARGET_DIR:-target}/$TRIPLE/release/overlay-init

# Size (issue 5's budget, tests/qemu/size.rs): std is rebuilt with its
# optimize_for_size feature (smaller formatting and collections code), and
# panics compile to a trap instead of a formatted message
# (-C panic=immediate-abort: ~40 KiB). PID 1 turns that trap into a logged,
# synced reboot (pid1.rs install_fault_handler); clippy denies the panicking
# calls in the first place. All Rust code is Thumb-2 (+thumb-mode): the same
# ARMv7-A instructions set in 16/32-bit encodings, ~25% less code (292 KB ->
# 222 KB); every ARMv7-A core runs it, and interworking with musl is free.
# No unwind tables (-C force-unwind-tables=no): with panic=immediate-abort
# nothing unwinds (no panic unwinding, no backtraces; the fault handler only
# writes a line and reboots), yet every function got an .ARM.exidx entry
# whose personality routine linked libgcc's EHABI unwinder: 5.7 KiB of
# tables + 4 KiB of code (-8 KiB of the file). Only a debugger walking the
# stack of a stripped binary misses them.
# No RELRO (-z norelro): in a static non-PIE binary nothing applies it (the
# kernel ignores PT_GNU_RELRO; musl only mprotects it in its dynamic linker),
# but ld still pads the file so that .got ends on a page: up to 4 KiB of
# zeros (3.6 KiB at the time of writing).
# No source locations (-Z location-detail=none): every log! call site carried
# its file name, line and column for log::Record, which our logger never
# prints (kmsg.rs writes the level and the message), and panics carry none
# with panic=immediate-abort: -2.2 KiB.
# LLVM's machine outliner (-enable-machine-outliner=always; ARM supports it,
# but only AArch64 turns it on by default at opt-level z): instruction
# sequences repeated across functions (a String's drop, an Arguments
# struct's set-up) become one shared function: -4 KiB.
# Position-dependent code (-C relocation-model=static): the binary is linked
# as a plain static executable at a fixed address (crt1.o, no -pie: `file`
# says "executable"), yet the musl target compiles position-independent
# code by default, so every address was a literal plus an `add rN, pc`.
# Absolute literals instead: -5.2 KiB, and nothing relocates anyway.
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="$CROSS_RUSTFLAGS \
-Z unstable-options -C panic=immediate-abort -C target-feature=+thumb-mode \
-C force-unwind-tables=no -C link-arg=-Wl,-z,norelro \
-Z location-detail=none -C llvm-args=-enable-machine-outliner=always \
-C relocation-model=static ${PROFILE_LINK:-}"

cargo build --release -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
  --target "$TRIPLE" ${features[@]+"${features[@]}"} ${profile[@]+"${profile[@]}"} "$@"

[ -x "$OUT" ] || { echo "build-binary.sh: $OUT not produced" >&2; exit 1; }
info=$(file -b "$OUT")
case "$info" in
  *ELF\ 32-bit*ARM*statically\ linked*|*ELF\ 32-bit*ARM*static-pie\ linked*) ;;
  *) echo "build-binary.sh: $OUT is not a static ARM ELF: $info" >&2; exit 1 ;;
esac
# Harmless invocation: today's placeholder prints a line; the multi-call binary
# answers --version. Only a crash (signal) or exec failure counts as broken.
set +e
smoke=$(timeout 10 qemu-arm "$OUT" --version 2>&1 </dev/null)
rc=$?
set -e
if [ "$rc" -ge 124 ]; then
  echo "build-binary.sh: $OUT does not run under qemu-arm (rc=$rc): $smoke" >&2
  exit 1
fi
printf 'build-binary.sh: %s: %s bytes (%s)\n' "$OUT" "$(stat -c %s "$OUT")" "${info%%,*}"
printf 'build-binary.sh: qemu-arm %s --version -> rc=%s: %s\n' "${OUT##*/}" "$rc" "$(printf '%s' "$smoke" | head -n1)"
