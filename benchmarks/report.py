"""Render the benchmark tables of docs/benchmarks.md and the README from pytest-benchmark JSON.

Usage::

    python benchmarks/report.py RESULTS_DIR [--compact OUT_DIR] [--write FILE ...] [--check FILE ...]

``RESULTS_DIR`` holds ``engine.json``, ``chunking.json``, ``nn.json``,
``check.json``, ``scale.json`` and ``monitor.json`` as written by
``pytest benchmarks/bench_<suite>.py --benchmark-json=RESULTS_DIR/<suite>.json``
(or their compact copies in ``benchmarks/results``).  Every figure is a
median; every ratio compares two implementations measured in the same run.

Without ``--write``/``--check`` the tables are printed.  ``--write FILE``
replaces, in FILE, the text between ``<!-- bench-NAME:start -->`` and
``<!-- bench-NAME:end -->`` with section NAME (``engine``, ..., and
``table``: the README's summary); ``--check FILE`` exits 1 if FILE is not up
to date.  ``--compact OUT_DIR`` writes copies small enough to commit:
pytest-benchmark's own format (``pytest-benchmark compare`` and
``pytest --benchmark-compare`` read them) without the per-round ``data``,
the ``options`` and the CPU flags, one benchmark per line.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
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
        impl = _impl(b)
        if impl in out[b["group"]]:  # never keep one of two silently
            raise ValueError(f"two benchmarks of group {b['group']!r} are both {impl!r}")
        out[b["group"]][impl] = b["stats"]["median"]
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
    lines = ["| workload | n | element loop | fastjac | × loop | × scipy | ÷ floor | ÷ f alone "
             "| loop path × loop | Numba driver × loop |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    workloads = []
    for g in t:
        w = g.split("|")[1]
        if w not in workloads:
            workloads.append(w)
    for w in workloads:
        for n in sorted({int(g.split("n=")[1]) for g in t if g.split("|")[1] == w}):
            r = t[f"engine|{w}|n={n}"]
            v = r["fastjac"]  # the default call, warm
            lines.append(
                f"| {w} | {n} | {fmt(r['reference-loop'])} | {fmt(v)} | {r['reference-loop'] / v:.1f}× "
                f"| {r['scipy'] / v:.1f}× | {v / r['floor']:.2f} | {v / r['f-alone']:.2f} "
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


def readme_table(data):
    """The README's summary: the engine table without the loop-path and Numba columns."""
    cpu = (data.get("machine_info") or {}).get("cpu_model") or "unknown CPU"
    legend = (f"*pytest-benchmark medians from `benchmarks/bench_engine.py` ({cpu}, 2-core VM,\n"
              "OpenBLAS on 1 thread), every baseline in the same run. fastjac: the default warm\n"
              "`fastjac.jacobian(f, x)`. × loop / × scipy: the baseline's time divided by\n"
              "fastjac's. ÷ floor: fastjac's time divided by a plain 20-line chunked batched\n"
              "central difference without validation; ÷ f alone: divided by the time of only\n"
              "the batched calls of `f` on the same chunks (it leaves out writing `J`).\n"
              "All tables, including the loop path and the Numba driver:\n"
              "[docs/benchmarks.md](docs/benchmarks.md).*")
    rows = []
    for line in engine(data).splitlines():
        cells = line.split("|")[1:-1]
        rows.append("|" + "|".join(cells[:8]) + "|")
    return legend + "\n\n" + "\n".join(rows)


SECTIONS = {
    "engine": engine,
    "chunking": chunking,
    "nn": nn,
    "check": lambda d: generic(d, "one-loss-eval"),
    "scale": generic,
    "monitor": monitor,
}
#: Blocks rendered from another section's results file: block -> (results, renderer).
DERIVED = {"table": ("engine", readme_table)}


def compact(data):
    """pytest-benchmark's layout without per-round data, options and CPU flags."""
    keep = []
    for b in data["benchmarks"]:
        entry = {k: b.get(k) for k in ("group", "name", "fullname", "params", "param", "extra_info")}
        entry["stats"] = {k: v for k, v in b["stats"].items() if k != "data"}
        keep.append(entry)
    machine = dict(data.get("machine_info") or {})
    machine["cpu"] = {k: v for k, v in (machine.get("cpu") or {}).items() if k != "flags"}
    out = {"machine_info": machine, "commit_info": data.get("commit_info") or {},
           "datetime": data.get("datetime"), "version": data.get("version")}
    if "fastjac_compact" in data:
        out["fastjac_compact"] = data["fastjac_compact"]
    out["benchmarks"] = keep
    return out


def write_compact(data, path):
    """JSON with one benchmark per line: small, and diffs line up with benchmarks."""
    head = {k: v for k, v in data.items() if k != "benchmarks"}
    lines = [json.dumps(b, separators=(",", ":"), ensure_ascii=False) for b in data["benchmarks"]]
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]  # drop the closing "\n}"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + ',\n "benchmarks": [\n' + ",\n".join(lines) + "\n ]\n}\n")


_BLOCK = re.compile(r"(<!-- bench-(?P<name>[\w-]+):start -->\n)(?P<body>.*?)(\n<!-- bench-(?P=name):end -->)",
                    re.S)


def render_all(results):
    """{block name: markdown} for every section whose results file exists in ``results``."""
    out = {}
    for name, render in SECTIONS.items():
        path = os.path.join(results, f"{name}.json")
        if os.path.exists(path):
            out[name] = render(_load(path))
    for name, (source, render) in DERIVED.items():
        path = os.path.join(results, f"{source}.json")
        if os.path.exists(path):
            out[name] = render(_load(path))
    return out


def updated(text, blocks):
    """``text`` with each marked block replaced by its rendering; (new text, names replaced)."""
    done = []

    def sub(m):
        if m.group("name") not in blocks:
            return m.group(0)
        done.append(m.group("name"))
        return m.group(1) + blocks[m.group("name")] + m.group(4)

    return _BLOCK.sub(sub, text), done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--compact", metavar="OUT_DIR")
    parser.add_argument("--write", nargs="+", default=[], metavar="FILE")
    parser.add_argument("--check", nargs="+", default=[], metavar="FILE")
    args = parser.parse_args(argv)
    if args.compact:
        os.makedirs(args.compact, exist_ok=True)
        for name in SECTIONS:
            path = os.path.join(args.results, f"{name}.json")
            if os.path.exists(path):
                write_compact(compact(_load(path)), os.path.join(args.compact, f"{name}.json"))
    blocks = render_all(args.results)
    stale = []
    for path in args.write + args.check:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        new, done = updated(text, blocks)
        if path in args.write and new != text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(new)
        elif path in args.check and new != text:
            stale.append(path)
        if not done:
            print(f"{path}: no <!-- bench-NAME:start --> block for {sorted(blocks)}", file=sys.stderr)
    if stale:
        print(f"out of date (rerun with --write): {', '.join(stale)}", file=sys.stderr)
        return 1
    if not args.write and not args.check:
        for name, body in blocks.items():
            print(f"### {name}\n\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
