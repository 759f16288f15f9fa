"""The built-in benchmark behind ``fastjac bench``, and its rendering.

Workloads are the engine issue's: elementwise activations, a softmax, the
cross-entropy of a softmax, and the cross-entropy of a dense layer (one
sample and a batch) differentiated w.r.t. its weights.  Every workload is
written *batch-aware* (reductions over ``axis=-1`` / a leading batch axis),
so fastjac's ``vectorized="auto"`` probe accepts it; the notebook's
axis-0 softmax would be detected as row-mixing and fall back to a loop.

Implementations, side by side in one run:

``reference-loop``
    ``fastjac.reference.numeric_jacobian``: the notebook's element loop.
``fastjac``
    ``fastjac.jacobian(f, x)`` with default options.
``scipy``
    ``scipy.optimize.approx_derivative(method="3-point")`` if installed.

Results are kept in pytest-benchmark's JSON layout (``benchmarks`` with a
``group`` of ``"engine|{workload}|n={n}"``, ``extra_info["impl"]`` and
``stats["median"]``), so ``--from-json`` renders our own files and the ones
``pytest --benchmark-json`` writes with the same code.
"""
from __future__ import annotations

import json
import platform
import re
import statistics
import time

import numpy as np

__all__ = ["workload_names", "IMPLEMENTATIONS", "cpu_model", "run", "load_json", "table",
           "plot", "Result"]


# Workloads live in ``_workloads`` (shared with benchmarks/bench_engine.py):
# name -> build(n, rng) -> (f, x, exact J).  All are batch-aware.

def _workloads():
    from ._workloads import WORKLOADS

    return WORKLOADS


def workload_names():
    return list(_workloads())


# --------------------------------------------------------------------------
# Implementations: name -> runner(f, x) -> J shaped f(x).shape + x.shape.

def _loop(f, x):
    from .reference import numeric_jacobian

    return numeric_jacobian(x, f)


def _fastjac(f, x):
    from .engine import jacobian

    return jacobian(f, x)


def _scipy(f, x):
    # approx_derivative is not exported from scipy.optimize; _numdiff is its home.
    from scipy.optimize._numdiff import approx_derivative

    shape = x.shape
    out_shape = np.shape(f(x))
    J = approx_derivative(lambda v: f(v.reshape(shape)), x.reshape(-1), method="3-point")
    return np.asarray(J).reshape(out_shape + shape)


def _have_scipy():
    try:
        from scipy.optimize._numdiff import approx_derivative  # noqa: F401
    except ImportError:
        return False
    return True


IMPLEMENTATIONS = {"reference-loop": _loop, "fastjac": _fastjac, "scipy": _scipy}
_OPTIONAL = {"scipy": _have_scipy}


class Result(dict):
    """One timing in pytest-benchmark's layout (a dict, JSON-ready)."""


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
    """Median seconds of ``fn()`` over up to ``repeats`` runs within ``budget`` s."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget:
            break
    return times


def run(sizes=(10, 100, 1000), *, workloads=None, implementations=None, quick=False,
        seed=0, progress=None):
    """Time every workload x size x implementation; returns pytest-benchmark-like dict.

    Each implementation is run once untimed (warm-up: fastjac's probe, caches),
    its result checked against the loop's, then timed; the median is reported.
    """
    known = _workloads()
    workloads = list(workloads or known)
    impls = [i for i in (implementations or IMPLEMENTATIONS)
             if i not in _OPTIONAL or _OPTIONAL[i]()]
    repeats, budget = (3, 0.15) if quick else (15, 1.0)
    cells = [(w, n, i) for w in workloads for n in sizes for i in impls]
    bar = None
    if progress is not False:
        from tqdm.auto import tqdm

        # disable=None: only on a terminal, so pipes and tests stay clean.
        bar = tqdm(total=len(cells), desc="fastjac bench", unit="case", leave=False,
                   disable=None if progress is None else not progress)
    benchmarks = []
    for w in workloads:
        for n in sizes:
            f, x, exact = known[w].build(n, np.random.default_rng(seed))
            what = known[w].description
            for impl in impls:
                fn = IMPLEMENTATIONS[impl]
                J = fn(f, x)  # warm-up, and the result we check
                # The loosest method here is the loop's fixed step 1e-4: truncation
                # h**2/6 |f'''| < 1e-8 max|f'''| (~10 here), round-off EPS|f|/h < 1e-10;
                # so every implementation is within 1e-6 of the exact J.
                ok = bool(np.max(np.abs(J - np.reshape(exact, J.shape)), initial=0.0) <= 1e-6)
                times = _time(lambda: fn(f, x), repeats, budget)
                benchmarks.append(Result(
                    group=f"engine|{w}|n={n}", name=f"bench_{w}[{impl}-{n}]",
                    params={"impl": impl, "n": n},
                    extra_info={"impl": impl, "workload": what, "correct": ok},
                    stats={"median": statistics.median(times), "min": min(times),
                           "max": max(times), "rounds": len(times)}))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    import numpy

    return {"machine_info": {"cpu": {"brand_raw": cpu_model()}, "node": platform.node(),
                             "python_version": platform.python_version(),
                             "numpy": numpy.__version__},
            "fastjac_bench": {"quick": quick, "sizes": list(sizes), "seed": seed},
            "benchmarks": benchmarks}


# --------------------------------------------------------------------------
# Reading pytest-benchmark JSON.

_GROUP = re.compile(r"^(?:(?P<area>[^|]*)\|)?(?P<workload>[^|]+)\|n=(?P<n>\d+)$")


def _parse_group(group, name):
    """``"engine|softmax|n=100"`` -> ("softmax", 100); other groups -> (group, None)."""
    if group:
        m = _GROUP.match(group)
        if m:
            return m.group("workload"), int(m.group("n"))
        return group, None
    return re.sub(r"\[.*\]$", "", name), None


def _impl_of(bench):
    extra = bench.get("extra_info") or {}
    if extra.get("impl"):
        return str(extra["impl"])
    params = bench.get("params") or {}
    for key in ("impl", "implementation", "backend", "method"):
        if key in params:
            return str(params[key])
    m = re.search(r"\[(.*)\]$", bench.get("name", ""))
    if m:  # first non-numeric part of the test id, e.g. "fastjac-100" -> "fastjac"
        parts = [p for p in m.group(1).split("-") if not re.fullmatch(r"n?=?\d+", p)]
        if parts:
            return parts[0]
    return "time"  # nothing names an implementation: one column for all


class JSONFormatError(ValueError):
    """A file that is not a pytest-benchmark (or fastjac bench) JSON file."""


def load_json(path):
    """Read a pytest-benchmark JSON file into ``run()``'s layout."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise JSONFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise JSONFormatError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise JSONFormatError(
            f"{path} has no 'benchmarks' list; expected a file written by "
            "`pytest --benchmark-json` or `fastjac bench --json`")
    for b in data["benchmarks"]:
        if not isinstance(b, dict) or "median" not in (b.get("stats") or {}):
            raise JSONFormatError(f"{path}: a benchmark entry has no stats.median")
    return data


def _rows(data):
    """{(workload, n): {impl: median seconds}} in file order."""
    rows = {}
    for b in data["benchmarks"]:
        w, n = _parse_group(b.get("group"), b.get("name", "?"))
        rows.setdefault((w, n), {})[_impl_of(b)] = float(b["stats"]["median"])
    return rows


def _fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


_BASELINES = ("reference-loop", "loop", "reference")


def table(data, markdown=False):
    """Text (or markdown) table of medians and speedups over the loop."""
    rows = _rows(data)
    impls = []
    for cell in rows.values():
        impls += [i for i in cell if i not in impls]
    base = next((i for i in _BASELINES if i in impls), impls[0] if impls else None)
    others = [i for i in impls if i != base]
    head = ["workload", "n"] + impls + [f"{i} speedup" for i in others]
    body = []
    for (w, n), cell in rows.items():
        line = [w, "" if n is None else str(n)]
        line += [_fmt_time(cell[i]) if i in cell else "-" for i in impls]
        for i in others:
            ok = i in cell and base in cell and cell[i] > 0
            line.append(f"{cell[base] / cell[i]:.1f}x" if ok else "-")
        body.append(line)
    if markdown:
        out = ["| " + " | ".join(head) + " |",
               "|" + "|".join("---" if k < 1 else "---:" for k in range(len(head))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(out)
    widths = [max(len(r[k]) for r in [head] + body) for k in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(wd) if k == 0 else c.rjust(wd)  # noqa: E731
                              for k, (c, wd) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * wd for wd in widths])] + [fmt(r) for r in body])


def cpu_of(data):
    cpu = (data.get("machine_info") or {}).get("cpu") or {}
    return cpu.get("brand_raw") or cpu.get("brand") or "unknown CPU"


class MissingMatplotlib(ImportError):
    """matplotlib (the ``plot`` extra) is needed for ``--plot``."""


def plot(data, path):
    """PNG of median time vs n (log-log), one panel per workload, one line per impl.

    Groups without ``n=`` cannot be drawn as lines and are left out; returns
    the number of panels drawn.
    """
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib(
            "--plot needs matplotlib; install it with `pip install \"fastjac[plot]\"`") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for (w, n), cell in _rows(data).items():
        if n is None:
            continue
        for impl, t in cell.items():
            series.setdefault(w, {}).setdefault(impl, []).append((n, t))
    if not series:
        raise JSONFormatError("no benchmark group of the form '...|{workload}|n={n}' to plot")
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    # One fixed style per implementation, so no two lines share a colour.
    styles = {"reference-loop": ("tab:gray", "o"), "loop": ("tab:gray", "o"),
              "fastjac": ("tab:blue", "s"), "fastjac-vectorized": ("tab:blue", "s"),
              "scipy": ("tab:orange", "^"), "fastjac-loop": ("tab:purple", "v"),
              "fastjac-numba": ("tab:green", "D"), "f-alone": ("tab:red", "x")}
    for ax, (w, lines) in zip(axes.flat, series.items()):
        for impl, pts in lines.items():
            pts.sort()
            color, marker = styles.get(impl, (None, "d"))
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                      label=impl, lw=1.5, ms=4)
        ax.set_title(w, fontsize=10)
        ax.set_xlabel("n (inputs)")
        ax.set_ylabel("median time [s]")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    fig.suptitle(f"Full Jacobian, time vs n — {cpu_of(data)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return len(series)
