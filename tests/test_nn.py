"""Table-driven tests for fastjac.nn: every rule in RULES, both backends."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastjac import nn
from fastjac.reference import numeric_jacobian

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["numba", "numpy"]
DTYPES = [np.float64, np.float32]
ACTIVATIONS = [n for n, r in nn.RULES.items() if r.kind in ("elementwise", "normalizer")]
NORMALIZERS = [n for n, r in nn.RULES.items() if r.kind == "normalizer"]
LOSSES = [n for n, r in nn.RULES.items() if r.kind == "loss"]


# ---------------------------------------------------------------- tolerances
def ulp_tol(dtype, cond=1.0, ops=8):
    """Kernel vs reference: each of ~``ops`` roundings costs <= eps/2 relative,
    amplified by a condition-number-like factor ``cond`` (e.g. n for a sum of
    n terms).  Returned as an absolute tolerance for O(1)-scaled values."""
    return ops * cond * np.finfo(dtype).eps


def fd_tol(h, d3, fscale, dtype=np.float64):
    """Central difference with step h: truncation h^2/6 * |f'''| plus
    roundoff ~ eps * |f| / h (two evaluations each off by eps*|f|/2), x2 margin."""
    return 2.0 * (h * h / 6.0 * d3 + np.finfo(dtype).eps * fscale / h)


H = 1e-4  # numeric_jacobian's notebook step


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- import
def test_import_does_not_import_numba():
    code = "import sys, fastjac, fastjac.nn; assert 'numba' not in sys.modules, 'numba imported'; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# ---------------------------------------------------------------- activations
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_vs_reference_and_fd(name, backend):
    op = nn.RULES[name]
    z = rng(1).uniform(-3, 3, 7)
    z[z == 0] = 0.5  # keep relu off its kink (FD is meaningless there)
    a = op.forward(z, backend=backend) if op.kind == "normalizer" else op.forward(z)
    np.testing.assert_allclose(a, op.reference(z), rtol=ulp_tol(np.float64), atol=ulp_tol(np.float64))
    J = op.jacobian(z, backend=backend) if op.kind == "normalizer" else op.jacobian(z, dense=True)
    assert J.shape == (7, 7)
    np.testing.assert_allclose(J, op.reference_jacobian(z), atol=ulp_tol(np.float64, cond=7))
    # |f'''| <= 1 for all these ops on |z| <= 3 away from the relu kink
    Jfd = numeric_jacobian(z, op.reference, H)
    np.testing.assert_allclose(J, Jfd, atol=fd_tol(H, d3=1.0, fscale=np.abs(a).max() + 1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_batched_dtype_and_backends(name, backend, dtype):
    op = nn.RULES[name]
    n, B = 6, 5
    z = rng(2).uniform(-4, 4, (n, B)).astype(dtype)
    g = rng(3).standard_normal((n, B)).astype(dtype)
    kw = {"backend": backend} if op.kind == "normalizer" else {}
    a = op.forward(z, **kw)
    J = op.jacobian(z, **kw) if op.kind == "normalizer" else op.jacobian(z, dense=True)
    v = op.vjp(z, g, backend=backend)
    assert a.dtype == dtype and J.dtype == dtype and v.dtype == dtype
    assert J.shape == (B, n, n) and v.shape == (n, B)
    z64, g64 = z.astype(np.float64), g.astype(np.float64)
    tol = ulp_tol(dtype, cond=n)
    for b in range(B):
        Jref = op.reference_jacobian(z64[:, b])
        np.testing.assert_allclose(J[b], Jref, atol=tol)
        np.testing.assert_allclose(v[:, b], g64[:, b] @ Jref, atol=tol * np.abs(g64).max())
    np.testing.assert_allclose(a, op.reference(z64), atol=tol * 4)


@pytest.mark.parametrize("name", NORMALIZERS)
def test_normalizer_axis_and_nd(name):
    op = nn.RULES[name]
    z = rng(4).standard_normal((3, 4, 5))
    g = rng(5).standard_normal((3, 4, 5))
    for axis in (0, 1, -1):
        for be in BACKENDS:
            a = op.forward(z, axis=axis, backend=be)
            np.testing.assert_allclose(a, op.reference(z, axis=axis), atol=ulp_tol(np.float64, 5))
            J = op.jacobian(z, axis=axis, backend=be)
            n = z.shape[axis]
            assert J.shape == tuple(s for i, s in enumerate(z.shape) if i != axis % 3) + (n, n)
            v = op.vjp(z, g, axis=axis, backend=be)
            gm = np.moveaxis(g, axis, -1)
            expect = np.moveaxis(np.einsum("...i,...ij->...j", gm, J), -1, axis)
            np.testing.assert_allclose(v, expect, atol=ulp_tol(np.float64, n) * np.abs(g).max())


def test_softmax_large_magnitudes_do_not_overflow():
    z = np.array([[1000.0, -1000.0], [0.0, 999.0], [-1000.0, 1000.0]])
    for be in BACKENDS:
        a = nn.softmax.forward(z, backend=be)  # filterwarnings=error: an overflow would raise
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a.sum(axis=0), 1.0, atol=ulp_tol(np.float64, 3))
        ls = nn.log_softmax.forward(z, backend=be)
        np.testing.assert_allclose(ls[:, 0], [0.0, -1000.0, -2000.0], atol=1e-9)
        assert np.isfinite(nn.softmax.jacobian(z, backend=be)).all()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_vjp_equals_g_times_J_hypothesis(data):
    name = data.draw(st.sampled_from(ACTIVATIONS))
    dtype = data.draw(st.sampled_from(DTYPES))
    backend = data.draw(st.sampled_from(BACKENDS))
    shape = data.draw(st.tuples(st.integers(1, 9), st.integers(1, 5)))
    big = 1e3 if nn.RULES[name].kind == "normalizer" else 30.0
    elems = st.floats(-big, big, allow_nan=False, allow_infinity=False, width=32)
    z = data.draw(hnp.arrays(dtype, shape, elements=elems))
    g = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))
    op = nn.RULES[name]
    zc, gc = z.copy(), g.copy()
    v = op.vjp(z, g, backend=backend)
    if op.kind == "normalizer":
        J = op.jacobian(z, backend=backend)
    else:
        J = op.jacobian(z, dense=True)
    expect = np.einsum("ib,bij->jb", g.astype(np.float64), J.astype(np.float64))
    assert v.dtype == dtype and np.isfinite(v).all()
    # each entry of J is in [-1, 1]; a dot product of n terms: n*eps*max|g|
    np.testing.assert_allclose(v, expect, atol=ulp_tol(dtype, shape[0]) * (np.abs(g).max() + 1))
    np.testing.assert_array_equal(z, zc)
    np.testing.assert_array_equal(g, gc)


def test_leaky_relu_slope_and_relu_kink_value():
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(nn.leaky_relu.jacobian(z), [0.01, 0.01, 1.0])
    np.testing.assert_array_equal(nn.relu.jacobian(z), [0.0, 0.0, 1.0])
    for be in BACKENDS:
        np.testing.assert_array_equal(nn.leaky_relu.vjp(z, np.ones(3), backend=be), [0.01, 0.01, 1.0])


# ---------------------------------------------------------------- losses
def _loss_inputs(name, shape, dtype=np.float64, seed=6):
    r = rng(seed)
    n, m = shape
    Y = np.zeros(shape)
    Y[r.integers(0, n, m), np.arange(m)] = 1.0
    if name == "softmax_cross_entropy":
        A = r.standard_normal(shape) * 2
    elif name == "mse":
        Y = r.standard_normal(shape)
        A = r.standard_normal(shape)
    else:  # probabilities bounded away from 0 so -y/a and its FD are tame
        A = r.uniform(0.2, 1.0, shape)
    return Y.astype(dtype), A.astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_value_gradient_fd(name, backend):
    op = nn.RULES[name]
    Y, A = _loss_inputs(name, (4, 3))
    v = op.forward(Y, A)
    assert isinstance(v, float)
    np.testing.assert_allclose(v, op.reference(Y, A), rtol=ulp_tol(np.float64, 12))
    val, grad = op.value_and_grad(Y, A, backend=backend)
    np.testing.assert_allclose(val, v, rtol=ulp_tol(np.float64, 12))
    G = numeric_jacobian(A, lambda a: op.reference(Y, a), H)
    # |L'''| <= 2/a^3 = 250 for a >= 0.2; O(1) for softmax-CE and mse
    np.testing.assert_allclose(grad, G, atol=fd_tol(H, d3=250.0, fscale=abs(v) + 1))
    np.testing.assert_allclose(op.vjp(Y, A, 2.5, backend=backend), 2.5 * grad, rtol=ulp_tol(np.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(10, 1), (7, 33), (300, 20)])
def test_softmax_cross_entropy_fused(shape, dtype, backend):
    Y, Z = _loss_inputs("softmax_cross_entropy", shape, dtype)
    m = shape[1]
    val, grad = nn.softmax_cross_entropy.value_and_grad(Y, Z, backend=backend)
    assert grad.dtype == dtype
    Z64, Y64 = Z.astype(np.float64), Y.astype(np.float64)
    expect = (nn.softmax.reference(Z64) - Y64) / m
    np.testing.assert_allclose(grad, expect, atol=ulp_tol(dtype, shape[0]) / m)
    np.testing.assert_allclose(val, nn.softmax_cross_entropy.reference(Y64, Z64), rtol=ulp_tol(dtype, 100))


def test_cross_entropy_mean_clip_and_1d():
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    A = np.array([[0.0, 0.5], [1.0, 0.5]])
    v, g = nn.cross_entropy_mean.value_and_grad(Y, A)
    assert v == pytest.approx((-np.log(1e-10) - np.log(0.5)) / 2)
    assert g[0, 0] == 0.0 and g[1, 1] == pytest.approx(-1.0)
    assert nn.cross_entropy.forward([0.0, 1.0], [0.5, 0.25]) == pytest.approx(np.log(4))


# ---------------------------------------------------------------- dense
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_backward(dtype):
    r = rng(7)
    k, d, m = 4, 3, 5
    W, X = r.standard_normal((k, d)).astype(dtype), r.standard_normal((d, m)).astype(dtype)
    b, dZ = r.standard_normal((k, 1)).astype(dtype), r.standard_normal((k, m)).astype(dtype)
    Z = nn.dense_forward(W, X, b)
    assert Z.dtype == dtype
    np.testing.assert_allclose(Z, nn.dense.reference(W, X, b), atol=ulp_tol(dtype, d))
    np.testing.assert_allclose(nn.dense_forward(W, X, b.ravel()), Z, atol=ulp_tol(dtype))
    dW, dX, db = nn.dense_backward(W, X, dZ)
    assert db.shape == (k, 1) and dW.shape == W.shape and dX.shape == X.shape
    for got, ref in zip((dW, dX, db), nn.dense.reference_vjp(W, X, dZ)):
        np.testing.assert_allclose(got, ref, atol=ulp_tol(dtype, m) * 4)
    if dtype == np.float64:  # linear in each argument: FD truncation is zero
        L = lambda W_, X_, b_: float(np.sum(dZ * nn.dense_forward(W_, X_, b_)))
        tol = fd_tol(H, 0.0, 10.0)
        np.testing.assert_allclose(numeric_jacobian(W, lambda w: L(w, X, b), H), dW, atol=tol)
        np.testing.assert_allclose(numeric_jacobian(X, lambda x: L(W, x, b), H), dX, atol=tol)
        np.testing.assert_allclose(numeric_jacobian(b, lambda bb: L(W, X, bb), H), db, atol=tol)


# ---------------------------------------------------------------- fastjac.jacobian, if present
def test_against_engine_if_available():
    fj = pytest.importorskip("fastjac")
    if not hasattr(fj, "jacobian"):
        pytest.skip("fastjac.jacobian not available yet")
    z = rng(8).standard_normal(6)
    J = fj.jacobian(lambda x: nn.softmax.reference(x, axis=-1), z)
    # engine default step h ~ eps^(1/3) * max(1, |z|); third derivative of softmax <= 1
    h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, np.abs(z).max())
    np.testing.assert_allclose(nn.softmax.jacobian(z), np.asarray(J), atol=fd_tol(h, 1.0, 1.0))


# ---------------------------------------------------------------- errors, mutation
def test_bad_inputs_raise_named_errors():
    with pytest.raises(TypeError, match=r"`z` must be a real floating array; got dtype <U1\."):
        nn.softmax.forward(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="`z` must be a real floating array"):
        nn.sigmoid.vjp(np.array([1 + 2j]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"`g` must have the shape of `z` \(3,\); got shape \(4,\)"):
        nn.softmax.vjp(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="`axis` must be in"):
        nn.softmax.forward(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="`z` must have at least 1 dimension"):
        nn.softmax.forward(np.float64(1.0))
    with pytest.raises(ValueError, match="`backend` must be one of"):
        nn.softmax.forward(np.ones(3), backend="cuda")
    with pytest.raises(ValueError, match="`out` must have shape"):
        nn.softmax.forward(np.ones(3), out=np.empty(4))
    with pytest.raises(ValueError, match="`out` must not share memory"):
        z = np.ones(3)
        nn.sigmoid.vjp(z, np.ones(3), out=z)
    with pytest.raises(ValueError, match="`X` must have 3 rows"):
        nn.dense_forward(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="`y` must have the shape of `a`"):
        nn.mse.forward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="`b` must have shape"):
        nn.dense_forward(np.ones((2, 3)), np.ones((3, 5)), np.ones(3))


def test_ints_and_float16_are_promoted_and_out_is_used():
    assert nn.sigmoid.forward(np.array([0, 1])).dtype == np.float64
    assert nn.softmax.forward(np.array([1, 2], np.float16)).dtype == np.float32
    out = np.empty((3, 2))
    z = rng(9).standard_normal((3, 2))
    for be in BACKENDS:
        r = nn.softmax.forward(z, out=out, backend=be)
        assert r is out
        np.testing.assert_allclose(out, nn.softmax.reference(z), atol=ulp_tol(np.float64, 3))
        Jout = np.empty((2, 3, 3))
        assert nn.softmax.jacobian(z, out=Jout, backend=be) is Jout


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_not_mutated_readonly_ok(backend):
    z = rng(10).standard_normal((5, 4))
    g = rng(11).standard_normal((5, 4))
    z.setflags(write=False)
    g.setflags(write=False)
    zc, gc = z.copy(), g.copy()
    for name in ACTIVATIONS:
        op = nn.RULES[name]
        op.vjp(z, g, backend=backend)
        op.jacobian(z, backend=backend) if op.kind == "normalizer" else op.jacobian(z)
    Y, _ = _loss_inputs("softmax_cross_entropy", (5, 4))
    Y.setflags(write=False)
    nn.softmax_cross_entropy.value_and_grad(Y, z, backend=backend)
    np.testing.assert_array_equal(z, zc)
    np.testing.assert_array_equal(g, gc)


def test_set_backend_roundtrip():
    prev = nn.set_backend("numpy")
    try:
        assert nn.get_backend() == "numpy"
        z = rng(12).standard_normal((4, 3))
        np.testing.assert_allclose(nn.softmax.jacobian(z), nn.softmax.jacobian(z, backend="numba"),
                                   atol=ulp_tol(np.float64, 4))
    finally:
        nn.set_backend(prev)
    assert nn.get_backend() == prev


# ---------------------------------------------------------------- threads
def test_thread_safety_executor():
    r = rng(13)
    cases = [(r.standard_normal((n, B)), r.standard_normal((n, B))) for n, B in [(5, 3), (64, 32), (10, 1), (33, 7)] * 4]

    def work(case):
        z, g = case
        return (nn.softmax.jacobian(z, backend="numba"), nn.softmax.vjp(z, g, backend="numba"),
                nn.sigmoid.vjp(z, g, backend="numba"), nn.relu.vjp(z, g, backend="numba"),
                nn.softmax_cross_entropy.value_and_grad(np.abs(g), z, backend="numba")[1])

    serial = [work(c) for c in cases]
    with ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(3):
            threaded = list(ex.map(work, cases))
            for s, t in zip(serial, threaded):
                for a, b in zip(s, t):
                    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- cache fallback
def test_cache_fallback_monkeypatched_no_locator():
    """Real Numba code path: with no cache locator Numba raises 'cannot cache'
    at decoration; lazy_njit must fall back to cache=False and still work."""
    code = textwrap.dedent("""
        import numpy as np
        import numba.core.caching as caching
        caching.CacheImpl._locator_classes = []   # no locator can be found
        import numba
        try:
            numba.njit(cache=True)(lambda x: x)
        except RuntimeError as e:
            assert "cannot cache" in str(e), e
        else:
            raise SystemExit("numba did not refuse to cache")
        from fastjac import nn
        z = np.array([[1.0, 2.0], [3.0, 4.0]])
        J = nn.softmax.jacobian(z, backend="numba")
        assert nn.softmax._jac_kernel.dispatcher._cache.__class__.__name__ == "NullCache"
        np.testing.assert_allclose(J, nn.softmax.jacobian(z, backend="numpy"), atol=1e-15)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_cache_fallback_readonly_install(tmp_path):
    """A copy of fastjac in a directory the user cannot write, no writable
    home, NUMBA_CACHE_DIR read-only: run as an unprivileged user."""
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root + setpriv to drop to an unprivileged user")
    import shutil

    site = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "fastjac", site / "fastjac",
                    ignore=shutil.ignore_patterns("__pycache__"))
    ro = tmp_path / "ro"
    ro.mkdir()
    for p in [tmp_path, site, ro, *site.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    code = ("import numpy as np; from fastjac import nn; "
            "z=np.array([[1.0,2.0],[3.0,4.0]]); "
            "J=nn.softmax.jacobian(z, backend='numba'); "
            "assert J.shape==(2,2,2) and abs(J[0,0,0]-0.1049935854035065)<1e-12; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ro / "nohome"), "NUMBA_CACHE_DIR": str(ro),
           "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180,
                       cwd=str(ro))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert not list(ro.iterdir())  # nothing could be cached


# ---------------------------------------------------------------- docs
def test_docs_contain_generated_table():
    text = (ROOT / "docs" / "nn.md").read_text()
    assert nn.describe() in text
