"""Evaluator for the greedy knapsack example: a cascade, descriptors and artifacts.

* ``evaluate_stage1`` -- the cheap check: three tiny instances. A candidate that crashes, returns
  something that is not a list of item indices, or overfills a knapsack stops here (stage 1) and
  never costs the full evaluation. Gated by ``[cascade] thresholds = [1.0]`` in task.toml: the
  stage-1 score is the fraction of tiny instances solved feasibly, so only a fully valid candidate
  goes on.
* ``evaluate`` -- the full evaluation: 40 seeded instances, each scored against its exact optimum
  (dynamic programming on integer weights). Score = mean value / optimum, in [0, 1].

The candidate never runs in this interpreter: ``CandidateSession`` imports it in a nested process
and only plain data (here a list of ints) comes back, so a candidate cannot patch this evaluator or
return an object that lies about its contents. Everything is re-checked on this side.
"""

from __future__ import annotations

import random

from evoforge.evaluators.candidate import CandidateError, CandidateSession

CALL_TIMEOUT_S = 5.0


def _instances(seed: int, count: int, n_items: int) -> list[tuple[list[int], list[int], int]]:
    rng = random.Random(seed)  # seeded: every candidate sees the same instances
    out = []
    for _ in range(count):
        weights = [rng.randint(1, 30) for _ in range(n_items)]
        values = [max(1, w + rng.randint(-10, 25)) for w in weights]   # correlated: greedy is not optimal
        out.append((values, weights, sum(weights) // 3))
    return out


def _optimum(values: list[int], weights: list[int], capacity: int) -> int:
    best = [0] * (capacity + 1)
    for v, w in zip(values, weights):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]


def _check(chosen, values, weights, capacity) -> str | None:
    """Why a selection is infeasible, or None."""
    if not isinstance(chosen, list) or not all(type(i) is int for i in chosen):
        return f"solve() must return a list of ints, got {type(chosen).__name__}"
    if len(set(chosen)) != len(chosen) or not all(0 <= i < len(values) for i in chosen):
        return "solve() returned repeated or out-of-range item indices"
    load = sum(weights[i] for i in chosen)
    if load > capacity:
        return f"overfilled: weight {load} > capacity {capacity}"
    return None


def _run(program_path: str, instances) -> tuple[list, str | None]:
    """The candidate's selections, or the first reason one is infeasible."""
    selections = []
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate:
        for values, weights, capacity in instances:
            chosen = candidate.call("solve", values, weights, capacity)
            problem = _check(chosen, values, weights, capacity)
            if problem:
                return selections, problem
            selections.append(chosen)
    return selections, None


def evaluate_stage1(program_path: str) -> dict:
    tiny = _instances(seed=1, count=3, n_items=6)
    try:
        selections, problem = _run(program_path, tiny)
    except CandidateError as exc:
        return {"status": "invalid", "error": f"stage 1: {type(exc).__name__}: {exc}"}
    return {"score": len(selections) / len(tiny),
            "artifacts": {"stage1": problem or "all 3 tiny instances packed feasibly"}}


def evaluate(program_path: str) -> dict:
    instances = _instances(seed=2024, count=40, n_items=30)
    selections, problem = _run(program_path, instances)   # a CandidateError here is recorded by the engine
    if problem:
        return {"status": "invalid", "error": problem}
    ratios, fills = [], []
    for (values, weights, capacity), chosen in zip(instances, selections):
        ratios.append(sum(values[i] for i in chosen) / _optimum(values, weights, capacity))
        fills.append(sum(weights[i] for i in chosen) / capacity)
    worst = min(range(len(ratios)), key=ratios.__getitem__)
    return {
        "score": sum(ratios) / len(ratios),
        "features": {"mean_fill": sum(fills) / len(fills),          # how full the knapsacks end up
                     "items_per_pack": sum(map(len, selections)) / len(selections)},
        "metrics": {"worst_ratio": ratios[worst], "optimal_instances": float(sum(r == 1.0 for r in ratios))},
        "artifacts": {"worst_instance": f"instance {worst}: {ratios[worst]:.3f} of the optimum, "
                                        f"{fills[worst]:.0%} of the capacity used"},
    }
