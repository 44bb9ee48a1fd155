#!/usr/bin/env python3
"""overlay-init against a busybox-sh pre-init, side by side in one run.

Run by qemu/bench.sh (which builds everything first); see it for the options.
Every figure that depends on the machine's speed is reported next to the
shell baseline measured in the same run, alternating boots, so the ratio
holds on a noisy machine where bare milliseconds do not.

Timing: each pre-init's stages on CLOCK_MONOTONIC in the guest.
  overlay-init  its log: "started X ms after the kernel", "pre-init done in ...
                (stage ms, ...)" and "time in syscalls and children: ..."
  shell         lines "overlay-bench: STAGE NS" (qemu/bench/shell-preinit.sh)
  both          the real init's first line, "real init reached (monotonic NS
                ns)" (board rcS): the end of the pre-init, exec included.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-armv7"
OUT = REPO / "qemu/out" / BOARD
TRIPLE = "armv7-unknown-linux-musleabihf"
STAGES = ["early", "modules", "lowers", "upper", "overlay", "switch+exec"]
# overlay-init's own stage names, folded into the common ones above
OI_STAGE = {
    "early-mounts": "early",
    "config": "early",
    "modules": "modules",
    "lowers": "lowers",
    "upper": "upper",
    "overlay": "overlay",
}


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, **kw)


# ------------------------------------------------------------------ booting
# The script of the boots that make a steady start state: when the boot
# started overlay-init's background job (the images' manifests, at nice 19,
# once per image), wait for its end line (at most 120 s), so that the timed
# boots do not run it again beside the real init; then let the filesystem
# settle (JFFS2 writes its clean markers lazily).
SETTLE = r"""if dmesg | grep -q 'overlay-init: # in the background'; then
  i=0
  while [ $i -lt 120 ] && ! dmesg | grep -qE 'firmware upgrade: lower [0-9]+: (manifest recorded|no manifest)|firmware upgrade \(background\): '; do
    sleep 1; i=$((i + 1))
  done
fi
sync; sleep 2; sync"""

# QEMU's instruction counting: the guest's clock advances 2 ns per guest
# instruction (a 500 MIPS in-order CPU) instead of following the host's, and
# skips idle time (sleep=off). What TCG's translation of code met for the
# first time and a shared host add to wall-clock time drops out, and every
# boot of the same images gives the same figures to the microsecond.
ICOUNT = ["-icount", "shift=1,sleep=off"]


def boot(initrd, disk, script, append="", timeout=120, qemu=()):
    """Boots the board once; returns the console text."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(script + "\n")
        script_path = f.name
    try:
        cmd = [REPO / "qemu/run.sh", "--initrd", initrd, "--disk", disk,
               "--script", script_path, "--timeout", str(timeout)]
        if append:
            cmd += ["--append", " " + append]
        if qemu:
            cmd += ["--", *qemu]
        p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
    finally:
        os.unlink(script_path)
    if "overlay-demo: script exit 0" not in p.stdout:
        sys.stderr.write(p.stdout[-4000:])
        die(f"a boot did not reach the end of its script (run.sh exit {p.returncode})")
    return p.stdout


def facts(console):
    return dict(m.groups() for m in re.finditer(r"^T:([\w.]+)=(.*?)\r?$", console, re.M))


def real_init_ms(console):
    m = re.search(r"real init reached \(monotonic (\d+) ns\)", console)
    if not m:
        die("no 'real init reached (monotonic N ns)' line: is the rootfs's rcS current?")
    return int(m.group(1)) / 1e6


def parse_overlay_init(console):
    """Stage times (ms) of one overlay-init boot, plus its floor and memory."""
    m = re.search(r"overlay-init: overlay-init \S+ \(.*?\), started ([\d.]+) ms after the kernel", console)
    done = re.search(r"overlay-init: pre-init done in ([\d.]+) ms \((.*?) ms\); starting", console)
    if not m or not done:
        die("overlay-init's start/done lines are missing from the console")
    start = float(m.group(1))
    st = {s: 0.0 for s in STAGES}
    for part in done.group(2).split(", "):
        name, ms = part.rsplit(" ", 1)
        if name in OI_STAGE:
            st[OI_STAGE[name]] += float(ms)
    end = real_init_ms(console)
    st["switch+exec"] = end - start - sum(st[s] for s in STAGES[:-1])
    r = {"start": start, "end": end, "total": end - start, "stages": st}
    fl = re.search(r"time in syscalls and children: (.*?); own work ([\d.]+) ms", console)
    if fl:
        floor = {}
        for part in fl.group(1).split(", "):
            mm = re.match(r"(.+) ([\d.]+) ms \((\d+)\)", part)
            if mm:
                floor[mm.group(1)] = (float(mm.group(2)), int(mm.group(3)))
        r["floor"] = floor
        r["own"] = float(fl.group(2))
        r["preinit_total"] = float(done.group(1))
    hwm = re.search(r"peak memory \(VmHWM\) (\d+) kB", console)
    r["vmhwm_kb"] = int(hwm.group(1)) if hwm else None
    return r


def parse_shell(console):
    marks = {k: int(v) / 1e6 for k, v in
             re.findall(r"^overlay-bench: ([\w-]+) (\d+)\r?$", console, re.M)}
    for k in ["start", "early", "modules", "lowers", "upper", "overlay"]:
        if k not in marks:
            die(f"the shell pre-init printed no '{k}' mark")
    end = real_init_ms(console)
    prev, st = marks["start"], {}
    for k in ["early", "modules", "lowers", "upper", "overlay"]:
        st[k] = marks[k] - prev
        prev = marks[k]
    st["switch+exec"] = end - prev
    hwm = re.search(r"^overlay-bench: VmHWM (\d+)", console, re.M)
    r = {"start": marks["start"], "end": end, "total": end - marks["start"], "stages": st,
         "vmhwm_kb": int(hwm.group(1)) if hwm else None}
    if "reset-start" in marks:
        r["reset_ms"] = marks["reset-done"] - marks["reset-start"]
    return r


# Guest script of a timing boot: sectors the pre-init wrote to rootfs_data
# (field 7 of the partition's stat), read first thing.
WRITES = r'''for u in /sys/class/block/*/uevent; do
  grep -qx PARTNAME=rootfs_data "$u" && d=${u%/uevent}
done
set -- $(cat "$d/stat")
echo "T:sectors_written=$7"
echo "T:writes_ios=$5"'''


# ------------------------------------------------------------------ images
def mkdisk(out, *parts):
    sh(REPO / "qemu/mkdisk.sh", out, *parts, stdout=subprocess.DEVNULL)
    return out


def upper_image(path, nfiles, work):
    """An ext4 image whose upper layer holds nfiles empty files (100 per dir)."""
    tree = work / f"tree-{nfiles}"
    shutil.rmtree(tree, ignore_errors=True)
    many = tree / "upper/root/many"
    many.mkdir(parents=True)
    (tree / "work").mkdir()
    for d in range((nfiles + 99) // 100):
        dd = many / f"d{d}"
        dd.mkdir()
        for i in range(min(100, nfiles - d * 100)):
            (dd / f"f{i}").touch()
    size_mib = 64 if nfiles <= 20000 else 160
    sh("mkfs.ext4", "-q", "-F", "-N", str(nfiles + nfiles // 100 + 4096), "-d", tree,
       path, f"{size_mib}M")
    shutil.rmtree(tree)
    return path, size_mib


# ------------------------------------------------------------------ size
def size_report(top):
    """Sizes of the stripped binary, and the biggest contributors from an
    unstripped build of the same code with the same flags."""
    stripped = REPO / "target" / TRIPLE / "release/overlay-init"
    tdir = REPO / "target/size-report"
    env = dict(os.environ, CARGO_TARGET_DIR=str(tdir), CARGO_PROFILE_RELEASE_STRIP="false")
    sh(REPO / "qemu/build-binary.sh", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unstripped = tdir / TRIPLE / "release/overlay-init"
    sections = {}
    for line in subprocess.run(["arm-linux-gnueabihf-size", "-A", str(unstripped)],
                               capture_output=True, text=True, check=True).stdout.splitlines():
        p = line.split()
        if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit() and not p[0].startswith((".debug", ".comment", ".ARM.attributes")):
            sections[p[0]] = int(p[1])
    syms = []
    for line in subprocess.run(["arm-linux-gnueabihf-nm", "--size-sort", "-S", "-C", str(unstripped)],
                               capture_output=True, text=True, check=True).stdout.splitlines():
        p = line.split(" ", 3)
        # .bss (b/B) takes no room in the file
        if len(p) == 4 and p[2] not in ("b", "B"):
            syms.append((int(p[1], 16), p[3]))
    groups = {}
    for size, name in syms:
        n = name.lstrip("<")
        if n.startswith("overlay_init"):
            g = "overlay-init (our code)"
        elif re.match(r"(std|core|alloc)::", n):
            g = "Rust std/core/alloc"
        else:
            m = re.match(r"(rustix|nix|heapless|crc32fast|log|signal_hook)\b", n)
            g = f"crate {m.group(1)}" if m else "musl libc and other"
        groups[g] = groups.get(g, 0) + size
    return {
        "bytes": stripped.stat().st_size,
        "sections": sections,
        "groups": sorted(groups.items(), key=lambda kv: -kv[1]),
        "top": sorted(syms, reverse=True)[:top],
    }


# ------------------------------------------------------------------ stats
def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


def fmt_ms(x):
    return f"{x:.1f}"


# ------------------------------------------------------------------ chart
def svg_timeline(runs, path):
    """One boot of each pre-init (the median one): stages on a time axis from
    the kernel's start."""
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"]
    end = max(r["end"] for _, r in runs)
    scale = 760 / end
    rows = []
    for i, (label, r) in enumerate(runs):
        y = 40 + i * 60
        rows.append(f'<text x="10" y="{y + 22}" font-size="13">{label}</text>')
        x = r["start"]
        for j, s in enumerate(STAGES):
            w = r["stages"][s]
            rows.append(f'<rect x="{120 + x * scale:.1f}" y="{y}" width="{max(w * scale, 0.5):.1f}" '
                        f'height="32" fill="{colours[j]}"><title>{s} {w:.1f} ms</title></rect>')
            x += w
        rows.append(f'<text x="{120 + r["end"] * scale + 4:.1f}" y="{y + 22}" font-size="11">'
                    f'{r["total"]:.0f} ms</text>')
    legend = "".join(
        f'<rect x="{120 + k * 125}" y="170" width="12" height="12" fill="{c}"/>'
        f'<text x="{136 + k * 125}" y="181" font-size="11">{s}</text>'
        for k, (s, c) in enumerate(zip(STAGES, colours)))
    ticks = "".join(
        f'<line x1="{120 + t * scale:.1f}" y1="30" x2="{120 + t * scale:.1f}" y2="150" stroke="#ddd"/>'
        f'<text x="{120 + t * scale:.1f}" y="165" font-size="10" text-anchor="middle">{t} ms</text>'
        for t in range(0, int(end) + 1, 250))
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="960" height="200" font-family="sans-serif">'
        f'<text x="10" y="18" font-size="14">Pre-init stages from the kernel start (QEMU TCG, one boot each)</text>'
        f'{ticks}{"".join(rows)}{legend}</svg>\n')


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--reset-sizes", default="1000,10000,100000")
    ap.add_argument("--shell-initrd", required=True)
    ap.add_argument("--out", default=str(REPO / "qemu/out/bench"))
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="overlay-bench-"))
    oi_initrd = OUT / "initramfs.cpio.gz"
    pre = {"overlay-init": oi_initrd, "shell": Path(a.shell_initrd)}
    parse = {"overlay-init": parse_overlay_init, "shell": parse_shell}

    # The start state of every boot: a formatted data partition (first boot)
    # that has seen one normal boot (which starts the wear log: its daily
    # record is not part of every boot's writes).
    t0 = time.monotonic()
    base = mkdisk(work / "base.img", f"rootfs:auto:{OUT / 'rootfs.squashfs'}", "rootfs_data:64")
    boot(oi_initrd, base, SETTLE)
    boot(oi_initrd, base, SETTLE)
    runs = {k: [] for k in pre}
    writes = {k: [] for k in pre}
    for i in range(a.runs):
        order = list(pre) if i % 2 == 0 else list(pre)[::-1]
        for k in order:
            disk = work / "disk.img"
            shutil.copyfile(base, disk)
            con = boot(pre[k], disk, WRITES)
            runs[k].append(parse[k](con))
            writes[k].append(int(facts(con).get("sectors_written", "-1")))
        print(f"bench: run {i + 1}/{a.runs}: overlay-init {runs['overlay-init'][-1]['total']:.0f} ms, "
              f"shell {runs['shell'][-1]['total']:.0f} ms", flush=True)
    counted = {}
    for k in pre:
        disk = work / "disk.img"
        shutil.copyfile(base, disk)
        counted[k] = parse[k](boot(pre[k], disk, WRITES, qemu=ICOUNT))

    # Factory reset, by size.
    resets = []
    for n in [int(x) for x in a.reset_sizes.split(",") if x]:
        img, size_mib = upper_image(work / f"data-{n}.img", n, work)
        row = {"files": n}
        for k in pre:
            disk = mkdisk(work / "reset.img", f"rootfs:auto:{OUT / 'rootfs.squashfs'}",
                          f"rootfs_data:{size_mib}:{img}")
            script = ("while [ -n \"$(ls /overlay/.reset/trash 2>/dev/null)\" ]; do sleep 0.5; done\n"
                      "echo \"T:left=$(ls /root/many 2>/dev/null | wc -l)\"\n"
                      "dmesg | grep 'factory reset' | sed 's/^/T:log=/'")
            con = boot(pre[k], disk, script, append="overlay.reset=1", timeout=900)
            if facts(con).get("left") != "0":
                die(f"{k}: the {n}-file reset left files behind")
            if k == "shell":
                row["shell_ms"] = parse_shell(con)["reset_ms"]
                continue
            wipe = re.search(r"factory reset #\d+: done in (\d+) ms", con)
            inboot = re.search(r"factory reset: (?:trash deleted \((\d+) entries in (\d+) ms\)|(\d+) entries deleted in (\d+) ms; the rest)", con)
            bg = re.search(r"background trash deletion done \((\d+) entries in (\d+) ms\)", con)
            if not wipe or not inboot:
                die(f"overlay-init: no reset log lines for {n} files")
            row["wipe_ms"] = int(wipe.group(1))
            row["in_boot_delete_ms"] = int(inboot.group(2) or inboot.group(4))
            row["entries"] = int((bg or inboot).group(1) if bg else (inboot.group(1) or inboot.group(3)))
            row["delete_total_ms"] = int(bg.group(2)) if bg else row["in_boot_delete_ms"]
        row["boot_delay_ms"] = row["wipe_ms"] + row["in_boot_delete_ms"]
        resets.append(row)
        print(f"bench: reset {n} files: {row}", flush=True)

    size = size_report(a.top)
    elapsed = time.monotonic() - t0
    report = render(runs, writes, resets, size, a.runs, elapsed, counted)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(
        {"runs": runs, "counted": counted, "writes": writes, "resets": resets, "size": size},
        indent=1))
    pick = []
    for k in pre:
        rs = sorted(runs[k], key=lambda r: r["total"])
        pick.append((k, rs[len(rs) // 2]))
    svg_timeline(pick, out / "timeline.svg")
    print(report)
    print(f"bench: written {out}/results.md, results.json, timeline.svg")
    shutil.rmtree(work, ignore_errors=True)


def render_counted(counted):
    """One instruction-counted boot of each pre-init, by stage."""
    oi, shl = counted["overlay-init"], counted["shell"]
    L = ["", "Instruction-counted (QEMU `-icount shift=1,sleep=off`: 2 ns per guest instruction, "
         "as on a 500 MIPS in-order CPU; no cost of TCG's translation, no host noise; one boot "
         "each, and every run gives the same figures), ms:", "",
         "| stage | overlay-init | shell | ratio |", "|---|---|---|---|"]
    for s in STAGES:
        a, b = oi["stages"][s], shl["stages"][s]
        L.append(f"| {s} | {a:.1f} | {b:.1f} | {a / b:.2f} |" if b else f"| {s} | {a:.1f} | {b:.1f} | |")
    L.append(f"| **total** | {oi['total']:.1f} | {shl['total']:.1f} | "
             f"**{oi['total'] / shl['total']:.2f}** |")
    if "own" in oi:
        L += ["", f"overlay-init's own clock, instruction-counted: total {oi['preinit_total']:.1f} ms, "
              f"own work {oi['own']:.1f} ms ({oi['own'] / oi['preinit_total']:.0%}); the floor: "
              + ", ".join(f"{k} {v[0]:.1f} ms ({v[1]})" for k, v in oi.get("floor", {}).items())
              + "."]
    return L


def render(runs, writes, resets, size, n, elapsed, counted=None):
    oi, shl = runs["overlay-init"], runs["shell"]
    L = [f"Benchmark: overlay-init against the busybox-sh reference pre-init "
         f"(qemu/bench/shell-preinit.sh), {n} boots each, alternating, same kernel "
         f"and images; QEMU TCG armv7 (-smp 1). {elapsed:.0f} s in all.", "",
         "Time from /init's start to the real init's first line (CLOCK_MONOTONIC in the guest), ms:", "",
         "| stage | overlay-init median (min–max) | shell median (min–max) | ratio |",
         "|---|---|---|---|"]
    for s in STAGES + ["total"]:
        a = [r["total"] if s == "total" else r["stages"][s] for r in oi]
        b = [r["total"] if s == "total" else r["stages"][s] for r in shl]
        ra = med(a) / med(b) if med(b) > 0 else float("nan")
        (alo, ahi), (blo, bhi) = spread(a), spread(b)
        bold = "**" if s == "total" else ""
        L.append(f"| {bold}{s}{bold} | {fmt_ms(med(a))} ({fmt_ms(alo)}–{fmt_ms(ahi)}) | "
                 f"{fmt_ms(med(b))} ({fmt_ms(blo)}–{fmt_ms(bhi)}) | {bold}{ra:.2f}{bold} |")
    if counted:
        L += render_counted(counted)
    L += ["", "Where overlay-init's time goes (medians, ms; its own stage clock, start to the "
          "end of its switch stage):", "",
          "| part | ms | calls |", "|---|---|---|"]
    kinds = list(oi[0].get("floor", {}).keys())
    floor_sum = 0.0
    for k in kinds:
        v = med([r["floor"][k][0] for r in oi])
        floor_sum += v
        L.append(f"| {k} | {fmt_ms(v)} | {oi[0]['floor'][k][1]} |")
    own = med([r["own"] for r in oi])
    tot = med([r["preinit_total"] for r in oi])
    L.append(f"| **floor** (sum of the above) | {fmt_ms(floor_sum)} | |")
    L.append(f"| **overlay-init's own work** | {fmt_ms(own)} ({100 * own / tot:.0f}% of {fmt_ms(tot)}) | |")
    L += ["", "Memory and flash writes (medians):", "",
          "| | overlay-init | shell |", "|---|---|---|",
          f"| peak memory of the pre-init process (VmHWM) | {med([r['vmhwm_kb'] for r in oi]):.0f} kB | "
          f"{med([r['vmhwm_kb'] for r in shl]):.0f} kB (the sh process; each command forks more) |",
          f"| sectors written to rootfs_data by one normal boot, up to the real init | "
          f"{med(writes['overlay-init']):.0f} ({med(writes['overlay-init']) / 2:.0f} KiB) | "
          f"{med(writes['shell']):.0f} ({med(writes['shell']) / 2:.0f} KiB) |"]
    if resets:
        L += ["", "Factory reset (overlay.reset=1 at boot), ms; shell = `rm -rf upper work` "
              "in the reference pre-init:", "",
              "| files | wipe (renames) | boot delay (wipe + bounded deletion) | whole deletion | "
              "per 1000 files | shell rm -rf (boot delay) | boot delay ratio |",
              "|---|---|---|---|---|---|---|"]
        for r in resets:
            L.append(f"| {r['files']} | {r['wipe_ms']} | {r['boot_delay_ms']} | {r['delete_total_ms']} | "
                     f"{r['delete_total_ms'] * 1000 / r['files']:.0f} | {fmt_ms(r['shell_ms'])} | "
                     f"{r['boot_delay_ms'] / r['shell_ms']:.2f} |")
    L += ["", f"Binary (armv7, static, all roles): **{size['bytes']} bytes** "
          f"({size['bytes'] / 1024:.0f} KiB; budget 320 KiB, target 256 KiB).", "",
          "| contributor (unstripped build, symbol sizes) | bytes |", "|---|---|"]
    for g, b in size["groups"]:
        L.append(f"| {g} | {b} |")
    L += ["", "| largest symbols | bytes |", "|---|---|"]
    for b, name in size["top"]:
        L.append(f"| `{name[:90]}` | {b} |")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
