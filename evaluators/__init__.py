"""The evaluator contract: result types, the error tree, and running a task's evaluator."""

from __future__ import annotations

from evaluators.runner import load_evaluator, run_job
from evaluators.types import (
    ConfigError, EvaluationResult, EvoforgeError, LLMError, SandboxError, Status, StoreError, TaskError,
)

__all__ = [
    "EvaluationResult", "Status", "EvoforgeError", "ConfigError", "TaskError", "LLMError",
    "SandboxError", "StoreError", "run_job", "load_evaluator",
]
