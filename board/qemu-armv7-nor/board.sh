# shellcheck shell=bash disable=SC2034
# Board description for QEMU's ARM "virt" machine booting the OpenWrt way:
# no initramfs, our own kernel (everything built in), the root squashfs and
# the data partition on the machine's CFI NOR flash (pflash bank 1).
# Sourced by qemu/build.sh, qemu/build-kernel.sh and qemu/run.sh; defines
# variables only.

# Rust target the overlay-init binary is built for (qemu/build-binary.sh).
BOARD_RUST_TARGET=armv7-unknown-linux-musleabihf
# Debian architecture of the rootfs packages (qemu/fetch.sh).
BOARD_DEB_ARCH=armhf
# qemu/fetch.sh also resolves (and caches) Debian's kernel of this flavour
# along with the userland; this board does not use it.
BOARD_KERNEL_FLAVOUR=armmp

# Kernel: "own" = built by qemu/build-kernel.sh from Debian's linux-source-6.1
# with allnoconfig + kernel.config (Debian's kernels have no CFI/physmap
# flash driver). "debian" = Debian's linux-image-$BOARD_KERNEL_FLAVOUR.
BOARD_KERNEL_SOURCE=own
BOARD_KERNEL_CONFIG=kernel.config
BOARD_KERNEL_SRC_PKG=linux-source-6.1
# No initramfs: the kernel mounts the squashfs itself and runs
# init=/sbin/overlay-init, which finds /etc/overlay-init.conf in the squashfs.
BOARD_INITRAMFS=0
# Storage: the pflash image qemu/out/BOARD/flash.img (qemu/mkflash.sh), not
# a GPT disk.
BOARD_STORAGE=pflash

# Files copied over the generated busybox rootfs: the same demo/test rootfs
# as qemu-armv7 (inittab, rcS running qemu/run.sh --script, ...), then this
# board's own (paths relative to the repository; later ones win).
BOARD_ROOTFS_DIRS=(board/qemu-armv7/rootfs)

# QEMU system emulator and machine, as qemu-armv7.
BOARD_QEMU=qemu-system-arm
BOARD_QEMU_MACHINE=(-M virt -cpu cortex-a15 -m 256 -smp 1 -nic none)
BOARD_QEMU_DISK_DEVICE=virtio-blk-device

# Flash layout. QEMU's virt machine has two 64 MiB pflash banks that the
# device tree describes as one 128 MiB CFI NOR device, "0.flash" (erase
# block 256 KiB). Bank 0 is volatile and reads as zeros when only bank 1 is
# attached (attaching bank 0 with -kernel makes QEMU run it as firmware), so
# the first 64 MiB are a placeholder partition "fw" that nothing uses; the
# image file is bank 1 = the device's second half:
#   mtd0 fw           0      - 64 MiB  bank 0, never used
#   mtd1 rootfs       64 MiB - 80 MiB  the squashfs (root=/dev/mtdblock1), ro
#   mtd2 rootfs_data  80 MiB - 128 MiB erased (0xFF): the upper
# Boundaries must be multiples of the erase block (qemu/mkflash.sh checks).
BOARD_FLASH_MTDPARTS="0.flash:64M(fw)ro,16M(rootfs)ro,-(rootfs_data)"
# Device size and where in it the image file starts (qemu/mkflash.sh).
BOARD_FLASH_DEVICE_SIZE=128M
BOARD_FLASH_IMAGE_OFFSET=64M
BOARD_FLASH_ERASE_SIZE=256K
# What qemu/mkflash.sh writes into which partition (files relative to
# qemu/out/BOARD/); the rest of the image is erased flash (0xFF).
BOARD_FLASH_FILES=(rootfs=rootfs.squashfs)

# Default kernel command line. The kernel mounts the squashfs read-only from
# mtdblock1 and runs overlay-init as init. No cryptomgr.notests: this kernel
# has no crypto self-tests to skip. loglevel=8: every step of the pre-init on
# the console, as on qemu-armv7 (its board.sh says why).
BOARD_CMDLINE="console=ttyAMA0 panic=-1 root=/dev/mtdblock1 rootfstype=squashfs ro init=/sbin/overlay-init rootwait mtdparts=$BOARD_FLASH_MTDPARTS loglevel=8"
