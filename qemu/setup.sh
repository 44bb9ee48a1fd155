#!/usr/bin/env bash
# Install everything a fresh Debian 12 x86_64 machine needs to cross-build
# overlay-init for armv7 and boot it under QEMU. Idempotent; when every tool
# is already present it skips apt entirely (about 0.1 s).
set -euo pipefail

# Debian packages we need, and a command (or dpkg package) proving each is there.
PKGS=(
  qemu-system-arm          # qemu-system-arm
  qemu-user                # qemu-arm: run ARM binaries on the host
  gcc-arm-linux-gnueabihf  # cross linker (also provides arm-linux-gnueabihf-ar)
  musl-dev:armhf           # static musl libc + crt objects for armhf
  squashfs-tools           # mksquashfs
  mtd-utils                # mkfs.ubifs / ubinize / mkfs.jffs2 for flash tests
  cpio                     # initramfs archive
  kmod                     # depmod
  e2fsprogs                # mkfs.ext4 on the host (tests)
  f2fs-tools               # mkfs.f2fs on the host (tests)
  fdisk                    # sfdisk: GPT images
  xz-utils                 # unpacking .deb data
  file                     # verifying binaries
  gzip
  # building our own kernel (qemu/build-kernel.sh, boards with BOARD_KERNEL_SOURCE=own)
  linux-source-6.1         # /usr/src/linux-source-6.1.tar.xz
  bison
  flex
  libelf-dev
  make
  bc
  # a real distribution for the tests (qemu/debian-rootfs.sh): Debian armhf
  # with systemd, built by mmdebstrap under qemu-user through binfmt_misc
  mmdebstrap
  qemu-user-static         # qemu-arm-static, registered with binfmt_misc
  binfmt-support           # update-binfmts
  arch-test                # mmdebstrap's check that armhf binaries run
)
CMDS=(qemu-system-arm qemu-arm arm-linux-gnueabihf-gcc arm-linux-gnueabihf-ar
      mksquashfs mkfs.ubifs cpio depmod mkfs.ext4 mkfs.f2fs sfdisk xz file gzip
      dpkg-deb apt-get timeout bison flex make bc mmdebstrap qemu-arm-static
      update-binfmts arch-test)

need_apt=0
for c in "${CMDS[@]}"; do
  command -v "$c" >/dev/null 2>&1 || { need_apt=1; break; }
done
if [ "$need_apt" = 0 ]; then
  dpkg -s musl-dev:armhf >/dev/null 2>&1 || need_apt=1
fi
[ -e /usr/lib/arm-linux-musleabihf/crt1.o ] || need_apt=1
[ -e /usr/include/libelf.h ] || need_apt=1
compgen -G '/usr/src/linux-source-6.1.tar.*' >/dev/null || need_apt=1

if [ "$need_apt" = 1 ]; then
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx armhf; then
    $SUDO dpkg --add-architecture armhf
  fi
  # A failing armhf security index line is harmless (that mirror lags):
  # tolerate a non-zero exit as long as the main indexes arrived.
  $SUDO apt-get update || echo "setup.sh: apt-get update reported errors (tolerated)" >&2
  pkgs=()
  for p in "${PKGS[@]}"; do pkgs+=("${p%%#*}"); done
  $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"
fi

# binfmt_misc (qemu/debian-rootfs.sh runs armhf binaries in a chroot): a
# container may not have it mounted; the qemu-arm entry must be enabled.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
    echo "setup.sh: cannot mount binfmt_misc (qemu/debian-rootfs.sh will not work)" >&2
fi
if [ -e /proc/sys/fs/binfmt_misc/status ] &&
   ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null; then
  update-binfmts --enable qemu-arm 2>/dev/null ||
    echo "setup.sh: cannot enable the qemu-arm binfmt_misc entry" >&2
fi

# Rust: stable toolchain plus std sources for -Zbuild-std.
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  sysroot=$(rustc --print sysroot)
  if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
    rustup component add rust-src
  fi
  # clippy enforces the PID-1 lint policy in qemu/test.sh.
  if ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add clippy
  fi
fi
echo "setup.sh: ok"
