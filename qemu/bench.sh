#!/usr/bin/env bash
# Benchmark overlay-init against the reference shell pre-init
# (qemu/bench/shell-preinit.sh) on the qemu-armv7 board, side by side:
#
#   qemu/bench.sh [--runs N] [--reset-sizes 1000,10000,100000] [--out DIR]
#
# Boots the same kernel, rootfs and disk N times with each pre-init,
# alternating, and reports per stage and in total the median and spread of the
# time from /init's start to the real init's first line, the ratio
# overlay-init / shell, overlay-init's floor (time inside mount, module-load
# and switch syscalls, children, device waits) and its own work above it, the
# peak memory (VmHWM) of each pre-init, the sectors a normal boot writes to
# rootfs_data, factory-reset times for each size, and the binary's size with
# its biggest contributors. Output: a table on stdout and in
# DIR/results.md (+ results.json, timeline.svg); DIR defaults to
# qemu/out/bench. Defaults: 10 runs; about 6 minutes here.
#
# With --board nor: the NOR board (qemu-armv7-nor) against OpenWrt's pre-init
# and fstools' mount_root instead, qemu/bench/bench_nor.py:
#
#   qemu/bench.sh --board nor [--runs N] [--configs LIST] [--out DIR]
#
# LIST: any of jffs2-steady,jffs2-steady-quiet,jffs2-first,ubifs-steady,
# ubifs-first (default all); DIR defaults to qemu/out/bench-nor. Default 10 runs: about 4 minutes (with one instruction-counted boot each).
#
#   qemu/bench.sh --board nor --profile [--out DIR]
#
# instead: where overlay-init's own work goes, counted in QEMU's translation
# log (qemu/bench/profile_nor.py: one steady JFFS2 boot of the release code
# built unstripped at another address; DIR/profile.md). About 2 minutes.
#
# Sets up the machine (qemu/setup.sh) and builds the images (qemu/build.sh)
# first, so it runs on a fresh machine as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

board=qemu-armv7
args=()
profile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --board) board=${2:?}; shift 2 ;;
    --profile) profile=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}

./qemu/setup.sh
case "$board" in
  qemu-armv7|block) [ "$profile" = 0 ] || { echo "bench.sh: --profile is for --board nor" >&2; exit 2; } ;;
  qemu-armv7-nor|nor)
    # The board's root squashfs with OpenWrt's mount_root and owrt-preinit in
    # it (../shared/anchors/openwrt-fstools): both pre-inits boot this one.
    NOR=$REPO/qemu/out/qemu-armv7-nor
    ./qemu/build.sh qemu-armv7-nor >/dev/null
    if [ "$profile" = 1 ]; then
      ./qemu/build-binary.sh --profile >/dev/null
      exec python3 qemu/bench/profile_nor.py --rootfs "$NOR/rootfs.squashfs" "$@"
    fi
    ./qemu/openwrt-rootfs.sh "$NOR/rootfs.squashfs" "$NOR/rootfs-openwrt.squashfs" >/dev/null
    exec python3 qemu/bench/bench_nor.py --rootfs "$NOR/rootfs-openwrt.squashfs" "$@" ;;
  *) echo "bench.sh: no board $board (qemu-armv7 or block, qemu-armv7-nor or nor)" >&2; exit 2 ;;
esac
./qemu/build.sh >/dev/null

# The shell pre-init's initramfs: the very same tree as overlay-init's
# (modules, modules.dep, the board's /etc/overlay-init.conf), with busybox and
# the reference script as /init.
OUT=$REPO/qemu/out/qemu-armv7
SH=$OUT/shell-initramfs.d
rm -rf "$SH"
cp -a "$OUT/initramfs.d" "$SH"
rm -f "$SH/init"
install -m 0755 qemu/bench/shell-preinit.sh "$SH/init"
mkdir -p "$SH/bin" "$SH/sbin"
install -m 0755 qemu/cache/armhf-root/bin/busybox "$SH/bin/busybox"
for a in sh mount umount mkdir modprobe sleep grep sed tr cat cmp hexdump chroot rm switch_root; do
  ln -s busybox "$SH/bin/$a"
done
(cd "$SH" && find . -mindepth 1 | LC_ALL=C sort |
   cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n > "$OUT/shell-initramfs.cpio.gz"

exec python3 qemu/bench/bench.py --shell-initrd "$OUT/shell-initramfs.cpio.gz" "$@"
