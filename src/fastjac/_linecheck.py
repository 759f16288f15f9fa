"""Line checks: the loss along a few directions, against the gradient's prediction.

A check of the gradient ``g`` of a loss ``L`` at the parameters ``x`` moves
them along a few *lines*: whole-vector directions ``d`` (one aligned with
the gradient, the others random signs) and single coordinates.  For each,
the numeric value ``N = (L(x + d) - L(x - d)) / 2`` is compared with the
prediction ``A = g . (d - m) / 2``, where ``d`` and ``m`` are the steps the
perturbed points really take in the parameters' dtype (``fl(x + d) - x``
and ``fl(x - d) - x``), so rounding the perturbed points costs nothing.

Reading order: the directions (:class:`Directions`,
:func:`build_directions`, :func:`sample_coordinates`); the lines
(:class:`DenseLine`, :class:`CoordLine`) and the blocks the engine
evaluates; the verdict of one line (:func:`compare`); :class:`LineCheck`,
which measures lines in one stream of batched evaluations through the
engine's internal API, probes the loss's round-off, asks for second
opinions and searches for the culprit; :func:`run_check`, one check.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ._engine import DenseDirections, Prepared, coordinate_block, prepare, run
from ._monitor_params import ParamLayout, loss_fn_error
from ._monitor_report import ALL_PARAMS, Entry
from ._validate import describe

__all__ = ["STEP_POWER", "Directions", "build_directions", "sample_coordinates", "DenseLine",
           "CoordLine", "CheckState", "LineCheck", "Outcome", "run_check", "prepare_loss",
           "compare", "dot64"]

# Evaluation error of one loss value, in units of EPS * |loss|: a loss is a
# reduction over a batch of products (pairwise summation keeps the error at
# a few ulps times log2 of the terms), so 32 ulps covers batches of ~1e4
# terms with a safety factor of 2.
LOSS_ULPS = 32
# Rounding of the analytic gradient itself (backprop sums products over the
# batch), in units of EPS * sum_i |g_i d_i|.
GRAD_ULPS = 32
#: Relative step of the directions and coordinates: EPS**(1/3), the engine's
#: central-difference step.  sqrt(EPS) would minimize the verdict's round-off
#: + curvature allowance in theory, but in float32 it buried the signal of a
#: random direction in loss round-off (measured on a 1M-parameter softmax
#: layer: signal/noise ~1 at sqrt(EPS), ~10 at EPS**(1/3)).
STEP_POWER = 1 / 3
# The round-off probe (LineCheck.measure_with_probe): a thousandth of the
# gradient direction's step, and a factor 4 on what it measures (one sample
# of a noise whose amplitude it estimates).
PROBE_FRACTION = 1e-3
PROBE_SAFETY = 4.0
# Blocks with a gradient norm below this fraction of the largest are not
# amplified further when directions are balanced across parameters.
BALANCE_FLOOR = 1e-3
# Each line is evaluated at x - d and x + d; the two raw values come back as
# two "estimates" with unit weights.
_OFFSETS = (-1.0, 1.0)
_RAW = ((1.0, 0.0), (0.0, 1.0))
# Blocks of lines of different kinds are built as one dense copy up to this size.
_MIX_BYTES = 1 << 18


def dot64(a, b) -> float:
    """``sum(a * b)`` accumulated in float64 or wider, without a widened copy."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.dtype == np.float64 and b.dtype == np.float64:
        return float(np.dot(a, b))
    return float(np.einsum("i,i->", a, b, dtype=np.result_type(a, b, np.float64)))


# --------------------------------------------------------------------------
# directions
# --------------------------------------------------------------------------
@dataclass
class Directions:
    """Realized whole-vector steps, with the gradient's prediction along each.

    ``D[r]`` is a step that ``x0 + D[r]`` takes exactly; ``A[r, p]`` is
    ``g_p . (d - m)_p / 2`` over parameter ``p`` (``m`` the step ``x0 - D[r]``
    really takes), and ``absA[r, p]`` the same sum over ``|g (d - m)| / 2``,
    which sizes the gradient's own rounding in the error model.
    """

    D: np.ndarray          # (rows, n)
    A: np.ndarray          # (rows, P)
    absA: np.ndarray       # (rows, P)


def _realize(D, rows, x0, grads, bounds, A):
    """Make each row of ``D`` a step ``x0 + d`` takes exactly; fill ``A`` for it."""
    tmp = np.empty_like(x0)
    with np.errstate(over="ignore", invalid="ignore"):
        for r in rows:
            d = D[r]
            np.add(x0, d, out=tmp)
            np.subtract(tmp, x0, out=d)        # the plus-side step really taken
            np.subtract(x0, d, out=tmp)
            tmp -= x0                          # m, the minus-side step really taken
            for p, (a, b) in enumerate(bounds):
                if b > a:
                    g = grads[p].reshape(-1)
                    A[r, p] = (dot64(g, d[a:b]) - dot64(g, tmp[a:b])) / 2.0


def build_directions(layout: ParamLayout, x0, grads, norms, k, tau, rng) -> Directions:
    """``k`` balanced directions (gradient-aligned, then random signs) and the probe.

    Each parameter block is scaled so that it contributes about equally to
    ``g . d`` (a 0.5x bug in a small bias is as visible as one in a big
    weight); element ``j`` moves by at most ``tau * max(1, |x_j|)``.  Row
    ``k`` is the round-off probe: the gradient direction at
    ``PROBE_FRACTION`` of its step.
    """
    n, dt, bounds = layout.size, layout.dtype, layout.bounds
    P = len(bounds)
    D = np.empty((k + 1 if k else 0, n), dtype=dt)
    A, absA = np.zeros((D.shape[0], P)), np.zeros((D.shape[0], P))
    if not k:
        return Directions(D, A, absA)
    top = max(norms) if norms else 0.0
    scale = [1.0 / max(nm, BALANCE_FLOOR * top) if top > 0 else 1.0 for nm in norms]
    sx = np.abs(x0)
    np.maximum(sx, 1.0, out=sx)
    peaks = [scale[p] ** 2 * max(float(g.max()), -float(g.min())) if g.size else 0.0
             for p, g in enumerate(grads)]
    big = max(peaks, default=0.0)
    for p, (a, b) in enumerate(bounds):
        if not math.isfinite(big) or big == 0:
            D[0, a:b] = tau
        else:
            np.multiply(grads[p].reshape(-1), dt.type(scale[p] ** 2 * tau / big), out=D[0, a:b])
    D[0] *= sx
    widest = max(scale)
    gsx = [dot64(np.abs(grads[p]), sx[a:b]) if k > 1 and b > a else 0.0
           for p, (a, b) in enumerate(bounds)]
    for i in range(1, k):
        for p, (a, b) in enumerate(bounds):
            bits = np.unpackbits(np.frombuffer(rng.bytes((b - a + 7) // 8), np.uint8), count=b - a)
            v = tau * scale[p] / widest
            row = D[i, a:b]
            np.multiply(bits, dt.type(-2 * v), out=row)  # -v where a bit is set, +v elsewhere
            row += dt.type(v)
            row *= sx[a:b]
            absA[i, p] = v * gsx[p]  # |d_j| = v sx_j up to the rounding of x0 + d
    del sx
    _realize(D, range(k), x0, grads, bounds, A)
    np.multiply(D[0], dt.type(PROBE_FRACTION), out=D[k])
    _realize(D, [k], x0, grads, bounds, A)
    # Along the gradient every term g_j (d_j - m_j) is >= 0: the sum of the
    # absolute values is the prediction itself.
    absA[0], absA[k] = np.abs(A[0]), np.abs(A[k])
    return Directions(D, A, absA)


def scaled_directions(dirs: Directions, rows, factor, x0, grads, bounds) -> Directions:
    """Rows ``rows`` of ``dirs`` at ``factor`` times their step, realized anew."""
    D = dirs.D[rows] * dirs.D.dtype.type(factor)
    A = np.zeros((len(rows), dirs.A.shape[1]))
    _realize(D, range(len(rows)), x0, grads, bounds, A)
    return Directions(D, A, dirs.absA[rows] * factor)


def sample_coordinates(layout: ParamLayout, x0, samples, tau, rng) -> list:
    """``samples`` coordinates spread over the parameters, as :class:`CoordLine`."""
    P, out = len(layout.bounds), []
    start = int(rng.integers(P))
    for s in range(samples):
        p = (start + s) % P
        a, b = layout.bounds[p]
        if b == a:
            continue
        j = int(rng.integers(a, b))
        h = np.array(tau * max(1.0, abs(float(x0[j]))), dtype=layout.dtype)
        out.append(CoordLine(j, float((x0[j] + h) - x0[j]), p, layout.names[p],
                             layout.locate(j)[1]))
    return out


# --------------------------------------------------------------------------
# lines
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseLine:
    """Row ``row`` of the directions, restricted to the parameters ``blocks``."""

    row: int
    blocks: tuple
    param: str = ALL_PARAMS
    direction: str = "g-dir"
    index = None

    def expected(self, dirs: Directions, state) -> tuple:
        A = float(sum(dirs.A[self.row, p] for p in self.blocks))
        return A, float(sum(dirs.absA[self.row, p] for p in self.blocks))

    def fill(self, out, dirs: Directions, layout: ParamLayout) -> None:
        for p in self.blocks:
            a, b = layout.bounds[p]
            out[a:b] = dirs.D[self.row, a:b]

    def rescaled(self, factor, rows: dict, x0) -> DenseLine:
        return replace(self, row=rows[self.row])


@dataclass(frozen=True)
class CoordLine:
    """Element ``j`` (of parameter ``block``, at ``index`` inside it) moved by ``h``."""

    j: int
    h: float
    block: int
    param: str
    index: tuple
    direction = "coordinate"

    def expected(self, dirs, state) -> tuple:
        x = state.x0[self.j]
        minus = float((x - x.dtype.type(self.h)) - x)  # the step x - h really takes
        a = state.layout.bounds[self.block][0]
        A = float(state.grads[self.block].reshape(-1)[self.j - a]) * (self.h - minus) / 2.0
        return A, abs(A)

    def fill(self, out, dirs, layout) -> None:
        out[self.j] = self.h

    def rescaled(self, factor, rows, x0) -> CoordLine:
        h = np.asarray(self.h * factor, x0.dtype)
        return replace(self, h=float((x0[self.j] + h) - x0[self.j]))


class _LineBlocks:
    """Lines as engine blocks of at most ``size`` directions, each built when reached:
    a view of the directions when it can be, the coordinates' own sparse form, or
    a dense copy for lines restricted to some parameters.

    A block holds lines of one kind, so that none is copied into a dense row
    it does not need, unless the whole block is small enough to copy for
    nothing (then a batch-aware ``loss_fn`` gets every line in one call).
    """

    def __init__(self, lines, dirs, layout, size):
        self.lines, self.dirs, self.layout = lines, dirs, layout
        self.full = tuple(range(len(layout.bounds)))
        size = max(1, int(size))
        mix = layout.size * layout.dtype.itemsize * min(size, len(lines)) <= _MIX_BYTES
        self.spans, i = [], 0
        while i < len(lines):
            j = min(len(lines), i + size)
            if not mix:
                kind = self._kind(lines[i])
                j = next((t for t in range(i + 1, j) if self._kind(lines[t]) != kind), j)
            self.spans.append((i, j))
            i = j

    def _kind(self, line):
        if isinstance(line, CoordLine):
            return "coordinate"
        return "full" if line.blocks == self.full else "part"

    def __len__(self):
        return len(self.spans)

    def __iter__(self):
        for i, j in self.spans:
            yield self._block(self.lines[i:j], np.arange(i, j))

    def _block(self, chunk, cols):
        dt = self.layout.dtype
        if all(isinstance(line, CoordLine) for line in chunk):
            return coordinate_block([line.j for line in chunk],
                                    np.array([line.h for line in chunk], dtype=dt), cols)
        rows = [line.row for line in chunk
                if isinstance(line, DenseLine) and line.blocks == self.full]
        if len(rows) == len(chunk) and rows == list(range(rows[0], rows[0] + len(rows))):
            return DenseDirections(self.dirs.D[rows[0]:rows[0] + len(rows)], cols)
        V = np.zeros((len(chunk), self.layout.size), dtype=dt)
        for i, line in enumerate(chunk):
            line.fill(V[i], self.dirs, self.layout)
        return DenseDirections(V, cols)


# --------------------------------------------------------------------------
# one check
# --------------------------------------------------------------------------
@dataclass
class CheckState:
    """What the steps of one check share."""

    prep: Prepared            # the engine's plan bound to the parameters: x0, L(x0)
    layout: ParamLayout
    grads: list
    rtol: float
    eps_g: float              # EPS of the gradients' dtype
    eps_l: float              # EPS of the loss's (and parameters') dtype
    noise_floor: float = 0.0  # the measured round-off, once probed
    notes: list = field(default_factory=list)

    @property
    def x0(self) -> np.ndarray:
        return self.prep.x0

    @property
    def L0(self) -> float:
        return float(self.prep.fx.reshape(-1)[0])


def _status(err, tolerance, noise) -> str:
    if err <= tolerance:
        return "ok"
    return "noise" if err <= tolerance + noise else "bug"


def compare(line, L0, Lm, Lp, A, absA, state: CheckState) -> Entry:
    """The verdict of one line: ``|A - N| <= rtol max(|A|, |N|) + noise``."""
    N = (Lp - Lm) / 2.0
    if not (math.isfinite(N) and math.isfinite(A) and math.isfinite(L0)):
        return Entry.nonfinite(line.param, line.index, line.direction, A, N)
    noise = (LOSS_ULPS * state.eps_l * max(abs(L0), abs(Lm), abs(Lp))
             + abs(Lp - 2.0 * L0 + Lm) / 2.0 + GRAD_ULPS * state.eps_g * absA
             + state.noise_floor)
    err, scale = abs(A - N), max(abs(A), abs(N))
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    tol = state.rtol * scale
    return Entry.of(line.param, line.index, line.direction, A, N, err, rel, tol, noise,
                    _status(err, tol, noise))


def _engine_call(fn, *args, **kwargs):
    """An engine call with the user's RuntimeWarnings silenced and its messages
    in the monitor's terms."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    except Exception as exc:
        new = loss_fn_error(exc)
        if new is exc:
            raise
        raise new from None


def prepare_loss(flat_loss, x0, vectorized) -> Prepared:
    """The engine's plan for ``flat_loss`` at ``x0`` (``L(x0)`` evaluated), or a clear error."""
    prep = _engine_call(prepare, flat_loss, x0, method="central", order=2,
                        vectorized=vectorized, progress=False)
    if prep.fx.size != 1:
        raise ValueError(
            f"`loss_fn` must return a scalar, the loss at the parameters; got "
            f"{describe(prep.fx)}. The monitor checks the gradient of one number: "
            "sum the terms into one loss.")
    return prep


class LineCheck:
    """Measure lines and judge them, with a round-off probe, second opinions and
    a search for the parameter at fault."""

    def __init__(self, state: CheckState):
        self.state = state

    def measure(self, dirs: Directions, lines) -> list:
        """Evaluate every line in one stream of engine blocks; one :class:`Entry` each."""
        st = self.state
        Lm, Lp = np.full(len(lines), np.nan), np.full(len(lines), np.nan)

        def scatter(block, D):
            Lm[block.cols], Lp[block.cols] = D[0, :, 0], D[1, :, 0]

        _engine_call(run, st.prep, lambda b: _LineBlocks(lines, dirs, st.layout, b), scatter,
                     count=len(lines), offsets=_OFFSETS, combos=_RAW)
        return [compare(line, st.L0, Lm[i], Lp[i], *line.expected(dirs, st), st)
                for i, line in enumerate(lines)]

    def measure_with_probe(self, dirs: Directions, lines, probe: DenseLine) -> list:
        """:meth:`measure`, plus a probe of the loss's own round-off.

        The model ``32 EPS |L|`` assumes the loss is computed from quantities
        of its own size.  It often is not: late in training a softmax
        cross-entropy is a logit minus its log-sum-exp, both ~10 while the
        loss is ~1e-4, so its round-off is ~EPS * 10 and the loss moves on a
        grid far coarser than ``EPS |L|``.  The probe is the gradient-aligned
        direction at ``PROBE_FRACTION`` of its step, in the same batch: its
        true change is negligible, so its discrepancy ``|A - N|`` is that
        round-off, measured.  ``PROBE_SAFETY`` times it joins every entry's
        noise.  A wrong gradient moves the probe by ``PROBE_FRACTION`` of its
        own error, so the floor stays far below any real discrepancy.
        """
        # The probe goes right after the whole-vector directions, so that their
        # rows and its row are one view of the directions.
        at = next((i for i, line in enumerate(lines) if not isinstance(line, DenseLine)),
                  len(lines))
        results = self.measure(dirs, list(lines[:at]) + [probe] + list(lines[at:]))
        found = results.pop(at)
        if found.status != "nan" and math.isfinite(found.abs_error):
            floor = self.state.noise_floor = PROBE_SAFETY * found.abs_error
            for e in results:
                if e.status != "nan":
                    e.noise += floor
                    e.status = _status(e.abs_error, e.tolerance, e.noise)
        return results

    def second_opinion(self, dirs: Directions, lines, entries) -> None:
        """Re-measure failed entries at a quarter and at four times the step.

        A wrong gradient gives the same discrepancy at any step.  Truncation
        and kinks (ReLU crossing zero inside the step) shrink at the smaller
        step; round-off shrinks at the larger one, which matters in float32
        late in training, when the gradient is tiny next to the loss.  A
        failure that passes at either step, or whose relative error falls
        below half there, is downgraded to ``'noise'`` with a note.
        """
        for factor in (0.25, 4.0):
            todo = [r for r, e in enumerate(entries) if e.status == "bug"]
            if not todo:
                return
            self._remeasure(dirs, lines, entries, todo, factor)

    def _remeasure(self, dirs, lines, entries, todo, factor):
        st = self.state
        rows = sorted({lines[r].row for r in todo if isinstance(lines[r], DenseLine)})
        sub = scaled_directions(dirs, rows, factor, st.x0, st.grads, st.layout.bounds)
        index = {row: i for i, row in enumerate(rows)}
        again = self.measure(sub, [lines[r].rescaled(factor, index, st.x0) for r in todo])
        what = "a quarter of" if factor < 1 else "four times"
        cause = "truncation or a kink" if factor < 1 else "round-off"
        for r, e in zip(todo, again):
            if e.status in ("ok", "noise") or e.rel_error < 0.5 * entries[r].rel_error:
                entries[r].status = "noise"
                st.notes.append(
                    f"{entries[r].where}: the discrepancy shrank from {entries[r].rel_error:.2g} "
                    f"to {e.rel_error:.2g} at {what} the step ({cause}, not a bug)")

    def confirm(self, dirs: Directions, failed) -> list:
        """The culprit search: each failed direction again, one parameter at a time."""
        layout = self.state.layout
        lines = [DenseLine(line.row, (p,), layout.names[p], line.direction)
                 for line in failed for p, (a, b) in enumerate(layout.bounds)
                 if b > a and np.any(dirs.D[line.row, a:b])]
        if not lines:
            return []
        entries = self.measure(dirs, lines)
        self.second_opinion(dirs, lines, entries)
        return entries


@dataclass
class Outcome:
    """What one check found, for its report and the monitor's history."""

    entries: list
    per_param: dict
    culprits: list
    max_rel: float
    notes: list


def run_check(state: CheckState, dirs: Directions, coords) -> Outcome:
    """Measure the directions (with the probe) and the coordinates; on a failed
    direction, find the parameters at fault."""
    check = LineCheck(state)
    full = tuple(range(len(state.layout.bounds)))
    k = max(0, dirs.D.shape[0] - 1)
    dir_lines = [DenseLine(i, full, ALL_PARAMS, "g-dir" if i == 0 else f"rand-{i}")
                 for i in range(k)]
    lines = dir_lines + list(coords)
    if k:
        results = check.measure_with_probe(dirs, lines, DenseLine(k, full, ALL_PARAMS,
                                                                  "noise-probe"))
    else:
        results = check.measure(dirs, lines)
    check.second_opinion(dirs, lines, results)
    failed = [line for line, e in zip(dir_lines, results) if e.failed]
    per_param: dict = {}
    confirmed = check.confirm(dirs, failed) if failed else []
    results += confirmed
    for e in confirmed + [e for e in results[k:] if e.direction == "coordinate" and e.failed]:
        per_param[e.param] = max(per_param.get(e.param, 0.0), e.rel_error)
    excess: dict = {}
    for e in results:
        if e.param != ALL_PARAMS and e.failed:
            excess[e.param] = max(excess.get(e.param, 0.0), e.excess)
    culprits = sorted(excess, key=excess.get, reverse=True)
    notes = state.notes
    if failed and not culprits:
        notes.append("the whole-vector check failed but no single parameter did on its own: "
                     "the error may be spread over several parameters")
    if any(e.status == "nan" for e in results):
        notes.append("the loss or the analytic value was NaN/inf at the check points")
    dir_rel = [e.rel_error for e in results[:k]]
    max_rel = max(dir_rel or [e.rel_error for e in results] or [0.0])
    return Outcome(results, per_param, culprits, max_rel, notes)
