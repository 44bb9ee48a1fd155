#!/usr/bin/env bash
# Build (cached) a real distribution's root filesystem for the QEMU tests: a
# Debian bookworm armhf system with systemd, as an xz squashfs, made with
# mmdebstrap from Debian's packages under qemu-user (binfmt_misc):
#
#   qemu/debian-rootfs.sh          build if needed; print the squashfs's path last
#
# Result: qemu/cache/debian-rootfs/KEY/
#   rootfs.squashfs   the root (about 28 MiB)
#   packages          the installed packages and versions (dpkg-query)
#   build.log         mmdebstrap's output
# KEY is a hash of what the image is made of: this script's RECIPE, the
# suite, architecture, mirror, variant and package list, mmdebstrap's
# version and the files copied in (qemu/debian-rootfs/, board/hooks/systemd/): the
# same inputs never build twice (the mirror's newer package versions do not
# rebuild by themselves; bump RECIPE or set DEBIAN_ROOTFS_FORCE=1).
#
# What is in it, beyond Debian's minbase + systemd:
#   - no copy of overlay-init: /usr/bin/overlay-status and
#     /usr/sbin/overlay-reset link to /run/overlay-init/bin/, the copy the
#     pre-init leaves there (the same version as the pre-init that booted it);
#   - overlay-mark-good.service (board/hooks/systemd/), enabled;
#   - overlay-test-script.service (qemu/debian-rootfs/), enabled: runs the
#     test script disk of qemu/run.sh --script, prints "overlay-demo: script
#     exit N", powers off (as the demo rootfs's rcS does under busybox);
#   - serial-getty@ttyAMA0 masked (there is no udev: its device would never
#     appear and multi-user.target would wait 90 s for it);
#   - /etc/machine-id empty: the first boot makes one (and, with a flash
#     upper, keeps it).
#
# Boot it with the qemu-armv7 board's kernel and initramfs (its root is
# PARTLABEL=rootfs), with -m 512. Needs root, mmdebstrap, qemu-user-static
# and binfmt_misc mounted with qemu-arm registered (qemu/setup.sh does all
# that), and network access to the mirror (DEBIAN_MIRROR).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# Bump when the steps below change what the image holds.
RECIPE=1
SUITE=bookworm
ARCH=armhf
VARIANT=minbase
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(systemd-sysv e2fsprogs)
FILES=(qemu/debian-rootfs/overlay-test-script qemu/debian-rootfs/overlay-test-script.service
       board/hooks/systemd/overlay-mark-good.service)

die() { echo "debian-rootfs.sh: $*" >&2; exit 1; }
[ $# = 0 ] || die "usage: $0 (no arguments)"
[ "$(id -u)" = 0 ] || die "must run as root"
for c in mmdebstrap mksquashfs qemu-arm-static sha256sum flock; do
  command -v "$c" >/dev/null 2>&1 || die "$c not found: run qemu/setup.sh"
done
[ -e /proc/sys/fs/binfmt_misc/status ] ||
  die "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc): run qemu/setup.sh"
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null ||
  die "no enabled qemu-arm binfmt_misc entry (update-binfmts --enable qemu-arm): run qemu/setup.sh"

key=$( {
  echo "recipe=$RECIPE suite=$SUITE arch=$ARCH variant=$VARIANT mirror=$MIRROR"
  echo "packages=${PACKAGES[*]}"
  echo "mmdebstrap=$(mmdebstrap --version)"
  for f in "${FILES[@]}"; do echo "$f $(sha256sum < "$f")"; done
} | sha256sum | cut -c1-16)

CACHE=$(readlink -f "$REPO/qemu/cache")/debian-rootfs
RES=$CACHE/$key
mkdir -p "$CACHE"
# One build at a time (the cache is shared by every checkout).
exec 9>"$CACHE/.lock"
flock 9
if [ -z "${DEBIAN_ROOTFS_FORCE:-}" ] && [ -s "$RES/rootfs.squashfs" ]; then
  echo "debian-rootfs.sh: cached ($SUITE $ARCH, key $key, $(stat -c %s "$RES/rootfs.squashfs") B)" >&2
  echo "$RES/rootfs.squashfs"
  exit 0
fi

t0=$(date +%s)
tmp=$RES.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/tree
echo "debian-rootfs.sh: mmdebstrap $SUITE $ARCH ($VARIANT + ${PACKAGES[*]}) from $MIRROR (log: $tmp/build.log)" >&2
# merged-usr hook: /bin -> usr/bin etc. made up front, without the usrmerge
# package (and the perl it would pull in). Documentation and translations
# are not installed (the copyright files are).
if ! mmdebstrap --mode=root --variant="$VARIANT" --arch="$ARCH" \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$SUITE" "$tree" "$MIRROR" >"$tmp/build.log" 2>&1; then
  tail -n 30 "$tmp/build.log" >&2
  die "mmdebstrap failed (whole log above, from $tmp/build.log)"
fi
t1=$(date +%s)

# ---------------------------------------------------------------- our files
install -m 0755 qemu/debian-rootfs/overlay-test-script "$tree/usr/local/sbin/overlay-test-script"
for u in board/hooks/systemd/overlay-mark-good.service qemu/debian-rootfs/overlay-test-script.service; do
  install -m 0644 "$u" "$tree/etc/systemd/system/${u##*/}"
  mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
  ln -sf "/etc/systemd/system/${u##*/}" "$tree/etc/systemd/system/multi-user.target.wants/${u##*/}"
done
ln -sf /dev/null "$tree/etc/systemd/system/serial-getty@ttyAMA0.service"
ln -sf /run/overlay-init/bin/overlay-status "$tree/usr/bin/overlay-status"
ln -sf /run/overlay-init/bin/overlay-reset "$tree/usr/sbin/overlay-reset"
echo overlay-debian > "$tree/etc/hostname"
: > "$tree/etc/machine-id"
rm -f "$tree/var/lib/dbus/machine-id"
# mount points the pre-init moves its mounts to
mkdir -p "$tree/rom" "$tree/overlay"
# apt's lists and caches are not needed in the image
rm -rf "$tree/var/lib/apt/lists/"* "$tree/var/cache/apt/"*.bin
chroot "$tree" dpkg-query -W -f '${Package} ${Version}\n' > "$tmp/packages"

mksquashfs "$tree" "$tmp/rootfs.squashfs" -comp xz -noappend -quiet >/dev/null
rm -rf "$tree" "$RES"
mv "$tmp" "$RES"
t2=$(date +%s)
echo "debian-rootfs.sh: built $SUITE $ARCH: $(wc -l < "$RES/packages") packages," \
  "rootfs.squashfs $(stat -c %s "$RES/rootfs.squashfs") B; mmdebstrap $((t1 - t0)) s," \
  "squashfs $((t2 - t1)) s (key $key)" >&2
echo "$RES/rootfs.squashfs"
