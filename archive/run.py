"""The notebook API (docs/notebook_api.md): read a run directory into pandas DataFrames and plots.

    from evoforge.archive import Run
    run = Run.open("runs/circle_packing-20261123-101500")
    run.programs(); run.elites(); run.best(); run.heatmap(); run.progress()

Everything is read from the run's SQLite store alone, through a read-only connection: the engine
and the task folder are never imported, and a run can be read while it is going (WAL mode; every
query sees what was committed when it started).

What is read from the store's ``meta`` table (the engine writes these at ``start_run``):

* ``descriptors`` -- ``[{name, low, high, bins}, ...]``: the feature names in order, and the
  heatmap's ranges and bins. Without it the names are inferred from the features of the ok
  programs (first seen first) and the heatmap uses 10 bins over the observed range.
* ``objective`` -- ``"maximize"`` or ``"minimize"``. Programs are ranked by ``fitness`` (higher is
  better; the engine negates minimisation scores), so this is only informative here.
* ``archive`` -- ``{kind, islands, qd_offset}``; ``qd_offset`` defaults to 0.
* ``config`` -- the resolved run config (``task`` folder, ``seed``, ...), exposed as ``Run.config``.

The current elites are the replay of ``archive_events`` in ``seq`` order: every event with status
``new`` or ``improved`` makes its program the elite of its ``cell`` on its ``island`` (inserts and
migrations alike), replacing the previous one. This needs no pyribs and gives exactly the islands
the engine rebuilds. Run-wide QD statistics (QD-score, coverage) are over the union of the
islands: per cell, the best fitness any island holds (what the engine's result archive holds).
"""

from __future__ import annotations

import difflib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from evoforge.archive.store import Store
from evoforge.evaluators.types import StoreError

__all__ = ["Run", "Program", "PROGRAM_COLUMNS", "PROGRESS_COLUMNS", "SPEND_COLUMNS", "FAILURE_COLUMNS"]

#: The stable columns of :meth:`Run.programs`, in order; then ``feature_<name>`` per feature,
#: ``metric_<name>`` per metric (sorted), and ``code`` when asked for.
PROGRAM_COLUMNS = (
    "id", "parent_id", "island", "iteration", "status", "score", "fitness", "eval_s", "model",
    "prompt_tokens", "completion_tokens", "cost_usd", "created_at", "finished_at", "code_length",
)
_INT_COLUMNS = ("parent_id", "island")
#: The columns of :meth:`Run.progress_frame`, in order.
PROGRESS_COLUMNS = (
    "evaluation", "id", "iteration", "status", "elapsed_s", "best_score", "qd_score", "coverage_cells", "coverage",
    "cum_tokens", "cum_cost_usd", "cum_failures",
)
#: The columns of :meth:`Run.spend`, in order.
SPEND_COLUMNS = (
    "id", "created_at", "elapsed_s", "iteration", "program_id", "model", "prompt_tokens", "completion_tokens",
    "cost_usd", "latency_s", "error", "cached_tokens", "saved_usd", "cum_prompt_tokens", "cum_completion_tokens",
    "cum_tokens", "cum_cost_usd",
)
#: The columns of :meth:`Run.failures`, in order.
FAILURE_COLUMNS = ("status", "count", "example_id", "example_error")


@dataclass(frozen=True)
class Program:
    """One stored candidate.

    Attributes:
        id: Program id in the store (the initial program is 1).
        code: The full program text.
        score: The evaluator's score (None unless ``status == "ok"``).
        fitness: Higher-is-better fitness (``score``, negated for minimisation tasks).
        metrics: The evaluator's metrics.
        features: The behaviour features (the task's descriptors, builtin ones included).
        parent_id: The program it was edited from (None for the initial program).
        island: The island it was proposed on (None for the initial program, seeded everywhere).
        iteration: Proposal number (0 for the initial program).
        status: ``ok``, ``invalid``, ``error``, ``timeout``, ``oom`` or ``rejected``.
        artifacts: The evaluator's artifacts (``error`` holds the reason of a failure).
        private: Results for the user only (held-out numbers; never shown to the LLM).
        explanation: The LLM's own account of the change, when it gave one.
    """

    id: int
    code: str
    score: float | None
    fitness: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    parent_id: int | None = None
    island: int | None = None
    iteration: int = 0
    status: str = "ok"
    artifacts: Mapping[str, str] = field(default_factory=dict)
    private: Mapping[str, Any] = field(default_factory=dict)
    explanation: str | None = None


def _json(text: str | None) -> dict:
    return json.loads(text) if text else {}


class Run:
    """A run directory, read-only. Open with :meth:`Run.open`; use as a context manager or
    :meth:`close` it when done (the connection is also closed when the object is collected)."""

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self._store = store
        self._conn: sqlite3.Connection = store._conn

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """Open a run directory (or its ``run.db``) read-only.

        Raises:
            StoreError: no such directory, no ``run.db`` in it, or not an evoforge database.
        """
        path = Path(path).expanduser()
        db = path if path.suffix == ".db" else path / "run.db"
        if not db.parent.is_dir():
            raise StoreError(f"{db.parent}: no such run directory")
        if not db.is_file():
            raise StoreError(f"{db.parent}: not a run directory (no run.db); start one with `evoforge run TASK`")
        return cls(db.parent, Store.open(db, readonly=True))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, programs={self._store.count()}, state={self.meta('state')!r})"

    # -- meta -------------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        """A value of the store's ``meta`` table (decoded JSON), or ``default``."""
        return self._store.get_meta(key, default)

    @property
    def config(self) -> dict:
        """The resolved run config the engine stored (``task``, ``seed``, ``iterations``, ...)."""
        return dict(self.meta("config", {}) or {})

    @property
    def objective(self) -> str | None:
        return self.meta("objective")

    @property
    def qd_offset(self) -> float:
        return float((self.meta("archive") or {}).get("qd_offset", 0.0) or 0.0)

    @property
    def descriptors(self) -> list[dict]:
        """``[{name, low, high, bins}]`` from meta; else inferred names with ``low``/``high``/``bins`` None."""
        stored = self.meta("descriptors")
        if stored:
            return [dict(d) for d in stored]
        names: dict[str, None] = {}
        for (text,) in self._conn.execute("SELECT features FROM programs WHERE status = 'ok' ORDER BY id"):
            for name in _json(text):
                names.setdefault(name, None)
        return [{"name": n, "low": None, "high": None, "bins": None} for n in names]

    @property
    def descriptor_names(self) -> list[str]:
        return [d["name"] for d in self.descriptors]

    # -- programs ---------------------------------------------------------------------------
    def programs(self, code: bool = False) -> pd.DataFrame:
        """One row per candidate ever proposed, in id order.

        Columns: :data:`PROGRAM_COLUMNS` (``code_length`` is the program's length in characters;
        ``created_at``/``finished_at`` are Unix times), then ``feature_<name>`` for every feature
        and ``metric_<name>`` for every metric seen (NaN where a row lacks it), then ``code`` if
        ``code=True``.
        """
        sql = ("SELECT id, parent_id, island, iteration, status, score, fitness, eval_s, model, prompt_tokens,"
               " completion_tokens, cost_usd, created_at, finished_at, length(code) AS code_length,"
               " features, metrics" + (", code" if code else "") + " FROM programs ORDER BY id")
        rows = self._conn.execute(sql).fetchall()
        base = pd.DataFrame([tuple(r[c] for c in PROGRAM_COLUMNS) for r in rows], columns=list(PROGRAM_COLUMNS))
        for column in _INT_COLUMNS:
            base[column] = base[column].astype("Int64")
        for column in ("score", "fitness", "eval_s", "cost_usd", "created_at", "finished_at"):
            base[column] = base[column].astype(float)
        features = [_json(r["features"]) for r in rows]
        metrics = [_json(r["metrics"]) for r in rows]
        feature_names = list(dict.fromkeys(self.descriptor_names + [k for f in features for k in f]))
        metric_names = sorted({k for m in metrics for k in m})
        extra = {f"feature_{n}": [_num(f.get(n)) for f in features] for n in feature_names}
        extra.update({f"metric_{n}": [_num(m.get(n)) for m in metrics] for n in metric_names})
        if code:
            extra["code"] = [r["code"] for r in rows]
        return pd.concat([base, pd.DataFrame(extra, index=base.index)], axis=1) if extra else base

    def program(self, program_id: int) -> Program:
        """One program by id. Raises KeyError if there is none."""
        row = self._conn.execute(
            "SELECT id, code, score, fitness, metrics, features, parent_id, island, iteration, status, artifacts"
            f"{self._later_columns} FROM programs WHERE id = ?", (int(program_id),)).fetchone()
        if row is None:
            raise KeyError(f"no program {program_id} in {self.path}")
        keys = row.keys()
        return Program(id=row["id"], code=row["code"], score=row["score"], fitness=row["fitness"],
                       metrics=_json(row["metrics"]), features=_json(row["features"]),
                       parent_id=row["parent_id"], island=row["island"], iteration=row["iteration"],
                       status=row["status"], artifacts=_json(row["artifacts"]),
                       private=_json(row["private"]) if "private" in keys else {},
                       explanation=row["explanation"] if "explanation" in keys else None)

    @property
    def _later_columns(self) -> str:
        """``, private, explanation`` where the store has them (a run from before schema 2 has not)."""
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(programs)")}
        return "".join(f", {c}" for c in ("private", "explanation") if c in have)

    def best(self) -> Program:
        """The ok program with the highest fitness (the lowest id among equals).

        Raises:
            StoreError: no program has been evaluated ok yet.
        """
        row = self._conn.execute("SELECT id FROM programs WHERE status = 'ok' AND fitness IS NOT NULL"
                                 " ORDER BY fitness DESC, id ASC LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no program has been evaluated ok yet")
        return self.program(row["id"])

    def lineage(self, program_id: int) -> list[Program]:
        """The ancestors of a program, oldest first (the initial program), ending with it."""
        chain: list[Program] = []
        seen: set[int] = set()
        current: int | None = int(program_id)
        while current is not None and current not in seen:
            seen.add(current)
            program = self.program(current)
            chain.append(program)
            current = program.parent_id
        return chain[::-1]

    def diff(self, a_id: int, b_id: int, context: int = 3) -> str:
        """Unified diff (difflib) from program ``a_id`` to program ``b_id``; empty if identical."""
        a, b = self.program(a_id), self.program(b_id)
        return "".join(difflib.unified_diff(a.code.splitlines(keepends=True), b.code.splitlines(keepends=True),
                                            fromfile=f"program {a.id}", tofile=f"program {b.id}", n=context))

    # -- archive ----------------------------------------------------------------------------
    def _events(self) -> list[sqlite3.Row]:
        return self._conn.execute("SELECT seq, kind, program_id, island, status, cell FROM archive_events"
                                  " ORDER BY seq").fetchall()

    def elites(self, island: int | None = None) -> pd.DataFrame:
        """The current elites, from the replay of the archive events.

        Columns: ``id, island, cell, score, fitness`` and ``feature_<name>`` per descriptor; one row
        per occupied (island, cell), sorted by island then cell. ``island`` selects one island.
        A program may be the elite of one cell on several islands (the seed, migrants).
        """
        holders = self._holders()
        names = self.descriptor_names
        columns = ["id", "island", "cell", "score", "fitness"] + [f"feature_{n}" for n in names]
        info = self._program_info({pid for pid in holders.values()})
        rows = []
        for (isl, cell), pid in sorted(holders.items()):
            if island is not None and isl != island:
                continue
            score, fitness, features = info[pid]
            rows.append([pid, isl, cell, score, fitness] + [_num(features.get(n)) for n in names])
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("id", "island", "cell"):
            frame[column] = frame[column].astype(int)
        for column in columns[3:]:
            frame[column] = frame[column].astype(float)
        return frame

    def _holders(self) -> dict[tuple[int, int], int]:
        """``(island, cell) -> program id`` of the current elites: the replay of the archive events."""
        holders: dict[tuple[int, int], int] = {}
        for event in self._events():
            if event["kind"] == "reset":   # an island emptied and reseeded (FunSearch's reset)
                holders = {key: pid for key, pid in holders.items() if key[0] != event["island"]}
            elif event["status"] in ("new", "improved") and event["cell"] is not None:
                holders[(event["island"], event["cell"])] = event["program_id"]
        return holders

    @property
    def num_islands(self) -> int:
        """Islands of the run (meta ``archive``; else the highest island an event names, plus one)."""
        stored = (self.meta("archive") or {}).get("islands")
        if stored:
            return int(stored)
        row = self._conn.execute("SELECT MAX(island) FROM archive_events").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def island_stats(self) -> list[dict[str, Any]]:
        """Per island, in order: ``island, elites, coverage, qd_score, best_fitness, best_id`` — the
        statistics of each island's archive (coverage over :attr:`cells`, NaN when unknown; the best
        of equal fitness is the elite of the lowest cell, as the engine's archive ranks them)."""
        holders = self._holders()
        fitness = self._fitness({pid for pid in holders.values()})
        total_cells = self.cells
        out = []
        for island in range(self.num_islands):
            cells = sorted((cell, pid) for (isl, cell), pid in holders.items() if isl == island)
            values = [(fitness[pid], -cell, pid) for cell, pid in cells if fitness.get(pid) is not None]
            best = max(values) if values else None
            out.append({
                "island": island, "elites": len(values),
                "coverage": len(values) / total_cells if total_cells else float("nan"),
                "qd_score": sum(v + self.qd_offset for v, _, _ in values),
                "best_fitness": best[0] if best else None, "best_id": best[2] if best else None,
            })
        return out

    def _fitness(self, ids: set[int]) -> dict[int, float | None]:
        return {pid: info[1] for pid, info in self._program_info(ids).items()}

    def statuses(self) -> dict[str, int]:
        """How many candidates ended with each status."""
        return {str(s): int(n) for s, n in
                self._conn.execute("SELECT status, COUNT(*) FROM programs GROUP BY status ORDER BY status")}

    def placements(self) -> dict[str, Any]:
        """Where candidates were evaluated (Ray runs; empty counts for a local run):
        ``{"nodes": {node_id: {"address", "evaluations", "gpus"}}, "retried": candidates that needed more
        than one attempt, "extra_attempts": attempts beyond the first, "lost": candidates whose every
        attempt was lost}``; a retried evaluation counts on the node that finished it."""
        have = {row["name"] for row in self._conn.execute("PRAGMA table_info(programs)")}
        out: dict[str, Any] = {"nodes": {}, "retried": 0, "extra_attempts": 0, "lost": 0}
        if "placement" not in have:
            return out
        for (text,) in self._conn.execute("SELECT placement FROM programs WHERE placement != '{}' ORDER BY id"):
            placement = _json(text)
            attempts = int(placement.get("attempts") or 1)
            out["retried"] += attempts > 1
            out["extra_attempts"] += attempts - 1
            node = placement.get("node_id")
            if node is None:
                out["lost"] += bool(placement.get("lost"))
                continue
            entry = out["nodes"].setdefault(str(node), {"address": placement.get("node_ip"), "evaluations": 0,
                                                        "gpus": []})
            entry["evaluations"] += 1
            gpus = placement.get("cuda_visible_devices") or ""
            if gpus and gpus not in entry["gpus"]:
                entry["gpus"].append(gpus)
        return out

    def models(self) -> list[dict[str, Any]]:
        """Per model, from the LLM calls: ``model, calls, failed, prompt_tokens, completion_tokens,
        cost_usd, mean_latency_s`` (None without a successful call), ``cached_tokens,
        cache_write_tokens, reasoning_tokens, saved_usd`` (prompt caching; 0 before run.db schema 2),
        and ``improvements``: its ok
        children fitter than their parent (what an ensemble's bandit learns from)."""
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(llm_calls)")}
        # prompt-cache and reasoning usage (run.db schema 2; 0 for an older run)
        cache = "".join(f", COALESCE(SUM({c}), 0) AS {c}" if c in present else f", 0 AS {c}"
                        for c in ("cached_tokens", "cache_write_tokens", "reasoning_tokens", "saved_usd"))
        calls = self._conn.execute(
            "SELECT model, COUNT(*) AS calls, SUM(error IS NOT NULL) AS failed, SUM(prompt_tokens) AS prompt_tokens,"
            " SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd,"
            " AVG(latency_s) AS mean_latency_s" + cache + " FROM llm_calls GROUP BY model ORDER BY model").fetchall()
        improved = dict(self._conn.execute(
            "SELECT c.model, COUNT(*) FROM programs c JOIN programs p ON c.parent_id = p.id"
            " WHERE c.status = 'ok' AND c.fitness > p.fitness GROUP BY c.model").fetchall())
        return [{**dict(r), "improvements": improved.get(r["model"], 0)} for r in calls]

    def top(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` fittest ok programs (lowest id first among equals): ``id, iteration, score, model``, and
        ``private`` (held-out results, for the user) and ``explanation`` (the LLM's) where the run has them."""
        rows = self._conn.execute(f"SELECT id, iteration, score, model{self._later_columns} FROM programs WHERE"
                                  " status = 'ok' AND fitness IS NOT NULL ORDER BY fitness DESC, id LIMIT ?", (int(k),))
        out = []
        for r in rows:
            row = dict(r)
            if "private" in row:
                row["private"] = _json(row["private"])
            out.append(row)
        return out

    def _program_info(self, ids: set[int]) -> dict[int, tuple[float | None, float | None, dict]]:
        out = {}
        for row in self._conn.execute("SELECT id, score, fitness, features FROM programs ORDER BY id"):
            if row["id"] in ids:
                out[row["id"]] = (row["score"], row["fitness"], _json(row["features"]))
        return out

    @property
    def cells(self) -> int | None:
        """Cells of one island's archive: ``prod(bins)`` for a grid, the number of CVT centroids for
        a CVT archive; None when the store does not say (then ``coverage`` is NaN)."""
        kind = (self.meta("archive") or {}).get("kind", "grid")
        if kind == "cvt":
            centroids = self.meta("cvt_centroids")
            return len(centroids) if centroids else None
        bins = [d.get("bins") for d in self.meta("descriptors") or []]
        if not bins or not all(bins):
            return None
        total = 1
        for b in bins:
            total *= int(b)
        return total

    def progress_frame(self) -> pd.DataFrame:
        """QD statistics and spend over time: one row per stored candidate, in id order (the order
        they finished; rejected proposals included). Columns (see docs/notebook_api.md):

        * ``evaluation`` -- 1-based row number; ``id``, ``iteration``, ``status`` of the candidate;
        * ``elapsed_s`` -- seconds from the run's creation to the candidate's ``finished_at``;
        * ``best_score`` -- score of the best ok program so far (by fitness);
        * ``qd_score`` -- sum over the occupied cells, across islands, of the best fitness plus
          the task's ``qd_offset`` (Pugh et al. 2016's QD-score, offset so every elite counts > 0);
        * ``coverage_cells`` -- occupied cells across islands; ``coverage`` -- that over
          :attr:`cells` (NaN when unknown);
        * ``cum_tokens``, ``cum_cost_usd`` -- LLM tokens and dollars recorded on the candidates so far;
        * ``cum_failures`` -- candidates so far whose status is not ``ok``.
        """
        rows = self._conn.execute("SELECT id, iteration, status, score, fitness, prompt_tokens, completion_tokens,"
                                  " cost_usd, created_at, finished_at FROM programs ORDER BY id").fetchall()
        fitness = {r["id"]: r["fitness"] for r in rows}
        # Each event takes effect once the highest program id inserted so far is stored.
        pending: dict[int, list[tuple[int, int]]] = {}
        horizon = 0
        for event in self._events():
            if event["kind"] == "insert":
                horizon = max(horizon, event["program_id"])
            if event["status"] in ("new", "improved") and event["cell"] is not None:
                pending.setdefault(max(horizon, event["program_id"]), []).append((event["cell"], event["program_id"]))
        offset = self.qd_offset
        total_cells = self.cells
        origin = self._origin([r["created_at"] for r in rows])
        cells: dict[int, float] = {}
        best_fitness, best_score, cost, tokens, failures = None, float("nan"), 0.0, 0, 0
        out = []
        for n, row in enumerate(rows, start=1):
            if row["status"] == "ok" and row["fitness"] is not None and (
                    best_fitness is None or row["fitness"] > best_fitness):
                best_fitness, best_score = row["fitness"], row["score"]
            for cell, pid in pending.get(row["id"], ()):
                value = fitness.get(pid)
                if value is not None and (cell not in cells or value > cells[cell]):
                    cells[cell] = value
            cost += row["cost_usd"] or 0.0
            tokens += (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)
            failures += row["status"] != "ok"
            finished = row["finished_at"] if row["finished_at"] is not None else row["created_at"]
            out.append((n, row["id"], row["iteration"], row["status"],
                        (finished - origin) if finished is not None else float("nan"), best_score,
                        sum(v + offset for v in cells.values()), len(cells),
                        len(cells) / total_cells if total_cells else float("nan"), tokens, cost, failures))
        frame = pd.DataFrame(out, columns=list(PROGRESS_COLUMNS))
        for column in ("elapsed_s", "best_score", "qd_score", "coverage", "cum_cost_usd"):
            frame[column] = frame[column].astype(float)
        for column in ("evaluation", "id", "iteration", "coverage_cells", "cum_tokens", "cum_failures"):
            frame[column] = frame[column].astype(int)
        return frame

    def _origin(self, times: list) -> float:
        start = self.meta("created_at")
        if start is not None:
            return float(start)
        known = [t for t in times if t is not None]
        return float(min(known)) if known else 0.0

    def qd_stats(self) -> dict[str, Any]:
        """The run's statistics now (the last row of :meth:`progress_frame`, plus totals):
        ``programs, evaluated, ok, elites, cells, coverage, qd_score, qd_offset, best_score,
        best_id, tokens, cost_usd, failures`` (``failures``: count by non-ok status)."""
        frame = self.progress_frame()
        best = None
        try:
            best = self.best()
        except StoreError:
            pass
        counts = dict(self._conn.execute("SELECT status, COUNT(*) FROM programs GROUP BY status").fetchall())
        last = frame.iloc[-1] if len(frame) else None
        return {
            "programs": int(len(frame)),
            "evaluated": int(sum(n for s, n in counts.items() if s != "rejected")),
            "ok": int(counts.get("ok", 0)),
            "elites": int(last["coverage_cells"]) if last is not None else 0,
            "cells": self.cells,
            "coverage": float(last["coverage"]) if last is not None else float("nan"),
            "qd_score": float(last["qd_score"]) if last is not None else 0.0,
            "qd_offset": self.qd_offset,
            "best_score": best.score if best else None,
            "best_id": best.id if best else None,
            "tokens": int(last["cum_tokens"]) if last is not None else 0,
            "cost_usd": float(last["cum_cost_usd"]) if last is not None else 0.0,
            "failures": {s: int(n) for s, n in sorted(counts.items()) if s != "ok"},
        }

    # -- diagnostics ------------------------------------------------------------------------
    def failures(self) -> pd.DataFrame:
        """Non-ok candidates by status: ``status, count, example_id`` (the latest such candidate)
        and ``example_error`` (its ``error`` artifact, else the tail of its stderr). Most frequent first."""
        out = []
        for row in self._conn.execute(
                "SELECT status, COUNT(*) AS n, MAX(id) AS example FROM programs WHERE status != 'ok'"
                " GROUP BY status ORDER BY n DESC, status").fetchall():
            example = self._conn.execute("SELECT artifacts, stderr FROM programs WHERE id = ?",
                                         (row["example"],)).fetchone()
            error = _json(example["artifacts"]).get("error") or (example["stderr"] or "")[-2000:]
            out.append((row["status"], int(row["n"]), int(row["example"]), str(error).strip()))
        frame = pd.DataFrame(out, columns=list(FAILURE_COLUMNS))
        return frame.astype({"count": int, "example_id": int})

    def spend(self) -> pd.DataFrame:
        """The LLM calls in order: ``id, created_at, elapsed_s`` (since the run was created),
        ``iteration, program_id, model, prompt_tokens, completion_tokens, cost_usd, latency_s,
        error, cached_tokens, saved_usd`` (0 for a run.db from before prompt caching was read) and the
        running totals ``cum_prompt_tokens, cum_completion_tokens, cum_tokens, cum_cost_usd``."""
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(llm_calls)")}
        columns = ["id", "created_at", "iteration", "program_id", "model", "prompt_tokens", "completion_tokens",
                   "cost_usd", "latency_s", "error", "cached_tokens", "saved_usd"]
        select = [c if c in present else f"0 AS {c}" for c in columns]
        rows = self._conn.execute(f"SELECT {', '.join(select)} FROM llm_calls ORDER BY id").fetchall()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
        frame["program_id"] = frame["program_id"].astype("Int64")
        for column in ("created_at", "cost_usd", "latency_s", "saved_usd"):
            frame[column] = frame[column].astype(float)
        for column in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            frame[column] = frame[column].astype(int)
        frame.insert(2, "elapsed_s", frame["created_at"] - self._origin(frame["created_at"].tolist()))
        frame["cum_prompt_tokens"] = frame["prompt_tokens"].cumsum()
        frame["cum_completion_tokens"] = frame["completion_tokens"].cumsum()
        frame["cum_tokens"] = frame["cum_prompt_tokens"] + frame["cum_completion_tokens"]
        frame["cum_cost_usd"] = frame["cost_usd"].cumsum()
        return frame

    # -- plots ------------------------------------------------------------------------------
    def heatmap(self, ax: Any = None, island: int | None = None, features: tuple[str, str] | None = None,
                value: str = "score") -> Any:
        """Heatmap of the elites' ``value`` (``score`` or ``fitness``) over two descriptors; returns the Axes.

        ``island`` None shows every island (per cell, the elite of highest fitness on any island).
        With the run's own archive (a grid of one or two descriptors, or a 2-D CVT archive with its
        stored centroids) the plot is pyribs' ``grid_archive_heatmap``/``cvt_archive_heatmap``;
        otherwise (``features`` naming other features, more than two descriptors, no stored ranges)
        it is a projection binned here: ranges and bins from meta ``descriptors``, else 10 bins
        over the observed range.
        """
        from evoforge.archive import plots

        elites = self.elites(island)
        specs = {d["name"]: d for d in self.descriptors}
        names = list(features) if features is not None else list(specs)[:2]
        if not names:
            raise ValueError(f"{self.path}: the run has no descriptors to plot")
        if len(names) > 2:
            raise ValueError(f"expected at most two features but got {names}")
        if value not in ("score", "fitness"):
            raise ValueError(f"expected value 'score' or 'fitness' but got {value!r}")
        where = "all islands" if island is None else f"island {island}"
        title = f"elites' {value} ({where})"
        declared = [d["name"] for d in self.descriptors]
        known_ranges = all(specs[n].get("low") is not None and specs[n].get("bins") for n in declared)
        kind = (self.meta("archive") or {}).get("kind", "grid")
        if known_ranges and sorted(names) == sorted(declared) and len(declared) <= 2:
            ranges = [(float(specs[n]["low"]), float(specs[n]["high"])) for n in declared]
            transpose = names != declared
            if kind == "grid":
                return plots.grid_heatmap(elites, dims=[int(specs[n]["bins"]) for n in declared], ranges=ranges,
                                          labels=declared, value=value, transpose=transpose, ax=ax, title=title)
            centroids = self.meta("cvt_centroids")
            if centroids and len(declared) == 2:
                return plots.cvt_heatmap(elites, centroids=centroids, ranges=ranges, labels=declared, value=value,
                                         transpose=transpose, ax=ax, title=title)
        if features is not None:  # also allow any feature the programs carry
            frame = self.programs()
            for name in names:
                if f"feature_{name}" not in frame.columns:
                    known = sorted(c[8:] for c in frame if c.startswith("feature_"))
                    raise ValueError(f"no feature {name!r}; known: {known}")
                if f"feature_{name}" not in elites.columns:
                    elites = elites.merge(frame[["id", f"feature_{name}"]], on="id", how="left")

        def axis(name: str) -> tuple[float, float, int]:
            spec = specs.get(name, {})
            if spec.get("low") is not None and spec.get("high") is not None and spec.get("bins"):
                return float(spec["low"]), float(spec["high"]), int(spec["bins"])
            observed = elites[f"feature_{name}"].dropna() if len(elites) else pd.Series(dtype=float)
            low, high = (float(observed.min()), float(observed.max())) if len(observed) else (0.0, 1.0)
            return (low, high if high > low else low + 1.0, 10)

        return plots.heatmap(elites, x=f"feature_{names[0]}", y=f"feature_{names[1]}" if len(names) > 1 else None,
                             x_range=axis(names[0]), y_range=axis(names[1]) if len(names) > 1 else None,
                             value=value, ax=ax, title=title)

    def progress(self, ax: Any = None) -> Any:
        """Best score and QD-score against evaluations (see :meth:`progress_frame`); returns the Axes."""
        from evoforge.archive import plots

        return plots.progress(self.progress_frame(), ax=ax)

    def spend_plot(self, ax: Any = None) -> Any:
        """Cumulative LLM cost (left axis) and tokens (right axis) against LLM calls; returns the Axes."""
        from evoforge.archive import plots

        return plots.spend(self.spend(), ax=ax)

    def failures_plot(self, ax: Any = None) -> Any:
        """Candidates by status (a bar per status, ``ok`` included); returns the Axes."""
        from evoforge.archive import plots

        counts = dict(self._conn.execute("SELECT status, COUNT(*) FROM programs GROUP BY status").fetchall())
        return plots.statuses(counts, ax=ax)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
