"""Stored prompts, `evoforge replay` and `evoforge export` on real runs: the offline operator, and the
real openai SDK against the fake server on 127.0.0.1. A replay calls no model (its fake server is
shut down before it starts)."""

from __future__ import annotations

import json
import re
import shutil
import zlib
from pathlib import Path

import pytest

from evoforge.archive.store import SCHEMA_VERSION, Store
from evoforge.engine.cli import main
from evoforge.engine.config import RunConfig
from evoforge.engine.export import export_records
from evoforge.engine.replay import replay_run
from evoforge.engine.session import resume_run, start_run
from evoforge.evaluators.types import ConfigError
from fakes.anthropic_server import FakeOpenAIServerWithHeaders
from fakes.replies import break_b, raise_a
from fakes.tasks import TINY_EVALUATOR, write_tiny_task

BAD = "<<<<<<< SEARCH\n    a = 99\n=======\n    a = 2\n>>>>>>> REPLACE\n"
_VOLATILE = {"created_at", "finished_at", "eval_s", "latency_s"}


def rows(run_dir: Path, table: str) -> list[dict]:
    """A table's rows without timestamps and timings; the random name of the evaluation's temporary
    directory (in tracebacks, hence stderr, artifacts and the prompts quoting them) is normalised."""
    def clean(value):
        if isinstance(value, bytes):      # a stored prompt (zlib-compressed JSON)
            value = zlib.decompress(value).decode()
        return re.sub(r"evoforge-[A-Za-z0-9_]{8}", "evoforge-TMP", value) if isinstance(value, str) else value

    with Store.open(run_dir / "run.db", readonly=True) as store:
        order = "seq" if table == "archive_events" else "id"
        return [{k: clean(v) for k, v in dict(r).items() if k not in _VOLATILE}
                for r in store._conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]


def cycle(*answers):
    """Answers by request number, cycling: a mix of improvements, failed edits (retried) and crashes."""
    seen = []

    def reply(request):
        seen.append(request)
        answer = answers[(len(seen) - 1) % len(answers)]
        return answer(request) if callable(answer) else answer
    return reply


@pytest.fixture
def llm_run(tmp_path):
    """A finished 10-iteration run through the fake OpenAI server (stopped afterwards)."""
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    with FakeOpenAIServerWithHeaders(cycle(raise_a, BAD, raise_a, break_b, raise_a)) as server:
        config = RunConfig(task=str(task), iterations=10, concurrency=1, seed=5, full_rewrite_share=0.0,
                           crossover_share=0.0, llm=({"provider": "openai-compatible", "model": "fake",
                                                      "base_url": server.base_url, "max_retries": 0},))
        start_run(config, out=tmp_path / "run")
        requests = [r["body"] for r in server.requests]
    return task, tmp_path / "run", requests


def test_every_prompt_is_stored_with_its_reply_the_stable_prefix_once(llm_run):
    _, run, requests = llm_run
    with Store.open(run / "run.db", readonly=True) as store:
        calls = list(store.llm_calls())
        prefixes = store._conn.execute("SELECT COUNT(*) FROM prompt_prefixes").fetchone()[0]
        raw = store._conn.execute("SELECT prompt FROM llm_calls").fetchall()
    assert len(calls) == len(requests) > 10          # retries are calls too
    assert prefixes == 1                             # one system text for the whole run
    for call, request in zip(calls, requests):
        # what the server received is exactly what run.db keeps
        assert [{"role": "system", "content": call["system"]}, *call["messages"]] == request["messages"]
        assert call["seed"] % (2**31) == request["seed"] and call["reply"]
    assert all(isinstance(row[0], bytes) and call["system"].encode() not in row[0] for call, row in zip(calls, raw))
    assert [c["attempt"] for c in calls].count(1) >= 1


@pytest.mark.parametrize("llm", ["offline", "fake"])
def test_a_replayed_run_equals_the_original(tmp_path, llm, llm_run):
    if llm == "offline":
        task = write_tiny_task(tmp_path / "tiny-offline", islands=2)
        original = tmp_path / "offline-run"
        start_run(RunConfig(task=str(task), iterations=15, concurrency=1, seed=3, llm=("offline",)), out=original)
    else:
        _, original, _ = llm_run
    outcome = replay_run(original, out=tmp_path / "replay")
    assert outcome.exhausted_at is None and outcome.differing == ()
    assert "every prompt equals the original's" in outcome.describe()
    for table in ("programs", "archive_events", "llm_calls"):
        assert rows(tmp_path / "replay", table) == rows(original, table), table
    assert (tmp_path / "replay" / "best_program.py").read_text() == (original / "best_program.py").read_text()


def test_replay_against_a_changed_evaluator_and_where_the_replies_run_out(tmp_path, llm_run):
    task, original, _ = llm_run
    changed = tmp_path / "tiny-strict"
    shutil.copytree(task, changed)
    # the new evaluator also punishes a large b, so scores (and the prompts that show them) change
    (changed / "evaluator.py").write_text(TINY_EVALUATOR.replace('"score": -error,', '"score": -error - 10,'))
    outcome = replay_run(original, out=tmp_path / "replay", task=str(changed), iterations=14)
    before, after = rows(original, "programs"), rows(tmp_path / "replay", "programs")
    assert outcome.exhausted_at == 11 and "run out at iteration 11" in outcome.describe()
    assert len(after) == len(before)                  # the proposals the stored replies cover, no more
    assert [r["edit"] for r in after] == [r["edit"] for r in before]   # the same proposals
    assert [r["score"] for r in after if r["score"] is not None] == \
        pytest.approx([r["score"] - 10 for r in before if r["score"] is not None])
    assert outcome.differing and outcome.differing[0] == 1   # the parent's score is in every prompt
    with pytest.raises(ConfigError, match="is a replay of"):
        resume_run(tmp_path / "replay")


def test_cli_replay_and_export(tmp_path, llm_run, capsys):
    _, original, _ = llm_run
    assert main(["replay", str(original), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "replayed" in out and "no model was called" in out
    assert main(["export", str(original), "--format", "dpo", "-o", str(tmp_path / "pairs.jsonl")]) == 0
    assert "dpo record(s)" in capsys.readouterr().out
    assert main(["show", str(original)]) == 0


def test_export_formats_on_a_real_run(llm_run):
    _, run, _ = llm_run
    with Store.open(run / "run.db", readonly=True) as store:
        rewards = list(export_records(store, "rewards"))
        sft = list(export_records(store, "sft"))
        dpo = list(export_records(store, "dpo"))
        by_id = {r.id: r for r in store.candidates()}
    assert len(rewards) == 10 and json.dumps(rewards)        # one per proposal, JSON-clean
    for r in rewards:
        child, parent = by_id[r["id"]], by_id[r["parent_id"]]
        assert r["prompt"][0]["role"] == "system" and r["prompt"][1]["role"] == "user"
        assert r["completion"] == child.edit and r["score"] == child.score and r["parent_score"] == parent.score
        if child.fitness is not None:
            assert r["improvement"] == pytest.approx(child.fitness - parent.fitness)
        else:
            assert r["improvement"] is None
    # a retried edit's prompt is the whole conversation, ending with the error
    assert any(len(r["prompt"]) == 4 and r["prompt"][2]["role"] == "assistant" for r in rewards)
    assert sft and all(r["improvement"] > 0 and r["status"] == "ok" for r in sft)
    assert len(sft) == sum(1 for r in rewards if r["status"] == "ok" and (r["improvement"] or 0) > 0)
    assert dpo
    for pair in dpo:
        chosen, rejected = by_id[pair["chosen_id"]], by_id[pair["rejected_id"]]
        assert chosen.parent_id == rejected.parent_id == pair["parent_id"]
        assert rejected.fitness is None or chosen.fitness > rejected.fitness
        assert pair["chosen"] == chosen.edit and pair["rejected"] == rejected.edit


def test_store_upgrades_a_version_1_run_db(tmp_path):
    path = tmp_path / "run.db"
    store = Store.create(path, {"task": "x"})
    store.add_llm_call(iteration=1, model="m", prompt_tokens=10, completion_tokens=5, cost_usd=0.1)
    store._conn.execute("DROP INDEX llm_calls_iteration")
    for column in ("seed", "attempt", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "saved_usd",
                   "prefix_hash", "prompt", "reply", "thinking", "truncated"):
        store._conn.execute(f"ALTER TABLE llm_calls DROP COLUMN {column}")
    store._conn.execute("DROP TABLE prompt_prefixes")
    store.set_meta("schema_version", 1)
    store.close()
    with Store.open(path, readonly=True) as old:     # read as it is
        assert old.totals()["cached_tokens"] == 0 and old.totals()["cost_usd"] == pytest.approx(0.1)
        assert [c["messages"] for c in old.llm_calls()] == [None]
    with Store.open(path) as upgraded:               # upgraded in place for writing
        assert upgraded.get_meta("schema_version") == SCHEMA_VERSION   # 3 since programs keep private results
        upgraded.add_llm_call(iteration=2, model="m", system="sys", messages=[{"role": "user", "content": "u"}],
                              reply="r", cached_tokens=3, saved_usd=0.01)
        calls = list(upgraded.llm_calls())
        assert calls[1]["system"] == "sys" and calls[1]["messages"][0]["content"] == "u"
        assert upgraded.totals()["cached_tokens"] == 3
