"""Online bin packing (FunSearch): a priority function that decides which bin each arriving item goes into.

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator owns the packing loop: for each
item, in arrival order, it calls `priority(item, bins)` with the remaining capacities of the bins the item
fits into, and puts the item into the bin with the highest score (ties -> lowest index). Empty bins have
remaining capacity 150 and are always among the feasible ones.
"""

import numpy as np


# EVOLVE-BLOCK-START
def priority(item: float, bins: np.ndarray) -> np.ndarray:
    """Returns a priority score for each feasible bin; the item goes into the bin with the highest score.

    Args:
        item: size of the item to be packed (an integer, 20..100).
        bins: remaining capacities of the bins the item fits into (integer array, all >= item).

    Returns:
        float array of the same shape as `bins`, every value finite.
    """
    # Best fit: prefer the bin that is left with the least space after the item is added.
    return -(bins - item)
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    # A tiny local demo of the evaluator's loop (the evaluator has its own copy; this one is not used).
    capacity, items = 150, [42, 69, 67, 57, 93, 90, 38, 36, 45, 42]
    bins = np.full(len(items), capacity)
    for it in items:
        valid = np.nonzero(bins >= it)[0]
        bins[valid[np.argmax(priority(it, bins[valid]))]] -= it
    print(f"bins used: {int((bins != capacity).sum())}")
