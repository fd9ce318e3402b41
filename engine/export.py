"""`evoforge export RUN_DIR --format sft|dpo|rewards`: a run's proposals as JSONL for fine-tuning the
proposer.

EvoTune (Šurina et al. 2025, "Algorithm Discovery With LLMs: Evolutionary Search Meets
Reinforcement Learning") alternates evolutionary search with fine-tuning the LLM that proposes, on
the search's own outcomes: preference pairs of programs sampled for the same prompt, ranked by score
(DPO). A run's run.db holds what that needs — each proposal's prompt, the model's reply, the child's
score and its parent's — and this module writes it out. Field reference: README, "Exporting a run
for fine-tuning". Every record carries ``prompt`` as chat messages (system first), so it can be
re-rendered with any chat template.

* ``rewards``: one record per proposal that reached a model (failed edits and broken children
  included: ``score`` null), with ``score``, ``parent_score`` and ``improvement``;
* ``sft``: only proposals whose child beat its parent (``improvement > 0``) — rejection sampling;
* ``dpo``: pairs of siblings (children of the same parent, so their prompts show the same program
  and differ only in inspirations and feedback), the better child ``chosen``; an invalid child ranks
  below every valid one. At most 16 pairs per parent, the widest score gaps first.

``improvement`` is ``fitness(child) - fitness(parent)``: fitness is the score signed so that higher
is better (a minimised task's fitness is ``-score``), so a positive improvement is always good.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from evoforge.archive.store import Store
from evoforge.evaluators.types import ConfigError, StoreError

__all__ = ["FORMATS", "proposals", "export_records", "export_run"]

FORMATS = ("sft", "dpo", "rewards")
PAIRS_PER_PARENT = 16


def proposals(store: Store) -> list[dict[str, Any]]:
    """Each proposal that got a reply: its prompt (the conversation of the call whose reply became
    the edit — a retried edit's prompt includes the first attempt and the error), its completion,
    and the scores."""
    calls: dict[int, dict[str, Any]] = {}
    for call in store.llm_calls(where="c.error IS NULL AND c.reply IS NOT NULL"
                                if "reply" in store._call_columns() else "0"):
        iteration = call["iteration"]
        if iteration is not None and (iteration not in calls or call["attempt"] >= calls[iteration]["attempt"]):
            calls[iteration] = call
    fitness = {r.id: r.fitness for r in store.candidates()}
    scores = {r.id: r.score for r in store.candidates()}
    out = []
    for record in store.candidates(where="iteration > 0"):
        call = calls.get(record.iteration)
        if call is None or call.get("messages") is None:
            continue   # no model was asked (the prompt did not fit), or a run from before prompts were stored
        parent_fitness = fitness.get(record.parent_id)
        improvement = (record.fitness - parent_fitness
                       if record.fitness is not None and parent_fitness is not None else None)
        out.append({
            "id": record.id, "iteration": record.iteration, "parent_id": record.parent_id, "island": record.island,
            "model": record.model, "status": record.status,
            "prompt": [{"role": "system", "content": call["system"]}, *call["messages"]],
            "completion": call["reply"], "thinking": call.get("thinking") or None,
            "score": record.score, "parent_score": scores.get(record.parent_id), "improvement": improvement,
            "fitness": record.fitness,
        })
    return out


def _rank(p: dict[str, Any]) -> float:
    return -math.inf if p["fitness"] is None else p["fitness"]


def export_records(store: Store, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)} but got {fmt!r}")
    items = proposals(store)
    if fmt == "rewards":
        for p in items:
            yield {k: v for k, v in p.items() if k != "fitness"}
    elif fmt == "sft":
        for p in items:
            if p["status"] == "ok" and p["improvement"] is not None and p["improvement"] > 0:
                yield {k: v for k, v in p.items() if k != "fitness"}
    else:
        siblings: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for p in items:
            siblings[p["parent_id"]].append(p)
        for parent_id in sorted(siblings, key=lambda x: (x is None, x)):
            group = siblings[parent_id]
            pairs = [(a, b) for a in group for b in group if _rank(a) > _rank(b)]
            pairs.sort(key=lambda ab: (-(_rank(ab[0]) - _rank(ab[1])), ab[0]["id"], ab[1]["id"]))
            for chosen, rejected in pairs[:PAIRS_PER_PARENT]:
                yield {"prompt": chosen["prompt"], "chosen": chosen["completion"], "rejected": rejected["completion"],
                       "same_prompt": chosen["prompt"] == rejected["prompt"],
                       "rejected_prompt": None if chosen["prompt"] == rejected["prompt"] else rejected["prompt"],
                       "parent_id": parent_id, "parent_score": chosen["parent_score"],
                       "chosen_id": chosen["id"], "rejected_id": rejected["id"],
                       "chosen_score": chosen["score"], "rejected_score": rejected["score"],
                       "chosen_improvement": chosen["improvement"], "rejected_improvement": rejected["improvement"],
                       "rejected_status": rejected["status"]}


def export_run(run_dir: Path, fmt: str, out: Path | None = None) -> tuple[Path, int]:
    """Write the ``fmt`` records of the run in ``run_dir`` to ``out`` (default RUN_DIR/export-FMT.jsonl)."""
    db = Path(run_dir) / "run.db"
    if not db.is_file():
        raise StoreError(f"{run_dir}: not a run directory (no run.db)")
    target = Path(out) if out is not None else Path(run_dir) / f"export-{fmt}.jsonl"
    count = 0
    with Store.open(db, readonly=True) as store:
        partial = target.with_name(target.name + ".partial")
        with partial.open("w", encoding="utf-8") as fh:
            for record in export_records(store, fmt):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    partial.replace(target)
    return target, count
