"""The code that runs inside the sandbox, and nothing else: standard library and numpy only.

Everything in this package is importable in the isolated child that scores a candidate (the fork server
pre-imports it; the docker image and Ray workers mount or ship it): the evaluator contract
(`EvaluationResult`, `Status`), loading and running a task's ``evaluator.py`` (`run_job`), calling a
candidate's function in a nested process so it cannot patch the evaluator that scores it (`run_candidate`,
`CandidateSession`), the shared task harnesses (`evoforge.evaluators.harnesses`) and the project's one error
tree (`evoforge.evaluators.errors`). It imports nothing of evoforge outside itself, and no third-party
package but numpy: ``tests/evaluators/test_sandbox_imports.py`` parses every module and fails otherwise.
What the engine computes on a program's text outside the sandbox (built-in descriptors) lives in
`evoforge.engine`.

The candidate helpers import numpy, so they load on first use (``from evoforge.evaluators import run_candidate``).
"""

from __future__ import annotations

from typing import Any

from evoforge.evaluators.errors import (
    ConfigError, EvoforgeError, LLMError, SandboxError, StoreError, TaskError,
)
from evoforge.evaluators.runner import load_evaluator, run_job
from evoforge.evaluators.types import EvaluationResult, Status

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
    raise AttributeError(f"module 'evoforge.evaluators' has no attribute {name!r}")
