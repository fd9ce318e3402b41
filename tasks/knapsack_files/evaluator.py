"""knapsack_files: score a two-file knapsack heuristic (scoring.py ranks items, packing.py picks them).

The program is a folder (a task whose ``initial_program`` is a folder: every file is sent, stored and
materialised together; files without an EVOLVE-BLOCK are frozen). ``evaluate`` gets the folder's path and
calls ``main.solve(values, weights, capacity)`` through `CandidateSession(..., siblings=True)` (a nested
process that gets the folder's other files too, so ``main.py`` imports them as usual) on 40 seeded 0/1
knapsack instances of 50 items, weakly and strongly correlated (Pisinger 2005's classes; the hard ones
for greedy rules). Each answer must be a list of distinct item indices within the capacity.
score = mean of value / optimum, the optimum from an exact dynamic programme computed here (never sent
to the candidate).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from evoforge.evaluators.candidate import CandidateError, CandidateSession

SEED = 7
N_INSTANCES = 40
N_ITEMS = 50


def instances() -> list[tuple[list[int], list[int], int]]:
    rng = np.random.default_rng(SEED)
    out = []
    for k in range(N_INSTANCES):
        weights = rng.integers(1, 101, N_ITEMS)
        if k % 2 == 0:      # weakly correlated: value = weight +- 10
            values = np.maximum(1, weights + rng.integers(-10, 11, N_ITEMS))
        else:               # strongly correlated: value = weight + 10
            values = weights + 10
        capacity = int(weights.sum() * rng.uniform(0.2, 0.5))
        out.append(([int(v) for v in values], [int(w) for w in weights], capacity))
    return out


def optimum(values: list[int], weights: list[int], capacity: int) -> int:
    """Exact 0/1 knapsack by dynamic programming over capacities."""
    best = np.zeros(capacity + 1, dtype=np.int64)
    for v, w in zip(values, weights):
        if w <= capacity:
            best[w:] = np.maximum(best[w:], best[:capacity + 1 - w] + v)
    return int(best[capacity])


INSTANCES = instances()
OPTIMA = [optimum(*inst) for inst in INSTANCES]


def _check(chosen: Any, values: list[int], weights: list[int], capacity: int) -> tuple[int, int]:
    if not isinstance(chosen, (list, tuple)) or not all(type(i) is int for i in chosen):
        raise ValueError(f"solve must return a list of item indices, got {type(chosen).__name__}")
    if len(set(chosen)) != len(chosen) or any(not 0 <= i < len(values) for i in chosen):
        raise ValueError("solve returned a repeated or out-of-range item index")
    weight = sum(weights[i] for i in chosen)
    if weight > capacity:
        raise ValueError(f"the chosen items weigh {weight}, over the capacity {capacity}")
    return sum(values[i] for i in chosen), weight


def evaluate(program_path: str) -> dict[str, Any]:
    main = os.path.join(program_path, "main.py")
    ratios, fills = [], []
    try:
        with CandidateSession(main, timeout_s=20.0, siblings=True) as candidate:   # main.py imports the others
            for (values, weights, capacity), best in zip(INSTANCES, OPTIMA):
                value, weight = _check(candidate.call("solve", values, weights, capacity), values, weights, capacity)
                ratios.append(value / best)
                fills.append(weight / capacity)
    except ValueError as exc:
        return {"status": "invalid", "error": str(exc)}
    except CandidateError as exc:
        return {"status": "invalid", "error": f"solve failed: {str(exc)[-1500:]}"}
    worst = int(np.argmin(ratios))
    return {"score": float(np.mean(ratios)),
            "features": {"fill": float(np.mean(fills))},
            "metrics": {"mean_ratio": float(np.mean(ratios)), "worst_ratio": float(ratios[worst]),
                        "optimal_instances": float(sum(r >= 1.0 for r in ratios))},
            "artifacts": {"summary": f"mean value/optimum {np.mean(ratios):.4f}; worst {ratios[worst]:.4f} on "
                                     f"instance {worst}; capacity used {np.mean(fills):.1%} on average"}}
