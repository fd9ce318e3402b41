"""equation_growth: discover the growth rate of a bacterial culture from biomass, substrate, temperature and pH.

The data come from a known law (`true_rate`, never shown to the candidate), a product of textbook factors:

    dB/dt = mu * B * S / (K + S)                              Monod (1949) substrate limitation
            * ((T - Tmin) * (1 - exp(c * (T - Tmax))))**2     Ratkowsky et al. (1983) temperature model
            * exp(-((pH - pH_opt) / w)**2)                     a bell-shaped pH optimum

with mu = 0.0015, K = 1.5, Tmin = 5, Tmax = 45, c = 0.25, pH_opt = 7, w = 1.3. Samples are drawn at
random states (seeded) and the target carries Gaussian noise of 1% of its training spread. Training and
the in-domain test cover 10-32 degC and pH 5.5-8; the out-of-domain test covers 34-43 degC, where the
rate collapses towards Tmax, and pH 4.5-5.5 and 8-9. Generated when this module loads; never in a file.

The candidate's ``equation(B, S, T, pH, params)`` is fitted with ``scipy.optimize.least_squares`` through
`evoforge.evaluators.harnesses.equations`, in a nested process that never sees a target.
score = -log10(NMSE on the out-of-domain test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import least_squares

from evoforge.evaluators.candidate import CandidateError
from evoforge.evaluators.harnesses.equations import Dataset, SkeletonRejected, fit_and_score, skeleton_result

SEED = 20250118
NOISE = 0.01


def true_rate(B: np.ndarray, S: np.ndarray, T: np.ndarray, pH: np.ndarray) -> np.ndarray:
    monod = 0.0015 * B * S / (1.5 + S)
    temperature = ((T - 5.0) * (1.0 - np.exp(0.25 * (T - 45.0)))) ** 2
    return monod * temperature * np.exp(-((pH - 7.0) / 1.3) ** 2)


def _states(rng: np.random.Generator, n: int, temperatures: tuple[float, float],
            ph_ranges: list[tuple[float, float]]) -> dict[str, np.ndarray]:
    which = rng.integers(0, len(ph_ranges), n)
    low = np.array([r[0] for r in ph_ranges])[which]
    high = np.array([r[1] for r in ph_ranges])[which]
    return {"B": rng.uniform(0.05, 2.0, n), "S": rng.uniform(0.1, 6.0, n),
            "T": rng.uniform(*temperatures, n), "pH": rng.uniform(low, high)}


def datasets() -> tuple[Dataset, dict[str, Dataset]]:
    rng = np.random.default_rng(SEED)
    parts = {"train": _states(rng, 600, (10.0, 37.0), [(5.5, 8.0)]),
             "id": _states(rng, 300, (10.0, 37.0), [(5.5, 8.0)]),
             "ood": _states(rng, 300, (38.0, 44.0), [(4.5, 5.5), (8.0, 9.0)])}
    spread = float(np.std(true_rate(**parts["train"])))
    data = {name: Dataset(inputs=s, target=true_rate(**s) + rng.normal(0.0, NOISE * spread, s["B"].size))
            for name, s in parts.items()}
    return data.pop("train"), data


TRAIN, TESTS = datasets()


def evaluate(program_path: str) -> dict[str, Any]:
    try:
        fit = fit_and_score(program_path, function="equation", train=TRAIN, tests=TESTS,
                            minimize=least_squares, restarts=3, seed=SEED, timeout_s=10.0,
                            minimize_kwargs={"x_scale": "jac"})
    except SkeletonRejected as exc:
        return {"status": "invalid", "error": str(exc)}
    except CandidateError as exc:
        return {"status": "invalid", "error": f"the equation failed: {str(exc)[-1500:]}"}
    return skeleton_result(fit, score_on="ood")
