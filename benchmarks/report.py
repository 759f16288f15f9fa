"""Render the README's benchmark tables from pytest-benchmark JSON files.

Usage::

    python benchmarks/report.py RESULTS_DIR [--compact OUT_DIR]

``RESULTS_DIR`` holds ``engine.json``, ``chunking.json``, ``nn.json``,
``check.json``, ``scale.json`` and ``monitor.json`` as written by
``pytest benchmarks/bench_<suite>.py --benchmark-json=RESULTS_DIR/<suite>.json``.
Every figure is a median; every ratio compares two implementations measured
in the same run.  ``--compact`` writes small copies (group, implementation,
median, IQR, rounds) suitable for committing.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys


def _load(path):
    with open(path) as fh:
        return json.load(fh)


def _impl(bench):
    info = bench.get("extra_info", {})
    if "impl" in info:
        return str(info["impl"])
    if "chunk_kib" in info:
        return str(info["chunk_kib"])
    name = bench["name"]
    return name[name.find("[") + 1:-1] if "[" in name else name


def _table(data):
    """``{group: {impl: median_seconds}}``."""
    out = collections.defaultdict(dict)
    for b in data["benchmarks"]:
        out[b["group"]][_impl(b)] = b["stats"]["median"]
    return out


def cell(text):
    """A group name as a table cell: its ``|`` separators would split the cell."""
    return str(text).replace("|", " · ")


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs" if seconds < 1e-5 else f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def engine(data):
    t = _table(data)
    lines = ["| workload | n | element loop | fastjac | × loop | × scipy | ÷ floor | loop path × loop | Numba driver × loop |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    workloads = []
    for g in t:
        w = g.split("|")[1]
        if w not in workloads:
            workloads.append(w)
    for w in workloads:
        for n in sorted({int(g.split("n=")[1]) for g in t if g.split("|")[1] == w}):
            r = t[f"engine|{w}|n={n}"]
            v = r["fastjac-vectorized"]
            lines.append(
                f"| {w} | {n} | {fmt(r['reference-loop'])} | {fmt(v)} | {r['reference-loop'] / v:.1f}× "
                f"| {r['scipy'] / v:.1f}× | {v / r['f-alone']:.2f} "
                f"| {r['reference-loop'] / r['fastjac-loop']:.1f}× | {r['reference-loop'] / r['fastjac-numba']:.1f}× |")
    return "\n".join(lines)


def chunking(data):
    t = _table(data)
    cols = ["64", "128", "256", "512", "1024", "4096", "whole", "tuned"]
    lines = ["| workload | n | " + " | ".join(c if c in ("whole", "tuned") else f"{c} KiB" for c in cols) + " |",
             "|---|---:|" + "---:|" * len(cols)]
    for g in sorted(t):
        _, w, n = g.split("|")
        r = t[g]
        best = min(r.values())
        cells = [(f"**{r[c] / best:.2f}**" if r[c] == best else f"{r[c] / best:.2f}") if c in r else "-" for c in cols]
        lines.append(f"| {w} | {n[2:]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nn(data):
    t = collections.defaultdict(dict)
    compile_rows = []
    for b in data["benchmarks"]:
        g = b["group"]
        if "compile" in g:
            compile_rows.append((g.split("|")[-1], b["stats"]["median"]))
            continue
        # test ids look like "nn|op|what|impl|B=..|n=.."
        impl = b["name"].split("[")[-1].rstrip("]").split("|")[3]
        t[g][impl] = b["stats"]["median"]
    lines = ["| op | B | n | dispatched | numpy | × numpy | element loop | engine | × loop |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in sorted(t, key=lambda g: (g.split("|")[1], g.split("|")[2], int(g.split("B=")[1].split("|")[0]), int(g.split("n=")[1]))):
        r = t[g]
        if "kernel" not in r:
            continue
        _, op, what, B, n = g.split("|")
        loop = fmt(r["loop"]) if "loop" in r else "-"
        eng = fmt(r["engine"]) if "engine" in r else "-"
        xloop = f"{r['loop'] / r['kernel']:.0f}×" if "loop" in r else "-"
        lines.append(f"| {op}.{what} | {B[2:]} | {n[2:]} | {fmt(r['kernel'])} | {fmt(r['numpy'])} "
                     f"| {r['numpy'] / r['kernel']:.2f}× | {loop} | {eng} | {xloop} |")
    lines.append("")
    lines.append("| compile | median |")
    lines.append("|---|---:|")
    for name, s in compile_rows:
        lines.append(f"| {name} | {fmt(s)} |")
    return "\n".join(lines)


def generic(data, base=None):
    """One row per group; ratios against ``base`` when given."""
    t = _table(data)
    lines = ["| group | " + ("implementation | median | ratio |" if base else "implementation | median |"),
             "|---|---|---:|" + ("---:|" if base else "")]
    for g in t:
        r = t[g]
        for impl, s in r.items():
            row = f"| {cell(g)} | {impl} | {fmt(s)} |"
            if base:
                ref = r.get(base)
                row += f" {s / ref:.3f} |" if ref else " - |"
            lines.append(row)
    return "\n".join(lines)


def monitor(data):
    """Paired rounds: the monitored median and, from extra_info, plain and screen-only."""
    lines = ["| workload | plain | screen only | monitor (defaults) | screen ÷ plain | monitor ÷ plain |",
             "|---|---:|---:|---:|---:|---:|"]
    for b in data["benchmarks"]:
        e, s = b.get("extra_info", {}), b["stats"]["median"]
        plain, screen = e.get("plain_median"), e.get("screen_median")
        if not plain:
            continue
        lines.append(f"| {cell(b['group'].split('|', 1)[1])} | {fmt(plain)} | {fmt(screen)} | {fmt(s)} "
                     f"| {screen / plain:.3f} | {s / plain:.3f} |")
    return "\n".join(lines)


SECTIONS = {
    "engine": engine,
    "chunking": chunking,
    "nn": nn,
    "check": lambda d: generic(d, "one-loss-eval"),
    "scale": generic,
    "monitor": monitor,
}


def compact(data):
    keep = []
    for b in data["benchmarks"]:
        s = b["stats"]
        keep.append({"group": b["group"], "name": b["name"], "impl": _impl(b),
                     "median": s["median"], "iqr": s["iqr"], "min": s["min"], "rounds": s["rounds"],
                     "extra_info": b.get("extra_info", {})})
    mi = data.get("machine_info", {})
    machine = {k: mi.get(k) for k in ("cpu_model", "blas_threads", "python_version", "system", "release")}
    cpu = mi.get("cpu", {})
    machine["cpu_brand"] = cpu.get("brand_raw")
    return {"machine_info": machine, "datetime": data.get("datetime"), "benchmarks": keep}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--compact", metavar="OUT_DIR")
    args = parser.parse_args(argv)
    for name, render in SECTIONS.items():
        path = os.path.join(args.results, f"{name}.json")
        if not os.path.exists(path):
            print(f"<!-- {name}: no {path} -->\n")
            continue
        data = _load(path)
        print(f"### {name}\n")
        print(render(data))
        print()
        if args.compact:
            os.makedirs(args.compact, exist_ok=True)
            with open(os.path.join(args.compact, f"{name}.json"), "w") as fh:
                json.dump(compact(data), fh, indent=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
