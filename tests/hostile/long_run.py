"""A long offline run on a trivially cheap task, with memory and time sampled along the way.

Not part of the test suite (it takes many minutes). Run it as::

    .venv/bin/python tests/hostile/long_run.py --iterations 20000 [--out DIR] [--concurrency 4]

Every ``--sample-every`` finished candidates it records the engine's resident memory, the fork
server's, the time per candidate over the last window and the size of ``run.db``; at the end it prints
the table and the verdict: resident memory and time per candidate should stay flat (no per-iteration
cost that grows with the archive) and ``run.db`` should grow linearly at a small number of bytes per
candidate. The samples are also written to ``DIR/long_run_samples.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evoforge.engine.config import RunConfig  # noqa: E402
from evoforge.engine.session import start_run  # noqa: E402
from evoforge.sandbox.forkserver import children_of  # noqa: E402

PROGRAM = '''"""A cheap program: the score is a polynomial of a few constants."""

# EVOLVE-BLOCK-START
def solve():
    a = 1.0
    b = 2.0
    c = 3.0
    return a * 0.5 + b * 0.25 - abs(c - 2.5)
# EVOLVE-BLOCK-END


def run():
    return solve()
'''

EVALUATOR = '''import importlib.util
import math


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("cheap_candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value = float(module.run())
    if not math.isfinite(value):
        return {"status": "invalid", "error": "not finite"}
    return {"score": max(-100.0, min(100.0, value)), "features": {"magnitude": min(abs(value), 10.0)}}
'''

TOML = '''name = "cheap"
description = "Maximise solve()."

[archive]
islands = 4
migration_interval = 50

[[descriptors]]
name = "magnitude"
range = [0.0, 10.0]
bins = 20

[[descriptors]]
name = "code_length"
range = [0.0, 40.0]
bins = 20

[limits]
timeout_s = 10
memory_mb = 512
'''


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def fork_server_pid() -> int | None:
    for pid in children_of(os.getpid()):
        try:
            if b"evoforge.sandbox.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


class Sampler:
    """A `Reporter`: called after every finished candidate."""

    def __init__(self, run_dir: Path, every: int) -> None:
        self.run_dir, self.every = run_dir, every
        self.samples: list[dict] = []
        self.last_done, self.last_time = 0, time.monotonic()
        self.start = self.last_time

    def update(self, snapshot) -> None:
        if snapshot.done - self.last_done < self.every and not snapshot.stop_reason:
            return
        now = time.monotonic()
        window = max(1, snapshot.done - self.last_done)
        server = fork_server_pid()
        db = self.run_dir / "run.db"
        wal = self.run_dir / "run.db-wal"
        sample = {
            "done": snapshot.done, "elapsed_s": round(now - self.start, 1),
            "ms_per_candidate": round(1000.0 * (now - self.last_time) / window, 2),
            "engine_rss_mb": round(rss_mb(), 1),
            "server_rss_mb": round(rss_mb(server), 1) if server else None,
            "db_mb": round((db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20, 2),
            "best": snapshot.best_score, "coverage": round(snapshot.coverage, 3),
            "statuses": dict(snapshot.statuses),
        }
        self.samples.append(sample)
        self.last_done, self.last_time = snapshot.done, now
        print(json.dumps(sample), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--eval-slots", type=int, default=2)
    parser.add_argument("--sample-every", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    root = Path(args.out or tempfile.mkdtemp(prefix="evoforge-long-run-"))
    task = root / "task"
    task.mkdir(parents=True, exist_ok=True)
    (task / "initial_program.py").write_text(PROGRAM)
    (task / "evaluator.py").write_text(EVALUATOR)
    (task / "task.toml").write_text(TOML)
    run_dir = root / "run"
    sampler = Sampler(run_dir, args.sample_every)
    config = RunConfig(task=str(task), iterations=args.iterations, llm=("offline",), concurrency=args.concurrency,
                       eval_slots=args.eval_slots, seed=1)
    outcome = start_run(config, out=run_dir, reporter=sampler)
    samples = sampler.samples
    (root / "long_run_samples.json").write_text(json.dumps(samples, indent=1))

    db_bytes = (run_dir / "run.db").stat().st_size
    print(f"\nrun directory: {run_dir}  stopped: {outcome.snapshot.stop_reason}  candidates: {outcome.snapshot.done}")
    print(f"run.db: {db_bytes / 2**20:.1f} MiB = {db_bytes / max(1, outcome.snapshot.done):.0f} bytes per candidate")
    if len(samples) >= 4:
        early, late = samples[1], samples[-2]      # skip the warm-up window and the final partial one
        print(f"engine RSS: {early['engine_rss_mb']} MiB at {early['done']} -> {late['engine_rss_mb']} MiB at "
              f"{late['done']}; fork server RSS {early['server_rss_mb']} -> {late['server_rss_mb']} MiB")
        print(f"time per candidate: {early['ms_per_candidate']} ms (window ending {early['done']}) -> "
              f"{late['ms_per_candidate']} ms (window ending {late['done']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
