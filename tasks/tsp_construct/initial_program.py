"""Constructive TSP heuristic: choose the next city to visit while building a tour step by step.

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator owns the construction loop: the
tour starts at node 0; while cities remain it calls `select_next_node(current_node, destination_node,
unvisited_nodes, distance_matrix)` and appends the returned node; finally the tour returns to node 0.
"""

import numpy as np


# EVOLVE-BLOCK-START
def select_next_node(current_node: int, destination_node: int, unvisited_nodes: set,
                     distance_matrix: np.ndarray) -> int:
    """Select the next node to visit.

    Args:
        current_node: the node the partial tour ends at.
        destination_node: the node the tour must return to at the end (the start node, 0).
        unvisited_nodes: set of the nodes not yet visited (never empty when this is called).
        distance_matrix: (n, n) float array of pairwise distances.

    Returns:
        an int, one of `unvisited_nodes`.
    """
    # Nearest neighbour: go to the closest unvisited node.
    return min(unvisited_nodes, key=lambda node: distance_matrix[current_node][node])
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    # A tiny local demo of the evaluator's loop (the evaluator has its own copy; this one is not used).
    points = np.random.default_rng(0).random((20, 2))
    dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    tour, unvisited = [0], set(range(1, len(points)))
    while unvisited:
        nxt = select_next_node(tour[-1], 0, set(unvisited), dist)
        tour.append(nxt)
        unvisited.remove(nxt)
    print(f"tour length: {sum(dist[a, b] for a, b in zip(tour, tour[1:] + tour[:1])):.4f}")
