"""The proxy problems of optimizer_update_rule: cheap, seeded numpy objectives with known minima.

Each `Problem` has a start point ``x0``, ``loss_grad(x) -> (loss, grad)`` (float64, full batch) and the
minimum value ``f_star`` (0 by construction, or computed here by Newton's method), so progress can be
measured as orders of magnitude of sub-optimality removed. Everything is trusted code: the candidate
only ever sees parameter and gradient vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Problem", "rosenbrock", "quadratic", "logistic", "mlp", "training_problems", "heldout_problems"]


@dataclass(frozen=True)
class Problem:
    name: str
    x0: np.ndarray
    loss_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]
    f_star: float


def rosenbrock(dim: int, start: tuple[float, float]) -> Problem:
    """Chained Rosenbrock sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2; minimum 0 at (1, ..., 1)."""
    def loss_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = x[:-1], x[1:]
        r = b - a * a
        grad = np.zeros_like(x)
        grad[:-1] += -400.0 * r * a - 2.0 * (1.0 - a)
        grad[1:] += 200.0 * r
        return float(np.sum(100.0 * r * r + (1.0 - a) ** 2)), grad
    x0 = np.resize(np.array(start, dtype=np.float64), dim)
    return Problem(f"rosenbrock{dim}", x0, loss_grad, 0.0)


def quadratic(dim: int, condition: float, seed: int) -> Problem:
    """0.5 (x - x*)^T A (x - x*) with eigenvalues log-spaced in [1, condition] and a random rotation."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    a = (q * np.logspace(0.0, np.log10(condition), dim)) @ q.T
    x_star = rng.standard_normal(dim)

    def loss_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x - x_star
        g = a @ d
        return float(0.5 * d @ g), g
    return Problem(f"quadratic{dim}_cond{condition:g}", np.zeros(dim), loss_grad, 0.0)


def logistic(samples: int, dim: int, seed: int, l2: float = 1e-2) -> Problem:
    """Mean logistic loss + (l2 / 2) |w|^2 on synthetic data with feature scales from 0.1 to 10."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((samples, dim)) * np.logspace(-1.0, 1.0, dim)
    teacher = rng.standard_normal(dim) / np.logspace(-1.0, 1.0, dim)
    labels = (features @ teacher + 0.5 * rng.standard_normal(samples) > 0).astype(np.float64)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = features @ w
        loss = np.mean(np.logaddexp(0.0, z) - labels * z) + 0.5 * l2 * w @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * z))                  # a sigmoid that never overflows
        return float(loss), features.T @ (p - labels) / samples + l2 * w

    w = np.zeros(dim)                                        # Newton's method: the exact minimum
    for _ in range(50):
        p = 0.5 * (1.0 + np.tanh(0.5 * (features @ w)))
        hessian = (features * (p * (1 - p))[:, None]).T @ features / samples + l2 * np.eye(dim)
        w = w - np.linalg.solve(hessian, loss_grad(w)[1])
    return Problem(f"logistic{samples}x{dim}", np.zeros(dim), loss_grad, loss_grad(w)[0])


def mlp(inputs: int, hidden: int, samples: int, seed: int) -> Problem:
    """Teacher-student regression with a tanh MLP of the same shape: the minimum 0 is attained."""
    rng = np.random.default_rng(seed)
    shapes = [(inputs, hidden), (hidden,), (hidden,), ()]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(theta: np.ndarray) -> list[np.ndarray]:
        parts, at = [], 0
        for shape, size in zip(shapes, sizes):
            parts.append(theta[at:at + size].reshape(shape))
            at += size
        return parts

    x = rng.standard_normal((samples, inputs))
    teacher = rng.standard_normal(sum(sizes))
    w1, b1, w2, b2 = unpack(teacher)
    targets = np.tanh(x @ w1 + b1) @ w2 + b2

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w1, b1, w2, b2 = unpack(theta)
        h = np.tanh(x @ w1 + b1)
        err = h @ w2 + b2 - targets
        dh = np.outer(err, w2) * (1.0 - h * h) / samples
        grad = np.concatenate([(x.T @ dh).ravel(), dh.sum(0), h.T @ err / samples, [err.mean()]])
        return float(0.5 * np.mean(err * err)), grad
    return Problem(f"mlp{inputs}-{hidden}-1", 0.5 * rng.standard_normal(sum(sizes)), loss_grad, 0.0)


def training_problems() -> list[Problem]:
    """The problems the score is computed on."""
    return [rosenbrock(6, (-1.2, 1.0)), quadratic(20, 1e3, seed=1), logistic(200, 10, seed=2),
            mlp(3, 8, 64, seed=3)]


def heldout_problems() -> list[Problem]:
    """Other sizes, seeds and starts of the same families: reported, never scored."""
    return [rosenbrock(10, (-1.5, 2.0)), quadratic(50, 1e4, seed=11), logistic(300, 20, seed=12),
            mlp(4, 16, 96, seed=13)]
