#!/usr/bin/env bash
# Build a board's own ARM kernel (BOARD_KERNEL_SOURCE=own) from Debian's
# linux-source package, everything built in (no modules):
#
#   qemu/build-kernel.sh BOARD [DIR]
#
#   ARCH=arm CROSS_COMPILE=arm-linux-gnueabihf-
#   KCONFIG_ALLCONFIG=board/BOARD/kernel.config make allnoconfig
#   make -j$(nproc) zImage
#
# Cached in qemu/cache/:
#   linux-source/VERSION/       the unpacked source tarball, once per package version
#   own-kernel/build/VERSION/BOARD/   the out-of-tree (O=) build directory, reused
#                               (a changed fragment rebuilds incrementally)
#   own-kernel/KEY/             zImage, config (the resulting .config), release
#                               (`make kernelrelease`), build.log
# KEY is a hash of the fragment's settings (its CONFIG_ and "# CONFIG_... is
# not set" lines, in order: comments do not count), the linux-source package version,
# this script's RECIPE version and the cross compiler's version: a repeated run
# with the same inputs builds nothing. A fresh machine builds in about 2 min
# on 2 cores.
#
# After allnoconfig, every line of the fragment is checked against .config:
# CONFIG_X=y must be =y (a symbol silently dropped for a missing dependency is
# the usual failure), "# CONFIG_X is not set" must not be set, CONFIG_X=VALUE
# must match. Any mismatch fails the build with the list of symbols.
#
# With DIR, the result is copied to DIR/kernel (zImage), DIR/kernel.version
# (the release) and DIR/kernel.config. The packages come from qemu/setup.sh
# (linux-source-6.1 bison flex libelf-dev make bc xz-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# Bump when the commands below change in a way that changes the zImage.
RECIPE=1

die() { echo "build-kernel.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 BOARD [DIR]"
BOARD=$1 DEST=${2:-}
BDIR=$REPO/board/$BOARD
[ -f "$BDIR/board.sh" ] || die "no board $BOARD ($BDIR/board.sh)"
# shellcheck source=board/qemu-armv7-nor/board.sh source-path=SCRIPTDIR/..
. "$BDIR/board.sh"
[ "${BOARD_KERNEL_SOURCE:-debian}" = own ] ||
  die "board $BOARD uses Debian's kernel (BOARD_KERNEL_SOURCE=${BOARD_KERNEL_SOURCE:-debian}), not its own"
FRAGMENT=$BDIR/${BOARD_KERNEL_CONFIG:-kernel.config}
[ -f "$FRAGMENT" ] || die "$FRAGMENT missing"
SRCPKG=${BOARD_KERNEL_SRC_PKG:-linux-source-6.1}
KARCH=${BOARD_KERNEL_ARCH:-arm}
CROSS=${BOARD_KERNEL_CROSS:-arm-linux-gnueabihf-}
TARGET=${BOARD_KERNEL_IMAGE:-zImage}

for c in make bison flex bc xz "${CROSS}gcc"; do
  command -v "$c" >/dev/null 2>&1 || die "$c not found: run qemu/setup.sh"
done
[ -e /usr/include/libelf.h ] || die "libelf-dev missing: run qemu/setup.sh"
srcver=$(dpkg-query -W -f '${Version}' "$SRCPKG" 2>/dev/null) ||
  die "package $SRCPKG not installed: run qemu/setup.sh"
TARBALL=$(compgen -G "/usr/src/$SRCPKG.tar.*" | head -n1) ||
  die "no /usr/src/$SRCPKG.tar.* (package $SRCPKG $srcver)"
ccver=$("${CROSS}gcc" -dumpfullversion 2>/dev/null || "${CROSS}gcc" -dumpversion)

CACHE=$REPO/qemu/cache
mkdir -p "$CACHE/own-kernel"
# One build at a time per checkout (parallel build.sh runs would share O=).
exec 9>"$CACHE/own-kernel/.lock"
flock 9

key=$( {
  echo "recipe=$RECIPE"
  echo "source=$SRCPKG $srcver"
  echo "make=ARCH=$KARCH CROSS_COMPILE=$CROSS $TARGET gcc=$ccver"
  echo "fragment:"
  grep -E '^(CONFIG_|# CONFIG_[A-Za-z0-9_]+ is not set)' "$FRAGMENT" | sed 's/[[:space:]]*$//'
} | sha256sum | cut -c1-16)
RES=$CACHE/own-kernel/$key

install_result() {
  [ -n "$DEST" ] || return 0
  mkdir -p "$DEST"
  cp "$RES/$TARGET" "$DEST/kernel.tmp" && mv "$DEST/kernel.tmp" "$DEST/kernel"
  cp "$RES/release" "$DEST/kernel.version"
  cp "$RES/config" "$DEST/kernel.config"
}

if [ -s "$RES/$TARGET" ] && [ -s "$RES/release" ] && [ -s "$RES/config" ]; then
  install_result
  echo "build-kernel.sh: $BOARD: cached: $TARGET $(cat "$RES/release")," \
    "$(stat -c %s "$RES/$TARGET") B (key $key: $SRCPKG $srcver, recipe $RECIPE)"
  exit 0
fi

# ---------------------------------------------------------------- source
SRC=$CACHE/linux-source/$srcver
if [ ! -f "$SRC/.unpacked" ]; then
  echo "build-kernel.sh: unpacking $TARBALL ($SRCPKG $srcver)"
  t0=$(date +%s)
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  tar -xf "$TARBALL" -C "$SRC.tmp" --strip-components=1
  [ -f "$SRC.tmp/Makefile" ] || die "$TARBALL holds no kernel tree"
  touch "$SRC.tmp/.unpacked"
  mv "$SRC.tmp" "$SRC"
  echo "build-kernel.sh: unpacked in $(( $(date +%s) - t0 )) s: $SRC"
fi

# ---------------------------------------------------------------- config
BUILD=$CACHE/own-kernel/build/$srcver/$BOARD
mkdir -p "$BUILD"
LOG=$BUILD/build.log
: > "$LOG"
kmake() {
  make -C "$SRC" O="$BUILD" ARCH="$KARCH" CROSS_COMPILE="$CROSS" "$@" >>"$LOG" 2>&1 || {
    tail -n 40 "$LOG" >&2
    die "make $* failed (whole log: $LOG)"
  }
}
echo "build-kernel.sh: $BOARD: building $TARGET from $SRCPKG $srcver with $FRAGMENT (key $key; log: $LOG)"
t0=$(date +%s)
KCONFIG_ALLCONFIG=$FRAGMENT kmake allnoconfig

# Every line of the fragment must be what .config says.
bad=()
while IFS= read -r line; do
  sym=${line%%=*}
  got=$(grep -E "^($sym=|# $sym is not set)" "$BUILD/.config" || true)
  [ "$got" = "$line" ] || bad+=("$line (got: ${got:-absent})")
done < <(sed -n 's/[[:space:]]*$//; /^CONFIG_[A-Za-z0-9_]*=/p' "$FRAGMENT")
while IFS= read -r sym; do
  if grep -qE "^$sym=" "$BUILD/.config"; then
    bad+=("# $sym is not set (got: $(grep -E "^$sym=" "$BUILD/.config"))")
  fi
done < <(sed -n 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set.*/\1/p' "$FRAGMENT")
if [ "${#bad[@]}" -gt 0 ]; then
  {
    echo "build-kernel.sh: $FRAGMENT: ${#bad[@]} setting(s) did not survive allnoconfig"
    echo "  (a missing dependency drops a symbol silently; see its 'depends on' in Kconfig):"
    printf '  %s\n' "${bad[@]}"
  } >&2
  exit 1
fi
nsym=$(grep -c '^CONFIG_' "$FRAGMENT")

# ---------------------------------------------------------------- build
kmake -j"$(nproc)" "$TARGET"
release=$(make -s -C "$SRC" O="$BUILD" ARCH="$KARCH" CROSS_COMPILE="$CROSS" kernelrelease)
img=$BUILD/arch/$KARCH/boot/$TARGET
[ -s "$img" ] || die "$img not produced (log: $LOG)"
rm -rf "$RES.tmp"
mkdir -p "$RES.tmp"
cp "$img" "$RES.tmp/$TARGET"
cp "$BUILD/.config" "$RES.tmp/config"
echo "$release" > "$RES.tmp/release"
cp "$LOG" "$RES.tmp/build.log"
rm -rf "$RES"
mv "$RES.tmp" "$RES"
install_result
echo "build-kernel.sh: $BOARD: built $TARGET $release, $(stat -c %s "$RES/$TARGET") B," \
  "$nsym fragment settings verified, in $(( $(date +%s) - t0 )) s: $RES"
