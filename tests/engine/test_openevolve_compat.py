"""OpenEvolve task folders (initial_program.py + evaluator.py + config.yaml, no task.toml) run unchanged."""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.engine import openevolve_compat
from evoforge.engine.openevolve_compat import ADAPTER_NAME, run_defaults
from evoforge.engine.session import evaluate_file
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "openevolve_function_minimization"


@pytest.fixture
def folder(tmp_path):
    """A copy of the example, so the adapter is written in tmp_path, not in the repository."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "function_minimization",
                                ignore=shutil.ignore_patterns(ADAPTER_NAME)))


def test_config_yaml_maps_onto_the_task_and_names_what_is_ignored(folder, capsys):
    openevolve_compat._noticed.clear()
    task = load_task(folder)
    assert task.evaluator_file == ADAPTER_NAME and (folder / ADAPTER_NAME).is_file()
    assert [(d.name, d.low, d.high, d.bins) for d in task.descriptors] == [
        ("value_score", 0.0, 1.0, 10), ("code_length", 0.0, 200.0, 10)]
    assert (task.archive.islands, task.archive.migration_interval) == (2, 10)
    assert task.limits.timeout_s == 20.0 and task.cascade_thresholds == (0.5,)
    assert task.description.startswith("You are an expert in optimisation")
    (model,) = task.llm.models
    assert (model.provider, model.model, model.base_url) == ("openai-compatible", "local-coder", "http://127.0.0.1:9/v1")
    assert (model.temperature, model.max_tokens, model.api_key_env) == (0.7, 4096, "OPENAI_API_KEY")
    notice = capsys.readouterr().err.strip()
    assert notice.count("\n") == 0 and "OpenEvolve task folder" in notice
    for key in ("checkpoint_interval", "log_level", "max_code_length", "database.population_size",
                "evaluator.parallel_evaluations", "prompt.num_top_programs"):
        assert key in notice
    assert "max_iterations" not in notice and "database.num_islands" not in notice
    assert run_defaults(folder) == {"iterations": 8, "seed": 42}


def test_score_is_combined_score_and_features_come_from_the_metrics(folder):
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok" and result.stage == 3          # stage1, stage2, then evaluate
    metrics = dict(result.metrics)
    assert result.score == pytest.approx(0.6 * result.features["value_score"] + 0.2 * metrics["distance_score"]
                                         + 0.2 * metrics["reliability_score"])
    assert "value_score" not in metrics and "combined_score" not in metrics


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
    with Run.open(tmp_path / "run") as run:
        assert run.config["iterations"] == 8 and run.config["seed"] == 42   # from config.yaml
        assert len(run.programs()) == 9
        assert run.best().score >= run.program(1).score > 0.5
        assert "value_score" in run.descriptor_names
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    assert {r[0] for r in conn.execute("SELECT stage FROM programs WHERE status = 'ok'")} <= {1, 2, 3}
    conn.close()
