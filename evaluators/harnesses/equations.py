"""The harness of the equation-discovery tasks (LLM-SR, Shojaee et al. 2025): fit a skeleton, score it held out.

A candidate is an equation *skeleton*: ``def equation(x, v, params): return params[0] * x + ...`` whose
free constants are ``params[0..MAX_PARAMS-1]``. The evaluator fits them on training data and scores the
fitted equation on data the fit never saw (in-domain and out-of-domain), as LLM-SR does: the LLM proposes
structure, an optimiser finds constants.

Shared by ``tasks/equation_oscillator`` and ``tasks/equation_growth``, whose evaluators supply their data
(generated from a known law with noise, seeded) and the optimiser. The optimiser is injected
(``minimize``, e.g. ``scipy.optimize.least_squares``) because this package stays standard library + numpy
(docs/architecture.md, "Folders and what each owns"), while a task's evaluator may import scipy.

Isolation: the candidate runs in a nested process (`evoforge.evaluators.candidate.CandidateSession`).
Only the *inputs* of each data set cross to it, once (``put``); the targets never do, and each optimiser
step sends a parameter vector and gets back a numeric array. So a skeleton cannot read the answers,
change the fitter, or return something other than numbers. Its structure (how many distinct
``params[i]`` it uses, how large it is) is read from its syntax tree, without running it.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from evoforge.evaluators.candidate import CandidateRaised, CandidateSession

__all__ = ["Dataset", "Skeleton", "SkeletonRejected", "read_skeleton", "fit_and_score", "nmse", "score_of",
           "skeleton_result", "MAX_PARAMS", "NMSE_FLOOR"]

MAX_PARAMS = 10          # LLM-SR's MAX_NPARAMS: the params vector the skeleton receives
NMSE_FLOOR = 1e-12       # score = -log10(max(NMSE, floor)): 12 digits is beyond any noisy data set
_BAD_RESIDUAL = 1e3      # a parameter vector whose prediction is not finite: steer the optimiser away


@dataclass(frozen=True)
class Dataset:
    """Named input arrays (in the order the skeleton takes them) and the target, all of one length."""

    inputs: Mapping[str, np.ndarray]
    target: np.ndarray


@dataclass(frozen=True)
class Skeleton:
    """What the syntax tree says about the candidate's function, read without running it."""

    params_used: tuple[int, ...]       # distinct constant indices into params
    nodes: int                         # AST nodes of the function (its complexity)
    initial: tuple[float, ...] = ()    # the program's `initial_params = [...]`, the fit's first start


class SkeletonRejected(ValueError):
    """The program does not define the function the task asks for, in the shape it asks for."""


def read_skeleton(source: str, function: str, arity: int) -> Skeleton:
    """Find ``def function(...)`` with ``arity`` arguments (the last is ``params``); raises `SkeletonRejected`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise SkeletonRejected(f"the program does not parse: {exc}") from None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    if len(defs) != 1:
        raise SkeletonRejected(f"the program must define {function}(...) once at the top level (found {len(defs)})")
    fn = defs[0]
    if len(fn.args.args) != arity:
        raise SkeletonRejected(f"{function} must take {arity} arguments, the last being params "
                               f"(got {len(fn.args.args)})")
    params = fn.args.args[-1].arg
    used = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == params:
            index = node.slice
            if isinstance(index, ast.Constant) and isinstance(index.value, int):
                if not 0 <= index.value < MAX_PARAMS:
                    raise SkeletonRejected(f"{params}[{index.value}] is out of range: there are {MAX_PARAMS} "
                                           f"parameters, {params}[0] .. {params}[{MAX_PARAMS - 1}]")
                used.add(index.value)
    return Skeleton(params_used=tuple(sorted(used)), nodes=sum(1 for _ in ast.walk(fn)),
                    initial=_initial_params(tree))


def _initial_params(tree: ast.Module) -> tuple[float, ...]:
    """A top-level ``initial_params = [numbers]`` (read as a literal, never run): the skeleton's own guess of
    the constants' magnitudes, so a fit of ``T - params[2]`` can start near 30 rather than at 1."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "initial_params"):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise SkeletonRejected("initial_params must be a list of numbers written out literally") from None
            if (not isinstance(value, (list, tuple)) or len(value) > MAX_PARAMS
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in value)):
                raise SkeletonRejected(f"initial_params must be a list of at most {MAX_PARAMS} finite numbers")
            return tuple(float(v) for v in value)
    return ()


def nmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Normalised mean squared error: MSE / variance of the target (LLM-SR's metric)."""
    return float(np.mean((prediction - target) ** 2) / max(float(np.var(target)), 1e-300))


Minimize = Callable[..., Any]   # scipy.optimize.least_squares-like: (fun, x0, **kw) -> result with .x


def fit_and_score(program_path: str, *, function: str, train: Dataset, tests: Mapping[str, Dataset],
                  minimize: Minimize, restarts: int = 4, seed: int = 0, timeout_s: float = 10.0,
                  max_nfev: int = 400, minimize_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit ``function``'s params on ``train`` and report NMSE on ``train`` and on each of ``tests``.

    The fit: least squares on the residuals from ``params = 1`` (LLM-SR's start; the program's literal
    ``initial_params`` list replaces the first entries) and ``restarts`` more starts, that guess with random
    signs and log-normal factors drawn with ``seed``; the best training error wins. Raises `SkeletonRejected`
    for a malformed skeleton and lets `CandidateError` through for one that crashes or hangs outright.
    Returns ``{"params": [...], "nmse_train": x, "nmse_<test>": y, ..., "skeleton": Skeleton}``.
    """
    with open(program_path, encoding="utf-8") as fh:
        skeleton = read_skeleton(fh.read(), function, len(train.inputs) + 1)
    rng = np.random.default_rng(seed)
    scale = max(float(np.std(train.target)), 1e-12)
    with CandidateSession(program_path, timeout_s=timeout_s) as candidate:
        refs = {name: [candidate.put(f"{name}_{key}", np.ascontiguousarray(value, dtype=np.float64))
                       for key, value in data.inputs.items()]
                for name, data in {"train": train, **tests}.items()}

        def predict(name: str, params: np.ndarray, size: int) -> np.ndarray:
            value = candidate.call(function, *refs[name], np.asarray(params, dtype=np.float64))
            out = np.asarray(value, dtype=np.float64) if isinstance(value, (np.ndarray, float, int)) else None
            if out is None or out.size not in (1, size):
                raise SkeletonRejected(f"{function} returned {type(value).__name__} of shape "
                                       f"{getattr(out, 'shape', None)}; expected one number per data point "
                                       f"({size}), as a numpy array")
            return np.broadcast_to(out.reshape(-1) if out.size == size else out.reshape(()), (size,))

        def residuals(params: np.ndarray) -> np.ndarray:
            try:
                pred = predict("train", params, train.target.size)
            except CandidateRaised:      # e.g. a log of a negative number at this parameter vector
                return np.full(train.target.size, _BAD_RESIDUAL)
            with np.errstate(all="ignore"):
                r = (pred - train.target) / scale
            return np.where(np.isfinite(r), np.clip(r, -_BAD_RESIDUAL, _BAD_RESIDUAL), _BAD_RESIDUAL)

        guess = np.ones(MAX_PARAMS)
        guess[:len(skeleton.initial)] = skeleton.initial
        predict("train", guess, train.target.size)        # a skeleton that cannot run at all fails here
        # Restarts perturb the guess multiplicatively and by sign, so they keep its magnitudes.
        starts = [guess] + [guess * rng.choice([-1.0, 1.0], MAX_PARAMS) * np.exp(rng.normal(0.0, 0.5, MAX_PARAMS))
                            for _ in range(restarts)]
        best_params, best_cost = np.ones(MAX_PARAMS), math.inf
        for x0 in starts:
            result = minimize(residuals, x0, max_nfev=max_nfev, **dict(minimize_kwargs or {}))
            cost = float(np.mean(residuals(result.x) ** 2))
            if cost < best_cost:
                best_params, best_cost = np.asarray(result.x, dtype=np.float64), cost
        out: dict[str, Any] = {"params": [float(p) for p in best_params], "skeleton": skeleton}
        for name, data in {"train": train, **tests}.items():
            try:
                pred = predict(name, best_params, data.target.size)
            except CandidateRaised as exc:
                raise CandidateRaised(f"{function} raised on the {name} data with the fitted params: {exc}") from None
            with np.errstate(all="ignore"):
                error = nmse(pred, data.target)
            out[f"nmse_{name}"] = error if math.isfinite(error) else math.inf
    return out


def score_of(error: float) -> float:
    """``-log10(NMSE)``, floored: digits of accuracy, higher is better."""
    return -math.log10(max(error, NMSE_FLOOR))


def skeleton_result(fit: Mapping[str, Any], *, score_on: str) -> dict[str, Any]:
    """An evaluator's result from `fit_and_score`: the score on ``score_on``, the rest as metrics."""
    skeleton: Skeleton = fit["skeleton"]
    errors = {k: v for k, v in fit.items() if k.startswith("nmse_")}
    if not math.isfinite(errors[f"nmse_{score_on}"]):
        return {"status": "invalid", "error": f"the fitted equation is not finite on the {score_on} data"}
    shown = ", ".join(f"{k[5:]} {v:.3g}" for k, v in errors.items())
    used = ", ".join(f"params[{i}] = {fit['params'][i]:.6g}" for i in skeleton.params_used)
    return {
        "score": score_of(errors[f"nmse_{score_on}"]),
        "features": {"n_params": float(len(skeleton.params_used)), "complexity": float(skeleton.nodes)},
        "metrics": {**{k: (v if math.isfinite(v) else 1e300) for k, v in errors.items()},
                    "n_params": float(len(skeleton.params_used)), "complexity": float(skeleton.nodes)},
        "artifacts": {"fit": f"NMSE: {shown}. Fitted constants: {used or 'none used'}"},
    }

