"""``python -m benchmarks`` (``make bench``): run every benchmark, print a table, write JSON.

    python -m benchmarks                   # the full set, a few minutes on 2 cores
    python -m benchmarks --quick           # every benchmark once at a tiny size (the smoke test)
    python -m benchmarks --only throughput,cpu --out /tmp/bench.json
    python -m benchmarks --profile         # also write pyinstrument profiles of benchmark 1

Speed claims are ratios measured in one run on one machine (against the physical bound, or against
OpenEvolve run side by side), because absolute times on a shared machine are noise. A benchmark
that cannot run here (no docker daemon, no network for OpenEvolve's install) reports why and the
others go on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO_ROOT, WORK_DIR, cores

BENCHMARKS = ("throughput", "openevolve", "cpu", "isolation", "scale", "memory", "startup", "placement")
ISOLATION_BACKENDS = ("process", "local", "docker", "ray")


@dataclass(frozen=True)
class Sizes:
    latencies_s: tuple[float, ...]
    iterations: int            # proposals per evoforge throughput run
    concurrency: int
    capacity_evals: int        # sequential evaluations to measure the evaluation capacity
    openevolve_seconds: float  # steady-state seconds per OpenEvolve run when the LLM bounds it
    burn_iterations: int
    burn_units: int            # loop iterations of the burn evaluator (~0.25 s of CPU at full size)
    isolation_evals: int
    docker_evals: int
    archive_programs: int
    archive_samples: int
    memory_candidates: int
    memory_every: int
    startup_repeats: int       # launches per start-up figure (medians are reported)
    placement_nodes: tuple[int, ...] = (1, 2, 4)   # simulated Ray nodes per placement figure
    placement_evals_per_node: int = 8              # sleeping evaluations per node, all submitted at once
    placement_overhead_evals: int = 20             # trivial evaluations, one at a time


FULL = Sizes(latencies_s=(0.0, 0.5), iterations=320, concurrency=16, capacity_evals=60, openevolve_seconds=8.0,
             burn_iterations=64, burn_units=2_500_000, isolation_evals=300, docker_evals=30,
             archive_programs=100_000, archive_samples=5_000, memory_candidates=2_000, memory_every=250,
             startup_repeats=5)
QUICK = Sizes(latencies_s=(0.05,), iterations=12, concurrency=4, capacity_evals=5, openevolve_seconds=1.0,
              burn_iterations=6, burn_units=20_000, isolation_evals=8, docker_evals=2,
              archive_programs=400, archive_samples=100, memory_candidates=24, memory_every=8,
              startup_repeats=1, placement_nodes=(2,), placement_evals_per_node=2, placement_overhead_evals=3)


def _guarded(name: str, fn, *args, **kwargs) -> dict:
    """Run one benchmark; any failure becomes ``{"error": ...}`` in the results, never a crash."""
    started = time.perf_counter()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the table says what failed; the other benchmarks go on
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    print(f"[bench] {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    # Other work on the machine skews every figure; the 1-minute load average says how much there was.
    _LOADS.append(os.getloadavg()[0])
    return result


_LOADS: list[float] = []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark once at a tiny size")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--skip-openevolve", action="store_true", help="same as leaving openevolve out of --only")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results file (default benchmarks/results/latest.json; --quick: none)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="scratch folder (default benchmarks/.work)")
    parser.add_argument("--isolation", default="process,local,docker,ray",
                        help="backends benchmark 4 measures (default process,local,docker,ray)")
    parser.add_argument("--profile", action="store_true", help="write pyinstrument profiles of benchmark 1")
    parser.add_argument("--full-memory", action="store_true",
                        help="run the memory benchmark to 20 000 candidates for real (slow)")
    args = parser.parse_args(argv)

    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    backends = [b.strip() for b in args.isolation.split(",") if b.strip()]
    if any(b not in ISOLATION_BACKENDS for b in backends):
        bad = next(b for b in backends if b not in ISOLATION_BACKENDS)
        parser.error(f"--isolation: unknown backend {bad!r} (known: {', '.join(ISOLATION_BACKENDS)})")
    if args.skip_openevolve and "openevolve" in only:
        only.remove("openevolve")
    sizes = QUICK if args.quick else FULL
    default_out = None if args.quick else REPO_ROOT / "benchmarks" / "results" / "latest.json"
    out = args.out if args.out is not None else default_out
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks" + ("" if argv is None and len(sys.argv) <= 1 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))
    results: dict = {"environment": {
        "cores": cores(), "cpu": _cpu_model(), "python": platform.python_version(),
        "date": datetime.date.today().isoformat(), "command": command, "quick": args.quick}}

    from benchmarks import isolation, openevolve_bench, scale, throughput

    if "throughput" in only or "openevolve" in only:
        # Latency by latency, each evoforge run followed at once by OpenEvolve's on the same workload:
        # on a shared machine the load drifts, and side by side means close together in time.
        runs: list[dict] = []
        oe: dict = {}
        for latency in sizes.latencies_s:
            tp = _guarded(f"1 pipeline throughput, LLM latency {latency:g} s", throughput.pipeline_throughput,
                          work, latencies_s=(latency,), iterations=sizes.iterations, concurrency=sizes.concurrency,
                          capacity_evals=sizes.capacity_evals,
                          profile_dir=(out.parent if out else work) / "profiles" if args.profile else None)
            if "runs" not in tp:
                results["throughput"] = tp
                break
            runs += tp["runs"]
            results["throughput"] = {"runs": runs, "task_dir": tp["task_dir"]}
            if "openevolve" in only and "unavailable" not in oe:
                side = _guarded(f"2 OpenEvolve, LLM latency {latency:g} s", openevolve_bench.openevolve_comparison,
                                work, Path(tp["task_dir"]), tp["runs"], iterations=sizes.iterations,
                                concurrency=sizes.concurrency, seconds=sizes.openevolve_seconds)
                if "runs" in side:
                    oe = {"version": side["version"], "runs": oe.get("runs", []) + side["runs"]}
                else:
                    oe = side
        if "openevolve" in only:
            results["openevolve"] = oe or {"unavailable": "benchmark 1 failed, nothing to compare with"}
    if "cpu" in only:
        results["cpu"] = _guarded("3 CPU-bound evaluations", throughput.cpu_utilisation, work,
                                  iterations=sizes.burn_iterations, burn_units=sizes.burn_units,
                                  concurrency=sizes.concurrency)
    if "isolation" in only:
        results["isolation"] = _guarded("4 isolation overhead", isolation.isolation_overhead, work,
                                        evaluations=sizes.isolation_evals, docker_evaluations=sizes.docker_evals,
                                        include=tuple(backends))
    if "scale" in only:
        results["scale"] = _guarded("5 archive and store at scale", scale.archive_scale,
                                    programs=sizes.archive_programs, samples=sizes.archive_samples)
    if "memory" in only:
        candidates = 20_000 if args.full_memory else sizes.memory_candidates
        results["memory"] = _guarded("5 engine memory", scale.engine_memory, work, candidates=candidates,
                                     every=sizes.memory_every if not args.full_memory else 1000,
                                     timeout_s=3600 if args.full_memory else 900)

    if "startup" in only:
        from benchmarks import startup

        # OpenEvolve's start-up is timed next to ours unless it was left out.
        results["startup"] = _guarded("6 start-up", startup.startup_times, work, repeats=sizes.startup_repeats,
                                      openevolve="openevolve" in only)

    if "placement" in only:
        from benchmarks import placement

        results["placement"] = _guarded("7 Ray placement over simulated nodes", placement.placement, work,
                                        node_counts=sizes.placement_nodes,
                                        evaluations_per_node=sizes.placement_evals_per_node,
                                        sleep_s=0.2 if args.quick else 0.5,
                                        overhead_evals=sizes.placement_overhead_evals)

    from benchmarks.report import render_table

    if _LOADS:
        results["environment"]["load_avg_1min"] = {"min": min(_LOADS), "max": max(_LOADS)}

    table = render_table(results)
    print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        results["table"] = table
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
