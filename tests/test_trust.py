"""Verdicts that rest on evidence: kinks at scale, ill-conditioning, jumps, curvature.

Each case reproduces a way a derivative checker can cry wolf on correct code
(or wave a wrong derivative through), measured from the outside on public
numpy code: correct kinked layers at scale must pass (``pass``, ``noise`` or
``non-differentiable``) and wrong ones fail; estimates that disagree with
each other are ``inconclusive``, not ``fail``; a jump within the step is
reported as one; a smooth, sharply curved function is never called
non-differentiable, and an error next to a kink is not hidden by it.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastjac

PASSING = ("pass", "noise", "non-differentiable", "discontinuous")
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# Activation layers as a public numpy library writes them: (forward, derivative).
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.3 * z), lambda z: np.where(z > 0, 1.0, 0.3)),
    "elu": (lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1),
            lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))),
    "selu": (lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * (np.exp(np.minimum(z, 0)) - 1)),
             lambda z: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0)))),
    "hard_sigmoid": (lambda z: np.clip(0.2 * z + 0.5, 0, 1),
                     lambda z: np.where((z > -2.5) & (z < 2.5), 0.2, 0.0)),
}
# The bugs such layers ship with: the negative side's slope lost, a factor.
BUGS = {
    "relu": lambda z: 0.5 * (z > 0),
    "leaky_relu": lambda z: np.where(z > 0, 1.0, 0.0),
    "elu": lambda z: np.where(z > 0, 1.0, 1.0),
    "selu": lambda z: np.where(z > 0, SELU_SCALE, SELU_ALPHA * np.exp(np.minimum(z, 0))),
    "hard_sigmoid": lambda z: np.where((z > -2.5) & (z < 2.5), 0.5, 0.0),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_kinked_layers_at_scale_pass_and_their_bugs_fail(name, dtype):
    f, df = ACTIVATIONS[name]
    for seed in range(2):
        z = (2 * np.random.default_rng(seed).standard_normal((256, 512))).astype(dtype)
        r = fastjac.check_vjp(f, z, lambda u: u * df(z))
        assert r.verdict in PASSING, f"{name} seed={seed}:\n{r}"
        bug = fastjac.check_vjp(f, z, lambda u: u * BUGS[name](z).astype(dtype))
        assert bug.verdict == "fail", f"{name} seed={seed}:\n{bug}"


def test_fully_connected_relu_layer_at_scale():
    rng = np.random.default_rng(0)
    X = 2 * rng.standard_normal((64, 512))
    W = rng.standard_normal((512, 512)) / np.sqrt(512)
    b = 0.1 * rng.standard_normal(512)
    G = rng.standard_normal((64, 512))          # upstream gradient
    mask = (X @ W + b) > 0

    def loss(W):
        return np.sum(G * np.maximum(X @ W + b, 0), axis=(-2, -1))

    good = X.T @ (G * mask)
    assert fastjac.check_grad(loss, W, good).verdict in PASSING
    assert fastjac.check_grad(loss, W, X.T @ G).verdict == "fail"     # mask forgotten
    layer = lambda X: np.maximum(X @ W + b, 0)  # noqa: E731
    assert fastjac.check_vjp(layer, X, lambda u: (u * mask) @ W.T).verdict in PASSING
    assert fastjac.check_vjp(layer, X, lambda u: u @ W.T).verdict == "fail"


class Recording:
    """Records how far each coordinate of x moved, relative to max(1, |x_j|)."""

    def __init__(self, f, x0):
        self.f, self.x0 = f, np.asarray(x0, float).reshape(-1)
        self.moved = np.zeros_like(self.x0)

    def __call__(self, x):
        flat = np.asarray(x, float).reshape(-1, self.x0.size) if np.ndim(x) > 1 else \
            np.asarray(x, float).reshape(1, -1)
        d = np.max(np.abs(flat - self.x0), axis=0) / np.maximum(1.0, np.abs(self.x0))
        self.moved = np.maximum(self.moved, d)
        return self.f(x)


def test_directional_steps_scale_per_coordinate_and_honour_step():
    # Coordinates of very different size: each moves by its own step, not by one
    # scaled to the largest |x| (which would cross more kinks in the small ones).
    x = np.concatenate([np.full(50, 1e-3), np.full(50, 1e3)])
    rec = Recording(np.tanh, x)
    d = 1 - np.tanh(x) ** 2
    assert fastjac.check_vjp(rec, x, lambda u: u * d).passed
    rel = np.finfo(float).eps ** (1 / 3)
    assert rec.moved[:50].max() <= 4.5 * rel    # the second look reaches 4 spacings of h/4
    rec = Recording(np.tanh, x)
    r = fastjac.check_jvp(rec, x, lambda v: d * v, step=1e-7)
    assert r.passed and rec.moved[:50].max() <= 1.01e-7 / 1e-0
    assert np.all(np.asarray(r.step)[len(r.step) - 4:] > 0)


def test_estimates_that_disagree_are_inconclusive_not_a_bug():
    # pinv of a nearly rank-deficient matrix in float32: at the float32 step the
    # smallest singular value crosses zero and the estimates blow up.
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 2)) @ rng.normal(size=(2, 3)) + 1e-4 * rng.normal(size=(4, 3))
    J = fastjac.jacobian(np.linalg.pinv, A, order=4)   # float64: a fair expected value
    r = fastjac.check_jacobian(np.linalg.pinv, A.astype(np.float32), J.astype(np.float32))
    assert r.verdict == "inconclusive" and not r.passed
    assert any(d.kind == "ill-conditioned" for d in r.diagnoses)
    assert any("float64" in n for n in r.notes)


def test_singular_values_near_a_crossing_never_fail_when_right():
    rng = np.random.default_rng(1)
    fs = lambda A: np.linalg.svd(A, compute_uv=False)  # noqa: E731
    for _ in range(3):
        A = rng.normal(size=(4, 2)) @ rng.normal(size=(2, 3)) + 1e-4 * rng.normal(size=(4, 3))
        U, s, Vt = np.linalg.svd(A)
        E = np.einsum("ik,kj->kij", U[:, :3], Vt)        # d s_k / dA = u_k v_k^T
        assert fastjac.check_jacobian(fs, A, E).verdict in PASSING
        assert fastjac.check_jacobian(fs, A.astype(np.float32),
                                      E.astype(np.float32)).verdict in PASSING + ("inconclusive",)
        assert not fastjac.check_jacobian(fs, A.astype(np.float32), (1.1 * E).astype(np.float32)).passed


def test_a_jump_within_the_step_is_reported_with_its_evidence():
    f = lambda x: x + 0.5 * (x > 0.005)  # noqa: E731
    at_x = fastjac.check_jacobian(f, np.array([0.0]), np.array([[1.0]]), step=0.04)
    assert at_x.passed and any("jumps" in n for n in at_x.notes)
    wrong = fastjac.check_jacobian(f, np.array([0.0]), np.array([[2.0]]), step=0.04)
    assert wrong.verdict == "fail"
    jump_at_x = lambda x: x + 0.5 * (x > 0.0)  # noqa: E731
    r = fastjac.check_jacobian(jump_at_x, np.array([1e-9]), np.array([[1.0]]), step=0.04)
    assert r.verdict == "discontinuous" and r.passed
    assert r.diagnoses[0].kind == "discontinuity" and "jumps" in r.diagnoses[0].evidence


def _second_derivative_of_smooth(x):
    """H(x) = d2/dx2 of exp(sin(3x)): smooth, with sharp curvature."""
    s, c = np.sin(3 * x), np.cos(3 * x)
    return 9 * np.exp(s) * (c ** 2 - s)


def _dH(x):
    s, c = np.sin(3 * x), np.cos(3 * x)
    return 27 * np.exp(s) * (c ** 3 - 3 * s * c - c)


def test_smooth_sharp_curvature_is_never_called_a_kink_and_one_percent_is_caught():
    caught, alarms, kinks = 0, 0, 0
    for seed in range(40):
        x = np.random.default_rng(seed).uniform(-2, 2, 6)
        g = np.cos(_second_derivative_of_smooth(x)) * _dH(x)
        f = lambda v: np.sum(np.sin(_second_derivative_of_smooth(v)))  # noqa: E731
        x32 = x.astype(np.float32)
        good = fastjac.check_grad(f, x32, g.astype(np.float32), mode="full")
        bad = fastjac.check_grad(f, x32, (1.01 * g).astype(np.float32), mode="full")
        alarms += good.verdict == "fail"
        kinks += good.verdict == "non-differentiable" or bad.verdict == "non-differentiable"
        caught += not bad.passed
    assert alarms == 0 and kinks == 0
    assert caught >= 38  # 1% is ten float32 tolerances; the second look sees it


def test_an_error_next_to_a_kink_is_not_hidden():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 11)).astype(np.float32)
    flat = A.reshape(-1)
    order = np.argsort(flat)
    flat[order[-2]] = flat[order[-1]] - 0.034       # top two values 0.034 apart
    E = np.zeros_like(A)
    E.reshape(-1)[order[-1]] = 1.0
    for step in (None, 0.078):                        # 0.078: the kink inside the step
        assert fastjac.check_grad(np.max, A, E, mode="full", step=step).passed
        assert fastjac.check_grad(np.max, A, 1.01 * E, mode="full", step=step).verdict == "fail"


def test_tiny_derivatives_are_compared_at_their_own_scale():
    import scipy.special as sp

    x = np.array([2.0])
    d = (sp.iv(19, x) + sp.iv(21, x)) / 2          # ~4.3e-18
    f = lambda x: sp.iv(20, x)  # noqa: E731
    assert fastjac.check_jacobian(f, x, np.diag(d)).passed
    for wrong in (2 * d, -d, 0 * d, 1000 * d):
        r = fastjac.check_jacobian(f, x, np.diag(wrong))
        assert r.verdict == "fail", r
    assert any("small" in n for n in fastjac.check_jacobian(f, x, np.diag(d)).notes)


# ---------------------------------------------------------------------------
# check_vjp / check_jvp: power in float32, and containers
# ---------------------------------------------------------------------------
def _vjp_cases(rng, dt):
    """(f, x, J) for layers, small and large (more outputs than ROWS_MAX)."""
    from test_mutations import CASES, build  # noqa: F401

    out = []
    for name in ("sigmoid", "softmax", "log_softmax", "layer_norm", "matmul", "tanh"):
        c = build(name, int(rng.integers(1 << 16)), dt)
        out.append((name, c["f"], c["x"], np.asarray(c["E"], np.float64), c["mutants"]))
    W = rng.normal(size=(100, 20))
    x = rng.normal(size=20)
    t = np.tanh(W @ x)
    J = (1 - t ** 2)[:, None] * W
    out.append(("dense-100", lambda v: np.tanh(W.astype(v.dtype) @ v), x.astype(dt), J, {}))
    z = rng.normal(size=200)
    out.append(("tanh-200", np.tanh, z.astype(dt), np.diag(1 - np.tanh(z) ** 2), {}))
    return out


def _generic(J):
    one = J.copy()
    flat = one.reshape(-1)
    flat[np.argmax(np.abs(flat))] *= 1.1
    row = J.copy()
    row.reshape(J.shape[0], -1)[0] = 0
    return {"factor 2": 2 * J, "sign flip": -J, "one entry 10%": one, "row zeroed": row}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_check_vjp_and_jvp_power(dtype):
    rng = np.random.default_rng(7)
    caught = total = alarms = 0
    for _ in range(3):
        for name, f, x, J, mutants in _vjp_cases(rng, dtype):
            m = int(np.prod(J.shape[:J.ndim - x.ndim]))
            J2 = J.reshape(m, x.size)
            out_shape = J.shape[:J.ndim - x.ndim]

            def vjp_of(M):
                return lambda u: (np.ravel(u) @ M.reshape(m, -1)).reshape(x.shape).astype(dtype)

            def jvp_of(M):
                return lambda v: (M.reshape(m, -1) @ np.ravel(v)).reshape(out_shape).astype(dtype)

            alarms += not fastjac.check_vjp(f, x, vjp_of(J2)).passed
            alarms += not fastjac.check_jvp(f, x, jvp_of(J2)).passed
            for M in list(_generic(J2).values()) + [np.asarray(v, float).reshape(m, -1)
                                                     for v in mutants.values()
                                                     if np.size(v) == J2.size]:
                if np.allclose(M, J2, rtol=1e-9, atol=0):
                    continue
                total += 2
                caught += not fastjac.check_vjp(f, x, vjp_of(M)).passed
                caught += not fastjac.check_jvp(f, x, jvp_of(M)).passed
    assert alarms == 0
    assert caught >= 0.98 * total, (caught, total)


def test_check_vjp_and_jvp_take_containers_and_name_the_part():
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    X = rng.normal(size=4)

    def f(W, b):
        return np.tanh(W @ X + b)

    t = 1 - np.tanh(W @ X + b) ** 2
    good = lambda u: (np.outer(u * t, X), u * t)  # noqa: E731
    assert fastjac.check_vjp(f, (W, b), good).passed
    r = fastjac.check_vjp(f, (W, b), lambda u: (np.outer(u * t, X), 2 * u * t))
    assert not r.passed and r.worst[0].input_index[0] == "[1]"
    d = {"W": W, "b": b}
    r = fastjac.check_jvp(lambda W, b: f(W, b), d, lambda v: t * (v["W"] @ X + 0.5 * v["b"]))
    assert not r.passed and r.worst[0].input_index[0] == "['b']"
    assert fastjac.check_jvp(lambda W, b: f(W, b), d, lambda v: t * (v["W"] @ X + v["b"])).passed
