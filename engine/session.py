"""Wiring a run together: task + config → run directory, LLM, executor, engine; and tearing down.

Ctrl-C once: no new proposals, the candidates in flight finish and are stored. Twice: the ones in
flight are abandoned (their isolated processes killed). Either way the run directory is resumable.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

from engine.config import RunConfig
from engine.llm import make_llm, parse_llm_spec
from engine.loop import Engine, Reporter, Snapshot
from engine.rundir import RunDir, default_run_dir
from engine.task import Task, load_task
from evaluators.types import ConfigError, EvaluationResult
from sandbox.job import EvaluationJob
from sandbox.registry import make_executor

__all__ = ["RunOutcome", "start_run", "resume_run", "evaluate_file"]


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    snapshot: Snapshot


def _executor(config: RunConfig, task: Task):
    return make_executor(config.executor, config.sandbox, slots=config.eval_slots,
                         ray_address=config.ray_address, resources=task.resources)


async def _drive(engine: Engine, iterations: int) -> Snapshot:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            engine.request_stop("interrupted (Ctrl-C); resume with `evoforge resume`")
        else:
            engine.cancel_in_flight()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        return await engine.run(iterations)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _run(run_dir: RunDir, config: RunConfig, task: Task, iterations: int, reporter: Reporter | None) -> Snapshot:
    llm = make_llm([parse_llm_spec(s) for s in config.llm])
    executor = _executor(config, task)

    async def main() -> Snapshot:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=llm, executor=executor, reporter=reporter)
        try:
            return await _drive(engine, iterations)
        finally:
            await llm.close()
            await executor.close()

    try:
        snapshot = asyncio.run(main())
        run_dir.store.set_meta("state", "finished" if snapshot.stop_reason == "iterations reached" else "stopped")
        return snapshot
    finally:
        run_dir.close()


def start_run(config: RunConfig, *, out: Path | None = None, reporter: Reporter | None = None) -> RunOutcome:
    task = load_task(config.task)
    config = config.replace(task=str(task.path))
    path = Path(out) if out else default_run_dir(task.name)
    run_dir = RunDir.create(path, config.to_dict())
    run_dir.store.set_meta("task_name", task.name)
    # What the notebook API needs to read a run without importing the engine or the task folder.
    run_dir.store.set_meta("objective", task.objective)
    run_dir.store.set_meta("descriptors", [
        {"name": d.name, "low": d.low, "high": d.high, "bins": d.bins} for d in task.descriptors])
    run_dir.store.set_meta("archive", {"kind": task.archive.kind, "islands": task.archive.islands,
                                       "qd_offset": task.archive.qd_offset})
    run_dir.store.set_meta("state", "running")
    return RunOutcome(path, _run(run_dir, config, task, config.iterations, reporter))


def resume_run(path: Path, *, more_iterations: int | None = None, reporter: Reporter | None = None) -> RunOutcome:
    """Continue a stopped or killed run to its target, or ``more_iterations`` past what it has."""
    run_dir = RunDir.open(Path(path))
    try:
        config = RunConfig.from_dict(run_dir.store.get_meta("config"))
        task = load_task(config.task)
        done = run_dir.store.count("iteration > 0")
        target = done + more_iterations if more_iterations is not None else config.iterations
        run_dir.store.set_meta("state", "running")
    except BaseException:
        run_dir.close()
        raise
    return RunOutcome(Path(path), _run(run_dir, config, task, target, reporter))


def evaluate_file(task_spec: str, program: Path, *, sandbox: str = "process") -> EvaluationResult:
    """One evaluation, exactly as a run does it (same job, same isolation)."""
    task = load_task(task_spec)
    program = Path(program)
    if not program.is_file():
        raise ConfigError(f"{program}: no such program file")
    executor = make_executor("local", sandbox, slots=1)
    job = EvaluationJob(program_text=program.read_text(), task_dir=str(task.path),
                        evaluator_file=task.evaluator_file, timeout_s=task.limits.timeout_s,
                        memory_mb=task.limits.memory_mb, cascade_thresholds=task.cascade_thresholds)

    async def main() -> EvaluationResult:
        try:
            return await executor.evaluate(job)
        finally:
            await executor.close()

    return asyncio.run(main())
