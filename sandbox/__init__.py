"""Isolation backends and executors: where and how a candidate's code runs.

``ProcessSandbox`` is imported lazily: the fork server imports ``evoforge.sandbox.job`` and must not pull in
the client's threading/subprocess machinery.
"""

from __future__ import annotations

from typing import Any

from evoforge.sandbox.job import EvaluationJob

__all__ = ["EvaluationJob", "ProcessSandbox"]


def __getattr__(name: str) -> Any:
    if name == "ProcessSandbox":
        from evoforge.sandbox.process import ProcessSandbox
        return ProcessSandbox
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
