"""Placement without a cluster: slots counted from a node table, the engine following slots that
change mid-run, the default concurrency from the slots, and placement stored in run.db and shown.

These need no Ray: `ClusterView` reads whatever object has Ray's ``nodes()``, here a plain one that
returns node tables in Ray's format (a stand-in for the GCS; the real thing is in test_ray_cluster.py).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

from evoforge.archive.run import Run
from evoforge.archive.store import CandidateRecord, Store
from evoforge.engine.config import RunConfig
from evoforge.engine.llm import as_spec, make_llm
from evoforge.engine.loop import Engine
from evoforge.engine.rundir import RunDir
from evoforge.engine.session import size_concurrency
from evoforge.engine.summary import format_summary, summarize
from evoforge.engine.task import load_task
from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.sandbox.ray_cluster import ClusterView, describe_nodes, node_slots
from fakes.tasks import write_tiny_task

HEAD = {"NodeID": "aa" * 28, "Alive": True, "NodeManagerAddress": "127.0.0.1",
        "Resources": {"CPU": 2.0, "memory": 1e9, "node:127.0.0.1": 1.0, "node:__internal_head__": 1.0}}
GPU = {"NodeID": "bb" * 28, "Alive": True, "NodeManagerAddress": "127.0.0.1",
       "Resources": {"CPU": 4.0, "GPU": 2.0, "accel": 1.0, "object_store_memory": 8e7}}
DEAD = {**GPU, "NodeID": "cc" * 28, "Alive": False}


class NodeTable:
    """Ray's ``nodes()`` over a list the test changes."""

    def __init__(self, nodes: list[dict]) -> None:
        self.table = nodes
        self.reads = 0

    def nodes(self) -> list[dict]:
        self.reads += 1
        return self.table


def request(cpus=1.0, gpus=0.0, **custom) -> dict:
    return {"num_cpus": cpus, "num_gpus": gpus, "resources": custom}


def test_slots_per_node_count_only_what_fits_there():
    assert node_slots(request(), HEAD["Resources"]) == 2
    assert node_slots(request(gpus=1), HEAD["Resources"]) == 0
    assert node_slots(request(gpus=1), GPU["Resources"]) == 2
    assert node_slots(request(gpus=0.5), GPU["Resources"]) == 4        # fractional GPUs pack
    assert node_slots(request(cpus=0.3), GPU["Resources"]) == 13       # floor(4 / 0.3)
    assert node_slots(request(gpus=1, accel=1), GPU["Resources"]) == 1  # the scarcest resource decides


def test_cluster_view_sums_live_nodes_and_follows_changes():
    table = NodeTable([HEAD, GPU, DEAD])
    now = [0.0]
    view = ClusterView(table, ttl_s=1.0, clock=lambda: now[0])
    assert view.slots(request()) == 6 and view.slots(request(gpus=1)) == 2
    table.table = [HEAD]                    # the GPU node is lost
    assert view.slots(request(gpus=1)) == 2  # within the cache's second, not read again
    now[0] = 1.5
    assert view.slots(request(gpus=1)) == 0 and view.slots(request()) == 2
    table.table = [HEAD, GPU]
    assert view.refresh() and view.slots(request(gpus=1)) == 2  # refresh reads at once
    line = describe_nodes(view.nodes())
    assert line == "node aaaaaaaa (127.0.0.1): CPU=2; node bbbbbbbb (127.0.0.1): CPU=4, GPU=2, accel=1"


class GrowingExecutor:
    """Slots that grow from 1 to 3 after the fifth evaluation starts; records the most in flight."""

    def __init__(self) -> None:
        self.slots = 1
        self.started = 0
        self.running = 0
        self.most = 0

    async def evaluate(self, job) -> EvaluationResult:
        self.started += 1
        if self.started == 5:
            self.slots = 3
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.05)
            return EvaluationResult(status=Status.OK, score=1.0, features={"slope": 1.0})
        finally:
            self.running -= 1


def test_the_engine_follows_slots_that_grow_mid_run(tmp_path):
    task = load_task(str(write_tiny_task(tmp_path / "tiny")))
    config = RunConfig(task=str(task.path), llm=("offline",), concurrency=1, iterations=30)
    config = config.replace(concurrency=2)  # pipelined: in flight = concurrency + slots
    executor = GrowingExecutor()
    run_dir = RunDir.create(tmp_path / "run", config.to_dict())
    try:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=make_llm([as_spec("offline")]),
                        executor=executor)
        asyncio.run(engine.run(30))
        assert run_dir.store.count("iteration > 0") == 30
    finally:
        run_dir.close()
    # the offline operator answers at once, so evaluations pile up to the bound: 2 + 1 before the
    # growth, 2 + 3 after; a bound read once at the start would have stayed at 3
    assert executor.most > 3


def test_default_concurrency_comes_from_the_clusters_slots(tmp_path):
    class Slots:
        slots = 7

    base = RunConfig(task="t", executor="ray", concurrency=4)
    assert size_concurrency(base, Slots()).concurrency == 4  # --concurrency given: kept
    offline = base.replace(extra={"auto_concurrency": "offline"})
    assert size_concurrency(offline, Slots()).concurrency == 14
    assert size_concurrency(base.replace(extra={"auto_concurrency": "llm"}), Slots()).concurrency == 8
    assert size_concurrency(offline.replace(executor="local"), Slots()).concurrency == 4


def _record(iteration: int, placement: dict) -> CandidateRecord:
    return CandidateRecord(iteration=iteration, code=f"x = {iteration}", status=Status.OK, score=1.0,
                           fitness=1.0, features={"slope": 1.0}, placement=placement)


def test_placement_is_stored_counted_and_shown(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    run_dir = RunDir.create(tmp_path / "run", RunConfig(task=str(task), executor="ray").to_dict())
    store = run_dir.store
    store.add_candidate(_record(0, {"node_id": "aa" * 28, "node_ip": "127.0.0.1", "cuda_visible_devices": "0",
                                    "attempts": 1}))
    store.add_candidate(_record(1, {"node_id": "bb" * 28, "node_ip": "127.0.0.1", "cuda_visible_devices": "1",
                                    "attempts": 3, "lost": ["NodeDiedError: ...", "WorkerCrashedError: ..."]}))
    store.add_candidate(_record(2, {"attempts": 3, "lost": ["a", "b", "c"]}))
    store.add_candidate(_record(3, {}))  # a local evaluation, or a rejected proposal
    assert [dict(r.placement).get("attempts") for r in store.candidates()] == [1, 3, 3, None]
    run_dir.close()
    with Run.open(tmp_path / "run") as run:
        counts = run.placements()
    assert counts["retried"] == 2 and counts["extra_attempts"] == 4 and counts["lost"] == 1
    assert {n: v["evaluations"] for n, v in counts["nodes"].items()} == {"aa" * 28: 1, "bb" * 28: 1}
    shown = format_summary(summarize(tmp_path / "run"))
    assert "placement: 2 nodes, 2 evaluations retried (4 extra attempts), 1 lost on every attempt" in shown
    assert "node bbbbbbbb (127.0.0.1): 1 evaluations, GPUs 1" in shown
    json.dumps(summarize(tmp_path / "run"))


def test_a_run_db_from_before_placement_opens_and_gains_the_column(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    run_dir = RunDir.create(tmp_path / "run", RunConfig(task=str(task)).to_dict())
    run_dir.store.add_candidate(_record(0, {}))
    run_dir.close()
    with sqlite3.connect(tmp_path / "run" / "run.db") as conn:   # as an older evoforge wrote it
        conn.execute("ALTER TABLE programs DROP COLUMN placement")
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        assert [dict(r.placement) for r in store.candidates()] == [{}]
    with Run.open(tmp_path / "run") as run:
        assert run.placements()["nodes"] == {}
    with Store.open(tmp_path / "run" / "run.db") as store:
        store.add_candidate(_record(1, {"attempts": 2}))
        assert [dict(r.placement) for r in store.candidates()] == [{}, {"attempts": 2}]
