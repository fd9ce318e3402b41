"""fast_exp2: approximate 2**x for float32 x in [0, 1] with as few operations as possible.

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator does not run this file: it
reads `exp2_approx` from its text, checks that it is straight-line float32 arithmetic (+ - * /, names,
numbers, np.float32(constant); at most 12 operations) and evaluates it itself on 68 million inputs.
"""

import numpy as np


# EVOLVE-BLOCK-START
def exp2_approx(x):
    """2**x for float32 x in [0, 1]: the degree-5 Taylor polynomial of exp(x ln 2) in Horner form."""
    c1 = np.float32(0.6931471805599453)      # ln 2
    c2 = np.float32(0.2402265069591007)      # ln(2)**2 / 2
    c3 = np.float32(0.0555041086648216)      # ln(2)**3 / 6
    c4 = np.float32(0.0096181291076285)      # ln(2)**4 / 24
    c5 = np.float32(0.0013333558146428)      # ln(2)**5 / 120
    return 1.0 + x * (c1 + x * (c2 + x * (c3 + x * (c4 + x * c5))))
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    x = np.linspace(0, 1, 1_000_001, dtype=np.float32)
    err = np.abs(exp2_approx(x).astype(np.float64) - np.exp2(x.astype(np.float64))) / 2.0 ** -23
    print(f"max error on a grid: {err.max():.2f} ULP")
