# shellcheck shell=bash
# The armv7 musl cross-link recipe (../shared/QEMU-NOTES.md "Toolchain"),
# sourced by qemu/build-binary.sh (the product) and qemu/flash-guest-test.sh
# (the unit-test binary): the stable toolchain with RUSTC_BOOTSTRAP=1 and
# -Zbuild-std, linked by arm-linux-gnueabihf-gcc against Debian's
# musl-dev:armhf. Host builds are unaffected: the flags go through the
# target-specific CARGO_TARGET_<TRIPLE>_* variables.
#
# Defines TRIPLE, MUSL, STUB and CROSS_RUSTFLAGS (the link flags), exports
# RUSTC_BOOTSTRAP and the target's linker; the caller exports
# CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS with its own additions.
# Run from the repository root.

TRIPLE=armv7-unknown-linux-musleabihf
MUSL=/usr/lib/arm-linux-musleabihf

for f in crt1.o crti.o crtn.o libc.a; do
  [ -e "$MUSL/$f" ] || { echo "cross-env.sh: $MUSL/$f missing: run qemu/setup.sh" >&2; exit 1; }
done

# Rust's musl target asks for -lunwind; the unwinder itself comes from
# libgcc_eh (or nothing unwinds), so an empty archive satisfies the linker.
STUB=$PWD/target/armv7-stub-libs
if [ ! -e "$STUB/libunwind.a" ]; then
  mkdir -p "$STUB"
  arm-linux-gnueabihf-ar rcs "$STUB/libunwind.a"
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER=arm-linux-gnueabihf-gcc
CROSS_RUSTFLAGS="\
-C link-self-contained=no -L $STUB -L $MUSL \
-C link-arg=-nostartfiles \
-Z pre-link-arg=$MUSL/crt1.o -Z pre-link-arg=$MUSL/crti.o \
-C link-arg=-lc -C link-arg=-lgcc -C link-arg=-lgcc_eh -C link-arg=$MUSL/crtn.o"
