"""Benchmark 4: what isolation and placement cost per evaluation.

A *trivial* evaluation (``evaluate`` returns a constant) is run one at a time, so its wall time is
the machinery's overhead: the process sandbox (a fork from the warm fork server), the docker sandbox
(a fresh container per evaluation) and Ray placement (a Ray task that runs the process sandbox on a
worker). Each backend is built through `sandbox.registry`, exactly as ``--sandbox``/``--executor``
build it; one that cannot start here is reported as ``unavailable: <reason>``, never a crash.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Callable

from benchmarks.common import TRIVIAL_EVALUATOR, cores, percentile, write_task

__all__ = ["isolation_overhead"]


def _summary(walls_s: list[float]) -> dict:
    return {"evaluations": len(walls_s), "median_ms": 1e3 * statistics.median(walls_s),
            "p95_ms": 1e3 * percentile(walls_s, 95), "mean_ms": 1e3 * statistics.fmean(walls_s)}


def _time_each(run_one: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        _check(run_one())
    walls = []
    for _ in range(n):
        started = time.perf_counter()
        _check(run_one())
        walls.append(time.perf_counter() - started)
    return walls


def _check(result) -> None:
    if getattr(result, "status", None) != "ok":
        detail = (getattr(result, "stderr", "") or str(getattr(result, "artifacts", "")))[-300:]
        raise RuntimeError(f"a trivial evaluation came back {getattr(result, 'status', result)!r}: {detail}")


def _unavailable(exc: BaseException) -> dict:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"unavailable": f"{type(exc).__name__}: {text[:300]}"}


def _isolation(name: str, job, n: int, warmup: int) -> dict:
    from sandbox.registry import make_isolation

    try:
        isolation = make_isolation(name)
    except Exception as exc:  # noqa: BLE001 - any failure to start is a finding, not a crash
        return _unavailable(exc)
    try:
        return _summary(_time_each(lambda: isolation.run(job), n, warmup))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(exc)
    finally:
        try:
            isolation.close()
        except Exception:  # noqa: BLE001
            pass


def _executor(name: str, job, n: int, warmup: int) -> dict:
    """Sequential evaluations through an executor (placement + process sandbox), from asyncio."""
    from sandbox.registry import make_executor

    async def main() -> dict:
        try:
            executor = make_executor(name, "process", slots=cores())
        except Exception as exc:  # noqa: BLE001
            return _unavailable(exc)
        try:
            for _ in range(warmup):
                _check(await executor.evaluate(job))
            walls = []
            for _ in range(n):
                started = time.perf_counter()
                _check(await executor.evaluate(job))
                walls.append(time.perf_counter() - started)
            return _summary(walls)
        except Exception as exc:  # noqa: BLE001
            return _unavailable(exc)
        finally:
            try:
                await executor.close()
            except Exception:  # noqa: BLE001
                pass

    return asyncio.run(main())


def isolation_overhead(work: Path, *, evaluations: int, docker_evaluations: int,
                       include: tuple[str, ...] = ("process", "local", "docker", "ray")) -> dict:
    from sandbox.job import EvaluationJob

    task_dir = write_task(work / "task-trivial", TRIVIAL_EVALUATOR, name="bench_trivial")
    job = EvaluationJob(program_text="x = 1\n", task_dir=str(task_dir), timeout_s=60.0, memory_mb=1024)
    results: dict[str, dict] = {}
    if "process" in include:
        results["process sandbox"] = _isolation("process", job, evaluations, warmup=5)
    if "local" in include:
        results["local executor + process"] = _executor("local", job, evaluations, warmup=5)
    if "docker" in include:
        results["docker sandbox"] = _isolation("docker", job, docker_evaluations, warmup=2)
    if "ray" in include:
        results["ray executor + process"] = _executor("ray", job, evaluations, warmup=5)
    return results
