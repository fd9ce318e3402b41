"""A solver for 1-D viscous Burgers u_t + (u^2 / 2)_x = nu * u_xx on the periodic domain (0, 1).

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator calls `solver(u0, t, params)`
in a separate process and compares the result with the exact (Cole-Hopf) solution.
"""

import numpy as np


# EVOLVE-BLOCK-START
def solver(u0, t, params):
    """Advance a batch of initial conditions and return the solution at the requested times.

    Args:
        u0: float array (batch, N), initial conditions on the cell-centred grid x_i = (i + 1/2) / N.
        t: float array (T + 1,), increasing output times with t[0] = 0.
        params: dict {"nu": float}, the viscosity.

    Returns:
        float array (batch, T + 1, N): the solution at every time in t (row 0 is u0).
    """
    # Finite volumes with the first-order Rusanov (local Lax-Friedrichs) flux, central second
    # differences for the viscous term, forward Euler. The time step obeys both explicit limits
    # (advective CFL and diffusive dx^2 / (2 nu)) with a 0.4 safety factor: stable, but the upwind
    # flux adds numerical viscosity of about |u| dx / 2 and the diffusive limit forces many steps.
    nu = float(params["nu"])
    u = np.array(u0, dtype=np.float64)
    n = u.shape[-1]
    dx = 1.0 / n

    out = np.empty((u.shape[0], len(t), n))
    out[:, 0] = u
    for j in range(1, len(t)):
        time_left = t[j] - t[j - 1]
        while time_left > 1e-14:
            speed = max(float(np.abs(u).max()), 1e-12)
            dt = min(0.4 * dx / speed, 0.4 * dx * dx / (2.0 * nu), time_left)
            right = np.roll(u, -1, axis=-1)
            wave = np.maximum(np.abs(u), np.abs(right))
            flux = 0.25 * (u * u + right * right) - 0.5 * wave * (right - u)   # at the face i + 1/2
            laplacian = right - 2.0 * u + np.roll(u, 1, axis=-1)
            u = u - dt / dx * (flux - np.roll(flux, 1, axis=-1)) + nu * dt / (dx * dx) * laplacian
            time_left -= dt
        out[:, j] = u
    return out
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    x = (np.arange(256) + 0.5) / 256
    u = solver(np.sin(2 * np.pi * x)[None], np.linspace(0.0, 2.0, 21), {"nu": 0.01})
    print(f"max |u| at t = 0, 1, 2: {np.abs(u[0, 0]).max():.4f}, {np.abs(u[0, 10]).max():.4f}, "
          f"{np.abs(u[0, -1]).max():.4f}")
