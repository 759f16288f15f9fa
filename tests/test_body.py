"""A body of numpy and scipy functions with exact derivatives: no false alarms, no misses.

Each entry is ``(f, derivative, point sampler)``; the derivative is the exact
Jacobian, written from calculus, not from finite differences.  At random
points the correct derivative must pass (``pass``, ``noise``,
``non-differentiable`` or ``discontinuous``: never ``fail``) and the mutants
(a 1% scale in float64, 10% in float32, a sign flip, one entry off by 50%,
zero) must not pass.  ``python tests/test_body.py [seeds]`` prints the table.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.special as sp

import fastjac

DTYPES = (np.float64, np.float32)
CI_SEEDS = 6


def _diag(d):
    return lambda x: np.diag(np.asarray(d(x)).reshape(-1)).reshape(x.shape + x.shape)


def _uniform(lo, hi, n=5):
    return lambda rng: rng.uniform(lo, hi, n)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _matrix(n=3, shift=3.0):
    return lambda rng: rng.normal(size=(n, n)) + shift * np.eye(n)


def _inv_jac(A):
    Ai = np.linalg.inv(A)
    return -np.einsum("ik,lj->ijkl", Ai, Ai)


BODY = {
    # elementwise: diagonal Jacobians
    "sin": (np.sin, _diag(np.cos), _uniform(-3, 3)),
    "tanh": (np.tanh, _diag(lambda x: 1 - np.tanh(x) ** 2), _uniform(-3, 3)),
    "exp": (np.exp, _diag(np.exp), _uniform(-2, 2)),
    "log": (np.log, _diag(lambda x: 1 / x), _uniform(0.3, 3)),
    "sqrt": (np.sqrt, _diag(lambda x: 0.5 / np.sqrt(x)), _uniform(0.3, 3)),
    "arctan": (np.arctan, _diag(lambda x: 1 / (1 + x ** 2)), _uniform(-3, 3)),
    "log1p": (np.log1p, _diag(lambda x: 1 / (1 + x)), _uniform(-0.5, 3)),
    "expit": (sp.expit, _diag(lambda x: sp.expit(x) * (1 - sp.expit(x))), _uniform(-4, 4)),
    "erf": (sp.erf, _diag(lambda x: 2 / np.sqrt(np.pi) * np.exp(-x ** 2)), _uniform(-2, 2)),
    "gammaln": (sp.gammaln, _diag(sp.digamma), _uniform(0.5, 5)),
    "softplus": (lambda x: np.logaddexp(0, x), _diag(sp.expit), _uniform(-4, 4)),
    "cube": (lambda x: x ** 3, _diag(lambda x: 3 * x ** 2), _uniform(-2, 2)),
    "reciprocal": (lambda x: 1 / x, _diag(lambda x: -1 / x ** 2), _uniform(0.5, 3)),
    # kinks at points the sampler may land near
    "abs": (np.abs, _diag(np.sign), _uniform(-2, 2)),
    "relu": (lambda x: np.maximum(x, 0), _diag(lambda x: (x > 0) * 1.0), _uniform(-2, 2)),
    # vector functions
    "softmax": (_softmax, lambda z: np.diag(_softmax(z)) - np.outer(_softmax(z), _softmax(z)),
                _uniform(-2, 2)),
    "logsumexp": (lambda z: sp.logsumexp(z), lambda z: _softmax(z), _uniform(-2, 2)),
    "norm": (np.linalg.norm, lambda x: x / np.linalg.norm(x), _uniform(-2, 2)),
    "cumsum": (np.cumsum, lambda x: np.tril(np.ones((x.size, x.size))), _uniform(-2, 2)),
    "prod": (np.prod, lambda x: np.prod(x) / x, _uniform(0.5, 2)),
    "var": (np.var, lambda x: 2 * (x - x.mean()) / x.size, _uniform(-2, 2)),
    "max": (np.max, lambda x: (x == x.max()) * 1.0, _uniform(-2, 2)),
    "sort": (np.sort, lambda x: np.eye(x.size)[np.argsort(x)], _uniform(-2, 2)),
    # matrices
    "inv": (np.linalg.inv, _inv_jac, _matrix()),
    "det": (np.linalg.det, lambda A: np.linalg.det(A) * np.linalg.inv(A).T, _matrix()),
    "matmul_self": (lambda A: A @ A,
                    lambda A: (np.einsum("ik,lj->ijkl", np.eye(len(A)), A.T)
                               + np.einsum("ik,jl->ijkl", A, np.eye(len(A)))).transpose(0, 1, 2, 3),
                    _matrix(3, 0.0)),
    # tiny derivatives: iv(20, x) near 2 is ~4e-18
    "iv20": (lambda x: sp.iv(20, x), _diag(lambda x: (sp.iv(19, x) + sp.iv(21, x)) / 2),
             _uniform(1.5, 2.5, 3)),
}


def _matmul_self_jac(A):
    n = len(A)
    I = np.eye(n)
    # d(A A)_ij / dA_kl = delta_ik A_lj + A_ik delta_jl
    return np.einsum("ik,lj->ijkl", I, A) + np.einsum("ik,jl->ijkl", A, I)


BODY["matmul_self"] = (BODY["matmul_self"][0], _matmul_self_jac, BODY["matmul_self"][2])


def _one_entry(E):
    out = np.array(E, copy=True)
    flat = out.reshape(-1)
    flat[np.argmax(np.abs(flat))] *= 1.5
    return out


def mutants(dtype):
    scale = 1.01 if np.dtype(dtype) == np.float64 else 1.1
    return {f"x{scale}": lambda E: scale * E, "sign": lambda E: -E, "one entry": _one_entry,
            "zero": lambda E: 0 * E}


PASSING = ("pass", "noise", "non-differentiable", "discontinuous")


def case(name, seed, dtype):
    f, d, sample = BODY[name]
    x = sample(np.random.default_rng(seed))
    E = np.asarray(d(x), dtype=np.float64)
    return f, x.astype(dtype), E


def run(f, x, E, dtype):
    with np.errstate(all="ignore"):
        return fastjac.check_jacobian(f, x, E.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BODY))
def test_correct_derivatives_never_fail(name, dtype):
    for seed in range(CI_SEEDS):
        f, x, E = case(name, seed, dtype)
        r = run(f, x, E, dtype)
        assert r.verdict in PASSING, f"false alarm on {name} seed={seed}:\n{r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BODY))
def test_mutants_never_pass(name, dtype):
    for seed in range(CI_SEEDS // 2):
        f, x, E = case(name, seed, dtype)
        for mutant, fn in mutants(dtype).items():
            M = fn(E)
            if np.allclose(M, E, rtol=1e-12, atol=0):
                continue  # no change (an all-zero Jacobian scaled)
            r = run(f, x, M, dtype)
            assert not r.passed, f"missed {mutant!r} of {name} seed={seed}:\n{r}"


def table(seeds=30):
    """Outcomes over ``seeds`` points per function and dtype, as markdown."""
    lines = ["| dtype | correct: passed | correct: inconclusive | correct: fail | mutants caught |",
             "|---|---|---|---|---|"]
    for dtype in DTYPES:
        good = inc = bad = caught = total = 0
        for name in BODY:
            for seed in range(seeds):
                f, x, E = case(name, seed, dtype)
                v = run(f, x, E, dtype).verdict
                good += v in PASSING
                inc += v == "inconclusive"
                bad += v == "fail"
                for fn in mutants(dtype).values():
                    M = fn(E)
                    if np.allclose(M, E, rtol=1e-12, atol=0):
                        continue
                    total += 1
                    caught += not run(f, x, M, dtype).passed
        n = len(BODY) * seeds
        lines.append(f"| {np.dtype(dtype).name} | {good}/{n} | {inc}/{n} | {bad}/{n} | "
                     f"{caught}/{total} ({100 * caught / total:.1f}%) |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
