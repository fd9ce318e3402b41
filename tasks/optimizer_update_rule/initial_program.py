"""optimizer_update_rule: a gradient-based update rule, scored on cheap numpy training problems.

Only the region between the EVOLVE-BLOCK markers evolves. The evaluator owns the objectives and the
loop; it calls `step` once per iteration (200 iterations per problem) with the current parameters,
the full-batch gradient, the state the previous call returned ({} at t = 1) and the step count t.
"""

import numpy as np


# EVOLVE-BLOCK-START
def step(params, grads, state, t):
    """One update: SGD with heavy-ball momentum (Polyak 1964).

    Args:
        params: float64 array of shape (n,), the current parameters.
        grads: float64 array of shape (n,), the gradient of the loss at params.
        state: dict returned by the previous call ({} at t = 1); values are numbers or float
            arrays of shape (n,).
        t: the step number, 1, 2, ...

    Returns:
        (new_params, new_state): new_params a float array of shape (n,).
    """
    lr = 1e-3
    momentum = 0.9
    velocity = state.get("velocity", np.zeros_like(params))
    velocity = momentum * velocity + grads
    return params - lr * velocity, {"velocity": velocity}
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    # A tiny local demo on the 2-D Rosenbrock function (the evaluator has its own problems).
    x, state = np.array([-1.2, 1.0]), {}
    for t in range(1, 201):
        a, b = x
        g = np.array([-400 * a * (b - a * a) - 2 * (1 - a), 200 * (b - a * a)])
        x, state = step(x, g, state, t)
    print(f"after 200 steps: x = {x}, loss = {100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2:.3e}")
