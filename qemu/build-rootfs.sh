#!/usr/bin/env bash
# Build a board's root filesystem, the squashfs the kernel or the initramfs
# mounts as the overlay's lower layer. The same recipe for every board:
#
#   qemu/build-rootfs.sh BOARD
#
#   qemu/out/BOARD/rootfs.squashfs   busybox rootfs (xz): busybox-static + applet
#                                    links, e2fsprogs (mke2fs/mkfs.ext4, e2fsck/
#                                    fsck.ext4, dumpe2fs) with their glibc libs,
#                                    /sbin/overlay-init (+ overlay-status,
#                                    overlay-reset, overlay-wear-monitor links), then the board's files:
#                                    each of BOARD_ROOTFS_DIRS (default
#                                    board/BOARD/rootfs) in order, later ones win;
#                                    for a board without an initramfs
#                                    (BOARD_INITRAMFS=0) board/BOARD/overlay-init.conf
#                                    as /etc/overlay-init.conf
#   qemu/out/BOARD/rootfs.d/         the staging tree, left for inspection
#
# ROOTFS_BIN and ROOTFS_OUT (set by qemu/build.sh --test-hooks) replace the
# binary and the output directory.
#
# Needs qemu/fetch.sh's qemu/cache/armhf-root and qemu/build-binary.sh's
# overlay-init (qemu/build.sh runs them first). Must run as root (ownership).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "build-rootfs.sh: $*" >&2; exit 1; }
[ $# = 1 ] || die "usage: $0 BOARD"
BOARD=$1
BDIR=$REPO/board/$BOARD
[ -f "$BDIR/board.sh" ] || die "no board $BOARD ($BDIR/board.sh)"
# shellcheck source=board/qemu-armv7/board.sh source-path=SCRIPTDIR/..
. "$BDIR/board.sh"
[ "$(id -u)" = 0 ] || die "must run as root (file ownership)"

BIN=${ROOTFS_BIN:-$REPO/target/$BOARD_RUST_TARGET/release/overlay-init}
# Resolved: readlink -f below strips this prefix, and qemu/cache may be a link.
ARMROOT=$(readlink -f "$REPO/qemu/cache/armhf-root")
[ -x "$BIN" ] || die "$BIN missing: run qemu/build-binary.sh (or qemu/build.sh)"
[ -x "$ARMROOT/bin/busybox" ] || die "$ARMROOT missing: run qemu/fetch.sh (or qemu/build.sh)"
if [ -z "${BOARD_ROOTFS_DIRS+set}" ]; then
  BOARD_ROOTFS_DIRS=()
  if [ -d "$BDIR/rootfs" ]; then BOARD_ROOTFS_DIRS=("board/$BOARD/rootfs"); fi
fi
OUT=${ROOTFS_OUT:-$REPO/qemu/out/$BOARD}
mkdir -p "$OUT"
# Fixed timestamps make the image depend on its content only.
EPOCH=${SOURCE_DATE_EPOCH:-0}
settime() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

RF=$OUT/rootfs.d
rm -rf "$RF"
mkdir -p "$RF"/{bin,sbin,usr/bin,usr/sbin,lib,proc,sys,dev,run,tmp,rom,overlay,root,etc,mnt}
chmod 1777 "$RF/tmp"
chmod 0700 "$RF/root"
install -m 0755 "$ARMROOT/bin/busybox" "$RF/bin/busybox"

# e2fsprogs: the tools, and the shared libraries they need (ELF NEEDED closure).
E2TOOLS=(mke2fs mkfs.ext4 e2fsck fsck.ext4 dumpe2fs)
for t in "${E2TOOLS[@]}"; do
  cp -a "$ARMROOT/sbin/$t" "$RF/sbin/$t"
done
install -m 0644 "$ARMROOT/etc/mke2fs.conf" "$RF/etc/mke2fs.conf"
LIBDIRS=(lib/arm-linux-gnueabihf usr/lib/arm-linux-gnueabihf lib usr/lib)
copy_lib() {   # copy lib $1 (a soname) with its symlink chain; print its path
  local d
  for d in "${LIBDIRS[@]}"; do
    if [ -e "$ARMROOT/$d/$1" ]; then
      (cd "$ARMROOT" && cp -a --parents "$d/$1" "$RF/")
      local real
      real=$(readlink -f "$ARMROOT/$d/$1")
      (cd "$ARMROOT" && cp -a --parents "${real#"$ARMROOT"/}" "$RF/")
      echo "$ARMROOT/$d/$1"
      return 0
    fi
  done
  return 1
}
needed() { arm-linux-gnueabihf-readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=()
for t in "${E2TOOLS[@]}"; do queue+=("$ARMROOT/sbin/$t"); done
declare -A seen=()
while [ "${#queue[@]}" -gt 0 ]; do
  f=${queue[0]}; queue=("${queue[@]:1}")
  for so in $(needed "$(readlink -f "$f")"); do
    [ -z "${seen[$so]:-}" ] || continue
    seen[$so]=1
    p=$(copy_lib "$so") || die "library $so (needed by ${f##*/}) not found in $ARMROOT"
    queue+=("$p")
  done
done
# the loader named in PT_INTERP, and its symlink
interp=$(arm-linux-gnueabihf-readelf -l "$ARMROOT/sbin/mke2fs" | sed -n 's/.*interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || die "no PT_INTERP in mke2fs"
(cd "$ARMROOT" && cp -a --parents "${interp#/}" "$RF/")
real=$(readlink -f "$ARMROOT$interp")
(cd "$ARMROOT" && cp -a --parents "${real#"$ARMROOT"/}" "$RF/")

# busybox applet links (never over a real tool such as e2fsprogs' mke2fs)
while read -r a; do
  [ -n "$a" ] && [ "$a" != bin/busybox ] || continue
  [ -e "$RF/$a" ] || [ -L "$RF/$a" ] && continue
  mkdir -p "$RF/$(dirname "$a")"
  ln -s /bin/busybox "$RF/$a"
done < <(qemu-arm "$RF/bin/busybox" --list-full)

# overlay-init and its multi-call names
install -m 0755 "$BIN" "$RF/sbin/overlay-init"
rm -f "$RF/usr/bin/overlay-status" "$RF/usr/sbin/overlay-reset" "$RF/usr/sbin/overlay-wear-monitor"
ln -s /sbin/overlay-init "$RF/usr/bin/overlay-status"
ln -s /sbin/overlay-init "$RF/usr/sbin/overlay-reset"
ln -s /sbin/overlay-init "$RF/usr/sbin/overlay-wear-monitor"

# board files (inittab, rcS, passwd, ...) last: they win
for d in "${BOARD_ROOTFS_DIRS[@]}"; do
  [ -d "$REPO/$d" ] || die "BOARD_ROOTFS_DIRS: $d is not a directory"
  cp -a "$REPO/$d/." "$RF/"
done
# Without an initramfs, overlay-init reads its board file from the root.
if [ "${BOARD_INITRAMFS:-1}" = 0 ]; then
  [ -f "$BDIR/overlay-init.conf" ] || die "$BDIR/overlay-init.conf missing"
  install -m 0644 "$BDIR/overlay-init.conf" "$RF/etc/overlay-init.conf"
fi
for f in etc/inittab etc/init.d/rcS etc/passwd etc/group; do
  [ -e "$RF/$f" ] || die "rootfs lacks /$f (BOARD_ROOTFS_DIRS: ${BOARD_ROOTFS_DIRS[*]:-none})"
done
settime "$RF"
rm -f "$OUT/rootfs.squashfs"
mksquashfs "$RF" "$OUT/rootfs.squashfs" -comp xz -all-root -noappend -quiet \
  -mkfs-time "$EPOCH" -all-time "$EPOCH" >/dev/null
echo "build-rootfs.sh: $BOARD: rootfs.squashfs $(stat -c %s "$OUT/rootfs.squashfs") B" \
  "(board files: ${BOARD_ROOTFS_DIRS[*]:-none})"
