"""`evoforge show`: a run's summary — best programs, QD statistics, islands, costs, failures.

Everything comes through the notebook API (`evoforge.archive.Run`), the one way to read a run: the
store is opened read-only, and neither the task folder nor pyribs is loaded, so a run whose task
folder has moved can still be shown, even while it is going.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoforge.archive.run import Run
from evoforge.engine.config import RunConfig

__all__ = ["summarize", "format_summary"]


def summarize(run_dir: Path, *, top: int = 5) -> dict[str, Any]:
    """The summary as plain data (what ``evoforge show --json`` prints). Raises `StoreError` when
    ``run_dir`` is not a run directory."""
    with Run.open(run_dir) as run:
        config = RunConfig.from_dict(run.config)
        stats = run.qd_stats()
        models = run.models()
        initial = run.program(1) if stats["programs"] else None
        return {
            "run_dir": str(run_dir), "task": run.meta("task_name") or Path(config.task).name,
            "state": run.meta("state"),
            "llm": [_label(v) for v in config.llm], "seed": config.seed,
            "iterations": stats["programs"] - (1 if initial is not None else 0),
            "target_iterations": config.iterations,
            "statuses": run.statuses(),
            "initial_score": initial.score if initial is not None and initial.iteration == 0 else None,
            "best": run.top(top),
            "qd": {"coverage": stats["coverage"], "qd_score": stats["qd_score"], "elites": stats["elites"]},
            "islands": [{"island": i["island"], "elites": i["elites"], "coverage": i["coverage"],
                         "best_fitness": i["best_fitness"]} for i in run.island_stats()],
            "llm_totals": {
                "prompt_tokens": sum(m["prompt_tokens"] or 0 for m in models),
                "completion_tokens": sum(m["completion_tokens"] or 0 for m in models),
                "cost_usd": float(sum(m["cost_usd"] or 0.0 for m in models)),
                "llm_calls": sum(m["calls"] for m in models),
                "reasoning_tokens": sum(m["reasoning_tokens"] or 0 for m in models)},
            "cache": _cache(models),
            "prices": run.meta("llm_prices"),
            "models": models,
            "budgets": {"max_cost_usd": config.max_cost_usd, "max_tokens": config.max_total_tokens,
                        "max_time_s": config.max_time_s, "iterations": config.iterations},
            "ensemble": config.setting("ensemble"),
            "bandit": run.meta("llm_bandit"),
            "pareto": _pareto(run),
            "lessons": run.meta("lessons") or [],
            "lessons_source": run.meta("lessons_source"),
            "baseline": config.baseline,
            "placement": run.placements(),
        }


def _lessons_source(s: dict[str, Any]) -> str:
    """Who wrote the lessons shown: a model, or the tallies (and why a model's did not replace them)."""
    source = s.get("lessons_source") or {}
    if source.get("source") == "llm":
        return f"written by {source.get('model', 'the model')}"
    why = source.get("why")
    return f"computed; {why}" if why else "computed"


def _pareto(run: Run) -> dict[str, Any] | None:
    """The run's Pareto front over its declared objectives (None for a single-score run)."""
    if not run.objectives:
        return None
    front = run.pareto()
    names = [o["name"] for o in run.objectives]
    return {"objectives": run.objectives,
            "front": [{"id": int(r["id"]), "island": None if r["island"] is None or r["island"] != r["island"]
                       else int(r["island"]), "score": r["score"], **{n: float(r[n]) for n in names}}
                      for r in front.to_dict("records")]}


def _cache(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Prompt-cache use over the run: the share of prompt tokens the providers' caches served and the
    money that saved (priced per call, at the rates the run used)."""
    prompt = sum(m["prompt_tokens"] or 0 for m in models)
    cached = sum(m["cached_tokens"] or 0 for m in models)
    return {"hit_rate": cached / prompt if prompt else 0.0, "cached_tokens": cached,
            "cache_write_tokens": sum(m["cache_write_tokens"] or 0 for m in models),
            "saved_usd": float(sum(m["saved_usd"] or 0.0 for m in models))}


def _label(value: Any) -> str:
    from evoforge.engine.llm import as_spec
    try:
        return as_spec(value).label
    except Exception:  # noqa: BLE001 - a stored spec this version cannot parse is still shown
        return str(value)


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
        if row.get("explanation"):
            lines.append(f"    why: {' '.join(row['explanation'].split())[:200]}")
        private = row.get("private") or {}
        if private:   # held-out results: for the user, never in a prompt
            shown = ", ".join(f"{k}={v:.6g}" if isinstance(v, (int, float)) else f"{k}={str(v)[:80]!r}"
                              for k, v in sorted(private.items()) if k != "heldout")
            lines.append(f"    private: {shown}")
    if s.get("lessons"):
        lines.append(f"lessons (what the prompts were told about earlier changes; {_lessons_source(s)}):")
        lines.extend(f"  {line}" for line in s["lessons"])
    if s.get("baseline"):
        lines.append(f"baseline run: {s['baseline']} (a control, not evolution)")
    pareto = s.get("pareto")
    if pareto:
        names = [o["name"] for o in pareto["objectives"]]
        lines.append("Pareto front (" + ", ".join(f"{o['name']} {o['direction']}" for o in pareto["objectives"])
                     + f"): {len(pareto['front'])} programs")
        for row in pareto["front"]:
            lines.append(f"  #{row['id']}: " + ", ".join(f"{n} {row[n]:.6g}" for n in names)
                         + (f" (score {row['score']:.6g})" if row["score"] is not None else ""))
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
    placed = s.get("placement") or {}
    if placed.get("nodes") or placed.get("retried") or placed.get("lost"):
        lines.append(f"placement: {len(placed['nodes'])} nodes, {placed['retried']} evaluations retried "
                     f"({placed['extra_attempts']} extra attempts), {placed['lost']} lost on every attempt")
        for node, info in sorted(placed["nodes"].items(), key=lambda kv: -kv[1]["evaluations"]):
            gpus = f", GPUs {' '.join(info['gpus'])}" if info["gpus"] else ""
            lines.append(f"  node {node[:8]} ({info['address']}): {info['evaluations']} evaluations{gpus}")
    if s.get("bandit"):
        lines.append(f"ensemble: {s['ensemble']} (UCB1 over improvements per dollar)")
        for arm in s["bandit"]["arms"]:
            lines.append(f"  {arm['model']}: {arm['pulls']} proposals, {arm['improvements']} improvements, "
                         f"${arm['cost_usd']:.4f}, value {arm['value']:.3f}")
    return "\n".join(lines)
