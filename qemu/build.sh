#!/usr/bin/env bash
# Build everything a QEMU boot needs, for board BOARD (default qemu-armv7):
#
#   qemu/out/BOARD/kernel             the board's Debian kernel (vmlinuz)
#   qemu/out/BOARD/kernel.version     its module directory name, e.g. 6.1.0-50-armmp
#   qemu/out/BOARD/initramfs.cpio.gz  /init (overlay-init), /etc/overlay-init.conf,
#                                     the board's modules + modules.dep,
#                                     mount points, /dev/console (see initramfs/README.md)
#   qemu/out/BOARD/rootfs.squashfs    busybox rootfs (xz): busybox-static + applet
#                                     links, e2fsprogs (mke2fs/mkfs.ext4, e2fsck/
#                                     fsck.ext4, dumpe2fs) with their glibc libs,
#                                     /sbin/overlay-init (+ overlay-status,
#                                     overlay-reset links), board/BOARD/rootfs/
#   qemu/out/BOARD/disk.img           GPT: "rootfs" = the squashfs, "rootfs_data"
#                                     = 64 MiB of zeros (blank flash); made by
#                                     qemu/mkdisk.sh from BOARD_DISK_PARTS
#   qemu/out/BOARD/cmdline            the board's default kernel command line
#
# Runs qemu/fetch.sh and qemu/build-binary.sh first (qemu/setup.sh is the
# caller's job). The staging trees are left in qemu/out/BOARD/{initramfs,rootfs}.d
# for inspection. Every run rebuilds the images (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BOARD=${1:-qemu-armv7}
BDIR=$REPO/board/$BOARD
[ -f "$BDIR/board.sh" ] || { echo "build.sh: no board $BOARD ($BDIR/board.sh)" >&2; exit 1; }
# shellcheck source=board/qemu-armv7/board.sh source-path=SCRIPTDIR/..
. "$BDIR/board.sh"

die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mknod /dev/console, file ownership)"

KERNEL_FLAVOUR=$BOARD_KERNEL_FLAVOUR DEB_ARCH=$BOARD_DEB_ARCH ./qemu/fetch.sh
./qemu/build-binary.sh
BIN=$REPO/target/$BOARD_RUST_TARGET/release/overlay-init

CACHE=$REPO/qemu/cache
KVER=$(cat "$CACHE/kernel.version")
KMOD=$CACHE/kernel/lib/modules/$KVER
ARMROOT=$CACHE/armhf-root
OUT=$REPO/qemu/out/$BOARD
mkdir -p "$OUT"
# Fixed timestamps make the archives depend on their content only.
EPOCH=${SOURCE_DATE_EPOCH:-0}
settime() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# ---------------------------------------------------------------- kernel
cp "$CACHE/kernel/boot/vmlinuz-$KVER" "$OUT/kernel.tmp" && mv "$OUT/kernel.tmp" "$OUT/kernel"
echo "$KVER" > "$OUT/kernel.version"
echo "$BOARD_CMDLINE" > "$OUT/cmdline"

# ---------------------------------------------------------------- initramfs
IR=$OUT/initramfs.d
rm -rf "$IR"
mkdir -p "$IR"
(cd "$REPO/initramfs" && find . -mindepth 1 ! -name README.md -print0 |
   cpio -0 -pdm --quiet "$IR")
mkdir -p "$IR"/{dev,proc,sys,run,rom,overlay,newroot,etc,lib/modules/"$KVER"}
install -m 0755 "$BIN" "$IR/init"
install -m 0644 "$BDIR/overlay-init.conf" "$IR/etc/overlay-init.conf"
mknod -m 0600 "$IR/dev/console" c 5 1

# The board's modules plus everything modules.dep says they need.
declare -A want_ko=()
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
settime "$IR"
(cd "$IR" && find . -mindepth 1 | LC_ALL=C sort |
   cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"

# ---------------------------------------------------------------- rootfs
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
if [ -d "$BDIR/rootfs" ]; then
  cp -a "$BDIR/rootfs/." "$RF/"
fi
for f in etc/inittab etc/init.d/rcS etc/passwd etc/group; do
  [ -e "$RF/$f" ] || die "rootfs lacks /$f (board/$BOARD/rootfs/)"
done
settime "$RF"
rm -f "$OUT/rootfs.squashfs"
mksquashfs "$RF" "$OUT/rootfs.squashfs" -comp xz -all-root -noappend -quiet \
  -mkfs-time "$EPOCH" -all-time "$EPOCH" >/dev/null

# ---------------------------------------------------------------- disk
(cd "$OUT" && "$REPO/qemu/mkdisk.sh" disk.img.tmp "${BOARD_DISK_PARTS[@]}" && mv disk.img.tmp disk.img)

sz() { stat -c %s "$1"; }
echo "build.sh: $BOARD: kernel $KVER ($(sz "$OUT/kernel") B)," \
  "initramfs.cpio.gz $(sz "$OUT/initramfs.cpio.gz") B (${#want_ko[@]} modules)," \
  "rootfs.squashfs $(sz "$OUT/rootfs.squashfs") B, disk.img $(( $(sz "$OUT/disk.img") / 1048576 )) MiB"
