"""The equation-discovery tasks (LLM-SR style): seeded data from known laws, skeletons fitted with scipy on
training data and scored out of domain; the true laws recover near-zero error, linear baselines do not;
the skeleton runs in a nested process that holds no target and cannot read the task folder."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evoforge.evaluators.confine import landlock_abi
from evoforge.evaluators.harnesses.equations import MAX_PARAMS, SkeletonRejected, read_skeleton

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks"


def _evaluator(task: str):
    spec = importlib.util.spec_from_file_location(f"{task}_evaluator_under_test", TASKS / task / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OSC, GROWTH = _evaluator("equation_oscillator"), _evaluator("equation_growth")

TRUE_OSCILLATOR = """
import numpy as np

def equation(x, v, params):
    return params[0] * x + params[1] * x**3 + params[2] * v + params[3] * v * np.abs(v)
"""
TRUE_GROWTH = """
import numpy as np

initial_params = [0.001, 1.0, 5.0, 0.3, 45.0, 7.0, 1.0]

def equation(B, S, T, pH, params):
    temperature = ((T - params[2]) * (1 - np.exp(params[3] * (T - params[4])))) ** 2
    return params[0] * B * S / (params[1] + S) * temperature * np.exp(-((pH - params[5]) / params[6]) ** 2)
"""
MONOD_ONLY = """
def equation(B, S, T, pH, params):
    return params[0] * B * S / (params[1] + S)
"""


def _score(module, tmp_path: Path, code: str) -> dict:
    program = tmp_path / "program.py"
    program.write_text(code)
    cwd = os.getcwd()
    os.chdir(tmp_path)          # the candidate's process works where the sandbox would put it
    try:
        return module.evaluate(str(program))
    finally:
        os.chdir(cwd)


def test_the_data_are_seeded_and_the_out_of_domain_sets_lie_outside_training():
    for module in (OSC, GROWTH):
        train, tests = module.datasets()
        again, _ = module.datasets()
        assert np.array_equal(train.target, again.target) and np.array_equal(train.target, module.TRAIN.target)
        assert set(tests) == {"id", "ood"}
    train, tests = OSC.TRAIN, OSC.TESTS
    assert np.abs(tests["ood"].inputs["x"]).max() > 1.5 * np.abs(train.inputs["x"]).max()
    train, tests = GROWTH.TRAIN, GROWTH.TESTS
    assert tests["ood"].inputs["T"].min() >= train.inputs["T"].max()
    noise = GROWTH.TRAIN.target - GROWTH.true_rate(**GROWTH.TRAIN.inputs)
    assert 0.005 < np.std(noise) / np.std(GROWTH.TRAIN.target) < 0.02        # 1% noise, as documented


@pytest.mark.parametrize("module, true_law, baseline", [
    (OSC, TRUE_OSCILLATOR, (TASKS / "equation_oscillator" / "initial_program.py").read_text()),
    (GROWTH, TRUE_GROWTH, (TASKS / "equation_growth" / "initial_program.py").read_text()),
])
def test_the_true_law_recovers_near_zero_error_and_the_linear_baseline_does_not(tmp_path, module, true_law, baseline):
    true = _score(module, tmp_path, true_law)
    assert true["metrics"]["nmse_ood"] < 2e-3 and true["metrics"]["nmse_id"] < 2e-3, true
    assert true["score"] > 2.5
    linear = _score(module, tmp_path, baseline)
    assert linear["metrics"]["nmse_ood"] > 0.1 and linear["score"] < 1.0, linear
    assert true["features"]["n_params"] > linear["features"]["n_params"] - 2
    assert "Fitted constants" in true["artifacts"]["fit"]


def test_the_fit_finds_the_true_constants(tmp_path):
    result = _score(OSC, tmp_path, TRUE_OSCILLATOR)
    fitted = [float(part.split("= ")[1]) for part in result["artifacts"]["fit"].split(": ", 2)[2].split(", ")]
    assert np.allclose(fitted, [-0.8, -0.5, -0.15, -0.25], atol=0.02), fitted


def test_a_monod_term_alone_misses_temperature_and_ph(tmp_path):
    result = _score(GROWTH, tmp_path, MONOD_ONLY)
    assert result["metrics"]["nmse_ood"] > 0.1


@pytest.mark.parametrize("code, fragment", [
    ("def equation(x, params):\n    return params[0] * x\n", "must take 3 arguments"),
    ("def equation(x, v, params):\n    return params[12] * x\n", "params[12] is out of range"),
    ("def equation(x, v, params):\n    return 'fast'\n", "expected one number per data point"),
    ("def equation(x, v, params):\n    raise RuntimeError('no')\n", "the equation failed"),
    ("def equation(x, v, params):\n    return x[:3]\n", "expected one number per data point"),
    ("initial_params = [1.0] * 3\ndef equation(x, v, params):\n    return x\n", "written out literally"),
    ("def other(x, v, params):\n    return x\n", "must define equation"),
])
def test_malformed_skeletons_are_invalid_with_the_reason(tmp_path, code, fragment):
    result = _score(OSC, tmp_path, code)
    assert result["status"] == "invalid" and fragment in result["error"], result


def test_read_skeleton_counts_params_and_reads_the_initial_guess_without_running_anything():
    skeleton = read_skeleton("initial_params = [2, 3.5]\nimport os\nos.system('exit 1')\n"
                             "def equation(a, params):\n    return params[0] * a + params[3] - params[0]\n",
                             "equation", 2)
    assert skeleton.params_used == (0, 3) and skeleton.initial == (2.0, 3.5) and skeleton.nodes > 5
    with pytest.raises(SkeletonRejected, match=f"at most {MAX_PARAMS}"):
        read_skeleton(f"initial_params = {[1.0] * 11}\ndef equation(a, params):\n    return a\n", "equation", 2)


def test_the_candidate_holds_no_target_in_its_memory(tmp_path):
    # The skeleton returns the training-length array in its process with the largest spread that is not an
    # input; were the targets there, it would fit perfectly.
    thief = """
import gc
import numpy as np

def equation(x, v, params):
    best = None
    for obj in gc.get_objects():
        if isinstance(obj, np.ndarray) and obj.shape == x.shape and obj is not x and obj is not v:
            if best is None or np.var(obj) > np.var(best):
                best = obj
    return (best if best is not None else 0 * x) * params[0]
"""
    result = _score(OSC, tmp_path, thief)
    assert result.get("status") == "invalid" or result["metrics"]["nmse_train"] > 0.1, result


@pytest.mark.skipif(landlock_abi() < 1, reason="Landlock is unavailable: the task folder cannot be hidden here")
def test_the_candidate_cannot_read_the_task_folder_inside_the_sandbox(tmp_path):
    # The worst case: the attacker knows exactly where the generator lives and runs it to learn the law.
    attack = f"""
import numpy as np

def equation(x, v, params):
    try:
        text = open({str(TASKS / 'equation_oscillator' / 'evaluator.py')!r}).read()
    except OSError:
        return params[0] * x + params[1] * v
    return -0.8 * x - 0.5 * x**3 - 0.15 * v - 0.25 * v * np.abs(v) + 0 * params[0] * len(text)
"""
    program = tmp_path / "attack.py"
    program.write_text(attack)
    out = subprocess.run([sys.executable, "-m", "evoforge", "eval", "equation_oscillator", str(program), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and result["metrics"]["nmse_ood"] > 0.1, result


@pytest.mark.slow
@pytest.mark.parametrize("task", ["equation_oscillator", "equation_growth"])
def test_an_offline_run_of_an_equation_task_through_the_cli(tmp_path, task):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", task, "--iterations", "6", "--llm", "offline",
                           "--seed", "0", "--concurrency", "1", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = sqlite3.connect(out / "run.db").execute("SELECT iteration, status, metrics FROM programs").fetchall()
    assert len(rows) == 7 and rows[0][1] == "ok"
    assert sum(r[1] == "ok" for r in rows) >= 2, rows
    assert all("nmse_ood" in json.loads(r[2]) for r in rows if r[1] == "ok")
