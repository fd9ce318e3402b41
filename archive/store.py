"""The SQLite store of a run (docs/architecture.md, "The run directory"): one row per candidate ever proposed,
the LLM calls, the archive events and the resolved config. It *is* the checkpoint.

Every LLM call is kept with its prompt and its reply (``evoforge replay`` re-runs a run from them,
``evoforge export`` turns them into fine-tuning data). Compactly: the stable prefix of a prompt (the
system text: role, rules, task description — the same in every prompt of a run) is stored once in
``prompt_prefixes``, keyed by its SHA-256, and each call keeps only the hash and the messages after it,
as zlib-compressed JSON (prompts repeat programs: ~6x smaller, ~0.4 ms a call).
Schema version 2 added these columns; a version-1 run.db is upgraded in place when opened for writing
and read as it is otherwise (its calls simply have no prompts).

WAL mode lets the notebook read while the engine writes. Each finished candidate is written with
its archive events in one transaction, so a SIGKILL loses at most the candidates in flight and
never leaves a row without its insertion (or the reverse).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from evoforge.evaluators.types import StoreError

__all__ = ["Store", "CandidateRecord", "ArchiveEvent", "SCHEMA_VERSION"]

SCHEMA_VERSION = 3
_UPGRADABLE = (1, 2)
# Columns of ``programs`` added in schema 3, with their definitions: `Store.open` adds them to an older
# run.db, so a run started before them can be resumed and shown.
_PROGRAM_COLUMNS_V3 = {
    "private": "TEXT NOT NULL DEFAULT '{}'",     # metrics and texts for the user, never for a prompt
    "explanation": "TEXT",                         # why the LLM says it made the change
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS programs (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER,
    island INTEGER,
    iteration INTEGER NOT NULL,
    code TEXT NOT NULL,
    code_hash TEXT,
    edit TEXT,
    edit_kind TEXT,
    status TEXT NOT NULL,
    score REAL,
    fitness REAL,
    features TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '{}',
    stderr TEXT NOT NULL DEFAULT '',
    stage INTEGER,
    eval_s REAL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    inspirations TEXT NOT NULL DEFAULT '[]',
    private TEXT NOT NULL DEFAULT '{}',
    explanation TEXT,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    placement TEXT NOT NULL DEFAULT '{}',
    fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS programs_hash ON programs (code_hash);
CREATE INDEX IF NOT EXISTS programs_iteration ON programs (iteration);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    iteration INTEGER,
    program_id INTEGER,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_s REAL,
    error TEXT,
    created_at REAL NOT NULL,
    seed INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL NOT NULL DEFAULT 0,
    prefix_hash TEXT,
    prompt BLOB,
    reply TEXT,
    thinking TEXT,
    truncated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS llm_calls_iteration ON llm_calls (iteration, attempt);
CREATE TABLE IF NOT EXISTS prompt_prefixes (hash TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS archive_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- 'insert' | 'migrate'
    program_id INTEGER NOT NULL,
    island INTEGER NOT NULL,
    from_island INTEGER,
    status TEXT NOT NULL,            -- 'new' | 'improved' | 'not_added'
    improvement REAL,
    cell INTEGER,
    iteration INTEGER,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class CandidateRecord:
    """One row of ``programs``: a candidate ever proposed, good or bad."""

    iteration: int
    code: str
    status: str
    parent_id: int | None = None
    island: int | None = None
    code_hash: str | None = None
    edit: str | None = None
    edit_kind: str | None = None
    score: float | None = None
    fitness: float | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    stderr: str = ""
    stage: int | None = None
    eval_s: float | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    inspirations: Sequence[int] = ()
    created_at: float = 0.0
    id: int | None = None
    # Name -> number or text the evaluator marked private (held-out results): shown to the user,
    # never rendered into a prompt (docs/architecture.md, "The task contract").
    private: Mapping[str, Any] = field(default_factory=dict)
    explanation: str | None = None      # the LLM's own account of the change (its reply outside the edits)
    # Where it was evaluated (Ray: node id and address, GPUs, attempts); never part of a prompt.
    placement: Mapping[str, Any] = field(default_factory=dict)
    # The functional fingerprint of its behaviour on the evaluator's probe inputs (None: no probe).
    fingerprint: str | None = None


@dataclass(frozen=True)
class ArchiveEvent:
    kind: str
    program_id: int
    island: int
    status: str
    improvement: float | None = None
    cell: int | None = None
    from_island: int | None = None
    iteration: int | None = None


_JSON_COLUMNS = ("features", "metrics", "artifacts", "inspirations", "private", "placement")

# Columns of llm_calls added in schema version 2, with their SQL types (the upgrade adds them).
_CALL_COLUMNS_V2 = {
    "seed": "INTEGER", "attempt": "INTEGER NOT NULL DEFAULT 0", "cached_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_write_tokens": "INTEGER NOT NULL DEFAULT 0", "reasoning_tokens": "INTEGER NOT NULL DEFAULT 0",
    "saved_usd": "REAL NOT NULL DEFAULT 0", "prefix_hash": "TEXT", "prompt": "BLOB", "reply": "TEXT",
    "thinking": "TEXT", "truncated": "INTEGER NOT NULL DEFAULT 0"}


def _row_to_record(row: sqlite3.Row) -> CandidateRecord:
    data = dict(row)
    for key in _JSON_COLUMNS:
        data[key] = json.loads(data.get(key) or ("[]" if key == "inspirations" else "{}"))
    data["inspirations"] = tuple(data["inspirations"])
    data.pop("finished_at", None)
    return CandidateRecord(**data)


class Store:
    """A run's SQLite database. Open with `Store.create` (new run) or `Store.open` (existing)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.path = path
        self._conn = conn
        self.readonly = readonly
        self._prefixes: set[str] = set()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def _connect(cls, path: Path, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            return conn
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the run database: {exc}") from exc

    @classmethod
    def create(cls, path: Path, config: Mapping[str, Any]) -> "Store":
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists; use `evoforge resume {path.parent}` to continue that run")
        store = cls(path, cls._connect(path, readonly=False))
        store._conn.executescript(_SCHEMA)
        store.set_meta("schema_version", SCHEMA_VERSION)
        store.set_meta("config", dict(config))
        store.set_meta("created_at", time.time())
        return store

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> "Store":
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: no run database here (expected the run.db an `evoforge run` wrote)")
        store = cls(path, cls._connect(path, readonly=readonly), readonly=readonly)
        try:
            version = store.get_meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not an evoforge run database: {exc}") from exc
        if version in _UPGRADABLE and not readonly:
            store._upgrade()
        elif version != SCHEMA_VERSION and version not in _UPGRADABLE:   # read-only old runs read with defaults
            raise StoreError(f"{path}: expected schema version {SCHEMA_VERSION} but got {version}")
        if not readonly:
            store._add_missing_columns()
        return store

    def _add_missing_columns(self) -> None:
        """Columns added since a run was made (additive, so the schema version stays): ``placement``,
        ``fingerprint`` (NULL for the rows of an older run: they simply have none)."""
        have = self._program_columns()
        if "placement" not in have:
            self._conn.execute("ALTER TABLE programs ADD COLUMN placement TEXT NOT NULL DEFAULT '{}'")
        if "fingerprint" not in have:
            self._conn.execute("ALTER TABLE programs ADD COLUMN fingerprint TEXT")

    def _program_columns(self) -> set[str]:
        """The columns ``programs`` has (an older run opened read-only lacks the later ones)."""
        return {row[1] for row in self._conn.execute("PRAGMA table_info(programs)")}

    def _upgrade(self) -> None:
        """Version 1 → 2: the llm_calls columns that keep prompts, replies and cache usage; 2 → 3: the
        programs' private results and explanations. Each step only adds what is missing."""
        present = self._call_columns()
        programs = self._program_columns()
        try:
            with self._transaction() as conn:
                for name, kind in _CALL_COLUMNS_V2.items():
                    if name not in present:
                        conn.execute(f"ALTER TABLE llm_calls ADD COLUMN {name} {kind}")
                for name, kind in _PROGRAM_COLUMNS_V3.items():
                    if name not in programs:
                        conn.execute(f"ALTER TABLE programs ADD COLUMN {name} {kind}")
                conn.execute("CREATE TABLE IF NOT EXISTS prompt_prefixes (hash TEXT PRIMARY KEY, text TEXT NOT NULL)")
                conn.execute("CREATE INDEX IF NOT EXISTS llm_calls_iteration ON llm_calls (iteration, attempt)")
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                             (json.dumps(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not upgrade the run database to schema {SCHEMA_VERSION}: "
                             f"{exc}") from exc

    def _call_columns(self) -> set[str]:
        return {row[1] for row in self._conn.execute("PRAGMA table_info(llm_calls)")}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> "Store._Tx":
        return Store._Tx(self._conn)

    # -- meta ------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # -- writing ---------------------------------------------------------------------------
    def add_candidate(self, record: CandidateRecord, events: Sequence[ArchiveEvent] = ()) -> int:
        """Write a candidate and its archive events atomically; return its id."""
        now = time.time()
        values = {
            "parent_id": record.parent_id, "island": record.island, "iteration": record.iteration,
            "code": record.code, "code_hash": record.code_hash, "edit": record.edit,
            "edit_kind": record.edit_kind, "status": record.status, "score": record.score,
            "fitness": record.fitness, "features": json.dumps(dict(record.features)),
            "metrics": json.dumps(dict(record.metrics)), "artifacts": json.dumps(dict(record.artifacts)),
            "stderr": record.stderr, "stage": record.stage, "eval_s": record.eval_s, "model": record.model,
            "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "cost_usd": record.cost_usd, "inspirations": json.dumps(list(record.inspirations)),
            "private": json.dumps(dict(record.private)), "explanation": record.explanation,
            "created_at": record.created_at or now, "finished_at": now,
            "placement": json.dumps(dict(record.placement)), "fingerprint": record.fingerprint,
        }
        if record.id is not None:
            values["id"] = record.id
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        try:
            with self._transaction() as conn:
                cursor = conn.execute(f"INSERT INTO programs ({columns}) VALUES ({marks})", tuple(values.values()))
                program_id = int(cursor.lastrowid)
                for event in events:
                    self._insert_event(conn, event, event.program_id, now)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not store candidate of iteration {record.iteration}: {exc}") from exc
        return program_id

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, event: ArchiveEvent, program_id: int, now: float) -> None:
        conn.execute(
            "INSERT INTO archive_events (kind, program_id, island, from_island, status, improvement, cell,"
            " iteration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.kind, program_id, event.island, event.from_island, event.status, event.improvement,
             event.cell, event.iteration, now))

    def add_events(self, events: Sequence[ArchiveEvent]) -> None:
        now = time.time()
        try:
            with self._transaction() as conn:
                for event in events:
                    self._insert_event(conn, event, event.program_id, now)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not store archive events: {exc}") from exc

    def set_private(self, program_id: int, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into a stored program's private results (a held-out evaluation run later)."""
        try:
            with self._transaction() as conn:
                row = conn.execute("SELECT private FROM programs WHERE id = ?", (program_id,)).fetchone()
                if row is None:
                    raise StoreError(f"{self.path}: no program #{program_id} to attach private results to")
                merged = {**json.loads(row["private"] or "{}"), **dict(values)}
                conn.execute("UPDATE programs SET private = ? WHERE id = ?", (json.dumps(merged), program_id))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not store private results of #{program_id}: {exc}") from exc

    def add_llm_call(self, *, iteration: int, model: str, prompt_tokens: int = 0, completion_tokens: int = 0,
                     cost_usd: float = 0.0, latency_s: float | None = None, error: str | None = None,
                     program_id: int | None = None, system: str | None = None,
                     messages: Sequence[Mapping[str, str]] | None = None, reply: str | None = None,
                     thinking: str | None = None, seed: int | None = None, attempt: int = 0,
                     cached_tokens: int = 0, cache_write_tokens: int = 0, reasoning_tokens: int = 0,
                     saved_usd: float = 0.0, truncated: bool = False) -> None:
        """One call, with its prompt (``system`` — stored once per run by hash — and the ``messages``
        after it) and its ``reply``; a failed call has ``error`` and no reply."""
        prefix_hash = None
        try:
            if system is not None:
                prefix_hash = hashlib.sha256(system.encode()).hexdigest()
                if prefix_hash not in self._prefixes:
                    self._conn.execute("INSERT OR IGNORE INTO prompt_prefixes (hash, text) VALUES (?, ?)",
                                       (prefix_hash, system))
                    self._prefixes.add(prefix_hash)
            self._conn.execute(
                "INSERT INTO llm_calls (iteration, program_id, model, prompt_tokens, completion_tokens, cost_usd,"
                " latency_s, error, created_at, seed, attempt, cached_tokens, cache_write_tokens, reasoning_tokens,"
                " saved_usd, prefix_hash, prompt, reply, thinking, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iteration, program_id, model, prompt_tokens, completion_tokens, cost_usd, latency_s, error,
                 time.time(), None if seed is None else seed % (1 << 62), attempt, cached_tokens, cache_write_tokens,
                 reasoning_tokens, saved_usd, prefix_hash,
                 None if messages is None else zlib.compress(json.dumps(list(messages)).encode()),
                 reply, thinking or None, int(bool(truncated))))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not store the LLM call of iteration {iteration}: {exc}") from exc

    def llm_calls(self, *, where: str = "", params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """The stored calls in order, each a dict of its columns with ``system`` (the stored prefix)
        and ``messages`` (decoded) filled in; calls of a version-1 run have neither."""
        has_prompts = "prefix_hash" in self._call_columns()
        sql = ("SELECT c.*, p.text AS system FROM llm_calls c LEFT JOIN prompt_prefixes p ON p.hash = c.prefix_hash"
               if has_prompts else "SELECT * FROM llm_calls c")
        sql += (f" WHERE {where}" if where else "") + " ORDER BY c.id"
        for row in self._conn.execute(sql, tuple(params)):
            data = dict(row)
            data.setdefault("system", None)
            raw = data.pop("prompt", None)
            data["messages"] = None if raw is None else json.loads(
                zlib.decompress(raw) if isinstance(raw, bytes) else raw)
            yield data

    # -- reading ---------------------------------------------------------------------------
    def candidates(self, *, where: str = "", params: Sequence[Any] = ()) -> Iterator[CandidateRecord]:
        sql = "SELECT * FROM programs" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        for row in self._conn.execute(sql, tuple(params)):
            yield _row_to_record(row)

    def candidate(self, program_id: int) -> CandidateRecord | None:
        row = self._conn.execute("SELECT * FROM programs WHERE id = ?", (program_id,)).fetchone()
        return None if row is None else _row_to_record(row)

    def events(self) -> list[ArchiveEvent]:
        rows = self._conn.execute(
            "SELECT kind, program_id, island, from_island, status, improvement, cell, iteration"
            " FROM archive_events ORDER BY seq").fetchall()
        return [ArchiveEvent(**dict(r)) for r in rows]

    def hashes(self) -> dict[str, int]:
        """code_hash → the first program id with it (for exact-duplicate detection): evaluated programs, and
        behavioural duplicates (rejected with a functional fingerprint, so their text was run by the probe)."""
        out: dict[str, int] = {}
        behavioural = " OR fingerprint IS NOT NULL" if "fingerprint" in self._program_columns() else ""
        for row in self._conn.execute("SELECT id, code_hash FROM programs WHERE code_hash IS NOT NULL"
                                      f" AND (status != 'rejected'{behavioural}) ORDER BY id"):
            out.setdefault(row["code_hash"], row["id"])
        return out

    def fingerprints(self) -> dict[str, int]:
        """Functional fingerprint → the first ``ok`` program with it (behavioural duplicate detection)."""
        out: dict[str, int] = {}
        if "fingerprint" not in self._program_columns():
            return out   # an older run opened read-only
        for row in self._conn.execute("SELECT id, fingerprint FROM programs WHERE fingerprint IS NOT NULL"
                                      " AND status = 'ok' ORDER BY id"):
            out.setdefault(row["fingerprint"], row["id"])
        return out

    def count(self, where: str = "", params: Sequence[Any] = ()) -> int:
        sql = "SELECT COUNT(*) FROM programs" + (f" WHERE {where}" if where else "")
        return int(self._conn.execute(sql, tuple(params)).fetchone()[0])

    def next_program_id(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM programs").fetchone()[0])

    def max_iteration(self) -> int:
        row = self._conn.execute("SELECT MAX(iteration) FROM programs").fetchone()
        return -1 if row[0] is None else int(row[0])

    def status_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._conn.execute("SELECT status, COUNT(*) FROM programs GROUP BY status")}

    def totals(self) -> dict[str, float]:
        """Sums over the LLM calls; the cache columns are 0 for a version-1 run."""
        extra = [c for c in ("cached_tokens", "cache_write_tokens", "reasoning_tokens", "saved_usd")
                 if c in self._call_columns()]
        row = self._conn.execute(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
            " COALESCE(SUM(cost_usd), 0), COUNT(*)" + "".join(f", COALESCE(SUM({c}), 0)" for c in extra)
            + " FROM llm_calls").fetchone()
        out = {"prompt_tokens": row[0], "completion_tokens": row[1], "cost_usd": row[2], "llm_calls": row[3],
               "cached_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "saved_usd": 0.0}
        out.update(zip(extra, row[4:]))
        return out

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
