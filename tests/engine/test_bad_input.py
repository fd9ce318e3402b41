"""Every mistake a user can make: exit code 2, one line naming the file/key/function and what to do,
no traceback (``--debug`` shows it). Runs the real CLI entry point in this process (`evoforge.engine.cli.main`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from evoforge.engine.cli import main

PROGRAM = "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
GOOD_EVALUATOR = "def evaluate(program_path):\n    return {'score': 1.0}\n"


def _task(tmp_path: Path, evaluator: str | None = GOOD_EVALUATOR, toml: str = "") -> Path:
    task = tmp_path / "task"
    task.mkdir()
    (task / "initial_program.py").write_text(PROGRAM)
    if evaluator is not None:
        (task / "evaluator.py").write_text(evaluator)
    (task / "task.toml").write_text(toml)
    return task


def _run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("evoforge: using ")]
    return code, lines, err


def _assert_one_line(code: int, lines: list[str], err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("evoforge: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


TASK_MISTAKES = {   # name: (evaluator.py or None, task.toml, fragments of the one line)
    "malformed_toml": (GOOD_EVALUATOR, "[limits\ntimeout_s = 5\n", ["task.toml", "not valid TOML", "line 1"]),
    "unknown_key": (GOOD_EVALUATOR, "timeout = 5\n", ["task.toml", "unknown key 'timeout'", "known keys"]),
    "unknown_section_key": (GOOD_EVALUATOR, "[limits]\ntimeout = 5\n", ["[limits]", "'timeout'", "timeout_s"]),
    "wrong_type": (GOOD_EVALUATOR, "[limits]\ntimeout_s = 'ten'\n", ["[limits] timeout_s", "'ten'"]),
    "bad_descriptor": (GOOD_EVALUATOR, "[[descriptors]]\nname = 'a'\nrange = [1, 0]\n", ["range", "low < high"]),
    "missing_evaluator_file": (None, "", ["no evaluator.py", "evaluate(program_path)"]),
    "no_evaluate_function": ("def evaluat(p):\n    return 1\n", "",
                             ["initial program fails", "defines no evaluate(program_path)", "evoforge eval"]),
    "evaluator_raises": ("def evaluate(p):\n    return 1 / 0\n", "",
                         ["initial program fails", "ZeroDivisionError", "evoforge eval"]),
    "evaluator_import_fails": ("import no_such_module_xyz\n" + GOOD_EVALUATOR, "",
                               ["initial program fails", "no_such_module_xyz"]),
    "evaluator_hangs": ("def evaluate(p):\n    while True:\n        pass\n", "[limits]\ntimeout_s = 1\n",
                        ["(timeout)", "timeout_s", "task.toml"]),
    "evaluator_returns_text": ("def evaluate(p):\n    return {'score': 'high'}\n", "",
                               ["initial program fails", "score must be a number"]),
    "evaluator_returns_none": ("def evaluate(p):\n    return None\n", "",
                               ["initial program fails", "must return a dict"]),
    "evaluator_returns_nan": ("def evaluate(p):\n    return {'score': float('nan')}\n", "",
                              ["initial program fails", "(invalid)", "not finite"]),
    "descriptor_not_in_features": ("def evaluate(p):\n    return {'score': 1.0, 'features': {'b': 0.5}}\n",
                                   "[[descriptors]]\nname = 'a'\nrange = [0, 1]\n",
                                   ["no feature 'a'", "descriptor in task.toml"]),
}


@pytest.mark.parametrize("mistake", sorted(TASK_MISTAKES))
def test_task_folder_mistakes(tmp_path, capsys, mistake):
    evaluator, toml, fragments = TASK_MISTAKES[mistake]
    task = _task(tmp_path, evaluator, toml)
    code, lines, err = _run(capsys, "run", task, "--iterations", "2", "--quiet", "--out", tmp_path / "run")
    _assert_one_line(code, lines, err, *fragments)


FLAG_MISTAKES = {
    "unknown_task": (["run", "no_such_task_xyz"], ["unknown task 'no_such_task_xyz'", "evoforge tasks"]),
    "unknown_sandbox": (["run", "TASK", "--sandbox", "jail"], ["--sandbox", "'jail'", "process, docker"]),
    "unknown_executor": (["run", "TASK", "--executor", "slurm"], ["--executor", "'slurm'", "local, ray"]),
    "unknown_provider": (["run", "TASK", "--llm", "gemini:pro"], ["--llm", "gemini:pro", "openai:MODEL"]),
    "eval_missing_program": (["eval", "TASK", "/no/such/program.py"], ["/no/such/program.py", "no such"]),
    "eval_unknown_sandbox": (["eval", "TASK", "TASK/initial_program.py", "--sandbox", "vm"], ["--sandbox", "'vm'"]),
    "resume_not_a_run": (["resume", "TASK", "--quiet"], ["not a run directory", "evoforge run"]),
    "show_not_a_run": (["show", "TASK"], ["not a run directory"]),
}


@pytest.mark.parametrize("mistake", sorted(FLAG_MISTAKES))
def test_flag_and_name_mistakes(tmp_path, capsys, mistake):
    task = _task(tmp_path)
    argv, fragments = FLAG_MISTAKES[mistake]
    argv = [a.replace("TASK", str(task)) for a in argv]
    if argv[0] == "run":
        argv += ["--iterations", "1", "--quiet", "--out", str(tmp_path / "run")]
    code, lines, err = _run(capsys, *argv)
    _assert_one_line(code, lines, err, *fragments)
    assert not (tmp_path / "run" / "run.db").exists(), "a mistake in the flags must not leave a run behind"


def test_debug_shows_the_traceback(tmp_path, capsys):
    task = _task(tmp_path, toml="timeout = 5\n")
    code = main(["--debug", "run", str(task), "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("evoforge: error: ")


def test_failing_initial_program_spends_no_llm_call(tmp_path, capsys, fake_openai, monkeypatch):
    server = fake_openai(lambda body: "```python\nx = 2\n```")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    task = _task(tmp_path, "def evaluate(p):\n    raise RuntimeError('broken evaluator')\n")
    code, lines, err = _run(capsys, "run", task, "--llm", f"openai-compatible:fake@{server.base_url}",
                            "--iterations", "3", "--quiet", "--out", tmp_path / "run")
    _assert_one_line(code, lines, err, "RuntimeError: broken evaluator")
    assert server.requests == []


def test_docker_selected_but_not_running(tmp_path, capsys):
    try:
        from evoforge.sandbox.docker import docker_available
    except ImportError as exc:
        pytest.skip(f"sandbox.docker is not importable: {exc}")
    if docker_available(probe=False)[0]:
        pytest.skip("a Docker engine is running here")
    task = _task(tmp_path)
    for argv in (["run", task, "--sandbox", "docker", "--quiet", "--out", tmp_path / "run"],
                 ["eval", task, task / "initial_program.py", "--sandbox", "docker"]):
        code, lines, err = _run(capsys, *argv)
        _assert_one_line(code, lines, err, "--sandbox docker", "--sandbox process")
    assert not (tmp_path / "run" / "run.db").exists()


def test_unreachable_ray_address(tmp_path, capsys):
    if importlib.util.find_spec("evoforge.sandbox.ray_executor") is None or importlib.util.find_spec("ray") is None:
        pytest.skip("the Ray executor (sandbox/ray_executor.py) or ray is not installed")
    task = _task(tmp_path)
    code, lines, err = _run(capsys, "run", task, "--executor", "ray", "--ray-address", "127.0.0.1:1",
                            "--iterations", "1", "--quiet", "--out", tmp_path / "run")
    _assert_one_line(code, lines, err, "--ray-address 127.0.0.1:1", "ray start")
    assert not (tmp_path / "run" / "run.db").exists()
