# A small version of OpenEvolve's function_minimization example, in OpenEvolve's folder format:
# find the global minimum of a multi-modal 2-D function by a search that evolves.
import numpy as np


# EVOLVE-BLOCK-START
def search_algorithm(iterations=300, bounds=(-5, 5), seed=0):
    """Random search: sample points, keep the best."""
    rng = np.random.default_rng(seed)
    best_x, best_y = rng.uniform(bounds[0], bounds[1], size=2)
    best_value = evaluate_function(best_x, best_y)
    for _ in range(iterations):
        x, y = rng.uniform(bounds[0], bounds[1], size=2)
        value = evaluate_function(x, y)
        if value < best_value:
            best_x, best_y, best_value = x, y, value
    return best_x, best_y, best_value
# EVOLVE-BLOCK-END


def evaluate_function(x, y):
    """The function to minimise; global minimum about -1.704 at (-1.704, 0.678)."""
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x ** 2 + y ** 2) / 20


def run_search(seed=0):
    x, y, value = search_algorithm(seed=seed)
    return float(x), float(y), float(value)
