"""Mutation suite: correct analytic derivatives, and realistic bugs injected into them.

Every case builds, at a random point, a function, its correct derivative and
case-specific mutants (a missing term, a sum over the wrong axis); the
harness adds the generic mutants (transpose, factor 2, sign flip, one entry
off by 10%, a row zeroed, a 1.01 scale).  At default settings every mutant
must be caught in float64, every one but the 1.01 scale in float32, and the
correct versions must pass at every seed in both dtypes.

``python tests/test_mutations.py [seeds]`` prints the detection and
false-alarm table as markdown (the numbers in docs/checks.md).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import fastjac

DTYPES = (np.float64, np.float32)
CI_SEEDS = 50          # correct versions, per case and dtype
CI_MUTANT_SEEDS = 4    # mutants, per case, mutant and dtype


def _softmax(Z):
    Z = Z - np.max(Z, axis=0, keepdims=True)
    e = np.exp(Z)
    return e / np.sum(e, axis=0, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# Each builder: (rng, dtype) -> dict(kind, f, x, E, mutants).  Everything is
# computed in float64 and cast, so the float32 cases see float32 inputs and
# a float32 analytic derivative, as a float32 user would.
def case_sigmoid(rng, dt):
    z = rng.normal(size=5)
    a = _sigmoid(z)
    return dict(kind="jacobian", f=_sigmoid, x=z, E=np.diag(a * (1 - a)),
                mutants={"missing term": np.diag(a)})


def case_tanh(rng, dt):
    z = rng.normal(size=5)
    a = np.tanh(z)
    return dict(kind="jacobian", f=np.tanh, x=z, E=np.diag(1 - a ** 2),
                mutants={"missing term": np.eye(5)})


def case_softmax(rng, dt):
    z = rng.normal(size=4)
    a = _softmax(z)
    return dict(kind="jacobian", f=_softmax, x=z, E=np.diag(a) - np.outer(a, a),
                mutants={"missing term": np.diag(a)})


def case_log_softmax(rng, dt):
    z = rng.normal(size=4)
    a = _softmax(z)

    def f(z):
        s = z - np.max(z, axis=0, keepdims=True)
        return s - np.log(np.sum(np.exp(s), axis=0, keepdims=True))
    return dict(kind="jacobian", f=f, x=z, E=np.eye(4) - a[None, :],
                mutants={"missing term": np.eye(4)})


def case_cross_entropy(rng, dt):
    a = rng.uniform(0.2, 1.0, size=4)
    y = _softmax(rng.normal(size=4)).astype(dt)
    return dict(kind="grad", f=lambda a: -np.sum(y * np.log(a)), x=a, E=-y / a,
                mutants={"missing term": -y.astype(float)})


def case_softmax_ce(rng, dt):
    z = rng.normal(size=4)
    y = _softmax(rng.normal(size=4)).astype(dt)
    a = _softmax(z)
    return dict(kind="grad", f=lambda z: -np.sum(y * np.log(_softmax(z))), x=z, E=a - y,
                mutants={"missing term": a})


def _dense_single(rng, dt):
    W, b, x = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=4)
    y = _softmax(rng.normal(size=3))
    a = _softmax(W @ x + b)
    return W, b, x, y, a


def case_dense_dW(rng, dt):
    W, b, x, y, a = _dense_single(rng, dt)
    bb, xx, yy = b.astype(dt), x.astype(dt), y.astype(dt)
    return dict(kind="grad", f=lambda W: -np.sum(yy * np.log(_softmax(W @ xx + bb))), x=W,
                E=np.outer(a - y, x), mutants={"missing term": np.outer(a, x)})


def case_dense_dx(rng, dt):
    W, b, x, y, a = _dense_single(rng, dt)
    WW, bb, yy = W.astype(dt), b.astype(dt), y.astype(dt)
    return dict(kind="grad", f=lambda x: -np.sum(yy * np.log(_softmax(WW @ x + bb))), x=x,
                E=(a - y) @ W, mutants={"missing term": a @ W})


def case_dense_db(rng, dt):
    W, b, x, y, a = _dense_single(rng, dt)
    WW, xx, yy = W.astype(dt), x.astype(dt), y.astype(dt)
    return dict(kind="grad", f=lambda b: -np.sum(yy * np.log(_softmax(WW @ xx + b))), x=b,
                E=a - y, mutants={"missing term": a})


def _dense_batch(rng, dt):
    W, b, X = rng.normal(size=(3, 4)), rng.normal(size=(3, 1)), rng.normal(size=(4, 3))
    Y = _softmax(rng.normal(size=(3, 3)))
    A = _softmax(W @ X + b)
    return W, b, X, Y, A, (A - Y) / X.shape[1]


def _ce_many(Y, A):
    return np.sum(-np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=0, keepdims=True)) / Y.shape[1]


def case_batch_dW(rng, dt):
    W, b, X, Y, A, dZ = _dense_batch(rng, dt)
    bb, XX, YY = b.astype(dt), X.astype(dt), Y.astype(dt)
    return dict(kind="grad", f=lambda W: _ce_many(YY, _softmax(W @ XX + bb)), x=W, E=dZ @ X.T,
                mutants={"missing term": A @ X.T / 3})


def case_batch_dX(rng, dt):
    W, b, X, Y, A, dZ = _dense_batch(rng, dt)
    WW, bb, YY = W.astype(dt), b.astype(dt), Y.astype(dt)
    return dict(kind="grad", f=lambda X: _ce_many(YY, _softmax(WW @ X + bb)), x=X, E=W.T @ dZ,
                mutants={"missing term": W.T @ A / 3})


def case_batch_db(rng, dt):
    W, b, X, Y, A, dZ = _dense_batch(rng, dt)
    WW, XX, YY = W.astype(dt), X.astype(dt), Y.astype(dt)
    return dict(kind="grad", f=lambda b: _ce_many(YY, _softmax(WW @ XX + b)), x=b,
                E=dZ.sum(axis=1, keepdims=True),
                mutants={"missing term": (A / 3).sum(axis=1, keepdims=True),
                         "wrong axis": dZ.sum(axis=0, keepdims=True)})


def case_batch_dZ(rng, dt):
    Z = rng.normal(size=(3, 3))
    Y = _softmax(rng.normal(size=(3, 3)))
    YY = Y.astype(dt)
    return dict(kind="grad", f=lambda Z: _ce_many(YY, _softmax(Z)), x=Z, E=(_softmax(Z) - Y) / 3,
                mutants={"missing term": _softmax(Z) / 3,
                         # softmax normalised over samples instead of classes
                         "wrong axis": (_softmax(Z.T).T - Y) / 3})


def case_layer_norm(rng, dt):
    x = rng.normal(size=5)
    n, eps = x.size, 1e-5

    def f(x):
        mu = np.mean(x, axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(np.var(x, axis=-1, keepdims=True) + np.asarray(eps, x.dtype))
    sigma = np.sqrt(np.var(x) + eps)
    xhat = (x - x.mean()) / sigma
    return dict(kind="jacobian", f=f, x=x, E=(np.eye(n) - 1 / n - np.outer(xhat, xhat) / n) / sigma,
                mutants={"missing term": (np.eye(n) - 1 / n) / sigma})


def case_mlp(rng, dt):
    W1, b1, W2, x, t = (rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)),
                        rng.normal(size=3), rng.normal(size=2))
    b1d, W2d, xd, td = (v.astype(dt) for v in (b1, W2, x, t))

    def f(W1):
        return 0.5 * np.sum((W2d @ np.tanh(W1 @ xd + b1d) - td) ** 2)
    h = np.tanh(W1 @ x + b1)
    r = W2 @ h - t
    return dict(kind="grad", f=f, x=W1, E=np.outer((W2.T @ r) * (1 - h ** 2), x),
                mutants={"missing term": np.outer(W2.T @ r, x)})


def case_matmul(rng, dt):
    A = rng.normal(size=(2, 3))
    E = np.einsum("ik,jl->ijkl", np.eye(2), A) + np.einsum("jk,il->ijkl", np.eye(2), A)
    return dict(kind="jacobian", f=lambda A: A @ A.T, x=A, E=E,
                mutants={"missing term": np.einsum("ik,jl->ijkl", np.eye(2), A)})


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def _largest_off(E):
    out = E.copy()
    flat = out.reshape(-1)
    flat[np.argmax(np.abs(flat))] *= 1.1
    return out


def _row_zeroed(E):
    out = E.copy()
    if out.ndim >= 2:
        out.reshape(out.shape[0], -1)[0] = 0
    else:
        out[np.argmax(np.abs(out))] = 0
    return out


def _transpose(E):
    two = E.reshape(E.shape[0], -1) if E.ndim > 1 else E.reshape(1, -1)
    if E.ndim == 1:
        return E[::-1].copy()  # a vector's "transpose" bug: reversed layout
    return two.T.reshape(E.shape).copy() if two.shape[0] == two.shape[1] else two.T.copy().reshape(E.shape)


GENERIC = {
    "transpose": _transpose,
    "factor 2": lambda E: 2 * E,
    "sign flip": lambda E: -E,
    "one entry 10%": _largest_off,
    "row zeroed": _row_zeroed,
    "scale 1.01": lambda E: 1.01 * E,
}
MUTANTS = ("transpose", "factor 2", "sign flip", "missing term", "wrong axis", "one entry 10%",
           "row zeroed", "scale 1.01")
#: Mutants that float32 need not catch (their error is within float32 finite-difference noise).
NOT_REQUIRED = {np.dtype(np.float32): {"scale 1.01"}}


def build(case, seed, dtype):
    rng = np.random.default_rng(seed)
    c = CASES[case](rng, dtype)
    c["x"] = np.asarray(c["x"], dtype=dtype)
    E = np.asarray(c["E"], dtype=np.float64)
    mutants = {k: np.asarray(v, dtype=np.float64) for k, v in c["mutants"].items()}
    for name, fn in GENERIC.items():
        mutants[name] = fn(E)
    c["E"] = E.astype(dtype)
    # Equivalent mutants (transposing a symmetric Jacobian) are not bugs.
    c["mutants"] = {k: v.astype(dtype) for k, v in mutants.items()
                    if v.shape != E.shape or not np.allclose(v, E, rtol=1e-9, atol=0)}
    return c


def run_check(c, E):
    """True if the check passes; a shape error counts as caught (False)."""
    try:
        with np.errstate(all="ignore"):
            if c["kind"] == "grad":
                report = fastjac.check_grad(c["f"], c["x"], E)
            else:
                report = fastjac.check_jacobian(c["f"], c["x"], E)
    except ValueError:
        return False, None
    return report.passed, report


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_derivatives_pass(case, dtype):
    for seed in range(CI_SEEDS):
        c = build(case, seed, dtype)
        passed, report = run_check(c, c["E"])
        assert passed, f"false alarm on {case} seed={seed}:\n{report}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_mutants_caught(case, dtype):
    skip = NOT_REQUIRED.get(np.dtype(dtype), set())
    checked = 0
    for seed in range(CI_MUTANT_SEEDS):
        c = build(case, 1000 + seed, dtype)
        for name, E in c["mutants"].items():
            if name in skip:
                continue
            passed, report = run_check(c, E)
            checked += 1
            assert not passed, f"missed mutant {name!r} of {case} seed={1000 + seed}:\n{report}"
    assert checked >= 5 * CI_MUTANT_SEEDS


def test_float64_catches_the_one_percent_scale():
    for case in sorted(CASES):
        c = build(case, 7, np.float64)
        assert not run_check(c, c["mutants"]["scale 1.01"])[0], case


def mutation_table(seeds=20, false_alarm_seeds=200):
    """Detection and false-alarm rates as a markdown table (rows: mutants)."""
    rows, caught = {}, {}
    for dtype in DTYPES:
        key = np.dtype(dtype).name
        alarms = total = 0
        for case in CASES:
            for seed in range(false_alarm_seeds):
                c = build(case, seed, dtype)
                alarms += not run_check(c, c["E"])[0]
                total += 1
            for seed in range(seeds):
                c = build(case, 1000 + seed, dtype)
                for name, E in c["mutants"].items():
                    hit, n = caught.setdefault((name, key), [0, 0]), 1
                    hit[0] += not run_check(c, E)[0]
                    hit[1] += n
        rows[key] = (alarms, total)
    lines = ["| mutant | float64 caught | float32 caught |", "|---|---|---|"]
    all_hit = {k: [0, 0] for k in rows}
    for name in MUTANTS:
        cells = []
        for key in rows:
            hit, n = caught.get((name, key), [0, 0])
            all_hit[key][0] += hit
            all_hit[key][1] += n
            cells.append(f"{hit}/{n} ({100 * hit / n:.1f}%)" if n else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **all mutants** | " + " | ".join(
        f"{h}/{n} ({100 * h / n:.1f}%)" for h, n in all_hit.values()) + " |")
    lines.append("| **false alarms on correct code** | " + " | ".join(
        f"{a}/{t} ({100 * a / t:.2f}%)" for a, t in rows.values()) + " |")
    return "\n".join(lines) + (f"\n\n{len(CASES)} derivatives, mutants at {seeds} seeds each, "
                               f"correct versions at {false_alarm_seeds} seeds each, per dtype.")


if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    fa = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    print(mutation_table(seeds, fa))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_no_false_alarms_wide_sweep(dtype):
    # Seeds 50..249 on top of the CI sweep: 200 more points per derivative.
    alarms = [(case, seed) for case in CASES for seed in range(CI_SEEDS, CI_SEEDS + 200)
              if not run_check(build(case, seed, dtype), build(case, seed, dtype)["E"])[0]]
    assert alarms == []
