"""The notebook API (archive.run.Run) on a real offline run, checked against the SQLite rows."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from evoforge.archive import Run  # noqa: E402
from evoforge.archive.run import FAILURE_COLUMNS, PROGRAM_COLUMNS, PROGRESS_COLUMNS, SPEND_COLUMNS, Program  # noqa: E402
from evoforge.archive.store import ArchiveEvent, CandidateRecord, Store  # noqa: E402
from evoforge.engine.config import RunConfig  # noqa: E402
from evoforge.engine.session import start_run  # noqa: E402
from evoforge.evaluators.types import StoreError  # noqa: E402
from fakes.tasks import write_tiny_task  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("run_api")
    task = write_tiny_task(base / "tiny")
    start_run(RunConfig(task=str(task), iterations=30, llm=("offline",), concurrency=1, seed=7), out=base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def run(run_dir):
    with Run.open(run_dir) as r:
        yield r


@pytest.fixture(scope="module")
def db(run_dir):
    conn = sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_import_archive_does_not_import_pandas_or_matplotlib():
    code = ("import sys, archive\n"
            "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules\n"
            "assert archive.Run.__name__ == 'Run' and 'pandas' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_programs_has_one_row_per_candidate_with_the_documented_columns(run, db):
    frame = run.programs()
    rows = db.execute("SELECT * FROM programs ORDER BY id").fetchall()
    assert len(frame) == len(rows) == 31
    assert list(frame.columns[:len(PROGRAM_COLUMNS)]) == list(PROGRAM_COLUMNS)
    assert "code" not in frame.columns
    assert {"feature_slope", "feature_code_length", "metric_error"} <= set(frame.columns)
    assert frame["id"].tolist() == [r["id"] for r in rows]
    assert frame["status"].tolist() == [r["status"] for r in rows]
    assert frame["code_length"].tolist() == [len(r["code"]) for r in rows]
    first = rows[0]
    assert first["parent_id"] is None and frame["parent_id"].isna().iloc[0]
    assert frame["score"].iloc[0] == first["score"]
    assert frame["feature_slope"].iloc[0] == json.loads(first["features"])["slope"]
    assert frame["metric_error"].iloc[0] == json.loads(first["metrics"])["error"]
    with_code = run.programs(code=True)
    assert with_code["code"].tolist() == [r["code"] for r in rows]


def test_best_is_the_max_fitness_ok_row(run, db):
    best = run.best()
    row = db.execute("SELECT * FROM programs WHERE status = 'ok' ORDER BY fitness DESC, id LIMIT 1").fetchone()
    assert isinstance(best, Program)
    assert (best.id, best.code, best.score) == (row["id"], row["code"], row["score"])
    assert best.score == max(r["score"] for r in db.execute("SELECT score FROM programs WHERE status = 'ok'"))
    assert dict(best.metrics) == json.loads(row["metrics"]) and dict(best.features) == json.loads(row["features"])
    assert (run.path / "best_program.py").read_text() == best.code
    with pytest.raises(AttributeError):
        best.score = 0.0


def test_elites_are_unique_per_cell_and_the_best_inserted_there(run, db):
    elites = run.elites()
    assert list(elites.columns) == ["id", "island", "cell", "score", "fitness", "feature_slope", "feature_code_length"]
    assert len(elites) > 0 and not elites.duplicated(["island", "cell"]).any()
    assert set(elites["island"]) == {0, 1}
    inserted = db.execute(
        "SELECT e.island, e.cell, MAX(p.fitness) AS best FROM archive_events e JOIN programs p ON p.id = e.program_id"
        " GROUP BY e.island, e.cell").fetchall()
    assert {(r["island"], r["cell"]): r["best"] for r in inserted} == {
        (i, c): f for i, c, f in zip(elites["island"], elites["cell"], elites["fitness"])}
    island1 = run.elites(island=1)
    assert set(island1["island"]) == {1} and len(island1) == (elites["island"] == 1).sum()
    assert run.best().id in set(elites["id"])


def test_lineage_runs_from_the_initial_program_to_the_program(run, db):
    best = run.best()
    chain = run.lineage(best.id)
    assert chain[-1].id == best.id and chain[0].id == 1 and chain[0].parent_id is None
    for parent, child in zip(chain, chain[1:]):
        assert child.parent_id == parent.id
    assert [p.id for p in run.lineage(1)] == [1]
    with pytest.raises(KeyError):
        run.lineage(10_000)


def test_diff_is_a_unified_diff_of_the_codes(run):
    best = run.best()
    text = run.diff(1, best.id)
    assert text.startswith("--- program 1\n+++ program %d\n" % best.id)
    assert "-    a = 1.5" in text
    assert run.diff(best.id, best.id) == ""


def test_progress_frame_is_monotone_and_ends_at_the_final_state(run, db):
    frame = run.progress_frame()
    assert list(frame.columns) == list(PROGRESS_COLUMNS) == [
        "evaluation", "id", "iteration", "status", "elapsed_s", "best_score", "qd_score", "coverage_cells",
        "coverage", "cum_tokens", "cum_cost_usd", "cum_failures"]
    assert frame["evaluation"].tolist() == list(range(1, 32))
    assert frame["best_score"].is_monotonic_increasing and frame["coverage_cells"].is_monotonic_increasing
    assert frame["elapsed_s"].is_monotonic_increasing and (frame["elapsed_s"] >= 0).all()
    assert run.cells == 12 * 8
    assert frame["coverage"].tolist() == pytest.approx((frame["coverage_cells"] / 96).tolist())
    assert frame["status"].tolist() == [r[0] for r in db.execute("SELECT status FROM programs ORDER BY id")]
    failed = db.execute("SELECT COUNT(*) FROM programs WHERE status != 'ok'").fetchone()[0]
    assert frame["cum_failures"].iloc[-1] == failed
    assert frame["cum_tokens"].iloc[-1] == db.execute(
        "SELECT SUM(prompt_tokens + completion_tokens) FROM programs").fetchone()[0]
    assert frame["best_score"].iloc[-1] == run.best().score
    assert frame["best_score"].iloc[0] == db.execute("SELECT score FROM programs WHERE id = 1").fetchone()[0]
    # Run-wide: per cell, the best elite of any island.
    final = run.elites().groupby("cell")["fitness"].max()
    assert frame["coverage_cells"].iloc[-1] == len(final)
    assert frame["qd_score"].iloc[-1] == pytest.approx(final.sum() + run.qd_offset)
    assert frame["cum_cost_usd"].iloc[-1] == pytest.approx(
        db.execute("SELECT SUM(cost_usd) FROM programs").fetchone()[0])


def test_qd_stats_summarise_the_final_state(run, db):
    stats = run.qd_stats()
    final = run.elites().groupby("cell")["fitness"].max()
    assert stats["elites"] == len(final) and stats["cells"] == 96
    assert stats["coverage"] == pytest.approx(len(final) / 96)
    assert stats["qd_score"] == pytest.approx(final.sum() + len(final) * run.qd_offset)
    assert stats["best_id"] == run.best().id and stats["best_score"] == run.best().score
    counts = dict(db.execute("SELECT status, COUNT(*) FROM programs GROUP BY status").fetchall())
    assert stats["failures"] == {s: n for s, n in counts.items() if s != "ok"}
    assert stats["ok"] == counts["ok"] and stats["programs"] == sum(counts.values())


def test_qd_score_uses_the_declared_offset(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with Run.open(run_dir) as plain:
        base = plain.progress_frame()
    with Store.open(copy / "run.db") as store:
        store.set_meta("archive", {"kind": "grid", "islands": 2, "qd_offset": 10.0})
    with Run.open(copy) as offset:
        shifted = offset.progress_frame()
    assert shifted["qd_score"].tolist() == pytest.approx(
        (base["qd_score"] + 10.0 * base["coverage_cells"]).tolist())


def test_failures_and_spend_match_the_tables(run, db):
    failures = run.failures()
    assert list(failures.columns) == list(FAILURE_COLUMNS) == ["status", "count", "example_id", "example_error"]
    counts = dict(db.execute("SELECT status, COUNT(*) FROM programs WHERE status != 'ok' GROUP BY status").fetchall())
    assert dict(zip(failures["status"], failures["count"])) == counts
    for _, row in failures.iterrows():
        (status,) = db.execute("SELECT status FROM programs WHERE id = ?", (int(row.example_id),)).fetchone()
        assert status == row.status
    spend = run.spend()
    calls = db.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()
    assert list(spend.columns) == list(SPEND_COLUMNS)
    assert len(spend) == len(calls) and spend["id"].tolist() == [c["id"] for c in calls]
    assert spend["cum_tokens"].iloc[-1] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)
    assert spend["cum_cost_usd"].iloc[-1] == pytest.approx(sum(c["cost_usd"] for c in calls))
    assert spend["cum_tokens"].is_monotonic_increasing and (spend["elapsed_s"] >= 0).all()


def test_plots_return_axes_with_artists(run):
    ax = run.heatmap()
    assert ax.collections and ax.get_xlabel() == "slope" and ax.get_ylabel() == "code_length"
    mesh = ax.collections[0]
    assert mesh.get_array().shape == (8, 12) and mesh.get_array().count() > 0
    assert run.heatmap(island=0, features=("code_length", "slope")).get_xlabel() == "code_length"
    fig, given = plt.subplots()
    assert run.progress(ax=given) is given and len(given.lines) == 1
    assert run.progress().lines
    spend_ax = run.spend_plot()
    assert spend_ax.lines and len(spend_ax.lines[0].get_xdata()) == len(run.spend())
    bars = run.failures_plot()
    heights = {t.get_text(): p.get_height() for t, p in zip(bars.get_xticklabels(), bars.patches)}
    assert heights == {s: float(n) for s, n in run.programs()["status"].value_counts().items()}


def test_heatmap_is_pyribs_grid_with_each_elite_in_its_cell(run):
    import numpy as np

    ax = run.heatmap()
    grid = ax.collections[0].get_array()  # rows: code_length bins (8), columns: slope bins (12)
    elites = run.elites()
    best_per_cell = elites.sort_values("fitness", ascending=False).drop_duplicates("cell")
    assert grid.count() == len(best_per_cell)
    for _, e in best_per_cell.iterrows():
        col = min(int(np.floor(e.feature_slope / 6.0 * 12)), 11)
        row = min(int(np.floor(e.feature_code_length / 40.0 * 8)), 7)
        assert grid[row, col] == pytest.approx(e.score)
    transposed = run.heatmap(features=("code_length", "slope")).collections[0].get_array()
    assert transposed.shape == (12, 8) and transposed.count() == grid.count()


def test_cvt_heatmap_uses_the_stored_centroids(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace('kind = "grid"', 'kind = "cvt"\ncvt_cells = 16'))
    start_run(RunConfig(task=str(task), iterations=8, llm=("offline",), concurrency=1, seed=3), out=tmp_path / "run")
    with Run.open(tmp_path / "run") as cvt:
        assert cvt.cells == 16 and cvt.qd_stats()["cells"] == 16
        ax = cvt.heatmap()
        assert ax.get_xlabel() == "slope" and ax.collections  # Voronoi polygons drawn by pyribs
        assert cvt.progress_frame()["coverage"].iloc[-1] == pytest.approx(
            cvt.elites()["cell"].nunique() / 16)


def test_heatmap_without_descriptor_meta_uses_observed_ranges(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with Store.open(copy / "run.db") as store:
        store._conn.execute("DELETE FROM meta WHERE key IN ('descriptors', 'archive')")
    with Run.open(copy) as bare:
        assert set(bare.descriptor_names) >= {"slope", "code_length"} and bare.qd_offset == 0.0
        mesh = bare.heatmap(features=("slope", "code_length")).collections[0]
        assert mesh.get_array().shape == (10, 10) and mesh.get_array().count() > 0


def test_open_a_missing_run_raises_store_error(tmp_path):
    with pytest.raises(StoreError, match="no such run directory"):
        Run.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no run.db"):
        Run.open(tmp_path / "empty")


def test_reading_while_another_connection_writes(run_dir, tmp_path):
    copy = tmp_path / "live"
    shutil.copytree(run_dir, copy)
    writer = Store.open(copy / "run.db")
    try:
        with Run.open(copy) as live:
            before = live.programs()
            elites_before = live.elites(island=0)
            best = live.best()
            record = CandidateRecord(iteration=99, code=best.code + "\n# better\n", status="ok", parent_id=best.id,
                                     island=0, score=best.score + 1.0, fitness=best.fitness + 1.0,
                                     features=dict(best.features), metrics=dict(best.metrics))
            cell = int(elites_before.loc[elites_before["id"] == best.id, "cell"].iloc[0]) \
                if (elites_before["id"] == best.id).any() else 0
            new_id = writer.add_candidate(record, [ArchiveEvent("insert", writer.next_program_id(), 0, "improved",
                                                                1.0, cell, iteration=99)])
            after = live.programs()
            assert len(after) == len(before) + 1 and after["id"].iloc[-1] == new_id
            assert live.best().id == new_id and live.lineage(new_id)[-2].id == best.id
            elites_after = live.elites(island=0)
            assert elites_after.loc[elites_after["cell"] == cell, "id"].tolist() == [new_id]
    finally:
        writer.close()
