"""The SQLite store: rows round-trip, writes are atomic, WAL lets a reader in while a writer works."""

import sqlite3

import pytest

from evoforge.archive.store import ArchiveEvent, CandidateRecord, Store
from evoforge.evaluators.types import StoreError


def record(iteration, **kw):
    values = dict(iteration=iteration, code=f"x = {iteration}\n", status="ok", score=float(iteration),
                  fitness=float(iteration), features={"a": 0.5}, metrics={"m": 1.0}, artifacts={"note": "hi"},
                  inspirations=(1, 2), model="offline")
    values.update(kw)
    return CandidateRecord(**values)


def test_candidate_round_trip_with_events(tmp_path):
    store = Store.create(tmp_path / "run.db", {"seed": 3})
    pid = store.next_program_id()
    got = store.add_candidate(record(1, id=pid), [ArchiveEvent("insert", pid, 0, "new", 1.0, 5, iteration=1)])
    assert got == pid == 1
    back = store.candidate(1)
    assert back.features == {"a": 0.5} and back.inspirations == (1, 2) and back.artifacts == {"note": "hi"}
    assert store.events() == [ArchiveEvent("insert", 1, 0, "new", 1.0, 5, None, 1)]
    assert store.get_meta("config") == {"seed": 3}
    assert store.integrity_ok()


def test_a_failed_transaction_leaves_neither_row_nor_event(tmp_path):
    store = Store.create(tmp_path / "run.db", {})
    store.add_candidate(record(1, id=1))
    with pytest.raises(StoreError, match="iteration 2"):
        # id 1 already exists: the insert fails, and the event written before it must roll back too
        store.add_candidate(record(2, id=1), [ArchiveEvent("insert", 1, 0, "new", 1.0, 0)])
    assert store.count() == 1 and store.events() == []


def test_reader_sees_committed_rows_while_writer_is_open(tmp_path):
    writer = Store.create(tmp_path / "run.db", {})
    writer.add_candidate(record(1))
    reader = Store.open(tmp_path / "run.db", readonly=True)
    assert reader.count() == 1
    writer.add_candidate(record(2))
    assert reader.count() == 2
    with pytest.raises(sqlite3.OperationalError):
        reader._conn.execute("DELETE FROM programs")


def test_hashes_skip_rejected_rows_and_keep_first_id(tmp_path):
    store = Store.create(tmp_path / "run.db", {})
    store.add_candidate(record(1, code_hash="h"))
    store.add_candidate(record(2, code_hash="h"))
    store.add_candidate(record(3, code_hash="r", status="rejected"))
    assert store.hashes() == {"h": 1}


def test_create_refuses_an_existing_database_and_open_needs_one(tmp_path):
    Store.create(tmp_path / "run.db", {}).close()
    with pytest.raises(StoreError, match="resume"):
        Store.create(tmp_path / "run.db", {})
    with pytest.raises(StoreError, match="no run database"):
        Store.open(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_text("not sqlite at all, just text" * 100)
    with pytest.raises(StoreError):
        Store.open(tmp_path / "junk.db")
