"""AEL's constructive TSP rule (Liu et al. 2023, "Algorithm Evolution Using Large Language Model"; the seed
heuristic ReEvo starts its ``tsp_constructive`` runs from), written here from its published formula.

Every unvisited node is scored by a weighted sum of four distances and the lowest score wins:

    0.4 * d(current, node) - 0.3 * mean(d(node, u)) + 0.2 * std(d(node, u)) - 0.1 * d(destination, node)

where u runs over the *other* unvisited nodes (numpy's population ``std``). Nodes are visited in the set's
own iteration order and the first lowest score wins, as in the published rule, so ties break the same way.
Each step costs O(k^2) Python operations for k unvisited nodes, O(n^3) per tour: about 0.3 s per
50-node training instance, but minutes for the 64 x 200-node held-out set (tasks/tsp_construct/README.md).

    evoforge eval tsp_construct --program tasks/tsp_construct/examples/ael.py --heldout
"""

import numpy as np


# EVOLVE-BLOCK-START
def select_next_node(current_node: int, destination_node: int, unvisited_nodes: set,
                     distance_matrix: np.ndarray) -> int:
    """Pick the unvisited node with the lowest AEL score (see the module docstring)."""
    w_current, w_mean, w_std, w_destination = 0.4, 0.3, 0.2, 0.1
    if len(unvisited_nodes) == 1:
        return next(iter(unvisited_nodes))      # no other unvisited node to average over
    best_node, best_score = None, None
    for node in unvisited_nodes:
        row = distance_matrix[node]
        others = [row[other] for other in unvisited_nodes if other != node]
        score = (w_current * distance_matrix[current_node][node] - w_mean * np.mean(others)
                 + w_std * np.std(others) - w_destination * distance_matrix[destination_node][node])
        if best_score is None or score < best_score:
            best_node, best_score = node, score
    return best_node
# EVOLVE-BLOCK-END
