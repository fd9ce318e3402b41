"""circle_packing_32: the n = 26 task's files with n = 32, and AlphaEvolve's n = 32 construction."""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TASKS = Path(__file__).resolve().parents[2] / "tasks"
TASK = TASKS / "circle_packing_32"
INITIAL = TASK / "initial_program.py"
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"
ALPHAEVOLVE_SUM = 2.9379445262


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("circle_packing_32_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()


def _changed_lines(a: Path, b: Path) -> list[str]:
    diff = difflib.unified_diff(a.read_text().splitlines(), b.read_text().splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def _alphaevolve() -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(json.loads((TASK / "data" / "alphaevolve_n32.json").read_text())["circles"], dtype=np.float64)
    return rows[:, :2], rows[:, 2]


def _program(tmp_path: Path, block: str) -> str:
    head, rest = INITIAL.read_text().split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / "candidate.py"
    path.write_text(head + START + "\n" + textwrap.dedent(block).strip("\n") + "\n" + END + "\n" + tail)
    return str(path)


def test_evaluator_differs_from_the_n26_one_only_in_n_and_the_best_known_value():
    changed = _changed_lines(TASKS / "circle_packing" / "evaluator.py", TASK / "evaluator.py")
    assert sorted(changed) == sorted([
        "-N_CIRCLES = 26", "+N_CIRCLES = 32",
        "-BEST_KNOWN = 2.6358627564    # AlphaEvolve (2025), n = 26; previous best (human) 2.634",
        "+BEST_KNOWN = 2.9379445262    # AlphaEvolve (2025), n = 32; previous best 2.936",
    ]), changed
    assert ev.N_CIRCLES == 32 and ev.BEST_KNOWN == ALPHAEVOLVE_SUM


def test_initial_program_differs_only_in_the_circle_count():
    changed = _changed_lines(TASKS / "circle_packing" / "initial_program.py", INITIAL)
    assert changed and all(("26" in line) if line[0] == "-" else ("32" in line) for line in changed), changed


def test_task_toml_is_the_n32_task():
    raw = tomllib.loads((TASK / "task.toml").read_text())
    assert raw["name"] == "circle_packing_32" and raw["objective"] == "maximize" and raw["files"] == []
    assert [d["name"] for d in raw["descriptors"]] == ["radius_cv", "border_fraction"]
    for needle in ("Pack 32", "(32, 2)", "(32,)", "2.9379445262", "2.936"):
        assert needle in raw["description"], needle
    assert "26" not in raw["description"].replace("2.9379445262", "")


def test_initial_program_scores_its_measured_value():
    result = ev.evaluate(str(INITIAL))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(1.7933243053, abs=1e-8)
    assert result["metrics"]["gap_to_best_known"] == pytest.approx(ALPHAEVOLVE_SUM - result["score"])
    assert 0 <= result["features"]["radius_cv"] <= 1 and 0 <= result["features"]["border_fraction"] <= 1


def test_alphaevolve_n32_construction_verifies_and_scores_its_published_value(tmp_path):
    centers, radii = _alphaevolve()
    ok, message = ev.verify_packing(centers, radii)
    assert ok, message
    assert math.fsum(radii.tolist()) == pytest.approx(ALPHAEVOLVE_SUM, abs=1e-9)
    rows = np.column_stack([centers, radii]).tolist()
    result = ev.evaluate(_program(tmp_path, f"""
        def construct_packing():
            rows = np.array({rows!r}, dtype=np.float64)
            return rows[:, :2], rows[:, 2]
        """))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(ALPHAEVOLVE_SUM, abs=1e-9)
    assert result["metrics"]["gap_to_best_known"] == pytest.approx(0.0, abs=1e-9)


def test_growing_one_alphaevolve_disc_by_1e_6_is_invalid():
    centers, radii = _alphaevolve()
    radii = radii.copy()
    radii[int(np.argmax(radii))] += 1e-6
    ok, message = ev.verify_packing(centers, radii)
    assert not ok and ("overlap" in message or "crosses" in message), message


@pytest.mark.parametrize("block, needle", [
    ("def construct_packing():\n    return np.full((26, 2), 0.5), np.zeros(26)", "shape (32, 2)"),
    ("def construct_packing():\n    return np.full((32, 2), 0.5), np.full(32, 0.1)", "overlap"),
    ("def construct_packing():\n    return np.full((32, 2), 0.5), np.full(32, np.nan)", "non-finite"),
    ("def construct_packing():\n    return np.full((32, 2), 0.5), np.empty(32, dtype=object)", "numbers"),
])
def test_invalid_packings_are_invalid(tmp_path, block, needle):
    result = ev.evaluate(_program(tmp_path, block))
    assert result.get("status") == "invalid" and needle in result["error"], result
