#!/bin/sh
# The reference pre-init: the job overlay-init does, written the way shell
# pre-inits do it (OpenWrt's preinit + mount_root, Ubuntu's overlayroot), in
# busybox sh. It is the baseline of qemu/bench.sh, and a readable summary of
# the boot flow:
#
#   1. mount /proc, /sys, /dev (devtmpfs), /run
#   2. load the board's modules (modprobe reads modules.dep)
#   3. wait for the root partition (GPT name "rootfs"), mount the squashfs at /rom
#   4. find "rootfs_data"; if it holds no filesystem and its start is blank,
#      format it with the lower's mkfs.ext4; mount it at /overlay (ext4 or
#      f2fs), or a tmpfs when that fails; with overlay.reset=1 on the command
#      line, delete upper/ and work/ (a factory reset, the simple way)
#   5. mount overlayfs (lower /rom, upper /overlay/upper) at /newroot
#   6. move /rom, /overlay, /proc, /sys, /dev, /run into it; switch_root to
#      /sbin/init
#
# What it does not do, and overlay-init does: e2fsck after an unclean
# shutdown, stacked lowers, PARTUUID= and the other root= forms, checks that
# the new root's init can run, factory reset, the state file for
# overlay-status, a log in dmesg of every decision, an emergency shell.
#
# Each stage ends with a line "overlay-bench: STAGE NS" on the console, NS
# being CLOCK_MONOTONIC read from /proc/timer_list without a fork.
PATH=/bin:/sbin
export PATH

mount -t proc proc /proc
mark() {
  { read -r _; read -r _; read -r t; } < /proc/timer_list
  t=${t#now at }
  echo "overlay-bench: $1 ${t% nsecs}"
}
mark start
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mark early

# The board's module lists, from the same board file overlay-init reads.
mods() { sed -n "s/^$1=//p" /etc/overlay-init.conf | tr ',' ' '; }
# shellcheck disable=SC2046
modprobe -a $(mods overlay.modules)
mark modules

# /dev node of the partition with GPT name $1
part() {
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$u"; then
      d=${u%/uevent}
      echo "/dev/${d##*/}"
      return 0
    fi
  done
  return 1
}
n=0
until root=$(part rootfs) && [ -b "$root" ]; do
  n=$((n + 1))
  [ "$n" -lt 200 ] || { echo "preinit: no rootfs partition"; exec sh; }
  sleep 0.05
done
mount -t squashfs -o ro "$root" /rom
mark lowers

data=$(part rootfs_data)
upper=tmpfs
if [ -n "$data" ]; then
  case $(hexdump -s 1080 -n 2 -e '1/2 "%04x"' "$data" 2>/dev/null) in
    ef53) fs=ext4 ;;
    *) fs=$(hexdump -s 1024 -n 4 -e '1/4 "%08x"' "$data" 2>/dev/null) ;;
  esac
  [ "$fs" = f2f52010 ] && fs=f2fs
  if [ "$fs" != ext4 ] && [ "$fs" != f2fs ] &&
     cmp -s -n 65536 "$data" /dev/zero; then
    echo "preinit: formatting blank $data"
    mount -o bind /dev /rom/dev
    chroot /rom /sbin/mkfs.ext4 -q -F "$data" && fs=ext4
    umount /rom/dev
  fi
  # shellcheck disable=SC2046
  [ "$fs" = ext4 ] || [ "$fs" = f2fs ] && modprobe -a $(mods "overlay.modules.$fs")
  if [ "$fs" = ext4 ] || [ "$fs" = f2fs ]; then
    mount -t "$fs" -o noatime "$data" /overlay && upper=$data
  fi
fi
[ "$upper" = tmpfs ] && mount -t tmpfs -o mode=0755 tmpfs /overlay
if grep -qw overlay.reset=1 /proc/cmdline; then
  # factory reset the shell way: delete the upper layer's files, then go on
  mark reset-start
  rm -rf /overlay/upper /overlay/work
  mark reset-done
fi
mkdir -p /overlay/upper /overlay/work
mark upper

mount -t overlay -o lowerdir=/rom,upperdir=/overlay/upper,workdir=/overlay/work \
  overlay /newroot
mark overlay

for m in rom overlay; do
  mkdir -p "/newroot/$m" 2>/dev/null
  mount --move "/$m" "/newroot/$m"
done
for m in dev proc sys run; do
  mount --move "/$m" "/newroot/$m"
done
# this shell's peak memory (its children come and go)
while read -r k v; do
  [ "$k" = VmHWM: ] && echo "overlay-bench: VmHWM $v"
done < "/newroot/proc/$$/status"
exec switch_root /newroot /sbin/init
