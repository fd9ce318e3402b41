"""Several objectives: a Pareto front per island, kept beside the scalar MAP-Elites cells.

A task declares named objectives with directions (``[[objectives]]`` in ``task.toml``: ``name``,
``direction = "min" | "max"``); the evaluator reports their values as metrics (or features, or an
``objectives`` table). Each island then keeps, next to its MAP-Elites grid, the set of its programs no
other program of the island dominates (Deb et al. 2002's first front; no crowding or ranks beyond the
first: the grid already keeps diversity). A share of an island's parents is drawn from its front
(``[pareto] parent_share``), so a program that trades one objective for another can be chosen even when
the scalar score would never pick it. The front is rebuilt exactly from the stored rows on resume: the
set of non-dominated points does not depend on the order they arrived in, and among equal vectors the
earliest program stays (ids grow with time).

Pure and synchronous, like `evoforge.archive.islands`: vectors in, statuses out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Objective", "ParetoFronts", "dominates", "non_dominated", "objective_values"]


@dataclass(frozen=True)
class Objective:
    """One objective: its name (a metric or feature of the evaluator's result) and whether less is better."""

    name: str
    direction: str = "min"          # "min" | "max"

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ValueError(f"objective {self.name!r}: expected direction 'min' or 'max' but got {self.direction!r}")

    @property
    def sign(self) -> float:
        """Multiplier that turns the value into something to maximise."""
        return 1.0 if self.direction == "max" else -1.0


def objective_values(objectives: Sequence[Objective], metrics: Mapping[str, float],
                     features: Mapping[str, float]) -> dict[str, float] | None:
    """The objectives' values from a result's metrics (then features); None if one is missing."""
    out = {}
    for objective in objectives:
        if objective.name in metrics:
            out[objective.name] = float(metrics[objective.name])
        elif objective.name in features:
            out[objective.name] = float(features[objective.name])
        else:
            return None
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b``: at least as good everywhere and better somewhere (both oriented to maximise)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated(points: Iterable[tuple[int, Sequence[float]]]) -> list[int]:
    """Ids of the points no other point dominates, in the order given; of equal vectors only the first."""
    kept: list[tuple[int, tuple[float, ...]]] = []
    for pid, vector in points:
        v = tuple(float(x) for x in vector)
        if any(dominates(k, v) or k == v for _, k in kept):
            continue
        kept = [(i, k) for i, k in kept if not dominates(v, k)]
        kept.append((pid, v))
    return [i for i, _ in kept]


class ParetoFronts:
    """The first Pareto front of each island's programs.

    Args:
        objectives: What to trade off, in order.
        islands: How many islands.
    """

    def __init__(self, *, objectives: Sequence[Objective], islands: int) -> None:
        if not objectives:
            raise ValueError("expected at least one objective")
        self.objectives = tuple(objectives)
        self._fronts: list[dict[int, tuple[float, ...]]] = [{} for _ in range(int(islands))]

    def _vector(self, values: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(o.sign * float(values[o.name]) for o in self.objectives)

    def add(self, island: int, program_id: int, values: Mapping[str, float]) -> str:
        """Offer a program: ``"new"`` (joined the front, maybe removing programs it dominates),
        ``"dominated"`` or ``"duplicate"`` (an equal vector is already there)."""
        vector = self._vector(values)
        if not all(np.isfinite(vector)):
            return "dominated"
        front = self._fronts[island]
        for other in front.values():
            if other == vector:
                return "duplicate"
            if dominates(other, vector):
                return "dominated"
        for pid in [pid for pid, other in front.items() if dominates(vector, other)]:
            del front[pid]
        front[program_id] = vector
        return "new"

    def front(self, island: int) -> list[int]:
        """Program ids on the island's front, oldest first."""
        return sorted(self._fronts[island])

    def values(self, island: int) -> dict[int, dict[str, float]]:
        """``{program id: {objective: value}}`` of the island's front (values as reported, not oriented)."""
        return {pid: {o.name: o.sign * v for o, v in zip(self.objectives, vec)}
                for pid, vec in sorted(self._fronts[island].items())}

    def sample(self, island: int, rng: np.random.Generator) -> int | None:
        """A uniformly drawn member of the island's front, or None when it is empty."""
        ids = self.front(island)
        return ids[int(rng.integers(len(ids)))] if ids else None
