"""A solver for 1-D linear advection u_t + beta * u_x = 0 on the periodic domain (0, 1).

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator calls `solver(u0, t, params)`
in a separate process and compares the result with the exact solution.
"""

import numpy as np


# EVOLVE-BLOCK-START
def solver(u0, t, params):
    """Advance a batch of initial conditions and return the solution at the requested times.

    Args:
        u0: float array (batch, N), initial conditions on the cell-centred grid x_i = (i + 1/2) / N.
        t: float array (T + 1,), increasing output times with t[0] = 0.
        params: dict {"beta": float}, the advection velocity (may be negative).

    Returns:
        float array (batch, T + 1, N): the solution at every time in t (row 0 is u0).
    """
    # First-order upwind in space, forward Euler in time, Courant number 0.5: stable but diffusive,
    # so high wavenumbers are damped more the further the profile travels.
    beta = float(params["beta"])
    u = np.array(u0, dtype=np.float64)
    n = u.shape[-1]
    dx = 1.0 / n
    courant = 0.5
    dt_max = courant * dx / max(abs(beta), 1e-12)

    out = np.empty((u.shape[0], len(t), n))
    out[:, 0] = u
    for j in range(1, len(t)):
        span = t[j] - t[j - 1]
        steps = max(1, int(np.ceil(span / dt_max)))
        dt = span / steps
        for _ in range(steps):
            if beta >= 0:
                u = u - beta * dt / dx * (u - np.roll(u, 1, axis=-1))
            else:
                u = u - beta * dt / dx * (np.roll(u, -1, axis=-1) - u)
        out[:, j] = u
    return out
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    x = (np.arange(256) + 0.5) / 256
    times = np.linspace(0.0, 2.0, 21)
    u = solver(np.sin(2 * np.pi * x)[None], times, {"beta": 0.1})
    exact = np.sin(2 * np.pi * (x - 0.1 * times[-1]))
    print(f"max error at t = {times[-1]}: {np.abs(u[0, -1] - exact).max():.3e}")
