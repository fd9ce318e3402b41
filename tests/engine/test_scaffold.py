"""`evoforge init NAME`: the scaffold documents every task.toml key and runs as generated."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.engine import task as task_module
from evoforge.engine.scaffold import scaffold_task
from evoforge.engine.session import evaluate_file
from evoforge.evaluators.types import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def test_task_toml_sets_every_known_key_and_comments_it(tmp_path):
    folder = scaffold_task("my_task", tmp_path)
    text = (folder / "task.toml").read_text()
    raw = tomllib.loads(text)
    # Every key the loader knows is written out (the optional [llm] table as a commented-out
    # example, so the scaffold runs offline), so the file doubles as the reference.
    for key in task_module._TOP_KEYS:
        assert key in raw or f"# [{key}]" in text or f"# [[{key}]]" in text, \
            f"task.toml key {key!r} is neither set nor shown"
    for section, keys in task_module._SECTION_KEYS.items():
        if section in raw:
            assert set(raw[section]) == keys, section
        else:   # an optional stage shown commented out, every key with it
            assert f"# [{section}]" in text and all(f"# {k} = " in text for k in keys), section
    for descriptor in raw["descriptors"]:
        assert set(descriptor) == task_module._DESCRIPTOR_KEYS
    # ... and each is explained: an inline comment, or a comment line right above it.
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line) and "#" not in line:
            above = lines[n - 1].strip()
            assert above.startswith("#"), f"uncommented key: {line}"
    loaded = task_module.load_task(folder)
    assert loaded.name == "my_task" and [d.name for d in loaded.descriptors] == ["mean_error", "code_length"]


def test_evaluator_returns_score_features_metrics_and_artifacts(tmp_path):
    folder = scaffold_task("sine", tmp_path)
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok" and result.score < 0
    assert set(result.features) == {"mean_error"} and "max_error" in result.metrics
    assert result.metrics["max_error"] == pytest.approx(-result.score)
    assert "largest error" in result.artifacts["worst_case"]


def test_scaffold_runs_as_generated(tmp_path):
    scaffold_task("my_task", tmp_path)
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "my_task", "--iterations", "12", "--seed", "0",
                           "--concurrency", "1", "--quiet", "--out", "r"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Run.open(tmp_path / "r") as run:
        stats = run.qd_stats()
        assert stats["programs"] == 13 and stats["ok"] >= 2 and stats["elites"] >= 2
        assert (tmp_path / "r" / "best_program.py").read_text() == run.best().code
        assert run.qd_offset == 10.0


def test_bad_or_taken_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected a name"):
        scaffold_task("my task!", tmp_path)
    scaffold_task("taken", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        scaffold_task("taken", tmp_path)
