"""Evaluator for a PDE solver (CodePDE, Li et al. 2025): 1-D linear advection, periodic.

    u_t + beta * u_x = 0,   x in (0, 1) periodic,   cell-centred grid x_i = (i + 1/2) / N

The candidate defines ``solver(u0, t, params) -> u``: ``u0`` is a float64 array ``(batch, N)`` of
initial conditions on the grid, ``t`` the output times ``(T + 1,)`` with ``t[0] = 0``, ``params`` a
dict ``{"beta": float}``; it returns ``u`` of shape ``(batch, T + 1, N)`` (row 0 is the initial frame).

Reference (exact, computed here, never written to disk): the initial conditions are sums of sines
with integer wavenumbers, ``u0(x) = sum_m a_m sin(2 pi k_m x + p_m)``, so the exact solution is the
shifted sum ``u(t, x) = u0(x - beta t)`` evaluated analytically at the grid points.

Metric (CodePDE): ``nRMSE = mean_b( RMSE_b(u - u_ref) / RMS_b(u_ref) )`` over all (t, x), initial frame
included; a solver *passes* when nRMSE < 0.05 (CodePDE's rule).

Score (maximise), computed by the harness (``evoforge.evaluators.harnesses.pde``) from the training case only::

    accuracy = -log10(max(nRMSE, 1e-6))               # 1e-6 and better all count as "exact"
    speed    = 0.5 * log10(20 s / max(runtime_s, 1e-3))  if nRMSE < 0.05 else 0
    score    = accuracy + speed

so a passing solver always beats a failing one, and among passing ones a 10x speed-up is worth half a
decade of nRMSE. ``runtime_s`` is wall-clock time measured HERE around the one call: it includes a
fixed overhead of about 2-3 ms for sending the arrays to the candidate's process and back (the
``CandidateSession`` pipe), so runtimes below ~3 ms are not distinguishable.

Anti reward hacking: the candidate runs in a nested process (``evoforge.evaluators.candidate``) and only its
returned numbers cross back; it never sees the reference. Each call rotates the periodic grid by a
secret number of cells (see ``evoforge.evaluators.harnesses.pde._solve``), so answers tabulated in advance
(e.g. at import time, which is not timed) for the fixed-seed problems do not line up, while a real solver is
unaffected. Its output must be a real numeric array of
exactly the right shape with every value finite and ``|u| <= 10 * max|u0|`` (per initial condition:
for advection the true solution never exceeds ``max|u0|``, so more is a blow-up), otherwise the
candidate is ``invalid`` with a message naming the problem. Exceptions, crashes and timeouts of the
candidate propagate as ``CandidateError``s (the engine records them as error / timeout).

Held-out cases (other velocities, other initial conditions, a negative velocity) are solved by
``evaluate_heldout`` (only when it matters: a new best, the final elites) and reported as metrics
``heldout_<case>_nrmse`` / ``_passed``; they never enter the score. A held-out failure (exception, timeout,
invalid output) is reported in the artifacts and as ``heldout_<case>_passed = 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evoforge.evaluators.harnesses.pde import (  # the harness the three PDE tasks share
    MIN_RUNTIME_S, NRMSE_CAP, NRMSE_FLOOR, PASS_NRMSE, SOLVER_TIMEOUT_S, Case, check_solution, evaluate_solver, grid,
    evaluate_heldout_solver, nrmse,
)
from evoforge.evaluators.harnesses.pde import score_terms as _score  # noqa: F401 - the rule above, for tests

__all__ = ["evaluate", "evaluate_heldout", "CASES", "build_case", "exact_solution", "nrmse", "check_solution", "grid",
           "MIN_RUNTIME_S", "NRMSE_CAP", "NRMSE_FLOOR", "PASS_NRMSE", "SOLVER_TIMEOUT_S"]


# ---- task configuration -------------------------------------------------------------------------------
CASES = (
    # CodePDE's advection setting (beta = 0.1, t in [0, 2]); 256 cells keep one evaluation cheap.
    Case("train", {"beta": 0.1}, n=256, t_end=2.0, frames=21, batch=8, seed=101, ic={"modes": 3, "kmax": 6}),
    Case("heldout_beta1", {"beta": 1.0}, n=256, t_end=2.0, frames=21, batch=8, seed=202,
         ic={"modes": 3, "kmax": 6}),
    Case("heldout_highk_negbeta", {"beta": -0.4}, n=256, t_end=2.0, frames=21, batch=8, seed=303,
         ic={"modes": 3, "kmax": 12}),
)


def _sine_modes(case: Case) -> list[list[tuple[int, float, float]]]:
    """Per initial condition, ``modes`` triples (k, amplitude, phase), k in 1..kmax."""
    rng = np.random.default_rng(case.seed)
    return [[(int(rng.integers(1, case.ic["kmax"] + 1)), float(rng.uniform(-1.0, 1.0)),
              float(rng.uniform(0.0, 2.0 * math.pi))) for _ in range(case.ic["modes"])]
            for _ in range(case.batch)]


def exact_solution(modes: list[tuple[int, float, float]], beta: float, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``u(t, x) = u0(x - beta t)`` for ``u0 = sum a sin(2 pi k x + p)``; shape ``(len(t), len(x))``."""
    shifted = x[None, :] - beta * np.asarray(t, dtype=np.float64)[:, None]
    return sum(a * np.sin(2.0 * math.pi * k * shifted + p) for k, a, p in modes)


def build_case(case: Case) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """``(u0 (B, N), t (T+1,), params, u_ref (B, T+1, N))`` for one case."""
    x, t = grid(case.n), np.linspace(0.0, case.t_end, case.frames)
    ref = np.stack([exact_solution(m, case.params["beta"], t, x) for m in _sine_modes(case)])
    return ref[:, 0].copy(), t, dict(case.params), ref
# -------------------------------------------------------------------------------------------------------


def evaluate(program_path: str) -> dict[str, Any]:
    """Solve the training case (score) and the held-out cases (metrics) with the candidate's solver()."""
    return evaluate_solver(program_path, CASES, build_case)


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """The held-out cases (private: run for a new best, the final elites and ``evoforge eval --heldout``)."""
    return evaluate_heldout_solver(program_path, CASES, build_case)
