"""`evoforge report RUN_DIR -o report.html`: one self-contained HTML page about a run.

The page is read from the run's store alone, through the notebook API (`archive.Run`), so it works
on a finished run, a stopped one or one still going, and on a machine without the task folder. Every
plot is a PNG embedded as a ``data:`` URI and the style is inline: the file can be mailed, attached
to a CI job or opened offline. Sections carry stable ids (``summary``, ``best-program``,
``progress``, ``heatmap``, ``pareto`` (runs with several objectives), ``lineage``, ``costs``, ``failures``)
so tools can find them.

The template is ``engine/templates/report.html.j2`` (Jinja2 with autoescaping: program text and
error messages are data, never markup). Every value the template prints also passes through
`evoforge.prompts.sanitize.clean` (the environment's ``finalize``): a candidate's lone surrogates,
NULs and control characters are shown as escapes, never written raw into the page. Figures are drawn
on `matplotlib.figure.Figure` directly, without pyplot, so rendering neither needs a display nor
touches a notebook's current figure.
"""

from __future__ import annotations

import base64
import io
import math
import time
from pathlib import Path
from typing import Any

import jinja2

from evoforge.prompts.sanitize import clean

__all__ = ["render_report", "write_report", "TEMPLATE"]

TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
_LINEAGE_DIFFS = 30          # the last steps to the best get a diff each; older ones only a row
_DIFF_CHARS = 20_000         # per diff: a huge rewrite should not make a huge page


def _png(draw: Any, size: tuple[float, float] = (7.0, 4.2)) -> str:
    """Run ``draw(ax)`` on a fresh Agg figure and return it as a base64 PNG data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    draw(ax)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _context(run: Any) -> dict[str, Any]:
    from evoforge.evaluators.types import StoreError

    stats = run.qd_stats()
    try:
        best = run.best()
    except StoreError:
        best = None
    initial = run.program(1) if stats["programs"] else None
    chain = run.lineage(best.id) if best else []
    steps = []
    for index, program in enumerate(chain):
        parent = chain[index - 1] if index else None
        show_diff = parent is not None and index >= len(chain) - _LINEAGE_DIFFS
        steps.append({
            "id": program.id, "iteration": program.iteration, "island": _fmt(program.island),
            "score": _fmt(program.score), "status": program.status,
            "diff": run.diff(parent.id, program.id)[:_DIFF_CHARS] if show_diff else "",
            "explanation": (program.explanation or "")[:_DIFF_CHARS],
        })
    spend = run.spend()
    models = []
    if len(spend):
        grouped = spend.groupby("model", sort=True)
        for model, calls in grouped:
            models.append({"model": model, "calls": len(calls), "prompt_tokens": int(calls["prompt_tokens"].sum()),
                           "completion_tokens": int(calls["completion_tokens"].sum()),
                           "cost_usd": f"{calls['cost_usd'].sum():.4f}",
                           "errors": int(calls["error"].notna().sum()),
                           # share of prompt tokens the provider's cache served, and what that saved
                           "cache_hit": f"{calls['cached_tokens'].sum() / max(calls['prompt_tokens'].sum(), 1):.1%}",
                           "saved_usd": f"{calls['saved_usd'].sum():.4f}"})
    failures = [{"status": r.status, "count": int(r.count), "example_id": int(r.example_id),
                 "example_error": str(r.example_error)[-1500:]} for r in run.failures().itertuples()]
    has_descriptors = bool(run.descriptor_names)
    figures = {
        "progress": _png(lambda ax: run.progress(ax=ax)),
        "heatmap": _png(lambda ax: run.heatmap(ax=ax), size=(6.5, 5.0)) if has_descriptors else None,
        "spend": _png(lambda ax: run.spend_plot(ax=ax)) if len(spend) else None,
        "statuses": _png(lambda ax: run.failures_plot(ax=ax), size=(6.0, 3.6)),
        # several objectives ([[objectives]] in task.toml): the front over the first two
        "pareto": _png(lambda ax: run.pareto_plot(ax=ax), size=(6.5, 5.0)) if len(run.objectives) >= 2 else None,
    }
    config = run.config
    return {
        "title": f"evoforge report · {run.meta('task_name') or run.path.name}",
        "run_path": str(run.path), "task": run.meta("task_name") or "?", "state": run.meta("state") or "?",
        "objective": run.objective or "maximize", "llm": ", ".join(  # spec strings, or [[llm.models]] dicts
            v if isinstance(v, str) else v.get("name") or f"{v.get('provider')}:{v.get('model', '')}"
            for v in config.get("llm", [])) or "?",
        "seed": _fmt(config.get("seed")), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "stats": {
            "programs": stats["programs"], "evaluated": stats["evaluated"], "ok": stats["ok"],
            "elites": stats["elites"], "cells": _fmt(stats["cells"]), "coverage": (
                "n/a" if math.isnan(stats["coverage"]) else f"{stats['coverage']:.1%}"),
            "qd_score": _fmt(stats["qd_score"]), "qd_offset": _fmt(stats["qd_offset"]),
            "tokens": stats["tokens"], "cost_usd": f"{stats['cost_usd']:.4f}",
        },
        "initial_score": _fmt(initial.score) if initial else "n/a",
        "best": None if best is None else {
            "id": best.id, "score": _fmt(best.score), "iteration": best.iteration, "code": best.code,
            "metrics": {k: _fmt(v) for k, v in sorted(best.metrics.items())},
            "features": {k: _fmt(v) for k, v in sorted(best.features.items())},
            "artifacts": dict(sorted(best.artifacts.items())),
            # held-out results: for the reader of the report, never for a prompt
            "private": {k: _fmt(v) if isinstance(v, (int, float)) else str(v)[:_DIFF_CHARS]
                        for k, v in sorted(best.private.items())},
        },
        "lineage": steps, "lessons": run.meta("lessons") or [], "lessons_by": _lessons_by(run),
        "models": models, "failures": failures,
        "figures": figures,
    }


def _lessons_by(run: Any) -> str | None:
    """The model that wrote the lessons shown, or None when they are the computed tallies."""
    source = run.meta("lessons_source") or {}
    return source.get("model") if source.get("source") == "llm" else None


def _finalize(value: Any) -> Any:
    """Applied by Jinja2 to every printed value, before escaping: candidate text is shown, never acted on."""
    return clean(value) if isinstance(value, str) else value


def render_report(run_dir: str | Path) -> str:
    """The HTML page for a run directory (raises `StoreError` if it is not one)."""
    from evoforge.archive import Run

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=_finalize)
    with Run.open(run_dir) as run:
        return env.get_template(TEMPLATE.name).render(**_context(run))


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the page (default ``RUN_DIR/report.html``) atomically and return its path."""
    html = render_report(run_dir)
    target = Path(out) if out is not None else Path(run_dir) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    return target
