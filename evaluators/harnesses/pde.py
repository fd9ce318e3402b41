"""The harness of the PDE-solver tasks (CodePDE, Li et al. 2025): validation, nRMSE, score, held-out cases.

Shared by ``tasks/pde_advection``, ``tasks/pde_burgers`` and ``tasks/pde_reaction_diffusion``, whose
evaluators supply only their cases and exact references (``build_case``). It lives in ``evaluators/``
because that package is what every isolation backend provides to an evaluator (the process sandbox,
the docker image's mount, a Ray worker), while a task folder travels alone. The rules (score, timing,
the secret grid rotation against tabulated answers, what is invalid) are in each task's docstring.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from evoforge.evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession

__all__ = ["Case", "evaluate_solver", "evaluate_heldout_solver", "grid",
           "nrmse", "check_solution", "score_terms", "PASS_NRMSE",
           "NRMSE_FLOOR", "NRMSE_CAP", "SPEED_WEIGHT", "SOLVER_TIMEOUT_S", "MIN_RUNTIME_S", "BLOWUP_FACTOR"]


class Case(NamedTuple):
    """One batch of problems: the solver is called once per case."""

    name: str                  # "train" or the held-out metric prefix
    params: dict               # passed to solver(u0, t, params) as is
    n: int                     # grid points N
    t_end: float               # t = linspace(0, t_end, frames)
    frames: int                # T + 1 output frames, the initial one included
    batch: int                 # initial conditions per call
    seed: int                  # fixed: every candidate sees the same problems
    ic: dict                   # task-specific initial-condition family parameters


BuildCase = Callable[[Case], tuple[np.ndarray, np.ndarray, dict, np.ndarray]]

PASS_NRMSE = 0.05            # CodePDE's pass rule: nRMSE < 0.05
NRMSE_FLOOR = 1e-6           # nRMSE at or below this counts as exact (references are good to ~1e-9)
SPEED_WEIGHT = 0.5           # score per decade of speed-up (passing solvers only)
SOLVER_TIMEOUT_S = 20.0      # per call; also the runtime at which the speed term is 0
MIN_RUNTIME_S = 1e-3         # below the IPC overhead (~2-3 ms): not measurable
BLOWUP_FACTOR = 10.0         # |u| > BLOWUP_FACTOR * max|u0| (per initial condition) is a blow-up
NRMSE_CAP = 1e3              # a finite score even for a wild (but bounded) answer


def grid(n: int) -> np.ndarray:
    """Cell-centred periodic grid on (0, 1): ``x_i = (i + 1/2) / n``."""
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def nrmse(u: np.ndarray, ref: np.ndarray) -> float:
    """CodePDE's nRMSE: mean over the batch of RMSE(u - ref) / RMS(ref), over all (t, x)."""
    err = np.sqrt(np.mean((u - ref) ** 2, axis=(1, 2)))
    scale = np.sqrt(np.mean(ref ** 2, axis=(1, 2)))
    return float(np.mean(err / scale))


def check_solution(raw: Any, shape: tuple[int, int, int], u0: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Strictly validate what ``solver`` returned: ``(float64 array, "")`` or ``(None, reason)``."""
    try:
        arr = np.asarray(raw)
    except Exception as exc:  # noqa: BLE001 - ragged lists and the like
        return None, f"solver() returned something that is not an array: {type(exc).__name__}: {exc}"
    if arr.dtype.kind not in "iuf":
        return None, (f"solver() must return real numbers, but the array dtype is {arr.dtype} "
                      f"(kind {arr.dtype.kind!r}); return a float array (take .real of complex FFT output)")
    if arr.shape != shape:
        return None, (f"solver() must return shape (batch, len(t), N) = {shape}, but returned shape {arr.shape}"
                      + (" (a scalar)" if arr.ndim == 0 else ""))
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        b, j, i = (int(v) for v in np.argwhere(bad)[0])
        return None, (f"solver() returned {int(bad.sum())} non-finite value(s) (NaN/inf), first at initial "
                      f"condition {b}, frame {j}, cell {i}; the scheme is probably unstable (check the time step)")
    limit = BLOWUP_FACTOR * np.max(np.abs(u0), axis=1)
    peak = np.max(np.abs(arr), axis=(1, 2))
    if (peak > limit).any():
        b = int(np.argmax(peak / limit))
        return None, (f"solver() output is out of range: max|u| = {peak[b]:.3g} for initial condition {b}, over "
                      f"{BLOWUP_FACTOR:g} x max|u0| = {limit[b]:.3g}; the scheme is unstable or wrong")
    return arr, ""


def score_terms(err: float, runtime_s: float) -> tuple[float, float, float]:
    accuracy = -math.log10(min(max(err, NRMSE_FLOOR), NRMSE_CAP))
    speed = SPEED_WEIGHT * math.log10(SOLVER_TIMEOUT_S / max(runtime_s, MIN_RUNTIME_S)) if err < PASS_NRMSE else 0.0
    return accuracy + speed, accuracy, speed


def _solve(session: CandidateSession, case: Case,
           build_case: BuildCase) -> tuple[np.ndarray | None, str, float, np.ndarray]:
    """One timed call; returns (checked solution or None, reason, runtime_s, reference).

    The problems come from fixed seeds (comparable scores), so a program could tabulate the answers
    while it is imported (outside the timed call) and look them up. Rotating the periodic grid by a
    secret number of cells per call defeats that: every equation here is translation invariant, so a
    real solver sees the same problem (identical nRMSE up to rounding), but a lookup no longer matches.
    Deliberately not seeded: a secret the candidate cannot reproduce.
    """
    u0, t, params, ref = build_case(case)
    shift = 1 + secrets.randbelow(case.n - 1)
    u0, ref = np.roll(u0, shift, axis=-1), np.roll(ref, shift, axis=-1)
    start = time.perf_counter()
    raw = session.call("solver", u0, t, params, timeout_s=SOLVER_TIMEOUT_S)
    runtime_s = time.perf_counter() - start
    arr, why = check_solution(raw, ref.shape, u0)
    return arr, why, runtime_s, ref


def _frame_profile(u: np.ndarray, ref: np.ndarray, t: np.ndarray) -> str:
    rel = np.sqrt(np.mean((u - ref) ** 2, axis=(0, 2)) / np.mean(ref ** 2, axis=(0, 2)))
    picks = sorted({1, len(t) // 2, len(t) - 1})
    return ", ".join(f"t={t[j]:g}: {rel[j]:.2e}" for j in picks)


def evaluate_solver(program_path: str, cases: Sequence[Case], build_case: BuildCase) -> dict[str, Any]:
    """Solve the training case ``cases[0]`` with the candidate's ``solver()``; ``build_case(case)`` gives
    ``(u0, t, params, u_ref)``. The held-out cases are `evaluate_heldout_solver`'s, run only when it matters."""
    train = cases[0]
    session = CandidateSession(program_path, timeout_s=SOLVER_TIMEOUT_S)
    try:
        try:   # other CandidateErrors propagate: the engine records error / timeout
            u, why, runtime_s, ref = _solve(session, train, build_case)
        except CandidateInvalid as exc:   # e.g. an object array: not plain data
            u, why = None, f"solver() must return a numeric array: {exc}"
        if u is None:
            return {"status": "invalid", "error": why, "artifacts": {"violation": why}}
        err = nrmse(u, ref)
        score, accuracy, speed = score_terms(err, runtime_s)
        per_ic = [nrmse(u[b:b + 1], ref[b:b + 1]) for b in range(u.shape[0])]
        t = np.linspace(0.0, train.t_end, train.frames)
        metrics: dict[str, float] = {
            "nrmse": err, "runtime_s": runtime_s, "passed": float(err < PASS_NRMSE),
            "accuracy_term": accuracy, "speed_term": speed, "worst_ic_nrmse": max(per_ic),
        }
    finally:
        session.close()
    verdict = "passes" if err < PASS_NRMSE else "FAILS"
    summary = (f"train {train.params}, {train.batch} initial conditions, N={train.n}: nRMSE {err:.3e} ({verdict} the "
               f"CodePDE threshold {PASS_NRMSE}); runtime {runtime_s:.3f} s; score {score:.3f} = accuracy "
               f"{accuracy:.3f} + speed {speed:.3f}; worst initial condition nRMSE {max(per_ic):.3e}; error "
               f"by frame {_frame_profile(u, ref, t)}")
    return {
        "score": score,
        "features": {"log10_runtime_s": math.log10(max(runtime_s, MIN_RUNTIME_S)),
                     "log10_nrmse": math.log10(min(max(err, NRMSE_FLOOR), NRMSE_CAP))},
        "metrics": metrics,
        "artifacts": {"summary": summary},
    }


def evaluate_heldout_solver(program_path: str, cases: Sequence[Case], build_case: BuildCase) -> dict[str, Any]:
    """The held-out cases ``cases[1:]``, each reported (``<case>_nrmse``, ``_passed``, ``_runtime_s``) and never
    scored; a case that fails is recorded as not passed, and the next one still runs. All of it is private
    (docs/architecture.md, "The task contract")."""
    heldout = cases[1:]
    metrics: dict[str, float] = {}
    notes = []
    session = CandidateSession(program_path, timeout_s=SOLVER_TIMEOUT_S)
    try:
        for case in heldout:
            try:
                hu, hwhy, hruntime, href = _solve(session, case, build_case)
            except CandidateError as exc:
                hu, hwhy, hruntime = None, f"{type(exc).__name__}: ...{str(exc)[-300:]}", float("nan")
                session.close()
                session = CandidateSession(program_path, timeout_s=SOLVER_TIMEOUT_S)
            if hu is None:
                metrics[f"{case.name}_passed"] = 0.0
                notes.append(f"{case.name} ({case.params}): failed: {hwhy}")
                continue
            herr = nrmse(hu, href)
            metrics.update({f"{case.name}_nrmse": herr, f"{case.name}_passed": float(herr < PASS_NRMSE),
                            f"{case.name}_runtime_s": hruntime})
            notes.append(f"{case.name} ({case.params}): nRMSE {herr:.3e}")
        metrics["heldout_passed_fraction"] = sum(metrics[f"{c.name}_passed"] for c in heldout) / max(len(heldout), 1)
    finally:
        session.close()
    return {"metrics": metrics, "artifacts": {"heldout": "; ".join(notes)[:2000]}}
