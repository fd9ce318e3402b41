"""Circle packing in the unit square (n = 32): place 32 disjoint discs, maximise the sum of radii.

Only the region between the EVOLVE-BLOCK markers evolves; `run_packing()` below is the frozen
entry point the evaluator calls.
"""

import numpy as np

N_CIRCLES = 32


# EVOLVE-BLOCK-START
def construct_packing():
    """Place 32 circles by a parametrised pattern: a centre circle, an inner ring and an outer
    ring that is bent towards the square's border.

    Returns:
        centers: array of shape (32, 2), the (x, y) centres in [0, 1]^2
        radii: array of shape (32,), radii that make the discs disjoint and inside the square
    """
    n = N_CIRCLES
    centers = np.zeros((n, 2))

    cx, cy = 0.5, 0.5       # centre of the pattern
    inner_count = 8         # circles on the inner ring (the outer ring gets the rest)
    inner_radius = 0.22     # distance of the inner ring from the centre
    outer_radius = 0.45     # distance of the outer ring from the centre
    inner_phase = 0.0       # rotation of the inner ring (radians)
    outer_phase = 0.1       # rotation of the outer ring (radians)
    squareness = 0.25       # 0: outer ring is a circle, 1: it follows the square's border

    centers[0] = [cx, cy]
    for i in range(inner_count):
        angle = 2 * np.pi * i / inner_count + inner_phase
        centers[1 + i] = [cx + inner_radius * np.cos(angle), cy + inner_radius * np.sin(angle)]

    outer_count = n - 1 - inner_count
    for i in range(outer_count):
        angle = 2 * np.pi * i / outer_count + outer_phase
        u, v = np.cos(angle), np.sin(angle)
        stretch = (1 - squareness) + squareness / max(abs(u), abs(v))
        centers[1 + inner_count + i] = [cx + outer_radius * stretch * u,
                                        cy + outer_radius * stretch * v]

    centers = np.clip(centers, 0.0, 1.0)
    radii = compute_max_radii(centers)
    return centers, radii


def compute_max_radii(centers):
    """Feasible radii for fixed centres: start from the distance to the nearest side of the square,
    then shrink every overlapping pair proportionally until the two discs just touch."""
    n = centers.shape[0]
    radii = np.minimum.reduce([centers[:, 0], centers[:, 1], 1 - centers[:, 0], 1 - centers[:, 1]])

    for i in range(n):
        for j in range(i + 1, n):
            dist = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > dist:
                scale = dist / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale

    # Radii only ever shrink above, so every pair and side constraint holds; the safety factor
    # absorbs floating-point rounding (the evaluator checks with zero tolerance).
    return radii * (1 - 1e-9)
# EVOLVE-BLOCK-END


def run_packing():
    """Entry point called by the evaluator: returns (centers (32, 2), radii (32,))."""
    centers, radii = construct_packing()
    return centers, radii


if __name__ == "__main__":
    c, r = run_packing()
    print(f"sum of radii: {float(np.sum(r)):.6f}")
