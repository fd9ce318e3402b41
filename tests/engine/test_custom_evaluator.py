"""examples/custom_evaluator/: the walkthrough's task runs end to end, cascade and all."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.engine.session import evaluate_file

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "examples" / "custom_evaluator" / "knapsack"


def test_initial_program_passes_both_stages_with_features_and_artifacts():
    result = evaluate_file(str(TASK), TASK / "initial_program.py")
    assert result.status == "ok" and result.stage == 2
    assert 0.9 < result.score <= 1.0
    assert set(result.features) == {"mean_fill", "items_per_pack"}
    assert "of the optimum" in result.artifacts["worst_instance"]


def test_a_candidate_that_overfills_stops_at_the_cheap_stage(tmp_path):
    cheat = tmp_path / "cheat.py"
    cheat.write_text((TASK / "initial_program.py").read_text().replace(
        "        if weights[i] <= room:\n", "        if True:  # take everything\n"))
    result = evaluate_file(str(TASK), cheat)
    assert result.status == "invalid" and result.stage == 1 and result.metrics["stage1_score"] == 0.0
    assert "overfilled" in result.artifacts["stage1"] and "stopped at stage 1" in result.artifacts["cascade"]


def test_a_candidate_that_raises_is_reported_by_stage_one(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text((TASK / "initial_program.py").read_text().replace("return value / weight", "return 1 / 0"))
    result = evaluate_file(str(TASK), broken)
    assert result.status == "invalid" and result.stage == 1
    assert "ZeroDivisionError" in result.artifacts["error"]


@pytest.mark.slow
def test_walkthrough_task_runs_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", str(TASK), "--iterations", "10", "--seed", "0",
                           "--quiet", "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    with Run.open(tmp_path / "run") as run:
        frame = run.programs()
        assert len(frame) == 11 and run.best().score >= run.program(1).score
        assert {"feature_mean_fill", "feature_items_per_pack"} <= set(frame.columns)
        assert run.qd_stats()["elites"] >= 1
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    stages = {row[0] for row in conn.execute("SELECT stage FROM programs WHERE status = 'ok'")}
    conn.close()
    assert stages <= {1, 2} and 2 in stages   # every evaluated candidate went through the cascade
