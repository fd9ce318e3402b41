"""``make bench-search``: does the search earn its samples? Best score at N proposals, per configuration.

    python -m benchmarks.search                  # the table in the README (about an hour on 2 cores)
    python -m benchmarks.search --quick          # 2 seeds, 8 proposals: a smoke test
    python -m benchmarks.search --proposals 64 --seeds 11 --tasks circle_packing --setups default,best-of-n

Each run is the real engine (`Engine`, the real task's evaluator through ``runner.run_job`` in-process: this
measures search, not isolation) driven at concurrency 1 by either the stochastic surrogate LLM of
`benchmarks.surrogate` (an OpenAI-compatible server on 127.0.0.1, reached through the real OpenAI SDK) or
the offline operator. For every task and configuration it reports the median over seeds of the best score
after N proposals, as the improvement over the initial program relative to best-of-N's improvement
(``gain / gain(best-of-n)``; > 1 means the configuration beat sampling the initial program N times).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.surrogate import SurrogateServer

TASKS = ("circle_packing", "pde_advection", "matmul_decomposition")   # geometry, a PDE solver, tensor search


@dataclasses.dataclass(frozen=True)
class Setup:
    """One configuration: ``archive``/``search`` override the task's ``[archive]``/``[search]`` settings."""

    name: str
    llm: str = "surrogate"                     # surrogate | offline
    baseline: str | None = None
    archive: tuple[tuple[str, object], ...] = ()
    search: tuple[tuple[str, object], ...] = ()


SETUPS = (
    Setup("default"),
    Setup("power_law", archive=(("parent_selection", "power_law"),)),
    Setup("weighted", archive=(("parent_selection", "weighted"),)),
    Setup("uniform", archive=(("parent_selection", "uniform"),)),
    Setup("exploit 0.7", archive=(("exploit_ratio", 0.7),)),      # the previous default
    Setup("no lessons", search=(("lessons_every", 0),)),
    Setup("novelty 0.95", search=(("novelty_threshold", 0.95),)),
    Setup("novelty 0.95 + judge", search=(("novelty_threshold", 0.95), ("novelty_judge", True))),
    Setup("random-parent", baseline="random-parent"),
    Setup("best-of-n", baseline="best-of-n"),
    Setup("offline default", llm="offline"),
    Setup("offline best-of-n", llm="offline", baseline="best-of-n"),
)


class _InProcess:
    slots = 1

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.n = workdir, 0

    async def evaluate(self, job):
        from evoforge.evaluators.runner import run_job

        self.n += 1
        folder = self.workdir / str(self.n)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        result = run_job(job, str(folder))
        return dataclasses.replace(result, eval_s=time.perf_counter() - started)


def one_run(args: tuple[str, Setup, int, int]) -> dict:
    """Best score of one (task, setup, seed) run of ``proposals`` proposals."""
    from evoforge.engine.config import RunConfig
    from evoforge.engine.llm import make_llm
    from evoforge.engine.loop import Engine
    from evoforge.engine.rundir import RunDir
    from evoforge.engine.task import load_task

    task_name, setup, seed, proposals = args
    task = load_task(task_name)
    archive = dataclasses.replace(task.archive, **dict(setup.archive))
    search = dataclasses.replace(task.search, **dict(setup.search))
    # No held-out evaluations: they never change the search, only cost time here.
    task = dataclasses.replace(task, archive=archive, search=search, has_heldout=False)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, SurrogateServer(seed=seed) as server:
        spec = "offline" if setup.llm == "offline" else f"openai-compatible:surrogate@{server.base_url}"
        config = RunConfig(task=str(task.path), iterations=proposals, llm=(spec,), seed=seed, concurrency=1,
                           baseline=setup.baseline)
        run_dir = RunDir.create(Path(tmp) / "run", config.to_dict())
        try:
            llm = make_llm([spec])
            engine = Engine(config=config, task=task, run_dir=run_dir, llm=llm, executor=_InProcess(Path(tmp) / "work"))

            async def go():
                try:
                    return await engine.run(proposals)
                finally:
                    await llm.close()   # inside the loop: the SDK's HTTP client must not outlive it
            snapshot = asyncio.run(go())
            statuses = dict(snapshot.statuses)
        finally:
            run_dir.close()
    return {"task": task_name, "setup": setup.name, "seed": seed, "best": snapshot.best_score,
            "initial": snapshot.initial_score, "sign": task.sign, "statuses": statuses}


def table(results: list[dict], setups: tuple[Setup, ...], tasks: tuple[str, ...]) -> tuple[str, dict]:
    """Markdown: median best score and its gain over the initial program relative to best-of-n's."""
    med: dict[tuple[str, str], float] = {}
    initial: dict[str, float] = {}
    for task in tasks:
        for s in setups:
            rows = [r for r in results if r["task"] == task and r["setup"] == s.name]
            if rows:
                med[task, s.name] = statistics.median(r["sign"] * r["best"] for r in rows)
                initial[task] = rows[0]["sign"] * rows[0]["initial"]
    lines = ["| configuration | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    ratios: dict[str, dict[str, float]] = {}
    for s in setups:
        cells = []
        for task in tasks:
            if (task, s.name) not in med:
                cells.append("n/a")
                continue
            ref = "offline best-of-n" if s.llm == "offline" else "best-of-n"
            gain, base = med[task, s.name] - initial[task], med.get((task, ref), initial[task]) - initial[task]
            ratio = gain / base if base > 0 else float("inf") if gain > 0 else 1.0
            ratios.setdefault(s.name, {})[task] = ratio
            cells.append(f"{ratio:.2f} ({med[task, s.name]:.4g})")
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--setups", default="", help="comma-separated setup names (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 8 proposals")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search.json"))
    parser.add_argument("--append", action="store_true",
                        help="add to the runs already in --out (same proposals) and print the table of all of them")
    args = parser.parse_args(argv)
    if args.quick:
        args.proposals, args.seeds = 8, 2
    tasks = tuple(t for t in args.tasks.split(",") if t)
    wanted = {s for s in args.setups.split(",") if s}
    setups = tuple(s for s in SETUPS if not wanted or s.name in wanted)
    jobs = [(t, s, seed, args.proposals) for t in tasks for s in setups for seed in range(args.seeds)]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for n, result in enumerate(pool.imap_unordered(one_run, jobs), start=1):
            results.append(result)
            print(f"\r{n}/{len(jobs)} runs, {time.monotonic() - started:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.append and args.out.exists():
        before = json.loads(args.out.read_text())
        if before["proposals"] != args.proposals:
            parser.error(f"{args.out} holds runs of {before['proposals']} proposals, not {args.proposals}")
        fresh = {(r["task"], r["setup"], r["seed"]) for r in results}
        results = [r for r in before["results"] if (r["task"], r["setup"], r["seed"]) not in fresh] + results
        names = {r["setup"] for r in results}
        setups = tuple(s for s in SETUPS if s.name in names)
        tasks = tuple(dict.fromkeys([*before.get("tasks", ()), *tasks]))
        args.seeds = max(args.seeds, before["seeds"])
    text, ratios = table(results, setups, tasks)
    print(f"best score at {args.proposals} proposals, median of {args.seeds} seeds; each cell: gain over the initial "
          f"program / best-of-n's gain (median best score)\n")
    print(text)
    for ref, name in (("best-of-n", "default"), ("offline best-of-n", "offline default")):
        row = ratios.get(name, {})
        if row and any(r["setup"] == ref for r in results):
            missed = [t for t in tasks if row.get(t, 0.0) <= 1.0]
            print(f"\n{name} beats {ref} on {len(tasks) - len(missed)} of {len(tasks)} tasks"
                  + (f" (not on: {', '.join(missed)})" if missed else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"proposals": args.proposals, "seeds": args.seeds, "tasks": tasks,
                                    "results": results,
                                    "ratios": ratios, "seconds": time.monotonic() - started}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
