"""The evaluator contract: result types, the error tree, running a task's evaluator, and calling a
candidate's function in a nested process (`run_candidate`, `CandidateSession`) so it cannot patch
the evaluator that scores it.

The candidate helpers import numpy, so they load on first use (``from evoforge.evaluators import run_candidate``).
"""

from __future__ import annotations

from typing import Any

from evoforge.evaluators.runner import load_evaluator, run_job
from evoforge.evaluators.types import (
    ConfigError, EvaluationResult, EvoforgeError, LLMError, SandboxError, Status, StoreError, TaskError,
)

_CANDIDATE_NAMES = ("run_candidate", "CandidateSession", "Ref", "CandidateError", "CandidateRaised",
                    "CandidateCrashed", "CandidateTimeout", "CandidateInvalid")

__all__ = [
    "EvaluationResult", "Status", "EvoforgeError", "ConfigError", "TaskError", "LLMError",
    "SandboxError", "StoreError", "run_job", "load_evaluator", *_CANDIDATE_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _CANDIDATE_NAMES:
        from evoforge.evaluators import candidate
        return getattr(candidate, name)
    raise AttributeError(f"module 'evaluators' has no attribute {name!r}")
