"""pde_reaction_diffusion: the references are right, the initial program is accurate but slow, a
split-step spectral solver passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from test_pde_common import TASKS, load_evaluator, write_program  # noqa: E402 - same folder

ev = load_evaluator("pde_reaction_diffusion")
INITIAL = TASKS / "pde_reaction_diffusion" / "initial_program.py"

STRANG = """
    def solver(u0, t, params):
        # Strang splitting, both halves exact: Fourier diffusion and the logistic formula; dt = 1e-2
        nu, rho = float(params["nu"]), float(params["rho"])
        u = np.array(u0, dtype=np.float64)
        n = u.shape[1]
        k = np.fft.rfftfreq(n, d=1.0 / n)
        out = [u.copy()]
        for a, b in zip(t[:-1], t[1:]):
            steps = max(1, int(np.ceil((b - a) / 1e-2)))
            dt = (b - a) / steps
            heat = np.exp(-nu * (2 * np.pi * k) ** 2 * dt)
            half = np.exp(-rho * dt / 2)
            for _ in range(steps):
                u = u / (u + (1 - u) * half)
                u = np.fft.irfft(np.fft.rfft(u) * heat, n=n)
                u = u / (u + (1 - u) * half)
            out.append(u.copy())
        return np.stack(out, axis=1)
    """


def _radau(u0: np.ndarray, nu: float, rho: float, t: np.ndarray) -> np.ndarray:
    """An independent reference: the pseudo-spectral method of lines integrated by the implicit Radau IIA
    method (order 5, adaptive) with the exact Jacobian; no splitting, no Richardson."""
    n = u0.shape[0]
    lam = nu * (2 * np.pi * np.fft.rfftfreq(n, d=1.0 / n)) ** 2
    diffusion = np.fft.irfft(-lam[:, None] * np.fft.rfft(np.eye(n), axis=0), n=n, axis=0)   # dense matrix

    def rhs(_, u):
        return diffusion @ u + rho * u * (1 - u)

    def jac(_, u):
        return diffusion + np.diag(rho * (1 - 2 * u))

    sol = solve_ivp(rhs, (t[0], t[-1]), u0, method="Radau", t_eval=t, jac=jac, rtol=1e-11, atol=1e-12)
    assert sol.success, sol.message
    return sol.y.T


def test_uniform_initial_values_follow_the_closed_form():
    t = np.linspace(0.0, 1.0, 11)
    u0 = np.array([[0.2] * 16, [0.9] * 16])
    ref = ev.spectral_reference(u0, 0.5, 1.0, t)
    for row, value in zip(ref, (0.2, 0.9)):
        exact = 1.0 / (1.0 + (1.0 / value - 1.0) * np.exp(-1.0 * t))
        assert np.abs(row - exact[:, None]).max() < 1e-13
    assert ev.logistic_exact(np.array(0.0), 3.0, 1.0) == 0.0 and ev.logistic_exact(np.array(1.0), 3.0, 1.0) == 1.0


@pytest.mark.parametrize("case_index", [0, 1])
def test_spectral_reference_agrees_with_an_independent_integrator(case_index):
    case = ev.CASES[case_index]
    u0, t, params, ref = ev.build_case(case._replace(batch=1))
    other = _radau(u0[0], params["nu"], params["rho"], t)
    assert np.abs(ref[0] - other).max() < 1e-8


def test_spectral_reference_is_converged_in_time_and_space():
    case = ev.CASES[1]._replace(batch=2)                 # the fronts: the hardest case
    u0, t, params, ref = ev.build_case(case)
    finer = ev.spectral_reference(u0, params["nu"], params["rho"], t, steps_per_unit=4000)
    assert np.abs(ref - finer).max() < 1e-8
    # the same bumps on a 3x finer grid (cell-centred grids nest at odd ratios: x_i = x'_{3i+1})
    fine_case = case._replace(n=3 * case.n)
    u0_fine, _, _, ref_fine = ev.build_case(fine_case)
    assert np.allclose(u0_fine[:, 1::3], u0, atol=1e-15)
    assert np.abs(ref_fine[:, :, 1::3] - ref).max() < 1e-8


def test_special_cases_reduce_to_heat_and_logistic():
    x, t = ev.grid(64), np.linspace(0.0, 0.5, 6)
    u0 = (0.5 + 0.3 * np.sin(2 * np.pi * 3 * x))[None]
    heat = ev.spectral_reference(u0, 0.05, 0.0, t)
    exact = 0.5 + 0.3 * np.exp(-0.05 * (6 * np.pi) ** 2 * t)[:, None] * np.sin(2 * np.pi * 3 * x)[None]
    assert np.abs(heat[0] - exact).max() < 1e-13
    pure = ev.spectral_reference(u0, 0.0, 2.0, t)
    assert np.abs(pure[0] - ev.logistic_exact(u0[0][None], 2.0, t[:, None])).max() < 1e-13


def test_cases_are_fixed_and_in_range():
    u0, t, params, ref = ev.build_case(ev.CASES[0])
    assert ref.shape == (8, 21, 128) and params == {"nu": 0.5, "rho": 1.0}
    assert np.array_equal(u0, ev.build_case(ev.CASES[0])[0])
    assert np.ptp(u0[-1]) == 0.0 and np.ptp(u0[-2]) == 0.0 and np.ptp(u0[0]) > 0.5   # two uniform rows
    for case in ev.CASES:
        u0, _, _, ref = ev.build_case(case)
        assert u0.min() >= 0.0 and u0.max() <= 1.0 and ref.min() > -1e-9 and ref.max() < 1.0 + 1e-9


def test_initial_program_is_accurate_and_slow():
    result = ev.evaluate(str(INITIAL))
    assert result.get("status", "ok") == "ok", result
    m = result["metrics"]
    assert m["nrmse"] == pytest.approx(4.5193437e-06, rel=1e-5)
    m = {**m, **ev.evaluate_heldout(str(INITIAL))["metrics"]}
    assert m["passed"] == 1.0 and m["heldout_passed_fraction"] == 1.0
    assert m["heldout_fronts_nrmse"] < 0.01 and m["heldout_nu005_rho2_nrmse"] < 1e-3
    assert result["score"] == pytest.approx(m["accuracy_term"] + m["speed_term"])


def test_split_step_spectral_solver_passes(tmp_path):
    result = ev.evaluate(write_program(tmp_path, STRANG))
    m = {**result["metrics"], **ev.evaluate_heldout(write_program(tmp_path, STRANG))["metrics"]}
    assert m["nrmse"] < 1e-3 and m["passed"] == 1.0 and m["heldout_passed_fraction"] == 1.0
    assert result["features"]["log10_nrmse"] == pytest.approx(math.log10(m["nrmse"]))
