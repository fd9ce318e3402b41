"""The one error tree of evoforge (httpx style: one root; a library's exception is translated once, at the
I/O seam that met it, into one of ours with the original chained by ``raise ... from exc``)::

    EvoforgeError
    ├── ConfigError      a task.toml / CLI flag / run config is wrong (exit code 2)
    ├── TaskError        a task folder is incomplete or its evaluator breaks its contract (exit code 2)
    ├── LLMError         an LLM provider could not be reached or answered unusably (exit code 1)
    ├── SandboxError     an isolation backend or executor failed, not the candidate (exit code 1)
    └── StoreError       the run directory / SQLite store is unusable (exit code 2)

Import them from ``evoforge`` (``evoforge.ConfigError``) or from here. They live in `evoforge.evaluators`
because that package must stay importable inside the sandbox, where the evaluator helpers raise them too;
this module imports nothing. A candidate that crashes, hangs or cheats is never one of these: it is *data*,
an `evoforge.evaluators.types.EvaluationResult` with a non-``ok`` status (docs/architecture.md, "Errors").
"""

from __future__ import annotations

__all__ = ["EvoforgeError", "ConfigError", "TaskError", "LLMError", "SandboxError", "StoreError"]


class EvoforgeError(Exception):
    """Root of every error evoforge raises on purpose."""


class ConfigError(EvoforgeError):
    """A configuration value is wrong; the message names the file, the key and the fix."""


class TaskError(EvoforgeError):
    """A task folder is incomplete, or its evaluator does not keep the task contract."""


class LLMError(EvoforgeError):
    """An LLM provider failed in a way retrying did not fix."""


class SandboxError(EvoforgeError):
    """The isolation or placement machinery failed (not the candidate)."""


class StoreError(EvoforgeError):
    """The run directory or its SQLite store cannot be used."""
