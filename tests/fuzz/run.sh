#!/usr/bin/env bash
# Fuzz overlay-init's parsers and walks with libFuzzer (coverage-guided,
# stable toolchain: the sanitizer-coverage passes are stable rustc -C
# options; libfuzzer-sys builds libFuzzer itself with the C++ compiler).
#
#   tests/fuzz/run.sh [--time SECS] [--merge] [TARGET...]
#
#   --time SECS  run each target for SECS seconds (default 10)
#   --merge      afterwards, fold what the run found into the committed seed
#                corpus tests/fuzz/corpus/TARGET (libFuzzer -merge=1 on edge
#                coverage alone: only inputs that add edges, so the corpus
#                stays small)
#   TARGET       default: every target (tests/fuzz/src/targets.rs)
#
# Each case: no panic, at most 2 s (-timeout; the walks 10 s), at most the target's heap
# bound (a counting allocator in the harness). A crash stops the run with
# the input saved as tests/fuzz/artifacts/TARGET-crash-*, exit status 1; reproduce
# it with  OVERLAY_FUZZ_TARGET=TARGET tests/fuzz/target/*/release/fuzz FILE
# Work corpora live in tests/fuzz/target/corpus/TARGET (not committed).
set -euo pipefail
cd "$(dirname "$0")"

time=10 merge=0 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time=${2:?}; shift ;;
    --merge) merge=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
all=(cmdline state reset_record keep_list glob wear_log sysfs_block wear_sources mtd ubi
     modules_dep probe partition_table ubi_ec jffs2 upgrade_record manifest squashfs_sb
     boot_count recovery fs_state sysupgrade_tar wipe dry_run)
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

# libFuzzer is C++: libfuzzer-sys compiles it.
command -v c++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++ >/dev/null; }

host=$(rustc -vV | sed -n 's/^host: //p')
# Exactly cargo-fuzz's instrumentation, minus the (nightly) sanitizers. With
# --target, RUSTFLAGS reach only the target's crates, not build scripts.
export RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=4 \
-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
-C llvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --release --quiet --target "$host"
bin=target/$host/release/fuzz

max_len() {
  case "$1" in
    cmdline) echo 8192 ;;
    probe|partition_table) echo 70000 ;;
    ubi_ec|manifest|sysupgrade_tar) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

# Seconds a case may take. The walks' cases build and remove a tree of up
# to 2,040 levels in tmpfs around the walk: about 1 s alone, more on a
# loaded machine; a hang still stops them.
timeout_of() {
  case "$1" in
    wipe|dry_run) echo 10 ;;
    *) echo 2 ;;
  esac
}

mkdir -p artifacts
status=0
for t in "${targets[@]}"; do
  work=target/corpus/$t
  mkdir -p "$work" "corpus/$t"
  log=target/fuzz-$t.log
  set +e
  OVERLAY_FUZZ_TARGET=$t "$bin" "$work" "corpus/$t" -max_total_time="$time" -timeout="$(timeout_of "$t")" \
    -rss_limit_mb=2048 -max_len="$(max_len "$t")" -close_fd_mask=1 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t-" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" = 0 ]; then
    printf 'fuzz %-16s %10s cases in %4s s, %s, no crash\n' "$t" "${runs:-?}" "${secs:-?}" "$cov"
  else
    printf 'fuzz %-16s FAILED (exit %s) after %s cases; see tests/fuzz/%s\n' "$t" "$rc" "${runs:-?}" "$log"
    grep -E '^(==|thread|target |SUMMARY|fuzz:|artifact_prefix|Test unit written)' "$log" | head -20 || true
    status=1
  fi
  if [ "$merge" = 1 ] && [ "$rc" = 0 ]; then
    OVERLAY_FUZZ_TARGET=$t "$bin" -merge=1 -use_counters=0 -use_cmp=0 -use_value_profile=0 \
      -max_len="$(max_len "$t")" -close_fd_mask=1 -timeout=5 \
      "corpus/$t" "$work" >"target/merge-$t.log" 2>&1
  fi
done
exit "$status"
