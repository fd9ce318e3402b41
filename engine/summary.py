"""`evoforge show`: a run's summary — best programs, QD statistics, islands, costs, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archive.store import Store
from engine.config import RunConfig
from engine.loop import rebuild_islands
from engine.task import load_task
from evaluators.types import StoreError

__all__ = ["summarize", "format_summary"]


def summarize(run_dir: Path, *, top: int = 5) -> dict[str, Any]:
    path = Path(run_dir) / "run.db"
    if not path.is_file():
        raise StoreError(f"{run_dir}: not a run directory (no run.db)")
    with Store.open(path, readonly=True) as store:
        config = RunConfig.from_dict(store.get_meta("config"))
        task = load_task(config.task)
        islands = rebuild_islands(task, store, config.seed)
        initial = next(iter(store.candidates(where="iteration = 0")), None)
        order = "DESC" if task.objective == "maximize" else "ASC"
        best_rows = store._conn.execute(
            f"SELECT id, iteration, score, model FROM programs WHERE status = 'ok' ORDER BY score {order}, id"
            f" LIMIT ?", (top,)).fetchall()
        overall = islands.stats()
        return {
            "run_dir": str(run_dir), "task": task.name, "state": store.get_meta("state"),
            "llm": list(config.llm), "seed": config.seed,
            "iterations": store.count("iteration > 0"), "target_iterations": config.iterations,
            "statuses": store.status_counts(),
            "initial_score": initial.score if initial else None,
            "best": [dict(r) for r in best_rows],
            "qd": {"coverage": overall.coverage, "qd_score": overall.qd_score, "elites": overall.num_elites},
            "islands": [
                {"island": i, "elites": s.num_elites, "coverage": s.coverage, "best_fitness": s.best_fitness}
                for i in range(task.archive.islands) for s in [islands.stats(i)]],
            "llm_totals": store.totals(),
        }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"run {s['run_dir']} · task {s['task']} · {s['state']} · llm {', '.join(s['llm'])} · seed {s['seed']}",
        f"iterations {s['iterations']}/{s['target_iterations']} · statuses "
        + ", ".join(f"{k} {v}" for k, v in sorted(s['statuses'].items())),
        f"initial score {s['initial_score']}",
        f"archive: {s['qd']['elites']} elites, coverage {s['qd']['coverage']:.1%}, QD-score {s['qd']['qd_score']:.6g}",
    ]
    for isl in s["islands"]:
        lines.append(f"  island {isl['island']}: {isl['elites']} elites, coverage {isl['coverage']:.1%}, "
                     f"best fitness {isl['best_fitness']}")
    lines.append("best programs:")
    for row in s["best"]:
        lines.append(f"  #{row['id']} (iteration {row['iteration']}, {row['model']}): score {row['score']:.10g}")
    t = s["llm_totals"]
    lines.append(f"LLM: {t['llm_calls']} calls, {t['prompt_tokens']} prompt + {t['completion_tokens']} completion"
                 f" tokens, ${t['cost_usd']:.4f}")
    return "\n".join(lines)
