"""Evaluator for a PDE solver (CodePDE, Li et al. 2025): 1-D viscous Burgers, periodic.

    u_t + (u^2 / 2)_x = nu * u_xx,   x in (0, 1) periodic,   cell-centred grid x_i = (i + 1/2) / N

The candidate defines ``solver(u0, t, params) -> u``: ``u0`` is a float64 array ``(batch, N)`` of
initial conditions on the grid, ``t`` the output times ``(T + 1,)`` with ``t[0] = 0``, ``params`` a
dict ``{"nu": float}``; it returns ``u`` of shape ``(batch, T + 1, N)`` (row 0 is the initial frame).

Reference (exact, computed here, never written to disk): the initial conditions are single sine
waves ``u0 = A sin(2 pi k (x - s))`` (amplitude A, integer wavenumber k, shift s), for which the
Cole-Hopf transform ``u = -2 nu phi_x / phi`` turns Burgers into the heat equation ``phi_t = nu phi_xx``
with ``phi0 = exp(a cos(theta))``, ``theta = 2 pi k (x - s)``, ``a = A / (4 pi k nu)``, whose Fourier
series is the Bessel series (Abramowitz & Stegun 9.6.34)::

    phi(t, x) = I0(a) + 2 sum_{n>=1} I_n(a) exp(-nu (2 pi n k)^2 t) cos(n theta)

Each term is evaluated with the exponentially scaled ``scipy.special.ive`` (the common factor e^a
cancels in the ratio), so nothing overflows; it is trustworthy while ``a`` stays below about 10
(``phi`` then spans e^{-2a} ~ 2e-9 of its maximum, losing about 9 of 16 digits in the worst cell) —
that is nu >= 0.01 for A <= 1, k >= 1, which every case here respects (checked). The shock that
forms at t ~ 1 / (2 pi A k) is resolved by the analytic formula, not by a grid.

Metric (CodePDE): ``nRMSE = mean_b( RMSE_b(u - u_ref) / RMS_b(u_ref) )`` over all (t, x), initial frame
included; a solver *passes* when nRMSE < 0.05 (CodePDE's rule).

Score (maximise), computed by the harness below from the training case only::

    accuracy = -log10(max(nRMSE, 1e-6))               # 1e-6 and better all count as "exact"
    speed    = 0.5 * log10(20 s / max(runtime_s, 1e-3))  if nRMSE < 0.05 else 0
    score    = accuracy + speed

so a passing solver always beats a failing one, and among passing ones a 10x speed-up is worth half a
decade of nRMSE. ``runtime_s`` is wall-clock time measured HERE around the one call: it includes a
fixed overhead of about 2-3 ms for sending the arrays to the candidate's process and back (the
``CandidateSession`` pipe), so runtimes below ~3 ms are not distinguishable.

Anti reward hacking: the candidate runs in a nested process (``evaluators.candidate``) and only its
returned numbers cross back; it never sees the reference. Each call rotates the periodic grid by a
secret number of cells (see ``_solve``), so answers tabulated in advance (e.g. at import time, which is
not timed) for the fixed-seed problems do not line up, while a real solver is unaffected. Its output must be a real numeric array of
exactly the right shape with every value finite and ``|u| <= 10 * max|u0|`` (per initial condition:
viscous Burgers obeys a maximum principle, so more is a blow-up), otherwise the candidate is
``invalid`` with a message naming the problem. Exceptions, crashes and timeouts of the candidate
propagate as ``CandidateError``s (the engine records them as error / timeout).

Held-out cases (another viscosity, another wavenumber) are solved in the same process after the
training case and reported as metrics ``heldout_<case>_nrmse`` / ``_passed``; they never enter the
score. A held-out failure (exception, timeout, invalid output) is reported in the artifacts and as
``heldout_<case>_passed = 0``.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ive

from evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession

__all__ = ["evaluate", "CASES", "build_case", "exact_solution", "nrmse", "check_solution", "grid"]


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


# ---- task configuration -------------------------------------------------------------------------------
CASES = (
    # CodePDE's Burgers setting (nu = 0.01, t in [0, 2]); 256 cells keep one evaluation cheap.
    Case("train", {"nu": 0.01}, n=256, t_end=2.0, frames=21, batch=8, seed=101,
         ic={"amplitude": (0.5, 1.0), "k": (1, 2)}),
    Case("heldout_nu002", {"nu": 0.02}, n=256, t_end=2.0, frames=21, batch=4, seed=202,
         ic={"amplitude": (0.5, 1.0), "k": (1, 2)}),
    Case("heldout_k3", {"nu": 0.01}, n=256, t_end=2.0, frames=21, batch=4, seed=303,
         ic={"amplitude": (0.5, 1.0), "k": (3,)}),
)
MAX_COLE_HOPF_A = 10.0       # a = A / (4 pi k nu) above this loses too many digits (see the docstring)


def _sine_ics(case: Case) -> list[tuple[float, int, float]]:
    """Per initial condition ``(A, k, s)``: u0 = A sin(2 pi k (x - s))."""
    rng = np.random.default_rng(case.seed)
    low, high = case.ic["amplitude"]
    return [(float(rng.uniform(low, high)), int(rng.choice(case.ic["k"])), float(rng.uniform(0.0, 1.0)))
            for _ in range(case.batch)]


def exact_solution(amplitude: float, k: int, shift: float, nu: float, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cole-Hopf solution for ``u0 = A sin(2 pi k (x - s))``; shape ``(len(t), len(x))``."""
    if amplitude < 0:      # -|A| sin(theta) = |A| sin(theta + pi): the same wave shifted by half a period
        amplitude, shift = -amplitude, shift - 0.5 / k
    a = amplitude / (4.0 * math.pi * k * nu)
    if a > MAX_COLE_HOPF_A:
        raise ValueError(f"Cole-Hopf series with a = {a:.3g} > {MAX_COLE_HOPF_A} is not accurate in float64")
    n = np.arange(1, int(a + 12.0 * math.sqrt(a + 1.0) + 30.0) + 1)   # I_n(a) / I_0(a) < 1e-20 beyond
    ratio = ive(n, a) / ive(0, a)
    theta = 2.0 * math.pi * k * (np.asarray(x, dtype=np.float64) - shift)
    decay = np.exp(-nu * (2.0 * math.pi * k * n) ** 2 * np.asarray(t, dtype=np.float64)[:, None])  # (T, n)
    weights = decay * ratio                                                     # (T, n)
    phi = 1.0 + 2.0 * weights @ np.cos(np.outer(n, theta))
    phi_x = -2.0 * (weights * (2.0 * math.pi * k * n)) @ np.sin(np.outer(n, theta))
    return -2.0 * nu * phi_x / phi


def build_case(case: Case) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """``(u0 (B, N), t (T+1,), params, u_ref (B, T+1, N))`` for one case."""
    x, t = grid(case.n), np.linspace(0.0, case.t_end, case.frames)
    ref = np.stack([exact_solution(A, k, s, case.params["nu"], t, x) for A, k, s in _sine_ics(case)])
    return ref[:, 0].copy(), t, dict(case.params), ref
# -------------------------------------------------------------------------------------------------------


# ==== PDE harness: identical in pde_advection, pde_burgers and pde_reaction_diffusion ====================
# (each task folder must be self-contained at run time; tests/tasks/test_pde_common.py keeps the copies equal)
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


def _score(err: float, runtime_s: float) -> tuple[float, float, float]:
    accuracy = -math.log10(min(max(err, NRMSE_FLOOR), NRMSE_CAP))
    speed = SPEED_WEIGHT * math.log10(SOLVER_TIMEOUT_S / max(runtime_s, MIN_RUNTIME_S)) if err < PASS_NRMSE else 0.0
    return accuracy + speed, accuracy, speed


def _solve(session: CandidateSession, case: Case) -> tuple[np.ndarray | None, str, float, np.ndarray]:
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


def evaluate(program_path: str) -> dict[str, Any]:
    """Solve the training case (score) and the held-out cases (metrics) with the candidate's solver()."""
    train, heldout = CASES[0], CASES[1:]
    session = CandidateSession(program_path, timeout_s=SOLVER_TIMEOUT_S)
    try:
        try:   # other CandidateErrors propagate: the engine records error / timeout
            u, why, runtime_s, ref = _solve(session, train)
        except CandidateInvalid as exc:   # e.g. an object array: not plain data
            u, why = None, f"solver() must return a numeric array: {exc}"
        if u is None:
            return {"status": "invalid", "error": why, "artifacts": {"violation": why}}
        err = nrmse(u, ref)
        score, accuracy, speed = _score(err, runtime_s)
        per_ic = [nrmse(u[b:b + 1], ref[b:b + 1]) for b in range(u.shape[0])]
        t = np.linspace(0.0, train.t_end, train.frames)
        metrics: dict[str, float] = {
            "nrmse": err, "runtime_s": runtime_s, "passed": float(err < PASS_NRMSE),
            "accuracy_term": accuracy, "speed_term": speed, "worst_ic_nrmse": max(per_ic),
        }
        notes = []
        for case in heldout:
            try:
                hu, hwhy, hruntime, href = _solve(session, case)
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
        "artifacts": {"summary": summary, "heldout": "; ".join(notes)[:2000]},
    }
# ==== end of the PDE harness ==============================================================================
