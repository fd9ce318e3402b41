"""Every built-in task, end to end through the CLI: listed, its initial program evaluates, a short run works.

Tasks are discovered from the folders under tasks/ (anything with a task.toml), so a new task is covered
the moment it is added. A task that asks for a GPU (``[resources] num_gpus > 0``) is only run where one is
present; elsewhere `evoforge eval` must say clearly that it needs a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tasks"
EVOFORGE = [sys.executable, "-m", "evoforge"]
BUILTIN = sorted(p.name for p in TASKS.iterdir() if (p / "task.toml").is_file())
ITERATIONS = 5


def _initial_program(task: str) -> Path:
    raw = tomllib.loads((TASKS / task / "task.toml").read_text())
    return TASKS / task / raw.get("initial_program", "initial_program.py")


def _needs_compiler(task: str) -> bool:
    raw = tomllib.loads((TASKS / task / "task.toml").read_text())
    return bool(raw.get("compile", {}).get("command")) and not (shutil.which("cc") or shutil.which("gcc"))


def _needs_gpu(task: str) -> bool:
    raw = tomllib.loads((TASKS / task / "task.toml").read_text())
    return float(raw.get("resources", {}).get("num_gpus", 0)) > 0


def _have_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    return subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode == 0


HAVE_GPU = _have_gpu()


def _evoforge(*args: str, cwd: Path, timeout_s: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}   # offline, whatever the shell has
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*EVOFORGE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


def test_the_cli_entry_module_runs():
    assert (ROOT / "engine" / "cli.py").is_file()
    assert len(BUILTIN) >= 8, BUILTIN


def test_evoforge_tasks_lists_every_task_folder(tmp_path):
    result = _evoforge("tasks", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(BUILTIN) <= listed, sorted(set(BUILTIN) - listed)
    for task in ("circle_packing", "circle_packing_32", "pde_advection", "pde_burgers", "pde_reaction_diffusion"):
        assert task in listed


@pytest.mark.slow
@pytest.mark.parametrize("task", BUILTIN)
def test_initial_program_evaluates_ok(task, tmp_path):
    if _needs_compiler(task):
        pytest.skip(f"{task} compiles C and this machine has no cc or gcc (make test-deps installs gcc)")
    result = _evoforge("eval", task, str(_initial_program(task)), "--json", cwd=tmp_path)
    output = result.stdout + result.stderr
    if _needs_gpu(task) and not HAVE_GPU:
        assert "GPU" in output or "gpu" in output, output[-2000:]
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        return
    assert result.returncode == 0, output[-2000:]
    data = json.loads(result.stdout)
    assert data["status"] == "ok", data
    assert isinstance(data["score"], float)
    declared = [d["name"] for d in tomllib.loads((TASKS / task / "task.toml").read_text()).get("descriptors", [])]
    builtin_features = {"code_length", "ast_nodes"}
    assert set(declared) - builtin_features <= set(data["features"]), (declared, data["features"])


@pytest.mark.slow
@pytest.mark.parametrize("task", BUILTIN)
def test_a_short_offline_run_succeeds(task, tmp_path):
    if _needs_gpu(task) and not HAVE_GPU:
        pytest.skip(f"{task} needs a GPU and this machine has none")
    if _needs_compiler(task):
        pytest.skip(f"{task} compiles C and this machine has no cc or gcc (make test-deps installs gcc)")
    out = tmp_path / "run"
    result = _evoforge("run", task, "--iterations", str(ITERATIONS), "--quiet", "--out", str(out),
                       "--eval-slots", "2", "--concurrency", "2", "--llm", "offline", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    best = out / f"best_program{_initial_program(task).suffix}"     # a folder for a task of several files
    assert (out / "run.db").is_file() and best.exists()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    initial = [e for e in events if e["iteration"] == 0]
    assert len(initial) == 1 and initial[0]["status"] == "ok", initial
    assert 2 <= len(events) <= ITERATIONS + 1, len(events)
    assert "best score" in result.stdout
