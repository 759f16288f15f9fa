"""The warm fast path gives bitwise the general pipeline's Jacobian, for every kind of f.

A warm ``fastjac.jacobian`` call replays the plan's blocks without the
pipeline's bookkeeping (one block for small problems, the pipeline's own
chunking for larger ones).  ``jacobian_with_info`` always takes the general
path, so the two are compared bitwise here: on elementwise, BLAS-backed,
column-major (trailing layout), point-at-a-time, view-returning,
buffer-reusing and jitted functions, in float64 and float32, at sizes from
one block to dozens.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastjac
from fastjac.engine import jacobian_with_info
from fastjac.reference import numeric_jacobian

SIZES = [3, 40, 150, 400]


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, v):
        self.calls += 1
        return self.f(v)


class ReusesBuffer:
    """Returns the same output buffer on every call of a given shape (as many
    hand-written kernels do)."""

    def __init__(self):
        self.out = {}

    def __call__(self, v):
        out = self.out.get(v.shape)
        if out is None:
            out = self.out[v.shape] = np.empty(v.shape, v.dtype)
        np.sin(v, out=out)
        out *= 2
        return out


def _matrix(n):
    return np.random.default_rng(n).normal(size=(n, 7)) / np.sqrt(n)


def _notebook_softmax(z):
    """Column-major, as the notebook writes it: features on axis 0."""
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


def _not_batchable(v):
    return np.array([np.dot(v.ravel(), v.ravel()), np.sum(np.sin(v))])


def _jitted():
    numba = pytest.importorskip("numba")

    @numba.njit(cache=False)
    def g(v):
        return np.sin(v) * 2.0

    return g


def _float32_output(v):
    return np.sin(v).astype(np.float32)


def _python_float_loss(v):
    return float(np.sum(np.sin(v.ravel()) ** 2))


KINDS = {
    "float32 output": lambda n: (_float32_output, (n,)),
    "float32 output, points": lambda n: (lambda v: _not_batchable(v).astype(np.float32), (n,)),
    "python float": lambda n: (_python_float_loss, (n,)),
    "ufunc": lambda n: (np.tanh, (n,)),
    "elementwise": lambda n: (lambda v: 1 / (1 + np.exp(-v)), (n,)),
    "blas": lambda n: ((lambda M: lambda v: np.tanh(v @ M))(_matrix(n)), (n,)),
    "trailing": lambda n: (_notebook_softmax, (max(2, n // 2), 2)),
    "points": lambda n: (_not_batchable, (n,)),
    "view": lambda n: (lambda v: v[..., ::2], (n,)),
    "reused buffer": lambda n: (ReusesBuffer(), (n,)),
    "jitted": lambda n: (_jitted(), (n,)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_warm_call_is_bitwise_the_general_path(kind, n, dtype):
    f, shape = KINDS[kind](n)
    x = np.random.default_rng(n).uniform(-1, 1, shape).astype(dtype)
    fastjac.jacobian(f, x)               # plans, and keeps a fast path
    counted = Counted(f)
    # (a Counted wrapper is a new function: give it its own plan first)
    fastjac.jacobian(counted, x)
    counted.calls = 0
    warm = fastjac.jacobian(counted, x)
    warm_calls = counted.calls
    general, info = jacobian_with_info(counted, x)
    np.testing.assert_array_equal(warm, general)
    assert warm.dtype == general.dtype and warm.shape == general.shape
    if info.strategy != "loop":
        # The warm call is the plan's blocks and nothing else: no f(x).
        assert warm_calls == info.nblocks, (warm_calls, info.nblocks)
    x64 = x.astype(np.float64)
    # The oracle's accuracy is that of the least precise of x and f(x).
    low = dtype == np.float32 or np.asarray(f(x)).dtype == np.float32
    atol = 2e-2 if low else 1e-6
    oracle = numeric_jacobian(x64, lambda v: np.array(f(v.astype(dtype)), np.float64),
                              epsilon=1e-3 if low else 1e-5)
    np.testing.assert_allclose(warm, oracle.reshape(warm.shape), rtol=0, atol=atol)


@pytest.mark.parametrize("n", SIZES)
def test_a_new_point_of_the_same_layout_is_served_fresh(n):
    f = lambda v: np.sin(v) * np.cos(v[::-1])  # noqa: E731  (not elementwise)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, n)
    fastjac.jacobian(f, x)
    fastjac.jacobian(f, x)
    y = rng.uniform(-3, 3, n)
    np.testing.assert_array_equal(fastjac.jacobian(f, y), jacobian_with_info(f, y)[0])
    before = y.copy()
    fastjac.jacobian(f, y)
    np.testing.assert_array_equal(y, before)   # never written


@pytest.mark.parametrize("n", [3, 400])
def test_a_changed_output_is_detected_not_served_from_the_plan(n):
    state = {"wide": False}

    def f(v):
        out = np.sin(v)
        return np.concatenate([out, out], axis=-1) if state["wide"] else out

    x = np.linspace(-1, 1, n)
    fastjac.jacobian(f, x)
    assert fastjac.jacobian(f, x).shape == (n, n)
    state["wide"] = True
    J = fastjac.jacobian(f, x)
    assert J.shape == (2 * n, n)
    np.testing.assert_allclose(J[:n], np.diag(np.cos(x)), atol=1e-8)


def test_a_fastjac_call_inside_f_takes_the_general_path():
    inner_x = np.linspace(0, 1, 3)

    def f(v):
        g = fastjac.jacobian(np.sin, inner_x)   # the same plan's fast path, nested
        return np.sin(v) * g.trace()

    x = np.linspace(-1, 1, 150)
    fastjac.jacobian(np.sin, inner_x)
    fastjac.jacobian(f, x)
    np.testing.assert_array_equal(fastjac.jacobian(f, x), jacobian_with_info(f, x)[0])


def test_non_finite_x_gets_the_general_paths_error():
    x = np.linspace(-1, 1, 150)
    fastjac.jacobian(np.sin, x)
    x[7] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fastjac.jacobian(np.sin, x)


class Layer:
    def __init__(self, a):
        self.a = a

    def forward(self, v):
        return np.sin(v) * self.a


ENTRY_POINTS = {
    "jacobian": lambda f, x: (fastjac.jacobian(f, x), fastjac.jacobian(f, x)),
    "gradient": lambda f, x: fastjac.gradient(lambda v: np.sum(f(v), axis=-1), x),
    "check_jacobian": lambda f, x: [fastjac.check_jacobian(f, x, np.diag(2 * np.cos(x)))
                                    for _ in range(2)],
    "check_grad": lambda f, x: [fastjac.check_grad(f, x[:1].reshape(()), 2 * np.cos(x[0]))
                                for _ in range(2)],
    "jvp": lambda f, x: fastjac.jvp(f, x, np.ones_like(x)),
    "vjp": lambda f, x: fastjac.vjp(f, x, np.ones_like(x)),
    "sparsity": lambda f, x: fastjac.jacobian(f, x, sparsity="diagonal"),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("kind", ["closure", "bound method"])
def test_nothing_fastjac_remembers_keeps_f_alive(entry, kind):
    """Plans and fast paths are filed under f in tables weak in f: once the
    caller drops f (a closure over a large array, a layer object), it is
    collected.  A fast path holding f would keep every f ever checked."""
    import gc
    import weakref

    x = np.linspace(-1, 1, 40)
    alive = []
    for i in range(3):
        if kind == "closure":
            f = (lambda a: lambda v: np.sin(v) * a)(2.0)
            alive.append(weakref.ref(f))
        else:
            layer = Layer(2.0)
            f = layer.forward
            alive.append(weakref.ref(layer))
            del layer
        ENTRY_POINTS[entry](f, x)
        del f
    gc.collect()
    assert [r() for r in alive] == [None] * 3


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("n", [3, 40])
def test_a_warm_check_never_passes_a_non_finite_expected_value(bad, n):
    x = np.linspace(-1, 1, n)
    E = np.diag(np.cos(x))
    assert fastjac.check_jacobian(np.sin, x, E).passed   # warm from here on
    assert fastjac.check_jacobian(np.sin, x, E).passed
    wrong = E.copy()
    wrong[n - 1, 0] = bad
    r = fastjac.check_jacobian(np.sin, x, wrong)
    assert not r.passed and r.verdict == "nan"


class Switchable:
    """An f that is correct until told to misbehave: random, batch-mixing, or NaN at x."""

    def __init__(self):
        self.mode, self.rng = "ok", np.random.default_rng(5)

    def __call__(self, x):
        y = np.sin(x)
        if self.mode == "random":
            return y * (1 + 1e-3 * self.rng.standard_normal(y.shape))
        if self.mode == "mixing" and y.ndim == 2:
            return y * (1 + 0.1 * y.mean(axis=0))  # the points of a batch leak into each other
        if self.mode == "shifting" and y.ndim == 2:
            return y + 0.1 * y.mean(axis=0)        # the same leak, cancelling in f(x+h) - f(x-h)
        if self.mode == "nan-center":
            return np.where(x == self.x0, np.nan, y)
        return y


@pytest.mark.parametrize("mode, verdicts", [("random", {"non-deterministic"}),
                                            ("mixing", {"non-deterministic", "fail"}),
                                            ("nan-center", {"nan"})])
@pytest.mark.parametrize("n", [3, 40])
def test_a_warm_check_of_an_f_that_changed_gets_the_general_paths_verdict(mode, verdicts, n):
    # The warm path answers passes only, from one batch: an f that turned random,
    # started mixing its batch or went NaN at x must still get its own verdict.
    f = Switchable()
    x = np.linspace(-1, 1, n)
    f.x0 = x.copy()
    E = np.diag(np.cos(x))
    for _ in range(3):
        assert fastjac.check_jacobian(f, x, E).passed   # the plan and its fast path
    f.mode = mode
    r = fastjac.check_jacobian(f, x, E)
    assert not r.passed and r.verdict in verdicts, (r.verdict, r.notes)


@pytest.mark.parametrize("n", [3, 40])
def test_a_batch_leak_that_cancels_in_the_differences_passes_with_the_right_jacobian(n):
    # What the lone f(x) of the general path would flag does not change the
    # derivative here: a pass is the right answer, and its J is f's.
    f = Switchable()
    x = np.linspace(-1, 1, n)
    E = np.diag(np.cos(x))
    assert fastjac.check_jacobian(f, x, E).passed
    f.mode = "shifting"
    r = fastjac.check_jacobian(f, x, E)
    assert r.passed and np.max(np.abs(r.numeric - E)) < 1e-8


@pytest.mark.parametrize("n", [3, 40])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_warm_pass_reports_what_the_general_path_reports(n, dtype):
    x = np.linspace(-1, 1, n).astype(dtype)
    E = np.diag(np.cos(x))
    f = lambda v: np.sin(v)  # noqa: E731  (a new closure: cold first)
    cold, warm = fastjac.check_jacobian(f, x, E), fastjac.check_jacobian(f, x, E)
    a, b = cold.to_dict(), warm.to_dict()
    for d in (a, b):
        d.pop("nfev"), d.pop("seconds")  # the cold call also paid for the probe
    assert a == b
    assert type(warm) is type(cold) and vars(warm).keys() == vars(cold).keys()
    for name in ("passed", "rtol", "atol", "seconds", "nfev"):
        assert type(getattr(warm, name)) is type(getattr(cold, name)), name
    assert str(warm) == str(cold).replace(f"nfev={cold.nfev}", f"nfev={warm.nfev}")


def test_a_fast_path_built_under_one_chunk_policy_is_not_served_under_another():
    from fastjac._engine import chunk_policy

    x = np.linspace(-1, 1, 400)
    f, fresh = Counted(np.tanh), Counted(np.tanh)

    def calls_per_warm_call(g):
        fastjac.jacobian(g, x)
        fastjac.jacobian(g, x)
        before = g.calls
        fastjac.jacobian(g, x)
        return g.calls - before

    with chunk_policy(1 << 30, tune=False):    # everything in one batch
        assert calls_per_warm_call(f) == 1
    with chunk_policy(1 << 16, tune=False):    # fixed small chunks (untuned: no timing in it)
        assert calls_per_warm_call(f) == calls_per_warm_call(fresh) > 1
