"""Runs OpenEvolve on a benchmark task against the fake LLM server; executed by OpenEvolve's own
interpreter (its virtual environment in benchmarks/.work/), so it imports only the standard library
and ``openevolve`` — never evoforge.

    <openevolve-venv>/bin/python benchmarks/openevolve_driver.py TASK_DIR BASE_URL OUT_DIR \\
        --iterations N --workers W

Prints one JSON line: the children OpenEvolve evaluated, when the last one was created (epoch
seconds, from each program's own ``timestamp``) and OpenEvolve's version. The caller times the span
from the fake server's first request, exactly as for evoforge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task_dir")
    parser.add_argument("base_url")
    parser.add_argument("out_dir")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()

    import openevolve
    from openevolve.config import Config, LLMModelConfig
    from openevolve.controller import OpenEvolve

    config = Config()
    config.max_iterations = args.iterations
    config.checkpoint_interval = 10**9      # no checkpoints mid-run (evoforge commits per candidate,
    config.log_level = "WARNING"            # which costs it, not OpenEvolve: a conservative choice)
    config.random_seed = 0
    config.diff_based_evolution = True
    config.llm.models = [LLMModelConfig(name="bench", api_base=args.base_url, api_key="EMPTY", weight=1.0,
                                        temperature=0.8, max_tokens=4096, timeout=120, retries=3)]
    config.llm.evaluator_models = list(config.llm.models)
    config.evaluator.parallel_evaluations = args.workers
    config.evaluator.cascade_evaluation = False   # one stage, as evoforge runs this task
    config.evaluator.timeout = 30
    config.evaluator.use_llm_feedback = False
    config.database.num_islands = 4               # as the task.toml
    config.database.random_seed = 0
    logging.getLogger().setLevel(logging.WARNING)

    controller = OpenEvolve(f"{args.task_dir}/initial_program.py", f"{args.task_dir}/evaluator.py",
                            config, output_dir=args.out_dir)
    # Count each child as the controller stores it (its database may later drop programs a MAP-Elites
    # cell replaced, so counting what is left at the end would undercount).
    added: list[float] = []
    add = controller.database.add

    def counting_add(program, *a, **kw):
        result = add(program, *a, **kw)
        if getattr(program, "iteration_found", 0) > 0:
            added.append(time.time())
        return result

    controller.database.add = counting_add
    started = time.time()
    asyncio.run(controller.run(iterations=args.iterations))
    finished = time.time()
    print(json.dumps({
        "version": getattr(openevolve, "__version__", "unknown"),
        "children": len(added),
        "first_child_at": min(added, default=None),
        "last_child_at": max(added, default=None),
        "run_started_at": started,
        "run_finished_at": finished,
    }), flush=True)


if __name__ == "__main__":
    main()
