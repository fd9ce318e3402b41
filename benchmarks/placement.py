"""Benchmark 7: Ray placement over several (simulated) nodes.

Ray's own multi-node harness (``ray.cluster_utils.Cluster``) starts a head and N-1 worker nodes on this
machine, each a raylet with one logical CPU, all on 127.0.0.1. Two figures:

- *throughput*: ``evaluations`` sleeping evaluations (``sleep_s`` each, no CPU) submitted at once
  through `RayExecutor`; the bound is ``slots / sleep_s`` evaluations per second (N one-CPU nodes
  hold N at once), and the ratio says how close placement gets to it as N grows. Sleep, not work,
  so that two shared cores can stand in for N machines.
- *overhead*: a trivial evaluation run one at a time on the N-node cluster, against the same
  evaluation through the local executor with the same process sandbox: what the multi-node path
  (task submission, scheduling on another raylet, the result's trip back) adds per evaluation.

Each cluster gets a warm-up round first (one evaluation per slot), so worker start-up and the first
fetch of the task folder are not counted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import TRIVIAL_EVALUATOR, percentile, write_task

__all__ = ["placement"]

SLEEPING_EVALUATOR = '''import time


def evaluate(program_path):
    time.sleep({sleep_s})
    return {{"combined_score": 1.0}}
'''

OBJECT_STORE_BYTES = 80 * 1024 * 1024


def _job(task_dir: Path):
    from evoforge.sandbox.job import EvaluationJob

    return EvaluationJob(program_text=(task_dir / "initial_program.py").read_text(), task_dir=str(task_dir),
                         timeout_s=60)


async def _gather(executor, jobs) -> list:
    return await asyncio.gather(*(executor.evaluate(job) for job in jobs))


def _one_cluster(nodes: int, sleeping: Path, trivial: Path, *, evaluations: int, sleep_s: float,
                 overhead_evals: int) -> dict:
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from evoforge.sandbox.ray_executor import RayExecutor

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # every node on 127.0.0.1, not the interface
    ray_constants.ENABLE_RAY_CLUSTER = False
    node_args = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=OBJECT_STORE_BYTES)
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        executor = RayExecutor("process", resources={"num_cpus": 1})
        slots = executor.slots

        async def measure() -> tuple[float, list[float], set[str]]:
            await _gather(executor, [_job(sleeping) for _ in range(slots)])   # warm-up: workers, task files
            started = time.perf_counter()
            results = await _gather(executor, [_job(sleeping) for _ in range(evaluations)])
            wall_s = time.perf_counter() - started
            bad = [r for r in results if r.status != "ok"]
            if bad:
                raise RuntimeError(f"a sleeping evaluation came back {bad[0].status}: {bad[0].artifacts}")
            await executor.evaluate(_job(trivial))
            walls = []
            for _ in range(overhead_evals):
                t0 = time.perf_counter()
                await executor.evaluate(_job(trivial))
                walls.append(time.perf_counter() - t0)
            return wall_s, walls, {r.placement["node_id"] for r in results}

        wall_s, walls, used = asyncio.run(measure())
        asyncio.run(executor.close())
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    bound = slots / sleep_s
    return {"nodes": nodes, "slots": slots, "nodes_used": len(used), "evaluations": evaluations,
            "wall_s": wall_s, "evals_per_s": evaluations / wall_s, "bound_per_s": bound,
            "ratio": evaluations / wall_s / bound,
            "trivial_median_ms": 1e3 * statistics.median(walls), "trivial_p95_ms": 1e3 * percentile(walls, 95)}


def _local_trivial_ms(trivial: Path, evaluations: int) -> float:
    from evoforge.sandbox.local import LocalExecutor
    from evoforge.sandbox.process import ProcessSandbox

    executor = LocalExecutor(ProcessSandbox(), slots=1)

    async def measure() -> list[float]:
        try:
            await executor.evaluate(_job(trivial))
            walls = []
            for _ in range(evaluations):
                t0 = time.perf_counter()
                await executor.evaluate(_job(trivial))
                walls.append(time.perf_counter() - t0)
            return walls
        finally:
            await executor.close()

    return 1e3 * statistics.median(asyncio.run(measure()))


def placement(work: Path, *, node_counts: tuple[int, ...] = (1, 2, 4), evaluations_per_node: int = 8,
              sleep_s: float = 0.5, overhead_evals: int = 20) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"unavailable": "Ray is not installed (pip install 'evoforge[ray]')"}
    # Ray's socket paths have a length limit: task folders under a short temporary root.
    root = Path(tempfile.mkdtemp(prefix="efplace", dir=str(work)))
    sleeping = write_task(root / "sleep", SLEEPING_EVALUATOR.format(sleep_s=sleep_s), name="sleep")
    trivial = write_task(root / "trivial", TRIVIAL_EVALUATOR, name="trivial")
    local_ms = _local_trivial_ms(trivial, overhead_evals)
    runs = [_one_cluster(n, sleeping, trivial, evaluations=evaluations_per_node * n, sleep_s=sleep_s,
                         overhead_evals=overhead_evals) for n in node_counts]
    for run in runs:
        run["overhead_ms"] = run["trivial_median_ms"] - local_ms
    return {"sleep_s": sleep_s, "local_trivial_median_ms": local_ms, "runs": runs}
