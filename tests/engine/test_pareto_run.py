"""Several objectives through whole runs: task.toml [[objectives]], the Pareto front per island that parents
are drawn from, its exact rebuild on resume, Run.pareto(), `evoforge show` and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.archive.pareto import dominates
from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.session import resume_run, start_run
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError
from fakes.tasks import write_tiny_task

OBJECTIVES = '''
[[objectives]]
name = "error"
direction = "min"

[[objectives]]
name = "code_length"
direction = "min"

[pareto]
parent_share = {share}
'''


def _task(tmp_path: Path, share: float = 1.0) -> Path:
    path = write_tiny_task(tmp_path / "tiny")
    (path / "task.toml").write_text((path / "task.toml").read_text() + OBJECTIVES.format(share=share))
    return path


def _config(task: Path, iterations: int) -> RunConfig:
    return RunConfig(task=str(task), iterations=iterations, llm=("offline",), concurrency=1, seed=3)


def _rows(run_dir: Path) -> list[tuple]:
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return [(r.iteration, r.island, r.parent_id, r.code, r.status, r.score) for r in store.candidates()]


def _front_before(frame, child_id: int, island: int) -> set[int]:
    """Brute force: the island's ok programs (and the initial one) older than the child, not dominated."""
    pool = frame[(frame["id"] < child_id) & ((frame["island"] == island) | frame["island"].isna())]
    points = [(int(r.id), (-r.error, -r.code_length)) for r in pool.itertuples()]
    return {i for i, p in points if not any(dominates(q, p) for _, q in points)
            and all(j >= i for j, q in points if q == p)}


def test_task_toml_declares_objectives_and_the_parent_share(tmp_path):
    task = load_task(_task(tmp_path, share=0.25))
    assert [(o.name, o.direction) for o in task.objectives] == [("error", "min"), ("code_length", "min")]
    assert task.pareto_parent_share == 0.25
    fast = load_task("fast_exp2")
    assert [o.name for o in fast.objectives] == ["max_ulp", "op_count"] and fast.pareto_parent_share == 0.3


@pytest.mark.parametrize("extra, fragment", [
    ('[[objectives]]\nname = "error"\n', "at least two objectives"),
    ('[[objectives]]\nname = "a"\ndirection = "less"\n[[objectives]]\nname = "b"\n', "expected 'min' or 'max'"),
    ('[[objectives]]\nname = "a"\n[[objectives]]\nname = "a"\n', "names must be unique"),
    ('[pareto]\nparent_share = 2\n', "parent_share: expected a number in [0, 1]"),
    ('[[objectives]]\nname = "a"\nweight = 2\n[[objectives]]\nname = "b"\n', "unknown key 'weight'"),
])
def test_bad_objectives_are_config_errors(tmp_path, extra, fragment):
    path = write_tiny_task(tmp_path / "t")
    (path / "task.toml").write_text(extra)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert fragment in str(info.value) and "task.toml" in str(info.value)


def test_parents_come_from_the_islands_front_and_run_pareto_is_the_true_front(tmp_path):
    outcome = start_run(_config(_task(tmp_path, share=1.0), 16), out=tmp_path / "run")
    assert outcome.snapshot.done == 16
    with Run.open(tmp_path / "run") as run:
        frame = run._objective_frame()
        programs = run.programs()
        children = programs[programs["iteration"] > 0]
        assert len(children) == 16
        for child in children.itertuples():
            front = _front_before(frame, int(child.id), int(child.island))
            assert int(child.parent_id) in front, (child.id, child.parent_id, front)
        front = run.pareto()
        assert list(front.columns[:4]) == ["id", "island", "iteration", "score"]
        assert {"error", "code_length"} <= set(front.columns) and len(front) >= 1
        everything = [(-r.error, -r.code_length) for r in frame.itertuples()]
        for r in front.itertuples():
            assert not any(dominates(q, (-r.error, -r.code_length)) for q in everything)
        assert list(front["error"]) == sorted(front["error"])
        assert set(run.pareto(island=0)["id"]) == _front_before(frame, 10**9, 0)


def test_a_resumed_run_rebuilds_the_fronts_and_repeats_the_straight_run(tmp_path):
    task = _task(tmp_path, share=0.5)
    start_run(_config(task, 14), out=tmp_path / "straight")
    start_run(_config(task, 7), out=tmp_path / "parts")
    resume_run(tmp_path / "parts", more_iterations=7)
    assert _rows(tmp_path / "straight") == _rows(tmp_path / "parts")


def test_without_the_front_the_share_changes_nothing_else(tmp_path):
    # share 0: the front is kept but never drawn from, so the run repeats one with no objectives at all
    start_run(_config(_task(tmp_path / "a", share=0.0), 8), out=tmp_path / "with")
    start_run(_config(write_tiny_task(tmp_path / "b" / "tiny"), 8), out=tmp_path / "without")
    assert _rows(tmp_path / "with") == _rows(tmp_path / "without")


def test_an_evaluator_missing_an_objective_is_an_error_naming_it(tmp_path):
    path = _task(tmp_path)
    text = (path / "task.toml").read_text().replace('name = "error"\ndirection = "min"', 'name = "loss"\n'
                                                                                        'direction = "min"')
    (path / "task.toml").write_text(text)
    with pytest.raises(Exception, match="no objective 'loss'"):
        start_run(_config(path, 2), out=tmp_path / "run")


def test_show_and_report_draw_the_front(tmp_path):
    start_run(_config(_task(tmp_path), 8), out=tmp_path / "run")
    shown = subprocess.run([sys.executable, "-m", "evoforge", "show", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Pareto front (error min, code_length min)" in shown.stdout
    data = json.loads(subprocess.run([sys.executable, "-m", "evoforge", "show", str(tmp_path / "run"), "--json"],
                                     capture_output=True, text=True, timeout=120).stdout)
    with Run.open(tmp_path / "run") as run:
        assert [r["id"] for r in data["pareto"]["front"]] == list(run.pareto()["id"])
    report = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "evoforge", "report", str(tmp_path / "run"), "-o", str(report)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    html = report.read_text()
    assert 'id="pareto"' in html and 'id="pareto-plot"' in html and "data:image/png;base64," in html


def test_run_pareto_on_a_single_score_run_says_why_not(tmp_path):
    start_run(_config(write_tiny_task(tmp_path / "tiny"), 2), out=tmp_path / "run")
    with Run.open(tmp_path / "run") as run, pytest.raises(ValueError, match="declares no \\[\\[objectives\\]\\]"):
        run.pareto()
