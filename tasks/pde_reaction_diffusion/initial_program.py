"""A solver for 1-D reaction-diffusion (Fisher-KPP) u_t = nu * u_xx + rho * u * (1 - u), periodic on (0, 1).

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator calls `solver(u0, t, params)`
in a separate process and compares the result with a reference solution.
"""

import numpy as np


# EVOLVE-BLOCK-START
def solver(u0, t, params):
    """Advance a batch of initial conditions and return the solution at the requested times.

    Args:
        u0: float array (batch, N), initial conditions (values in [0, 1]) on the cell-centred grid
            x_i = (i + 1/2) / N.
        t: float array (T + 1,), increasing output times with t[0] = 0.
        params: dict {"nu": float, "rho": float}: diffusion coefficient and reaction rate.

    Returns:
        float array (batch, T + 1, N): the solution at every time in t (row 0 is u0).
    """
    # Forward Euler with the three-point Laplacian (FTCS). Explicit diffusion is stable only for
    # dt <= dx^2 / (2 nu): accurate, but with nu = 0.5 on 128 cells that is ~16,000 steps per unit time.
    nu, rho = float(params["nu"]), float(params["rho"])
    u = np.array(u0, dtype=np.float64)
    n = u.shape[-1]
    dx = 1.0 / n
    dt_max = min(0.4 * dx * dx / max(nu, 1e-12), 0.1 / max(rho, 1e-12))

    out = np.empty((u.shape[0], len(t), n))
    out[:, 0] = u
    for j in range(1, len(t)):
        span = t[j] - t[j - 1]
        steps = max(1, int(np.ceil(span / dt_max)))
        dt = span / steps
        for _ in range(steps):
            laplacian = np.roll(u, -1, axis=-1) - 2.0 * u + np.roll(u, 1, axis=-1)
            u = u + dt * (nu * laplacian / (dx * dx) + rho * u * (1.0 - u))
        out[:, j] = u
    return out
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    times = np.linspace(0.0, 1.0, 11)
    u = solver(np.full((1, 128), 0.2), times, {"nu": 0.5, "rho": 1.0})
    exact = 1.0 / (1.0 + (1.0 / 0.2 - 1.0) * np.exp(-times))
    print(f"uniform start, max error: {np.abs(u[0, :, 0] - exact).max():.3e}")
