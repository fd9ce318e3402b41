"""Evaluator for optimizer_update_rule: discover a gradient-based update rule (after Lion, Chen et al. 2023).

The candidate supplies ``step(params, grads, state, t) -> (params, state)``; this evaluator owns everything
else: the objectives, the gradients, the loop and the measurement (problems in ``problems.py``)::

    x, state = problem.x0, {}
    for t in 1 .. STEPS:                       # STEPS = 200, full-batch gradients
        loss, grad = problem.loss_grad(x)      # trusted code, here
        x, state = step(x, grad, state, t)     # the candidate, in a nested process
    gain = log10((loss(x0) - f*) / (loss(x_T) - f*))   # orders of magnitude of sub-optimality removed

**How the candidate is called.** ``step`` runs in a nested process through
`evoforge.evaluators.candidate.CandidateSession`, one call per iteration (about 0.25 ms of IPC each; 200 steps x
(4 training + 4 held-out + 4 integrity) problems = 2,400 calls, about a second). Per-step calls are the
only design in which the evaluator owns the loss: a candidate that ran the loop itself would have to be
handed the objective. ``params`` and ``grads`` are float64 vectors of the problem's dimension (the
candidate is never told which problem it is), ``t`` counts from 1, and ``state`` is what the previous
call returned (``{}`` at t = 1). ``state`` must be a dict with str keys whose values are numbers or
float arrays of shape ``(n,)``; ``params`` must come back as a real array of shape ``(n,)``. Anything else
is ``invalid``. Non-finite parameters end that problem's run as *diverged* (gain -3); diverging on every
training problem is ``invalid``.

**Integrity checks** (each failure is ``invalid``), against the cheats a proxy suite invites:

* *Hidden state.* Steps ``t = 1`` and ``t = STEPS / 2`` of every training run are replayed in a fresh
  process with the recorded inputs; the outputs must be identical. All memory must live in ``state``
  (which keeps the ``state_floats_per_param`` descriptor honest) and the rule must be deterministic.
* *Knowing the problem.* Every training problem is run a second time, in a fresh process, in coordinates
  changed by a secret random signed permutation (``x' = s * x[perm]``, drawn from ``os.urandom`` per
  evaluation). Gradient methods that treat coordinates alike (SGD, momentum, Adam, Lion, RMSprop, norm
  clipping, ...) produce the same losses -- bit for bit when the rule is elementwise -- but a rule that
  recognises a problem (by its dimension, start point or data) and steers towards a known answer, e.g.
  the all-ones minimiser of Rosenbrock read from this file, does not. The final gains must agree within
  ``INTEGRITY_TOLERANCE = 1`` order of magnitude. The secret never touches the score, so scores stay
  reproducible; an honest non-elementwise rule can differ from run to run only in rounding.

Score (maximise) = the mean gain over the 4 training problems (Rosenbrock 6-D, a 20-D quadratic with
condition number 1e3, L2-regularised logistic regression on 200 x 10 synthetic data with feature scales
0.1..10, a 3-8-1 tanh MLP teacher-student regression), each gain clipped to [-3, 12] and -3 when the run
diverges (non-finite, or the loss grows 1000-fold). Held-out metrics: the same families at other sizes,
seeds, starts and conditioning (``heldout_gain_*``, ``heldout_mean_gain``), never scored, computed by
``evaluate_heldout`` only when it matters (a new best, the final elites) and kept private. Baselines run
here with trusted reference implementations on the same problems (``baseline_*``): Adam (lr 0.03,
betas 0.9/0.999), Lion (lr 0.01, 3x smaller than Adam's, betas 0.9/0.99), plain SGD (lr 1e-3).

Descriptors: ``state_floats_per_param`` (floats kept in ``state`` per parameter at the end of a run,
averaged over training problems: SGD 0, momentum/Lion 1, Adam 2) and ``stability`` (share of the 4
training problems that did not diverge).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoforge.evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession


def _load_problems():
    """``problems.py`` beside this file, under a name no other task's module can shadow."""
    name = "_evoforge_optimizer_update_rule_problems"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "problems.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module          # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


_problems = _load_problems()
Problem = _problems.Problem
training_problems, heldout_problems = _problems.training_problems, _problems.heldout_problems

__all__ = ["evaluate", "run_rule", "gain", "adam", "lion", "sgd", "signed_permutation", "STEPS"]

STEPS = 200
GAIN_RANGE = (-3.0, 12.0)            # -3: diverged; 12: sub-optimality cut by 1e12 (float64 noise level)
DIVERGENCE_FACTOR = 1e3              # a loss 1000x above the start counts as diverged
INTEGRITY_TOLERANCE = 1.0            # orders of magnitude the re-coordinated run may differ by
MAX_STATE_ENTRIES = 16               # keys in state
CALL_TIMEOUT_S = 10.0


class RuleBroken(ValueError):
    """The candidate's step returned something outside the contract."""


# ---- trusted reference rules (baselines) ----------------------------------------------------------

def sgd(lr: float = 1e-3) -> Callable:
    def step(x, g, state, t):
        return x - lr * g, {}
    return step


def adam(lr: float = 0.03, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Callable:
    """Kingma & Ba 2015, with bias correction."""
    def step(x, g, state, t):
        m = b1 * state.get("m", 0.0) + (1 - b1) * g
        v = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        return x - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), {"m": m, "v": v}
    return step


def lion(lr: float = 0.01, b1: float = 0.9, b2: float = 0.99, wd: float = 0.0) -> Callable:
    """Chen et al. 2023: c = b1 m + (1 - b1) g; x -= lr (sign(c) + wd x); m = b2 m + (1 - b2) g."""
    def step(x, g, state, t):
        m = state.get("m", np.zeros_like(x))
        c = b1 * m + (1 - b1) * g
        return x - lr * (np.sign(c) + wd * x), {"m": b2 * m + (1 - b2) * g}
    return step


# ---- running a rule -----------------------------------------------------------------------------------

def _check_step(raw: Any, n: int, t: int, problem: str) -> tuple[np.ndarray, dict[str, Any]]:
    where = f"step() on a {n}-parameter problem at t={t}"
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        raise RuleBroken(f"{where} must return (params, state), but returned {type(raw).__name__}")
    params, state = raw
    if not isinstance(params, np.ndarray) or params.dtype.kind not in "iuf" or params.shape != (n,):
        shape = getattr(params, "shape", None)
        raise RuleBroken(f"{where}: params must be a real array of shape ({n},), got "
                         f"{type(params).__name__}" + (f" of shape {shape} and dtype {params.dtype}"
                                                       if isinstance(params, np.ndarray) else ""))
    if not isinstance(state, dict) or len(state) > MAX_STATE_ENTRIES:
        raise RuleBroken(f"{where}: state must be a dict with at most {MAX_STATE_ENTRIES} entries, got "
                         f"{type(state).__name__}" + (f" with {len(state)}" if isinstance(state, dict) else ""))
    clean: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise RuleBroken(f"{where}: state keys must be str, got {key!r}")
        if type(value) in (int, float):
            clean[key] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.shape == (n,):
            clean[key] = value.astype(np.float64)
        else:
            what = f"array of shape {value.shape}, dtype {value.dtype}" if isinstance(value, np.ndarray) \
                else type(value).__name__
            raise RuleBroken(f"{where}: state[{key!r}] must be a number or a float array of shape ({n},), "
                             f"got {what}")
    return params.astype(np.float64), clean


def gain(problem: Problem, start_loss: float, final_loss: float) -> tuple[float, bool]:
    """(log10 of the sub-optimality reduction clipped to GAIN_RANGE, diverged?)."""
    gap0 = start_loss - problem.f_star
    gap = final_loss - problem.f_star
    if not math.isfinite(final_loss) or gap > DIVERGENCE_FACTOR * gap0:
        return GAIN_RANGE[0], True
    if gap <= gap0 * 10.0 ** -GAIN_RANGE[1]:
        return GAIN_RANGE[1], False
    return min(max(math.log10(gap0 / gap), GAIN_RANGE[0]), GAIN_RANGE[1]), False


def run_rule(problem: Problem, step: Callable, *, transform: tuple[np.ndarray, np.ndarray] | None = None,
             record: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run ``step`` for STEPS iterations; optionally in signed-permuted coordinates; record some calls."""
    n = problem.x0.size
    perm, signs = transform if transform is not None else (np.arange(n), np.ones(n))

    def to_rule(v: np.ndarray) -> np.ndarray:        # problem coordinates -> the rule's coordinates
        return signs * v[perm]

    def from_rule(v: np.ndarray) -> np.ndarray:
        out = np.empty_like(v)
        out[perm] = signs * v
        return out

    x = problem.x0.copy()
    state: dict[str, Any] = {}
    recorded = {}
    with np.errstate(all="ignore"):
        start_loss = problem.loss_grad(x)[0]
        loss = start_loss
        for t in range(1, STEPS + 1):
            loss, grad = problem.loss_grad(x)
            if not math.isfinite(loss):
                break
            args = (to_rule(x), to_rule(grad), state, t)
            params, state = _check_step(step(*args), n, t, problem.name)
            if t in record:
                recorded[t] = (args, (params, state))
            if not np.all(np.isfinite(params)):
                loss = math.inf
                break
            x = from_rule(params)
        else:
            loss = problem.loss_grad(x)[0]
    floats = sum(1 if type(v) in (int, float) else v.size for v in state.values())
    g, diverged = gain(problem, start_loss, loss)
    return {"gain": g, "diverged": diverged, "final_loss": loss, "start_loss": start_loss,
            "state_floats_per_param": floats / n, "recorded": recorded}


def signed_permutation(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.permutation(n), rng.choice(np.array([-1.0, 1.0]), size=n)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """The held-out problems (private: run for a new best, the final elites and ``evoforge eval --heldout``):
    ``heldout_gain_<problem>``, ``heldout_mean_gain``, ``heldout_n_diverged`` and the baselines' held-out gains."""
    heldout = heldout_problems()
    try:
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate:
            def step(*args):
                return candidate.call("step", *args)
            held = [run_rule(p, step) for p in heldout]
    except RuleBroken as exc:
        return _invalid(str(exc))
    except CandidateInvalid as exc:
        return _invalid(f"step() returned something that is not plain data: {exc}")
    metrics: dict[str, float] = {"heldout_mean_gain": float(np.mean([r["gain"] for r in held])),
                                 "heldout_n_diverged": float(sum(r["diverged"] for r in held))}
    for problem, run in zip(heldout, held):
        metrics[f"heldout_gain_{problem.name}"] = run["gain"]
    for name, rule in (("adam", adam()), ("lion", lion()), ("sgd", sgd())):
        metrics[f"baseline_{name}_heldout_mean_gain"] = float(np.mean([run_rule(p, rule)["gain"] for p in heldout]))
    listing = ", ".join(f"{p.name} {r['gain']:.2f}{' (diverged)' if r['diverged'] else ''}"
                        for p, r in zip(heldout, held))
    return {"metrics": metrics, "artifacts": {"heldout": f"held-out mean gain {metrics['heldout_mean_gain']:.3f} "
                                                         f"({listing})"}}


def evaluate(program_path: str) -> dict[str, Any]:
    """Run the candidate's ``step`` on the training problems, check integrity, score (the held-out problems
    are `evaluate_heldout`'s)."""
    train = training_problems()
    replay_at = (1, STEPS // 2)
    try:
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate:
            def step(*args):
                return candidate.call("step", *args)
            runs = [run_rule(p, step, record=replay_at) for p in train]
        if all(r["diverged"] for r in runs):
            return _invalid("the rule diverged (NaN/inf or a 1000-fold loss increase) on every training problem: "
                            + ", ".join(f"{p.name} final loss {r['final_loss']:.3g}" for p, r in zip(train, runs)))

        # Hidden state / determinism: recorded calls replayed in a fresh process must repeat exactly.
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as fresh:
            for problem, run in zip(train, runs):
                for t, (args, expected) in sorted(run["recorded"].items()):
                    again = _check_step(fresh.call("step", *args), problem.x0.size, t, problem.name)
                    if not _same(again, expected):
                        return _invalid(
                            f"step() is not a function of its arguments: replaying the call at t={t} on the "
                            f"{problem.x0.size}-parameter problem in a fresh process gave a different result "
                            f"(keep all memory in `state`, and seed any randomness from t or state)")

        # Knowing the problem: the same runs in secret signed-permuted coordinates must do as well.
        rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as other:
            def other_step(*args):
                return other.call("step", *args)
            for problem, run in zip(train, runs):
                moved = run_rule(problem, other_step, transform=signed_permutation(problem.x0.size, rng))
                if moved["diverged"] != run["diverged"] or abs(moved["gain"] - run["gain"]) > INTEGRITY_TOLERANCE:
                    return _invalid(
                        f"the rule depends on the coordinate system: on the {problem.x0.size}-parameter problem "
                        f"its gain was {run['gain']:.2f} but {moved['gain']:.2f} after a random signed "
                        f"permutation of the coordinates; update rules must treat coordinates alike and must "
                        f"not recognise problems")
    except RuleBroken as exc:
        return _invalid(str(exc))
    except CandidateInvalid as exc:
        return _invalid(f"step() returned something that is not plain data: {exc}")
    except CandidateError:
        raise   # raised / crashed / timed out: the runner records error / timeout

    baselines = {name: [run_rule(p, rule)["gain"] for p in train]
                 for name, rule in (("adam", adam()), ("lion", lion()), ("sgd", sgd()))}
    score = float(np.mean([r["gain"] for r in runs]))
    # Training problems only: a descriptor is shown in prompts, so it must not carry held-out results.
    stability = 1.0 - sum(r["diverged"] for r in runs) / len(runs)
    features = {"state_floats_per_param": float(np.mean([r["state_floats_per_param"] for r in runs])),
                "stability": stability}
    metrics: dict[str, float] = {"train_mean_gain": score, "n_diverged": float(sum(r["diverged"] for r in runs))}
    for problem, run in zip(train, runs):
        metrics[f"train_gain_{problem.name}"] = run["gain"]
    for name, tr in baselines.items():
        metrics[f"baseline_{name}_train_mean_gain"] = float(np.mean(tr))
    per = ", ".join(f"{p.name} {r['gain']:.2f}{' (diverged)' if r['diverged'] else ''}" for p, r in zip(train, runs))
    summary = (f"mean gain {score:.3f} orders of magnitude in {STEPS} steps (training: {per}); baselines train: "
               + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in baselines.items())
               + f"; state {features['state_floats_per_param']:.2f} floats per parameter")
    return {"score": score, "features": features, "metrics": metrics, "artifacts": {"summary": summary}}
