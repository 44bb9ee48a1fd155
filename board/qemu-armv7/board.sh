# shellcheck shell=bash disable=SC2034
# Board description for QEMU's ARM "virt" machine with Debian's armhf kernel.
# Sourced by qemu/build.sh and qemu/run.sh; defines variables only.

# Rust target the overlay-init binary is built for (qemu/build-binary.sh).
BOARD_RUST_TARGET=armv7-unknown-linux-musleabihf
# Debian architecture of the kernel and rootfs packages (qemu/fetch.sh).
BOARD_DEB_ARCH=armhf
# Debian kernel flavour: the metapackage linux-image-$BOARD_KERNEL_FLAVOUR:armhf
# is resolved to its current versioned image package.
BOARD_KERNEL_FLAVOUR=armmp

# QEMU system emulator and machine. -smp 2 is slower under TCG, not faster.
BOARD_QEMU=qemu-system-arm
# -nic none: no default virtio-net-pci NIC (it needs an option ROM we do not
# install, and the guest has no network anyway).
BOARD_QEMU_MACHINE=(-M virt -cpu cortex-a15 -m 256 -smp 1 -nic none)
# Device model for disks: virtio over MMIO (no PCI needed). On "virt" the
# last -device added becomes vda: find disks by PARTNAME or serial.
BOARD_QEMU_DISK_DEVICE=virtio-blk-device

# Default kernel command line. cryptomgr.notests saves ~0.65 s of self-tests;
# panic=-1 + QEMU's -no-reboot end the run on a panic. No "quiet": the kernel
# log with its timestamps is useful when reading a boot. loglevel=8: the
# console shows every step of the pre-init (its KERN_DEBUG details), as a demo
# and the tests want; a product leaves it out and the console gets one line of
# ours a normal boot (dmesg has all of them; qemu/bench.sh measures that way).
BOARD_CMDLINE="console=ttyAMA0 panic=-1 cryptomgr.notests root=PARTLABEL=rootfs rootwait loglevel=8"

# Modules carried in the initramfs (their modules.dep dependencies are added by
# qemu/build.sh). Soft dependencies (crc32c_generic for ext4, crc32_generic
# for f2fs) must be listed: the kernel's request_module cannot work without
# modprobe. f2fs is included: with lz4/zstd it adds ~1.1 MiB uncompressed.
BOARD_MODULES=(
  virtio_mmio virtio_blk          # disks
  squashfs overlay                # lower + overlay
  crc16 mbcache jbd2 crc32c_generic ext4
  crc32_generic lz4_compress lz4hc_compress zstd_compress f2fs
  softdog                         # a watchdog, loaded only when overlay.watchdog= names one
)

# Disk layout for qemu/mkdisk.sh (NAME:SIZE_MIB[:FILE], FILE relative to
# qemu/out/BOARD/): the squashfs lower rounded up to 1 MiB, and a blank
# (all zero) 64 MiB rootfs_data partition for the upper.
BOARD_DISK_PARTS=(
  rootfs:auto:rootfs.squashfs
  rootfs_data:64
)
