"""Benchmark 5: scale — the archive and the store with many programs, and the engine's memory.

*Archive and store.* ``programs`` synthetic candidates (seeded features and fitness, a realistic
program text) are inserted into per-island MAP-Elites archives (`evoforge.archive.islands.IslandArchives`)
and written to a run database (`evoforge.archive.store.Store`), one transaction per candidate with its
insertion event — what the engine does per candidate. Then parents are sampled with everything
stored: the archive draw alone, and the engine's full read (parent + inspirations drawn, their rows
fetched from SQLite).

*Memory.* An offline run of the cheap task in a fresh interpreter, sampling its resident set size
(VmRSS) as candidates finish. A full 20 000-candidate run takes far longer than `make bench` should
(the offline operator and the evaluations cost real CPU), so by default the run stops at
``memory_candidates`` and the growth per candidate, fitted over the samples past the first 1 000,
is extrapolated to 20 000 — reported as such; ``--full`` runs the 20 000 for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CHEAP_EVALUATOR, PROGRAM, REPO_ROOT, write_task

__all__ = ["archive_scale", "engine_memory"]


def archive_scale(*, programs: int, samples: int, seed: int = 0) -> dict:
    from evoforge.archive.islands import ArchiveConfig, DescriptorSpec, IslandArchives
    from evoforge.archive.store import ArchiveEvent, CandidateRecord, Store

    rng = np.random.default_rng(seed)
    descriptors = [DescriptorSpec("slope", 0.0, 6.0, 50), DescriptorSpec("code_length", 0.0, 60.0, 50)]
    config = ArchiveConfig(kind="grid", islands=4)
    islands = IslandArchives(descriptors=descriptors, config=config, seed=seed)
    fitness = rng.normal(size=programs)
    features = rng.uniform([0.0, 0.0], [6.0, 60.0], size=(programs, 2))

    started = time.perf_counter()
    insertions = []
    for i in range(programs):
        insertions.append(islands.add(i % config.islands, i + 1, float(fitness[i]), features[i]))
    insert_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="evoforge-bench-") as tmp:
        store = Store.create(Path(tmp) / "run.db", {"bench": True})
        try:
            started = time.perf_counter()
            for i, ins in enumerate(insertions):
                record = CandidateRecord(
                    id=i + 1, iteration=i + 1, code=PROGRAM.replace("1.5", f"{fitness[i]:.6f}"), status="ok",
                    parent_id=max(1, i // 2), island=ins.island, code_hash=f"{i:064x}", edit="<edit>",
                    edit_kind="diff", score=float(fitness[i]), fitness=float(fitness[i]),
                    features={"slope": float(features[i, 0]), "code_length": float(features[i, 1])},
                    metrics={"error": 0.5}, model="bench", created_at=time.time())
                event = ArchiveEvent("insert", i + 1, ins.island, ins.status, ins.improvement, ins.cell,
                                     iteration=i + 1)
                store.add_candidate(record, [event])
            store_s = time.perf_counter() - started

            draw_rng = np.random.default_rng([seed, 1])
            started = time.perf_counter()
            for j in range(samples):
                island = j % config.islands
                parent = islands.sample_parent(island, draw_rng)
                islands.sample_inspirations(island, config.num_inspirations, draw_rng, exclude=[parent])
            sample_s = time.perf_counter() - started

            started = time.perf_counter()
            for j in range(samples):
                island = j % config.islands
                parent = islands.sample_parent(island, draw_rng)
                chosen = islands.sample_inspirations(island, config.num_inspirations, draw_rng, exclude=[parent])
                store.candidate(parent)
                [store.candidate(c) for c in chosen]
            read_s = time.perf_counter() - started
            stored = store.count()
        finally:
            store.close()
    elites = sum(len(islands.elites(i)) for i in range(config.islands))
    return {"programs": programs, "stored": stored, "elites": elites, "cells_per_island": islands.cells,
            "archive_inserts_per_s": programs / insert_s, "store_writes_per_s": programs / store_s,
            "parent_samples_per_s": samples / sample_s, "parent_samples_with_reads_per_s": samples / read_s}


_MEMORY_SCRIPT = r'''
import json, sys, time
sys.path.insert(0, {repo!r})
from evoforge.engine.config import RunConfig
from evoforge.engine.session import start_run

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0

class Sampler:
    def __init__(self):
        self.samples, self.next_at, self.started = [], {every}, time.monotonic()
    def update(self, snapshot):
        if snapshot.done >= self.next_at:
            self.samples.append((snapshot.done, rss_mb(), time.monotonic() - self.started))
            self.next_at += {every}

sampler = Sampler()
config = RunConfig(task={task!r}, iterations={iterations}, llm=("offline",), concurrency=8, seed=0)
start_run(config, out={out!r}, reporter=sampler)
print("RESULT " + json.dumps({{"samples": sampler.samples, "final_rss_mb": rss_mb()}}), flush=True)
'''


def engine_memory(work: Path, *, candidates: int, every: int, target: int = 20_000, timeout_s: float = 900) -> dict:
    """RSS of an engine process after 1 000 and ``target`` candidates (measured if reached, otherwise
    extrapolated from the growth rate past 1 000 and reported as such)."""
    import shutil

    task_dir = write_task(work / "task-cheap", CHEAP_EVALUATOR, name="bench_cheap")
    out = work / "evoforge-memory"
    if out.exists():
        shutil.rmtree(out)
    script = _MEMORY_SCRIPT.format(repo=str(REPO_ROOT), every=every, task=str(task_dir),
                                   iterations=candidates, out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout_s)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"unavailable": f"the memory run failed (exit {proc.returncode}): {tail[0][:300]}"}
    data = json.loads(line[len("RESULT "):])
    samples = data["samples"]  # [done, rss_mb, seconds]
    result: dict = {"candidates_run": candidates, "samples": samples}
    at = {int(done): rss for done, rss, _ in samples}
    first = min((d for d in at if d >= min(1000, candidates)), default=None)
    result["rss_mb_at_1000"] = at.get(1000) if 1000 in at else (at[first] if first is not None else None)
    result["rss_at_label"] = 1000 if 1000 in at else first
    past = [(d, r) for d, r, _ in samples if d >= min(1000, candidates // 2)]
    if len(past) >= 2:
        slope_mb, intercept = np.polyfit([d for d, _ in past], [r for _, r in past], 1)
        result["growth_kib_per_candidate"] = float(slope_mb * 1024)
    else:
        slope_mb, intercept = float("nan"), float("nan")
        result["growth_kib_per_candidate"] = None
    if target in at:
        result["rss_mb_at_target"], result["target_measured"] = at[target], True
    else:
        result["rss_mb_at_target"] = float(intercept + slope_mb * target) if past else None
        result["target_measured"] = False
    result["target"] = target
    result["candidates_per_s"] = samples[-1][0] / samples[-1][2] if samples and samples[-1][2] > 0 else None
    return result
