"""Low-rank decompositions of matrix-multiplication tensors (AlphaTensor / AlphaEvolve style).

Only the region between the EVOLVE-BLOCK markers evolves; `decompose(n, m, p)` below is the frozen entry
point the evaluator calls once per target shape (<2,2,2> and <3,3,3>).

A rank-R decomposition (U, V, W) of the <n,m,p> tensor is an algorithm for C = A @ B (A: n x m, B: m x p)
with R scalar multiplications, on row-major flattened matrices:

    M_r    = (sum_a U[a, r] * A.flat[a]) * (sum_b V[b, r] * B.flat[b])      for r = 0 .. R-1
    C.flat = W @ M                         (C.flat[i*p + k] = sum_r W[i*p + k, r] * M_r)
"""

import numpy as np


# EVOLVE-BLOCK-START
TARGET_RANK = {(2, 2, 2): 7, (3, 3, 3): 23}     # ranks to search for (naive: 8 and 27)


def matmul_tensor(n, m, p):
    """T[a, b, c] = 1 when A.flat[a] * B.flat[b] contributes to C.flat[c]."""
    t = np.zeros((n * m, m * p, n * p))
    for i in range(n):
        for j in range(m):
            for k in range(p):
                t[i * m + j, j * p + k, i * p + k] = 1.0
    return t


def als(t, rank, rng, iterations=300, ridge=1e-3):
    """Alternating least squares: fit T ~ sum_r U[:, r] x V[:, r] x W[:, r] one factor at a time."""
    a, b, c = t.shape
    u, v, w = (rng.standard_normal((d, rank)) for d in (a, b, c))
    t1 = t.reshape(a, b * c)                       # mode-1 unfolding
    t2 = t.transpose(1, 0, 2).reshape(b, a * c)    # mode-2
    t3 = t.transpose(2, 0, 1).reshape(c, a * b)    # mode-3
    eye = ridge * np.eye(rank)

    def khatri_rao(x, y):
        return (x[:, None, :] * y[None, :, :]).reshape(-1, rank)

    for _ in range(iterations):
        u = t1 @ khatri_rao(v, w) @ np.linalg.inv((v.T @ v) * (w.T @ w) + eye)
        v = t2 @ khatri_rao(u, w) @ np.linalg.inv((u.T @ u) * (w.T @ w) + eye)
        w = t3 @ khatri_rao(u, v) @ np.linalg.inv((u.T @ u) * (v.T @ v) + eye)
    return u, v, w


def search(n, m, p):
    """A few seeded ALS restarts at the target rank; keep the best fit, then round to halves."""
    t = matmul_tensor(n, m, p)
    rank = TARGET_RANK.get((n, m, p), n * m * p)
    rng = np.random.default_rng(0)
    best, best_err = None, np.inf
    for _ in range(4):
        u, v, w = als(t, rank, rng)
        err = np.linalg.norm(np.einsum("ar,br,cr->abc", u, v, w) - t)
        if err < best_err:
            best, best_err = (u, v, w), err
    u, v, w = best
    rounded = tuple(np.round(f * 2) / 2 for f in (u, v, w))
    if np.array_equal(np.einsum("ar,br,cr->abc", *rounded), t):
        return rounded                              # an exact decomposition: the evaluator verifies it
    return u, v, w                                  # otherwise the float fit, scored by its error
# EVOLVE-BLOCK-END


def decompose(n, m, p):
    """Entry point called by the evaluator: (U (n*m, R), V (m*p, R), W (n*p, R)) for the <n,m,p> tensor."""
    u, v, w = search(n, m, p)
    return np.asarray(u, dtype=float), np.asarray(v, dtype=float), np.asarray(w, dtype=float)


if __name__ == "__main__":
    for shape in ((2, 2, 2), (3, 3, 3)):
        u, v, w = decompose(*shape)
        err = np.linalg.norm(np.einsum("ar,br,cr->abc", u, v, w) - matmul_tensor(*shape))
        print(f"<{shape[0]},{shape[1]},{shape[2]}>: rank {u.shape[1]}, reconstruction error {err:.3e}")
