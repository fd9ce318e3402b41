"""Evaluator for a PDE solver (CodePDE, Li et al. 2025): 1-D reaction-diffusion (Fisher-KPP), periodic.

    u_t = nu * u_xx + rho * u * (1 - u),   x in (0, 1) periodic,   cell-centred grid x_i = (i + 1/2) / N

The candidate defines ``solver(u0, t, params) -> u``: ``u0`` is a float64 array ``(batch, N)`` of
initial conditions on the grid (values in [0, 1]), ``t`` the output times ``(T + 1,)`` with
``t[0] = 0``, ``params`` a dict ``{"nu": float, "rho": float}``; it returns ``u`` of shape
``(batch, T + 1, N)`` (row 0 is the initial frame).

References (computed here, never written to disk):

* a uniform initial value has the closed form ``u(t) = 1 / (1 + (1/u0 - 1) e^{-rho t})`` (diffusion
  does nothing to a constant) — exact;
* a non-uniform one (smooth sums of sines, or Gaussian bumps that grow into travelling fronts) has no
  closed form on a periodic domain, so the reference is a pseudo-spectral Strang splitting in which
  BOTH sub-steps are exact — diffusion multiplies Fourier mode m by ``exp(-nu (2 pi m)^2 dt)`` and the
  reaction ``u' = rho u (1 - u)`` is the logistic formula above, pointwise — with 1000 steps per unit
  time, Richardson-extrapolated against 2000 steps (Strang's error expansion has even powers only,
  so ``(4 u_{dt/2} - u_dt) / 3`` is fourth order). The only errors left are the O(dt^4) splitting
  error and spectral truncation; tests/tasks/test_pde_reaction_diffusion.py shows the reference agrees
  with a 4x finer time step and with a 3x finer grid to better than 1e-8, and with the closed form on
  uniform data to 1e-13 — far below the 1e-6 nRMSE floor of the score.

Metric (CodePDE): ``nRMSE = mean_b( RMSE_b(u - u_ref) / RMS_b(u_ref) )`` over all (t, x), initial frame
included; a solver *passes* when nRMSE < 0.05 (CodePDE's rule).

Score (maximise), computed by the harness (``evoforge.evaluators.harnesses.pde``) from the training case only::

    accuracy = -log10(max(nRMSE, 1e-6))               # 1e-6 and better all count as "exact"
    speed    = 0.5 * log10(20 s / max(runtime_s, 1e-3))  if nRMSE < 0.05 else 0
    score    = accuracy + speed

so a passing solver always beats a failing one, and among passing ones a 10x speed-up is worth half a
decade of nRMSE. ``runtime_s`` is wall-clock time measured HERE around the one call: it includes a
fixed overhead of about 2-3 ms for sending the arrays to the candidate's process and back (the
``CandidateSession`` pipe), so runtimes below ~3 ms are not distinguishable. The training case is
CodePDE's stiff setting (nu = 0.5, rho = 1): an explicit scheme must take dt < dx^2 / (2 nu), so speed
is where the room is.

Anti reward hacking: the candidate runs in a nested process (``evoforge.evaluators.candidate``) and only its
returned numbers cross back; it never sees the reference. Each call rotates the periodic grid by a
secret number of cells (see ``evoforge.evaluators.harnesses.pde._solve``), so answers tabulated in advance
(e.g. at import time, which is not timed) for the fixed-seed problems do not line up, while a real solver is
unaffected. Its output must be a real numeric array of
exactly the right shape with every value finite and ``|u| <= 10 * max|u0|`` (per initial condition:
the true solution stays in [0, 1]), otherwise the candidate is ``invalid`` with a message naming the
problem. Exceptions, crashes and timeouts of the candidate propagate as ``CandidateError``s (the
engine records them as error / timeout).

Held-out cases (fronts at low diffusion and strong reaction; other parameters) are solved by
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

__all__ = ["evaluate", "evaluate_heldout", "CASES", "build_case", "logistic_exact",
           "spectral_reference", "nrmse", "check_solution",
           "grid",
           "MIN_RUNTIME_S", "NRMSE_CAP", "NRMSE_FLOOR", "PASS_NRMSE", "SOLVER_TIMEOUT_S"]


# ---- task configuration -------------------------------------------------------------------------------
CASES = (
    # CodePDE's reaction-diffusion setting (nu = 0.5, rho = 1, t in [0, 1]); 128 cells keep it cheap.
    Case("train", {"nu": 0.5, "rho": 1.0}, n=128, t_end=1.0, frames=21, batch=8, seed=101,
         ic={"family": "sines", "uniform": 2}),
    Case("heldout_fronts", {"nu": 0.01, "rho": 5.0}, n=256, t_end=1.0, frames=21, batch=4, seed=202,
         ic={"family": "bumps", "uniform": 0}),
    Case("heldout_nu005_rho2", {"nu": 0.05, "rho": 2.0}, n=128, t_end=1.0, frames=21, batch=4, seed=303,
         ic={"family": "sines", "uniform": 1}),
)
REFERENCE_STEPS_PER_UNIT_TIME = 1000   # Strang steps; Richardson against twice as many


def _initial_conditions(case: Case, x: np.ndarray) -> tuple[np.ndarray, list[bool]]:
    """``(u0 (B, N), uniform flags)``: the last ``ic["uniform"]`` rows are constants in [0.05, 0.95]."""
    rng = np.random.default_rng(case.seed)
    rows, flags = [], []
    for b in range(case.batch):
        if b >= case.batch - case.ic["uniform"]:
            rows.append(np.full_like(x, rng.uniform(0.05, 0.95)))
            flags.append(True)
            continue
        if case.ic["family"] == "sines":      # smooth, in [0.05, 0.95]
            s = sum(rng.uniform(-1.0, 1.0) * np.sin(2.0 * math.pi * rng.integers(1, 5) * x
                                                    + rng.uniform(0.0, 2.0 * math.pi)) for _ in range(3))
            rows.append(0.5 + 0.45 * s / np.max(np.abs(s)))
        else:                                 # a Gaussian bump of width 0.03-0.08 on u = 0: two fronts
            centre, width = rng.uniform(0.0, 1.0), rng.uniform(0.03, 0.08)
            d = np.abs(x - centre)
            d = np.minimum(d, 1.0 - d)        # periodic distance
            rows.append(rng.uniform(0.5, 0.9) * np.exp(-(d / width) ** 2))
        flags.append(False)
    return np.stack(rows), flags


def logistic_exact(u: np.ndarray, rho: float, tau: float | np.ndarray) -> np.ndarray:
    """Exact solution of ``u' = rho u (1 - u)`` after time ``tau`` (u in [0, 1])."""
    decay = np.exp(-rho * np.asarray(tau, dtype=np.float64))
    return u / (u + (1.0 - u) * decay)


def _strang(u0: np.ndarray, nu: float, rho: float, t: np.ndarray, steps_per_unit: int) -> np.ndarray:
    out = np.empty((u0.shape[0], len(t), u0.shape[1]))
    out[:, 0] = u0
    modes = np.fft.rfftfreq(u0.shape[1], d=1.0 / u0.shape[1])
    u = np.array(u0, dtype=np.float64)
    for j in range(1, len(t)):
        steps = max(1, int(math.ceil((t[j] - t[j - 1]) * steps_per_unit)))
        dt = (t[j] - t[j - 1]) / steps
        heat = np.exp(-nu * (2.0 * math.pi * modes) ** 2 * dt)
        for _ in range(steps):
            u = logistic_exact(u, rho, dt / 2)
            u = np.fft.irfft(np.fft.rfft(u, axis=-1) * heat, n=u.shape[1], axis=-1)
            u = logistic_exact(u, rho, dt / 2)
        out[:, j] = u
    return out


def spectral_reference(u0: np.ndarray, nu: float, rho: float, t: np.ndarray,
                       steps_per_unit: int = REFERENCE_STEPS_PER_UNIT_TIME) -> np.ndarray:
    """Strang splitting with exact sub-steps, Richardson-extrapolated; shape ``(B, len(t), N)``."""
    coarse = _strang(u0, nu, rho, t, steps_per_unit)
    fine = _strang(u0, nu, rho, t, 2 * steps_per_unit)
    return (4.0 * fine - coarse) / 3.0


def build_case(case: Case) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """``(u0 (B, N), t (T+1,), params, u_ref (B, T+1, N))`` for one case."""
    x, t = grid(case.n), np.linspace(0.0, case.t_end, case.frames)
    u0, uniform = _initial_conditions(case, x)
    nu, rho = case.params["nu"], case.params["rho"]
    ref = spectral_reference(u0, nu, rho, t)
    for b, flat in enumerate(uniform):     # the closed form where there is one
        if flat:
            ref[b] = logistic_exact(u0[b, 0], rho, t)[:, None] * np.ones(case.n)
    return u0, t, dict(case.params), ref
# -------------------------------------------------------------------------------------------------------


def evaluate(program_path: str) -> dict[str, Any]:
    """Solve the training case (score) and the held-out cases (metrics) with the candidate's solver()."""
    return evaluate_solver(program_path, CASES, build_case)


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """The held-out cases (private: run for a new best, the final elites and ``evoforge eval --heldout``)."""
    return evaluate_heldout_solver(program_path, CASES, build_case)
