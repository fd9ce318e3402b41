"""The built-in optimizer_update_rule task: proxy problems, baselines, integrity checks.

Adam beats SGD on the proxy suite (REFERENCE.md, after the Lion paper); the initial SGD-with-momentum
program is reproduced; rules that keep hidden state, recognise problems, read the minimisers from the
task's own code or return NaN are invalid.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "optimizer_update_rule"
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("optimizer_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()

ADAM = """
def step(params, grads, state, t):
    b1, b2, lr, eps = 0.9, 0.999, 0.03, 1e-8
    m = b1 * state.get("m", 0.0) + (1 - b1) * grads
    v = b2 * state.get("v", 0.0) + (1 - b2) * grads * grads
    return params - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), {"m": m, "v": v}
"""


def _program(tmp_path: Path, block: str, name: str = "candidate.py", prelude: str = "") -> str:
    text = (TASK / "initial_program.py").read_text()
    head, rest = text.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(prelude) + START + "\n" + textwrap.dedent(block).strip("\n") + "\n"
                    + END + "\n" + tail)
    return str(path)


def _assert_invalid(result: dict, needle: str) -> None:
    assert result.get("status") == "invalid", result
    assert "score" not in result and needle in result["error"], result["error"]


@pytest.fixture(scope="module")
def initial() -> dict:
    return ev.evaluate(str(TASK / "initial_program.py"))


# ---------------------------------------------------------------------------------------------
# problems and gains


def test_problems_have_the_declared_minima():
    for problem in ev.training_problems() + ev.heldout_problems():
        loss0, grad0 = problem.loss_grad(problem.x0)
        assert loss0 > problem.f_star and grad0.shape == problem.x0.shape
        # the gradient is right (central differences along a random direction)
        d = np.random.default_rng(0).standard_normal(problem.x0.size)
        h = 1e-6
        numeric = (problem.loss_grad(problem.x0 + h * d)[0] - problem.loss_grad(problem.x0 - h * d)[0]) / (2 * h)
        assert numeric == pytest.approx(grad0 @ d, rel=1e-5, abs=1e-8), problem.name
    rosen = ev.training_problems()[0]
    assert rosen.loss_grad(np.ones(6))[0] == 0.0
    logistic = ev.training_problems()[2]             # f* from Newton: the gradient vanishes there
    assert logistic.f_star < logistic.loss_grad(logistic.x0)[0]


def test_gain_clips_and_flags_divergence():
    problem = ev.training_problems()[0]               # f* = 0
    assert ev.gain(problem, 10.0, 0.1) == (pytest.approx(2.0), False)
    assert ev.gain(problem, 10.0, 0.0) == (12.0, False)
    assert ev.gain(problem, 10.0, math.nan) == (-3.0, True)
    assert ev.gain(problem, 10.0, 1e5) == (-3.0, True)
    assert ev.gain(problem, 10.0, 100.0) == (pytest.approx(-1.0), False)


# ---------------------------------------------------------------------------------------------
# baselines: the initial program, Adam beats SGD


def test_initial_program_is_sgd_with_momentum(initial):
    assert initial.get("status", "ok") == "ok", initial
    assert initial["score"] == pytest.approx(2.8562756445800126, abs=1e-9)
    assert initial["features"] == {"state_floats_per_param": 1.0, "stability": 1.0}   # training problems only
    held = ev.evaluate_heldout(str(TASK / "initial_program.py"))
    assert held["metrics"]["heldout_gain_quadratic50_cond10000"] == -3.0      # diverges off the training set
    assert held["metrics"]["heldout_n_diverged"] == 2.0
    assert not any("heldout" in k for k in initial["metrics"]) and "held-out" not in initial["artifacts"]["summary"]
    raw = tomllib.loads((TASK / "task.toml").read_text())
    for spec in raw["descriptors"]:
        low, high = spec["range"]
        assert low <= initial["features"][spec["name"]] <= high


def test_adam_beats_sgd_on_the_proxy_suite(tmp_path, initial):
    adam = ev.evaluate(_program(tmp_path, ADAM))
    assert adam.get("status", "ok") == "ok", adam
    m = initial["metrics"]
    # The candidate's Adam, run through the nested process, equals the evaluator's trusted Adam.
    assert adam["score"] == pytest.approx(m["baseline_adam_train_mean_gain"], abs=1e-9)
    assert adam["features"] == {"state_floats_per_param": 2.0, "stability": 1.0}
    assert adam["score"] > initial["score"] > m["baseline_sgd_train_mean_gain"]
    assert m["baseline_adam_train_mean_gain"] > m["baseline_sgd_train_mean_gain"] + 2.0
    h = ev.evaluate_heldout(_program(tmp_path, ADAM))["metrics"]
    assert h["baseline_adam_heldout_mean_gain"] > h["baseline_sgd_heldout_mean_gain"] + 4.0
    assert h["heldout_n_diverged"] == 0.0
    assert m["baseline_lion_train_mean_gain"] > m["baseline_sgd_train_mean_gain"]


# ---------------------------------------------------------------------------------------------
# cheating and broken rules


def test_reading_the_minimisers_from_the_task_code_is_invalid(tmp_path):
    """Import the task's own problems, recognise each by its dimension and jump to its minimiser."""
    path = _program(tmp_path, """
        def step(params, grads, state, t):
            for problem in PROBLEMS:
                if problem.x0.size == params.size:
                    if problem.name.startswith("rosenbrock"):
                        return np.ones(params.size), state          # its minimiser, all ones
                    if problem.name.startswith("quadratic"):
                        # x* was drawn right after the rotation: replay the task's seeded generator
                        rng = np.random.default_rng(1)
                        rng.standard_normal((params.size, params.size))
                        return rng.standard_normal(params.size), state
            return params - 1e-3 * grads, state
        """, prelude="""
        import importlib.util, pathlib, sys
        import evoforge.evaluators as evaluators
        _root = pathlib.Path(evaluators.__file__).resolve().parents[1]
        _spec = importlib.util.spec_from_file_location("p", _root / "tasks/optimizer_update_rule/problems.py")
        _problems = importlib.util.module_from_spec(_spec)
        sys.modules["p"] = _problems
        _spec.loader.exec_module(_problems)
        PROBLEMS = _problems.training_problems()
        """)
    _assert_invalid(ev.evaluate(path), "depends on the coordinate system")


def test_hidden_state_in_globals_is_invalid(tmp_path):
    path = _program(tmp_path, """
        HISTORY = {}
        def step(params, grads, state, t):
            v = HISTORY.get(params.size, np.zeros_like(params))
            HISTORY[params.size] = v = 0.9 * v + grads
            return params - 1e-3 * v, {}
        """)
    _assert_invalid(ev.evaluate(path), "not a function of its arguments")


def test_unseeded_randomness_is_invalid(tmp_path):
    path = _program(tmp_path, """
        def step(params, grads, state, t):
            return params - 1e-3 * grads * (1 + 0.01 * np.random.standard_normal(params.size)), state
        """)
    _assert_invalid(ev.evaluate(path), "not a function of its arguments")


def test_nan_everywhere_is_invalid(tmp_path):
    path = _program(tmp_path, "def step(params, grads, state, t):\n    return params * np.nan, state")
    _assert_invalid(ev.evaluate(path), "diverged")


@pytest.mark.parametrize("body, needle", [
    ("return params[:-1], state", "params must be a real array of shape"),
    ("return params", "must return (params, state)"),
    ("return params.astype(complex), state", "params must be a real array"),
    ("return params, [1.0]", "state must be a dict"),
    ("return params, {'m': np.zeros(3)}", "state['m'] must be a number or a float array"),
    ("return params, {'m': 'text'}", "state['m'] must be a number"),
    ("return list(params), state", "params must be a real array"),
])
def test_malformed_returns_are_invalid(tmp_path, body, needle):
    _assert_invalid(ev.evaluate(_program(tmp_path, f"def step(params, grads, state, t):\n    {body}")), needle)


def test_monkeypatching_numpy_in_the_candidate_changes_nothing(tmp_path, initial):
    path = _program(tmp_path, (TASK / "initial_program.py").read_text().split(START + "\n")[1].split(END)[0],
                    prelude="np.log10 = lambda x: 100.0\nnp.isfinite = lambda x: True\nimport math\n"
                            "math.log10 = lambda x: 100.0\n")
    result = ev.evaluate(path)
    assert result["score"] == initial["score"] and result["features"] == initial["features"]


def test_raising_candidate_propagates(tmp_path):
    from evoforge.evaluators.candidate import CandidateRaised

    with pytest.raises(CandidateRaised, match="boom"):
        ev.evaluate(_program(tmp_path, "def step(params, grads, state, t):\n    raise ValueError('boom')"))


def test_offline_run_and_tasks_listing(tmp_path):
    from evoforge.engine.task import builtin_tasks

    # what `evoforge tasks` lists (the CLI itself: test_triton_softmax)
    assert "optimizer_update_rule" in builtin_tasks()
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "optimizer_update_rule", "--iterations", "5",
                           "--quiet", "--seed", "0", "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert rows and any(r.get("status") == "ok" for r in rows)
