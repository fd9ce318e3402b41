"""Types shared by every package: evaluation statuses and results.

The project's error tree lives in `evoforge.evaluators.errors` and is re-exported here, where every
module has imported it from since the beginning (``from evoforge.evaluators.types import ConfigError``
and ``from evoforge.evaluators.errors import ConfigError`` are the same class).

A candidate program that crashes, hangs or cheats is *data*, never an exception: it becomes an
`EvaluationResult` with a non-``ok`` status and the evidence (stderr tail, stage reached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from evoforge.evaluators.errors import (
    ConfigError, EvoforgeError, LLMError, SandboxError, StoreError, TaskError,
)

__all__ = [
    "EvoforgeError", "ConfigError", "TaskError", "LLMError", "SandboxError", "StoreError",
    "Status", "STATUSES", "EvaluationResult",
]


class Status:
    """Outcome of one candidate (contract: these strings are stored in ``run.db``)."""

    OK = "ok"                # evaluated, valid score
    INVALID = "invalid"      # ran, but the result breaks the task's rules (NaN, infeasible, cheating)
    ERROR = "error"          # raised, crashed, exited, or returned something that is not a result
    TIMEOUT = "timeout"      # killed on the wall-clock or CPU-time limit
    OOM = "oom"              # ran out of its memory limit
    REJECTED = "rejected"    # never evaluated: the edit did not apply, touched frozen code, or is a duplicate


STATUSES = (Status.OK, Status.INVALID, Status.ERROR, Status.TIMEOUT, Status.OOM, Status.REJECTED)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation of one candidate produced.

    ``score`` is higher-is-better and finite for an ``ok`` result, ``None`` otherwise.
    ``features`` are behaviour descriptors by name (archive coordinates), ``metrics`` any other
    numbers worth showing, ``artifacts`` short texts fed back to the LLM. ``private`` holds numbers and
    texts for the user only (held-out scores, answers): stored and shown, never put into a prompt
    (docs/architecture.md, "The task contract"). A name is either public or private, never both.
    """

    status: str
    score: float | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    stderr: str = ""
    stdout: str = ""
    stage: int | None = None
    eval_s: float = 0.0
    private: Mapping[str, float | str] = field(default_factory=dict)
    # Where it ran, set by the placement (never by the evaluator): on Ray the node id and address, the
    # GPUs it saw and the attempts it took. Stored with the candidate, never shown to the LLM.
    placement: Mapping[str, Any] = field(default_factory=dict)
    # The functional fingerprint (evoforge.evaluators.fingerprint): a digest of what the candidate returned
    # on the evaluator's ``probe`` inputs, set by the runner (never by the evaluator); None without a probe.
    # A ``rejected`` result with a fingerprint is a behavioural duplicate that was not evaluated.
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"expected status in {STATUSES} but got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @classmethod
    def failure(cls, status: str, message: str, **kwargs: Any) -> "EvaluationResult":
        """A failed evaluation whose reason goes to the LLM as the ``error`` artifact."""
        artifacts = dict(kwargs.pop("artifacts", {}) or {})
        artifacts.setdefault("error", message)
        return cls(status=status, artifacts=artifacts, **kwargs)

    @classmethod
    def from_evaluator(cls, raw: Any) -> "EvaluationResult":
        """Validate what a user's ``evaluate`` returned (a dict or an ``EvaluationResult``).

        The dict contract (docs/architecture.md, "The task contract"): ``score`` (alias ``combined_score``),
        ``features``, ``metrics``, ``artifacts``; every other numeric top-level key counts as a metric.
        A non-finite score or feature makes the result ``invalid``; a non-numeric one, ``error``.
        An evaluator may also set ``status`` (``ok``, ``invalid``, or ``error`` for a fault that is not the
        candidate's, e.g. a missing GPU) and ``error`` explicitly, and ``private``: name -> number or text,
        kept from every prompt (a name listed there is removed from ``metrics`` and ``artifacts``).
        """
        if isinstance(raw, EvaluationResult):
            raw = raw.to_dict()
        if not isinstance(raw, Mapping):
            return cls.failure(
                Status.ERROR, f"evaluate() must return a dict, but returned {type(raw).__name__}")
        raw = dict(raw)
        private = _private_values(raw.pop("private", {}))
        result = cls._validated(raw)
        if not private:
            return result
        data = result.to_dict()
        data["metrics"] = {k: v for k, v in result.metrics.items() if k not in private}
        data["artifacts"] = {k: v for k, v in result.artifacts.items() if k not in private}
        data["private"] = private
        return cls.from_dict(data)

    @classmethod
    def _validated(cls, raw: dict[str, Any]) -> "EvaluationResult":
        status = raw.pop("status", Status.OK)
        if status not in (Status.OK, Status.INVALID, Status.ERROR):
            return cls.failure(
                Status.ERROR, f"evaluate() returned status {status!r}; expected 'ok', 'invalid' or 'error'")
        artifacts = {str(k): str(v)[:4000] for k, v in dict(raw.pop("artifacts", {}) or {}).items()}
        if "error" in raw:
            artifacts.setdefault("error", str(raw.pop("error"))[:4000])
        score = raw.pop("score", raw.pop("combined_score", None))
        features_raw = raw.pop("features", {}) or {}
        metrics_raw = dict(raw.pop("metrics", {}) or {})
        # Named objectives (task.toml [[objectives]]) may come in a table of their own; they are metrics.
        objectives_raw = raw.pop("objectives", {}) or {}
        if isinstance(objectives_raw, Mapping):
            metrics_raw.update(objectives_raw)
        for key, value in raw.items():  # every other numeric top-level key is a metric
            if _is_number(value) or type(value).__name__.startswith(("float", "int")):
                metrics_raw.setdefault(key, value)
        try:
            features = {str(k): float(v) for k, v in dict(features_raw).items()}
            metrics = {}
            for k, v in metrics_raw.items():
                try:
                    metrics[str(k)] = float(v)
                except (TypeError, ValueError):
                    continue
        except (TypeError, ValueError) as exc:
            return cls.failure(Status.ERROR, f"features must be numbers: {exc}")
        if status in (Status.INVALID, Status.ERROR):
            artifacts.setdefault("error", f"evaluate() returned status {status!r} without an 'error' message")
            return cls(status=status, features=features, metrics=metrics, artifacts=artifacts)
        if score is None:
            return cls.failure(Status.ERROR, "evaluate() returned no 'score' (or 'combined_score')",
                               metrics=metrics, artifacts=artifacts)
        if isinstance(score, bool) or not isinstance(score, (int, float)) and not hasattr(score, "__float__"):
            return cls.failure(Status.ERROR, f"score must be a number, got {type(score).__name__}",
                               metrics=metrics, artifacts=artifacts)
        try:
            score = float(score)
        except (TypeError, ValueError) as exc:
            return cls.failure(Status.ERROR, f"score must be a number: {exc}", artifacts=artifacts)
        if not math.isfinite(score):
            return cls.failure(Status.INVALID, f"score is not finite ({score})",
                               features=features, metrics=metrics, artifacts=artifacts)
        bad = [k for k, v in features.items() if not math.isfinite(v)]
        if bad:
            return cls.failure(Status.INVALID, f"features not finite: {', '.join(bad)}",
                               metrics=metrics, artifacts=artifacts)
        return cls(status=Status.OK, score=score, features=features, metrics=metrics,
                   artifacts=artifacts)

    @classmethod
    def from_heldout(cls, raw: Any) -> "EvaluationResult":
        """Validate what a task's ``evaluate_heldout`` returned: the same dict as ``evaluate`` (``score``
        optional), every value of which is private; a ``score`` is kept as the private ``heldout_score``."""
        if isinstance(raw, EvaluationResult):
            raw = raw.to_dict()
        if not isinstance(raw, Mapping):
            return cls.failure(
                Status.ERROR, f"evaluate_heldout() must return a dict, but returned {type(raw).__name__}")
        raw = dict(raw)
        status = raw.pop("status", Status.OK)
        if status not in (Status.OK, Status.INVALID, Status.ERROR):
            return cls.failure(Status.ERROR, f"evaluate_heldout() returned status {status!r}")
        private: dict[str, Any] = {}
        score = raw.pop("score", raw.pop("combined_score", None))
        if score is not None:
            private["heldout_score"] = score
        for key in ("metrics", "artifacts", "private", "features"):
            value = raw.pop(key, {}) or {}
            if isinstance(value, Mapping):
                private.update(value)
        if "error" in raw:
            private["heldout_error"] = raw.pop("error")
        private.update({k: v for k, v in raw.items() if _is_number(v) or isinstance(v, str)})
        return cls(status=status, private=_private_values(private),
                   artifacts={"error": str(private.get("heldout_error", "evaluate_heldout failed"))[:4000]}
                   if status != Status.OK else {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "score": self.score, "features": dict(self.features),
            "metrics": dict(self.metrics), "artifacts": dict(self.artifacts),
            "stderr": self.stderr, "stdout": self.stdout, "stage": self.stage, "eval_s": self.eval_s,
            "private": dict(self.private),
            "placement": dict(self.placement), "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvaluationResult":
        """Inverse of `to_dict` (trusted data from our own sandbox)."""
        fields = ("status", "score", "features", "metrics", "artifacts", "stderr", "stdout",
                  "stage", "eval_s", "private", "placement", "fingerprint")
        return cls(**{k: data[k] for k in fields if k in data})


def _private_values(raw: Any) -> dict[str, float | str]:
    """An evaluator's ``private`` mapping as numbers (finite or not, as measured) and short texts."""
    if not isinstance(raw, Mapping):
        return {"private_error": f"'private' must be a dict of name -> number or text, got {type(raw).__name__}"}
    out: dict[str, float | str] = {}
    for key, value in raw.items():
        if _is_number(value) or type(value).__name__.startswith(("float", "int")):
            try:
                out[str(key)] = float(value)
                continue
            except (TypeError, ValueError):
                pass
        out[str(key)] = str(value)[:4000]
    return out
