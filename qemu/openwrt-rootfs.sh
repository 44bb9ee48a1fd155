#!/usr/bin/env bash
# A test-only variant of a board's root squashfs with OpenWrt's real fstools
# tools in it (issue 15; tests/qemu/openwrt.rs). The demo rootfs never ships
# them.
#
#   qemu/openwrt-rootfs.sh IN.squashfs OUT.squashfs
#
# Adds, to a copy of IN (unsquashfs, mksquashfs as qemu/build-rootfs.sh packs):
#   /sbin/mount_root      fstools' mount_root (static armhf, from
#                         ../shared/anchors/openwrt-fstools beside the repo, or $FSTOOLS)
#   /sbin/jffs2reset      fstools' factoryreset.c (static armhf)
#   /sbin/jffs2mark       -> jffs2reset (fstools picks its mode from argv[0]:
#                         it marks only when argv[0] is exactly "jffs2mark",
#                         i.e. when a shell runs it from PATH)
#   /sbin/owrt-preinit    the anchors' minimal OpenWrt pre-init (init=), which
#                         runs PREINIT=1 mount_root, then /sbin/init
#   /opt/oi/{firstboot,jffs2reset,factoryreset,jffs2mark,mount_root}
#                         -> /sbin/overlay-init: overlay-init's answers to the
#                         same names (PATH=/opt/oi:$PATH in a test script)
set -euo pipefail
die() { echo "openwrt-rootfs.sh: $*" >&2; exit 1; }
[ $# = 2 ] || die "usage: $0 IN.squashfs OUT.squashfs"
IN=$1 OUT=$2
FSTOOLS=${FSTOOLS:-$(cd "$(dirname "$0")/.." && pwd)/../shared/anchors/openwrt-fstools}
for f in mount_root.armhf-static jffs2reset.armhf-static owrt-preinit.sh; do
  [ -f "$FSTOOLS/$f" ] || die "$FSTOOLS/$f missing (set FSTOOLS)"
done
[ -f "$IN" ] || die "$IN missing"
[ "$(id -u)" = 0 ] || die "must run as root (file ownership)"

work=$(mktemp -d "${TMPDIR:-/tmp}/openwrt-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
unsquashfs -q -n -d "$work/r" "$IN" >/dev/null
r=$work/r
install -m 0755 "$FSTOOLS/mount_root.armhf-static" "$r/sbin/mount_root"
install -m 0755 "$FSTOOLS/jffs2reset.armhf-static" "$r/sbin/jffs2reset"
ln -sf jffs2reset "$r/sbin/jffs2mark"
install -m 0755 "$FSTOOLS/owrt-preinit.sh" "$r/sbin/owrt-preinit"
mkdir -p "$r/opt/oi"
for n in firstboot jffs2reset factoryreset jffs2mark mount_root; do
  ln -sf /sbin/overlay-init "$r/opt/oi/$n"
done
EPOCH=${SOURCE_DATE_EPOCH:-0}
find "$r" -exec touch -h -d "@$EPOCH" {} +
rm -f "$OUT"
mksquashfs "$r" "$OUT" -comp xz -all-root -noappend -quiet \
  -mkfs-time "$EPOCH" -all-time "$EPOCH" >/dev/null
echo "openwrt-rootfs.sh: $OUT $(stat -c %s "$OUT") B"
