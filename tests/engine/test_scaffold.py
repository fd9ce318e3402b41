"""`evoforge init NAME`: the scaffold documents every task.toml key and runs as generated."""

import json
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
        assert key in raw or f"# [{key}]" in text, f"task.toml key {key!r} is neither set nor shown"
    for section, keys in task_module._SECTION_KEYS.items():
        assert set(raw[section]) == keys, section
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


HOSTILE_BLOCK = '''# EVOLVE-BLOCK-START
math.sin = lambda x: 0.0      # patch the evaluator's sine, if it shares our interpreter


def solve(x: float) -> float:
    return 0.0
# EVOLVE-BLOCK-END'''


def test_a_candidate_that_patches_math_sin_is_scored_honestly(tmp_path):
    """The scaffold's evaluator calls the candidate through run_candidate (a nested process), so
    patching math.sin changes only the candidate's own copy; an evaluator that imported the candidate
    would score it a perfect -0.0."""
    folder = scaffold_task("sine", tmp_path)
    initial = (folder / "initial_program.py").read_text()
    hostile = tmp_path / "hostile.py"
    hostile.write_text(re.sub(r"# EVOLVE-BLOCK-START.*# EVOLVE-BLOCK-END", lambda _: HOSTILE_BLOCK, initial,
                              flags=re.DOTALL))
    evaluator = (folder / "evaluator.py").read_text()
    assert "run_candidate(program_path" in evaluator and "exec_module" not in evaluator

    # What an in-process evaluator would have said (the scaffold's evaluator before this change).
    code = ("import importlib.util, math\n"
            f"spec = importlib.util.spec_from_file_location('candidate', {str(hostile)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "xs = [math.pi * i / 100 for i in range(101)]\n"
            "print(-max(abs(y - math.sin(x)) for x, y in zip(xs, module.run(xs))))\n")
    fooled = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert fooled.stdout.strip() == "-0.0", fooled.stderr

    def cli_eval(program):
        done = subprocess.run([sys.executable, "-m", "evoforge", "eval", str(folder), str(program), "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    honest = cli_eval(folder / "initial_program.py")
    assert honest["status"] == "ok" and honest["score"] == pytest.approx(-2.0261, abs=1e-3)
    attacked = cli_eval(hostile)
    assert attacked["status"] == "ok" and attacked["score"] == pytest.approx(-1.0)  # max |0 - sin x| on [0, pi]
    assert "largest error 1 at x = 1.571" in attacked["artifacts"]["worst_case"]


def test_readme_says_why_the_candidate_runs_in_its_own_process(tmp_path):
    folder = scaffold_task("sine", tmp_path)
    readme = (folder / "README.md").read_text()
    assert "math.sin = lambda x: 0.0" in readme and "run_candidate" in readme and "-2.03" in readme


def test_bad_output_is_invalid_not_a_crash(tmp_path):
    folder = scaffold_task("sine", tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text((folder / "initial_program.py").read_text().replace("return [solve(x) for x in xs]",
                                                                      "return [True] * len(xs)"))
    result = evaluate_file(str(folder), bad)
    assert result.status == "invalid" and "plain numbers" in result.artifacts["error"]
    crashing = tmp_path / "crash.py"
    crashing.write_text((folder / "initial_program.py").read_text().replace("return [solve(x) for x in xs]",
                                                                           "raise RuntimeError('boom')"))
    result = evaluate_file(str(folder), crashing)
    assert result.status == "error" and "boom" in result.artifacts["error"] + result.stderr
