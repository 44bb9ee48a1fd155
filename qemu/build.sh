#!/usr/bin/env bash
# Build everything a QEMU boot needs, for board BOARD (default qemu-armv7).
# What board/BOARD/board.sh says decides the pieces:
#
#   qemu/out/BOARD/kernel             BOARD_KERNEL_SOURCE=debian (default): Debian's
#                                     linux-image-$BOARD_KERNEL_FLAVOUR (vmlinuz);
#                                     =own: the zImage qemu/build-kernel.sh builds
#                                     from board/BOARD/kernel.config (cached)
#   qemu/out/BOARD/kernel.version     its release, e.g. 6.1.0-50-armmp (module dir)
#   qemu/out/BOARD/kernel.config      (own kernel only) its .config
#   qemu/out/BOARD/initramfs.cpio.gz  BOARD_INITRAMFS=1 (default) only:
#                                     /init (overlay-init), /etc/overlay-init.conf,
#                                     the board's modules + modules.dep,
#                                     mount points, /dev/console (see initramfs/README.md)
#   qemu/out/BOARD/rootfs.squashfs    busybox rootfs (qemu/build-rootfs.sh): busybox,
#                                     e2fsprogs, /sbin/overlay-init, the board's
#                                     files (BOARD_ROOTFS_DIRS); with BOARD_INITRAMFS=0
#                                     also /etc/overlay-init.conf
#   qemu/out/BOARD/disk.img           BOARD_STORAGE=disk (default): GPT, "rootfs" =
#                                     the squashfs, "rootfs_data" = 64 MiB of zeros
#                                     (blank flash); qemu/mkdisk.sh BOARD_DISK_PARTS
#   qemu/out/BOARD/flash.img          BOARD_STORAGE=pflash: the NOR flash bank
#                                     (qemu/mkflash.sh): BOARD_FLASH_FILES written
#                                     into the BOARD_FLASH_MTDPARTS partitions,
#                                     the rest erased (0xFF)
#   qemu/out/BOARD/cmdline            the board's default kernel command line
#
# With --test-hooks (before BOARD) everything goes to qemu/out/BOARD-test-hooks/
# instead, built around the test build of overlay-init (qemu/build-binary.sh
# --test-hooks): the images the QEMU tests boot. The plain images carry the
# release binary.
#
# Runs qemu/fetch.sh and qemu/build-binary.sh first (qemu/setup.sh is the
# caller's job). The staging trees are left in qemu/out/BOARD/{initramfs,rootfs}.d
# for inspection. Every run rebuilds the images (a few seconds); an own kernel
# is rebuilt only when its inputs change (about 2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

variant=
if [ "${1:-}" = --test-hooks ]; then variant=test-hooks; shift; fi
BOARD=${1:-qemu-armv7}
BDIR=$REPO/board/$BOARD
[ -f "$BDIR/board.sh" ] || { echo "build.sh: no board $BOARD ($BDIR/board.sh)" >&2; exit 1; }
# shellcheck source=board/qemu-armv7/board.sh source-path=SCRIPTDIR/..
. "$BDIR/board.sh"

die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mknod /dev/console, file ownership)"

KSOURCE=${BOARD_KERNEL_SOURCE:-debian}
INITRAMFS=${BOARD_INITRAMFS:-1}
STORAGE=${BOARD_STORAGE:-disk}
case "$KSOURCE" in debian|own) ;; *) die "BOARD_KERNEL_SOURCE=$KSOURCE: want debian or own" ;; esac
case "$INITRAMFS" in 0|1) ;; *) die "BOARD_INITRAMFS=$INITRAMFS: want 0 or 1" ;; esac
case "$STORAGE" in disk|pflash) ;; *) die "BOARD_STORAGE=$STORAGE: want disk or pflash" ;; esac
if [ "$KSOURCE" = own ] && [ -n "${BOARD_MODULES+set}" ]; then
  die "BOARD_MODULES with an own kernel: it has no modules (build them in)"
fi

# fetch.sh: the userland (busybox, e2fsprogs) for every board, and Debian's kernel.
KERNEL_FLAVOUR=$BOARD_KERNEL_FLAVOUR DEB_ARCH=$BOARD_DEB_ARCH ./qemu/fetch.sh
if [ -n "$variant" ]; then
  ./qemu/build-binary.sh --test-hooks
  BIN=$REPO/target/test-hooks/$BOARD_RUST_TARGET/release/overlay-init
  OUT=$REPO/qemu/out/$BOARD-test-hooks
else
  ./qemu/build-binary.sh
  BIN=$REPO/target/$BOARD_RUST_TARGET/release/overlay-init
  OUT=$REPO/qemu/out/$BOARD
fi
export ROOTFS_BIN=$BIN ROOTFS_OUT=$OUT

CACHE=$REPO/qemu/cache
mkdir -p "$OUT"
# Fixed timestamps make the archives depend on their content only.
EPOCH=${SOURCE_DATE_EPOCH:-0}
settime() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# ---------------------------------------------------------------- kernel
if [ "$KSOURCE" = debian ]; then
  KVER=$(cat "$CACHE/kernel.version")
  KMOD=$CACHE/kernel/lib/modules/$KVER
  cp "$CACHE/kernel/boot/vmlinuz-$KVER" "$OUT/kernel.tmp" && mv "$OUT/kernel.tmp" "$OUT/kernel"
  echo "$KVER" > "$OUT/kernel.version"
  rm -f "$OUT/kernel.config"
else
  ./qemu/build-kernel.sh "$BOARD" "$OUT"
  KVER=$(cat "$OUT/kernel.version")
fi
echo "$BOARD_CMDLINE" > "$OUT/cmdline"

# ---------------------------------------------------------------- initramfs
IR=$OUT/initramfs.d
if [ "$INITRAMFS" = 1 ]; then
  rm -rf "$IR"
  mkdir -p "$IR"
  (cd "$REPO/initramfs" && find . -mindepth 1 ! -name README.md -print0 |
     cpio -0 -pdm --quiet "$IR")
  mkdir -p "$IR"/{dev,proc,sys,run,rom,overlay,newroot,etc,lib/modules/"$KVER"}
  install -m 0755 "$BIN" "$IR/init"
  install -m 0644 "$BDIR/overlay-init.conf" "$IR/etc/overlay-init.conf"
  mknod -m 0600 "$IR/dev/console" c 5 1

  # The board's modules plus everything modules.dep says they need (an own
  # kernel has none: everything is built in).
  declare -A want_ko=()
  if [ "$KSOURCE" = debian ]; then
    for m in "${BOARD_MODULES[@]}"; do
      line=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$KMOD/modules.dep") ||
        die "module $m not in $KVER's modules.dep"
      for ko in ${line/:/ }; do want_ko[$ko]=1; done
    done
    for ko in "${!want_ko[@]}"; do
      install -D -m 0644 "$KMOD/$ko" "$IR/lib/modules/$KVER/$ko"
    done
    cp "$KMOD"/modules.{builtin,builtin.modinfo,order} "$IR/lib/modules/$KVER/"
    depmod -b "$IR" "$KVER"
    # keep modules.dep only
    find "$IR/lib/modules/$KVER" -maxdepth 1 -type f -name 'modules.*' ! -name modules.dep -delete
  fi
  settime "$IR"
  (cd "$IR" && find . -mindepth 1 | LC_ALL=C sort |
     cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > "$OUT/initramfs.cpio.gz.tmp"
  mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
else
  rm -rf "$IR" "$OUT/initramfs.cpio.gz"
fi

# ---------------------------------------------------------------- rootfs
./qemu/build-rootfs.sh "$BOARD"

# ---------------------------------------------------------------- storage
sz() { stat -c %s "$1"; }
if [ "$STORAGE" = disk ]; then
  (cd "$OUT" && "$REPO/qemu/mkdisk.sh" disk.img.tmp "${BOARD_DISK_PARTS[@]}" && mv disk.img.tmp disk.img)
  rm -f "$OUT/flash.img"
  storage="disk.img $(( $(sz "$OUT/disk.img") / 1048576 )) MiB"
else
  (cd "$OUT" && "$REPO/qemu/mkflash.sh" --board "$BOARD" flash.img.tmp "${BOARD_FLASH_FILES[@]}" &&
     mv flash.img.tmp flash.img)
  rm -f "$OUT/disk.img"
  storage="flash.img $(( $(sz "$OUT/flash.img") / 1048576 )) MiB ($BOARD_FLASH_MTDPARTS)"
fi

if [ "$INITRAMFS" = 1 ]; then
  ir="initramfs.cpio.gz $(sz "$OUT/initramfs.cpio.gz") B (${#want_ko[@]} modules)"
else
  ir="no initramfs"
fi
echo "build.sh: $BOARD: kernel $KVER ($KSOURCE, $(sz "$OUT/kernel") B), $ir," \
  "rootfs.squashfs $(sz "$OUT/rootfs.squashfs") B, $storage"
