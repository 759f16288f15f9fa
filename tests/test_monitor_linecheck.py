"""The monitor's line checks against oracles: realized steps, exact predictions,
the verdict table, and the lines' blocks for the engine."""
import math

import numpy as np
import pytest

from fastjac._linecheck import (STEP_POWER, CheckState, CoordLine, DenseLine, build_directions,
                                compare, sample_coordinates)
from fastjac._monitor_params import layout_of
from fastjac.steps import eps_for


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = {"W": rng.standard_normal((30, 20)).astype(dtype) * 3,
         "b": rng.standard_normal(7).astype(dtype) * 1e-3,
         "s": np.asarray(rng.standard_normal(), dtype=dtype)}
    # Gradient norms 1e2 apart: within the balancing range (1e3, BALANCE_FLOOR).
    g = {k: (rng.standard_normal(v.shape) * scale).astype(dtype)
         for (k, v), scale in zip(p.items(), (0.05, 5.0, 0.2))}
    layout, parrs, garrs = layout_of(p, g)
    return layout, layout.pack(p), garrs, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_directions_are_realized_and_their_predictions_exact(dtype):
    layout, x0, garrs, rng = _problem(dtype)
    tau = eps_for(dtype) ** STEP_POWER
    norms = [float(np.linalg.norm(g.astype(np.float64))) for g in garrs]
    dirs = build_directions(layout, x0, garrs, norms, 3, tau, rng)
    assert dirs.D.shape == (4, layout.size) and dirs.D.dtype == dtype
    g64 = np.concatenate([g.reshape(-1) for g in garrs]).astype(np.float64)
    for r in range(4):
        d = dirs.D[r]
        assert np.array_equal((x0 + d) - x0, d)          # x0 + d is exact
        m = (x0 - d) - x0                                 # the minus side really taken
        # The oracle: every product exactly, summed with math.fsum.
        terms = g64 * (d.astype(np.float64) - m.astype(np.float64)) / 2
        for p, (a, b) in enumerate(layout.bounds):
            assert dirs.A[r, p] == pytest.approx(math.fsum(terms[a:b]), rel=1e-12, abs=1e-300)
            exact_abs = math.fsum(np.abs(terms[a:b]))
            # Exact along the gradient; from |d_j| = v sx_j for random signs,
            # off by the rounding of x0 + d only (EPS / tau relative).
            assert dirs.absA[r, p] == pytest.approx(exact_abs, rel=8 * eps_for(dtype) / tau)
        # No element moves by more than tau * max(1, |x_j|) (plus its rounding).
        bound = tau * np.maximum(1.0, np.abs(x0.astype(np.float64)))
        assert np.all(np.abs(d.astype(np.float64)) <= bound * (1 + 4 * eps_for(dtype)) +
                      np.spacing(np.abs(x0)).astype(np.float64))
    # Row 0 follows the gradient; the probe (last row) is a thousandth of it,
    # realized (within one rounding of x0 + d: in float32 that is a large part
    # of so small a step, which is why its prediction uses the realized step).
    assert np.all(np.sign(dirs.D[0]) * np.sign(g64) >= 0)
    wanted = 1e-3 * dirs.D[0].astype(np.float64)
    assert np.all(np.abs(dirs.D[3] - wanted) <= np.spacing(np.abs(x0) + np.abs(dirs.D[3])))
    # Balanced: each parameter contributes about equally along the gradient.
    share = dirs.A[0] / dirs.A[0].sum()
    assert np.all(share > 0.05), share


def test_coordinates_are_spread_and_realized():
    layout, x0, garrs, rng = _problem(np.float32, seed=3)
    coords = sample_coordinates(layout, x0, 3, 0.01, rng)
    assert sorted(c.block for c in coords) == [0, 1, 2]          # one per parameter
    for c in coords:
        assert layout.locate(c.j) == (c.block, c.index)
        assert np.float32(x0[c.j] + np.float32(c.h)) - x0[c.j] == np.float32(c.h)


class _State(CheckState):
    def __init__(self, rtol=1e-3, eps=1e-16, floor=0.0):
        self.rtol, self.eps_g, self.eps_l, self.noise_floor, self.notes = rtol, eps, eps, floor, []


_LINE = DenseLine(0, (0,), "params['W']", "g-dir")


@pytest.mark.parametrize("A, Lm, Lp, floor, status", [
    (1.0, -1.0, 1.0, 0.0, "ok"),                   # exact
    (1.0, -0.9995, 0.9995, 0.0, "ok"),             # within rtol = 1e-3
    (1.0, -0.99, 0.99, 0.0, "bug"),                # 1e-2 off, no noise to cover it
    (1.0, -0.99, 0.99, 0.01, "noise"),             # the same, covered by a measured floor
    (1.0, -0.99 + 0.02, 0.99 + 0.02, 0.0, "noise"),  # curvature |Lp - 2 L0 + Lm| / 2 = 0.02
    (1.0, -0.99 + 0.005, 0.99 + 0.005, 0.0, "bug"),  # too little curvature to cover it
    (float("nan"), -1.0, 1.0, 0.0, "nan"),
    (1.0, -1.0, float("inf"), 0.0, "nan"),
])
def test_verdict_of_one_line(A, Lm, Lp, floor, status):
    e = compare(_LINE, 0.0, Lm, Lp, A, abs(A), _State(floor=floor))
    assert e.status == status
    if status != "nan":
        N = (Lp - Lm) / 2
        assert e.numeric == N and e.abs_error == abs(A - N)
        assert e.rel_error == abs(A - N) / max(abs(A), abs(N))
        assert e.where == "params['W'] (g-dir)"


def test_a_coordinate_line_predicts_from_both_realized_steps():
    layout, x0, garrs, rng = _problem(np.float32)
    x0 = x0.copy()
    # Just inside |x| < 1: x + h stays inside (exact), x - h crosses into the
    # binade above, whose ulp is twice as large, and rounds.
    x0[5] = -(np.float32(1.0) - np.float32(2.0 ** -24))
    h = 2.0 ** -23
    assert float((x0[5] + np.float32(h)) - x0[5]) == h
    line = CoordLine(5, h, 0, "params['W']", (0, 5))

    class State:
        pass
    st = State()
    st.x0, st.layout, st.grads = x0, layout, garrs
    A, absA = line.expected(None, st)
    minus = float((x0[5] - np.float32(h)) - x0[5])
    assert minus != -h                       # the two sides really differ here
    g = float(garrs[0].reshape(-1)[5])
    assert A == g * (h - minus) / 2 and absA == abs(A)
