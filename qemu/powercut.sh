#!/usr/bin/env bash
# Random power cuts: QEMU killed (SIGKILL) at random instants while the
# guest writes fsynced files, formats its flash on a first boot, carries out
# a factory reset, or writes its wear log; the next boot must reach the real
# init on the flash upper with every fsynced file intact.
#
#   qemu/powercut.sh [--cuts N] [--seed S] [--scenario LIST] [--out DIR]
#                    [--cut-at MS] [--consoles] [--no-build]
#
#   --cuts N         cuts in all, spread evenly over the scenarios (default 10;
#                    with fewer cuts than scenarios, the first N scenarios in
#                    the order writes, format, reset, wearlog, each on ext4,
#                    jffs2, ubifs)
#   --seed S         seed of the cut instants (default: the time; printed,
#                    and in the report): the same seed draws the same instants
#                    (where they land still varies with the host's timing)
#   --scenario LIST  comma-separated: FS, OP or FS-OP, with FS ext4 (block,
#                    board qemu-armv7), jffs2 or ubifs (NOR flash, board
#                    qemu-armv7-nor) and OP writes, format, reset or wearlog
#                    (default: all twelve)
#   --out DIR        the report: DIR/results.md, DIR/results.json, and
#                    DIR/consoles/ (both boots of every cut with a problem)
#                    (default qemu/out/powercut)
#   --cut-at MS      cut every boot MS ms after the scenario's marker line
#                    instead of at random (to replay one cut of a report)
#   --consoles       keep the consoles of every cut, not only of failed ones
#   --no-build       use the images as they are (qemu/test.sh has just built them)
#
# Needs root (as qemu/build.sh). Installs what it needs (qemu/setup.sh) and
# builds the test images of both boards (qemu/build.sh --test-hooks), then
# runs the ignored test powercut::powercut_campaign (tests/qemu/powercut.rs)
# under nice, one QEMU at a time. Exit status: 0 when no cut lost a file or
# kept the next boot off the flash, 1 otherwise (the report says which).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "powercut.sh: $*" >&2; exit 2; }

cuts=10 seed='' scenario='' out=$PWD/qemu/out/powercut cut_at='' consoles='' build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cuts) cuts=${2:?}; shift ;;
    --seed) seed=${2:?}; shift ;;
    --scenario) scenario=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --cut-at) cut_at=${2:?}; shift ;;
    --consoles) consoles=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ "$cuts" =~ ^[0-9]+$ ]] && [ "$cuts" -gt 0 ] || die "--cuts $cuts: want a positive number"
[ -z "$seed" ] || [[ "$seed" =~ ^[0-9]+$ ]] || die "--seed $seed: want a number"
[ -z "$cut_at" ] || [[ "$cut_at" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--cut-at $cut_at: want milliseconds"
seed=${seed:-$(date +%s)}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

if [ "$build" = 1 ]; then
  ./qemu/setup.sh
  for board in qemu-armv7 qemu-armv7-nor; do
    nice -n 10 ./qemu/build.sh --test-hooks "$board"
  done
fi

echo "powercut.sh: $cuts cut(s), seed $seed, scenarios ${scenario:-all}, report in $out" >&2
start=$(date +%s)
rc=0
POWERCUT_CUTS=$cuts POWERCUT_SEED=$seed POWERCUT_SCENARIOS=$scenario POWERCUT_OUT=$out \
POWERCUT_CUT_AT_MS=$cut_at POWERCUT_CONSOLES=$consoles \
  nice -n 10 cargo test --test qemu -- --ignored --exact powercut::powercut_campaign \
  --nocapture --test-threads=1 || rc=$?
echo "powercut.sh: $(( $(date +%s) - start )) s; report: $out/results.md" >&2
[ "$rc" = 0 ] || exit 1
