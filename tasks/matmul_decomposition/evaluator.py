"""Evaluator for low-rank decompositions of matrix-multiplication tensors (AlphaEvolve, Novikov et al. 2025).

The <n,m,p> tensor T (shape ``(n*m, m*p, n*p)``) has ``T[i*m + j, j*p + k, i*p + k] = 1`` and zeros
elsewhere: entry ``A[i, j] * B[j, k]`` contributes to ``C[i, k]`` of ``C = A @ B`` (row-major flattening).
A rank-R decomposition is three factor matrices U ``(n*m, R)``, V ``(m*p, R)``, W ``(n*p, R)`` with
``T = sum_r U[:, r] (x) V[:, r] (x) W[:, r]``; it is an algorithm for C with R scalar multiplications
(Strassen 1969: <2,2,2> in 7 instead of 8). Known upper bounds: <2,2,2> rank 7, <3,3,3> rank 23.

How a candidate is called (anti reward hacking; docs/architecture.md, "The task contract"): the candidate's
frozen entry point ``decompose(n, m, p) -> (U, V, W)`` runs in a nested process
(`evoforge.evaluators.candidate.CandidateSession`), once per target, and only plain numeric arrays come back.
Everything below is decided here, from those arrays:

* **Shape and range checks** (else ``invalid``): three real 2-D arrays with n*m, m*p, n*p rows and the same
  number of columns R, 1 <= R <= 2 * n*m*p; every entry finite and ``|x| <= 1000``.
* **Rank** = the number of columns whose u, v and w are all non-zero (a column with a zero factor adds
  nothing to the sum and costs no multiplication, so padding columns never count against a candidate).
* **Exactness.** Each entry is rounded to the nearest rational with denominator <= 6 (``Fraction.
  limit_denominator(6)``); the rounding is accepted only when it moves the entry by at most 0.01.
  The decomposition is *exact* when every entry was rounded and the rounded factors reconstruct T
  **exactly**, in integer arithmetic (entries times 60 = lcm(1..6), Python ints, no tolerance).
  Known exact decompositions use entries in {-1, 0, 1} (sometimes 1/2), so nothing legitimate is lost;
  decompositions that are only numerically exact (irrational entries) do not count as exact.
* **Error** otherwise: the relative Frobenius error ``||T - T_hat||_F / ||T||_F`` of the float factors.

Score (maximise) = the sum over the targets of ``naive_rank / rank`` for an exact decomposition (naive
8 -> 1.0, Strassen 7 -> 1.143; <3,3,3> rank 23 -> 1.174) and ``-min(error, 1)`` for an inexact one, so
any exact decomposition beats any inexact one, lower rank beats higher rank among exact ones, and lower
error beats higher error among inexact ones. A claimed rank or score in the candidate's output is
never read: the evaluator only sees the three matrices.

Descriptors: ``density`` (share of non-zero entries in the rounded factors over both targets, in [0, 1];
sparse factors mean cheap additions) and ``rank_ratio_333`` (the <3,3,3> rank over 27, in [0.5, 2]).
Standard library + numpy only.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from evoforge.evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession

__all__ = ["evaluate", "matmul_tensor", "verify", "score_target", "TARGETS", "BEST_KNOWN_RANK"]

TARGETS = ((2, 2, 2), (3, 3, 3))
BEST_KNOWN_RANK = {(2, 2, 2): 7, (3, 3, 3): 23}     # Strassen 1969; Laderman 1976
MAX_DENOMINATOR = 6                                 # rounding grid: rationals p/q with q <= 6
SCALE = 60                                          # lcm(1..6): rounded entries * 60 are integers
ROUND_TOLERANCE = 0.01                              # an entry may move at most this far when rounded
MAX_ABS_ENTRY = 1000.0
CALL_TIMEOUT_S = 50.0                               # per target; the task's sandbox limit is 120 s


def matmul_tensor(n: int, m: int, p: int) -> np.ndarray:
    """The <n,m,p> tensor as an int64 array of shape (n*m, m*p, n*p)."""
    t = np.zeros((n * m, m * p, n * p), dtype=np.int64)
    for i in range(n):
        for j in range(m):
            for k in range(p):
                t[i * m + j, j * p + k, i * p + k] = 1
    return t


def _check_factors(raw: Any, shape: tuple[int, int, int]) -> tuple[list[np.ndarray] | None, str]:
    n, m, p = shape
    name = f"decompose({n}, {m}, {p})"
    if not isinstance(raw, (tuple, list)) or len(raw) != 3:
        return None, f"{name} must return (U, V, W), but returned {type(raw).__name__}" + (
            f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else "")
    factors = []
    for label, value, rows in zip("UVW", raw, (n * m, m * p, n * p)):
        try:
            arr = np.asarray(value)            # plain data only (nested lists at worst): cannot run code
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            return None, f"{name}: {label} is not an array: {type(exc).__name__}: {exc}"
        if arr.dtype.kind not in "iuf":
            return None, f"{name}: {label} must hold real numbers, but its dtype is {arr.dtype}"
        if arr.ndim != 2 or arr.shape[0] != rows:
            return None, f"{name}: {label} must have shape ({rows}, R) but has shape {arr.shape}"
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            return None, f"{name}: {label} has non-finite entries (NaN or inf)"
        if np.max(np.abs(arr), initial=0.0) > MAX_ABS_ENTRY:
            return None, f"{name}: {label} has entries larger than {MAX_ABS_ENTRY:g} in absolute value"
        factors.append(arr)
    ranks = {f.shape[1] for f in factors}
    if len(ranks) != 1:
        return None, f"{name}: U, V, W must have the same number of columns, got {[f.shape[1] for f in factors]}"
    (r,) = ranks
    if not 1 <= r <= 2 * n * m * p:
        return None, f"{name}: the number of columns R = {r} must be in 1..{2 * n * m * p}"
    return factors, ""


def _round(factors: list[np.ndarray]) -> list[list[list[Fraction]]] | None:
    """Each entry to the nearest p/q with q <= 6, or None when some entry is more than 0.01 away."""
    out = []
    for f in factors:
        rows = []
        for row in f.tolist():
            q_row = []
            for x in row:
                q = Fraction(x).limit_denominator(MAX_DENOMINATOR)
                if abs(float(q) - x) > ROUND_TOLERANCE:
                    return None
                q_row.append(q)
            rows.append(q_row)
        out.append(rows)
    return out


def verify(u: Any, v: Any, w: Any, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Check one decomposition: a dict with exact, rank, columns, error, density, rounded (or invalid)."""
    factors, why = _check_factors((u, v, w), shape)
    if factors is None:
        return {"invalid": why}
    n, m, p = shape
    t = matmul_tensor(n, m, p)
    approx = np.einsum("ar,br,cr->abc", *factors)
    error = float(np.linalg.norm(approx - t) / math.sqrt(n * m * p))     # ||T||_F = sqrt(nmp)
    rounded = _round(factors)
    exact = False
    if rounded is not None:
        # Integer reconstruction: (60u)(60v)(60w) summed over r must equal 60^3 T, exactly.
        ints = [np.array([[int(q * SCALE) for q in row] for row in f], dtype=object) for f in rounded]
        recon = np.einsum("ar,br,cr->abc", *ints)
        exact = bool(np.all(recon == t.astype(object) * SCALE ** 3))
        used = [np.array([[q != 0 for q in row] for row in f]) for f in rounded]
    else:
        used = [f != 0.0 for f in factors]
    live = used[0].any(axis=0) & used[1].any(axis=0) & used[2].any(axis=0)
    rank = int(live.sum())
    nonzero = sum(int(u_[:, live].sum()) for u_ in used)
    entries = sum(u_.shape[0] for u_ in used) * max(rank, 1)
    return {"exact": exact, "rank": rank, "columns": factors[0].shape[1], "error": error,
            "density": nonzero / entries, "rounded": rounded is not None}


def score_target(result: dict[str, Any], shape: tuple[int, int, int]) -> float:
    """naive_rank / rank when exact, -min(error, 1) otherwise."""
    naive = shape[0] * shape[1] * shape[2]
    if result["exact"]:
        return naive / result["rank"]
    return -min(result["error"], 1.0)


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate(program_path: str) -> dict[str, Any]:
    """Call ``decompose(n, m, p)`` for each target in a nested process; verify; score."""
    results: dict[tuple[int, int, int], dict[str, Any]] = {}
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate:
        for shape in TARGETS:
            try:
                raw = candidate.call("decompose", *shape)
            except CandidateInvalid as exc:
                return _invalid(f"decompose{shape} returned something that is not plain data: {exc}")
            except CandidateError:
                raise       # raised / crashed / timed out: the runner records error / timeout
            factors, why = _check_factors(raw, shape)
            if factors is None:
                return _invalid(why)
            result = verify(*factors, shape)
            if "invalid" in result:
                return _invalid(result["invalid"])
            results[shape] = result

    score = 0.0
    metrics: dict[str, float] = {}
    lines = []
    for shape, result in results.items():
        key = "".join(str(d) for d in shape)
        s = score_target(result, shape)
        score += s
        metrics[f"score_{key}"] = s
        metrics[f"rank_{key}"] = float(result["rank"])
        metrics[f"exact_{key}"] = float(result["exact"])
        metrics[f"rel_error_{key}"] = result["error"]
        metrics[f"density_{key}"] = result["density"]
        why = "rounds to the 1/6 grid but does not reconstruct T" if result["rounded"] else \
            "entries off the rational grid"
        status = (f"EXACT rank {result['rank']}" if result["exact"] else
                  f"not exact ({why}), rank {result['rank']}, relative error {result['error']:.3e}")
        lines.append(f"<{shape[0]},{shape[1]},{shape[2]}>: {status} (best known {BEST_KNOWN_RANK[shape]}, "
                     f"naive {shape[0] * shape[1] * shape[2]})")
    features = {
        "density": sum(r["density"] for r in results.values()) / len(results),
        "rank_ratio_333": results[(3, 3, 3)]["rank"] / 27.0,
    }
    metrics["n_exact"] = float(sum(r["exact"] for r in results.values()))
    return {"score": score, "features": features, "metrics": metrics, "artifacts": {"summary": "; ".join(lines)}}
