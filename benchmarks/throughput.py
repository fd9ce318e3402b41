"""Benchmarks 1 and 3: the whole pipeline against a slow LLM, and core utilisation on CPU-bound work.

1. *Pipeline throughput.* evoforge, through its Python API, against the fake OpenAI-compatible server
   (`benchmarks.fake_llm`) with a fixed reply latency, on the cheap task. The physical bound is
   ``min(concurrency / latency, evaluation capacity)`` where the capacity is ``cores / mean wall
   time of one evaluation`` through the same process sandbox, measured separately, one at a time.
   AlphaEvolve's asynchronous pipeline (Novikov et al. 2025, §2.6) should sit near that bound. The
   rate is the steady state — candidates stored per second between the first and the last — since the
   pipeline's fill (one LLM latency before anything can finish) is latency, not throughput; the rate
   including the fill is in the JSON too.
3. *Core utilisation.* The burn task (a fixed amount of CPU per evaluation) with an instant LLM:
   ``sum of evaluation CPU seconds / (wall seconds × cores)``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import (BURN_EVALUATOR, CHEAP_EVALUATOR, FakeLLM, cores, fake_llm, machine_cpu_s,
                               run_span, write_task)

__all__ = ["ThroughputResult", "measure_eval_capacity", "run_evoforge", "pipeline_throughput", "cpu_utilisation"]


@dataclass(frozen=True)
class ThroughputResult:
    latency_s: float
    concurrency: int
    proposals: int
    evaluated: int
    rejected: int
    wall_s: float                # the server's first request → the last candidate stored
    evals_per_s_with_fill: float # evaluated / wall_s: includes the fill (one latency before any result)
    evals_per_s: float           # steady state: first → last candidate stored (see RunSpan.steady_per_s)
    bound_per_s: float
    ratio: float                 # evals_per_s / bound_per_s
    engine_cpu_ms_per_candidate: float  # the engine process's CPU (all threads) / proposals: robust to load

    def to_dict(self) -> dict:
        return asdict(self)


def measure_eval_capacity(task_dir: Path, evaluations: int) -> dict:
    """Mean wall time of one evaluation through the process sandbox (warm fork server, one at a time),
    and the capacity ``cores / mean`` in evaluations per second."""
    from evoforge.engine.task import load_task
    from evoforge.sandbox.job import EvaluationJob
    from evoforge.sandbox.registry import make_isolation

    task = load_task(str(task_dir))
    job = EvaluationJob(program_text=task.initial_program, task_dir=str(task.path),
                        evaluator_file=task.evaluator_file, timeout_s=task.limits.timeout_s,
                        memory_mb=task.limits.memory_mb)
    isolation = make_isolation("process")
    try:
        for _ in range(3):  # start the fork server and warm the page cache
            isolation.run(job)
        walls = []
        for _ in range(evaluations):
            started = time.perf_counter()
            result = isolation.run(job)
            walls.append(time.perf_counter() - started)
            if result.status != "ok":
                raise RuntimeError(f"the benchmark task failed its own evaluation: {result.status} "
                                   f"{result.stderr[-300:]}")
    finally:
        isolation.close()
    mean_s = statistics.fmean(walls)
    return {"evaluations": evaluations, "mean_eval_s": mean_s, "cores": cores(), "capacity_per_s": cores() / mean_s}


def run_evoforge(task_dir: Path, llm: FakeLLM, out: Path, *, iterations: int, concurrency: int,
                 seed: int = 0, profile_to: Path | None = None):
    """One evoforge run against the fake server; returns its `RunSpan`, timed from the server's first
    request, and the engine process's CPU seconds (startup included). ``profile_to`` writes a
    pyinstrument profile of the engine process there (text)."""
    base_url = llm.base_url
    from evoforge.engine.config import RunConfig
    from evoforge.engine.session import start_run

    config = RunConfig(task=str(task_dir), iterations=iterations, llm=(f"openai-compatible:bench@{base_url}",),
                       concurrency=concurrency, seed=seed)
    cpu_started = time.process_time()
    if profile_to is None:
        start_run(config, out=out)
    else:
        try:
            from pyinstrument import Profiler
        except ImportError as exc:
            raise RuntimeError("--profile needs pyinstrument (a dev extra): pip install -e '.[dev]'") from exc

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            start_run(config, out=out)
        finally:
            profiler.stop()
            profile_to.parent.mkdir(parents=True, exist_ok=True)
            profile_to.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return run_span(out, since=llm.stats()["first_request_at"]), time.process_time() - cpu_started


def pipeline_throughput(work: Path, *, latencies_s: tuple[float, ...], iterations: int, concurrency: int,
                        capacity_evals: int, profile_dir: Path | None = None) -> dict:
    """One evoforge run per latency, each right after measuring the evaluation capacity (on a shared
    machine the capacity drifts with the load, so each bound is taken next to its run)."""
    task_dir = write_task(work / "task-cheap", CHEAP_EVALUATOR, name="bench_cheap")
    # One-time imports up front, so the engine's CPU per candidate is the pipeline's, not Python's.
    import openai  # noqa: F401
    import evoforge.engine.session  # noqa: F401
    runs = []
    for latency in latencies_s:
        capacity = measure_eval_capacity(task_dir, capacity_evals)
        with fake_llm(latency) as llm:
            out = work / f"evoforge-cheap-{latency:g}s"
            profile_to = profile_dir / f"profile-evoforge-{latency:g}s.txt" if profile_dir else None
            span, engine_cpu_s = run_evoforge(task_dir, llm, _fresh(out), iterations=iterations,
                                              concurrency=concurrency, profile_to=profile_to)
        llm_bound = concurrency / latency if latency > 0 else float("inf")
        bound = min(llm_bound, capacity["capacity_per_s"])
        rate = span.steady_per_s
        runs.append({**ThroughputResult(
            latency_s=latency, concurrency=concurrency, proposals=span.proposals, evaluated=span.evaluated,
            rejected=span.rejected, wall_s=span.wall_s,
            evals_per_s_with_fill=span.evaluated / span.wall_s if span.wall_s > 0 else 0.0,
            evals_per_s=rate, bound_per_s=bound, ratio=rate / bound,
            engine_cpu_ms_per_candidate=1e3 * engine_cpu_s / max(span.proposals, 1)).to_dict(),
            "capacity": capacity})
    return {"runs": runs, "task_dir": str(task_dir)}


def cpu_utilisation(work: Path, *, iterations: int, burn_units: int, concurrency: int) -> dict:
    """Evaluation CPU seconds / (wall seconds × cores) over a run of CPU-bound evaluations."""
    task_dir = write_task(work / "task-burn", BURN_EVALUATOR.format(units=burn_units), name="bench_burn")
    with fake_llm(0.0) as llm:
        out = _fresh(work / "evoforge-burn")
        busy0, total0 = machine_cpu_s()
        span, _ = run_evoforge(task_dir, llm, out, iterations=iterations, concurrency=concurrency)
        busy1, total1 = machine_cpu_s()
    n = cores()
    occupancy, eval_wall_s = _slot_occupancy(out)
    return {"cores": n, "proposals": span.proposals, "evaluated": span.evaluated, "wall_s": span.wall_s,
            "eval_cpu_s": span.burn_cpu_s,
            "mean_eval_cpu_s": span.burn_cpu_s / span.evaluated if span.evaluated else float("nan"),
            "utilisation": span.burn_cpu_s / (span.wall_s * n) if span.wall_s > 0 else 0.0,
            # The two factors of the utilisation: how full the engine kept the slots, and how much of
            # a core each evaluation got while running (below 1 when other work shares the machine).
            "slot_occupancy": occupancy / n,
            "eval_cpu_per_wall": span.burn_cpu_s / eval_wall_s if eval_wall_s > 0 else float("nan"),
            # All cores of the machine, whoever used them, over the whole run (startup included).
            "machine_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan")}


def _slot_occupancy(run_dir: Path) -> tuple[float, float]:
    """Mean number of evaluations running over the run (each spans ``finished_at - eval_s`` to
    ``finished_at``), and their summed wall seconds."""
    import sqlite3

    conn = sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT finished_at - eval_s, finished_at FROM programs"
                            " WHERE iteration > 0 AND eval_s IS NOT NULL").fetchall()
    finally:
        conn.close()
    if not rows:
        return 0.0, 0.0
    busy = sum(end - start for start, end in rows)
    span = max(end for _, end in rows) - min(start for start, _ in rows)
    return (busy / span if span > 0 else 0.0), busy


def _fresh(path: Path) -> Path:
    """A run directory path that does not exist yet (earlier bench runs are removed)."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":  # a quick manual check: python -m benchmarks.throughput
    import json
    import sys

    from benchmarks.common import WORK_DIR

    result = pipeline_throughput(WORK_DIR, latencies_s=(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5,),
                                 iterations=int(sys.argv[2]) if len(sys.argv) > 2 else 200, concurrency=16,
                                 capacity_evals=50,
                                 profile_dir=WORK_DIR / "profiles" if "--profile" in sys.argv else None)
    print(json.dumps(result, indent=2))
