#!/usr/bin/env python3
"""Where overlay-init's own work goes on the NOR board: a translation profile.

    qemu/bench.sh --board nor --profile [--out DIR]

Under QEMU's TCG a guest instruction costs little once translated; the first
execution of each piece of code (a translation block, TB: a straight run of
guest instructions up to a branch) costs the translation, tens of times more.
A pre-init runs most of its code once, so its own work in the benchmark (the
time above the floor of mounts, module loads, moves, children and device
waits) is mostly the translation of the code it runs for the first time: its
own, and the kernel's code its syscalls reach first (the first user process
of a boot meets much of the kernel's code first; the busybox of the real
init would meet some of it otherwise).

This boots the board's steady JFFS2 flash once more with the release code
linked at another address and unstripped (qemu/build-binary.sh --profile)
and QEMU's `-d in_asm` log, and counts the TBs translated between
overlay-init's first and last instruction: its own by function, the
kernel's by function and by subsystem. The same boot's own-work figure
divided by the TBs gives the cost of one; each function's share is then an
estimate in ms. Output: DIR/profile.md and profile.json (default
qemu/out/bench-nor).
"""

import argparse
import bisect
import collections
import glob
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nor as B  # noqa: E402
from bench import REPO, die  # noqa: E402

BINARY = REPO / "target/profile/armv7-unknown-linux-musleabihf/release/overlay-init"
# Where qemu/build-binary.sh --profile links the code (the text segment).
OURS = (0x2000_0000, 0x3000_0000)
KERNEL = 0xC000_0000

# Kernel subsystems by symbol prefix (first match wins), for the summary.
SUBSYSTEMS = [
    ("JFFS2 (with its zlib)", ("jffs2_", "__jffs2", "check_tn_node", "zlib_", "inflate_",
                               "save_xattr", "xattr_")),
    ("timer ticks, scheduler, RCU, interrupts (whatever runs meanwhile)",
     ("rcu_", "__rcu", "call_rcu", "kvfree_call_rcu", "timekeeping_", "__run_timers", "run_timer",
      "hrtimer", "__hrtimer", "tick_", "update_process_times", "sched_", "__update_load",
      "update_", "enqueue_", "dequeue_", "task_tick", "try_to_wake_up", "wake_up", "check_preempt",
      "put_prev_task", "pick_next", "set_next", "handle_softirqs", "__do_softirq", "irq_",
      "__irq", "handle_irq", "gic_", "clockevents_", "timerqueue_", "__next_timer",
      "refresh_cpu_vm_stats", "vmstat_", "__queue_work", "queue_work", "worker_", "process_one",
      "ktime_", "vector_", "ret_fast_syscall", "ret_to_user", "__switch_to")),
    ("block layer (mtdblock)", ("blk_", "__blk", "bio_", "__bio", "submit_bio", "sbitmap_",
                                "blkdev_", "mtd_queue", "mtd_blktrans")),
    ("page cache, readahead", ("xas_", "ondemand_readahead", "page_cache_", "read_pages",
                               "mpage_", "readahead_", "filemap_", "__filemap", "fill_page_cache")),
    ("kernel printf (text of /proc and /sys files)", ("format_decode", "number", "vsnprintf",
                                                      "num_to_str", "sprintf", "snprintf",
                                                      "scnprintf", "string", "pointer",
                                                      "uuid_string", "bitmap_list_string")),
    ("overlayfs", ("ovl_",)),
    ("squashfs, xz", ("squashfs_", "xz_", "xz_dec")),
    ("MTD, CFI flash", ("mtd", "get_mtd", "cfi_", "part_", "concat_", "mmiocpy",
                        "inval_cache_and_wait")),
    ("UBI", ("ubi_",)),
    ("sysfs, kernfs", ("kernfs_", "sysfs_")),
    ("procfs", ("proc_", "seq_", "show_mountinfo", "mounts_open", "task_mem", "task_dump",
                "single_open", "__do_proc")),
    ("tmpfs, devtmpfs", ("shmem_", "devtmpfs", "ramfs_")),
    ("mount", ("do_mount", "path_mount", "do_new_mount", "vfs_get_tree", "mount_",
               "do_move_mount", "sys_mount", "sys_pivot_root", "graft_tree", "attach_",
               "clone_mnt", "mnt_", "vfs_create_mount", "alloc_vfsmnt", "do_remount",
               "reconfigure_", "fs_context", "legacy_", "vfs_parse_fs", "sget", "deactivate_")),
    ("path lookup, dcache", ("path_", "link_path", "walk_component", "step_into", "lookup_",
                             "d_", "__d_", "dput", "dget", "filename_", "getname", "follow_",
                             "complete_walk", "nd_", "terminate_walk", "prepend")),
    ("memory, page faults", ("handle_mm_fault", "do_", "__handle_mm", "mmap", "vma_", "__vma",
                             "mas_", "mt_", "mtree_", "unmap_", "zap_", "page_", "folio",
                             "filemap_", "__filemap", "alloc_pages", "get_page", "free_",
                             "__free", "anon_", "wp_page", "copy_page", "set_pte", "pte_",
                             "lru_", "mm_", "vm_", "__vm", "tlb_", "flush_")),
    ("exec, signals, tasks", ("bprm", "load_elf", "begin_new_exec", "exec_", "setup_arg",
                              "sig", "__sig", "copy_process", "wake_", "schedule", "__schedule")),
    ("tty, console, printk", ("tty_", "n_tty", "uart_", "pl011", "printk", "vprintk", "console_",
                              "devkmsg", "log_", "info_print", "prb_", "record_print")),
    ("files, read, write", ("vfs_", "ksys_", "sys_", "__sys", "fd_", "__fd", "fget", "fput",
                            "__fput", "filp_", "file_", "generic_file", "iterate_dir",
                            "rw_verify", "do_sys", "new_sync", "copy_", "arm_copy", "_copy",
                            "__arch_copy", "generic_perm", "inode_", "may_", "security_",
                            "getdents", "filldir", "fsnotify", "touch_atime", "atime_")),
    ("slab, allocation", ("kmem_", "__kmem", "kmalloc", "__kmalloc", "kfree", "slab_",
                          "___slab", "__slab", "new_slab", "pcpu_", "kzalloc", "kstrdup")),
]


def subsystem(name):
    for label, prefixes in SUBSYSTEMS:
        if name.startswith(prefixes):
            return label
    return "other kernel code"


class Symbols:
    """Address -> function name: from `nm` (ours) or System.map (the kernel)."""

    def __init__(self, pairs):
        pairs.sort()
        self.starts = [a for a, _, _ in pairs]
        self.items = pairs

    def name(self, addr, sized=True):
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return "?"
        a, size, n = self.items[i]
        if sized and size and addr >= a + size:
            return "?"
        return n

    @staticmethod
    def from_nm(binary):
        out = subprocess.run(["nm", "-S", "-C", str(binary)], capture_output=True, text=True,
                             check=True).stdout
        pairs = []
        for line in out.splitlines():
            p = line.split(None, 3)
            if len(p) == 4 and p[2] in "tTwW":
                pairs.append((int(p[0], 16), int(p[1], 16), p[3]))
        return Symbols(pairs)

    @staticmethod
    def from_system_map(path):
        pairs = []
        for line in open(path):
            p = line.split()
            if len(p) >= 3 and p[1] in "tTwW":
                pairs.append((int(p[0], 16), 0, p[2]))
        return Symbols(pairs)


def count_tbs(log_path, ours, kernel):
    """TBs translated from overlay-init's first TB to its last: (ours by
    function, kernel by function)."""
    mine, kern, pending = collections.Counter(), collections.Counter(), []
    started = False
    head = False
    with open(log_path, errors="replace") as f:
        for line in f:
            if line.startswith("IN:"):
                head = True
                continue
            if not head or not line.startswith("0x"):
                continue
            head = False
            addr = int(line.split(":", 1)[0], 16)
            if OURS[0] <= addr < OURS[1]:
                started = True
                # The kernel's TBs met since our previous one are inside the window.
                for k in pending:
                    kern[k] += 1
                pending = []
                mine[ours.name(addr)] += 1
            elif started and addr >= KERNEL:
                pending.append(kernel.name(addr, sized=False))
    return mine, kern


def profile_rootfs(rootfs, binary, out):
    """A copy of the NOR root squashfs with the profile build as overlay-init."""
    work = Path(tempfile.mkdtemp(prefix="overlay-profile-"))
    try:
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(work / "r"), str(rootfs)], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copyfile(binary, work / "r/sbin/overlay-init")
        (work / "r/sbin/overlay-init").chmod(0o755)
        out.unlink(missing_ok=True)
        subprocess.run(["mksquashfs", str(work / "r"), str(out), "-comp", "xz", "-all-root",
                        "-noappend", "-quiet", "-mkfs-time", "0", "-all-time", "0"], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True, help="the NOR board's root squashfs")
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--out", default=str(REPO / "qemu/out/bench-nor"))
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    maps = sorted(glob.glob(str(REPO / "qemu/cache/own-kernel/build/*/qemu-armv7-nor/System.map")))
    if not maps:
        die("no System.map of the NOR kernel under qemu/cache/own-kernel (qemu/build.sh "
            "qemu-armv7-nor builds it)")
    ours, kernel = Symbols.from_nm(a.binary), Symbols.from_system_map(maps[-1])

    work = Path(tempfile.mkdtemp(prefix="overlay-profile-nor-"))
    try:
        rootfs = profile_rootfs(Path(a.rootfs), Path(a.binary), work / "rootfs.squashfs")
        flash = B.mkflash(work / "flash.img", rootfs)
        # The steady state: overlay-init's first boot, then one steady boot.
        B.boot(flash, B.SETTLE)
        B.boot(flash, B.SETTLE)
        log = work / "in_asm.log"
        console = B.boot(flash, B.MARK, timeout=300, qemu=["-d", "in_asm", "-D", str(log)])
        mine, kern = count_tbs(log, ours, kernel)
    finally:
        shutil.rmtree(work)
    oi = B.parse_oi(console)
    own, total = oi["own"], oi["preinit_total"]
    n_mine, n_kern = sum(mine.values()), sum(kern.values())
    if not n_mine:
        die("no TB of overlay-init in the translation log")
    us_per_tb = own * 1e3 / (n_mine + n_kern)

    subs = collections.Counter()
    for name, n in kern.items():
        subs[subsystem(name)] += n

    def rows(counter):
        return [(name, n, n * us_per_tb / 1e3) for name, n in counter.most_common(a.top)]

    L = ["Translation profile, NOR board, steady JFFS2 boot (qemu/bench/profile_nor.py): "
         "the release code at 0x20000000, unstripped; QEMU `-d in_asm`; one boot, "
         "so read the shares, not the milliseconds.", "",
         f"This boot: pre-init total {total:.1f} ms, of which own work {own:.1f} ms "
         f"(the rest: the floor). Translation blocks (TBs) translated from overlay-init's first "
         f"instruction to its last: **{n_mine + n_kern}**: {n_mine} of overlay-init's code "
         f"({len(mine)} functions), {n_kern} of the kernel's (reached by its syscalls and page "
         f"faults). Own work / TBs = **{us_per_tb:.1f} µs per TB**: the estimates below are "
         f"TBs × that.", "",
         "| part | TBs | share | estimated ms |", "|---|---|---|---|",
         f"| overlay-init's code | {n_mine} | {n_mine / (n_mine + n_kern):.0%} | "
         f"{n_mine * us_per_tb / 1e3:.1f} |"]
    for label, n in subs.most_common():
        L.append(f"| kernel: {label} | {n} | {n / (n_mine + n_kern):.0%} | "
                 f"{n * us_per_tb / 1e3:.1f} |")
    L += ["", f"overlay-init's functions, the {a.top} with the most TBs:", "",
          "| function | TBs | estimated ms |", "|---|---|---|"]
    L += [f"| `{n[:110]}` | {c} | {ms:.1f} |" for n, c, ms in rows(mine)]
    L += ["", f"The kernel's functions, the {a.top} with the most TBs:", "",
          "| function | TBs | estimated ms |", "|---|---|---|"]
    L += [f"| `{n}` | {c} | {ms:.1f} |" for n, c, ms in rows(kern)]
    text = "\n".join(L) + "\n"
    (out / "profile.md").write_text(text)
    (out / "profile.json").write_text(json.dumps({
        "own_ms": own, "total_ms": total, "tbs_ours": n_mine, "tbs_kernel": n_kern,
        "us_per_tb": us_per_tb, "subsystems": dict(subs),
        "ours": dict(mine.most_common()), "kernel": dict(kern.most_common()),
    }, indent=1))
    print(text)
    print(f"profile-nor: written {out}/profile.md, profile.json")


if __name__ == "__main__":
    main()
