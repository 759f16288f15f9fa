"""fastjac.nn's public surface: names, one signature, errors, ``out``, empty batches, dispatch.

Everything is driven by nn.RULES and each rule's ``sample``.
"""
from __future__ import annotations

import inspect
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastjac import nn

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = list(nn.BACKENDS)
ELEMENTWISE = [n for n, r in nn.RULES.items() if r.kind == "elementwise"]
ARRAY_OPS = [n for n, r in nn.RULES.items() if r.kind in ("elementwise", "normalizer")]
LOSSES = [n for n, r in nn.RULES.items() if r.kind == "loss"]

# dir(fastjac.nn) and each rule's public attributes before the nn/ split
# (fastjac 0.1.0): all must still be there.
NN_NAMES = {"BACKENDS", "CLIP", "RULES", "cross_entropy", "cross_entropy_mean", "dense", "dense_backward",
            "dense_forward", "describe", "get_backend", "leaky_relu", "log_softmax", "mse", "relu", "set_backend",
            "sigmoid", "softmax", "softmax_cross_entropy", "tanh"}
_COMMON = {"derivative", "formula", "forward", "jacobian", "kind", "name", "reference", "thresholds", "vjp"}
RULE_ATTRIBUTES = {
    "elementwise": _COMMON | {"reference_jacobian", "reference_vjp", "vjp_threshold"},
    "normalizer": _COMMON | {"reference_jacobian", "reference_vjp"},
    "loss": _COMMON | {"gradient", "value_and_grad"},
    "layer": _COMMON | {"reference_vjp"},
}


def call(rule, method, sample, **kw):
    """``rule.method`` on a sample: ``vjp`` takes ``vjp_args`` and the cotangent."""
    args = sample.vjp_args + (sample.cotangent,) if method == "vjp" else sample.args
    return getattr(rule, method)(*args, **kw)


def as_arrays(result):
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


# ---------------------------------------------------------------- names and signatures
def test_public_names_are_a_superset_of_the_old_ones():
    assert NN_NAMES <= set(dir(nn))
    assert NN_NAMES <= set(nn.__all__)
    assert list(nn.RULES) == ["sigmoid", "tanh", "relu", "leaky_relu", "softmax", "log_softmax", "cross_entropy",
                              "cross_entropy_mean", "mse", "softmax_cross_entropy", "dense"]
    assert nn.CLIP == 1e-10 and nn.BACKENDS == ("auto", "numba", "numpy")
    assert nn.dense_forward is nn.dense.forward and nn.dense_backward is nn.dense.vjp


@pytest.mark.parametrize("name", list(nn.RULES))
def test_rules_keep_their_attributes(name):
    rule = nn.RULES[name]
    missing = RULE_ATTRIBUTES[rule.kind] - set(dir(rule))
    assert not missing
    assert rule.name == name and isinstance(rule.formula, str) and rule.thresholds
    assert repr(rule).startswith(f"<fastjac.nn rule {name!r}")
    if name == "leaky_relu":
        assert rule.alpha == 0.01


@pytest.mark.parametrize("name", list(nn.RULES))
def test_every_method_takes_axis_out_backend(name):
    rule = nn.RULES[name]
    for method in ("forward", "jacobian", "vjp"):
        params = inspect.signature(getattr(rule, method)).parameters
        for kw in ("axis", "out", "backend"):
            assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, (method, kw)
        assert params["axis"].default == 0 and params["out"].default is None and params["backend"].default is None


@pytest.mark.parametrize("backend", BACKENDS + [None])
@pytest.mark.parametrize("name", list(nn.RULES))
def test_one_call_shape_for_every_op(name, backend):
    """The same three calls work for every op: no per-kind keyword juggling."""
    rule = nn.RULES[name]
    sample = rule.sample((5, 4))
    results = [call(rule, m, sample, axis=0, out=None, backend=backend) for m in ("forward", "jacobian", "vjp")]
    reference = [call(rule, m, sample, backend="numpy") for m in ("forward", "jacobian", "vjp")]
    for got, want in zip(results, reference):
        for g, w in zip(as_arrays(got), as_arrays(want)):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- empty batches
EMPTY_SHAPES = [(0,), (3, 0), (0, 4), (0, 0)]


def _empty_sample(rule, shape):
    sample = rule.sample((3, 2))
    if rule.kind == "layer":  # W (k, d), X (d, m), b (k, 1): empty m, or d = 0 features
        d, m = shape if len(shape) == 2 else (shape[0], 1)
        W, X, b = np.ones((2, d)), np.ones((d, m)), np.ones((2, 1))
        return type(sample)((W, X, b), np.ones((2, m)), vjp_args=(W, X))
    return type(sample)(tuple(np.zeros(shape) for _ in sample.args),
                        np.zeros(shape) if rule.kind != "loss" else 1.0)


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(nn.RULES))
def test_zero_size_input_agrees_on_every_backend(name, shape):
    """No backend raises where another returns: every one gives the same empty result."""
    rule = nn.RULES[name]
    sample = _empty_sample(rule, shape)
    for method in ("forward", "jacobian", "vjp"):
        results = {be: call(rule, method, sample, backend=be) for be in BACKENDS}
        first = as_arrays(results["numpy"])
        for be, res in results.items():
            got = as_arrays(res)
            assert [g.shape for g in got] == [f.shape for f in first], (method, be)
            for g, f in zip(got, first):  # the same empty arrays, or the same value (nan counts as equal)
                np.testing.assert_array_equal(g, f)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_vjp_on_an_empty_batch(backend):
    """Issue 13, item 5: numpy raised on zero features, Numba returned an empty array."""
    for shape, J_shape in [((0, 3), (3, 0, 0)), ((4, 0), (0, 4, 4)), ((0,), (0, 0))]:
        z = np.zeros(shape)
        assert nn.softmax.vjp(z, z, backend=backend).shape == shape
        assert nn.log_softmax.vjp(z, z, backend=backend).shape == shape
        assert nn.softmax.forward(z, backend=backend).shape == shape
        assert nn.softmax.jacobian(z, backend=backend).shape == J_shape
        assert nn.sigmoid.jacobian(z, dense=True, backend=backend).shape == J_shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_losses_over_nothing(backend):
    """A mean over no samples is nan (no warning); a sum over nothing is 0."""
    no_samples, no_classes = np.zeros((3, 0)), np.zeros((0, 3))
    for name in ("cross_entropy_mean", "softmax_cross_entropy", "mse"):
        value, grad = nn.RULES[name].value_and_grad(no_samples, no_samples, backend=backend)
        assert math.isnan(value) and grad.shape == (3, 0)
    assert nn.cross_entropy.forward(no_samples, no_samples, backend=backend) == 0.0
    assert nn.cross_entropy_mean.forward(no_classes, no_classes, backend=backend) == 0.0
    assert math.isnan(nn.mse.forward(no_classes, no_classes, backend=backend))


# ---------------------------------------------------------------- errors
def test_bad_inputs_raise_named_errors():
    with pytest.raises(TypeError, match=r"`z` must be a real floating array; got dtype <U1\."):
        nn.softmax.forward(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="`z` must be a real floating array"):
        nn.sigmoid.vjp(np.array([1 + 2j]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"`g` must have the shape of `z` \(3,\); got shape \(4,\)"):
        nn.softmax.vjp(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"`g` must have the shape of `z` \(3,\); got shape \(4,\)"):
        nn.relu.vjp(np.ones(3), np.ones(4))  # arrays of the fast path's kind, wrong shape
    with pytest.raises(ValueError, match="`axis` must be in"):
        nn.softmax.forward(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="`axis` must be in"):
        nn.tanh.vjp(np.ones((2, 3)), np.ones((2, 3)), axis=2)  # meaningless for tanh, but still checked
    with pytest.raises(TypeError, match="`axis` must be an int"):
        nn.sigmoid.forward(np.ones(3), axis=0.0)
    with pytest.raises(ValueError, match="`z` must have at least 1 dimension"):
        nn.softmax.forward(np.float64(1.0))
    with pytest.raises(ValueError, match="`out` must have shape"):
        nn.softmax.forward(np.ones(3), out=np.empty(4))
    with pytest.raises(ValueError, match="`out` must not share memory"):
        z = np.ones(3)
        nn.sigmoid.vjp(z, np.ones(3), out=z)
    with pytest.raises(ValueError, match="`out` must be writeable"):
        out = np.empty(3)
        out.setflags(write=False)
        nn.tanh.forward(np.ones(3), out=out)
    with pytest.raises(TypeError, match="`out` must be None: a loss value is a Python float"):
        nn.mse.forward(np.ones(3), np.ones(3), out=np.empty(3))
    with pytest.raises(ValueError, match="`X` must have 3 rows"):
        nn.dense_forward(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="`X` must have 3 columns"):
        nn.dense_forward(np.ones((2, 3)), np.ones((5, 4)), axis=1)
    with pytest.raises(ValueError, match="`y` must have the shape of `a`"):
        nn.mse.forward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="`b` must have shape"):
        nn.dense_forward(np.ones((2, 3)), np.ones((3, 5)), np.ones(3))
    with pytest.raises(TypeError, match=r"`out` must be a tuple \(dW, dX, db\)"):
        nn.dense_backward(np.ones((2, 3)), np.ones((3, 5)), np.ones((2, 5)), out=np.empty((2, 3)))
    with pytest.raises(ValueError, match="`g` must be a scalar"):
        nn.mse.vjp(np.ones(3), np.ones(3), np.ones(3))


@pytest.mark.parametrize("call_, message", [
    (lambda: nn.dense.vjp(np.ones((10, 10)), np.ones((3, 5)), np.ones((10, 5))), r"`X` must have 10 rows"),
    (lambda: nn.dense.vjp(np.ones((10, 10)), np.ones((10, 5)), np.ones((9, 5))), r"`dZ` must have shape \(10, 5\)"),
    (lambda: nn.dense.vjp(np.ones((10, 10)), np.ones((10, 5)), np.ones((10, 4))), r"`dZ` must have shape \(10, 5\)"),
    (lambda: nn.dense.forward(np.ones((10, 10)), np.ones((10, 5)), np.ones((1, 1))), r"`b` must have shape"),
    (lambda: nn.dense.forward(np.ones((10, 10)), np.ones((9, 5))), r"`X` must have 10 rows"),
    (lambda: nn.softmax.vjp(np.ones((3, 2)), np.ones((2, 3))), r"`g` must have the shape of `z` \(3, 2\)"),
    (lambda: nn.mse.value_and_grad(np.ones((3, 2)), np.ones((2, 3))), r"`y` must have the shape of `a` \(2, 3\)"),
    (lambda: nn.softmax_cross_entropy.jacobian(np.ones((3, 2)), np.ones((2, 3))), r"`y` must have the shape of `a`"),
], ids=["dense-X", "dense-dZ-rows", "dense-dZ-cols", "dense-b", "dense-forward-X", "softmax-g", "mse-y", "sce-y"])
def test_fast_paths_still_name_bad_shapes(call_, message):
    """Float ndarrays take the fast paths; a shape mismatch there still gets the named error."""
    with pytest.raises(ValueError, match=message):
        call_()


@pytest.mark.parametrize("name", list(nn.RULES))
def test_unknown_backend_is_named(name):
    rule = nn.RULES[name]
    with pytest.raises(ValueError, match=r"`backend` must be one of 'auto', 'numba', 'numpy'"):
        call(rule, "forward", rule.sample((3, 2)), backend="cuda")
    with pytest.raises(ValueError, match="`backend` must be one of"):
        nn.set_backend("cuda")


# ---------------------------------------------------------------- out, dtypes, mutation
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [n for n in nn.RULES if n != "dense"])
def test_out_receives_the_result(name, backend):
    rule = nn.RULES[name]
    sample = rule.sample((4, 3))
    for method in ("jacobian", "vjp") + (() if rule.kind == "loss" else ("forward",)):
        want = call(rule, method, sample, backend=backend)
        for order in ("C", "F"):  # a C-contiguous out is written directly, another one through a copy
            out = np.empty(want.shape, want.dtype, order=order)
            got = call(rule, method, sample, backend=backend, out=out)
            assert got is out
            np.testing.assert_array_equal(out, want)


def test_dense_out_tuple():
    (W, X, b), dZ = nn.dense.sample((4, 3)).args, nn.dense.sample((4, 3)).cotangent
    out = (np.empty(W.shape), np.empty(X.shape), np.empty((4, 1)))
    got = nn.dense_backward(W, X, dZ, out=out)
    assert all(g is o for g, o in zip(got, out))
    for g, w in zip(got, nn.dense_backward(W, X, dZ)):
        np.testing.assert_allclose(g, w, rtol=1e-14)
    Z = np.empty((4, 3))
    assert nn.dense_forward(W, X, b, out=Z) is Z


def test_ints_and_float16_are_promoted():
    assert nn.sigmoid.forward(np.array([0, 1])).dtype == np.float64
    assert nn.softmax.forward(np.array([1, 2], np.float16)).dtype == np.float32
    assert nn.relu.vjp(np.array([1, -1]), np.array([1, 1])).dtype == np.float64
    assert isinstance(nn.tanh.forward(0.5), np.floating)  # a scalar in, a scalar out (like numpy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_not_mutated_readonly_ok(backend):
    for name, rule in nn.RULES.items():
        sample = rule.sample((5, 4))
        arrays = [a for a in sample.args + (sample.cotangent,) if isinstance(a, np.ndarray)]
        for a in arrays:
            a.setflags(write=False)
        copies = [a.copy() for a in arrays]
        for method in ("forward", "jacobian", "vjp"):
            call(rule, method, sample, backend=backend)
        for a, c in zip(arrays, copies):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_layouts_give_the_same_numbers(backend):
    """Transposed, strided and N-D inputs (kernels see them through ravel or a copy)."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((6, 8))
    g = rng.standard_normal((6, 8))
    for name in ARRAY_OPS:
        rule = nn.RULES[name]
        want = rule.vjp(np.ascontiguousarray(z.T), np.ascontiguousarray(g.T), backend=backend)
        np.testing.assert_allclose(rule.vjp(z.T, g.T, backend=backend), want, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(rule.vjp(z[:, ::2], g[:, ::2], backend=backend),
                                   rule.vjp(z[:, ::2].copy(), g[:, ::2].copy(), backend=backend), rtol=1e-14)
    z3, g3 = z.reshape(3, 2, 8), g.reshape(3, 2, 8)
    for axis in (0, 1, -1):
        for name in ("softmax", "log_softmax"):
            rule = nn.RULES[name]
            J = rule.jacobian(z3, axis=axis, backend=backend)
            n = z3.shape[axis]
            assert J.shape == tuple(s for i, s in enumerate(z3.shape) if i != axis % 3) + (n, n)
            np.testing.assert_allclose(rule.forward(z3, axis=axis, backend=backend), rule.reference(z3, axis=axis),
                                       rtol=0, atol=1e-14)
            gm = np.moveaxis(g3, axis, -1)
            expect = np.moveaxis(np.einsum("...i,...ij->...j", gm, J), -1, axis)
            np.testing.assert_allclose(rule.vjp(z3, g3, axis=axis, backend=backend), expect, rtol=0, atol=1e-13)
        # softmax cross-entropy along another class axis = the same loss on the transposed arrays
        Y = np.eye(6)[:, rng.integers(0, 6, 8)]
        v, d = nn.softmax_cross_entropy.value_and_grad(Y.T, z.T, axis=1, backend=backend)
        v0, d0 = nn.softmax_cross_entropy.value_and_grad(Y, z, backend=backend)
        assert v == pytest.approx(v0, rel=1e-14)
        np.testing.assert_allclose(d, d0.T, rtol=1e-14, atol=1e-16)


# ---------------------------------------------------------------- dispatch
@pytest.mark.parametrize("name", ELEMENTWISE + LOSSES)
def test_fast_path_gives_the_validated_result(name):
    """Plain float ndarrays skip validation; lists and explicit keywords do not. Same bits."""
    rule = nn.RULES[name]
    for shape in [(3, 2), (40, 30), (5,)]:
        sample = rule.sample(shape)
        listed = type(sample)(tuple(a.tolist() for a in sample.args),
                              sample.cotangent.tolist() if isinstance(sample.cotangent, np.ndarray)
                              else sample.cotangent)
        for method in ("forward", "jacobian", "vjp"):
            fast = as_arrays(call(rule, method, sample))
            slow = as_arrays(call(rule, method, listed, backend="auto", axis=-1 if len(shape) == 1 else 0))
            for f, s in zip(fast, slow):
                np.testing.assert_array_equal(f, s)


def test_fast_path_is_taken_and_honours_set_backend(monkeypatch):
    """With the default backend the fast table runs; after set_backend('numpy') it must not."""
    def boom(*args):
        raise AssertionError("the fast table ran")

    z = np.linspace(-1, 1, 8)
    nn.sigmoid.vjp(z, z)  # fills the table for float64
    monkeypatch.setitem(nn.sigmoid.routes["vjp"].fast, z.dtype, (math.inf, boom, boom))
    with pytest.raises(AssertionError, match="the fast table ran"):
        nn.sigmoid.vjp(z, z)
    previous = nn.set_backend("numpy")
    try:
        np.testing.assert_array_equal(nn.sigmoid.vjp(z, z), nn.sigmoid.vjp(z, z, backend="numpy"))
    finally:
        nn.set_backend(previous)
    assert nn.get_backend() == previous


def test_set_backend_roundtrip():
    prev = nn.set_backend("numpy")
    try:
        assert nn.get_backend() == "numpy"
        z = np.random.default_rng(12).standard_normal((4, 3))
        np.testing.assert_allclose(nn.softmax.jacobian(z), nn.softmax.jacobian(z, backend="numba"), atol=1e-15)
    finally:
        assert nn.set_backend(prev) == "numpy"
    assert nn.get_backend() == prev


def test_describe_is_the_table():
    text = nn.describe()
    lines = text.splitlines()
    assert len(lines) == 2 + len(nn.RULES)
    for rule, line in zip(nn.RULES.values(), lines[2:]):
        assert line == rule.describe_row()
        for method, threshold in rule.thresholds.items():
            assert f"{method}: {threshold.rule}" in line


GROUP = re.compile(r"nn\|([\w{}]+)\|([\w{}]+)(?:\.float32)?\|B=(?:\{B\}|\*)\|n=(?:\{n\}|\*)")


def test_quoted_benchmark_groups_are_the_ones_used():
    """Docstrings and crossover sources name groups that bench_nn.py really makes."""
    bench = (ROOT / "benchmarks" / "bench_nn.py").read_text()
    assert 'benchmark.group = f"nn|{name}|{what}|B={B}|n={n}"' in bench
    modules = {inspect.getmodule(type(rule)) for rule in nn.RULES.values()} | {inspect.getmodule(nn.describe)}
    texts = [bench] + [inspect.getsource(m) for m in modules]
    texts += [c.source for rule in nn.RULES.values() for c in rule.thresholds.values() if hasattr(c, "source")]
    quoted = {(m.group(1), m.group(2)) for text in texts for m in GROUP.finditer(text)}
    assert len(quoted) > 10
    for op, method in quoted:
        if op == "{op}" or op == "{name}":
            assert method in ("{method}", "{what}"), (op, method)
        else:
            assert op in nn.RULES and (method == "{method}" or method in nn.RULES[op].plain), (op, method)


# ---------------------------------------------------------------- threads
def test_thread_safety_executor():
    r = np.random.default_rng(13)
    shapes = [(5, 3), (64, 32), (10, 1), (33, 7), (600,)] * 4
    cases = [(r.standard_normal(shape), r.standard_normal(shape)) for shape in shapes]

    def work(case):
        z, g = case
        return (nn.softmax.jacobian(z, backend="numba"), nn.softmax.vjp(z, g), nn.sigmoid.vjp(z, g),
                nn.relu.vjp(z, g, backend="numba"), nn.softmax_cross_entropy.value_and_grad(np.abs(g), z)[1])

    serial = [work(c) for c in cases]
    with ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(3):
            for s, t in zip(serial, ex.map(work, cases)):
                for a, b in zip(s, t):
                    np.testing.assert_array_equal(a, b)
