"""What every benchmark shares: the work folder, the fake-LLM process, the task folders, run-db reads.

The benchmark tasks are written into the work folder (never imported from ``tests/``): a *cheap*
task whose evaluation costs a few milliseconds, a *burn* task whose evaluation spends a fixed amount
of CPU, and a *trivial* task whose ``evaluate`` does nothing (pure isolation overhead). Their
evaluators follow the common contract — ``evaluate(program_path) -> dict`` with ``combined_score``
— so the very same folder drives evoforge and OpenEvolve.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["REPO_ROOT", "WORK_DIR", "cores", "fake_llm", "FakeLLM", "write_task", "rss_mb", "machine_cpu_s",
           "percentile", "RunSpan", "run_span", "PROGRAM", "CHEAP_EVALUATOR", "BURN_EVALUATOR", "TRIVIAL_EVALUATOR"]

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = REPO_ROOT / "benchmarks" / ".work"


def cores() -> int:
    """Cores this process may use (the affinity mask, as the local executor's default slots)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


PROGRAM = '''"""Approximate 3 * x + 1 with a few constants (a toy to evolve)."""

# EVOLVE-BLOCK-START
def f(x):
    a = 1.5
    b = 0.25
    c = 0.0
    return a * x + b + c * x * x
# EVOLVE-BLOCK-END


def run():
    return [f(x) for x in range(10)]
'''

# A few milliseconds: import the candidate, call it, score it.
CHEAP_EVALUATOR = '''import importlib.util


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ys = [float(y) for y in module.run()]
    error = sum(abs(y - (3.0 * x + 1.0)) for x, y in enumerate(ys)) / len(ys)
    score = 1.0 / (1.0 + error)
    return {"combined_score": score, "score": score, "error": error,
            "features": {"slope": (ys[-1] - ys[0]) / 9.0}}
'''

# A fixed amount of CPU per evaluation (BURN_UNITS iterations of integer arithmetic), reporting the
# CPU seconds it spent so the benchmark can add them up (this process's own CPU clock).
BURN_EVALUATOR = '''import importlib.util
import time

BURN_UNITS = {units}


def evaluate(program_path):
    started = time.process_time()
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ys = [float(y) for y in module.run()]
    acc = 0
    for i in range(BURN_UNITS):
        acc = (acc * 31 + i) % 1000003
    error = sum(abs(y - (3.0 * x + 1.0)) for x, y in enumerate(ys)) / len(ys)
    score = 1.0 / (1.0 + error)
    return {{"combined_score": score, "score": score, "checksum": acc,
            "burn_cpu_s": time.process_time() - started, "features": {{"slope": (ys[-1] - ys[0]) / 9.0}}}}
'''

TRIVIAL_EVALUATOR = '''def evaluate(program_path):
    return {"combined_score": 0.0, "score": 0.0}
'''

TASK_TOML = '''name = "{name}"
description = "Make f(x) equal 3 * x + 1 for x in 0..9 by tuning its constants."
objective = "maximize"

[archive]
kind = "grid"
islands = 4
migration_interval = 50

[[descriptors]]
name = "slope"
range = [0.0, 6.0]
bins = 20

[[descriptors]]
name = "code_length"
range = [0.0, 60.0]
bins = 10

[limits]
timeout_s = 30
memory_mb = 1024
'''


def write_task(path: Path, evaluator: str, *, name: str = "bench") -> Path:
    """A task folder (task.toml, initial_program.py, evaluator.py) at ``path``; returns it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "initial_program.py").write_text(PROGRAM)
    (path / "evaluator.py").write_text(evaluator)
    (path / "task.toml").write_text(TASK_TOML.format(name=name))
    return path


class FakeLLM:
    """Handle on a running ``benchmarks.fake_llm`` process."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def stats(self) -> dict:
        """``{"requests": n, "first_request_at": epoch seconds or None}`` from the server."""
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + "/stats", timeout=10) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def fake_llm(latency_s: float, *, seed: int = 0) -> Iterator[FakeLLM]:
    """Start ``benchmarks.fake_llm`` in its own process; yield a `FakeLLM` (``.base_url``, ``.stats()``)."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.fake_llm", "--latency-s", str(latency_s),
                             "--seed", str(seed)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake LLM server did not start (said {line!r})")
        yield FakeLLM(f"http://127.0.0.1:{int(line.split()[1])}/v1")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat (Linux).

    The difference over a run says how busy *all* cores were, whoever used them: on a shared machine
    it tells our share apart from other tenants'.
    """
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)   # idle + iowait
    total = sum(fields[:8])                                       # guest time is already in user
    return (total - idle) / tick, total / tick


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100] (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class RunSpan:
    """The proposals of a finished run directory, read back from its ``run.db``."""

    proposals: int        # iteration > 0, any status
    evaluated: int        # proposals that reached an evaluation (not rejected)
    ok: int
    rejected: int
    wall_s: float         # ``since`` (or the first proposal's launch) → last proposal stored
    steady_s: float       # first proposal stored → last proposal stored
    burn_cpu_s: float     # sum of the evaluator-reported ``burn_cpu_s`` metric (burn task only)

    @property
    def steady_per_s(self) -> float:
        """Steady-state rate: the evaluated candidates after the first, over the time between the
        first and the last proposal being stored. It leaves out the pipeline's fill time (one LLM
        latency before anything can finish), which is latency, not throughput."""
        return (self.evaluated - 1) / self.steady_s if self.steady_s > 0 else 0.0


def run_span(run_dir: Path, since: float | None = None) -> RunSpan:
    """Counts and times of the proposals (iteration > 0) of a run directory.

    Startup (imports, fork server, the initial program's evaluation) is excluded: it is a fixed cost
    that says nothing about the pipeline's rate. The throughput benchmarks pass the fake server's first
    request time as ``since``, the same instant they use for OpenEvolve.
    """
    conn = sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT COUNT(*), SUM(status != 'rejected'), SUM(status = 'ok'), SUM(status = 'rejected'),"
            " MIN(created_at), MIN(finished_at), MAX(finished_at),"
            " COALESCE(SUM(json_extract(metrics, '$.burn_cpu_s')), 0)"
            " FROM programs WHERE iteration > 0").fetchone()
    finally:
        conn.close()
    count, evaluated, ok, rejected, created, first, last, burn = row
    return RunSpan(proposals=int(count or 0), evaluated=int(evaluated or 0), ok=int(ok or 0),
                   rejected=int(rejected or 0), wall_s=float((last or 0) - (since or created or 0)),
                   steady_s=float((last or 0) - (first or 0)), burn_cpu_s=float(burn))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value
