"""GradientMonitor's NaN/inf screen with the loss value, and its summary.

With ``loss=`` the screen reads nothing while the loss is finite: a NaN or
inf in a gradient reaches the parameters with the update and so the next
loss, and is reported within one step.  Check steps still read every
gradient.  The summary counts checks and non-finite screens apart.
"""
import math

import numpy as np
import pytest

from fastjac._monitor_params import SWEEP_STEPS
from fastjac.monitor import GradientCheckError, GradientMonitor
from test_monitor import np_grads, np_loss, small_problem, example


def _sgd(p, g, lr=0.1):
    return {k: p[k] - p[k].dtype.type(lr) * g[k] for k in p}


def _batch(seed=0):
    """The batch of ``small_problem(seed=seed)``."""
    return example.spirals(64, np.random.default_rng(seed), np.float64)


def _poison(g, name, value):
    g = dict(g, **{name: g[name].copy()})
    g[name][3, 0] = value
    return g


def test_nan_gradient_with_loss_value_is_reported_within_one_step():
    p, _, loss = small_problem()
    mon = GradientMonitor(loss, every=1000, on_fail="raise")
    g = np_grads(p, *_batch())
    mon(0, p, g, loss=float(loss(p)))          # the first call is a check: it passes
    g = _poison(g, "b1", np.nan)
    # Not due and the loss is finite: the gradients are not read at this step.
    assert mon(1, p, g, loss=float(loss(p))) is None
    p = _sgd(p, g)                                # the update carries the NaN into b1
    with np.errstate(all="ignore"):
        value, g = float(loss(p)), np_grads(p, *_batch())
    assert math.isnan(value)
    with pytest.raises(GradientCheckError) as info:
        mon(2, p, g, loss=value)
    rep = info.value.report
    assert rep.verdict == "nan" and rep.training_step == 2
    assert rep.culprits[0] == "params['b1']"       # the parameter that holds it comes first
    assert "params['b1'] holds 1 NaN/inf value(s)" in str(rep)
    assert "the loss at step 2 is nan" in str(rep)
    assert mon.history[-1].kind == "nan" and mon.history[-1].step == 2


def test_inf_absorbed_by_the_loss_is_found_by_the_parameter_sweep():
    # tanh(inf) = 1: an inf in b1 leaves the loss finite (and b1's gradient 0, so
    # it stays), which the loss screen cannot see.  The sweep reads a different
    # 1/SWEEP_STEPS of the parameters each step and finds it within SWEEP_STEPS.
    p, _, loss = small_problem()
    X, Y = _batch()
    mon = GradientMonitor(loss, every=1000, on_fail="raise")
    mon(0, p, np_grads(p, X, Y), loss=float(loss(p)))
    p = _sgd(p, _poison(np_grads(p, X, Y), "b1", -np.inf))
    with pytest.raises(GradientCheckError) as info:
        for step in range(1, 1 + SWEEP_STEPS):
            with np.errstate(all="ignore"):
                value, g = float(loss(p)), np_grads(p, X, Y)
            assert math.isfinite(value)
            mon(step, p, g, loss=value)
            p = _sgd(p, g)
    rep = info.value.report
    assert 1 <= rep.training_step <= SWEEP_STEPS and rep.culprits[0] == "params['b1']"
    assert "found by the parameter sweep" in str(rep)


def test_sweep_reads_every_parameter_once_every_sweep_steps():
    p, g, loss = small_problem()
    mon = GradientMonitor(loss, every=10 ** 6, on_fail=lambda r: None)
    mon(0, p, g, loss=1.0)
    for name in p:
        for j in (0, p[name].size - 1):
            q = {k: v.copy() for k, v in p.items()}
            q[name].reshape(-1)[j] = np.nan
            found = [mon(1 + step, q, g, loss=1.0) is not None for step in range(SWEEP_STEPS)]
            assert sum(found) == 1, (name, j)
            assert found.index(True) == SWEEP_STEPS - 1  # the 16th call after the first


def test_structure_errors_with_the_loss_value_surface_within_sweep_steps():
    # With loss=, the steps between sweeps read nothing, so they validate nothing
    # either; the next sweep (or check) does.
    p, g, loss = small_problem()
    mon = GradientMonitor(loss, every=10 ** 6)
    mon(0, p, g, loss=1.0)
    bad = dict(g, W1=g["W1"].T)
    with pytest.raises(ValueError, match=r"`grads\['W1'\]` must have the shape"):
        for step in range(1, 1 + SWEEP_STEPS):
            mon(step, p, bad, loss=1.0)
    assert step == SWEEP_STEPS


def test_check_steps_read_the_gradients_even_with_a_finite_loss():
    p, g, loss = small_problem()
    g = dict(g, W2=g["W2"].copy())
    g["W2"][0, 1] = np.nan
    mon = GradientMonitor(loss, on_fail="raise")
    with pytest.raises(GradientCheckError) as info:
        mon(0, p, g, loss=float(loss(p)))        # due: the check's own read screens g
    assert info.value.report.culprits == ["params['W2']"]
    assert "the gradient of params['W2'] holds 1 NaN/inf" in str(info.value.report)


def test_nonfinite_loss_with_clean_values_blames_the_data_or_loss():
    p, g, loss = small_problem()
    reports = []
    mon = GradientMonitor(loss, on_fail=reports.append)
    mon(0, p, g, loss=float(loss(p)))
    assert mon(1, p, g, loss=float("nan")) is reports[-1]
    rep = reports[-1]
    assert rep.verdict == "nan" and rep.culprits == []
    assert "the data or the loss itself" in str(rep)


def test_nonfinite_parameters_at_a_check_are_named():
    p, g, loss = small_problem()
    p = dict(p, b2=p["b2"].copy())
    p["b2"][1, 0] = np.inf
    reports = []
    GradientMonitor(loss, on_fail=reports.append)(0, p, g)
    assert reports[0].verdict == "nan" and reports[0].culprits == ["params['b2']"]
    assert "params['b2'] holds 1 NaN/inf value(s)" in str(reports[0])


def test_without_the_loss_value_every_step_is_screened():
    # The promise without loss= is unchanged: a bad gradient is reported at its step.
    p, g, loss = small_problem()
    mon = GradientMonitor(loss, every=1000, on_fail="raise")
    mon(0, p, g)
    g = dict(g, W1=g["W1"].copy())
    g["W1"][0, 0] = -np.inf
    with pytest.raises(GradientCheckError):
        mon(1, p, g)


@pytest.mark.parametrize("value", ["1.0", [1.0, 2.0], np.ones(2), True, None])
def test_loss_value_must_be_a_number(value):
    p, g, loss = small_problem()
    mon = GradientMonitor(loss)
    if value is None:
        assert mon(0, p, g, loss=value).passed
        return
    with pytest.raises(TypeError, match=r"`loss` must be the training step's loss value \(a real "
                                        r"number\) or None; got"):
        mon(0, p, g, loss=value)


def test_loss_value_accepts_numpy_scalars():
    p, g, loss = small_problem(np.float32)
    mon = GradientMonitor(loss, every=1000, on_fail=lambda r: None)
    mon(0, p, g, loss=np.float32(loss(p)))
    assert mon(1, p, g, loss=np.asarray(loss(p))) is None
    assert mon(2, p, g, loss=np.float32("nan")).verdict == "nan"


def test_summary_counts_checks_and_screens_apart():
    p, g, loss = small_problem()
    mon = GradientMonitor(loss, every=1000, on_fail=lambda r: None)
    mon(0, p, g)
    bad = dict(g, b1=np.full_like(g["b1"], np.nan))
    for step in range(1, 24):
        mon(step, p, bad)
    s = mon.summary()
    assert s["checks"] == 1 and s["failures"] == 0 and s["nan_events"] == 23
    assert s["first_failure_step"] is None and s["culprits"] == []
    assert s["first_nan_step"] == 1 and s["nan_culprits"] == ["params['b1']"]
    text = str(s)
    assert text.startswith("GradientMonitor: 1 check over 24 steps (every 1000), 0 failed; "
                           "23 non-finite screens")
    assert "1 checks" not in text and "first failure" not in text
    assert "first non-finite value at step 1: params['b1']" in text


def test_summary_of_one_step():
    p, g, loss = small_problem()
    mon = GradientMonitor(loss)
    mon(0, p, g, loss=float(loss(p)))
    assert str(mon.summary()).startswith(
        "GradientMonitor: 1 check over 1 step (every 1000), 0 failed; 0 non-finite screens")


def test_example_passes_the_loss_value_and_catches_the_bug():
    mon, reports, _ = example.train(steps=70, batch=32, hidden=16, lr=0.5, seed=0,
                                    dtype=np.float64, every=20, bug="b2", bug_step=50,
                                    log=lambda *a: None)
    assert reports[0].training_step == 60 and reports[0].culprits == ["params['b2']"]
    assert mon.summary()["nan_events"] == 0


def test_batched_numpy_loss_with_loss_value_no_false_alarm():
    rng = np.random.default_rng(7)
    X, Y = example.spirals(256, rng, np.float32)
    p = example.init(rng, 16, np.float32)
    mon = GradientMonitor(None, every=5, seed=7, on_fail="raise")
    for step in range(60):
        idx = rng.choice(X.shape[1], 32, replace=False)
        xb, yb = X[:, idx], Y[:, idx]
        g = np_grads(p, xb, yb)
        mon(step, p, g, loss_fn=lambda q, xb=xb, yb=yb: np_loss(q, xb, yb),
            loss=float(np_loss(p, xb, yb)))
        p = _sgd(p, g, 0.3)
    assert len(mon.history) == 12 and all(r.passed for r in mon.history)
