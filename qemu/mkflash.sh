#!/usr/bin/env bash
# Make a NOR flash image (a QEMU pflash bank) laid out by an mtdparts= string.
#
#   qemu/mkflash.sh [OPTIONS] OUT [NAME=FILE]...
#   qemu/mkflash.sh [OPTIONS] --print
#
# The layout is the value of the kernel's mtdparts= (one device), from
# --mtdparts or the board's BOARD_FLASH_MTDPARTS (--board):
#   DEVICE:SIZE[@OFFSET](NAME)[ro],...   SIZE in bytes or with k/m/g; "-" = the rest
# e.g. "0.flash:64M(fw)ro,16M(rootfs)ro,-(rootfs_data)".
#
# OUT is the part of the flash device that the image file backs: by default
# the second half of QEMU virt's 128 MiB flash (pflash bank 1, 64 MiB; bank 0
# is volatile and reads as zeros). It is all 0xFF (erased flash) except that
# each NAME=FILE writes FILE at the start of partition NAME; the partition
# must lie inside the image and FILE must fit. Every partition boundary must be
# a multiple of the erase size. OUT is replaced.
#
# --print writes one line per partition, nothing else:
#   mtdN NAME DEVICE_OFFSET SIZE IMAGE_OFFSET   (IMAGE_OFFSET "-" when outside OUT)
#
# Options (defaults: QEMU virt; the board's BOARD_FLASH_* with --board):
#   --board B            take the layout and sizes from board/B/board.sh
#   --mtdparts M         the layout (overrides the board's)
#   --device-size SIZE   size of the whole MTD device (128M)
#   --image-offset SIZE  where in the device OUT starts (64M)
#   --image-size SIZE    size of OUT (device size - image offset)
#   --erase-size SIZE    erase block (256K)
#
# Examples:
#   qemu/mkflash.sh --board qemu-armv7-nor flash.img rootfs=qemu/out/qemu-armv7-nor/rootfs.squashfs
#   qemu/mkflash.sh --mtdparts "0.flash:64M(fw)ro,-(rootfs_data)" --print
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "mkflash.sh: $*" >&2; exit 1; }

# bytes of a memparse-style size: 123, 64k, 16M, 1G
bytes() {
  local v=$1
  [[ "$v" =~ ^([0-9]+)([kKmMgG]?)$ ]] || die "bad size '$v'"
  local n=${BASH_REMATCH[1]}
  case "${BASH_REMATCH[2]}" in
    k|K) n=$((n * 1024)) ;;
    m|M) n=$((n * 1024 * 1024)) ;;
    g|G) n=$((n * 1024 * 1024 * 1024)) ;;
  esac
  echo "$n"
}

dev_size='' img_off='' img_size='' erase='' print=0 board='' mtdparts=''
while [ $# -gt 0 ]; do
  case "$1" in
    --board) board=${2:?}; shift ;;
    --mtdparts) mtdparts=${2:?}; shift ;;
    --device-size) dev_size=${2:?}; shift ;;
    --image-offset) img_off=${2:?}; shift ;;
    --image-size) img_size=${2:?}; shift ;;
    --erase-size) erase=${2:?}; shift ;;
    --print) print=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
  shift
done
if [ -n "$board" ]; then
  [ -f "$REPO/board/$board/board.sh" ] || die "no board $board"
  # shellcheck source=board/qemu-armv7-nor/board.sh source-path=SCRIPTDIR/..
  . "$REPO/board/$board/board.sh"
  [ "${BOARD_STORAGE:-disk}" = pflash ] || die "board $board has no flash (BOARD_STORAGE=${BOARD_STORAGE:-disk})"
  mtdparts=${mtdparts:-$BOARD_FLASH_MTDPARTS}
  dev_size=${dev_size:-${BOARD_FLASH_DEVICE_SIZE:-}}
  img_off=${img_off:-${BOARD_FLASH_IMAGE_OFFSET:-}}
  erase=${erase:-${BOARD_FLASH_ERASE_SIZE:-}}
fi
dev_size=${dev_size:-128M} img_off=${img_off:-64M} erase=${erase:-256K}
[ -n "$mtdparts" ] || die "no layout: give --mtdparts or --board"
if [ "$print" = 1 ]; then
  [ $# = 0 ] || die "usage: $0 [OPTIONS] --print"
  out=''
else
  [ $# -ge 1 ] || die "usage: $0 [OPTIONS] OUT [NAME=FILE]..."
  out=$1; shift
fi
dev_size=$(bytes "$dev_size") img_off=$(bytes "$img_off") erase=$(bytes "$erase")
img_size=$(bytes "${img_size:-$((dev_size - img_off))}")
[ "$erase" -gt 0 ] || die "erase size must be > 0"
[ $((img_off + img_size)) -le "$dev_size" ] || die "image (offset $img_off + $img_size) exceeds the device ($dev_size)"
[ $((img_off % erase)) = 0 ] && [ $((img_size % erase)) = 0 ] ||
  die "image offset/size not multiples of the erase size $erase"

# ---------------------------------------------------------------- mtdparts
mtdparts=${mtdparts#mtdparts=}
case "$mtdparts" in *\;*) die "one device only in '$mtdparts'" ;; esac
[[ "$mtdparts" == *:* ]] || die "'$mtdparts' is not DEVICE:PARTS"
parts=${mtdparts#*:}
names=() offs=() sizes=()
pos=0
IFS=, read -r -a defs <<<"$parts"
[ "${#defs[@]}" -gt 0 ] || die "no partitions in '$mtdparts'"
for i in "${!defs[@]}"; do
  d=${defs[i]}
  [[ "$d" =~ ^(-|[0-9]+[kKmMgG]?)(@([0-9]+[kKmMgG]?))?(\(([^\)]*)\))?(ro|lk|slc)*$ ]] ||
    die "bad partition '$d' in '$mtdparts'"
  sz=${BASH_REMATCH[1]} at=${BASH_REMATCH[3]} name=${BASH_REMATCH[5]}
  [ -z "$at" ] || pos=$(bytes "$at")
  if [ "$sz" = - ]; then
    [ "$i" = $(( ${#defs[@]} - 1 )) ] || die "'-' (the rest) must be the last partition"
    sz=$((dev_size - pos))
  else
    sz=$(bytes "$sz")
  fi
  [ -n "$name" ] || name="Partition_$(printf %03d "$i")"
  [ "$sz" -gt 0 ] && [ $((pos + sz)) -le "$dev_size" ] ||
    die "partition $name ($pos + $sz) does not fit the $dev_size-byte device"
  [ $((pos % erase)) = 0 ] && [ $((sz % erase)) = 0 ] ||
    die "partition $name (offset $pos, size $sz) is not aligned to the erase size $erase"
  names+=("$name") offs+=("$pos") sizes+=("$sz")
  pos=$((pos + sz))
done

if [ "$print" = 1 ]; then
  for i in "${!names[@]}"; do
    o=${offs[i]} s=${sizes[i]} io=-
    if [ "$o" -ge "$img_off" ] && [ $((o + s)) -le $((img_off + img_size)) ]; then
      io=$((o - img_off))
    fi
    echo "mtd$i ${names[i]} $o $s $io"
  done
  exit 0
fi

# ---------------------------------------------------------------- image
writes=()
for nf in "$@"; do
  [[ "$nf" == *=* ]] || die "bad argument '$nf' (NAME=FILE)"
  n=${nf%%=*} f=${nf#*=}
  [ -f "$f" ] || die "$f: no such file"
  idx=''
  for i in "${!names[@]}"; do [ "${names[i]}" = "$n" ] && idx=$i; done
  [ -n "$idx" ] || die "no partition $n in '$mtdparts'"
  o=${offs[idx]} s=${sizes[idx]}
  [ "$o" -ge "$img_off" ] && [ $((o + s)) -le $((img_off + img_size)) ] ||
    die "partition $n (device offset $o) is not inside the image (device offset $img_off, $img_size bytes)"
  [ "$(stat -c %s "$f")" -le "$s" ] || die "$f ($(stat -c %s "$f") bytes) does not fit partition $n ($s bytes)"
  writes+=("$((o - img_off)) $f")
done

rm -f "$out"
# erased NOR flash reads as 0xFF
head -c "$img_size" /dev/zero | tr '\0' '\377' > "$out.tmp"
for w in "${writes[@]}"; do
  o=${w%% *} f=${w#* }
  dd if="$f" of="$out.tmp" bs=64K seek="$o" oflag=seek_bytes conv=notrunc status=none
done
mv "$out.tmp" "$out"
