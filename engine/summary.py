"""`evoforge show`: a run's summary — best programs, QD statistics, islands, costs, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.loop import rebuild_islands
from evoforge.engine.task import load_task
from evoforge.evaluators.types import StoreError

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
            "llm": [_label(v) for v in config.llm], "seed": config.seed,
            "iterations": store.count("iteration > 0"), "target_iterations": config.iterations,
            "statuses": store.status_counts(),
            "initial_score": initial.score if initial else None,
            "best": [dict(r) for r in best_rows],
            "qd": {"coverage": overall.coverage, "qd_score": overall.qd_score, "elites": overall.num_elites},
            "islands": [
                {"island": i, "elites": s.num_elites, "coverage": s.coverage, "best_fitness": s.best_fitness}
                for i in range(task.archive.islands) for s in [islands.stats(i)]],
            "llm_totals": store.totals(),
            "cache": _cache(store.totals()),
            "prices": store.get_meta("llm_prices"),
            "models": _per_model(store),
            "budgets": {"max_cost_usd": config.max_cost_usd, "max_tokens": config.max_total_tokens,
                        "max_time_s": config.max_time_s, "iterations": config.iterations},
            "ensemble": config.setting("ensemble"),
            "bandit": store.get_meta("llm_bandit"),
        }


def _cache(totals: dict[str, Any]) -> dict[str, Any]:
    """Prompt-cache use over the run: the share of prompt tokens served from the providers' caches and
    the money that saved (priced per call, at the rates the run used)."""
    return {"hit_rate": totals["cached_tokens"] / totals["prompt_tokens"] if totals["prompt_tokens"] else 0.0,
            "cached_tokens": totals["cached_tokens"], "cache_write_tokens": totals["cache_write_tokens"],
            "saved_usd": totals["saved_usd"]}


def _label(value: Any) -> str:
    from evoforge.engine.llm import as_spec
    try:
        return as_spec(value).label
    except Exception:  # noqa: BLE001 - a stored spec this version cannot parse is still shown
        return str(value)


def _per_model(store: Store) -> list[dict[str, Any]]:
    """Calls, failures, tokens, dollars and latency per model (llm_calls), with the improvements each
    model's children made over their parents (programs) — what an ensemble's bandit learns from."""
    calls = store._conn.execute(
        "SELECT model, COUNT(*) AS calls, SUM(error IS NOT NULL) AS failed, SUM(prompt_tokens) AS prompt_tokens,"
        " SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd, AVG(latency_s) AS mean_latency_s"
        + (", SUM(cached_tokens) AS cached_tokens, SUM(saved_usd) AS saved_usd"
           if "cached_tokens" in store._call_columns() else "")
        + " FROM llm_calls GROUP BY model ORDER BY model").fetchall()
    improved = dict(store._conn.execute(
        "SELECT c.model, COUNT(*) FROM programs c JOIN programs p ON c.parent_id = p.id"
        " WHERE c.status = 'ok' AND c.fitness > p.fitness GROUP BY c.model").fetchall())
    return [{**dict(r), "improvements": improved.get(r["model"], 0)} for r in calls]


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
    cache = s.get("cache") or {}
    if cache.get("cached_tokens") or cache.get("cache_write_tokens") or t.get("reasoning_tokens"):
        lines.append(f"  prompt cache: {cache['hit_rate']:.1%} of prompt tokens read from the cache "
                     f"({cache['cached_tokens']} read, {cache['cache_write_tokens']} written), "
                     f"${cache['saved_usd']:.4f} saved against full price"
                     + (f"; {t['reasoning_tokens']} reasoning tokens (billed as completion)"
                        if t.get("reasoning_tokens") else ""))
    for m in s.get("models", []):
        latency = "" if m["mean_latency_s"] is None else f", {m['mean_latency_s']:.2f} s mean latency"
        cached = (f", {m['cached_tokens'] / m['prompt_tokens']:.0%} cached (${m['saved_usd']:.4f} saved)"
                  if m.get("cached_tokens") and m["prompt_tokens"] else "")
        lines.append(f"  {m['model']}: {m['calls']} calls ({m['failed']} failed), {m['prompt_tokens']} + "
                     f"{m['completion_tokens']} tokens, ${m['cost_usd']:.4f}{cached}{latency}, "
                     f"{m['improvements']} improvements over the parent")
    b = s.get("budgets") or {}
    limits = [f"${b['max_cost_usd']:g}" if b.get("max_cost_usd") is not None else "",
              f"{b['max_tokens']} tokens" if b.get("max_tokens") is not None else "",
              f"{b['max_time_s']:g} s" if b.get("max_time_s") is not None else ""]
    if any(limits):
        lines.append("budgets: " + ", ".join(x for x in limits if x))
    if s.get("bandit"):
        lines.append(f"ensemble: {s['ensemble']} (UCB1 over improvements per dollar)")
        for arm in s["bandit"]["arms"]:
            lines.append(f"  {arm['model']}: {arm['pulls']} proposals, {arm['improvements']} improvements, "
                         f"${arm['cost_usd']:.4f}, value {arm['value']:.3f}")
    return "\n".join(lines)
