"""Circle packing in the unit square (n circles): the zero-tolerance check and the scoring.

A packing is valid when every disc lies inside [0, 1]^2 and no two discs overlap::

    r_i <= x_i <= 1 - r_i,   r_i <= y_i <= 1 - r_i,   hypot(x_i - x_j, y_i - y_j) >= r_i + r_j

checked with ZERO tolerance on values recomputed here from the returned arrays: after conversion
to float64 every comparison is done in exact rational arithmetic (``fractions.Fraction``; the
distance test as ``dx^2 + dy^2 >= (r_i + r_j)^2``), so no rounding can accept an overlap. Radii must
be finite and >= 0, shapes exactly (n, 2) and (n,). The score is the sum
of the returned radii, recomputed here with ``math.fsum``; any sum the program reports is ignored.
Lenient tolerances and trusting a program's own reported sum are how public checkers have
accepted invalid packings.

The candidate never runs in this interpreter: ``run_packing()`` is called through
``evoforge.evaluators.candidate.run_candidate`` in a nested process, and only plain data crosses back (lists,
tuples, floats, numeric numpy arrays), so a candidate cannot monkeypatch ``numpy``/``math`` here or
return objects that lie about their values. Exceptions raised by the candidate propagate as
``CandidateRaised`` (the engine records an error), a call over ``CALL_TIMEOUT_S`` as
``CandidateTimeout``; a reply that is not plain data is reported as invalid. Standard library + numpy.

Shared by the task folders ``tasks/circle_packing`` (n = 26) and ``tasks/circle_packing_32``, whose
``evaluator.py`` only set n and the best-known sum. It lives in ``evaluators/`` because that package is
what every isolation backend provides to an evaluator (the process sandbox, the docker image's
mount, a Ray worker), while a task folder travels alone.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.evaluators.candidate import CandidateInvalid, CandidateRaised, run_candidate

__all__ = ["evaluate_packing", "verify_packing", "BORDER_TOUCH"]

BORDER_TOUCH = 1e-3          # a disc "touches" the border when its slack to a side is <= this
CALL_TIMEOUT_S = 25.0        # run_packing() must reply within this (the task's limit is 30 s)

# Bound at import (defence in depth; the candidate runs in another process anyway).
_asarray = np.asarray
_float64 = np.float64
_hypot = math.hypot
_fsum = math.fsum
_Fraction = Fraction
_isfinite = math.isfinite
_sqrt = math.sqrt
_float = float
_len = len
_range = range
_min = min
_max = max


class _Report:
    """Everything the check found: the first violation (the message) and counts of each kind."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.n_border = 0
        self.n_overlap = 0
        self.n_negative = 0
        self.n_nonfinite = 0
        self.max_violation = 0.0

    def fail(self, message: str, amount: float = 0.0) -> None:
        if self.first is None:
            self.first = message
        if amount > self.max_violation:
            self.max_violation = amount

    @property
    def ok(self) -> bool:
        return self.first is None

    def metrics(self) -> dict[str, float]:
        return {
            "n_border_violations": _float(self.n_border),
            "n_overlap_violations": _float(self.n_overlap),
            "n_negative_radii": _float(self.n_negative),
            "n_nonfinite": _float(self.n_nonfinite),
            "max_violation": _float(self.max_violation),
        }


def _as_float_array(value: Any, what: str) -> tuple[np.ndarray | None, str]:
    """Strict conversion: numbers only (no strings, booleans, objects), then float64."""
    try:
        raw = _asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything a candidate hands back
        return None, f"{what} could not be converted to an array: {type(exc).__name__}: {exc}"
    if raw.dtype.kind not in "iuf":
        return None, (f"{what} must hold real numbers, but its array dtype is {raw.dtype} "
                      f"(kind {raw.dtype.kind!r}); return float arrays, not strings/objects/booleans")
    try:
        arr = _asarray(raw, dtype=_float64).copy()
    except Exception as exc:  # noqa: BLE001
        return None, f"{what} could not be converted to float64: {type(exc).__name__}: {exc}"
    return arr, ""


def _check(centers: Any, radii: Any, n: int) -> tuple[_Report, list[float], list[float], list[float]]:
    """Run every check; returns the report and the coordinates/radii as Python floats."""
    report = _Report()
    c_arr, why = _as_float_array(centers, "centers")
    if c_arr is None:
        report.fail(why)
        return report, [], [], []
    r_arr, why = _as_float_array(radii, "radii")
    if r_arr is None:
        report.fail(why)
        return report, [], [], []
    if c_arr.shape != (n, 2):
        report.fail(f"centers must have shape ({n}, 2) but has shape {c_arr.shape}")
    if r_arr.shape != (n,):
        report.fail(f"radii must have shape ({n},) but has shape {r_arr.shape}")
    if not report.ok:
        return report, [], [], []

    xs = [_float(v) for v in c_arr[:, 0].tolist()]
    ys = [_float(v) for v in c_arr[:, 1].tolist()]
    rs = [_float(v) for v in r_arr.tolist()]
    for i in _range(n):
        bad = [name for name, v in (("x", xs[i]), ("y", ys[i]), ("r", rs[i])) if not _isfinite(v)]
        if bad:
            report.n_nonfinite += 1
            report.fail(f"circle {i}: non-finite value(s) {', '.join(bad)} "
                        f"(x={xs[i]!r}, y={ys[i]!r}, r={rs[i]!r})")
    if not report.ok:  # geometry with NaN/inf is meaningless
        return report, xs, ys, rs

    for i in _range(n):
        if rs[i] < 0.0:
            report.n_negative += 1
            report.fail(f"circle {i}: negative radius r={rs[i]!r}", -rs[i])

    # Exact rational arithmetic on the float64 values (no rounding anywhere, hence no tolerance).
    fx = [_Fraction(v) for v in xs]
    fy = [_Fraction(v) for v in ys]
    fr = [_Fraction(v) for v in rs]
    one = _Fraction(1)
    for i in _range(n):
        x, y, r = fx[i], fy[i], fr[i]
        sides = (("left", "x - r", x - r), ("right", "1 - r - x", one - r - x),
                 ("bottom", "y - r", y - r), ("top", "1 - r - y", one - r - y))
        hit = False
        for side, expr, slack in sides:
            if slack < 0:
                hit = True
                amount = _float(-slack)
                report.fail(f"circle {i} crosses the {side} side of the square: "
                            f"x={xs[i]!r}, y={ys[i]!r}, r={rs[i]!r}, {expr} < 0 "
                            f"(outside by {amount:.3e})", amount)
        if hit:
            report.n_border += 1

    for i in _range(n):
        for j in _range(i + 1, n):
            dx, dy, need = fx[i] - fx[j], fy[i] - fy[j], fr[i] + fr[j]
            deficit = need * need - (dx * dx + dy * dy)   # > 0 exactly when the discs overlap
            if need > 0 and deficit > 0:
                report.n_overlap += 1
                dist = _hypot(xs[i] - xs[j], ys[i] - ys[j])
                amount = _float(deficit) / (_float(need) + dist)   # ~ (r_i + r_j) - distance
                report.fail(f"circles {i} and {j} overlap: centre distance {dist!r} < "
                            f"r_{i} + r_{j} = {rs[i]!r} + {rs[j]!r} "
                            f"(overlap {amount:.3e})", amount)
    return report, xs, ys, rs


def verify_packing(centers: Any, radii: Any, n: int) -> tuple[bool, str]:
    """Zero-tolerance validity check. Returns ``(True, summary)`` or ``(False, first violation)``."""
    report, _, _, rs = _check(centers, radii, n)
    if not report.ok:
        more = report.n_border + report.n_overlap + report.n_negative + report.n_nonfinite - 1
        suffix = f" (and {more} more violation(s); largest {report.max_violation:.3e})" if more > 0 else ""
        return False, f"{report.first}{suffix}"
    return True, f"valid packing of {n} circles, sum of radii {_fsum(rs)!r}"


def _invalid(message: str, metrics: dict[str, float] | None = None) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": metrics or {},
            "artifacts": {"violation": message[:2000]}}


def evaluate_packing(program_path: str, *, n: int, best_known: float) -> dict[str, Any]:
    """Run the candidate's ``run_packing()`` and score it (sum of radii; higher is better)."""
    try:  # a nested process; exceptions in the candidate propagate as CandidateRaised (an error)
        result = run_candidate(str(Path(program_path)), "run_packing", timeout_s=CALL_TIMEOUT_S)
    except CandidateInvalid as exc:  # e.g. an object array: not plain data
        return _invalid(f"run_packing() must return (centers, radii) as numbers: {exc}")
    except CandidateRaised as exc:
        if str(exc).startswith("the program defines no callable"):
            return _invalid("the program defines no callable run_packing()")
        raise

    if isinstance(result, (str, bytes)) or not isinstance(result, (tuple, list)) or _len(result) not in (2, 3):
        return _invalid(f"run_packing() must return (centers, radii), but returned {type(result).__name__}"
                        + (f" of length {_len(result)}" if isinstance(result, (tuple, list)) else ""))
    # A third element (a self-reported sum, as in some reference code) is ignored on purpose.
    report, xs, ys, rs = _check(result[0], result[1], n)
    if not report.ok:
        total = report.n_border + report.n_overlap + report.n_negative + report.n_nonfinite
        message = report.first if total <= 1 else (
            f"{report.first} (and {total - 1} more violation(s): {report.n_overlap} overlapping pair(s), "
            f"{report.n_border} disc(s) outside the square, {report.n_negative} negative radius/radii, "
            f"{report.n_nonfinite} non-finite circle(s); largest violation {report.max_violation:.3e})")
        return _invalid(message, report.metrics())

    total = _fsum(rs)
    mean = total / n
    std = _sqrt(_fsum((r - mean) ** 2 for r in rs) / n)
    cv = std / mean if mean > 0.0 else 0.0
    slack = [_min(xs[i] - rs[i], 1.0 - rs[i] - xs[i], ys[i] - rs[i], 1.0 - rs[i] - ys[i]) for i in _range(n)]
    touching = sum(1 for s in slack if s <= BORDER_TOUCH)
    gaps = [(_hypot(xs[i] - xs[j], ys[i] - ys[j]) - rs[i] - rs[j], i, j)
            for i in _range(n) for j in _range(i + 1, n)]
    min_gap, gi, gj = _min(gaps)
    n_tiny = sum(1 for r in rs if r < 1e-6)

    features = {
        "radius_cv": _min(cv, 1.0),              # std / mean of the radii, clamped to [0, 1]
        "border_fraction": touching / n,         # share of discs within 1e-3 of a side
    }
    metrics = {
        "sum_radii": total,
        "gap_to_best_known": best_known - total,
        "min_radius": _min(rs),
        "max_radius": _max(rs),
        "mean_radius": mean,
        "radius_cv_raw": cv,
        "n_border_touching": _float(touching),
        "n_tiny_radii": _float(n_tiny),
        "min_pair_gap": min_gap,
        "min_border_slack": _min(slack),
        "n_violations": 0.0,
    }
    summary = (f"valid; sum of radii {total:.6f} (best known {best_known}); radii from {_min(rs):.4f} "
               f"to {_max(rs):.4f}; {n_tiny} disc(s) with radius < 1e-6; {touching} disc(s) touch the "
               f"border; tightest pair ({gi}, {gj}) gap {min_gap:.2e}")
    return {"score": total, "features": features, "metrics": metrics, "artifacts": {"summary": summary}}
