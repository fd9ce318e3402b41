"""Benchmark 4: what isolation and placement cost per evaluation.

A *trivial* evaluation (``evaluate`` returns a constant) is run one at a time, so its wall time is
the machinery's overhead: the process sandbox (a fork from the warm fork server), the docker sandbox
(a fresh container per evaluation) and Ray placement (a Ray task that runs the process sandbox on a
worker). Two more process-sandbox rows show what candidates cost: the trivial evaluation plus one
candidate process (``run_candidate``: forked from the job's zygote into its own namespaces and
filesystem), and a real circle_packing evaluation of its initial program. Each backend is built
through `evoforge.sandbox.registry`, exactly as ``--sandbox``/``--executor`` build it; one that cannot
start here is reported as ``unavailable: <reason>``, never a crash.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from benchmarks.common import TRIVIAL_EVALUATOR, cores, percentile, write_task

__all__ = ["isolation_overhead"]

NESTED_EVALUATOR = '''from evoforge.evaluators.candidate import run_candidate

def evaluate(program_path):
    return {"score": float(run_candidate(program_path, "f", timeout_s=30))}
'''


def _summary(walls_s: list[float]) -> dict:
    return {"evaluations": len(walls_s), "median_ms": 1e3 * statistics.median(walls_s),
            "p95_ms": 1e3 * percentile(walls_s, 95), "mean_ms": 1e3 * statistics.fmean(walls_s)}


def _check(result) -> None:
    if getattr(result, "status", None) != "ok":
        detail = (getattr(result, "stderr", "") or str(getattr(result, "artifacts", "")))[-300:]
        raise RuntimeError(f"a trivial evaluation came back {getattr(result, 'status', result)!r}: {detail}")


def _unavailable(exc: BaseException) -> dict:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"unavailable": f"{type(exc).__name__}: {text[:300]}"}


class _Backend:
    """One way to run an evaluation, behind a uniform async ``once(job)``."""

    def __init__(self, name: str, n: int, job=None) -> None:
        self.name, self.n = name, n
        self.job = job               # its own job (circle_packing, a candidate process), else the shared one
        self.walls: list[float] = []
        self.failure: dict | None = None
        self._isolation = None
        self._executor = None

    def start(self, kind: str, backend: str) -> None:
        from evoforge.sandbox.registry import make_executor, make_isolation

        try:
            if kind == "isolation":
                self._isolation = make_isolation(backend)
            else:
                self._executor = make_executor(backend, "process", slots=cores())
        except Exception as exc:  # noqa: BLE001 - any failure to start is a finding, not a crash
            self.failure = _unavailable(exc)

    async def once(self, job, *, record: bool) -> None:
        if self.failure is not None or (record and len(self.walls) >= self.n):
            return
        job = self.job or job
        started = time.perf_counter()
        try:
            if self._isolation is not None:
                result = self._isolation.run(job)  # blocking on purpose: one evaluation at a time
            else:
                result = await self._executor.evaluate(job)
            _check(result)
        except Exception as exc:  # noqa: BLE001
            self.failure = _unavailable(exc)
            return
        if record:
            self.walls.append(time.perf_counter() - started)

    async def close(self) -> None:
        try:
            if self._isolation is not None:
                self._isolation.close()
            if self._executor is not None:
                await self._executor.close()
        except Exception:  # noqa: BLE001
            pass

    def summary(self) -> dict:
        return self.failure or _summary(self.walls)


def isolation_overhead(work: Path, *, evaluations: int, docker_evaluations: int,
                       include: tuple[str, ...] = ("process", "local", "docker", "ray")) -> dict:
    """Median and p95 wall time per trivial evaluation of each backend in ``include``.

    The backends take turns, one evaluation each per round (docker only every few rounds: it is much
    slower), so a change of load on a shared machine hits them all alike rather than whichever ran
    during it.
    """
    from evoforge.sandbox.job import EvaluationJob

    task_dir = write_task(work / "task-trivial", TRIVIAL_EVALUATOR, name="bench_trivial")
    job = EvaluationJob(program_text="x = 1\n", task_dir=str(task_dir), timeout_s=60.0, memory_mb=1024)
    # The same trivial evaluation plus one candidate process (run_candidate): what a nested, isolated
    # candidate adds; and a real circle_packing evaluation (its initial program), as `make run` pays it.
    nested_dir = write_task(work / "task-nested", NESTED_EVALUATOR, name="bench_nested")
    nested = EvaluationJob(program_text="def f():\n    return 1\n", task_dir=str(nested_dir), timeout_s=60.0,
                           memory_mb=1024)
    packing_dir = Path(__file__).resolve().parents[1] / "tasks" / "circle_packing"
    packing = EvaluationJob(program_text=(packing_dir / "initial_program.py").read_text(),
                            task_dir=str(packing_dir), timeout_s=60.0, memory_mb=2048)
    plan = [("process", "process sandbox", "isolation", evaluations),
            ("process", "process sandbox + 1 candidate process", "isolation", max(1, evaluations // 3), nested),
            ("process", "process sandbox, circle_packing", "isolation", max(1, evaluations // 3), packing),
            ("local", "local executor + process", "executor", evaluations),
            ("docker", "docker sandbox", "isolation", docker_evaluations),
            ("ray", "ray executor + process", "executor", evaluations)]
    backends = []
    for key, label, kind, n, *own in plan:
        if key in include:
            backend = _Backend(label, n, *own)
            backend.start(kind, key)
            backends.append(backend)

    async def main() -> None:
        try:
            for _ in range(3):  # warm-up: fork servers, Ray workers, the docker image
                for backend in backends:
                    await backend.once(job, record=False)
            rounds = max((b.n for b in backends), default=0)
            for r in range(rounds):
                for backend in backends:
                    if r % max(1, rounds // max(backend.n, 1)) == 0:  # spread the slow ones out
                        await backend.once(job, record=True)
        finally:
            for backend in backends:
                await backend.close()

    asyncio.run(main())
    return {backend.name: backend.summary() for backend in backends}
