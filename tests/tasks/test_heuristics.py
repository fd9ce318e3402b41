"""The built-in heuristic tasks: online bin packing (OR-Library, Weibull) and constructive TSP.

Published baselines are reproduced exactly; the initial programs evaluate ok; broken candidates are
invalid (or raise); features lie inside the declared ranges.
"""

from __future__ import annotations

import importlib.util
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
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def _load_evaluator(task: str):
    spec = importlib.util.spec_from_file_location(f"{task}_evaluator_under_test", TASKS / task / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _program(tmp_path: Path, task: str, block: str, name: str = "candidate.py") -> str:
    """The task's initial program with its EVOLVE-BLOCK replaced by ``block``."""
    text = (TASKS / task / "initial_program.py").read_text()
    head, rest = text.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / name
    path.write_text(head + START + "\n" + textwrap.dedent(block).strip("\n") + "\n" + END + "\n" + tail)
    return str(path)


def _assert_features_in_range(task: str, result: dict) -> None:
    raw = tomllib.loads((TASKS / task / "task.toml").read_text())
    ranges = {d["name"]: tuple(d["range"]) for d in raw["descriptors"]}
    evaluator_features = {k: v for k, v in ranges.items() if k not in ("code_length", "ast_nodes")}
    assert set(evaluator_features) <= set(result["features"]), (ranges, result["features"])
    for name, (low, high) in evaluator_features.items():
        assert low <= result["features"][name] <= high, (name, result["features"][name], low, high)
    if "code_length" in ranges:
        from evoforge.engine.features import builtin_features

        code = (TASKS / task / "initial_program.py").read_text()
        low, high = ranges["code_length"]
        assert low <= builtin_features(code)["code_length"] <= high


def _assert_task_loads(task: str) -> None:
    from evoforge.engine.task import load_task

    loaded = load_task(TASKS / task)
    assert loaded.name == task


# ---------------------------------------------------------------------------------------------------------
# Online bin packing
# ---------------------------------------------------------------------------------------------------------

BP_OR = _load_evaluator("bin_packing_or")
BP_WB = _load_evaluator("bin_packing_weibull")


def first_fit(item, bins):
    return np.zeros_like(bins)


def best_fit(item, bins):
    return -(bins - item)


@pytest.mark.parametrize("dataset, ff, bf", [
    ("or1", 6.42, 5.81), ("or2", 6.45, 6.06), ("or3", 5.74, 5.37), ("or4", 5.23, 4.94),
])
def test_bin_packing_or_published_baselines(dataset, ff, bf):
    assert round(100 * BP_OR.heldout_excess(first_fit, dataset), 2) == ff
    assert round(100 * BP_OR.heldout_excess(best_fit, dataset), 2) == bf


def test_bin_packing_weibull_published_baselines():
    assert round(100 * BP_WB.heldout_excess(first_fit, "weibull5k"), 2) == 4.23
    assert round(100 * BP_WB.heldout_excess(best_fit, "weibull5k"), 2) == 3.98


def test_bin_packing_lower_bound_and_loop():
    assert BP_OR.lower_bound([150, 1], 150) == 2 and BP_OR.lower_bound([75, 75], 150) == 1
    # First fit vs best fit on a hand-checked sequence (capacity 10).
    items = [6, 5, 4, 5]
    assert list(BP_OR.online_binpack(items, 10, first_fit)) == [0, 0, 10, 10]      # 6+4, 5+5
    assert BP_OR.count_bins([5, 7, 3], 10, best_fit) == (2, 1)                        # 5 | 7+3 exact


@pytest.mark.parametrize("task", ["bin_packing_or", "bin_packing_weibull"])
def test_bin_packing_initial_program_evaluates(task):
    _assert_task_loads(task)
    ev = BP_OR if task == "bin_packing_or" else BP_WB
    result = ev.evaluate(str(TASKS / task / "initial_program.py"))
    assert result.get("status", "ok") == "ok", result
    expected = {"bin_packing_or": -213.625, "bin_packing_weibull": -837.2}[task]
    assert result["score"] == pytest.approx(expected)
    _assert_features_in_range(task, result)
    assert not any(k.startswith("heldout") for k in result["metrics"])      # held-out runs apart
    held = ev.evaluate_heldout(str(TASKS / task / "initial_program.py"))["metrics"]
    if task == "bin_packing_or":
        assert {k: round(v, 2) for k, v in held.items()} == {
            "heldout_excess_pct_or1": 5.81, "heldout_excess_pct_or2": 6.06,
            "heldout_excess_pct_or3": 5.37, "heldout_excess_pct_or4": 4.94}
    else:
        assert {k: round(v, 2) for k, v in held.items()} == {"heldout_excess_pct_weibull5k": 3.98}
    assert 0.0 < result["metrics"]["mean_fill"] <= 1.0
    assert "summary" in result["artifacts"]


def test_bin_packing_training_instances_are_deterministic_and_in_distribution():
    a, b = BP_OR.train_instances(), BP_OR.train_instances()
    assert a == b
    sizes = np.concatenate([np.asarray(items) for items, _ in a])
    assert sizes.min() >= 20 and sizes.max() <= 100 and all(cap == 150 for _, cap in a)
    w = np.concatenate([np.asarray(items) for items, _ in BP_WB.train_instances()])
    assert w.min() >= 1 and w.max() <= 100 and 38 < w.mean() < 42


@pytest.mark.parametrize("block, fragment", [
    ("def priority(item, bins):\n    return np.full(bins.shape, np.nan)", "non-finite"),
    ("def priority(item, bins):\n    return -(bins - item) / (bins - item)", "non-finite"),   # 0/0 on exact fit
    ("def priority(item, bins):\n    return np.where(bins == bins.max(), np.inf, 0.0)", "non-finite"),
    ("def priority(item, bins):\n    return 0.0", "scalar"),
    ("def priority(item, bins):\n    return np.zeros(len(bins) + 1)", "shape"),
    ("def priority(item, bins):\n    return np.zeros((len(bins), 1))", "shape"),
    ("def priority(item, bins):\n    return np.array(['a'] * len(bins))", "dtype"),
    ("def priority(item, bins):\n    return [object()] * len(bins)", "not plain data"),
    ("class F(float):\n    def __gt__(self, o): return True\n\n"
     "def priority(item, bins):\n    return [F(0)] * len(bins)",
     "subclass of float"),
    ("def not_priority(item, bins):\n    return -bins", "priority"),
])
def test_bin_packing_invalid_candidates(tmp_path, block, fragment):
    with np.errstate(all="ignore"):
        result = BP_OR.evaluate(_program(tmp_path, "bin_packing_or", block))
    assert result["status"] == "invalid", result
    assert fragment in result["error"], result["error"]


def test_bin_packing_raising_candidate_propagates(tmp_path):
    from evoforge.evaluators.candidate import CandidateRaised

    path = _program(tmp_path, "bin_packing_weibull", "def priority(item, bins):\n    raise RuntimeError('boom')")
    with pytest.raises(CandidateRaised, match="RuntimeError: boom"):
        BP_WB.evaluate(path)


def test_bin_packing_candidate_cannot_cheat_the_count(tmp_path):
    """Mutating its argument or monkeypatching numpy does not change the evaluator's bin count."""
    block = """
    def priority(item, bins):
        bins[:] = 10 ** 6                    # a copy: the evaluator's capacities are untouched
        np.argmax = lambda a, *k, **kw: 0    # the evaluator bound np.argmax at import
        np.nonzero = lambda a: (np.arange(1),)
        return np.zeros(len(bins))
    """
    import numpy

    saved = numpy.argmax, numpy.nonzero
    try:
        result = BP_OR.evaluate(_program(tmp_path, "bin_packing_or", block))
    finally:
        numpy.argmax, numpy.nonzero = saved
    assert result.get("status", "ok") == "ok", result
    saved = numpy.argmax, numpy.nonzero
    try:
        held = BP_OR.evaluate_heldout(_program(tmp_path, "bin_packing_or", block))
    finally:
        numpy.argmax, numpy.nonzero = saved
    assert round(held["metrics"]["heldout_excess_pct_or1"], 2) == 6.42           # exactly first fit


def test_bin_packing_score_orders_heuristics(tmp_path):
    # Worst fit (most remaining space first) uses more bins than best fit: a lower score.
    result = BP_OR.evaluate(_program(tmp_path, "bin_packing_or", "def priority(item, bins):\n    return bins"))
    assert result.get("status", "ok") == "ok" and result["score"] < -213.625
    _assert_features_in_range("bin_packing_or", result)


# ---------------------------------------------------------------------------------------------------------
# Constructive TSP
# ---------------------------------------------------------------------------------------------------------

TSP = _load_evaluator("tsp_construct")


def nearest_neighbour(current_node, destination_node, unvisited_nodes, distance_matrix):
    return min(unvisited_nodes, key=lambda node: distance_matrix[current_node][node])


@pytest.mark.parametrize("name", ["test20", "test50", "test100", "test200"])
def test_tsp_nearest_neighbour_published_lengths(name):
    assert TSP.heldout_mean_length(nearest_neighbour, name) == pytest.approx(TSP.NN_PUBLISHED[name], abs=1e-6)


def test_tsp_public_sets_follow_the_global_seed_recipe():
    state = np.random.get_state()
    try:
        np.random.seed(1234)
        expected = {name: [np.random.rand(int(name.lstrip("abcdefghijklmnopqrstuvwxyz")), 2) for _ in range(64)]
                    for name in TSP.PUBLIC_SET_ORDER[:7]}
    finally:
        np.random.set_state(state)
    got = TSP.public_sets(("val20", "test50"))
    assert set(got) == {"val20", "test50"}
    for name in got:
        assert len(got[name]) == 64 and all(np.array_equal(a, b) for a, b in zip(got[name], expected[name]))


def test_tsp_tsplib_parses_and_gap_is_positive():
    for name, n, opt in (("eil51", 51, 426), ("kroB100", 100, 22141), ("rat99", 99, 1211)):
        pts, dist, optimum = TSP.load_tsplib(name)
        assert pts.shape == (n, 2) and dist.shape == (n, n) and optimum == opt
        assert np.array_equal(dist, np.rint(dist)) and np.array_equal(dist, dist.T)
        assert 0.0 < TSP.tsplib_gap(nearest_neighbour, name) < 0.5
    _, dist, _ = TSP.load_tsplib("eil51")
    assert dist[0, 1] == 12.0                       # nint(hypot(37 - 49, 52 - 49)) = nint(12.37)
    assert TSP.tour_length(dist, list(range(51))) == float(sum(dist[i, (i + 1) % 51] for i in range(51)))


def test_tsp_initial_program_evaluates():
    _assert_task_loads("tsp_construct")
    result = TSP.evaluate(str(TASKS / "tsp_construct" / "initial_program.py"))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(-7.150570599806727)
    assert result["features"]["nn_agreement"] == 1.0
    _assert_features_in_range("tsp_construct", result)
    assert not any(k.startswith(("heldout", "tsplib")) for k in result["metrics"])   # held-out runs apart
    held = TSP.evaluate_heldout(str(TASKS / "tsp_construct" / "initial_program.py"))["metrics"]
    for name in ("test20", "test50", "test100", "test200"):
        assert held[f"heldout_length_{name}"] == pytest.approx(TSP.NN_PUBLISHED[name], abs=1e-6)
    assert held["tsplib_gap_pct_eil51"] == pytest.approx(100 * (511 - 426) / 426)


def test_tsp_other_rule_scores_and_descriptor(tmp_path):
    # Farthest-first insertion order is a valid (bad) rule: lower score, low nearest-neighbour agreement.
    block = """
    def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
        return max(unvisited_nodes, key=lambda node: distance_matrix[current_node][node])
    """
    result = TSP.evaluate(_program(tmp_path, "tsp_construct", block))
    assert result.get("status", "ok") == "ok" and result["score"] < -7.2
    assert result["features"]["nn_agreement"] < 0.2
    _assert_features_in_range("tsp_construct", result)


@pytest.mark.parametrize("body, fragment", [
    ("return current_node", "not an unvisited"),                        # already visited
    ("return destination_node", "not an unvisited"),                    # the start node
    ("return len(distance_matrix)", "not an unvisited"),                # out of range
    ("return -1", "not an unvisited"),
    ("return float(min(unvisited_nodes))", "must return an int"),
    ("return None", "must return an int"),
    ("return True", "must return an int"),
    ("return np.array([min(unvisited_nodes)])", "must return an int"),
    ("unvisited_nodes.clear(); return 1", "not an unvisited"),          # mutating its copy changes nothing
])
def test_tsp_invalid_candidates(tmp_path, body, fragment):
    block = f"""
    def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
        {body}
    """
    result = TSP.evaluate(_program(tmp_path, "tsp_construct", block))
    assert result["status"] == "invalid", result
    assert fragment in result["error"], result["error"]


def test_tsp_numpy_integer_is_accepted_and_copies_protect_the_evaluator(tmp_path):
    block = """
    def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
        nodes = np.array(sorted(unvisited_nodes))
        choice = nodes[np.argmin(distance_matrix[current_node, nodes])]
        distance_matrix[:] = 0.0                 # its own copy: the evaluator measures on its matrix
        unvisited_nodes.clear()
        return choice                            # a numpy integer
    """
    result = TSP.evaluate(_program(tmp_path, "tsp_construct", block))
    assert result.get("status", "ok") == "ok", result
    # First step is nearest neighbour; later steps see a zeroed matrix (ties -> lowest index): a longer tour.
    assert result["score"] < -7.150570599806727


def test_tsp_raising_candidate_propagates(tmp_path):
    from evoforge.evaluators.candidate import CandidateRaised

    block = """
    def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
        raise KeyError("boom")
    """
    with pytest.raises(CandidateRaised, match="KeyError: 'boom'"):
        TSP.evaluate(_program(tmp_path, "tsp_construct", block))


# -- functional fingerprints (the probes) -----------------------------------------------------------------------
def _digest(evaluator, program: str) -> str | None:
    from evoforge.evaluators.runner import probe_fingerprint

    return probe_fingerprint(evaluator, program)


def test_tsp_probe_tells_rules_apart_and_sees_a_rewritten_nearest_neighbour(tmp_path):
    ev = _load_evaluator("tsp_construct")
    nearest = _digest(ev, str(TASKS / "tsp_construct" / "initial_program.py"))
    rewritten = _program(tmp_path, "tsp_construct", """
        def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
            order = sorted(unvisited_nodes)
            row = distance_matrix[current_node]
            return order[int(np.argmin([row[node] for node in order]))]
        """, "rewritten.py")
    ael = _digest(ev, str(TASKS / "tsp_construct" / "examples" / "ael.py"))
    broken = _program(tmp_path, "tsp_construct", """
        def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):
            return current_node
        """, "broken.py")
    tweaked = tmp_path / "tweaked.py"     # AEL with one weight moved in its 3rd digit: another rule
    tweaked.write_text((TASKS / "tsp_construct" / "examples" / "ael.py").read_text()
                       .replace("0.4, 0.3, 0.2, 0.1", "0.41, 0.3, 0.2, 0.1"))
    assert nearest is not None and _digest(ev, rewritten) == nearest
    assert ael is not None and ael != nearest
    assert _digest(ev, str(tweaked)) not in (None, ael)
    assert _digest(ev, broken) is None         # no fingerprint: evaluate reports the invalid node itself


@pytest.mark.parametrize("task", ["bin_packing_or", "bin_packing_weibull"])
def test_bin_packing_probe_tells_rules_apart_and_sees_a_rewritten_best_fit(tmp_path, task):
    ev = _load_evaluator(task)
    best_fit = _digest(ev, str(TASKS / task / "initial_program.py"))
    rewritten = _program(tmp_path, task, """
        def priority(item, bins):
            return np.asarray(item - bins, dtype=float)
        """, "rewritten.py")
    first_fit = _program(tmp_path, task, """
        def priority(item, bins):
            return -np.arange(len(bins), dtype=float)
        """, "first_fit.py")
    # Chooses exactly as best fit on every probe item, but it is another function: not a duplicate.
    nearby = _program(tmp_path, task, """
        def priority(item, bins):
            return -(bins - item) * 1.0001
        """, "nearby.py")
    assert best_fit is not None and _digest(ev, rewritten) == best_fit
    assert _digest(ev, first_fit) not in (None, best_fit)
    assert _digest(ev, nearby) not in (None, best_fit)


def test_tsp_ael_rule_scores_ok_on_training_and_beats_nearest_neighbour(tmp_path):
    """AEL's published rule (examples/ael.py) through the real training evaluation (all 8 x 50 instances);
    its full held-out evaluation (minutes) is `evoforge eval --heldout`, documented in the task's README."""
    ev = _load_evaluator("tsp_construct")
    ael = str(TASKS / "tsp_construct" / "examples" / "ael.py")
    result = ev.evaluate(ael)
    nearest = ev.evaluate(str(TASKS / "tsp_construct" / "initial_program.py"))
    assert result.get("status", "ok") == "ok" and result["score"] > nearest["score"]
    assert 0.0 < result["features"]["nn_agreement"] < 1.0
    text = (TASKS / "tsp_construct" / "examples" / "ael.py").read_text()
    assert text.count(START) == 1 and text.count(END) == 1
