"""GradientMonitor's errors speak of `loss_fn` and the parameters; its engine plans
are reused, and verified before a new closure inherits them."""
import numpy as np
import pytest

from fastjac.monitor import GradientMonitor
from test_monitor import small_problem


@pytest.mark.parametrize("make", [
    lambda loss: (lambda q: [loss(q), 1000 * loss(q)]),
    lambda loss: (lambda q: np.stack([loss(q), 1000 * loss(q)], axis=-1)),   # batch-aware
    lambda loss: (lambda q: np.full((2, 2), loss(q))),
])
def test_loss_fn_returning_several_values_is_refused(make):
    # [L, 1000 L] used to pass (only its first entry was checked) or to blame a parameter.
    p, g, loss = small_problem()
    mon = GradientMonitor(make(loss), on_fail="raise")
    with pytest.raises(ValueError, match=r"`loss_fn` must return a scalar, the loss at the "
                                         r"parameters; got .*shape \(2,( 2)?\)"):
        mon(0, p, g)


def test_a_one_element_loss_is_a_scalar():
    p, g, loss = small_problem()
    rep = GradientMonitor(lambda q: np.reshape(loss(q), (1,)), vectorized=False)(0, p, g)
    assert rep.passed


def _message(fn, **kwargs):
    p, g, _ = small_problem()
    with pytest.raises(Exception) as info:
        GradientMonitor(fn, **kwargs)(0, p, g)
    return info.value, str(info.value) + " ".join(getattr(info.value, "__notes__", []))


def _speaks_of_loss_fn(text):
    assert "`loss_fn`" in text or "loss_fn" in text
    for word in ("`f`", "the caller's x", "at x itself", "f(x)", "raised by f "):
        assert word not in text, word


def test_in_place_write_names_loss_fn_and_the_parameters():
    def writes(q):
        q["W1"][0, 0] = 0.0
        return float(np.sum(q["W1"]))

    exc, text = _message(writes, vectorized=False)
    assert isinstance(exc, ValueError)
    assert "`loss_fn` tried to modify the parameters in place" in text and "read-only" in text
    assert "the parameters stay intact" in text
    _speaks_of_loss_fn(text)


def test_loss_fn_returning_none_is_named():
    exc, text = _message(lambda q: None)
    assert isinstance(exc, TypeError)
    assert text.startswith("`loss_fn` must return a number or an array of numbers; got None "
                           "(at the parameters)")
    _speaks_of_loss_fn(text)


def test_loss_fn_changing_its_shape_is_named():
    calls = []

    def shifty(q):
        calls.append(1)
        return 0.0 if len(calls) == 1 else np.zeros(3)

    exc, text = _message(shifty, vectorized=False)
    assert "`loss_fn` must return the same shape at every point: loss_fn(params) has shape ()" in text
    _speaks_of_loss_fn(text)


def test_an_error_inside_loss_fn_is_kept_with_a_note_naming_it():
    def broken(q):
        raise KeyError("W9")

    exc, text = _message(broken)
    assert isinstance(exc, KeyError)
    assert "raised by loss_fn (at the parameters)" in text
    _speaks_of_loss_fn(text)


def _counted(loss, calls, batch_ok=True):
    def counted(q):
        calls.append(np.ndim(q["b2"]))
        if np.ndim(q["b2"]) == 3 and not batch_ok:
            # Right shape, wrong values: every point of a batch gets the first one's loss.
            first = {k: v[0] for k, v in q.items()}
            return np.full(q["b2"].shape[0], loss(first))
        return loss(q)
    return counted


def test_a_fresh_closure_inherits_the_batching_decision_after_one_verification():
    p, g, loss = small_problem()
    mon = GradientMonitor(None, every=1, seed=0, on_fail="raise")
    calls = []
    mon(0, p, g, loss_fn=_counted(loss, calls))   # probes: batch, then single-point checks
    calls.clear()
    mon(1, p, g, loss_fn=_counted(loss, calls))   # a new closure of the same code
    # loss(x), the 10 perturbed points in one batch, one single call verifying it: no probe.
    assert calls == [2, 3, 2]
    calls.clear()
    fn = _counted(loss, calls)
    mon(2, p, g, loss_fn=fn)
    calls.clear()
    mon(3, p, g, loss_fn=fn)                      # the same closure: its plan, trusted
    assert calls == [2, 3]


def test_a_closure_that_batches_wrongly_is_not_trusted_on_its_siblings_word():
    # Same code object as a closure that batches correctly, but this one mixes the
    # points of a batch: the inherited decision is verified, rejected, and the
    # check falls back to one call per point instead of raising a false alarm.
    p, g, loss = small_problem()
    mon = GradientMonitor(None, every=1, seed=0, on_fail="raise")
    mon(0, p, g, loss_fn=_counted(loss, []))
    report = mon(1, p, g, loss_fn=_counted(loss, [], batch_ok=False))
    assert report.passed
    assert report.fallback is not None and "`loss_fn` could not be evaluated on a batch" in \
        report.fallback


def test_default_rtol_comes_from_the_tolerance_table():
    from fastjac.tolerances import MONITOR_RTOL

    for dtype in (np.float64, np.float32):
        p, g, loss = small_problem(dtype)
        rep = GradientMonitor(loss)(0, p, g)
        assert rep.rtol == MONITOR_RTOL[np.dtype(dtype).name]
    assert MONITOR_RTOL["float64"] == 1e-3 and MONITOR_RTOL["float32"] == 1e-2


def test_report_is_a_jacobian_check_with_shared_statuses():
    from fastjac import JacobianCheck
    from fastjac.report import STATUSES

    p, g, loss = small_problem()
    reports = []
    GradientMonitor(loss, on_fail=reports.append, seed=4)(0, p, dict(g, b1=g["b1"] * 0.5))
    rep = reports[0]
    assert isinstance(rep, JacobianCheck) and rep.verdict == "fail" and rep.seed == 4
    assert {w.status for w in rep.worst} <= set(STATUSES)
    assert rep.counts["bug"] >= 1 and rep.status_codes.dtype == np.int8
    assert rep.worst[0].status == "bug" and rep.culprits == ["params['b1']"]


def test_public_names_and_signatures_are_kept():
    import inspect

    import fastjac
    import fastjac.monitor as m

    assert m.__all__ == ["GradientMonitor", "GradientWarning", "GradientCheckError",
                         "MonitorReport", "CheckRecord", "DEFAULT_EVERY"]
    assert fastjac.GradientMonitor is m.GradientMonitor and m.DEFAULT_EVERY == 1000
    init = inspect.signature(m.GradientMonitor)
    assert list(init.parameters) == ["loss_fn", "every", "directions", "samples", "rtol",
                                     "on_fail", "seed", "budget", "vectorized"]
    assert {k: v.default for k, v in init.parameters.items() if k != "loss_fn"} == dict(
        every=1000, directions=2, samples=2, rtol=None, on_fail="warn", seed=None, budget=None,
        vectorized="auto")
    call = inspect.signature(m.GradientMonitor.__call__)
    # loss= is new (keyword-only, default None); the rest is as before.
    assert list(call.parameters) == ["self", "step", "params", "grads", "loss_fn", "loss"]
    assert call.parameters["loss"].default is None
    assert issubclass(m.GradientCheckError, AssertionError)
    assert issubclass(m.GradientWarning, UserWarning)
    assert issubclass(m.MonitorReport, fastjac.JacobianCheck)
