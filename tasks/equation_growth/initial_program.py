"""equation_growth: the growth rate of a bacterial culture from biomass, substrate, temperature and pH.

Only the EVOLVE-BLOCK evolves. `equation` is a skeleton: its constants are params[0] .. params[9],
fitted by the evaluator on training data; write the structure, not the numbers.
"""

import numpy as np  # noqa: F401 - for the skeletons the search writes (np.exp, np.abs, ...)


# EVOLVE-BLOCK-START
def equation(B, S, T, pH, params):
    """Growth rate dB/dt for biomass B, substrate S, temperature T (degC) and pH (numpy arrays): linear."""
    return params[0] * B + params[1] * S + params[2] * T + params[3] * pH + params[4]
# EVOLVE-BLOCK-END
