"""equation_oscillator: discover the acceleration law of a damped nonlinear oscillator (LLM-SR style).

The data come from a known law (`true_acceleration`, never shown to the candidate):

    a = -0.8 x - 0.5 x**3 - 0.15 v - 0.25 v |v|

(a Duffing spring with linear and quadratic damping). `trajectories` integrates it with RK4 from seeded
initial conditions and samples states; the target is the law's acceleration plus Gaussian noise of 1% of
its training spread. Training and the in-domain test start at amplitudes up to 1; the out-of-domain
test starts at amplitudes near 2, where the cubic spring and the quadratic drag dominate, so a skeleton
that only fits the small-amplitude regime extrapolates badly. Everything is generated when this module
loads, seeded, so every candidate sees the same data and the data never sit in a file.

The candidate's ``equation(x, v, params)`` is fitted on the training data with
``scipy.optimize.least_squares`` (trust region, a few restarts) through the shared harness
`evoforge.evaluators.harnesses.equations`, in a nested process that never sees a target.
score = -log10(NMSE on the out-of-domain test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import least_squares

from evoforge.evaluators.candidate import CandidateError
from evoforge.evaluators.harnesses.equations import Dataset, SkeletonRejected, fit_and_score, skeleton_result

SEED = 20250117
NOISE = 0.01            # noise standard deviation, as a fraction of the training targets' spread


def true_acceleration(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return -0.8 * x - 0.5 * x**3 - 0.15 * v - 0.25 * v * np.abs(v)


def _rk4(x0: float, v0: float, t_end: float, dt: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    steps = int(round(t_end / dt))
    xs, vs = np.empty(steps + 1), np.empty(steps + 1)
    x, v = x0, v0
    for i in range(steps + 1):
        xs[i], vs[i] = x, v
        k1x, k1v = v, true_acceleration(x, v)
        k2x, k2v = v + 0.5 * dt * k1v, true_acceleration(x + 0.5 * dt * k1x, v + 0.5 * dt * k1v)
        k3x, k3v = v + 0.5 * dt * k2v, true_acceleration(x + 0.5 * dt * k2x, v + 0.5 * dt * k2v)
        k4x, k4v = v + dt * k3v, true_acceleration(x + dt * k3x, v + dt * k3v)
        x += dt / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
        v += dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
    return xs, vs


def trajectories(rng: np.random.Generator, amplitudes: tuple[float, float], n_runs: int,
                 n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """States sampled from ``n_runs`` trajectories of 15 time units starting at |x0| in ``amplitudes``."""
    xs, vs = [], []
    for _ in range(n_runs):
        x0 = rng.uniform(*amplitudes) * rng.choice([-1.0, 1.0])
        x, v = _rk4(x0, rng.uniform(-0.3, 0.3), 15.0)
        pick = rng.choice(x.size, n_points // n_runs, replace=False)
        xs.append(x[pick])
        vs.append(v[pick])
    return np.concatenate(xs), np.concatenate(vs)


def datasets() -> tuple[Dataset, dict[str, Dataset]]:
    rng = np.random.default_rng(SEED)
    parts = {"train": trajectories(rng, (0.3, 1.0), 6, 600), "id": trajectories(rng, (0.3, 1.0), 3, 300),
             "ood": trajectories(rng, (1.8, 2.2), 3, 300)}
    spread = float(np.std(true_acceleration(*parts["train"])))
    data = {}
    for name, (x, v) in parts.items():
        target = true_acceleration(x, v) + rng.normal(0.0, NOISE * spread, x.size)
        data[name] = Dataset(inputs={"x": x, "v": v}, target=target)
    return data.pop("train"), data


TRAIN, TESTS = datasets()


def evaluate(program_path: str) -> dict[str, Any]:
    try:
        fit = fit_and_score(program_path, function="equation", train=TRAIN, tests=TESTS,
                            minimize=least_squares, restarts=3, seed=SEED, timeout_s=10.0)
    except SkeletonRejected as exc:
        return {"status": "invalid", "error": str(exc)}
    except CandidateError as exc:
        return {"status": "invalid", "error": f"the equation failed: {str(exc)[-1500:]}"}
    return skeleton_result(fit, score_on="ood")
