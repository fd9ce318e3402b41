"""equation_oscillator: the acceleration of a damped oscillator as a function of position and velocity.

Only the EVOLVE-BLOCK evolves. `equation` is a skeleton: its constants are params[0] .. params[9],
fitted by the evaluator on training data; write the structure, not the numbers.
"""

import numpy as np  # noqa: F401 - for the skeletons the search writes (np.exp, np.abs, ...)


# EVOLVE-BLOCK-START
def equation(x, v, params):
    """Acceleration dv/dt for position x and velocity v (numpy arrays): a damped harmonic oscillator."""
    return params[0] * x + params[1] * v
# EVOLVE-BLOCK-END
