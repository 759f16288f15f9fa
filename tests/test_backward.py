"""check_backward: a whole layer's forward/backward pair in one call.

Every input's gradient is checked in one stream of evaluations, and a wrong
backward names the wrong input (and, where the error is local, the entry).
The one-call check costs no more evaluations than the per-input
``check_vjp`` calls it replaces (speed: ``benchmarks/bench_check.py``).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastjac

from layers import dense_relu_backward, dense_relu_forward, layer_cases

CASES = layer_cases(np.random.default_rng(0))


@pytest.mark.parametrize("name", sorted(CASES))
def test_correct_layers_pass_and_their_bugs_fail_naming_the_input(name):
    forward, backward, bugs, inputs, names = CASES[name]
    good = fastjac.check_backward(forward, backward, *inputs, names=names)
    assert good.passed, f"{name}:\n{good}"
    for bug, wrong in bugs.items():
        r = fastjac.check_backward(forward, wrong, *inputs, names=names)
        assert r.verdict == "fail", f"{name} / {bug}:\n{r}"
        # The report names a wrong input: its key appears in the headline or a diagnosis.
        text = r.headline + " ".join(str(d) for d in r.diagnoses)
        assert any(f"['{n}']" in text for n in names), f"{name} / {bug}:\n{r}"


def test_the_wrong_input_is_the_one_named():
    forward, backward, bugs, inputs, names = CASES["dense+relu"]
    r = fastjac.check_backward(forward, bugs["db mean"], *inputs, names=names)
    kinds = {d.kind: d for d in r.diagnoses}
    assert "x['b'] is wrong" in kinds["input"].message
    # db averaged over the batch of 8 instead of summed: the factor, named after the batch axis.
    assert "1/8" in kinds["factor"].message and "axis 0" in kinds["factor"].message


def test_one_call_costs_no_more_than_the_per_input_checks():
    rng = np.random.default_rng(1)
    X, W, b = rng.normal(size=(64, 512)), rng.normal(size=(512, 512)) / 23, rng.normal(size=512)
    out, cache = dense_relu_forward(X, W, b)
    one = fastjac.check_backward(dense_relu_forward, dense_relu_backward, X, W, b)
    assert one.passed
    grads = lambda u: dense_relu_backward(u, cache)  # noqa: E731
    per_input = [
        fastjac.check_vjp(lambda X: dense_relu_forward(X, W, b)[0], X, lambda u: grads(u)[0]),
        fastjac.check_vjp(lambda W: dense_relu_forward(X, W, b)[0], W, lambda u: grads(u)[1]),
        fastjac.check_vjp(lambda b: dense_relu_forward(X, W, b)[0], b, lambda u: grads(u)[2]),
    ]
    assert all(r.passed for r in per_input)
    assert one.nfev <= sum(r.nfev for r in per_input)


def test_forward_without_cache_and_backward_of_one_argument():
    def forward(x):
        return np.tanh(x)

    def backward(dout):  # no cache: called with dout only
        return dout * (1 - np.tanh(x) ** 2)

    x = np.linspace(-1, 1, 7)
    assert fastjac.check_backward(forward, backward, x).passed
    assert not fastjac.check_backward(forward, lambda d: d, x).passed


def test_bad_calls_are_named():
    f, b = dense_relu_forward, dense_relu_backward
    X, W, bias = CASES["dense+relu"][3]
    with pytest.raises(ValueError, match="`inputs` must hold at least one array"):
        fastjac.check_backward(f, b)
    with pytest.raises(ValueError, match="`names` must give one distinct name per input"):
        fastjac.check_backward(f, b, X, W, bias, names=("X", "W"))
    with pytest.raises(ValueError, match="`backward` must return one gradient per input"):
        fastjac.check_backward(f, lambda d, c: (d, d), X, W, bias)


class Dense:
    """A numpy-ml style layer object: parameters and gradients in dicts,
    caches kept on ``self``, gradients accumulated with ``+=``."""

    def __init__(self, W, b):
        self.parameters = {"W": W, "b": b}
        self.gradients = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.X = []

    def forward(self, X):
        self.X.append(X)  # grows on every call, as numpy-ml's derived variables do
        return X @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dout):
        X = self.X[-1]
        self.gradients["W"] += X.T @ dout
        self.gradients["b"] += dout.sum(axis=0)
        return dout @ self.parameters["W"].T


def test_the_layer_object_recipe_of_the_docs():
    """docs/checks.md's recipe: wrap the object's parameters as inputs, reset the
    accumulated gradients before each backward, and read them after."""
    rng = np.random.default_rng(2)
    layer = Dense(rng.normal(size=(4, 3)), rng.normal(size=3))
    X = rng.normal(size=(5, 4))

    def forward(X, W, b):
        layer.parameters.update(W=W, b=b)
        layer.X.clear()  # no cache growing over hundreds of perturbed calls
        return layer.forward(X)

    def backward(dout):
        for g in layer.gradients.values():
            g[...] = 0  # += accumulation: start from zero for each cotangent
        dX = layer.backward(dout)
        return dX, layer.gradients["W"].copy(), layer.gradients["b"].copy()

    r = fastjac.check_backward(forward, backward, X, layer.parameters["W"], layer.parameters["b"],
                               names=("X", "W", "b"))
    assert r.passed
