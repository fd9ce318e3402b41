"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

from fakes.tasks import write_tiny_task

REPO = Path(__file__).resolve().parents[2]


def evoforge(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "evoforge", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_for_every_command():
    for command in ("run", "resume", "eval", "show", "tasks", "init"):
        done = evoforge(command, "--help")
        assert done.returncode == 0 and "usage: evoforge " + command in done.stdout


def test_unknown_task_is_exit_2_with_one_line():
    done = evoforge("run", "no_such_task", "--iterations", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("evoforge: error: unknown task 'no_such_task'")
    assert "Traceback" not in done.stderr


def test_unknown_llm_and_sandbox_names_list_the_known_ones(tmp_path):
    task = write_tiny_task(tmp_path / "t")
    done = evoforge("run", task, "--llm", "gemini:pro", "--out", tmp_path / "r")
    assert done.returncode == 2 and "openai-compatible:MODEL@BASE_URL" in done.stderr
    done = evoforge("run", task, "--sandbox", "jail", "--out", tmp_path / "r2")
    assert done.returncode == 2 and "process, docker" in done.stderr


def test_run_show_and_eval_json(tmp_path):
    task = write_tiny_task(tmp_path / "t")
    done = evoforge("run", task, "--iterations", "8", "--seed", "1", "--out", tmp_path / "run", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "offline mutation operator" in done.stderr
    assert "best score:" in done.stdout and f"run directory: {tmp_path / 'run'}" in done.stdout
    shown = evoforge("show", tmp_path / "run", "--json")
    summary = json.loads(shown.stdout)
    assert summary["iterations"] == 8 and summary["task"] == "tiny" and summary["qd"]["elites"] >= 1
    assert "best programs:" in evoforge("show", tmp_path / "run").stdout
    result = json.loads(evoforge("eval", task, task / "initial_program.py", "--json").stdout)
    assert result["status"] == "ok" and result["score"] == summary["initial_score"]
    again = evoforge("run", task, "--out", tmp_path / "run")
    assert again.returncode == 2 and "resume" in again.stderr


def test_tasks_lists_builtins_and_init_scaffolds_a_task_that_runs(tmp_path):
    listed = evoforge("tasks")
    assert listed.returncode == 0 and "circle_packing" in listed.stdout
    made = evoforge("init", "my_task", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    result = evoforge("eval", tmp_path / "my_task", tmp_path / "my_task" / "initial_program.py", "--json")
    assert json.loads(result.stdout)["status"] == "ok"
    run = evoforge("run", tmp_path / "my_task", "--iterations", "6", "--out", tmp_path / "r", "--quiet")
    assert run.returncode == 0, run.stderr
    assert evoforge("init", "my_task", cwd=tmp_path).returncode == 2
