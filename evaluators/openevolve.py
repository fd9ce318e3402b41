"""OpenEvolve's evaluator contract, run inside the sandbox for OpenEvolve-format task folders.

An OpenEvolve folder's ``evaluator.py`` is imported as it is (so its tracebacks name it, never a
generated file); the job says it is one (``job.extra["openevolve"]``, set by
`evoforge.engine.openevolve_compat`). What differs from evoforge's own contract:

* ``from openevolve.evaluation_result import EvaluationResult`` works without the package: the
  folder ``shims/`` beside this module holds our stand-in and goes on ``sys.path`` last, for these
  evaluators only (an installed ``openevolve`` still wins);
* the result is a dict of metrics (or an ``EvaluationResult``): the score is ``combined_score``, else
  the mean of the numeric metrics that are not feature dimensions (OpenEvolve's fitness);
  ``error`` text and artifacts become artifacts; feature dimensions are top-level metrics;
* the cascade (`cascade`) is OpenEvolve's, not evoforge's (docs/architecture.md, "OpenEvolve folders"):
  a stage result below its threshold is *kept* as the program's result, and after the stages
  ``evaluate`` is not called again.
"""

from __future__ import annotations

import math
import os
import sys
from types import ModuleType
from typing import Any, Callable, Mapping

from evoforge.evaluators.types import EvaluationResult, Status

__all__ = ["make_importable", "convert", "evaluate", "SHIMS_DIR"]

SHIMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims")


def make_importable() -> None:
    """``import openevolve.evaluation_result`` finds our stand-in unless the real package is installed."""
    if SHIMS_DIR not in sys.path:
        sys.path.append(SHIMS_DIR)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or \
        type(value).__name__.startswith(("float", "int"))     # numpy scalars


def _as_text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _split(raw: Any) -> tuple[dict[str, float], dict[str, str]] | None:
    """(numeric metrics, artifacts) of a dict or an ``EvaluationResult`` (ours or OpenEvolve's)."""
    artifacts: dict[str, str] = {}
    if hasattr(raw, "metrics") and not isinstance(raw, Mapping):
        artifacts = {str(k): _as_text(v) for k, v in dict(getattr(raw, "artifacts", None) or {}).items()}
        raw = raw.metrics
    if not isinstance(raw, Mapping):
        return None
    raw = dict(raw)
    artifacts.update({str(k): _as_text(v) for k, v in dict(raw.pop("artifacts", None) or {}).items()})
    if "error" in raw and not _number(raw["error"]):
        artifacts.setdefault("error", _as_text(raw.pop("error")))
    metrics = {}
    for key, value in raw.items():
        if _number(value):
            try:
                metrics[str(key)] = float(value)
            except (TypeError, ValueError):
                continue
    return metrics, artifacts


def fitness(metrics: Mapping[str, float], features: tuple[str, ...] = ()) -> float | None:
    """OpenEvolve's score: ``combined_score``, else the mean of the finite numeric metrics that are
    not feature dimensions (``error`` excluded); None when there is none."""
    if "combined_score" in metrics:
        return metrics["combined_score"]
    values = [v for k, v in metrics.items() if k not in features and k != "error" and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def convert(metrics: Mapping[str, float], artifacts: Mapping[str, str], features: tuple[str, ...],
            stage: int | None) -> EvaluationResult:
    """evoforge's result for OpenEvolve's metrics: the score, the feature dimensions as features."""
    score = fitness(metrics, features)
    if score is None:
        return EvaluationResult.failure(Status.INVALID, "the evaluator returned no numeric metric",
                                        artifacts=dict(artifacts), stage=stage)
    found = {name: (score if name == "score" else metrics[name]) for name in features
             if name == "score" or name in metrics}
    data = {"score": score, "features": found, "artifacts": dict(artifacts),
            "metrics": {k: v for k, v in metrics.items() if k not in found and k != "combined_score"}}
    result = EvaluationResult.from_evaluator(data)
    return result if stage is None else EvaluationResult.from_dict({**result.to_dict(), "stage": stage})


def _stage(fn: Callable[[str], Any], program_path: str, stage: int | None, what: str,
           failure: Callable[[BaseException, int | None, str], EvaluationResult]):
    """(metrics, artifacts), or the failure when the call raised or returned no dict."""
    try:
        raw = fn(program_path)
    except BaseException as exc:  # SystemExit/KeyboardInterrupt from the candidate are data too
        return failure(exc, stage, what)
    split = _split(raw)
    if split is None:
        return EvaluationResult.failure(
            Status.ERROR, f"{what} must return a dict or an EvaluationResult, but returned {type(raw).__name__}",
            stage=stage)
    return split


def evaluate(module: ModuleType, program_path: str, *, thresholds: tuple[float, ...], cascade: bool,
             features: tuple[str, ...],
             failure: Callable[[BaseException, int | None, str], EvaluationResult]) -> EvaluationResult:
    """Score one candidate the way OpenEvolve does.

    Cascade on and ``evaluate_stage1`` defined: stage 1; below ``thresholds[0]`` (or no stage 2)
    its result is the program's result; else stage 2, its metrics merged over stage 1's; below
    ``thresholds[1]`` (or no such threshold, or no stage 3) the merged result is final; else stage 3
    merged in. ``evaluate`` is not called. A crash in stage 1 is an error (as in evoforge); a crash
    in a later stage keeps the earlier stages' metrics with ``stageK_passed = 0`` and the error as an
    artifact, as OpenEvolve does. Otherwise ``evaluate`` alone, with ``stage`` None.
    """
    stages = [getattr(module, f"evaluate_stage{k}", None) for k in (1, 2, 3)]
    if not cascade or not callable(stages[0]):
        out = _stage(module.evaluate, program_path, None, "evaluate", failure)
        return out if isinstance(out, EvaluationResult) else convert(*out, features, None)
    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    for k, fn in enumerate(stages, start=1):
        if not callable(fn):
            return convert(metrics, artifacts, features, k - 1)
        out = _stage(fn, program_path, k, f"evaluate_stage{k}", failure)
        if isinstance(out, EvaluationResult):
            if k == 1:
                return out
            metrics[f"stage{k}_passed"] = 0.0
            artifacts.update({f"stage{k}_{name}": text for name, text in out.artifacts.items()})
            return convert(metrics, artifacts, features, k - 1)
        metrics.update(out[0])
        artifacts.update(out[1])
        score = fitness(metrics)
        if k == 3 or k > len(thresholds) or score is None or score < thresholds[k - 1]:
            return convert(metrics, artifacts, features, k)
    raise AssertionError("unreachable")  # pragma: no cover
