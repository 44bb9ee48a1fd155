#!/usr/bin/env bash
# The demo: install what is missing, build, then boot the same (throw-away)
# copy of disk.img (flash.img on a pflash board) twice:
#   boot 1: overlay-init formats the blank rootfs_data and the demo shows the
#           mounts, overlay-status and "boot count 1";
#   boot 2: the upper persisted: "boot count 2".
# With --shell, boot 2 gives an interactive shell on the console instead
# (exit it, or press Ctrl-A X, to end).
#
#   qemu/demo.sh [--shell] [--board B]
set -euo pipefail
cd "$(dirname "$0")/.."

shell=() board=qemu-armv7
while [ $# -gt 0 ]; do
  case "$1" in
    --shell) shell=(--shell) ;;
    --board) board=${2:?}; shift ;;
    *) echo "usage: $0 [--shell] [--board B]" >&2; exit 2 ;;
  esac
  shift
done

./qemu/setup.sh
./qemu/build.sh "$board"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/overlay-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A disk board boots a GPT disk, a pflash board (BOARD_STORAGE=pflash) a flash image.
if [ -f "qemu/out/$board/flash.img" ]; then
  cp "qemu/out/$board/flash.img" "$tmp/flash.img"
  storage=(--flash "$tmp/flash.img")
else
  cp --sparse=always "qemu/out/$board/disk.img" "$tmp/disk.img"
  storage=(--disk "$tmp/disk.img")
fi

echo "==================== boot 1 (blank rootfs_data) ===================="
./qemu/run.sh --board "$board" "${storage[@]}" | tee "$tmp/boot1.log"
echo "==================== boot 2 (same storage) ===================="
if [ "${#shell[@]}" -gt 0 ]; then
  exec ./qemu/run.sh --board "$board" "${storage[@]}" --shell
fi
./qemu/run.sh --board "$board" "${storage[@]}" | tee "$tmp/boot2.log"

if grep -q "overlay-demo: boot count 2" "$tmp/boot2.log"; then
  echo "demo.sh: ok: the second boot saw the first boot's changes (boot count 2)"
else
  echo "demo.sh: the second boot did not see the first boot's changes (no 'boot count 2')" >&2
  exit 1
fi
