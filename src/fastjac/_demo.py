"""``fastjac demo``: every gradient check of the reference notebook, rerun with fastjac.

The notebook's functions are reproduced exactly (column-major layout,
softmax over axis 0).  That softmax normalises over whatever axis 0 is, so a
stack of points on a leading axis mixes them; fastjac's ``vectorized="auto"``
probe sees that and batches the points as extra columns instead (the
``strategy`` column says ``vectorized-trailing``).  The "at scale" rows use
batch-aware rewrites from :mod:`._bench`.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from ._bench import format_time, paired_rounds, run

__all__ = ["notebook_checks", "run_demo"]


# --- the notebook's functions, verbatim in behaviour ------------------------

def softmax(Z):
    Z = Z - np.max(Z, axis=0, keepdims=True)
    e = np.exp(Z)
    d = np.sum(e, axis=0, keepdims=True)
    return e / d


def sigmoid(Z):
    return 1 / (1 + np.exp(-Z))


def cross_entropy_loss(y, a):
    return -np.sum(y * np.log(a))


def cross_entropy_loss_many(Y, A):
    m = Y.shape[1]
    J = -np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=0, keepdims=True)
    return np.sum(J) / m


@dataclass
class NotebookCheck:
    name: str
    f: object
    x: np.ndarray
    expected: np.ndarray


def notebook_checks(seed=0):
    """The 11 checks of the notebook as (name, f, x, analytic Jacobian).

    ``seed`` replaces the notebook's unseeded ``np.random.rand``.
    """
    rng = np.random.default_rng(seed)
    checks = []
    add = lambda *a: checks.append(NotebookCheck(*a))  # noqa: E731

    z = np.array([1., 2., 3.])
    a = sigmoid(z)
    add("sigmoid  da/dz", sigmoid, z, np.diag(a * (1 - a)))
    a = np.tanh(z)
    add("tanh  da/dz", np.tanh, z, np.diag(1 - np.power(a, 2)))
    a = softmax(z)
    add("softmax  da/dz", softmax, z, np.diag(a) - np.outer(a, a))

    y = np.array([0.2, 0.0, 0.8])
    a = np.array([0.1, 0.3, 0.6])
    add("cross-entropy  dJ/da", lambda a: cross_entropy_loss(y, a), a, -y / a)
    a = softmax(z)
    add("softmax + CE  dJ/dz", lambda z: cross_entropy_loss(y, softmax(z)), z, a - y)

    _dense_single(add, y, rng.random((3, 4)), rng.random(3), rng.random(4))
    W, b, X = rng.random((3, 4)), rng.random((3, 1)), rng.random((4, 2))
    _dense_batch(add, W, b, X, softmax(rng.random((3, 2))))
    return checks


def _dense_single(add, y, W, b, x):
    """One sample: W (3, 4), b (3,), x (4,); each section binds its own arrays."""
    a = softmax(W @ x + b)
    dz = a - y
    add("dense, 1 sample  dJ/dW", lambda W: cross_entropy_loss(y, softmax(W @ x + b)), W,
        np.outer(dz, x))
    # The notebook's dJ/dx is (1, 4) against a numeric (4,): compared without size-1 axes.
    add("dense, 1 sample  dJ/dx", lambda x: cross_entropy_loss(y, softmax(W @ x + b)), x,
        dz.reshape(1, dz.size) @ W)
    add("dense, 1 sample  dJ/db", lambda b: cross_entropy_loss(y, softmax(W @ x + b)), b, dz)


def _dense_batch(add, W, b, X, Y):
    """A batch of 2: W (3, 4), b (3, 1), X (4, 2), Y (3, 2)."""
    A = softmax(W @ X + b)
    dZ = (A - Y) / Y.shape[1]
    add("dense, batch  dJ/dW", lambda W: cross_entropy_loss_many(Y, softmax(W @ X + b)), W,
        dZ @ X.T)
    add("dense, batch  dJ/dX", lambda X: cross_entropy_loss_many(Y, softmax(W @ X + b)), X,
        W.T @ dZ)
    add("dense, batch  dJ/db", lambda b: cross_entropy_loss_many(Y, softmax(W @ X + b)), b,
        dZ @ np.ones((2, 1)))


# --- timing -----------------------------------------------------------------

def run_demo(*, full=False, seed=0, repeats=7, scale_sizes=(100, 1000), out=print):
    """Run the notebook's checks; returns True when every check passes."""
    from .check import check_jacobian
    from .engine import jacobian, jacobian_with_info
    from .reference import numeric_jacobian

    checks = notebook_checks(seed)
    out("fastjac demo: the reference notebook's 11 gradient checks, rerun with fastjac")
    out(f"(seed {seed}; verdicts from fastjac.check_jacobian; times are medians of {repeats} "
        "paired runs of fastjac.jacobian, warm, against the notebook's element loop)")
    out("")
    head = f"  {'#':>2}  {'check':<24} {'J shape':<9} {'verdict':<8} {'error norm':>10}  " \
           f"{'loop':>9}  {'fastjac':>9}  {'speedup':>7}  strategy"
    out(head)
    out("  " + "-" * (len(head) - 2))
    npass = 0
    for k, c in enumerate(checks, 1):
        _, info = jacobian_with_info(c.f, c.x)  # warm-up; also tells the strategy chosen
        shape = info.fx.shape + c.x.shape
        expected = np.reshape(c.expected, shape)  # drops the notebook's stray (1, n) axis
        report = check_jacobian(c.f, c.x, expected)
        npass += report.passed
        t_loop, t_fast = map(statistics.median, paired_rounds(
            (lambda: numeric_jacobian(c.x, c.f), lambda: jacobian(c.f, c.x)), repeats))
        out(f"  {k:>2}  {c.name:<24} {str(shape):<9} {report.verdict:<8} "
            f"{report.error_norm:>10.2e}  {format_time(t_loop):>9}  {format_time(t_fast):>9}  "
            f"{t_loop / t_fast:>6.1f}x  {info.strategy}")
        if full:
            with np.printoptions(precision=8, suppress=True):
                out("")
                out("      analytic:")
                out(_indent(np.asarray(c.expected)))
                out("      numeric (fastjac):")
                out(_indent(np.asarray(report.numeric)))
                out(f"      error norm: {report.error_norm:.3e}")
                out("")
    all_pass = npass == len(checks)
    out("")
    out(f"{npass} of {len(checks)} checks pass." + ("" if all_pass else " SOME CHECKS FAILED."))
    out("The notebook's column-major softmax batches as extra columns (vectorized-trailing); "
        "the dense-layer losses batch in neither layout and run point by point (loop).")
    if scale_sizes:
        _at_scale(tuple(scale_sizes), seed, out)
    return all_pass


def _indent(arr):
    return "\n".join("        " + line for line in str(arr).splitlines())


_SCALE_WORKLOADS = ("softmax-ce", "dense-ce", "batched-dense")


def _at_scale(sizes, seed, out):
    data = run(sizes, workloads=_SCALE_WORKLOADS,
                      implementations=("reference-loop", "fastjac"), quick=True, seed=seed,
                      progress=False)
    out("")
    out("At scale: full Jacobians of batch-aware versions (softmax over axis=-1 / a leading "
        "batch axis), median of 3 runs")
    out("")
    rows = {}
    for b in data["benchmarks"]:
        rows.setdefault(b["group"], {})[b["extra_info"]["impl"]] = b
    head = (f"  {'workload':<52} {'n':>6}  {'loop':>9}  {'fastjac':>9}  {'speedup':>7}  "
            "agrees with exact J")
    out(head)
    out("  " + "-" * (len(head) - 2))
    for group, cell in rows.items():
        loop, fast = cell["reference-loop"], cell["fastjac"]
        tl, tf = loop["stats"]["median"], fast["stats"]["median"]
        n = group.rsplit("n=", 1)[1]
        out(f"  {fast['extra_info']['workload']:<52} {n:>6}  {format_time(tl):>9}  {format_time(tf):>9}  "
            f"{tl / tf:>6.1f}x  {'yes' if fast['extra_info']['correct'] else 'NO'}")
    out("")
    out("Full benchmark: `fastjac bench` (add --plot bench.png for a log-log plot).")
