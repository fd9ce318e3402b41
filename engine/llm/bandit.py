"""An adaptive choice of model: UCB1 over the models of an ensemble, rewarding improvements per dollar.

ShinkaEvolve (Lange, Imajuku & Cetin 2025, "ShinkaEvolve: Towards Open-Ended and Sample-Efficient
Program Evolution", ICLR 2026) picks the LLM of each proposal with a UCB1-style bandit (Auer,
Cesa-Bianchi & Fischer 2002) rewarded by the child's improvement over its parent, with an optional
cost-aware term (their ``AsymmetricUCB``, ``cost_aware_coef``). We keep the UCB1 structure and fold
the cost into the value itself — improvements *per dollar*:

* a pull is one proposal by a model; its reward is 1 when the child scores strictly better than its
  parent, else 0 (a failed call, an edit that does not apply, a broken child: 0). A binary reward
  is scale-free, so it means the same on every task;
* an arm's value is improvements per dollar, ``improvements / max(cost, pulls * cost_floor_usd)``,
  divided by the best arm's so values lie in [0, 1]. The floor keeps a free local model from
  being infinitely valuable on one lucky improvement — with only free models the value is the plain
  improvement rate;
* the index is ``value + exploration * sqrt(2 ln N / n)`` (UCB1); an arm never pulled goes first.

Deliberate simplification: proposals run concurrently, so several choices are made before their
outcomes are known. Choices in flight count as pulls with no reward yet ("pending"), which spreads a
batch over the arms instead of sending all of it to the current leader. With ``concurrency = 1``
there is nothing pending, and the choice sequence is a pure function of the stored outcomes and the
seed — which is what lets a resumed run replay the state from ``run.db`` and continue exactly.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["ModelBandit"]


class ModelBandit:
    """UCB1 over named arms. `choose` picks an arm index, `update` records an outcome."""

    def __init__(self, arms: Sequence[str], *, exploration: float = 1.0, cost_floor_usd: float = 1e-5) -> None:
        if not arms or len(set(arms)) != len(arms):
            raise ValueError(f"expected distinct arm names but got {list(arms)}")
        self.arms = list(arms)
        self.exploration = float(exploration)
        self.cost_floor_usd = float(cost_floor_usd)
        self.pulls = [0] * len(arms)
        self.improvements = [0] * len(arms)
        self.cost_usd = [0.0] * len(arms)
        self.pending = [0] * len(arms)

    # -- learning ------------------------------------------------------------------------------
    def update(self, arm: str, *, improved: bool, cost_usd: float, pending: bool = True) -> None:
        """Record a finished proposal by ``arm``; an unknown arm (a model no longer configured) is ignored."""
        if arm not in self.arms:
            return
        i = self.arms.index(arm)
        if pending and self.pending[i] > 0:
            self.pending[i] -= 1
        self.pulls[i] += 1
        self.improvements[i] += int(bool(improved))
        self.cost_usd[i] += max(float(cost_usd), 0.0)

    def values(self) -> list[float]:
        """Improvements per dollar of each arm, relative to the best arm (0 when nothing improved yet)."""
        rates = [imp / max(cost, n * self.cost_floor_usd) if n else 0.0
                 for imp, cost, n in zip(self.improvements, self.cost_usd, self.pulls)]
        best = max(rates)
        return [r / best if best > 0 else 0.0 for r in rates]

    def indices(self) -> list[float]:
        """UCB1 index of each arm (inf for an arm never pulled)."""
        counts = [n + p for n, p in zip(self.pulls, self.pending)]
        total = sum(counts)
        values = self.values()
        return [math.inf if n == 0 else v + self.exploration * math.sqrt(2.0 * math.log(max(total, 1)) / n)
                for v, n in zip(values, counts)]

    # -- choosing ------------------------------------------------------------------------------
    def choose(self, seed: int) -> int:
        """The arm with the highest index; ties broken by ``seed`` (reproducible). Marks it pending."""
        index = self.indices()
        top = max(index)
        tied = [i for i, v in enumerate(index) if v == top or (math.isfinite(top) and top - v < 1e-12)]
        rng = np.random.default_rng([seed & ((1 << 63) - 1), 0xBA4D17])
        arm = tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
        self.pending[arm] += 1
        return arm

    def state(self) -> dict[str, Any]:
        """Per-arm statistics, for run.db and `evoforge show`."""
        values = self.values()
        return {"policy": "ucb1", "exploration": self.exploration, "arms": [
            {"model": a, "pulls": n, "improvements": k, "cost_usd": c, "value": v}
            for a, n, k, c, v in zip(self.arms, self.pulls, self.improvements, self.cost_usd, values)]}
