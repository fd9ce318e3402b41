"""Start-up overlap: the initial program is evaluated while the engine is still loading.

Before the first proposal a run must (a) start the fork server and evaluate the initial program --
work done by other processes -- and (b) import and build the LLM client (the openai SDK alone is
0.5-1.5 s of CPU) and rebuild the archive -- work done by this one. Done one after the other, they
add up; `PrefetchingExecutor` starts (a) on a background thread as soon as the executor exists, so
it runs on another core while this process does (b), and hands the result to the engine's first
``evaluate`` of the same job. The job is built by `job_for`, the one recipe for "evaluate this
program as a run of this task does" (the engine, ``evoforge eval`` and the prefetch); a job that
differs is simply evaluated as usual, so a prefetch can be wasted but never wrong.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from typing import Any, Mapping

from evoforge.engine.task import Task
from evoforge.evaluators.types import EvaluationResult
from evoforge.sandbox.job import EvaluationJob

__all__ = ["job_for", "PrefetchingExecutor", "prefetch_initial"]


def job_for(task: Task, code: str, environ: Mapping[str, str] | None = None) -> EvaluationJob:
    """The job that evaluates ``code`` exactly as a run of ``task`` does.

    The variables ``task.pass_env`` names travel with their values from ``environ`` (default: this
    process's); a named variable that is not set is left out (`evoforge.engine.session` refuses an
    unset ``--env``). Nothing else of the environment does (docs/architecture.md, "Isolation and placement")."""
    environ = os.environ if environ is None else environ
    extra: dict[str, Any] = {"docker_image": task.sandbox_image,   # read by --sandbox docker
                             "num_cpus": task.resources.num_cpus}
    if task.openevolve is not None:                                # evaluators.openevolve
        extra["openevolve"] = {k: v for k, v in task.openevolve.items() if k != "cwd"}
    if task.search.fingerprint and task.has_probe:
        # The evaluator's probe runs and the result carries the functional fingerprint; a run replaces this
        # empty set with the fingerprints of its evaluated programs (Evolution.known_fingerprints).
        extra["known_fingerprints"] = {}
    return EvaluationJob(program_text=code, task_dir=str(task.path), evaluator_file=task.evaluator_file,
                         timeout_s=task.limits.timeout_s, memory_mb=task.limits.memory_mb, cpu_s=task.limits.cpu_s,
                         cascade_thresholds=task.cascade_thresholds,
                         program_name=task.program_name, compile_command=task.compile.command,
                         compile_timeout_s=task.compile.timeout_s,
                         env={name: environ[name] for name in task.pass_env if name in environ},
                         cwd=(task.openevolve or {}).get("cwd", "workdir"), extra=extra)


class PrefetchingExecutor:
    """An executor whose first evaluation of ``job`` was started early, on a thread of its own.

    Everything else goes to ``inner``. The prefetched result is used once; closing the executor
    stops the isolation, which ends a prefetch still running (its thread is a daemon).
    """

    def __init__(self, inner: Any, job: EvaluationJob) -> None:
        self.inner = inner
        self.slots = inner.slots
        self._job: EvaluationJob | None = job
        self._future: Future = Future()
        self.used = False       # the engine's evaluation of the job took the prefetched result
        thread = threading.Thread(target=self._evaluate, args=(job,), name="evoforge-prefetch", daemon=True)
        thread.start()

    def _evaluate(self, job: EvaluationJob) -> None:
        try:
            self._future.set_result(self.inner.isolation.run(job))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it (SandboxError, closed)
            self._future.set_exception(exc)

    async def evaluate(self, job: EvaluationJob) -> EvaluationResult:
        if self._job is not None and job == self._job:
            self._job = None
            self.used = True
            return await asyncio.wrap_future(self._future)
        return await self.inner.evaluate(job)

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def prefetch_initial(executor: Any, task: Task) -> Any:
    """``executor`` with the initial program's evaluation already under way, where the executor runs
    isolations on this machine (``local``); a Ray executor is returned as it is."""
    if not hasattr(executor, "isolation"):
        return executor
    return PrefetchingExecutor(executor, job_for(task, task.initial_program))
