"""`evoforge show` reads a run only through `evoforge.archive.Run`, and what it reads agrees with the islands
the engine rebuilds from the same store (one way to read a run)."""

from __future__ import annotations

import shutil

import pytest

from evoforge.archive.run import Run
from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.loop import rebuild_islands
from evoforge.engine.session import start_run
from evoforge.engine.summary import format_summary, summarize
from evoforge.engine.task import load_task
from evoforge.evaluators.types import StoreError
from fakes.tasks import write_tiny_task


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real offline run on three islands (ring migration every 5 proposals), with its task folder."""
    root = tmp_path_factory.mktemp("summary")
    task = write_tiny_task(root / "tiny", islands=3)
    start_run(RunConfig(task=str(task), iterations=30, llm=("offline",), concurrency=1, seed=3), out=root / "run")
    return task, root / "run"


def test_run_qd_stats_equal_the_rebuilt_islands_statistics(finished):
    task_dir, run_dir = finished
    task = load_task(str(task_dir))
    with Store.open(run_dir / "run.db", readonly=True) as store:
        islands = rebuild_islands(task, store, seed=3)
        assert any(e.kind == "migrate" for e in store.events())  # the replay covers migrations too
    with Run.open(run_dir) as run:
        stats, per_island = run.qd_stats(), run.island_stats()
    overall = islands.stats()
    assert stats["elites"] == overall.num_elites > 1
    assert stats["coverage"] == pytest.approx(overall.coverage, abs=1e-12)
    assert stats["qd_score"] == pytest.approx(overall.qd_score, rel=1e-12)
    assert stats["best_score"] == pytest.approx(overall.best_fitness)  # maximise: fitness is the score
    assert len(per_island) == islands.num_islands == 3
    for row in per_island:
        expected = islands.stats(row["island"])
        assert (row["elites"], row["best_id"]) == (expected.num_elites, expected.best_program_id)
        assert row["coverage"] == pytest.approx(expected.coverage, abs=1e-12)
        assert row["qd_score"] == pytest.approx(expected.qd_score, rel=1e-12)
        assert row["best_fitness"] == pytest.approx(expected.best_fitness)


def test_show_summarises_through_the_notebook_api_without_the_task_folder(finished, tmp_path):
    task_dir, run_dir = finished
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved, ignore=shutil.ignore_patterns(".lock"))
    with Store.open(moved / "run.db") as store:  # the task folder it ran has gone
        store.set_meta("config", {**store.get_meta("config"), "task": str(tmp_path / "gone")})
    summary = summarize(moved, top=3)
    assert summary["task"] == "tiny" and summary["iterations"] == 30 and summary["state"] == "finished"
    with Run.open(moved) as run:
        assert summary["qd"]["elites"] == run.qd_stats()["elites"]
        ranked = run.programs().query("status == 'ok'").sort_values(["fitness", "id"], ascending=[False, True])
        assert [b["id"] for b in summary["best"]] == [int(i) for i in ranked["id"][:3]]
        assert summary["initial_score"] == run.program(1).score
        assert sum(summary["statuses"].values()) == 31
    assert "best programs:" in format_summary(summary)


def test_show_of_a_folder_without_a_run_names_it(tmp_path):
    with pytest.raises(StoreError, match="not a run directory"):
        summarize(tmp_path)
