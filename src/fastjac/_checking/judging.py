"""The judge: flags, second opinions, statuses, verdict, worst entries.

Costs O(R K) numpy work and nothing more: the first pass runs over column
chunks (never a Python object per entry, never a temporary the size of the
problem), statuses are ``int8`` codes, the worst entries are found with
``argpartition``, and labels are made only for the entries shown.

1. *First pass*: an entry is flagged when ``|numeric - expected|`` exceeds
   ``atol + rtol |expected|`` (NaN never passes).
2. *Second opinions*: the flagged columns that miss most (up to
   :data:`REVIEW_COLUMNS`) are re-measured at nine points each, all in one
   batched evaluation, and classified (:mod:`.review`); what is irregular
   there is measured once more at a quarter of the spacing.
3. Flagged entries beyond the review budget are judged from the first
   estimate and its round-off model, and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import tolerances as T
from .._engine import values
from .._vocabulary import STATUS_CODES, STATUS_NAMES, counts_of, verdict_of
from ..report import Mismatch
from .review import OFFSETS, classify, converging

__all__ = ["judge", "Judgement", "REVIEW_COLUMNS"]

#: Columns re-measured by second opinions, at most.
REVIEW_COLUMNS = 32
#: Stop reviewing once this many columns hold a confirmed bug.
CONFIRMED_ENOUGH = 4
#: Entries listed in a report.
WORST = 10
#: Entries per chunk of the first pass (a few hundred KiB of temporaries).
_CHUNK = 1 << 15

# Flagged, not yet judged: a code outside the vocabulary, replaced before the end.
_FLAG = np.int8(100)
_SEVERITY = np.array([0, 1, 2, 2, 3, 4, 5], dtype=np.int8)  # ok < noise < kinks < inconclusive < bug < nan


@dataclass
class Judgement:
    """What the judge decided about a :class:`~.problem.Problem`."""

    codes: np.ndarray | None          # (R, K) int8, None when every entry is ok
    counts: dict
    verdict: str
    second: dict = field(default_factory=dict)    # (r, k) -> re-estimate
    #: ``(r, k, sentence, status)`` from the second opinions, a few per status.
    evidence: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reviewed: int = 0
    #: Entries whose second opinion found a kink or a jump at x: their first
    #: estimate is no derivative, so no ratio is read off them.
    at_kink: set = field(default_factory=set)


def _chunks(K, R):
    step = max(1, _CHUNK // max(1, R))
    for k0 in range(0, K, step):
        yield slice(k0, min(K, k0 + step))


def first_pass(problem):
    """``(codes or None, column_ratio)``: flagged entries and how far each column misses."""
    R, K = problem.R, problem.K
    codes, ratio = None, None
    for sl in _chunks(K, R):
        q = problem.numeric[:, sl]
        e = np.asarray(problem.expected[:, sl], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(q - e)
            tol = problem.tolerance(slice(None), sl, e)
            ok = err <= tol
        ok &= np.isfinite(e)  # an infinite expected value would pass its own infinite tolerance
        if ok.all():
            continue
        if codes is None:
            codes = np.zeros((R, K), dtype=np.int8)
            ratio = np.zeros(K)
        bad = ~ok
        finite = np.isfinite(q) & np.isfinite(e)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            allowed = tol + T.NOISE_FACTOR * problem.roundoff(slice(None), sl, q)
            # Within the round-off of the first estimate: nothing a second look at a
            # smaller step (with more round-off) could settle.
            within = bad & finite & (err <= allowed)
            r = np.where(bad & finite, err / (allowed + 1e-300), 0.0)
        block = codes[:, sl]
        block[bad] = _FLAG
        block[within] = STATUS_CODES["noise"]
        block[bad & ~finite] = STATUS_CODES["nan"]
        ratio[sl] = np.max(np.where(within, 0.0, r), axis=0)
    return codes, ratio


def judge(problem) -> Judgement:
    codes, ratio = first_pass(problem)
    if codes is None:
        counts = dict.fromkeys(STATUS_NAMES, 0)
        counts["ok"] = problem.R * problem.K
        return Judgement(None, counts, "pass")
    j = Judgement(codes, {}, "fail")
    if np.any(codes == STATUS_CODES["noise"]):
        j.notes.append("some entries differ by more than the tolerance but by less than the "
                       "first estimate's round-off (f's value is large next to its "
                       "derivative there): finite-difference noise.")
    flagged_cols = np.flatnonzero(np.any(codes == _FLAG, axis=0))
    order = flagged_cols[np.argsort(-ratio[flagged_cols], kind="stable")]
    _review(problem, j, order[:REVIEW_COLUMNS])
    rest = codes == _FLAG  # beyond the review budget
    if rest.any():
        _first_estimate_only(problem, codes, rest)
        n_rest = int(np.any(rest, axis=0).sum())
        j.notes.append(f"{n_rest} flagged column(s) were judged from the first estimate alone "
                       f"(second opinions stop after {CONFIRMED_ENOUGH} confirmed bugs or "
                       f"{REVIEW_COLUMNS} columns).")
    j.counts = counts_of(codes)
    j.verdict = verdict_of(j.counts)
    return j


def _first_estimate_only(problem, codes, rest):
    for sl in _chunks(problem.K, problem.R):
        sub = rest[:, sl]
        if not sub.any():
            continue
        rows, cols = np.nonzero(sub)
        cols = cols + sl.start
        q = problem.numeric[rows, cols]
        e = np.asarray(problem.expected[rows, cols], dtype=np.float64)
        allowed = problem.tolerance(rows, cols, e) + T.NOISE_FACTOR * problem.roundoff(rows, cols, q)
        with np.errstate(invalid="ignore"):
            codes[rows, cols] = np.where(np.abs(q - e) <= allowed, STATUS_CODES["noise"],
                                         STATUS_CODES["bug"])


def _review(problem, j, cols):
    """Second opinions for the flagged entries of ``cols``, batched."""
    if len(cols) == 0:
        return
    prep, D = problem.prep, problem.directions
    spacing = _spacing(prep, D, cols)
    confirmed = 0
    for start in range(0, len(cols), CONFIRMED_ENOUGH * 2):
        part = cols[start:start + CONFIRMED_ENOUGH * 2]
        sp = spacing[start:start + CONFIRMED_ENOUGH * 2]
        j.reviewed += len(part)
        for pos, block in D.blocks(part, sp):
            F = problem.contracted(values(prep, block, OFFSETS))  # (9, b, R)
            for b, i in enumerate(pos):
                k = part[i]
                rows = np.flatnonzero(j.codes[:, k] == _FLAG)
                _judge_column(problem, j, k, rows, F[:, b, rows], sp[i])
                confirmed += bool(np.any(j.codes[:, k] == STATUS_CODES["bug"]))
        if confirmed >= CONFIRMED_ENOUGH:
            break


def _spacing(prep, D, cols):
    """The second look's spacing: a quarter of the first pass's step, as the
    perturbed point really takes it (for the complex step, whose step is ~EPS,
    a quarter of the one central differences of order 4 would take).  Smaller
    spacings resolve curvature better and see more round-off: in float32 a
    quarter of the central-2 step lost 41 of the mutation suite's 1% errors to
    noise.  The finer look (``_finer``) resolves what this one cannot."""
    from ..stencils import get_stencil
    from ..steps import relative_step

    h = np.asarray(D.step[cols], dtype=np.float64) / 4.0
    if prep.stencil.complex_step:
        h = h * relative_step(get_stencil("central", 4), prep.eps) / relative_step(
            prep.stencil, prep.eps)
    coord = cols < len(D.index)
    if coord.any():
        x = prep.x0[D.index[cols[coord]]]
        taken = (x + h[coord].astype(x.dtype)) - x
        h[coord] = np.where(taken > 0, taken, h[coord])
    return h


def _judge_column(problem, j, k, rows, F, d):
    """Statuses of the flagged ``rows`` of column ``k`` from their nine values."""
    e = np.asarray(problem.expected[rows, k], dtype=np.float64)
    tol = problem.tolerance(rows, np.full(len(rows), k), e)
    rnd = T.ROUNDOFF_FACTOR * problem.prep.eps * problem._fscale()[rows]
    dd = np.full(len(rows), d)
    op = classify(F, dd, e, tol, rnd)
    first = problem.numeric[rows, k]
    retry = np.flatnonzero((op.status == "irregular")
                           | ((op.status == "non-differentiable") & op.kink_at_x))
    if len(retry):
        _finer(problem, j, k, rows, op, retry, F, d, e, tol, rnd, first)
    for i, r in enumerate(rows):
        name = op.status[i]
        j.codes[r, k] = STATUS_CODES[name if name in STATUS_CODES else "inconclusive"]
        j.second[(int(r), int(k))] = float(op.estimate[i])
        if op.kink_at_x[i]:
            j.at_kink.add((int(r), int(k)))
        if op.evidence[i] and sum(1 for e_ in j.evidence if e_[3] == name) < 3:
            j.evidence.append((int(r), int(k), op.evidence[i], name))


#: Finer looks after the second one: spacings d/4, d/16, d/64.
FINER_LEVELS = 3


def _finer(problem, j, k, rows, op, retry, F, d, e, tol, rnd, first):
    """Measure again at shrinking spacings: confirm kinks, resolve irregularity.

    The secants' spread tells what made a look irregular: it shrinks with the
    spacing for a smooth, sharply curved f (about 4x per quartering once the
    window resolves the curvature), stays for kinks (each slope jump is as
    large at any spacing), and grows for round-off (1/d) in an ill-conditioned
    f.  So an entry is looked at again, a quarter finer each time, while its
    spread does not grow and round-off leaves the next look something to see;
    a smooth f turns smooth at some spacing, a kink stays a kink.
    """
    prep, D = problem.prep, problem.directions
    pending = list(retry)
    steps = {int(p): [first[p], (F[5, p] - F[3, p]) / (2 * d)] for p in pending}
    kink_at_x = {int(p): op.status[p] == "non-differentiable" and bool(op.kink_at_x[p])
                 for p in pending}
    prev_jump = {int(p): float(op.jump[p]) for p in pending}
    prev_spread = np.ptp(np.diff(F, axis=0), axis=0) / d
    dq = d
    for level in range(FINER_LEVELS):
        if not pending:
            return
        dq = dq / 4.0
        last = level == FINER_LEVELS - 1
        sub = np.asarray(pending)
        (_, block), = D.blocks([k], [dq])
        Ff = problem.contracted(values(prep, block, OFFSETS))[:, 0, rows][:, sub]
        fine = classify(Ff, np.full(len(sub), dq), e[sub], tol[sub], rnd[sub])
        secants = np.diff(Ff, axis=0) / dq
        spread = np.ptp(secants, axis=0)
        lo_f, hi_f = secants.min(axis=0), secants.max(axis=0)
        slack = tol[sub] + T.NOISE_FACTOR * 2 * rnd[sub] / dq
        # Round-off of a secant at the next spacing: past this look's spread,
        # a finer look shows only noise.
        blind_next = 2 * rnd[sub] / (dq / 4.0) > spread
        still = []
        for i, p in enumerate(sub):
            p = int(p)
            fs = fine.status[i]
            ps = prev_spread[p] if level == 0 else prev_spread[i_prev[p]]
            ratio = spread[i] / ps if ps > 0 else 0.0
            steps[p].append((Ff[5, i] - Ff[3, i]) / (2 * dq))
            if fs in ("noise", "bug", "nan"):
                _take(op, p, fine, i)  # smooth at this spacing: no kink near x after all
                continue
            if fs != "irregular":  # pieces again: a kink or jump, or x on a piece
                kink_here = fs == "non-differentiable" and bool(fine.kink_at_x[i])
                seen = kink_at_x[p]
                shrank = seen and kink_here and fine.jump[i] < 0.5 * prev_jump[p]
                if kink_here and (shrank or not seen) and not last and not blind_next[i]:
                    # A kink at x is believed when a finer look shows the same slope
                    # jump; one that shrinks with the spacing is curvature.
                    kink_at_x[p], prev_jump[p] = True, float(fine.jump[i])
                    still.append((p, i))
                elif shrank:
                    # The "kink" shrank with the spacing: sharp curvature, judged as smooth.
                    op.status[p] = "noise" if abs(e[p] - fine.estimate[i]) <= tol[p] + \
                        T.NOISE_FACTOR * (fine.noise[i] + abs(fine.estimate[i] - op.estimate[p])) \
                        else "bug"
                    op.estimate[p], op.evidence[p] = fine.estimate[i], None
                else:
                    _take(op, p, fine, i)
                continue
            # Two successive estimates that agree and sit on the expected value:
            # whatever scattered the secants (kinks crossed) no longer moves them.
            settled = max(abs(steps[p][-1] - steps[p][-2]), abs(steps[p][-1] - e[p])) <= tol[p]
            if settled:
                _conclude(op, p, i, fine, steps[p], ratio, e, tol, lo_f, hi_f, slack)
                continue
            if ratio > 2.0:
                op.status[p], op.estimate[p] = "inconclusive", steps[p][-1]
                op.evidence[p] = (f"estimates at shrinking steps ({_listed(steps[p])}) scatter "
                                  "more as the step shrinks, far beyond their round-off model "
                                  f"(~{rnd[p] / dq:.2g}): f is ill-conditioned at this step "
                                  "and dtype")
                continue
            if not last and not blind_next[i]:
                still.append((p, i))  # curvature not yet resolved, or kinks crossed: closer
                continue
            _conclude(op, p, i, fine, steps[p], ratio, e, tol, lo_f, hi_f, slack)
        pending = [p for p, _ in still]
        i_prev = {p: i for p, i in still}
        prev_spread = spread


def _conclude(op, p, i, fine, steps, ratio, e, tol, lo_f, hi_f, slack):
    """The finest look is still irregular: judge from how the estimates moved."""
    moved = abs(steps[-1] - steps[-2])
    est = fine.estimate[i]
    op.estimate[p] = steps[-1]
    if converging(steps, e[p], tol[p]):
        smooth = ratio < 0.5
        op.status[p] = "noise" if smooth else "non-differentiable"
        op.evidence[p] = ("the estimate moves toward the expected value as the step shrinks "
                          f"({_listed(steps)}): " + ("truncation of a sharply curved f" if smooth
                                                     else "kinks crossed within the step"))
    elif ratio >= 0.5 and lo_f[i] - slack[i] <= e[p] <= hi_f[i] + slack[i]:
        # Slope jumps that persist at every spacing, and the expected value
        # is one of the slopes f takes next to x: kinks too close to resolve.
        op.status[p] = "non-differentiable"
        op.evidence[p] = (f"the secant slopes next to x range over [{lo_f[i]:.6g}, "
                          f"{hi_f[i]:.6g}] at every spacing: kinks closer to x than the "
                          "step can resolve")
    elif abs(e[p] - est) > tol[p] + T.NOISE_FACTOR * (fine.noise[i] + moved + abs(
            est - steps[-1])):
        op.status[p] = "bug"  # off by more than every estimate's spread
        op.estimate[p] = est
    else:
        op.status[p] = "inconclusive"
        op.evidence[p] = (f"estimates at shrinking steps ({_listed(steps)}) do not settle "
                          "near the expected value: f is ill-conditioned at this step and "
                          "dtype")


def _listed(steps):
    return ", ".join(f"{v:.6g}" for v in steps)


def _take(op, p, fine, i):
    op.status[p] = fine.status[i]
    op.estimate[p] = fine.estimate[i]
    op.noise[p] = fine.noise[i]
    op.evidence[p] = fine.evidence[i]


# ---------------------------------------------------------------------------
# Figures and worst entries (computed when a report asks for them)
# ---------------------------------------------------------------------------
def relative_error(err, expected, numeric, atol):
    """``err / max(|expected|, |numeric|, atol)``: symmetric, bounded, and small
    where both values are zero to within ``atol`` (a raw ratio would call
    0 against -1e-17 a 100% error)."""
    scale = np.maximum(np.maximum(np.abs(expected), np.abs(numeric)), atol)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), 0.0)


def figures(problem):
    """``(error_norm, max_abs_error, max_rel_error)`` over the finite entries, in chunks."""
    sq, mx, mr = 0.0, 0.0, 0.0
    for sl in _chunks(problem.K, problem.R):
        q = problem.numeric[:, sl]
        e = np.asarray(problem.expected[:, sl], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(q - e)
        fin = np.isfinite(err)
        if not fin.all():
            err = np.where(fin, err, 0.0)
        sq += float(np.sum(err * err))
        mx = max(mx, float(np.max(err, initial=0.0)))
        mr = max(mr, float(np.max(relative_error(err, e, np.where(fin, q, 0.0), problem.atol),
                                  initial=0.0)))
    return float(np.sqrt(sq)), mx, mr


def worst(problem, j: Judgement, n=WORST):
    """The ``n`` entries most severe, then furthest outside their tolerance."""
    cand_r, cand_k, cand_key = [], [], []
    for sl in _chunks(problem.K, problem.R):
        q = problem.numeric[:, sl]
        e = np.asarray(problem.expected[:, sl], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ratio = np.nan_to_num(np.abs(q - e) / np.maximum(problem.tolerance(slice(None), sl, e),
                                                             1e-300),
                                  nan=1e300, posinf=1e300)
        sev = (np.zeros(ratio.shape) if j.codes is None
               else _SEVERITY[j.codes[:, sl].astype(np.intp)].astype(np.float64))
        # One key: severity first, then how far outside the tolerance (squashed
        # into [0, 1) so that it orders within a severity without swamping it).
        key = sev + ratio / (1.0 + ratio) * (1 - 1e-12)
        flat = key.ravel()
        take = min(n, flat.size)
        if take == 0:
            continue
        idx = np.argpartition(-flat, take - 1)[:take]
        r, c = np.unravel_index(idx, key.shape)
        cand_r.append(r)
        cand_k.append(c + sl.start)
        cand_key.append(flat[idx])
    if not cand_r:
        return []
    r, k, key = np.concatenate(cand_r), np.concatenate(cand_k), np.concatenate(cand_key)
    order = np.lexsort((k, r, -key))[:n]
    out = []
    for i in order:
        rr, kk = int(r[i]), int(k[i])
        e, q = float(problem.expected[rr, kk]), float(problem.numeric[rr, kk])
        ab = abs(e - q)
        status = "ok" if j.codes is None else STATUS_NAMES[int(j.codes[rr, kk])]
        second = j.second.get((rr, kk))
        out.append(Mismatch(
            output_index=problem.out_label(rr), input_index=problem.in_label(kk),
            expected=e, numeric=q, abs_error=ab,
            rel_error=float(relative_error(ab, e, q, problem.atol)),
            tolerance=float(problem.tolerance(np.array([rr]), np.array([kk]))[0]),
            noise=float(problem.roundoff(np.array([rr]), np.array([kk]))[0]),
            status=status, second_opinion=second))
    return out


def noise_array(problem):
    """The round-off model of every entry, shaped ``(R, K)`` (computed on demand)."""
    R, K = problem.R, problem.K
    out = np.empty((R, K))
    for sl in _chunks(K, R):
        out[:, sl] = problem.roundoff(slice(None), sl)
    return out
