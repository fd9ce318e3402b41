"""Local placement: up to ``slots`` evaluations at once on this machine.

The isolation backend's ``run`` blocks, so each slot is a thread that waits on an isolated child
process (the GIL is released while it waits); the CPU work happens in the children.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from evoforge.evaluators.types import EvaluationResult
from evoforge.sandbox.job import EvaluationJob

__all__ = ["Isolation", "Executor", "LocalExecutor", "default_slots"]


class Isolation(Protocol):
    """Where a candidate's code runs: one blocking method, safe to call from several threads."""

    def run(self, job: EvaluationJob) -> EvaluationResult: ...

    def close(self) -> None: ...


class Executor(Protocol):
    """Which machine runs an evaluation."""

    slots: int

    async def evaluate(self, job: EvaluationJob) -> EvaluationResult: ...

    async def close(self) -> None: ...


def default_slots() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class LocalExecutor:
    def __init__(self, isolation: Isolation, *, slots: int | None = None) -> None:
        self.isolation = isolation
        self.slots = slots or default_slots()
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="evoforge-eval")

    async def evaluate(self, job: EvaluationJob) -> EvaluationResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.isolation.run, job)

    async def close(self) -> None:
        self.isolation.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
