"""GradientMonitor: catches broken backward passes, never false-alarms on correct ones."""
import importlib.util
import logging
import math
import pathlib
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from fastjac import JacobianCheck
from fastjac.monitor import GradientCheckError, GradientMonitor, GradientWarning

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_example():
    spec = importlib.util.spec_from_file_location("train_mlp", ROOT / "examples" / "train_mlp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


example = _load_example()


# A batch-aware numpy MLP (leading axes of the parameters broadcast through
# matmul), so the monitor's batched path is exercised; the example's fastjac.nn
# model takes one point at a time and exercises the loop path.
ACTS = {
    "tanh": (np.tanh, lambda z, a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
}


def np_loss(p, X, Y, act="tanh"):
    f = ACTS[act][0]
    A1 = f(p["W1"] @ X + p["b1"])
    Z2 = p["W2"] @ A1 + p["b2"]
    mx = Z2.max(axis=-2, keepdims=True)
    lse = np.log(np.exp(Z2 - mx).sum(axis=-2, keepdims=True)) + mx
    return -np.sum(Y * (Z2 - lse), axis=(-2, -1)) / X.shape[-1]


def np_grads(p, X, Y, act="tanh", bug=None):
    f, df = ACTS[act]
    Z1 = p["W1"] @ X + p["b1"]
    A1 = f(Z1)
    Z2 = p["W2"] @ A1 + p["b2"]
    e = np.exp(Z2 - Z2.max(0))
    dZ2 = (e / e.sum(0) - Y) / X.shape[1]
    dZ1 = (p["W2"].T @ dZ2) * df(Z1, A1)
    g = {"W1": dZ1 @ X.T, "b1": dZ1.sum(1, keepdims=True), "W2": dZ2 @ A1.T,
         "b2": dZ2.sum(1, keepdims=True)}
    if bug:
        g[bug] = g[bug] * g[bug].dtype.type(0.5)
    return g


def np_train(monitor, *, steps, seed, dtype, act="tanh", bug=None, bug_step=0, hidden=16, batch=32):
    rng = np.random.default_rng(seed)
    X, Y = example.spirals(256, rng, dtype)
    p = example.init(rng, hidden, dtype)
    for step in range(steps):
        idx = rng.choice(X.shape[1], batch, replace=False)
        xb, yb = X[:, idx], Y[:, idx]
        g = np_grads(p, xb, yb, act, bug if step >= bug_step else None)
        monitor(step, p, g, loss_fn=lambda q, xb=xb, yb=yb: np_loss(q, xb, yb, act))
        p = {k: p[k] - dtype(0.3) * g[k] for k in p}
    return p


def small_problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X, Y = example.spirals(64, rng, dtype)
    p = example.init(rng, 8, dtype)
    return p, np_grads(p, X, Y), (lambda q: np_loss(q, X, Y))


# ---------------------------------------------------------------------------
# detection and false alarms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bug", example.PARAMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example_model_bug_caught_at_next_check(bug, dtype, seed):
    reports = []
    mon, reports, _ = example.train(steps=70, batch=32, hidden=16, lr=0.5, seed=seed, dtype=dtype,
                                    every=20, bug=bug, bug_step=50, log=lambda *a: None)
    assert reports, "the injected bug was not caught"
    first = reports[0]
    # Checks run at 0, 20, 40, 60: the first check after the bug (step 50) is step 60.
    assert first.training_step == 60
    assert first.culprits == [f"params[{bug!r}]"]
    assert first.verdict == "fail" and not first.passed
    assert first.per_param[f"params[{bug!r}]"] > 0.1


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bug", ["W1", "b1", "W2", "b2"])
def test_batched_model_bug_caught(bug, dtype, act):
    mon = GradientMonitor(None, every=10, seed=3, on_fail="raise")
    with pytest.raises(GradientCheckError) as info:
        np_train(mon, steps=40, seed=3, dtype=dtype, act=act, bug=bug, bug_step=15)
    assert info.value.report.training_step == 20
    assert info.value.report.culprits == [f"params[{bug!r}]"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_false_alarm_over_full_correct_run(dtype, seed):
    # on_fail="raise": a single false alarm anywhere fails the test.
    mon = GradientMonitor(None, every=4, seed=seed, on_fail="raise")
    _, reports, final = example.train(steps=400, batch=64, hidden=32, lr=0.5, seed=seed,
                                      dtype=dtype, every=4, log=lambda *a: None)
    assert reports == []
    np_train(mon, steps=400, seed=seed, dtype=dtype)
    assert len(mon.history) == 100 and all(r.passed for r in mon.history)
    if dtype == np.float64:
        # Central differences at EPS**(1/3) steps are good to ~EPS**(2/3) ~ 4e-11
        # relative (times derivative ratios); 1e-4 leaves that 1e6 of room and
        # still sits 1000x below the signal of a 0.5x bug (rel error >= 0.1 above).
        # In float32 a direction can carry little signal, so only the verdict counts.
        assert max(r.rel_error for r in mon.history) < 1e-4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_false_alarm_relu_network(dtype):
    # ReLU kinks inside the step are covered by the curvature (one-sided) term.
    mon = GradientMonitor(None, every=2, seed=5, on_fail="raise")
    np_train(mon, steps=200, seed=5, dtype=dtype, act="relu")
    assert all(r.passed for r in mon.history)


# ---------------------------------------------------------------------------
# NaN / inf screen
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_gradient_caught_every_step(bad):
    p, g, loss = small_problem()
    mon = GradientMonitor(loss, every=1000, on_fail="raise")
    mon(0, p, g)  # the first call is a check
    g2 = dict(g)
    g2["b1"] = g["b1"].copy()
    g2["b1"][3, 0] = bad
    with pytest.raises(GradientCheckError) as info:
        mon(1, p, g2)  # not due for a check: the screen alone catches it
    rep = info.value.report
    assert rep.verdict == "nan" and rep.culprits == ["params['b1']"]
    assert "1 NaN/inf" in str(rep)
    assert mon.history[-1].kind == "nan" and mon.history[-1].step == 1


def test_huge_finite_gradient_is_not_flagged():
    # g . g overflows for |g| ~ 1e200 but every element is finite: confirmed, not flagged.
    p, g, loss = small_problem()
    g = dict(g, W1=np.full_like(g["W1"], 1e200))
    mon = GradientMonitor(loss, every=1000, on_fail="raise")
    mon._last_check = 0  # not due: test the screen alone (a check would rightly fail)
    assert mon(1, p, g) is None
    assert mon.history == []


def test_nan_loss_at_check_points_is_reported():
    p, g, _ = small_problem()
    reports = []
    mon = GradientMonitor(lambda q: np.nan * np.sum(q["W1"]), on_fail=reports.append)
    mon(0, p, g)
    assert reports and reports[0].verdict == "nan" and not reports[0].passed


# ---------------------------------------------------------------------------
# never modifies its inputs
# ---------------------------------------------------------------------------
def test_params_and_grads_unchanged_and_readonly_ok():
    p, g, loss = small_problem(np.float32)
    for d in (p, g):
        for a in d.values():
            a.setflags(write=False)
    p_copy = {k: v.copy() for k, v in p.items()}
    g_copy = {k: v.copy() for k, v in g.items()}
    mon = GradientMonitor(loss, every=1, on_fail="raise")
    for step in range(3):
        mon(step, p, g)
    for k in p:
        assert np.array_equal(p[k], p_copy[k]) and p[k].dtype == p_copy[k].dtype
        assert np.array_equal(g[k], g_copy[k])


def test_loss_fn_writing_in_place_gets_a_clear_error():
    p, g, _ = small_problem()

    def bad_loss(q):
        q["W1"][0, 0] = 0.0
        return float(np.sum(q["W1"]))

    mon = GradientMonitor(bad_loss, vectorized=False)
    with pytest.raises(ValueError, match="read-only"):
        mon(0, p, g)


def test_tuple_params_named_by_index():
    p, g, loss = small_problem()
    keys = list(p)
    pt = tuple(p[k] for k in keys)
    gt = tuple(g[k] for k in keys)
    gt = gt[:2] + (gt[2] * 0.5,) + gt[3:]

    def tloss(q):
        return loss(dict(zip(keys, q)))

    mon = GradientMonitor(tloss, on_fail="raise", seed=0)
    with pytest.raises(GradientCheckError) as info:
        mon(0, pt, gt)
    assert info.value.report.culprits == ["params[2]"]


# ---------------------------------------------------------------------------
# batching, budget, logging
# ---------------------------------------------------------------------------
def test_batch_aware_loss_is_called_in_batches():
    p, g, loss = small_problem()
    calls = []

    def counted(q):
        calls.append(np.ndim(q["b2"]))
        return loss(q)

    mon = GradientMonitor(counted, every=1, seed=0)
    mon(0, p, g)  # probes once
    calls.clear()
    mon(1, p, g)
    # f(x) once, then all 2*(2 directions + 2 samples) = 8 points in one batched call.
    assert calls == [2, 3]


def test_budget_adapts_every(caplog):
    p, g, loss = small_problem()

    def slow_loss(q):
        time.sleep(0.002)
        return loss(q)

    mon = GradientMonitor(slow_loss, every=1, budget=0.02, vectorized=False)
    with caplog.at_level(logging.INFO, logger="fastjac.monitor"):
        for step in range(5):
            time.sleep(0.001)  # the "training step"
            mon(step, p, g)
    # A check is >= 9 sleeps of 2 ms; a step ~1 ms (or more under load): to stay
    # under 2% the period must grow to about 18 / (0.02 * step_ms) >> 1.
    step_s = mon._step_time
    assert mon.every >= math.ceil(0.018 / (0.02 * step_s)) - 1
    assert mon.every > 50
    assert any("training steps" in r.getMessage() for r in caplog.records)
    checks = [r for r in mon.history if r.kind == "check"]
    assert len(checks) == 2  # at step 0 (every=1) and step 1; then every is large


# ---------------------------------------------------------------------------
# reporting: history, summary, on_fail modes
# ---------------------------------------------------------------------------
def test_history_and_summary():
    mon = GradientMonitor(None, every=10, seed=1, on_fail=lambda r: None)
    np_train(mon, steps=40, seed=1, dtype=np.float64, bug="W2", bug_step=25)
    h = mon.history
    assert [r.step for r in h] == [0, 10, 20, 30]
    assert [r.passed for r in h] == [True, True, True, False]
    assert h[-1].per_param["params['W2']"] > 0.1 and h[-1].culprits == ["params['W2']"]
    assert all(r.seconds > 0 and r.rel_error >= 0 for r in h)
    s = mon.summary()
    assert s["checks"] == 4 and s["failures"] == 1 and s["first_failure_step"] == 30
    assert s["culprits"] == ["params['W2']"] and 0 < s["overhead"]
    text = str(s)
    assert "4 checks" in text and "first failure at step 30" in text and "params['W2']" in text


def test_on_fail_warn_raise_callable():
    p, g, loss = small_problem()
    g = dict(g, W1=g["W1"] * 0.5)
    with pytest.warns(GradientWarning, match=r"params\['W1'\]"):
        GradientMonitor(loss)(0, p, g)
    with pytest.raises(GradientCheckError) as info:
        GradientMonitor(loss, on_fail="raise")(0, p, g)
    assert isinstance(info.value, AssertionError)
    rep = info.value.report
    assert isinstance(rep, JacobianCheck) and rep.training_step == 0
    assert "step 0" in str(rep) and "params['W1']" in str(rep)
    d = rep.to_dict()
    assert d["culprits"] == ["params['W1']"] and d["verdict"] == "fail"
    got = []
    GradientMonitor(loss, on_fail=got.append)(0, p, g)
    assert len(got) == 1 and got[0].culprits == ["params['W1']"]


def test_passing_check_emits_no_warning():
    p, g, loss = small_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = GradientMonitor(loss)(0, p, g)
    assert rep.passed and rep.verdict in ("pass", "noise")


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(every=0), "`every` must be a positive int; got 0"),
    (dict(directions=-1), "`directions` must be an int >= 0"),
    (dict(directions=0, samples=0), "`directions` and `samples` cannot both be 0"),
    (dict(rtol=2.0), "`rtol` must be a number in"),
    (dict(budget=0), "`budget` must be a fraction"),
    (dict(on_fail="log"), r"`on_fail` must be one of \['raise', 'warn'\] or a callable; got 'log'"),
    (dict(vectorized="yes"), "`vectorized` must be one of"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(lambda p: 0.0, **kwargs)


def test_bad_call_arguments_name_the_parameter():
    p, g, loss = small_problem()
    mon = GradientMonitor(loss)
    with pytest.raises(ValueError, match=r"`grads\['W1'\]` must have the shape of the matching "
                                         r"parameter \(8, 2\); got \(2, 8\)"):
        mon(0, p, dict(g, W1=g["W1"].T))
    with pytest.raises(ValueError, match="`grads` must have the same entries as params"):
        mon(0, p, {k: g[k] for k in ("W1", "b1", "W2")})
    with pytest.raises(TypeError, match="`params` must be a dict or a tuple of arrays"):
        mon(0, p["W1"], g["W1"])
    with pytest.raises(TypeError, match=r"`params\['b1'\]` must be an array of real numbers"):
        mon(0, dict(p, b1="x"), g)
    with pytest.raises(TypeError, match="`step` must be an int"):
        mon(0.5, p, g)
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        GradientMonitor(None)(0, p, g)


# ---------------------------------------------------------------------------
# memory and the example
# ---------------------------------------------------------------------------
def test_memory_is_order_of_params():
    rng = np.random.default_rng(0)
    n, m = 600, 16  # 2.9 MB of parameters: above the 8 MiB / 4-row chunk floor
    X = rng.standard_normal((n, m))
    Y = np.eye(n)[:, rng.integers(0, n, m)]
    p = {"W": rng.standard_normal((n, n)) * 0.05, "b": np.zeros((n, 1))}

    def loss(q):
        Z = q["W"] @ X + q["b"]
        mx = Z.max(axis=-2, keepdims=True)
        lse = np.log(np.exp(Z - mx).sum(axis=-2, keepdims=True)) + mx
        return -np.sum(Y * (Z - lse), axis=(-2, -1)) / m

    Z = p["W"] @ X + p["b"]
    e = np.exp(Z - Z.max(0))
    dZ = (e / e.sum(0) - Y) / m
    g = {"W": dZ @ X.T, "b": dZ.sum(1, keepdims=True)}
    mon = GradientMonitor(loss, every=1, on_fail="raise")
    mon(0, p, g)  # warm: probing and the engine's buffers
    pbytes = sum(a.nbytes for a in p.values())
    tracemalloc.start()
    try:
        mon(1, p, g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # x0 copy + 2 directions + at most 4 perturbed copies (+ loss temporaries).
    assert peak < 10 * pbytes, (peak, pbytes)


def test_example_main_runs_and_catches_the_bug(capsys):
    out = example.main(steps=120, batch=32, hidden=16, every=20, bug="W1", bug_step=60)
    assert out["clean_failures"] == 0
    assert out["caught_at"] == 60 and out["culprits"] == ["params['W1']"]
    text = capsys.readouterr().out
    assert "caught at step 60" in text and "final loss" in text


class _ConvergingSoftmaxLayer:
    """A float32 softmax layer trained past convergence: its loss (~1e-4) is a
    logit minus its log-sum-exp (~10 each), so the loss's round-off is far
    above EPS * |loss|.  Checks with only the EPS * |loss| model raised false
    alarms here (4 in 4 runs of 2000 steps) before the round-off probe."""

    def __init__(self, seed, n=128, batch=16):
        rng = np.random.default_rng(seed)
        f32 = np.float32
        self.X = rng.standard_normal((n, batch)).astype(f32)
        self.Y = np.eye(n, dtype=f32)[:, rng.integers(0, n, batch)]
        self.params = {"W": (rng.standard_normal((n, n)) * 0.03).astype(f32),
                       "b": np.zeros((n, 1), f32)}
        self.batch = batch

    def loss(self, q):
        Z = q["W"] @ self.X + q["b"]
        mx = Z.max(axis=-2, keepdims=True)
        lse = np.log(np.exp(Z - mx).sum(axis=-2, keepdims=True)) + mx
        return -np.sum(self.Y * (Z - lse), axis=(-2, -1)) / self.batch

    def grads(self, q):
        Z = q["W"] @ self.X + q["b"]
        e = np.exp(Z - Z.max(axis=0))
        dZ = (e / e.sum(axis=0)) - self.Y
        dZ *= np.float32(1.0 / self.batch)
        return {"W": dZ @ self.X.T, "b": dZ.sum(axis=1, keepdims=True)}


def _train(layer, monitor, steps, bug_from=None):
    p = layer.params
    for step in range(steps):
        g = layer.grads(p)
        if bug_from is not None and step >= bug_from:
            g = {"W": g["W"] * np.float32(0.5), "b": g["b"]}
        monitor(step, p, g)
        p["W"] -= np.float32(0.1) * g["W"]
        p["b"] -= np.float32(0.1) * g["b"]


@pytest.mark.parametrize("seed", range(4))
def test_no_false_alarm_when_loss_round_off_exceeds_eps_times_loss(seed):
    layer = _ConvergingSoftmaxLayer(seed)
    monitor = GradientMonitor(layer.loss, every=100, on_fail="raise", seed=seed)
    _train(layer, monitor, 2000)  # raises GradientCheckError on a false alarm
    checks = [r for r in monitor.history if r.kind == "check"]
    assert len(checks) == 20 and all(r.passed for r in checks)


def test_round_off_probe_keeps_a_late_bug_visible():
    layer = _ConvergingSoftmaxLayer(0)
    failures = []
    monitor = GradientMonitor(layer.loss, every=100, on_fail=failures.append, seed=0)
    _train(layer, monitor, 1600, bug_from=1450)
    assert failures and failures[0].training_step == 1500
    assert failures[0].culprits == ["params['W']"]
