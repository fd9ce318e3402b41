"""engine.startup: the initial program's evaluation starts before the engine exists and the engine uses it."""

import asyncio
import threading

import pytest

from evoforge.engine import session
from evoforge.engine.config import RunConfig
from evoforge.engine.startup import PrefetchingExecutor, job_for
from evoforge.engine.task import load_task
from evoforge.evaluators.types import EvaluationResult, SandboxError
from evoforge.sandbox.local import LocalExecutor
from fakes.tasks import write_tiny_task


def test_a_run_uses_the_prefetched_initial_evaluation(tmp_path, monkeypatch):
    made = []
    original = session.prefetch_initial

    def spy(executor, task):
        made.append(original(executor, task))
        return made[-1]

    monkeypatch.setattr(session, "prefetch_initial", spy)
    task = write_tiny_task(tmp_path / "tiny")
    outcome = session.start_run(RunConfig(task=str(task), iterations=3, llm=("offline",), concurrency=1),
                                out=tmp_path / "r")
    assert outcome.snapshot.done == 3 and outcome.snapshot.initial_score is not None
    (executor,) = made
    # The engine asked for exactly the prefetched job (job_for is the engine's recipe), so the initial
    # program was evaluated once, ahead of time.
    assert isinstance(executor, PrefetchingExecutor) and executor.used


class _CountingIsolation:
    """In-process stand-in for an isolation backend (no candidate code runs): counts and blocks."""

    def __init__(self):
        self.jobs = []
        self.release = threading.Event()

    def run(self, job):
        self.jobs.append(job)
        if not self.release.wait(10):
            raise SandboxError("never released")
        return EvaluationResult.from_evaluator({"score": float(len(self.jobs))})

    def close(self):
        self.release.set()


def test_another_job_is_evaluated_as_usual_and_the_prefetch_is_used_once(tmp_path):
    task = load_task(write_tiny_task(tmp_path / "tiny"))
    isolation = _CountingIsolation()
    executor = PrefetchingExecutor(LocalExecutor(isolation, slots=2), job_for(task, task.initial_program))

    async def main():
        other = job_for(task, task.initial_program + "\n# changed\n")
        pending = asyncio.ensure_future(executor.evaluate(job_for(task, task.initial_program)))
        await asyncio.sleep(0.05)
        assert not pending.done()           # it waits for the prefetch; it does not start another evaluation
        isolation.release.set()
        first = await pending
        again = await executor.evaluate(job_for(task, task.initial_program))   # not cached twice
        changed = await executor.evaluate(other)
        await executor.close()
        return first, again, changed

    first, again, changed = asyncio.run(main())
    assert executor.used and first.score == 1.0
    assert [j.program_text for j in isolation.jobs] == [task.initial_program, task.initial_program,
                                                        task.initial_program + "\n# changed\n"]
    assert (again.score, changed.score) == (2.0, 3.0)


def test_a_failed_prefetch_raises_where_the_engine_awaits_it(tmp_path):
    task = load_task(write_tiny_task(tmp_path / "tiny"))

    class Broken(_CountingIsolation):
        def run(self, job):
            raise SandboxError("the fork server did not start")

    executor = PrefetchingExecutor(LocalExecutor(Broken(), slots=1), job_for(task, task.initial_program))
    with pytest.raises(SandboxError, match="did not start"):
        asyncio.run(executor.evaluate(job_for(task, task.initial_program)))
