"""What a Ray cluster can hold, read from Ray's own node table: the live nodes, how many evaluations
of one resource request fit on each at once (the *slots*), and a one-line description for errors.

`RayExecutor` asks this on every evaluation it submits (cached for ``ttl_s``), so its slots — and the
engine's bound on candidates in flight — follow the cluster as nodes join or leave, without a restart.
Imports Ray lazily, like the executor; every call is a read of the GCS's node table.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

__all__ = ["ClusterView", "node_slots", "describe_nodes", "wanted"]

# Resource names Ray adds to every node that say nothing about what an evaluation may ask for.
_BOOKKEEPING = ("node:", "memory", "object_store_memory", "accelerator_type:")


def wanted(request: Mapping[str, Any]) -> dict[str, float]:
    """A request from `resource_request` as Ray resource names: ``{"CPU": 1, "GPU": 1, "accel": 1}``."""
    needs = {"CPU": float(request["num_cpus"]), "GPU": float(request["num_gpus"]),
             **{str(k): float(v) for k, v in dict(request.get("resources") or {}).items()}}
    return {name: amount for name, amount in needs.items() if amount > 0}


def node_slots(request: Mapping[str, Any], resources: Mapping[str, float]) -> int:
    """How many evaluations with ``request`` one node with ``resources`` (its totals) runs at once."""
    needs = wanted(request)
    if not needs:  # a request of nothing: Ray would pack them without bound; count one per CPU
        return int(resources.get("CPU", 0.0))
    # Ray's scheduler accounts fractional resources in 1/10000 units; round like it does.
    return min(math.floor(round(resources.get(name, 0.0) / amount, 4)) for name, amount in needs.items())


def describe_nodes(nodes: list[Mapping[str, Any]]) -> str:
    """``node 1f2e3d4c (127.0.0.1): CPU=1, GPU=1, accel=1; node ...`` — one line, for errors."""
    parts = []
    for node in nodes:
        have = ", ".join(f"{k}={v:g}" for k, v in sorted(dict(node.get("Resources") or {}).items())
                         if not k.startswith(_BOOKKEEPING))
        parts.append(f"node {str(node.get('NodeID', '?'))[:8]} ({node.get('NodeManagerAddress', '?')}): "
                     f"{have or 'no resources'}")
    return "; ".join(parts) or "no live nodes"


class ClusterView:
    """The live nodes of the cluster ``ray`` is connected to, re-read at most every ``ttl_s``."""

    def __init__(self, ray: Any, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ray = ray
        self._ttl_s = ttl_s
        self._clock = clock
        self._read_at = -math.inf
        self._nodes: list[dict[str, Any]] = []

    def nodes(self) -> list[dict[str, Any]]:
        if self._clock() - self._read_at >= self._ttl_s:
            self._nodes = [dict(n) for n in self._ray.nodes() if n.get("Alive")]
            self._read_at = self._clock()
        return self._nodes

    def refresh(self) -> list[dict[str, Any]]:
        self._read_at = -math.inf
        return self.nodes()

    def slots(self, request: Mapping[str, Any]) -> int:
        """Evaluations with ``request`` the live nodes hold at once (0: none fits anywhere)."""
        return sum(node_slots(request, n.get("Resources") or {}) for n in self.nodes())

    def placement_of(self, node_id: str) -> str:
        """``1f2e3d4c (127.0.0.1)`` for a node id, for messages; the id alone once the node is gone."""
        for node in self.nodes():
            if node.get("NodeID") == node_id:
                return f"{node_id[:8]} ({node.get('NodeManagerAddress', '?')})"
        return node_id[:8]

    def describe(self) -> str:
        return describe_nodes(self.nodes())
