"""`evoforge.evaluators.runner.run_job` in this process: the evaluator contract, failures as data, cascades."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from evoforge.evaluators import EvaluationResult, Status, TaskError, load_evaluator, run_job
from evoforge.sandbox.job import EvaluationJob

IMPORTING = """
import importlib.util

def _candidate(program_path):
    spec = importlib.util.spec_from_file_location("candidate_under_test", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def evaluate(program_path):
    return _candidate(program_path).run()
"""


def _task(tmp_path: Path, source: str, **files: str) -> str:
    task = tmp_path / "task"
    task.mkdir(exist_ok=True)
    (task / "evaluator.py").write_text(textwrap.dedent(source))
    for name, text in files.items():
        (task / name).write_text(textwrap.dedent(text))
    return str(task)


def _run(tmp_path: Path, evaluator: str, program: str = "", **job_kwargs) -> EvaluationResult:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    job = EvaluationJob(program_text=textwrap.dedent(program), task_dir=_task(tmp_path, evaluator), **job_kwargs)
    return run_job(job, str(workdir))


def test_ok_result_carries_score_features_metrics(tmp_path):
    result = _run(tmp_path, IMPORTING, """
        def run():
            return {"score": 2.5, "features": {"f": 0.5}, "metrics": {"m": 3}, "extra": 7,
                    "artifacts": {"note": "fine"}}
    """)
    assert result.status == Status.OK
    assert result.score == 2.5
    assert result.features == {"f": 0.5}
    assert result.metrics == {"m": 3.0, "extra": 7.0}
    assert result.artifacts == {"note": "fine"}
    assert result.stage is None
    assert (tmp_path / "work" / "program.py").exists()


def test_nan_score_is_invalid(tmp_path):
    result = _run(tmp_path, IMPORTING, "def run():\n    return {'score': float('nan')}\n")
    assert result.status == Status.INVALID


def test_non_dict_is_error(tmp_path):
    result = _run(tmp_path, "def evaluate(path):\n    return [1, 2]\n")
    assert result.status == Status.ERROR
    assert "dict" in result.artifacts["error"]


def test_missing_evaluate_is_error_naming_the_file(tmp_path):
    result = _run(tmp_path, "def score(path):\n    return {'score': 1}\n")
    assert result.status == Status.ERROR
    assert "evaluator.py" in result.artifacts["error"]
    assert "evaluate" in result.artifacts["error"]


def test_evaluator_import_error_is_error(tmp_path):
    result = _run(tmp_path, "def evaluate(path:\n")
    assert result.status == Status.ERROR
    assert "SyntaxError" in result.artifacts["error"]


def test_exception_in_candidate_gives_traceback_tail(tmp_path):
    result = _run(tmp_path, IMPORTING, "def run():\n    raise ValueError('boom from candidate')\n")
    assert result.status == Status.ERROR
    assert "ValueError: boom from candidate" in result.artifacts["error"]
    assert "Traceback" in result.artifacts["error"]


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "import sys\ndef run():\n    sys.exit(3)\n"])
def test_system_exit_is_error_not_an_exit(tmp_path, body):
    result = _run(tmp_path, IMPORTING, body)
    assert result.status == Status.ERROR
    assert "SystemExit" in result.artifacts["error"]


def test_recursion_error_is_error(tmp_path):
    result = _run(tmp_path, IMPORTING, "def run():\n    return run()\n")
    assert result.status == Status.ERROR
    assert "RecursionError" in result.artifacts["error"]


def test_memory_error_is_oom(tmp_path):
    result = _run(tmp_path, IMPORTING, "def run():\n    raise MemoryError()\n")
    assert result.status == Status.OOM


def test_evaluator_can_import_helper_beside_it(tmp_path):
    source = "from my_helper import VALUE\ndef evaluate(path):\n    return {'score': VALUE}\n"
    task = _task(tmp_path, source, **{"my_helper.py": "VALUE = 41.0\n"})
    (tmp_path / "work").mkdir()
    result = run_job(EvaluationJob(program_text="", task_dir=task), str(tmp_path / "work"))
    assert result.status == Status.OK and result.score == 41.0


def test_load_evaluator_gives_a_fresh_module_each_time(tmp_path):
    path = Path(_task(tmp_path, "COUNT = []\ndef evaluate(p):\n    COUNT.append(1)\n")) / "evaluator.py"
    first, second = load_evaluator(path), load_evaluator(path)
    assert first is not second and first.__name__ != second.__name__
    first.COUNT.append(1)
    assert second.COUNT == []


def test_load_evaluator_missing_file_is_task_error(tmp_path):
    with pytest.raises(TaskError):
        load_evaluator(tmp_path / "nope.py")


CASCADE = """
import pathlib

def _log(name):
    with open(pathlib.Path(__file__).parent / "calls.txt", "a") as fh:
        fh.write(name + "\\n")

def _value():
    return float(open("program.py").read().strip() or 0)

def evaluate_stage1(path):
    _log("stage1")
    return {"score": _value()}

def evaluate_stage2(path):
    _log("stage2")
    if _value() < 0:
        return {"status": "invalid", "error": "negative"}
    return {"score": _value() * 10}

def evaluate(path):
    _log("final")
    return {"score": _value() * 100}
"""


def _cascade(tmp_path, program: str, thresholds) -> tuple[EvaluationResult, list[str]]:
    import os
    task = _task(tmp_path, CASCADE)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    old = os.getcwd()
    os.chdir(work)  # the runner is called with cwd = workdir inside the sandbox
    try:
        result = run_job(EvaluationJob(program_text=program, task_dir=task, cascade_thresholds=thresholds),
                         str(work))
    finally:
        os.chdir(old)
    calls_file = Path(task) / "calls.txt"
    return result, calls_file.read_text().split() if calls_file.exists() else []


def test_cascade_stops_at_the_first_stage_below_threshold(tmp_path):
    result, calls = _cascade(tmp_path, "0.2", (0.5, 3.0))
    assert (result.status, result.stage, result.score) == (Status.INVALID, 1, None)
    assert result.metrics["stage1_score"] == 0.2
    assert "stopped at stage 1" in result.artifacts["cascade"] == result.artifacts["error"]
    assert calls == ["stage1"]


def test_cascade_gates_the_second_stage(tmp_path):
    result, calls = _cascade(tmp_path, "0.6", (0.5, 7.0))
    assert (result.status, result.stage, result.metrics["stage2_score"]) == (Status.INVALID, 2, 6.0)
    assert calls == ["stage1", "stage2"]


def test_cascade_passing_every_stage_runs_evaluate_as_final_stage(tmp_path):
    result, calls = _cascade(tmp_path, "0.9", (0.5, 3.0))
    assert (result.status, result.stage, result.score) == (Status.OK, 3, 90.0)
    assert calls == ["stage1", "stage2", "final"]


def test_cascade_stage_that_is_not_ok_stops(tmp_path):
    result, calls = _cascade(tmp_path, "-1", (-5.0,))
    assert (result.status, result.stage) == (Status.INVALID, 2)
    assert calls == ["stage1", "stage2"]


def test_without_thresholds_only_evaluate_runs(tmp_path):
    result, calls = _cascade(tmp_path, "0.1", ())
    assert (result.stage, result.score) == (None, 10.0)
    assert calls == ["final"]
