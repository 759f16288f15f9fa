"""The built-in benchmark behind ``fastjac bench``, and its rendering.

Workloads and implementations come from :mod:`._workloads`, the tables that
``benchmarks/bench_engine.py`` times too: elementwise activations, a
softmax, the cross-entropy of a softmax, and the cross-entropy of a dense
layer (one sample and a batch) differentiated w.r.t. its weights.  Every
workload is *batch-aware* (reductions over ``axis=-1`` / a leading batch
axis), so fastjac's ``vectorized="auto"`` probe accepts it.

Implementations, side by side in one run:

``reference-loop``
    ``fastjac.reference.numeric_jacobian``: the notebook's element loop.
``fastjac``
    ``fastjac.jacobian(f, x)`` with default options.
``scipy``
    ``scipy.optimize.approx_derivative(method="3-point")`` if installed.

Results are pytest-benchmark's own JSON: when pytest-benchmark is installed,
every entry is built by its ``Metadata``/``Stats`` classes and the file by
its ``pytest_benchmark_generate_json`` hook, so ``pytest-benchmark compare``
and ``pytest --benchmark-compare`` read it.  Entries are named as
``benchmarks/bench_engine.py`` names its tests
(``benchmarks/bench_engine.py::test_engine[{impl}-{workload}-{n}]``, group
``engine|{workload}|n={n}``, ``extra_info["impl"]``), so a pytest run of that
suite pairs with a ``fastjac bench`` file.

Reading works on any pytest-benchmark file: rows are groups (``n=`` parsed
out of the group or the test's parameters when present), columns are
implementations (``extra_info["impl"]``, an implementation-like parameter,
else what tells the entries of a row apart), and a file whose entries cannot
be laid out that way is shown one entry per line instead; no entry is ever
dropped.  :func:`plot` draws every group, as lines over n or as bars.
"""
from __future__ import annotations

import json
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ._workloads import IMPLEMENTATIONS as SETUPS, WORKLOADS, case

__all__ = ["workload_names", "IMPLEMENTATIONS", "cpu_model", "run", "load_json", "write_json",
           "table", "plot", "cpu_of", "baseline_of", "format_time", "paired_rounds", "JSONFormatError",
           "MissingPytestBenchmark", "have_pytest_benchmark", "SUITE"]

#: Where the entries of ``fastjac bench`` would live in a pytest run.
SUITE = "benchmarks/bench_engine.py::test_engine"


def workload_names():
    return list(WORKLOADS)


def _have_scipy():
    try:
        from scipy.optimize._numdiff import approx_derivative  # noqa: F401
    except ImportError:
        return False
    return True


#: The implementations ``fastjac bench`` times (names in :mod:`._workloads`).
IMPLEMENTATIONS = ("reference-loop", "fastjac", "scipy")
_OPTIONAL = {"scipy": _have_scipy}


class MissingPytestBenchmark(ImportError):
    """pytest-benchmark is needed to write its JSON format."""


def have_pytest_benchmark() -> bool:
    try:
        import pytest_benchmark.stats  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_model() -> str:
    """The CPU's "model name" from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _time(fn, repeats, budget):
    """Seconds of each of up to ``repeats`` runs of ``fn()`` (at least 3) within ``budget`` s."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget:
            break
    return times


@dataclass
class Timing:
    """The timed rounds of one implementation on one workload and size."""

    workload: str
    n: int
    impl: str
    times: list
    extra_info: dict = field(default_factory=dict)

    @property
    def param(self):
        return f"{self.impl}-{self.workload}-{self.n}"

    def fixture(self):
        """What pytest-benchmark's ``Metadata`` reads from its fixture."""
        name = f"{SUITE.rpartition('::')[2]}[{self.param}]"
        return SimpleNamespace(
            name=name, fullname=f"{SUITE}[{self.param}]", group=f"engine|{self.workload}|n={self.n}",
            param=self.param, params={"impl": self.impl, "workload": self.workload, "n": self.n},
            extra_info=self.extra_info, cprofile_stats=None, has_error=False)


def run(sizes=(10, 100, 1000), *, workloads=None, implementations=None, quick=False,
        seed=0, progress=None):
    """Time every workload x size x implementation; returns pytest-benchmark's JSON layout.

    Each implementation is run once untimed (warm-up: fastjac's probe, caches),
    its result checked against the exact J (``extra_info["correct"]``), then
    timed.  Without pytest-benchmark installed, ``stats`` holds only
    ``min``, ``max``, ``mean``, ``median`` and ``rounds``.
    """
    workloads = list(workloads or WORKLOADS)
    impls = [i for i in (implementations or IMPLEMENTATIONS)
             if i not in _OPTIONAL or _OPTIONAL[i]()]
    repeats, budget = (3, 0.15) if quick else (15, 1.0)
    bar = None
    if progress is not False:
        from tqdm.auto import tqdm

        # disable=None: only on a terminal, so pipes and tests stay clean.
        bar = tqdm(total=len(workloads) * len(sizes) * len(impls), desc="fastjac bench",
                   unit="case", leave=False, disable=None if progress is None else not progress)
    timings = []
    for w in workloads:
        for n in sizes:
            c = case(w, n, seed)
            for impl in impls:
                fn = SETUPS[impl](c)
                J = fn()  # warm-up, and the result we check
                # The loosest method here is the loop's fixed step 1e-4: truncation
                # h**2/6 |f'''| < 1e-8 max|f'''| (~10 here), round-off EPS|f|/h < 1e-10;
                # so every implementation is within 1e-6 of the exact J.
                ok = bool(np.max(np.abs(J - np.reshape(c.exact, J.shape)), initial=0.0) <= 1e-6)
                timings.append(Timing(w, n, impl, _time(fn, repeats, budget), {
                    "impl": impl, "workload": WORKLOADS[w].description, "correct": ok}))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    options = {"disable_gc": False, "timer": "perf_counter", "min_rounds": 3,
               "max_time": budget, "min_time": 0.0, "warmup": True}
    data = (_as_pytest_benchmark if have_pytest_benchmark() else _as_plain)(timings, options)
    from . import __version__

    data["fastjac_bench"] = {"quick": quick, "sizes": list(sizes), "seed": seed,
                             "fastjac": __version__, "numpy": np.__version__}
    return data


def _as_pytest_benchmark(timings, options):
    """The file ``pytest --benchmark-json`` would write, built by pytest-benchmark itself."""
    from pytest_benchmark.plugin import (pytest_benchmark_generate_json,
                                         pytest_benchmark_generate_machine_info)
    from pytest_benchmark.stats import Metadata
    from pytest_benchmark.utils import get_commit_info

    metas = []
    for t in timings:
        meta = Metadata(t.fixture(), iterations=1, options=options)
        for seconds in t.times:
            meta.update(seconds)
        metas.append(meta)
    return pytest_benchmark_generate_json(
        config=None, benchmarks=metas, include_data=False,
        machine_info=pytest_benchmark_generate_machine_info(),
        commit_info=get_commit_info())


def _as_plain(timings, options):
    """The same layout with a few stats, for installs without pytest-benchmark."""
    benchmarks = []
    for t in timings:
        fx = t.fixture()
        benchmarks.append({
            "group": fx.group, "name": fx.name, "fullname": fx.fullname, "params": fx.params,
            "param": fx.param, "extra_info": fx.extra_info, "options": options,
            "stats": {"min": min(t.times), "max": max(t.times), "mean": statistics.mean(t.times),
                      "median": statistics.median(t.times), "rounds": len(t.times)}})
    return {"machine_info": {"node": platform.node(), "python_version": platform.python_version(),
                             "cpu": {"brand_raw": cpu_model()}},
            "benchmarks": benchmarks}


def write_json(data, path):
    """Write ``data`` as ``pytest --benchmark-json`` writes it (needs pytest-benchmark).

    ``data`` from :func:`run` must have full stats: without pytest-benchmark
    installed when it ran, the file would not load in ``pytest-benchmark
    compare``, so this refuses rather than write it.
    """
    try:
        from pytest_benchmark.utils import safe_dumps
    except ImportError:
        raise MissingPytestBenchmark(
            "writing pytest-benchmark JSON needs pytest-benchmark; install it with "
            "`pip install pytest-benchmark`") from None
    missing = [b.get("name") for b in data["benchmarks"] if "mean" not in (b.get("stats") or {})]
    if missing:
        raise JSONFormatError(f"entries without full stats (first: {missing[0]!r}); "
                              "rerun with pytest-benchmark installed")
    with open(path, "wb") as fh:
        fh.write(safe_dumps(data, ensure_ascii=True, indent=4).encode())


# --------------------------------------------------------------------------
# Reading pytest-benchmark JSON.

class JSONFormatError(ValueError):
    """A file that is not a pytest-benchmark (or fastjac bench) JSON file."""


def load_json(path):
    """Read a pytest-benchmark JSON file (``pytest --benchmark-json``, ``--benchmark-save``
    or ``fastjac bench --json``); every entry needs ``stats.median``."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise JSONFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise JSONFormatError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise JSONFormatError(f"{path} is not a text file") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise JSONFormatError(
            f"{path} has no 'benchmarks' list; expected a file written by "
            "`pytest --benchmark-json` or `fastjac bench --json`")
    for k, b in enumerate(data["benchmarks"]):
        stats = b.get("stats") if isinstance(b, dict) else None
        if not isinstance(stats, dict) or not isinstance(stats.get("median"), (int, float)):
            raise JSONFormatError(f"{path}: benchmarks[{k}] has no stats.median")
    return data


# Parameters that give the size n, and parameters that name an implementation.
_SIZE_KEYS = ("n", "size", "N")
_IMPL_KEYS = ("impl", "implementation", "backend", "method", "library", "lib")
_N_PART = re.compile(r"^n=(\d+)$")


def _base_name(name):
    return re.sub(r"\[.*\]$", "", name or "?")


def _row_of(bench):
    """(label, n) of an entry: ``"engine|softmax|n=100"`` -> ("softmax", 100).

    The group's ``n=`` part gives n, else an integer size parameter does;
    a leading area (``engine|``) of a group with three or more parts is
    dropped.  Entries without a group are labelled by their test function.
    """
    group = bench.get("group")
    params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
    n = None
    if group:
        parts = str(group).split("|")
        m = _N_PART.match(parts[-1].strip())
        if m and len(parts) > 1:
            n, parts = int(m.group(1)), parts[:-1]
        if len(parts) >= 2 and n is not None:
            parts = parts[1:]
        label = "|".join(parts)
    else:
        label = _base_name(bench.get("name"))
    if n is None:
        sizes = [params[k] for k in _SIZE_KEYS
                 if isinstance(params.get(k), int) and not isinstance(params.get(k), bool)]
        n = sizes[0] if sizes else None
    return label, n


def _column_of(bench):
    """The implementation an entry names explicitly, or None."""
    extra = bench.get("extra_info") or {}
    if extra.get("impl") is not None:
        return str(extra["impl"])
    params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
    for key in _IMPL_KEYS:
        if params.get(key) is not None:
            return str(params[key])
    return None


_TOKEN_SEP = re.compile(r"[|\[\]\-_,\s]+")


def _tokens(bench):
    """``[(key, shown)]`` describing an entry: its parameters, else the words of its name."""
    params = bench.get("params") if isinstance(bench.get("params"), dict) else None
    if params:
        return [(f"{k}={v!r}", str(v)) for k, v in params.items() if k not in _SIZE_KEYS]
    return [(t, t) for t in _TOKEN_SEP.split(bench.get("name") or "") if t]


def _distinct_columns(entries):
    """Columns for entries of one row that name no implementation.

    What tells them apart: the parameters or name words they do not all
    share (``test_numpy_sum`` / ``test_python_sum`` -> ``numpy`` / ``python``;
    ``test_chunking[64-sigmoid-1000]`` / ``[tuned-sigmoid-1000]`` -> ``64`` /
    ``tuned``).  A lone entry is ``time``; entries still alike keep their names.
    """
    if len(entries) == 1:
        return ["time"]
    tokens = [_tokens(b) for b in entries]
    common = set.intersection(*(set(k for k, _ in ts) for ts in tokens))
    cols = ["-".join(shown for k, shown in ts if k not in common) for ts in tokens]
    if "" in cols or len(set(cols)) < len(cols):
        cols = [b.get("name") or "?" for b in entries]
    return cols


def _cells(data):
    """``[(label, n, column, median, entry)]`` in file order; see :func:`_distinct_columns`."""
    rows = [[*_row_of(b), _column_of(b), float(b["stats"]["median"]), b]
            for b in data["benchmarks"]]
    unnamed = {}
    for cell in rows:
        if cell[2] is None:
            unnamed.setdefault((cell[0], cell[1]), []).append(cell)
    for cells in unnamed.values():
        for cell, col in zip(cells, _distinct_columns([c[4] for c in cells])):
            cell[2] = col
    return [tuple(cell) for cell in rows]


def _wide(cells):
    """{(label, n): {column: median}}, or None when two entries would share a cell."""
    rows = {}
    for label, n, col, t, _ in cells:
        row = rows.setdefault((label, n), {})
        if col in row:
            return None
        row[col] = t
    return rows


def paired_rounds(fns, rounds, inner=20):
    """Per function, the time per call of each of ``rounds`` rounds (the mean
    of ``inner`` back-to-back calls), the functions taking turns within each
    round: on a shared machine a slow spell then hits all of them, not only
    the one timed during it.  (A 3-element check takes ~20 us: single calls
    would time the clock.)"""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter() - t0) / inner)
    return times


def format_time(s):
    """``0.00123`` -> ``"1.23 ms"``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


_fmt_time = format_time  # the name _demo used

_BASELINES = ("reference-loop", "loop", "reference")


def _columns(rows):
    cols = []
    for cell in rows.values():
        cols += [c for c in cell if c not in cols]
    return cols


def baseline_of(data):
    """The implementation speedups are relative to (None: entries shown one per line)."""
    rows = _wide(_cells(data))
    if rows is None:
        return None
    cols = _columns(rows)
    return next((c for c in _BASELINES if c in cols), cols[0] if cols else None)


def table(data, markdown=False):
    """Text (or markdown) table of medians, with speedups over the baseline implementation.

    One row per group and n, one column per implementation; when two entries
    would fall in the same cell, one line per entry instead (nothing dropped).
    """
    cells = _cells(data)
    rows = _wide(cells)
    if rows is None:
        head = ["group", "n", "benchmark", "median", "× fastest of group"]
        fastest = {}
        for label, n, _, t, _ in cells:
            fastest[label, n] = min(t, fastest.get((label, n), t))
        body = [[label, "" if n is None else str(n), b.get("name") or "?", format_time(t),
                 f"{t / fastest[label, n]:.2f}" if fastest[label, n] > 0 else "-"]
                for label, n, _, t, b in cells]
        return _render(head, body, markdown, left=3)
    cols = _columns(rows)
    base = baseline_of(data)
    # A speedup column only for implementations measured beside the baseline.
    others = [c for c in cols if c != base
              and any(c in cell and base in cell and cell[c] > 0 for cell in rows.values())]
    head = ["workload", "n"] + cols + [f"{c} speedup" for c in others]
    body = []
    for (label, n), cell in rows.items():
        line = [label, "" if n is None else str(n)]
        line += [format_time(cell[c]) if c in cell else "-" for c in cols]
        for c in others:
            ok = c in cell and base in cell and cell[c] > 0
            line.append(f"{cell[base] / cell[c]:.1f}x" if ok else "-")
        body.append(line)
    return _render(head, body, markdown, left=1)


def _render(head, body, markdown, left):
    """Columns before ``left`` are text (left-aligned), the rest numbers."""
    if markdown:
        esc = lambda c: c.replace("|", "\\|")  # noqa: E731 (a group's | would split the cell)
        out = ["| " + " | ".join(map(esc, head)) + " |",
               "|" + "|".join("---" if k < left else "---:" for k in range(len(head))) + "|"]
        out += ["| " + " | ".join(map(esc, r)) + " |" for r in body]
        return "\n".join(out)
    widths = [max(len(r[k]) for r in [head] + body) for k in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(wd) if k < left else c.rjust(wd)  # noqa: E731
                              for k, (c, wd) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * wd for wd in widths])] + [fmt(r) for r in body])


def cpu_of(data):
    mi = data.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    return (cpu.get("brand_raw") or cpu.get("brand") or mi.get("cpu_model") or "unknown CPU")


class MissingMatplotlib(ImportError):
    """matplotlib (the ``plot`` extra) is needed for ``--plot``."""


#: Most panels in one figure; the rest are counted in the title.
MAX_PANELS = 36

# One fixed style per known implementation, so no two lines share a colour.
_STYLES = {"reference-loop": ("tab:gray", "o"), "loop": ("tab:gray", "o"),
           "fastjac": ("tab:blue", "s"), "fastjac-vectorized": ("tab:blue", "s"),
           "scipy": ("tab:orange", "^"), "fastjac-loop": ("tab:purple", "v"),
           "fastjac-numba": ("tab:green", "D"), "f-alone": ("tab:red", "x")}


def _panels(cells):
    """{label: [(n, column, median)]}: one panel per group label, in file order."""
    panels = {}
    for label, n, col, t, _ in cells:
        panels.setdefault(label, []).append((n, col, t))
    return panels


def plot(data, path):
    """PNG with one panel per group: median time vs n (log-log), one line per implementation.

    Groups without sizes are drawn as bars, one per entry.  Returns the
    number of panels drawn.
    """
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib(
            "--plot needs matplotlib; install it with `pip install \"fastjac[plot]\"`") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(_cells(data))
    if not panels:
        raise JSONFormatError("the file has no benchmarks to plot")
    shown = list(panels.items())[:MAX_PANELS]
    cols = min(3, len(shown))
    nrows = -(-len(shown) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, (label, points) in zip(axes.flat, shown):
        if all(n is not None for n, _, _ in points):
            _lines(ax, points)
        else:
            _bars(ax, points)
        ax.set_title(label if len(label) <= 48 else label[:45] + "...", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    more = f" (first {len(shown)} of {len(panels)} groups)" if len(panels) > len(shown) else ""
    fig.suptitle(f"Median time — {cpu_of(data)}{more}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return len(shown)


def _lines(ax, points):
    series = {}
    for n, col, t in points:
        series.setdefault(col, []).append((n, t))
    for col, pts in series.items():
        pts.sort()
        color, marker = _STYLES.get(col, (None, "d"))
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                  label=col, lw=1.5, ms=4)
    ax.set_xlabel("n (inputs)")
    ax.set_ylabel("median time [s]")
    ax.legend(fontsize=8)


def _bars(ax, points):
    labels = [col if n is None else f"{col} (n={n})" for n, col, _ in points]
    times = [t for _, _, t in points]
    ax.barh(range(len(times)), times, color=[_STYLES.get(c, ("tab:blue",))[0] for _, c, _ in points])
    ax.set_yticks(range(len(times)), [s if len(s) <= 30 else s[:27] + "..." for s in labels],
                  fontsize=8)
    ax.invert_yaxis()  # file order, top to bottom
    positive = [t for t in times if t > 0]
    if positive and max(positive) > 20 * min(positive):
        ax.set_xscale("log")
    ax.set_xlabel("median time [s]")
