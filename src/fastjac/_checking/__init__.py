"""The checks' internals: problems, the judge, second opinions, localisation, diagnoses.

Reading order: :mod:`.problem` (what is compared), :mod:`.build` (measuring
it through the engine), :mod:`.judging` (flags, statuses, verdict, worst) with
:mod:`.review` (second opinions), :mod:`.localize` (culprit coordinates of a
failing direction), :mod:`.diagnose` (what the pattern says), and
:mod:`.assemble` (the report).  :mod:`fastjac.check` is the public surface.
"""
from .assemble import early, finish, nonfinite_note
from .build import (FIRST_PASS_ORDER, JACOBIAN_OPTIONS, Setup, determinism_failure, directional,
                    first_pass_order,
                    full, setup)
from .diagnose import diagnose
from .fastcheck import lookup as fast_check, remember as fast_remember_check
from .judging import REVIEW_COLUMNS, Judgement, judge
from .localize import Found, localize
from .problem import Directions, Problem
from .review import OFFSETS, classify
from .runner import (GRAD_MODES, JACOBIAN_FULL_MAX, JACOBIAN_MODES, ROWS_MAX, as_expected,
                     call_like, check_mode, container_label, expected_matrix, jvp_cols,
                     match_shape, nan_guard, reshape_report, retolerance, run_check, unravel,
                     validate_counts, vjp_check, warm_check)

__all__ = ["early", "finish", "nonfinite_note", "FIRST_PASS_ORDER", "JACOBIAN_OPTIONS", "Setup",
           "first_pass_order",
           "determinism_failure", "directional", "full", "setup", "diagnose", "fast_check",
           "fast_remember_check", "REVIEW_COLUMNS",
           "Judgement", "judge", "Found", "localize", "Directions", "Problem", "OFFSETS",
           "classify", "GRAD_MODES", "JACOBIAN_FULL_MAX", "JACOBIAN_MODES", "ROWS_MAX",
           "as_expected", "call_like", "check_mode", "container_label", "expected_matrix",
           "jvp_cols", "match_shape", "nan_guard", "reshape_report", "retolerance", "run_check",
           "unravel", "validate_counts", "vjp_check", "warm_check"]
