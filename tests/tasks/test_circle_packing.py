"""The built-in circle_packing task (n = 26): initial program, strict evaluator, reference data."""

from __future__ import annotations

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

TASK = Path(__file__).resolve().parents[2] / "tasks" / "circle_packing"
INITIAL = TASK / "initial_program.py"
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"
ALPHAEVOLVE_SUM = 2.6358627564


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("circle_packing_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()


def _alphaevolve() -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(json.loads((TASK / "data" / "alphaevolve_n26.json").read_text())["circles"], dtype=np.float64)
    return rows[:, :2], rows[:, 2]


def _program(tmp_path: Path, block: str, name: str = "candidate.py") -> str:
    """The initial program with its EVOLVE-BLOCK replaced by ``block``."""
    text = INITIAL.read_text()
    head, rest = text.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / name
    path.write_text(head + START + "\n" + textwrap.dedent(block).strip("\n") + "\n" + END + "\n" + tail)
    return str(path)


def _declared_ranges() -> dict[str, tuple[float, float]]:
    raw = tomllib.loads((TASK / "task.toml").read_text())
    return {d["name"]: tuple(d["range"]) for d in raw["descriptors"]}


def _assert_features_in_range(result: dict) -> None:
    ranges = _declared_ranges()
    assert set(ranges) <= set(result["features"]), (ranges, result["features"])
    for name, (low, high) in ranges.items():
        assert low <= result["features"][name] <= high, (name, result["features"][name], low, high)


def _assert_invalid(result: dict, *needles: str) -> str:
    assert result.get("status") == "invalid", result
    assert "score" not in result
    message = result["error"]
    assert message == result["artifacts"]["violation"]
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# ---------------------------------------------------------------------------------------------
# task folder


def test_task_toml_is_complete_and_consistent():
    raw = tomllib.loads((TASK / "task.toml").read_text())
    assert raw["name"] == "circle_packing" and raw["objective"] == "maximize"
    assert (TASK / raw["initial_program"]).is_file() and (TASK / raw["evaluator"]).is_file()
    assert raw["files"] == []
    assert set(raw["archive"]) == {"kind", "islands", "migration_interval", "cvt_cells", "qd_offset"}
    assert set(raw["limits"]) == {"timeout_s", "memory_mb"} and set(raw["resources"]) == {"num_cpus", "num_gpus"}
    assert raw["cascade"] == {"thresholds": []}
    assert [d["name"] for d in raw["descriptors"]] == ["radius_cv", "border_fraction"]
    for needle in ("26", "sum", "construct_packing", "(26, 2)", "r_i <= x_i <= 1 - r_i", "2.635"):
        assert needle in raw["description"], needle
    text = INITIAL.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert text.index("def run_packing") > text.index(END)  # the entry point is frozen


# ---------------------------------------------------------------------------------------------
# the initial program


def test_initial_program_is_valid_scores_below_best_known_and_features_in_range():
    result = ev.evaluate(str(INITIAL))
    assert result.get("status", "ok") == "ok", result
    assert 1.0 < result["score"] < 2.6
    assert result["score"] == pytest.approx(1.7251825756, abs=1e-8)
    assert result["metrics"]["sum_radii"] == result["score"]
    assert result["metrics"]["n_violations"] == 0.0
    assert result["metrics"]["min_radius"] >= 0.0
    assert all(isinstance(v, str) and len(v) < 500 for v in result["artifacts"].values())
    _assert_features_in_range(result)
    assert ev.evaluate(str(INITIAL)) == result  # deterministic


def test_initial_result_keeps_the_engine_contract():
    from evoforge.evaluators.types import EvaluationResult

    parsed = EvaluationResult.from_evaluator(ev.evaluate(str(INITIAL)))
    assert parsed.ok and parsed.score == pytest.approx(1.7251825756, abs=1e-8)
    assert set(parsed.features) == {"radius_cv", "border_fraction"}


def test_perturbing_a_constant_changes_the_score(tmp_path):
    """The block is evolvable by plain constant edits (what the offline GP operator does)."""
    text = INITIAL.read_text()
    assert "inner_radius = 0.22" in text
    path = tmp_path / "tuned.py"
    path.write_text(text.replace("inner_radius = 0.22", "inner_radius = 0.26"))
    tuned = ev.evaluate(str(path))
    assert tuned.get("status", "ok") == "ok"
    assert tuned["score"] > ev.evaluate(str(INITIAL))["score"]


# ---------------------------------------------------------------------------------------------
# the AlphaEvolve n = 26 construction


def test_alphaevolve_construction_verifies_with_zero_tolerance():
    centers, radii = _alphaevolve()
    ok, message = ev.verify_packing(centers, radii)
    assert ok, message
    assert math.fsum(radii.tolist()) == pytest.approx(ALPHAEVOLVE_SUM, abs=1e-6)


def test_alphaevolve_construction_evaluates_as_a_program(tmp_path):
    centers, radii = _alphaevolve()
    rows = np.column_stack([centers, radii]).tolist()
    path = _program(tmp_path, f"""
        def construct_packing():
            rows = np.array({rows!r}, dtype=np.float64)
            return rows[:, :2], rows[:, 2]
        """)
    result = ev.evaluate(path)
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(ALPHAEVOLVE_SUM, abs=1e-6)
    assert result["metrics"]["gap_to_best_known"] == pytest.approx(0.0, abs=1e-6)
    _assert_features_in_range(result)


# ---------------------------------------------------------------------------------------------
# verify_packing: zero tolerance, exact messages


def test_touching_discs_are_valid_and_one_ulp_more_is_not():
    """Exact arithmetic: 0.125 + nextafter(0.125) rounds to 0.25 in float64, yet it is an overlap."""
    centers = np.array([[0.25, 0.5], [0.5, 0.5]])
    assert ev.verify_packing(centers, np.array([0.125, 0.125]), n=2)[0]
    bigger = np.nextafter(0.125, 1.0)
    assert 0.125 + bigger == 0.25  # float64 rounding would hide the overlap
    ok, message = ev.verify_packing(centers, np.array([0.125, bigger]), n=2)
    assert not ok and message.startswith("circles 0 and 1 overlap"), message


def test_one_ulp_outside_the_square_is_invalid():
    r = np.nextafter(0.1, 1.0)
    ok, message = ev.verify_packing(np.array([[0.1, 0.5]]), np.array([r]), n=1)
    assert not ok and "circle 0 crosses the left side" in message
    ok, message = ev.verify_packing(np.array([[0.9, 0.5]]), np.array([r]), n=1)
    assert not ok and "circle 0 crosses the right side" in message


def test_verify_reports_the_first_violation_with_indices_and_amount():
    centers, radii = _alphaevolve()
    radii = radii.copy()
    radii[14] += 0.01  # the big central disc now overlaps its neighbours
    ok, message = ev.verify_packing(centers, radii)
    assert not ok
    assert message.startswith("circles ") and "14" in message and "overlap" in message
    assert "more violation" in message


@pytest.mark.parametrize("centers, radii, needle", [
    (np.full((26, 2), 0.5), np.full(25, 0.0), "radii must have shape (26,)"),
    (np.full((26, 3), 0.5), np.full(26, 0.0), "centers must have shape (26, 2)"),
    (np.full((2, 13, 2), 0.5), np.full(26, 0.0), "centers must have shape (26, 2)"),
    (np.full((26, 2), 0.5), np.full((26, 1), 0.0), "radii must have shape (26,)"),
    (np.full((26, 2), 0.5), np.array([0.0] * 25 + [np.nan]), "circle 25: non-finite"),
    (np.full((26, 2), 0.5), np.array([0.0] * 25 + [np.inf]), "circle 25: non-finite"),
    (np.array([[0.5, np.nan]] * 26), np.zeros(26), "circle 0: non-finite"),
    (np.full((26, 2), 0.5), np.array([-1e-12] + [0.0] * 25), "circle 0: negative radius"),
    (np.full((26, 2), 0.5), np.array(["0.0"] * 26), "dtype"),
    (np.full((26, 2), 0.5), np.array([None] * 26, dtype=object), "dtype"),
    (np.full((26, 2), 0.5), np.zeros(26, dtype=bool), "dtype"),
    ([[0.5, 0.5]] * 25 + [[0.5]], np.zeros(26), "centers"),
])
def test_verify_rejects_malformed_input(centers, radii, needle):
    ok, message = ev.verify_packing(centers, radii)
    assert not ok and needle in message, message


def test_zero_radii_at_distinct_points_are_valid():
    grid = np.array([[i / 25, 0.0] for i in range(26)])
    assert ev.verify_packing(grid, np.zeros(26))[0]


# ---------------------------------------------------------------------------------------------
# invalid candidate programs


def test_overlapping_discs_are_invalid(tmp_path):
    path = _program(tmp_path, """
        def construct_packing():
            centers = np.array([[0.1 + 0.16 * (i % 6), 0.1 + 0.16 * (i // 6)] for i in range(26)])
            radii = np.full(26, 0.09)   # neighbours are 0.16 apart: overlap 0.02
            return centers, radii
        """)
    message = _assert_invalid(ev.evaluate(path), "circles 0 and 1 overlap")
    assert "overlap 2.000e-02" in message


def test_disc_outside_the_square_is_invalid(tmp_path):
    path = _program(tmp_path, """
        def construct_packing():
            centers = np.array([[0.02 + 0.0384 * i, 0.5] for i in range(26)])
            radii = np.full(26, 0.0)
            radii[0] = 0.03   # x = 0.02 < r
            return centers, radii
        """)
    result = ev.evaluate(path)
    _assert_invalid(result, "circle 0 crosses the left side", "outside by 1.000e-02")
    assert result["metrics"]["n_border_violations"] == 1.0


def test_nan_radius_is_invalid(tmp_path):
    path = _program(tmp_path, """
        def construct_packing():
            centers, radii = np.full((26, 2), 0.5), np.zeros(26)
            radii[3] = float("nan")
            return centers, radii
        """)
    _assert_invalid(ev.evaluate(path), "circle 3: non-finite")


def test_negative_radius_is_invalid(tmp_path):
    # Negative radii would otherwise let big positive ones "overlap" for free.
    path = _program(tmp_path, """
        def construct_packing():
            centers = np.array([[0.5, 0.5]] * 26)
            radii = np.array([0.5, -0.5] * 13)
            return centers, radii
        """)
    _assert_invalid(ev.evaluate(path), "circle 1: negative radius")


def test_wrong_shape_is_invalid(tmp_path):
    path = _program(tmp_path, """
        def construct_packing():
            return np.full((25, 2), 0.5), np.zeros(25)
        """)
    _assert_invalid(ev.evaluate(path), "shape (26, 2)")


def test_lists_of_strings_are_invalid(tmp_path):
    path = _program(tmp_path, """
        def construct_packing():
            return [["0.5", "0.5"]] * 26, ["0.1"] * 26
        """)
    _assert_invalid(ev.evaluate(path), "dtype")


def test_program_claiming_a_huge_sum_with_invalid_arrays_is_invalid(tmp_path):
    path = tmp_path / "liar.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        def run_packing():
            centers = np.full((26, 2), 0.5)
            radii = np.full(26, 0.5)        # all on top of each other
            return centers, radii, 1000.0   # a self-reported "sum of radii"
        """))
    result = ev.evaluate(str(path))
    _assert_invalid(result, "circles 0 and 1 overlap")
    assert result["metrics"]["n_overlap_violations"] == 325.0


def test_self_reported_sum_is_ignored_for_a_valid_packing(tmp_path):
    path = tmp_path / "claims.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        def run_packing():
            centers = np.array([[0.1 + 0.2 * (i % 5), 0.1 + 0.2 * (i // 5)] for i in range(25)] + [[0.0, 0.0]])
            radii = np.array([0.1 * (1 - 1e-9)] * 25 + [0.0])
            return centers, radii, 99.0
        """))
    result = ev.evaluate(str(path))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(2.5, abs=1e-8)


def test_monkeypatching_numpy_does_not_fool_the_check(tmp_path):
    path = _program(tmp_path, """
        np.hypot = lambda a, b: np.full_like(np.asarray(a, dtype=float), 10.0)
        np.sqrt = lambda a: 10.0
        import math
        math.hypot = lambda *a: 10.0
        def construct_packing():
            return np.full((26, 2), 0.5), np.full(26, 0.4)
        """)
    real_hypot, real_sqrt, real_math_hypot = np.hypot, np.sqrt, math.hypot
    try:
        _assert_invalid(ev.evaluate(path), "overlap")
    finally:
        np.hypot, np.sqrt, math.hypot = real_hypot, real_sqrt, real_math_hypot


def test_bad_return_types_are_invalid(tmp_path):
    path = tmp_path / "scalar.py"
    path.write_text("def run_packing():\n    return 2.7\n")
    _assert_invalid(ev.evaluate(str(path)), "must return (centers, radii)")
    path = tmp_path / "noentry.py"
    path.write_text("x = 1\n")
    _assert_invalid(ev.evaluate(str(path)), "run_packing")


def test_exceptions_in_the_candidate_propagate(tmp_path):
    from evoforge.evaluators.candidate import CandidateRaised  # the candidate runs in a nested process

    path = _program(tmp_path, """
        def construct_packing():
            raise RuntimeError("boom")
        """)
    with pytest.raises(CandidateRaised, match="RuntimeError: boom"):
        ev.evaluate(path)


def test_two_programs_in_one_process_are_scored_independently(tmp_path):
    a = ev.evaluate(str(INITIAL))["score"]
    path = tmp_path / "initial_program.py"   # same basename, different content
    path.write_text(INITIAL.read_text().replace("outer_radius = 0.45", "outer_radius = 0.40"))
    b = ev.evaluate(str(path))["score"]
    assert a != b and ev.evaluate(str(INITIAL))["score"] == a
