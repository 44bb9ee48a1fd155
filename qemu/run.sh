#!/usr/bin/env bash
# Boot a board's images (from qemu/build.sh) in QEMU, serial console on stdout.
#
#   qemu/run.sh [--shell] [--board B] [--disk FILE]... [--flash FILE]
#               [--append "ARGS"] [--cmdline "ARGS"] [--script FILE]
#               [--kernel FILE] [--initrd FILE] [--timeout SECS] [--] [extra qemu args]
#
#   --shell         append demo.shell: the rootfs gives an interactive shell on
#                   the console (exit it to power off); timeout 1 h by default
#   --board B       board name (default qemu-armv7)
#   --out DIR       the board's built images (default qemu/out/B; the test
#                   suite boots qemu/out/B-test-hooks, from qemu/build.sh --test-hooks)
#   --disk FILE     attach FILE as a virtio disk and use it in place (writes
#                   persist). May be repeated. Default on a disk board
#                   (BOARD_STORAGE=disk): a throw-away copy of
#                   qemu/out/B/disk.img, so the pristine image stays blank; a
#                   pflash board has no default disk.
#                   Find disks by PARTLABEL/serial in the guest, not by order.
#   --flash FILE    pflash boards (BOARD_STORAGE=pflash) only: attach FILE
#                   (exactly 64 MiB) as NOR flash bank 1 (-drive if=pflash,unit=1)
#                   and use it in place (writes persist). Bank 0 is never
#                   attached: with -kernel QEMU would run it as firmware.
#                   Default: a throw-away copy of qemu/out/B/flash.img.
#   --append ARGS   extra kernel command-line arguments (after the board's)
#   --cmdline ARGS  replace the board's command line (qemu/out/B/cmdline)
#   --script FILE   run FILE with sh in the guest: it is padded with newlines
#                   to a 512-byte multiple and attached read-only as a virtio
#                   disk with serial "testscript"; rcS prints
#                   "overlay-demo: script exit N" and powers off
#   --kernel/--initrd FILE  boot another kernel / initramfs (a board without
#                   an initramfs, BOARD_INITRAMFS=0, boots none unless --initrd)
#   --timeout SECS  kill QEMU after SECS (default 60, or 3600 with --shell)
#   --stdin         QEMU reads our stdin (the serial console's input; a test
#                   writes keys to it through a pipe) instead of /dev/null
#   -- ARGS         passed to QEMU as they are (e.g. more -drive/-device pairs)
#
# Always runs QEMU under timeout(1) with -nographic -no-reboot; the exit status
# is QEMU's (0 after a guest power-off or panic), or 124 on timeout.
# RUN_VERBOSE=1 prints the QEMU command line on stderr.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "run.sh: $*" >&2; exit 2; }

BOARD=qemu-armv7 out='' shell=0 append='' cmdline='' script='' kernel='' initrd='' tmo='' flash='' stdin=0
disks=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shell) shell=1 ;;
    --board) BOARD=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --disk) disks+=("${2:?}"); shift ;;
    --flash) flash=${2:?}; shift ;;
    --append) append="$append ${2?}"; shift ;;
    --cmdline) cmdline=${2?}; shift ;;
    --script) script=${2:?}; shift ;;
    --kernel) kernel=${2:?}; shift ;;
    --initrd) initrd=${2:?}; shift ;;
    --timeout) tmo=${2:?}; shift ;;
    --stdin) stdin=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

BDIR=$REPO/board/$BOARD
[ -f "$BDIR/board.sh" ] || die "no board $BOARD"
# shellcheck source=board/qemu-armv7/board.sh source-path=SCRIPTDIR/..
. "$BDIR/board.sh"
OUT=${out:-$REPO/qemu/out/$BOARD}
STORAGE=${BOARD_STORAGE:-disk}
kernel=${kernel:-$OUT/kernel}
if [ "${BOARD_INITRAMFS:-1}" = 1 ]; then
  initrd=${initrd:-$OUT/initramfs.cpio.gz}
fi
for f in "$kernel" ${initrd:+"$initrd"}; do
  [ -f "$f" ] || die "$f missing: run qemu/build.sh $BOARD"
done
[ -z "$flash" ] || [ "$STORAGE" = pflash ] ||
  die "--flash: board $BOARD has no flash (BOARD_STORAGE=$STORAGE)"
if [ -z "$cmdline" ]; then
  [ -f "$OUT/cmdline" ] || die "$OUT/cmdline missing: run qemu/build.sh $BOARD"
  cmdline=$(cat "$OUT/cmdline")
fi
[ "$shell" = 0 ] || cmdline="$cmdline demo.shell"
cmdline="$cmdline$append"
[[ "$tmo" =~ ^[0-9]+$ ]] || tmo=$([ "$shell" = 1 ] && echo 3600 || echo 60)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/overlay-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ "$STORAGE" = disk ] && [ "${#disks[@]}" = 0 ]; then
  [ -f "$OUT/disk.img" ] || die "$OUT/disk.img missing: run qemu/build.sh $BOARD"
  cp --sparse=always "$OUT/disk.img" "$tmp/disk.img"
  disks=("$tmp/disk.img")
fi
if [ "$STORAGE" = pflash ] && [ -z "$flash" ]; then
  [ -f "$OUT/flash.img" ] || die "$OUT/flash.img missing: run qemu/build.sh $BOARD"
  cp "$OUT/flash.img" "$tmp/flash.img"
  flash=$tmp/flash.img
fi

args=("${BOARD_QEMU_MACHINE[@]}" -nographic -no-reboot -kernel "$kernel")
[ -z "$initrd" ] || args+=(-initrd "$initrd")
args+=(-append "$cmdline")
if [ -n "$flash" ]; then
  [ -f "$flash" ] || die "$flash: no such flash image"
  # QEMU wants the bank's exact size (virt: 64 MiB per bank).
  [ "$(stat -c %s "$flash")" = $((64 * 1024 * 1024)) ] ||
    die "$flash: $(stat -c %s "$flash") bytes, a virt pflash bank is exactly 67108864 (64 MiB)"
  args+=(-drive "if=pflash,unit=1,format=raw,file=$flash")
fi

if [ -n "$script" ]; then
  [ -f "$script" ] || die "$script: no such file"
  cp "$script" "$tmp/script.img"
  size=$(stat -c %s "$tmp/script.img")
  pad=$(( (512 - size % 512) % 512 ))
  # at least one newline so the last line is terminated
  [ "$pad" -gt 0 ] || pad=512
  head -c "$pad" /dev/zero | tr '\0' '\n' >> "$tmp/script.img"
  args+=(-drive "if=none,id=ts,file=$tmp/script.img,format=raw,readonly=on"
         -device "$BOARD_QEMU_DISK_DEVICE,drive=ts,serial=testscript")
fi

# On "virt" the last device added becomes vda: add in reverse so that the
# first --disk is vda (but do not rely on it in the guest).
for ((i = ${#disks[@]} - 1; i >= 0; i--)); do
  d=${disks[i]}
  [ -f "$d" ] || [ -b "$d" ] || die "$d: no such disk image"
  args+=(-drive "if=none,id=d$i,file=$d,format=raw"
         -device "$BOARD_QEMU_DISK_DEVICE,drive=d$i")
done
args+=("${extra[@]}")

[ -z "${RUN_VERBOSE:-}" ] || echo "run.sh: timeout $tmo $BOARD_QEMU ${args[*]}" >&2

# --foreground: QEMU stays in our process group, so ^C and the terminal work.
# A non-interactive run does not read the terminal.
rc=0
if [ "$shell" = 1 ] || [ "$stdin" = 1 ]; then
  timeout --foreground -k 5 "$tmo" "$BOARD_QEMU" "${args[@]}" || rc=$?
else
  timeout --foreground -k 5 "$tmo" "$BOARD_QEMU" "${args[@]}" </dev/null || rc=$?
fi
[ "$rc" != 124 ] || echo "run.sh: timed out after ${tmo}s" >&2
exit "$rc"
