"""Greedy 0/1 knapsack: the frozen `solve` packs items in the order `priority` gives them.

Only the EVOLVE-BLOCK evolves: a better priority rule gives fuller, more valuable knapsacks.
"""

# EVOLVE-BLOCK-START
def priority(value: float, weight: float, capacity: float) -> float:
    """Higher first. The classic rule: value per unit of weight."""
    return value / weight
# EVOLVE-BLOCK-END


def solve(values, weights, capacity):
    """Indices of the items packed: by decreasing priority, each one that still fits."""
    order = sorted(range(len(values)), key=lambda i: -priority(values[i], weights[i], capacity))
    chosen, room = [], capacity
    for i in order:
        if weights[i] <= room:
            chosen.append(i)
            room -= weights[i]
    return chosen
