"""pde_burgers: the Cole-Hopf reference is right, the initial program passes slowly, an exact solver passes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from test_pde_common import TASKS, load_evaluator, write_program  # noqa: E402 - same folder

ev = load_evaluator("pde_burgers")
INITIAL = TASKS / "pde_burgers" / "initial_program.py"

# Cole-Hopf done differently from the evaluator: phi0 = exp(-(1/2nu) * integral of u0) built from the
# grid data by FFT, evolved mode by mode with the heat kernel, differentiated spectrally. Exact for any
# zero-mean initial condition whose phi is resolved on the grid.
COLE_HOPF = """
    def solver(u0, t, params):
        nu = float(params["nu"])
        u0 = np.asarray(u0, dtype=np.float64)
        n = u0.shape[1]
        k = np.fft.fftfreq(n, d=1.0 / n)
        ik = 2j * np.pi * k
        safe = np.where(k == 0, 1.0, ik)
        integral = np.fft.ifft(np.where(k == 0, 0.0, np.fft.fft(u0) / safe)).real
        log_phi = -integral / (2 * nu)
        phi_hat = np.fft.fft(np.exp(log_phi - log_phi.max(axis=1, keepdims=True)))
        decay = np.exp(-nu * (2 * np.pi * k) ** 2 * np.asarray(t)[:, None])
        phi = np.fft.ifft(phi_hat[:, None, :] * decay[None], axis=-1).real
        phi_x = np.fft.ifft(phi_hat[:, None, :] * decay[None] * ik, axis=-1).real
        return -2 * nu * phi_x / phi
    """


def test_reference_starts_at_the_sine_wave():
    x = ev.grid(256)
    for amplitude, k, shift in [(1.0, 1, 0.0), (0.6, 2, 0.3), (-0.8, 3, 0.9)]:
        u = ev.exact_solution(amplitude, k, shift, 0.01, np.array([0.0]), x)[0]
        assert np.abs(u - amplitude * np.sin(2 * np.pi * k * (x - shift))).max() < 1e-8


def test_reference_satisfies_burgers_at_second_order():
    """Central differences of the Cole-Hopf solution after the shock has formed: residual -> 0 as h^2."""
    nu, t0 = 0.01, 0.3
    residuals = []
    for m in (1000, 2000, 4000):
        h = 1.0 / m
        x = ev.grid(m)
        u = ev.exact_solution(1.0, 1, 0.1, nu, np.array([t0 - h, t0, t0 + h]), x)
        u_t = (u[2] - u[0]) / (2 * h)
        up, um = np.roll(u[1], -1), np.roll(u[1], 1)
        residual = u_t + u[1] * (up - um) / (2 * h) - nu * (up - 2 * u[1] + um) / h**2
        residuals.append(np.abs(residual).max())
    assert residuals[0] / residuals[1] == pytest.approx(4.0, rel=0.1)
    assert residuals[1] / residuals[2] == pytest.approx(4.0, rel=0.1)
    assert residuals[2] < 1e-3 * np.abs(u_t).max()


def test_reference_is_translation_and_sign_consistent():
    x, t = ev.grid(256), np.linspace(0.0, 2.0, 5)
    a = ev.exact_solution(0.9, 2, 0.0, 0.01, t, x)
    b = ev.exact_solution(0.9, 2, 16 / 256, 0.01, t, x)      # shifted by 16 cells
    assert np.abs(np.roll(a, 16, axis=1) - b).max() < 1e-9
    c = ev.exact_solution(-0.9, 2, 0.0, 0.01, t, x)           # = 0.9 sin shifted by half a period
    assert np.abs(c - ev.exact_solution(0.9, 2, -0.25, 0.01, t, x)).max() < 1e-12
    assert np.all(np.abs(a).max(axis=1)[1:] < np.abs(a).max(axis=1)[:-1])   # decays (maximum principle)


def test_reference_refuses_the_untrustworthy_regime():
    with pytest.raises(ValueError, match="not accurate"):
        ev.exact_solution(1.0, 1, 0.0, 0.005, np.array([0.0]), ev.grid(16))


def test_every_case_is_in_the_trusted_regime_and_fixed():
    for case in ev.CASES:
        for amplitude, k, _ in ev._sine_ics(case):
            assert amplitude / (4 * math.pi * k * case.params["nu"]) <= ev.MAX_COLE_HOPF_A
    u0, t, params, ref = ev.build_case(ev.CASES[0])
    assert ref.shape == (8, 21, 256) and params == {"nu": 0.01} and np.array_equal(u0, ev.build_case(ev.CASES[0])[0])


def test_initial_program_passes_with_a_plausible_nrmse():
    result = ev.evaluate(str(INITIAL))
    assert result.get("status", "ok") == "ok", result
    m = result["metrics"]
    assert m["nrmse"] == pytest.approx(0.0138159468, rel=1e-6)
    assert m["passed"] == 1.0 and m["speed_term"] > 0.0
    assert result["score"] == pytest.approx(m["accuracy_term"] + m["speed_term"])
    h = ev.evaluate_heldout(str(INITIAL))["metrics"]
    assert 1e-3 < h["heldout_nu002_nrmse"] < 0.05 and 1e-3 < h["heldout_k3_nrmse"] < 0.05


def test_cole_hopf_solver_passes_far_below_the_threshold(tmp_path):
    result = ev.evaluate(write_program(tmp_path, COLE_HOPF))
    m = {**result["metrics"], **ev.evaluate_heldout(write_program(tmp_path, COLE_HOPF))["metrics"]}
    assert m["nrmse"] < 1e-7, m          # two independent exact constructions agree
    assert m["heldout_nu002_nrmse"] < 1e-7 and m["heldout_k3_nrmse"] < 1e-7
    assert m["passed"] == 1.0 and m["heldout_passed_fraction"] == 1.0
    assert m["accuracy_term"] == pytest.approx(6.0)
