"""The Pareto fronts of archive.pareto, pure: dominance, order independence, statuses, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.archive.pareto import Objective, ParetoFronts, dominates, non_dominated, objective_values


def test_dominance_needs_as_good_everywhere_and_better_somewhere():
    assert dominates((2, 1), (1, 1)) and not dominates((1, 1), (1, 1)) and not dominates((2, 0), (1, 1))


def test_the_front_does_not_depend_on_arrival_order_and_keeps_the_first_of_equal_points():
    rng = np.random.default_rng(0)
    points = [(i, tuple(rng.integers(0, 6, 2).tolist())) for i in range(1, 60)]
    expected = sorted(non_dominated(points))
    brute = sorted(i for i, p in points if not any(dominates(q, p) for _, q in points)
                   and all(j >= i for j, q in points if q == p))
    assert expected == brute
    for _ in range(10):
        order = list(points)
        rng.shuffle(order)
        fronts = ParetoFronts(objectives=[Objective("a", "max"), Objective("b", "max")], islands=1)
        for pid, (a, b) in sorted(order):          # ids arrive in order: the earliest of equals stays
            fronts.add(0, pid, {"a": a, "b": b})
        assert fronts.front(0) == expected


def test_directions_statuses_and_values():
    fronts = ParetoFronts(objectives=[Objective("error", "min"), Objective("ops", "min")], islands=2)
    assert fronts.add(0, 1, {"error": 5.0, "ops": 10}) == "new"
    assert fronts.add(0, 2, {"error": 6.0, "ops": 11}) == "dominated"
    assert fronts.add(0, 3, {"error": 5.0, "ops": 10}) == "duplicate"
    assert fronts.add(0, 4, {"error": 1.0, "ops": 12}) == "new"           # a trade-off: both stay
    assert fronts.add(0, 5, {"error": 0.5, "ops": 9}) == "new"            # dominates both: they leave
    assert fronts.front(0) == [5] and fronts.front(1) == []
    assert fronts.values(0) == {5: {"error": 0.5, "ops": 9.0}}
    assert fronts.add(0, 6, {"error": float("nan"), "ops": 1}) == "dominated"
    rng = np.random.default_rng(1)
    assert fronts.sample(0, rng) == 5 and fronts.sample(1, rng) is None


def test_objective_values_come_from_metrics_then_features():
    objectives = [Objective("error"), Objective("code_length")]
    assert objective_values(objectives, {"error": 1.0}, {"code_length": 7.0}) == {"error": 1.0, "code_length": 7.0}
    assert objective_values(objectives, {"error": 1.0}, {}) is None
    with pytest.raises(ValueError, match="direction 'min' or 'max'"):
        Objective("x", "smallest")
