#!/usr/bin/env bash
# Download (cached) and unpack the Debian armhf pieces the images are made of:
#   qemu/cache/debs/            the .deb files, as apt-get download names them
#   qemu/cache/kernel/          linux-image-<ver>-armmp unpacked: boot/vmlinuz-<ver>,
#                               lib/modules/<ver>/ (+ modules.dep made by depmod)
#   qemu/cache/kernel.version   <ver>, e.g. 6.1.0-50-armmp
#   qemu/cache/armhf-root/      busybox-static, e2fsprogs and the shared libraries
#                               (+ ld-linux-armhf.so.3) that mke2fs/e2fsck need
# The kernel version is resolved from the linux-image-<flavour> metapackage
# (KERNEL_FLAVOUR, default armmp), never hard-coded. Reruns only ask apt-cache
# and return when the stamp matches. Needs `apt-get update` with armhf enabled
# (qemu/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

FLAVOUR=${KERNEL_FLAVOUR:-armmp}
ARCH=${DEB_ARCH:-armhf}
CACHE=qemu/cache
DEBS=$CACHE/debs
KDIR=$CACHE/kernel
ROOT=$CACHE/armhf-root
STAMP=$CACHE/fetch.stamp
mkdir -p "$DEBS"

die() { echo "fetch.sh: $*" >&2; exit 1; }

outputs_ok() {
  [ -f "$CACHE/kernel.version" ] && [ -d "$KDIR/lib/modules/$(cat "$CACHE/kernel.version")" ] &&
    [ -x "$ROOT/bin/busybox" ] && [ -x "$ROOT/sbin/mke2fs" ]
}
# Fast path: nothing to do while the apt lists are older than our last run
# (each apt-cache call costs ~1 s here). FETCH_FORCE=1 re-resolves.
if [ -z "${FETCH_FORCE:-}" ] && [ -f "$STAMP" ] && outputs_ok &&
   grep -q "^linux-image-[0-9].*-${FLAVOUR}_" "$STAMP" &&
   [ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$STAMP" -name '*Packages*' -print -quit 2>/dev/null)" ]; then
  echo "fetch.sh: cached: kernel $(cat "$CACHE/kernel.version")"
  exit 0
fi

# One apt-cache depends call: the kernel metapackage depends on the versioned
# image package; e2fsprogs on its libraries.
deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances "linux-image-$FLAVOUR:$ARCH" "e2fsprogs:$ARCH" 2>/dev/null) ||
  die "apt-cache depends failed (run qemu/setup.sh: armhf apt lists missing?)"
kpkg=$(echo "$deps" | awk '/^linux-image-/ {inmeta=1; next} /^[^ ]/ {inmeta=0}
         inmeta && $1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {sub(/:.*/, "", $2); print $2; exit}')
[ -n "$kpkg" ] || die "cannot resolve linux-image-$FLAVOUR:$ARCH"
kver=${kpkg#linux-image-}
e2libs=$(echo "$deps" | awk '/^e2fsprogs/ {ine2=1; next} /^[^ ]/ {ine2=0}
           ine2 && ($1 == "PreDepends:" || $1 == "Depends:") && $2 ~ /^lib/ {sub(/:.*/, "", $2); print $2}')
[ -n "$e2libs" ] || die "cannot resolve e2fsprogs:$ARCH dependencies"

# Userland: busybox-static, e2fsprogs, its library dependencies, libc6.
userpkgs=$(printf '%s\n' busybox-static e2fsprogs libc6 $e2libs | awk '!seen[$0]++' | tr '\n' ' ')
userpkgs=${userpkgs% }

# One apt-cache policy call: package -> expected .deb file name
# ("1:2.3" is stored as "1%3a2.3").
declare -A debfile
while read -r p v; do
  [ "$v" != "(none)" ] || continue
  debfile[$p]=${p}_${v//:/%3a}_$ARCH.deb
done < <(apt-cache policy $(for p in "$kpkg" $userpkgs; do echo "$p:$ARCH"; done) 2>/dev/null |
         awk '/^[^ ]/ {pkg=$1; sub(/:.*/, "", pkg)} $1 == "Candidate:" {print pkg, $2}')
for p in "$kpkg" $userpkgs; do
  [ -n "${debfile[$p]:-}" ] || die "no candidate for $p:$ARCH"
done

want=$(for p in "$kpkg" $userpkgs; do echo "${debfile[$p]}"; done)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && outputs_ok &&
   [ "$(cat "$CACHE/kernel.version")" = "$kver" ]; then
  touch "$STAMP"
  echo "fetch.sh: up to date: kernel $kver"
  exit 0
fi

# Download what is missing.
missing=()
for p in "$kpkg" $userpkgs; do
  [ -s "$DEBS/${debfile[$p]}" ] || missing+=("$p:$ARCH")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fetch.sh: downloading ${missing[*]}"
  (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}")
fi
for p in "$kpkg" $userpkgs; do
  [ -s "$DEBS/${debfile[$p]}" ] || die "download of $p gave no $DEBS/${debfile[$p]}"
done

# Unpack the kernel (fresh: a version change must not leave old modules).
rm -rf "$KDIR" "$KDIR.tmp"
mkdir -p "$KDIR.tmp"
dpkg-deb -x "$DEBS/${debfile[$kpkg]}" "$KDIR.tmp"
[ -f "$KDIR.tmp/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in ${debfile[$kpkg]}"
# The package carries no modules.dep: make one for the whole tree (build.sh
# reads it to find the dependencies of the board's modules).
depmod -b "$KDIR.tmp" "$kver"
mv "$KDIR.tmp" "$KDIR"
echo "$kver" > "$CACHE/kernel.version"

# Unpack the userland into one armhf root.
rm -rf "$ROOT" "$ROOT.tmp"
mkdir -p "$ROOT.tmp"
for p in $userpkgs; do
  dpkg-deb -x "$DEBS/${debfile[$p]}" "$ROOT.tmp"
done
mv "$ROOT.tmp" "$ROOT"

# Check the ARM binaries run (qemu-arm finds ld-linux-armhf.so.3 under -L).
qemu-arm "$ROOT/bin/busybox" true ||
  die "busybox does not run under qemu-arm"
for b in mke2fs e2fsck; do
  out=$(qemu-arm -L "$ROOT" "$ROOT/sbin/$b" -V 2>&1) ||
    die "$b does not run under qemu-arm -L $ROOT: $out"
  echo "fetch.sh: $b: $(echo "$out" | head -n1)"
done

echo "$want" > "$STAMP"
echo "fetch.sh: kernel $kver, userland: $userpkgs"
