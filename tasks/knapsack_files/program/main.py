"""knapsack_files: the frozen driver. It ranks the items with scoring.item_score, then lets
packing.pack choose which to take, in that order. This file has no EVOLVE-BLOCK: it never changes."""

from packing import pack
from scoring import item_score


def solve(values, weights, capacity):
    """Indices of the items to take: their weights must sum to at most ``capacity``."""
    scores = [item_score(v, w, capacity) for v, w in zip(values, weights)]
    order = sorted(range(len(values)), key=lambda i: (-scores[i], i))
    return sorted(pack(order, values, weights, capacity))
