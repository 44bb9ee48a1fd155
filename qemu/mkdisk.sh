#!/usr/bin/env bash
# Make a GPT disk image from partition specs.
#
#   qemu/mkdisk.sh OUT NAME:SIZE_MIB[:FILE] ...
#
# Partitions are laid out in order from 1 MiB, each 1 MiB aligned, with GPT
# partition names NAME (what PARTLABEL= and PARTNAME= see). SIZE_MIB is a whole
# number of MiB, or "auto" = FILE's size rounded up to 1 MiB. FILE, if given,
# is written at the start of the partition; the rest stays zero (sparse), so a
# partition without FILE is blank. OUT is replaced. Prints nothing but errors.
#
# Example: qemu/mkdisk.sh disk.img rootfs:auto:rootfs.squashfs rootfs_data:64
set -euo pipefail

die() { echo "mkdisk.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 OUT NAME:SIZE_MIB[:FILE] ..."
out=$1; shift

MiB=$((1024 * 1024))
SECT=512
names=() starts=() sizes=() files=()
next=1   # MiB; the primary GPT lives in the first MiB
for spec in "$@"; do
  IFS=: read -r name size file extra <<<"$spec"
  [ -z "${extra:-}" ] || die "bad spec '$spec' (a FILE path cannot contain ':')"
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad partition name in '$spec'"
  if [ -n "${file:-}" ] && [ ! -f "$file" ]; then die "$file: no such file"; fi
  if [ "$size" = auto ]; then
    [ -n "${file:-}" ] || die "'$spec': size auto needs a FILE"
    bytes=$(stat -c %s "$file")
    size=$(( (bytes + MiB - 1) / MiB ))
    [ "$size" -gt 0 ] || size=1
  fi
  [[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -gt 0 ] || die "bad size in '$spec'"
  if [ -n "${file:-}" ] && [ "$(stat -c %s "$file")" -gt $((size * MiB)) ]; then
    die "$file does not fit in $size MiB"
  fi
  names+=("$name") starts+=("$next") sizes+=("$size") files+=("${file:-}")
  next=$((next + size))
done
total=$((next + 1))   # + 1 MiB for the backup GPT at the end

rm -f "$out"
truncate -s $((total * MiB)) "$out"
{
  echo "label: gpt"
  echo "unit: sectors"
  for i in "${!names[@]}"; do
    echo "start=$((starts[i] * MiB / SECT)), size=$((sizes[i] * MiB / SECT)), type=0FC63DAF-8483-4772-8E3D-693D8E7D4784, name=\"${names[i]}\""
  done
} | sfdisk --quiet --no-reread --no-tell-kernel "$out" >/dev/null

for i in "${!names[@]}"; do
  [ -n "${files[i]}" ] || continue
  dd if="${files[i]}" of="$out" bs=1M seek="${starts[i]}" conv=notrunc,sparse status=none
done
