"""What the three PDE tasks share: the harness (validation, nRMSE, score) and the cheating candidates.

Task-specific checks (the references are right, the initial program's numbers, an exact solver
passes) are in test_pde_advection.py, test_pde_burgers.py and test_pde_reaction_diffusion.py.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evoforge.evaluators.candidate import CandidateRaised
from evoforge.evaluators.types import EvaluationResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TASKS = Path(__file__).resolve().parents[2] / "tasks"
PDE_TASKS = ("pde_advection", "pde_burgers", "pde_reaction_diffusion")


def load_evaluator(task: str):
    spec = importlib.util.spec_from_file_location(f"{task}_evaluator_under_test", TASKS / task / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVALUATORS = {task: load_evaluator(task) for task in PDE_TASKS}


def write_program(tmp_path: Path, body: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body).strip() + "\n")
    return str(path)


def assert_invalid(result: dict, *needles: str) -> str:
    assert result.get("status") == "invalid", result
    assert "score" not in result
    for needle in needles:
        assert needle in result["error"], (needle, result["error"])
    return result["error"]


# ---------------------------------------------------------------------------------------------
# the shared harness


def test_the_three_task_folders_share_one_harness():
    import evoforge.evaluators.harnesses.pde as harness
    for task in PDE_TASKS:
        ev = EVALUATORS[task]
        assert ev.check_solution is harness.check_solution and ev.nrmse is harness.nrmse
        assert ev._score is harness.score_terms and isinstance(ev.CASES[0], harness.Case)
        assert "evaluate_solver(program_path, CASES, build_case)" in (TASKS / task / "evaluator.py").read_text()


@pytest.mark.parametrize("task", PDE_TASKS)
def test_task_toml_matches_the_evaluator(task):
    raw = tomllib.loads((TASKS / task / "task.toml").read_text())
    ev = EVALUATORS[task]
    assert raw["name"] == task and raw["objective"] == "maximize" and raw["files"] == []
    assert [d["name"] for d in raw["descriptors"]] == ["log10_runtime_s", "log10_nrmse"]
    ranges = {d["name"]: d["range"] for d in raw["descriptors"]}
    assert ranges["log10_nrmse"][0] == math.log10(ev.NRMSE_FLOOR)
    assert ranges["log10_runtime_s"][0] == math.log10(ev.MIN_RUNTIME_S)
    assert ranges["log10_runtime_s"][1] >= math.log10(ev.SOLVER_TIMEOUT_S)
    # every solver call may take its full timeout and the evaluation still fits the sandbox limit
    assert raw["limits"]["timeout_s"] >= len(ev.CASES) * ev.SOLVER_TIMEOUT_S + 10
    assert raw["archive"]["qd_offset"] >= math.log10(ev.NRMSE_CAP)
    assert "0.05" in raw["description"] and "solver(u0, t, params)" in raw["description"]
    text = (TASKS / task / "initial_program.py").read_text()
    assert text.count("# EVOLVE-BLOCK-START") == 1 and "def solver(u0, t, params)" in text
    assert ev.CASES[0].name == "train" and all(c.name.startswith("heldout_") for c in ev.CASES[1:])


def test_nrmse_is_codepdes_mean_of_per_sample_ratios():
    ev = EVALUATORS["pde_advection"]
    ref = np.ones((2, 3, 4))
    ref[1] *= 2.0
    u = ref.copy()
    u[0] += 0.1                         # sample 0: RMSE 0.1 / RMS 1 = 0.1
    u[1] += 0.4                         # sample 1: RMSE 0.4 / RMS 2 = 0.2
    assert ev.nrmse(u, ref) == pytest.approx(0.15, rel=1e-12)
    assert ev.nrmse(np.zeros_like(ref), ref) == pytest.approx(1.0)


def test_score_rewards_passing_first_then_accuracy_then_speed():
    ev = EVALUATORS["pde_advection"]
    fail, acc_fail, speed_fail = ev._score(0.06, 0.001)
    assert speed_fail == 0.0 and fail == pytest.approx(-math.log10(0.06))
    slow_pass, _, _ = ev._score(0.049, ev.SOLVER_TIMEOUT_S)
    assert slow_pass > fail                     # a passing solver beats a fast failing one
    fast, _, speed = ev._score(1e-3, 0.02)
    assert speed == pytest.approx(0.5 * 3.0) and fast == pytest.approx(3.0 + 1.5)
    assert ev._score(1e-3, 0.002)[0] == pytest.approx(fast + 0.5)   # 10x faster: +0.5
    assert ev._score(1e-9, 0.02)[0] == ev._score(1e-6, 0.02)[0]     # the nRMSE floor
    assert ev._score(1e-3, 1e-6)[0] == ev._score(1e-3, ev.MIN_RUNTIME_S)[0]


@pytest.mark.parametrize("raw, needle", [
    (np.zeros((2, 3, 4)), "shape (batch, len(t), N) = (2, 3, 5)"),
    (1.5, "(a scalar)"),
    ([[["0.1"] * 5] * 3] * 2, "real numbers"),
    (np.zeros((2, 3, 5), dtype=complex), "real numbers"),
    (np.full((2, 3, 5), np.nan), "non-finite"),
    (np.full((2, 3, 5), 11.0), "out of range"),
    ([[[0.0] * 5] * 3, [[0.0] * 4]], "not an array"),
])
def test_check_solution_rejects_malformed_output(raw, needle):
    arr, why = EVALUATORS["pde_advection"].check_solution(raw, (2, 3, 5), np.ones((2, 5)))
    assert arr is None and needle in why, why


def test_check_solution_accepts_integers_and_lists():
    ev = EVALUATORS["pde_advection"]
    arr, why = ev.check_solution([[[1] * 5] * 3] * 2, (2, 3, 5), np.ones((2, 5)))
    assert why == "" and arr.dtype == np.float64 and arr.shape == (2, 3, 5)


# ---------------------------------------------------------------------------------------------
# cheating and broken candidates, for every PDE task

CHEATS = {
    "nan": ("""
        def solver(u0, t, params):
            return np.full((u0.shape[0], len(t), u0.shape[1]), np.nan)
        """, "non-finite"),
    "wrong_shape": ("""
        def solver(u0, t, params):
            return np.repeat(u0[:, None, :], len(t) - 1, axis=1)
        """, "must return shape"),
    "precomputed_number": ("""
        def solver(u0, t, params):
            return 0.0123
        """, "(a scalar)"),
    "blow_up": ("""
        def solver(u0, t, params):
            return np.repeat(u0[:, None, :], len(t), axis=1) * 1e6
        """, "out of range"),
    "strings": ("""
        def solver(u0, t, params):
            return [[["1.0"] * u0.shape[1]] * len(t)] * u0.shape[0]
        """, "real numbers"),
    "object_array": ("""
        def solver(u0, t, params):
            return np.empty((u0.shape[0], len(t), u0.shape[1]), dtype=object)
        """, "numeric array"),
}


# The harness is shared (checked above), so every cheat runs on the cheapest task and two on all of them.
@pytest.mark.parametrize("task, cheat", [("pde_advection", cheat) for cheat in sorted(CHEATS)] + [
    (task, cheat) for task in PDE_TASKS[1:] for cheat in ("nan", "precomputed_number")])
def test_cheating_or_broken_output_is_invalid(tmp_path, task, cheat):
    body, needle = CHEATS[cheat]
    result = EVALUATORS[task].evaluate(write_program(tmp_path, body))
    assert_invalid(result, needle)
    assert result["artifacts"]["violation"] == result["error"]
    assert EvaluationResult.from_evaluator(result).status == "invalid"


@pytest.mark.parametrize("task", PDE_TASKS)
def test_returning_the_initial_condition_unchanged_fails_the_threshold(tmp_path, task):
    ev = EVALUATORS[task]
    path = write_program(tmp_path, """
        def solver(u0, t, params):
            return np.repeat(np.asarray(u0)[:, None, :], len(t), axis=1)
        """)
    result = ev.evaluate(path)
    assert result.get("status", "ok") == "ok", result
    assert result["metrics"]["passed"] == 0.0 and result["metrics"]["speed_term"] == 0.0
    assert result["metrics"]["nrmse"] > 0.2
    assert result["score"] < -math.log10(ev.PASS_NRMSE)
    assert EVALUATORS[task].evaluate_heldout(path)["metrics"]["heldout_passed_fraction"] == 0.0


@pytest.mark.parametrize("task", PDE_TASKS)
def test_zeros_score_exactly_nrmse_one(tmp_path, task):
    path = write_program(tmp_path, """
        def solver(u0, t, params):
            return np.zeros((len(u0), len(t), len(u0[0])))
        """)
    result = EVALUATORS[task].evaluate(path)
    assert result["metrics"]["nrmse"] == pytest.approx(1.0, abs=1e-12)
    assert result["score"] == pytest.approx(0.0, abs=1e-12) and result["metrics"]["passed"] == 0.0


def test_answers_tabulated_at_import_do_not_line_up(tmp_path):
    """A program that imports the evaluator and tabulates the fixed-seed reference at import time (not
    timed) and looks it up in solver() gets nothing: the evaluator rotates the grid secretly per call."""
    evaluator = TASKS / "pde_burgers" / "evaluator.py"
    path = write_program(tmp_path, f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("stolen", {str(evaluator)!r})
        stolen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stolen)
        TABLE = [stolen.build_case(case) for case in stolen.CASES]

        def solver(u0, t, params):
            for table_u0, _, _, ref in TABLE:
                if table_u0.shape == u0.shape and np.array_equal(table_u0, u0):
                    return ref
            return np.zeros((u0.shape[0], len(t), u0.shape[1]))
        """)
    result = EVALUATORS["pde_burgers"].evaluate(path)
    assert result["metrics"]["nrmse"] == pytest.approx(1.0, abs=1e-12), result["metrics"]
    assert result["metrics"]["passed"] == 0.0


def test_the_secret_rotation_does_not_change_a_real_solvers_nrmse():
    """Translation invariance: an upwind solver gets the same nRMSE whatever the rotation."""
    ev = EVALUATORS["pde_advection"]
    u0, t, params, ref = ev.build_case(ev.CASES[0])

    def upwind(u0):
        u, out = u0.copy(), [u0]
        for _ in range(len(t) - 1):
            for _ in range(10):   # beta dt / dx = 0.1 * 0.01 * 256 = 0.256
                u = u - 0.256 * (u - np.roll(u, 1, axis=-1))
            out.append(u)
        return np.stack(out, axis=1)

    base = ev.nrmse(upwind(u0), ref)
    for shift in (1, 17, 255):
        rolled = ev.nrmse(upwind(np.roll(u0, shift, axis=-1)), np.roll(ref, shift, axis=-1))
        assert rolled == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("task", PDE_TASKS)
def test_exceptions_in_the_solver_propagate(tmp_path, task):
    path = write_program(tmp_path, """
        def solver(u0, t, params):
            raise ValueError("unstable")
        """)
    with pytest.raises(CandidateRaised, match="ValueError: unstable"):
        EVALUATORS[task].evaluate(path)


def test_a_heldout_failure_is_reported_not_fatal(tmp_path):
    """The solver works for the training velocity but raises on the others: score kept, held-out 0."""
    path = write_program(tmp_path, """
        def solver(u0, t, params):
            if params["beta"] != 0.1:
                raise RuntimeError("only beta = 0.1")
            k = np.fft.rfftfreq(u0.shape[1], d=1.0 / u0.shape[1])
            phase = np.exp(-2j * np.pi * k[None, :] * params["beta"] * np.asarray(t)[:, None])
            return np.fft.irfft(np.fft.rfft(u0)[:, None, :] * phase[None], n=u0.shape[1])
        """)
    result = EVALUATORS["pde_advection"].evaluate(path)
    assert result["metrics"]["passed"] == 1.0 and result["metrics"]["nrmse"] < 1e-12
    result = EVALUATORS["pde_advection"].evaluate_heldout(path)
    assert result["metrics"]["heldout_beta1_passed"] == 0.0
    assert result["metrics"]["heldout_passed_fraction"] == 0.0
    assert "heldout_beta1_nrmse" not in result["metrics"]
    assert "only beta = 0.1" in result["artifacts"]["heldout"]
