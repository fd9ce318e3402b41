"""OpenEvolve task folders (initial_program.py + evaluator.py + config.yaml, no task.toml) run unchanged."""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.engine import openevolve_compat
from evoforge.engine.openevolve_compat import run_defaults
from evoforge.engine.session import evaluate_file
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "openevolve_function_minimization"


@pytest.fixture
def folder(tmp_path):
    """A copy of the example (nothing is written into it, but a test rewrites its config.yaml)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "function_minimization"))


def test_config_yaml_maps_onto_the_task_and_names_what_is_ignored(folder, capsys):
    openevolve_compat._noticed.clear()
    before = sorted(p.name for p in folder.iterdir())
    task = load_task(folder)
    # The evaluator is used as it is; nothing is written into the folder (it may be read-only).
    assert task.evaluator_file == "evaluator.py" and sorted(p.name for p in folder.iterdir()) == before
    assert task.openevolve == {"cascade": True, "cwd": "task", "features": ["value_score"]}
    # complexity is characters, as OpenEvolve counts it, on a range with room to double the initial program
    assert [(d.name, d.low, d.high, d.bins) for d in task.descriptors] == [
        ("value_score", 0.0, 1.0, 10), ("complexity", 0.0, 3000.0, 10)]   # 1.1 kB initial program
    assert (task.archive.islands, task.archive.migration_interval) == (2, 10)
    assert task.limits.timeout_s == 20.0 and task.limits.cpu_s == 0.0 and task.cascade_thresholds == (0.5,)
    assert task.description.startswith("You are an expert in optimisation")
    (model,) = task.llm.models
    assert (model.provider, model.model, model.base_url) == ("openai-compatible", "local-coder", "http://127.0.0.1:9/v1")
    assert (model.temperature, model.max_tokens, model.api_key_env) == (0.7, 4096, "OPENAI_API_KEY")
    notice = capsys.readouterr().err.strip()
    assert notice.count("\n") == 0 and "is an OpenEvolve task" in notice
    for key in ("checkpoint_interval", "log_level", "max_code_length", "database.population_size",
                "evaluator.parallel_evaluations", "prompt.num_top_programs"):
        assert key in notice
    ignored = notice.split("ignored config.yaml keys:")[1]
    assert "max_iterations" not in ignored and "database.num_islands" not in ignored
    assert "mapped config.yaml keys: database.feature_bins, database.feature_dimensions" in notice
    assert run_defaults(folder) == {"iterations": 8, "seed": 42}


def test_score_is_combined_score_and_features_come_from_the_metrics(folder):
    result = evaluate_file(str(folder), folder / "initial_program.py")
    # OpenEvolve's cascade: stage 1 passes 0.5, stage 2 merges over it; with one threshold it is final,
    # and evaluate() is not called again (the example's stage 2 *is* evaluate).
    assert result.status == "ok" and result.stage == 2
    metrics = dict(result.metrics)
    assert result.score == pytest.approx(0.6 * result.features["value_score"] + 0.2 * metrics["distance_score"]
                                         + 0.2 * metrics["reliability_score"])
    assert "value_score" not in metrics and "combined_score" not in metrics
    assert metrics["runs_successfully"] == 1.0                   # stage 1's metrics merged in


def test_without_combined_score_the_score_is_the_mean_of_the_metrics(tmp_path):
    (tmp_path / "initial_program.py").write_text("def f():\n    return 2\n")
    (tmp_path / "evaluator.py").write_text(
        "def evaluate(program_path):\n    return {'speed': 1.0, 'accuracy': 0.5, 'note': 'text is not a metric'}\n")
    result = evaluate_file(str(tmp_path), tmp_path / "initial_program.py")
    assert result.status == "ok" and result.score == pytest.approx(0.75)
    assert run_defaults(tmp_path) == {}


def test_broken_config_yaml_is_a_config_error_naming_the_file(folder):
    (folder / "config.yaml").write_text("database: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml: not valid YAML"):
        load_task(folder)


@pytest.mark.slow
def test_openevolve_folder_runs_unchanged_with_evoforge_run(folder, tmp_path):
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", str(folder), "--llm", "offline", "--quiet",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "ignored config.yaml keys: checkpoint_interval" in done.stderr
    assert not (folder / ".evoforge_openevolve.py").exists()
    with Run.open(tmp_path / "run") as run:
        assert run.config["iterations"] == 8 and run.config["seed"] == 42   # from config.yaml
        assert len(run.programs()) == 9
        assert run.best().score >= run.program(1).score > 0.5
        assert run.descriptor_names == ["value_score", "complexity"]
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    assert {r[0] for r in conn.execute("SELECT stage FROM programs WHERE status = 'ok'")} <= {1, 2}
    conn.close()
