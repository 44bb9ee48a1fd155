#!/usr/bin/env python3
"""overlay-init against OpenWrt's pre-init + fstools' mount_root on the NOR
board (qemu-armv7-nor), side by side in one run.

Run by qemu/bench.sh --board nor (which builds everything first); see it for
the options. Both pre-inits boot the same kernel and the same flash image:
the board's root squashfs with OpenWrt's real mount_root and the anchors'
owrt-preinit in it (qemu/openwrt-rootfs.sh), the upper on the MTD partition
rootfs_data (JFFS2, or UBIFS on a UBI volume). overlay-init runs as the
board's init=/sbin/overlay-init, the reference as init=/sbin/owrt-preinit.
Boots alternate (the order flips every run) and the configurations are
interleaved, so a noisy machine moves both sides alike.

Timing (all in the guest):
  span          the kernel's "Run /sbin/X as init process" (printk clock) to
                the real init's first line, "real init reached (monotonic N
                ns)" (board rcS, CLOCK_MONOTONIC): the whole pre-init, exec
                of the pre-init and of the real init included
  overlay-init  its log: "started X ms after the kernel", "pre-init done in
                T ms (stage ms, ...)", "time in syscalls and children: ...;
                own work N ms", "peak memory (VmHWM)"
  OpenWrt       owrt-preinit's "owrt-bench: STAGE NS" marks (start, early,
                mount_root: CLOCK_MONOTONIC from /proc/timer_list, no fork)
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    ICOUNT, REPO, SETTLE, die, facts, fmt_ms, med, real_init_ms, spread)

BOARD = "qemu-armv7-nor"
OUT = REPO / "qemu/out" / BOARD
UBI = "ubi.mtd=rootfs_data"
REF = "init=/sbin/owrt-preinit"
# Serial console at 115200 baud, 8N1: 10 bit times a byte.
US_PER_BYTE = 10 / 115200 * 1e6

# The configurations: the flash each boot starts from ("blank", or the base
# made by overlay-init's first boot and one steady boot), what each side
# appends to the command line, and what /overlay must be after the boot.
CONFIGS = {
    "jffs2-steady": dict(
        title="JFFS2, steady boot", base="jffs2", append={"overlay-init": "", "openwrt": REF},
        expect={"overlay-init": "jffs2", "openwrt": "jffs2"}),
    # The same with the kernel's `quiet` on both sides: what reaches the
    # console then (the kernel echoes only below console_loglevel).
    "jffs2-steady-quiet": dict(
        title="JFFS2, steady boot, `quiet`", base="jffs2",
        append={"overlay-init": "quiet", "openwrt": f"{REF} quiet"},
        expect={"overlay-init": "jffs2", "openwrt": "jffs2"}),
    "jffs2-first": dict(
        title="JFFS2, first boot on blank flash", base="blank",
        append={"overlay-init": "", "openwrt": REF},
        expect={"overlay-init": "jffs2", "openwrt": "tmpfs"}),
    "ubifs-steady": dict(
        title="UBIFS, steady boot", base="ubifs",
        append={"overlay-init": UBI, "openwrt": f"{REF} {UBI}", "overlay-init-attach": ""},
        expect={"overlay-init": "ubifs", "openwrt": "ubifs", "overlay-init-attach": "ubifs"}),
    "ubifs-first": dict(
        title="UBIFS, first boot on blank flash", base="blank",
        append={"overlay-init": UBI, "openwrt": f"{REF} {UBI}"},
        expect={"overlay-init": "ubifs", "openwrt": "tmpfs"}),
}
LABEL = {"overlay-init": "overlay-init", "openwrt": "OpenWrt",
         "overlay-init-attach": "overlay-init, attaching UBI itself"}

MARK = r'''mark() { { read -r _; read -r _; read -r t; } < /proc/timer_list; t=${t#now at }; echo "T:$1=${t% nsecs}"; }
fstype() { awk -v m="$1" '$2==m {t=$3} END {print t}' /proc/mounts; }
upper() { t=$(fstype /overlay); [ -n "$t" ] || ! grep -q '^overlayfs:/tmp/root / ' /proc/mounts || t=tmpfs; echo "$t"; }
echo "T:overlay=$(upper)"
mark k0; echo bench-clock > /dev/kmsg; mark k1
dmesg | grep -E ' as init process$|overlay-init: |mount_root: |bench-clock$' | sed 's/^/D:/'
'''
# The reference's first boot ends on tmpfs: OpenWrt's S95done runs
# `mount_root done`, which formats JFFS2 and moves the overlay onto it. Timed
# here, after the boot, as that deferred part of the job.
DONE = r'''mark done0; mount_root done; echo "T:done_rc=$?"; mark done1
echo "T:overlay_after=$(upper)"'''


# ------------------------------------------------------------------ booting
def boot(flash, script, append="", timeout=120, qemu=()):
    """Boots the NOR board once from pflash image `flash`; returns the console."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(script + "\n")
        script_path = f.name
    try:
        cmd = [REPO / "qemu/run.sh", "--board", BOARD, "--out", OUT, "--flash", flash,
               "--script", script_path, "--timeout", str(timeout)]
        # The kernel's default console loglevel (7), not the board's
        # loglevel=8 of the demo and the tests: the console as a product
        # shows it (overlay-init's details are KERN_DEBUG: in dmesg only).
        cmd += ["--append", " loglevel=7" + (" " + append if append else "")]
        if qemu:
            cmd += ["--", *qemu]
        p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
    finally:
        Path(script_path).unlink()
    if "overlay-demo: script exit 0" not in p.stdout:
        sys.stderr.write(p.stdout[-4000:])
        die(f"a boot ({append or 'default'}) did not reach the end of its script "
            f"(run.sh exit {p.returncode})")
    return p.stdout


def run_mono(console):
    """(CLOCK_MONOTONIC in ms, path, printk-minus-monotonic offset in ms) of
    the kernel's 'Run /sbin/X': its printk time, corrected by the offset the
    guest measured in the same boot (clock_offset; 5-22 ms here, different
    every boot)."""
    run_ms, path = run_line(console)
    off = clock_offset(console)
    return run_ms - (off or 0.0), path, off


def run_line(console):
    """(printk time in ms, path) of the kernel's 'Run /sbin/X as init process':
    from the console, or (under `quiet`, which keeps it off the console) from
    the dmesg lines the guest script prints ("D:" lines, after the real
    init's first line: overlay-init's log is read from them too)."""
    m = re.search(r"^(?:D:)?\[\s*([\d.]+)\] Run (\S+) as init process\r?$", console, re.M)
    if not m:
        die("no 'Run /sbin/X as init process' line")
    return float(m.group(1)) * 1e3, m.group(2)


def window(console):
    """The console lines between 'Run /sbin/X' (or where it would be) and the
    real init's first line."""
    run_s = run_line(console)[0] / 1e3
    lines = [l.rstrip("\r") for l in console.split("\n")]
    b = next(i for i, l in enumerate(lines) if "overlay-demo: real init reached" in l)
    a = -1
    for i, l in enumerate(lines[:b]):
        m = re.match(r"^\[\s*([\d.]+)\] ", l)
        if m and float(m.group(1)) <= run_s:
            a = i
    return lines[a + 1:b]


def console_bytes(lines, pattern):
    """Lines matching `pattern` and their bytes on the serial line (CR LF each)."""
    sel = [l for l in lines if re.search(pattern, l)]
    return len(sel), sum(len(l.encode()) + 2 for l in sel)


def clock_offset(console):
    """printk clock minus CLOCK_MONOTONIC (ms), from a line the guest script
    writes to /dev/kmsg between two clock reads: the span's two ends are on
    these two clocks."""
    f = facts(console)
    m = re.search(r"^D:\[\s*([\d.]+)\] bench-clock\r?$", console, re.M)
    if not m or "k0" not in f:
        return None
    return float(m.group(1)) * 1e3 - (int(f["k0"]) + int(f["k1"])) / 2e6


def parse_oi(console):
    run_ms, path, off = run_mono(console)
    m = re.search(r"overlay-init: overlay-init \S+ \(.*?\), started ([\d.]+) ms after the kernel", console)
    done = re.search(r"overlay-init: pre-init done in ([\d.]+) ms \((.*?) ms\); starting", console)
    fl = re.search(r"time in syscalls and children: (.*?); own work ([\d.]+) ms", console)
    if not m or not done or not fl:
        die("overlay-init's start/done/floor lines are missing from the console")
    stages = {}
    for part in done.group(2).split(", "):
        name, ms = part.rsplit(" ", 1)
        stages[name] = float(ms)
    floor = {}
    for part in fl.group(1).split(", "):
        mm = re.match(r"(.+) ([\d.]+) ms \((\d+)\)", part)
        if mm:
            floor[mm.group(1)] = [float(mm.group(2)), int(mm.group(3))]
    hwm = re.search(r"peak memory \(VmHWM\) (\d+) kB", console)
    start, end = float(m.group(1)), real_init_ms(console)
    total = float(done.group(1))
    lines = window(console)
    n, b = console_bytes(lines, r"\] overlay-init: ")
    kn, kb = console_bytes(lines, r"^\[\s*[\d.]+\] (?!overlay-init: )")
    return {
        "init": path, "run": run_ms, "start": start, "end": end, "span": end - run_ms,
        "to_start": start - run_ms, "stages": stages, "preinit_total": total,
        "in_guest": end - start, "clock_gap": end - start - total,
        "core": sum(stages.get(s, 0.0) for s in ("upper", "overlay", "switch")),
        "floor": floor, "own": float(fl.group(2)),
        "vmhwm_kb": int(hwm.group(1)) if hwm else None,
        "con_lines": n, "con_bytes": b, "kernel_lines": kn, "kernel_bytes": kb,
        "clock_offset": off,
    }


def parse_ref(console):
    run_ms, path, off = run_mono(console)
    marks = {k: int(v) / 1e6 for k, v in re.findall(r"owrt-bench: (\w+) (\d+)", console)}
    for k in ("start", "early", "mount_root"):
        if k not in marks:
            die(f"owrt-preinit printed no '{k}' mark")
    end = real_init_ms(console)
    lines = window(console)
    n, b = console_bytes(lines, r"\] mount_root: ")
    kn, kb = console_bytes(lines, r"^\[\s*[\d.]+\] (?!mount_root: )")
    inst_n, inst_b = console_bytes(lines, r"^owrt-(bench|preinit): ")
    f = facts(console)
    r = {
        "init": path, "run": run_ms, "start": marks["start"], "end": end, "span": end - run_ms,
        "to_start": marks["start"] - run_ms,
        "stages": {"early": marks["early"] - marks["start"],
                   "mount_root": marks["mount_root"] - marks["early"],
                   "exec init": end - marks["mount_root"]},
        "core": marks["mount_root"] - marks["early"],
        "con_lines": n, "con_bytes": b, "kernel_lines": kn, "kernel_bytes": kb,
        "instr_lines": inst_n, "instr_bytes": inst_b, "clock_offset": off,
        "mount_root_lines": [l for l in lines if "] mount_root: " in l],
    }
    if "done0" in f:
        r["done_ms"] = (int(f["done1"]) - int(f["done0"])) / 1e6
        r["done_rc"] = f.get("done_rc")
        r["overlay_after"] = f.get("overlay_after")
    return r


# ------------------------------------------------------------------ images
def mkflash(out, rootfs):
    sh = [str(REPO / "qemu/mkflash.sh"), "--board", BOARD, str(out), f"rootfs={rootfs}"]
    subprocess.run(sh, check=True, stdout=subprocess.DEVNULL)
    return out


# ------------------------------------------------------------------ chart
SEGS = ["kernel", "exec to first clock read", "early mounts (+ config)", "modules + lowers",
        "core job (upper + overlay + switch / mount_root)", "the rest, to the real init's first line"]


def segments(k, r):
    """The boot from the kernel's start, in the chart's segments (ms)."""
    if k.startswith("overlay-init"):
        st = r["stages"]
        early = st.get("early-mounts", 0) + st.get("config", 0)
        ml = st.get("modules", 0) + st.get("lowers", 0)
        rest = r["end"] - r["start"] - early - ml - r["core"]
    else:
        early, ml = r["stages"]["early"], 0.0
        rest = r["stages"]["exec init"]
    return [r["run"], r["to_start"], early, ml, r["core"], rest]


def svg_timeline(rows, path):
    colours = ["#cccccc", "#bab0ac", "#4e79a7", "#f28e2b", "#e15759", "#76b7b2"]
    end = max(sum(segments(k, r)) for _, k, r in rows)
    left, width, h, gap = 300, 600, 22, 8
    scale = width / end
    out, y = [], 40
    for title, k, r in rows:
        out.append(f'<text x="10" y="{y + 15}" font-size="12">{title}</text>')
        x = 0.0
        for j, w in enumerate(segments(k, r)):
            out.append(f'<rect x="{left + x * scale:.1f}" y="{y}" width="{max(w * scale, 0.5):.1f}" '
                       f'height="{h}" fill="{colours[j]}"><title>{SEGS[j]} {w:.1f} ms</title></rect>')
            x += w
        out.append(f'<text x="{left + x * scale + 4:.1f}" y="{y + 15}" font-size="11">'
                   f'{r["span"]:.0f} ms</text>')
        y += h + gap
    ticks = "".join(
        f'<line x1="{left + t * scale:.1f}" y1="30" x2="{left + t * scale:.1f}" y2="{y}" stroke="#ddd"/>'
        f'<text x="{left + t * scale:.1f}" y="{y + 12}" font-size="10" text-anchor="middle">{t} ms</text>'
        for t in range(0, int(end) + 1, 250))
    legend = "".join(
        f'<rect x="{10 + (k % 3) * 320}" y="{y + 24 + (k // 3) * 18}" width="12" height="12" fill="{c}"/>'
        f'<text x="{26 + (k % 3) * 320}" y="{y + 35 + (k // 3) * 18}" font-size="11">{s}</text>'
        for k, (s, c) in enumerate(zip(SEGS, colours)))
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="980" height="{y + 66}" font-family="sans-serif">'
        f'<text x="10" y="18" font-size="14">NOR board: boot to the real init, overlay-init against '
        f'OpenWrt (owrt-preinit + mount_root); QEMU TCG, the median boot of each</text>'
        f'{"".join(out)}{ticks}{legend}</svg>\n')


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rootfs", required=True, help="the squashfs with OpenWrt's tools in it")
    ap.add_argument("--out", default=str(REPO / "qemu/out/bench-nor"))
    a = ap.parse_args()
    configs = [c for c in a.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            die(f"no configuration {c} (have {', '.join(CONFIGS)})")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="overlay-bench-nor-"))
    t0 = time.monotonic()

    # The start states: blank flash, and a JFFS2 / UBIFS upper after
    # overlay-init's first boot and one steady boot (settled: JFFS2 writes
    # its clean markers lazily).
    bases = {"blank": mkflash(work / "blank.img", a.rootfs)}
    for fs, append in (("jffs2", ""), ("ubifs", UBI)):
        if any(CONFIGS[c]["base"] == fs for c in configs):
            img = work / f"{fs}.img"
            shutil.copyfile(bases["blank"], img)
            boot(img, SETTLE, append)
            boot(img, SETTLE, append)
            bases[fs] = img

    disk = work / "flash.img"

    def one(c, k, qemu=()):
        cfg = CONFIGS[c]
        shutil.copyfile(bases[cfg["base"]], disk)
        script = MARK + ("\n" + DONE if k == "openwrt" and cfg["base"] == "blank"
                         and c.startswith("jffs2") else "")
        con = boot(disk, script, cfg["append"][k], qemu=qemu)
        got = facts(con).get("overlay")
        if got != cfg["expect"][k]:
            sys.stderr.write(con[-4000:])
            die(f"{c}, {k}: /overlay is {got!r}, expected {cfg['expect'][k]}")
        return parse_ref(con) if k == "openwrt" else parse_oi(con)

    runs = {c: {k: [] for k in CONFIGS[c]["append"]} for c in configs}
    for i in range(a.runs):
        msg = []
        for c in configs:
            order = list(CONFIGS[c]["append"])
            if i % 2:
                order.reverse()
            for k in order:
                runs[c][k].append(one(c, k))
            msg.append(f"{c} " + " ".join(f"{k} {runs[c][k][-1]['span']:.0f}"
                                          for k in CONFIGS[c]["append"]))
        print(f"bench-nor: run {i + 1}/{a.runs}, span ms: {'; '.join(msg)}", flush=True)
    # One boot each under instruction counting: its figures repeat exactly.
    counted = {c: {k: one(c, k, ICOUNT) for k in CONFIGS[c]["append"]} for c in configs}
    print("bench-nor: instruction-counted boots done", flush=True)

    elapsed = time.monotonic() - t0
    report = render(runs, a.runs, elapsed, counted)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps({"runs": runs, "counted": counted,
                                                  "elapsed_s": elapsed}, indent=1))
    rows = []
    for c in configs:
        for k, rs in runs[c].items():
            rs = sorted(rs, key=lambda r: r["span"])
            rows.append((f"{c}: {LABEL[k]}", k, rs[len(rs) // 2]))
    svg_timeline(rows, out / "timeline.svg")
    print(report)
    print(f"bench-nor: written {out}/results.md, results.json, timeline.svg")
    shutil.rmtree(work, ignore_errors=True)


def mm(xs):
    lo, hi = spread(xs)
    return f"{fmt_ms(med(xs))} ({fmt_ms(lo)}–{fmt_ms(hi)})"


def render_counted(counted):
    """The instruction-counted boots: the structure of the span without the
    translation cost and the host's noise."""
    L = ["", "Instruction-counted time (QEMU `-icount shift=1,sleep=off`: the guest clock "
         "advances 2 ns per guest instruction, as on a 500 MIPS in-order CPU; no cost of TCG's "
         "translation, no host noise; one boot each, and every run gives the same figures), ms:",
         "", "| configuration | overlay-init | OpenWrt | ratio | overlay-init: exec to first clock "
         "read · its total (own work) · execve to the real init | OpenWrt: exec to first mark · "
         "`mount_root` · to the real init |", "|---|---|---|---|---|---|"]
    for c, rr in counted.items():
        a, b = rr["overlay-init"], rr["openwrt"]
        L.append(f"| {CONFIGS[c]['title']} | {a['span']:.1f} | {b['span']:.1f} | "
                 f"**{a['span'] / b['span']:.2f}** | {a['to_start']:.1f} · {a['preinit_total']:.1f} "
                 f"({a['own']:.1f}) · "
                 f"{a['clock_gap']:.1f} | {b['to_start']:.1f} · {b['core']:.1f} · "
                 f"{b['stages']['exec init']:.1f} |")
        if "overlay-init-attach" in rr:
            x = rr["overlay-init-attach"]
            L.append(f"| {CONFIGS[c]['title']}, overlay-init attaching UBI itself | {x['span']:.1f} | "
                     f"| {x['span'] / b['span']:.2f} | {x['to_start']:.1f} · "
                     f"{x['preinit_total']:.1f} ({x['own']:.1f}) · {x['clock_gap']:.1f} | |")
    return L


def render(runs, n, elapsed, counted=None):
    L = [f"Benchmark, NOR board (qemu-armv7-nor: CFI NOR flash, squashfs root, pivot_root): "
         f"overlay-init (init=/sbin/overlay-init) against OpenWrt's pre-init "
         f"(init=/sbin/owrt-preinit: procd's early mounts, `PREINIT=1 mount_root` of fstools "
         f"e600d84, exec /sbin/init), {n} boots each, alternating, same kernel and flash image; "
         f"QEMU TCG armv7 (-smp 1). {elapsed:.0f} s in all.", "",
         "Pre-init span: from the kernel's `Run /sbin/X as init process` to the real init's "
         "first line, ms, median (min–max):", "",
         "| configuration | overlay-init | OpenWrt | ratio | ratio, each with its console "
         "at 115200 baud |", "|---|---|---|---|---|"]

    def on_board(r):
        # The span plus the pre-init's own console lines at 115200 baud, which
        # a real board's synchronous serial console adds and QEMU's does not.
        return r["span"] + r["con_bytes"] * US_PER_BYTE / 1e3

    for c, rr in runs.items():
        a = [r["span"] for r in rr["overlay-init"]]
        b = [r["span"] for r in rr["openwrt"]]
        hw = med([on_board(r) for r in rr["overlay-init"]]) / med([on_board(r) for r in rr["openwrt"]])
        L.append(f"| {CONFIGS[c]['title']} | {mm(a)} | {mm(b)} | **{med(a) / med(b):.2f}** | "
                 f"{hw:.2f} |")
        if "overlay-init-attach" in rr:
            x = [r["span"] for r in rr["overlay-init-attach"]]
            L.append(f"| {CONFIGS[c]['title']}, overlay-init attaching UBI itself (no `{UBI}`) | "
                     f"{mm(x)} | (needs `{UBI}`) | {med(x) / med(b):.2f} | |")
    steady = [c for c in runs if "first" not in c]
    if steady:
        c = steady[0]
        rest = med([r["clock_gap"] for r in runs[c]["overlay-init"]])
        ref = med([r["span"] for r in runs[c]["openwrt"]])
        L += ["", f"The floor both pre-inits share ({c}): the real init's cold start. OpenWrt's "
              f"busybox sh pages busybox in before `mount_root` and its real init starts warm; "
              f"overlay-init's real init is the first busybox of the boot: {rest:.1f} ms from "
              f"overlay-init's execve to the real init's first line, {rest / ref:.0%} of "
              f"OpenWrt's span ({ref:.1f} ms)"]
        if counted and c in counted:
            a, b = counted[c]["overlay-init"], counted[c]["openwrt"]
            L[-1] += (f"; instruction-counted (below): {a['clock_gap']:.1f} ms, "
                      f"{a['clock_gap'] / b['span']:.0%} of OpenWrt's {b['span']:.1f} ms, before "
                      f"the {a['to_start']:.1f} ms of overlay-init's own exec")
        L[-1] += "."
    if counted:
        L += render_counted(counted)
    offs = [r["clock_offset"] for rr in runs.values() for rs in rr.values() for r in rs
            if r.get("clock_offset") is not None]
    if offs:
        L += ["", f"Clocks: the `Run /sbin/X` line has a printk time, the real init reads "
              f"CLOCK_MONOTONIC. printk minus monotonic, measured in every boot (a line written to "
              f"/dev/kmsg between two clock reads): median {med(offs):.1f} ms ({min(offs):.1f} to "
              f"{max(offs):.1f}); each boot's span is corrected by its own offset (all on "
              f"CLOCK_MONOTONIC)."]
    L += ["", "Where it goes (medians, ms):", "",
          "| configuration | side | exec to first clock read | early mounts (+ config) | "
          "modules + lowers | core job | rest, to the real init |", "|---|---|---|---|---|---|---|"]
    for c, rr in runs.items():
        for k, rs in rr.items():
            segs = [med([segments(k, r)[j] for r in rs]) for j in range(1, 6)]
            L.append(f"| {c} | {LABEL[k]} | " + " | ".join(fmt_ms(s) for s in segs) + " |")
    L += ["", "The core job: overlay-init's upper + overlay + switch stages against the "
          "`mount_root` command alone (from owrt-preinit's mark before it to the one after), "
          "ms, median (min–max):", "",
          "| configuration | overlay-init | mount_root | ratio |", "|---|---|---|---|"]
    for c, rr in runs.items():
        a = [r["core"] for r in rr["overlay-init"]]
        b = [r["core"] for r in rr["openwrt"]]
        L.append(f"| {CONFIGS[c]['title']} | {mm(a)} | {mm(b)} | {med(a) / med(b):.2f} |")
    L += ["", "overlay-init's own clock (medians, ms): its total (\"pre-init done in T ms\"), "
          "the floor (time inside mount(2), module loads, moves, children, device waits and "
          "reading the real init's head for its check), its "
          "own work above the floor, and the honest-clock check: its in-guest span (from its "
          "first clock read, \"started X ms after the kernel\", to the real init's first line) "
          "minus its total:", "",
          "| configuration | total | floor | own work | own share | in-guest span | "
          "span − total (min–max) | peak memory |", "|---|---|---|---|---|---|---|---|"]
    for c, rr in runs.items():
        for k in [k for k in rr if k.startswith("overlay-init")]:
            rs = rr[k]
            tot = med([r["preinit_total"] for r in rs])
            floor = med([sum(v[0] for v in r["floor"].values()) for r in rs])
            own = med([r["own"] for r in rs])
            name = c if k == "overlay-init" else f"{c} (attaching UBI)"
            L.append(f"| {name} | {fmt_ms(tot)} | {fmt_ms(floor)} | {fmt_ms(own)} | "
                     f"{100 * own / tot:.0f}% | {fmt_ms(med([r['in_guest'] for r in rs]))} | "
                     f"{mm([r['clock_gap'] for r in rs])} | {med([r['vmhwm_kb'] for r in rs]):.0f} kB |")
    L += ["", f"Console: the lines each pre-init puts on the serial console between `Run /sbin/X` "
          f"and the real init's first line (overlay-init's `overlay-init:` lines; mount_root's "
          f"`mount_root:` lines; owrt-preinit's own `owrt-bench:`/`owrt-preinit:` marks are the "
          f"benchmark's and not counted), with the kernel's timestamp prefix and CR LF, and "
          f"their time on a 115200-baud line ({US_PER_BYTE:.0f} µs a byte; the kernel writes "
          f"the console synchronously, so on hardware this is boot time; QEMU's UART costs "
          f"nothing). Medians:", "",
          "| configuration | overlay-init lines | bytes | at 115200 | mount_root lines | bytes | "
          "at 115200 | kernel lines in the window (oi / OpenWrt) |",
          "|---|---|---|---|---|---|---|---|"]
    for c, rr in runs.items():
        a, b = rr["overlay-init"], rr["openwrt"]
        ab, bb = med([r["con_bytes"] for r in a]), med([r["con_bytes"] for r in b])
        L.append(f"| {c} | {med([r['con_lines'] for r in a]):.0f} | {ab:.0f} | "
                 f"{ab * US_PER_BYTE / 1e3:.1f} ms | {med([r['con_lines'] for r in b]):.0f} | {bb:.0f} | "
                 f"{bb * US_PER_BYTE / 1e3:.1f} ms | {med([r['kernel_lines'] for r in a]):.0f} / "
                 f"{med([r['kernel_lines'] for r in b]):.0f} |")
    seen = []
    for c, rr in runs.items():
        for ln in rr["openwrt"][0]["mount_root_lines"]:
            t = re.sub(r"^\[\s*[\d.]+\] ", "", ln)
            if t not in seen:
                seen.append(t)
    if seen:
        L += ["", "mount_root's lines: " + "; ".join(f"`{t}`" for t in seen) + "."]
    firsts = [c for c in runs if "first" in c]
    if firsts:
        L += ["", "First boot: overlay-init formats the upper before the real init (JFFS2: "
              "mounts the erased partition; UBIFS: creates the volume, UBIFS formats it) and the "
              "boot ends on flash. mount_root on erased flash boots on a tmpfs overlay (its span "
              "above is that RAM boot) and formats JFFS2 only when `mount_root done` runs after "
              "init (OpenWrt's S95done); timed here after the boot (median (min–max), ms). It "
              "cannot create a missing UBI volume: on blank flash with UBI attached (`ubi.mtd=`) "
              "it finds no usable filesystem and stays on tmpfs, boot after boot (its `mount_root "
              "done` would format the UBI-attached partition as JFFS2: not run), so the UBIFS "
              "first-boot row compares overlay-init's complete first boot with a RAM boot."]
        for c in firsts:
            d = [r["done_ms"] for r in runs[c]["openwrt"] if "done_ms" in r]
            if d:
                after = {r.get("overlay_after") for r in runs[c]["openwrt"]}
                rcs = {r.get("done_rc") for r in runs[c]["openwrt"]}
                a = [r["span"] for r in runs[c]["overlay-init"]]
                b = [r["span"] for r in runs[c]["openwrt"]]
                L += ["", f"{CONFIGS[c]['title']}: `mount_root done` {mm(d)} ms (exit {'/'.join(sorted(rcs))}; "
                      f"/overlay then {'/'.join(sorted(a2 or '?' for a2 in after))}); "
                      f"OpenWrt's span + mount_root done {fmt_ms(med(b) + med(d))} ms against "
                      f"overlay-init's {fmt_ms(med(a))} ms: ratio {med(a) / (med(b) + med(d)):.2f}."]
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
