"""speedup_kernel: make a 1-D full convolution fast on the CPU while keeping float64 accuracy.

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator calls `convolve(x, h)` in a
separate process on fresh random inputs, checks every result against its own reference and times the
calls; the score is the speed-up over the reference implementation (which is this starting program).
"""

import numpy as np


# EVOLVE-BLOCK-START
def convolve(x, h):
    """Full linear convolution: y[k] = sum_j x[j] * h[k - j], for k = 0 .. len(x) + len(h) - 2.

    Args:
        x: float64 array of shape (n,), n >= 1.
        h: float64 array of shape (m,), m >= 1.

    Returns:
        float64 array of shape (n + m - 1,), equal to np.convolve(x, h) up to rounding.
    """
    y = np.zeros(x.size + h.size - 1)
    for k in range(h.size):            # one shifted, scaled copy of x per filter tap
        y[k:k + x.size] += h[k] * x
    return y
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000), rng.standard_normal(50)
    print(f"max |convolve - np.convolve|: {np.abs(convolve(a, b) - np.convolve(a, b)).max():.2e}")
