#!/usr/bin/env bash
# Runs the raw-flash backend against a real kernel: src/flash/guest_tests.rs
# (the real MTD/UBI ioctls of sys/linux.rs on a real CFI NOR partition).
#
#   qemu/flash-guest-test.sh --kernel PATH
#
# PATH: an armv7 zImage with CFI NOR (physmap-of), cmdline mtdparts, UBI,
# UBIFS, JFFS2, devtmpfs and initramfs support built in, e.g. the
# qemu-armv7-nor board's kernel (qemu/out/qemu-armv7-nor/kernel, the default).
#
# The unit-test binary is cross-built for armv7 musl (as build-binary.sh
# builds overlay-init, but with an unwinding std for libtest) and booted as
# /init of a tiny initramfs, with a fresh erased 64 MiB flash image as pflash
# bank 1, running only `flash::guest_tests`. The flash layout, as the board's:
#   mtd0 fw           0      - 64 MiB  bank 0 (volatile, zeros), read-only
#   mtd1 rootfs       64 MiB - 80 MiB  read-only, unused here
#   mtd2 rootfs_data  80 MiB - 128 MiB erased: the test's playground
# Passes when the guest prints libtest's "test result: ok. 1 passed".
# Needs root (mknod /dev/console), qemu-system-arm, arm-linux-gnueabihf-gcc,
# musl-dev:armhf (qemu/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

KERNEL=qemu/out/qemu-armv7-nor/kernel
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) KERNEL=$2; shift 2 ;;
    *) echo "usage: $0 [--kernel PATH]" >&2; exit 2 ;;
  esac
done
[ -f "$KERNEL" ] || { echo "flash-guest-test.sh: no kernel at $KERNEL (--kernel PATH)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "flash-guest-test.sh: must run as root (mknod /dev/console)" >&2; exit 1; }

# shellcheck source=qemu/cross-env.sh
. qemu/cross-env.sh
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS=$CROSS_RUSTFLAGS

# libtest needs an unwinding std; the dev profile says panic = "abort", so
# override it for this build (mixing both made -Zbuild-std build core twice).
export CARGO_PROFILE_DEV_PANIC=unwind
JSON=$(mktemp)
if ! cargo test --no-run --lib -Zbuild-std=std,panic_unwind \
       --target "$TRIPLE" --message-format=json >"$JSON"; then
  echo "flash-guest-test.sh: cross-building the test binary failed" >&2
  rm -f "$JSON"; exit 1
fi
BIN=$(sed -n 's/.*"executable":"\([^"]*overlay_init[^"]*\)".*/\1/p' "$JSON" | tail -n1)
rm -f "$JSON"
[ -x "$BIN" ] || { echo "flash-guest-test.sh: the armv7 test binary was not built" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
IR=$WORK/initramfs
mkdir -p "$IR/dev" "$IR/proc" "$IR/sys" "$IR/mnt"
cp "$BIN" "$IR/init"
mknod -m 0600 "$IR/dev/console" c 5 1
(cd "$IR" && find . -print0 | sort -z | cpio -0 -o -H newc -R 0:0 --quiet) > "$WORK/initramfs.cpio"
# Bank 1 = mtd1 + mtd2, erased.
head -c 64M /dev/zero | tr '\0' '\377' > "$WORK/flash.img"

LOG=$WORK/console.log
set +e
timeout 300 qemu-system-arm -M virt -cpu cortex-a15 -m 256 -smp 1 -nic none \
  -nographic -no-reboot -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio" \
  -drive if=pflash,unit=1,format=raw,file="$WORK/flash.img" \
  -append "console=ttyAMA0 panic=-1 mtdparts=0.flash:64M(fw)ro,16M(rootfs)ro,-(rootfs_data) -- --ignored --exact --nocapture --test-threads=1 flash::guest_tests::raw_flash_on_a_real_kernel" \
  </dev/null >"$LOG" 2>&1
set -e
grep -E "flash-guest:|^test |test result|panicked|ubi|jffs2|UBIFS|error" "$LOG" | grep -v "^\[ *[0-9.]*\] \(Kernel command line\|Booting\)" || true
if grep -q "test result: ok. 1 passed" "$LOG"; then
  echo "flash-guest-test.sh: PASS"
else
  echo "flash-guest-test.sh: FAIL (console log follows)" >&2
  tail -n 60 "$LOG" >&2
  exit 1
fi
