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
viscous Burgers obeys a maximum principle, so more is a blow-up), otherwise the candidate is
``invalid`` with a message naming the problem. Exceptions, crashes and timeouts of the candidate
propagate as ``CandidateError``s (the engine records them as error / timeout).

Held-out cases (another viscosity, another wavenumber) are solved by ``evaluate_heldout`` (only when it
matters: a new best, the final elites) and reported as metrics ``heldout_<case>_nrmse`` / ``_passed``; they
never enter the score. A held-out failure (exception, timeout, invalid output) is reported in the artifacts
and as ``heldout_<case>_passed = 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ive

from evoforge.evaluators.harnesses.pde import (  # the harness the three PDE tasks share
    MIN_RUNTIME_S, NRMSE_CAP, NRMSE_FLOOR, PASS_NRMSE, SOLVER_TIMEOUT_S, Case, check_solution, evaluate_solver, grid,
    evaluate_heldout_solver, nrmse,
)
from evoforge.evaluators.harnesses.pde import score_terms as _score  # noqa: F401 - the rule above, for tests

__all__ = ["evaluate", "evaluate_heldout", "CASES", "build_case", "exact_solution", "nrmse", "check_solution", "grid",
           "MIN_RUNTIME_S", "NRMSE_CAP", "NRMSE_FLOOR", "PASS_NRMSE", "SOLVER_TIMEOUT_S"]


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


def evaluate(program_path: str) -> dict[str, Any]:
    """Solve the training case (score) and the held-out cases (metrics) with the candidate's solver()."""
    return evaluate_solver(program_path, CASES, build_case)


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """The held-out cases (private: run for a new best, the final elites and ``evoforge eval --heldout``)."""
    return evaluate_heldout_solver(program_path, CASES, build_case)
