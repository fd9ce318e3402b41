"""Functional fingerprints (Unified Functional Hashing): a child that behaves like an evaluated program on the
evaluator's probe inputs is stored as a rejected behavioural duplicate, without its full evaluation.

The runs go through the real process sandbox and the real openai SDK against a fake server on 127.0.0.1;
the probing evaluator (fakes.tasks.PROBING_EVALUATOR) writes "FULL EVALUATION" to stderr, stored with each
row, so a row without it was not evaluated.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from evoforge.archive.store import _SCHEMA, CandidateRecord, Store
from evoforge.engine.config import RunConfig
from evoforge.engine.session import resume_run, start_run
from evoforge.engine.task import load_task
from evoforge.evaluators.fingerprint import fingerprint
from evoforge.evaluators.runner import run_job
from evoforge.evaluators.types import ConfigError, EvaluationResult
from evoforge.sandbox.job import EvaluationJob
from fakes.tasks import PROBING_EVALUATOR, TINY_PROGRAM, write_tiny_task

TWIN = "    return b + a * x"                        # the initial program's f, written another way
EDITS = {
    "twin": f"<<<<<<< SEARCH\n    return a * x + b\n=======\n{TWIN}\n>>>>>>> REPLACE\n",
    "different": "<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 2.5\n>>>>>>> REPLACE\n",
    "twin of parent": "<<<<<<< SEARCH\n    return a * x + b\n=======\n    return x * a + b\n>>>>>>> REPLACE\n",
}


def _config(task: Path, url: str, iterations: int) -> RunConfig:
    # a priced model, so the rows carry their cost
    return RunConfig(task=str(task), iterations=iterations, llm=(f"openai-compatible:gpt-4o@{url}",),
                     concurrency=1, seed=3)


def _scripted(fake_openai, plan: list[str]):
    calls = []

    def reply(body):
        calls.append(body["messages"][1]["content"])
        return EDITS[plan[min(len(calls), len(plan)) - 1]]
    return fake_openai(reply), calls


def _rows(run: Path) -> list[CandidateRecord]:
    with Store.open(run / "run.db", readonly=True) as store:
        return list(store.candidates())


# -- the digest ----------------------------------------------------------------------------------------------
def test_floats_that_differ_in_the_14th_digit_give_one_fingerprint():
    a = [0.1 + 0.2, {"x": 1.0 / 3.0}, (2.0, -0.0)]
    b = [0.30000000000001, {"x": 0.33333333333333}, [2.0, 0.0]]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(np.array([0.1 + 0.2, 1.0])) == fingerprint([0.3, np.float64(1.0)])
    assert fingerprint([0.3]) != fingerprint([0.30001])               # the 5th digit is behaviour
    assert len(fingerprint(a)) == 16 and re.fullmatch(r"[0-9a-f]{16}", fingerprint(a))


def test_types_nan_and_infinity_are_kept_apart():
    digests = {fingerprint(v) for v in (1, 1.0, "1", True, None, [1], {"1": 1}, math.nan, math.inf, -math.inf)}
    assert len(digests) == 10
    assert fingerprint([math.nan]) == fingerprint([float("nan")])
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    assert fingerprint({3, 1, 2}) == fingerprint({2, 3, 1})


def test_data_that_is_not_plain_has_no_fingerprint():
    with pytest.raises(ValueError, match="plain data"):
        fingerprint([object()])
    nested: list = []
    for _ in range(100):
        nested = [nested]
    with pytest.raises(ValueError, match="deeper"):
        fingerprint(nested)


# -- the runner ----------------------------------------------------------------------------------------------
def _job(task: Path, program: str, known) -> EvaluationJob:
    extra = {} if known is None else {"known_fingerprints": known}
    return EvaluationJob(program_text=program, task_dir=str(task), extra=extra)


def test_runner_rejects_a_known_behaviour_without_evaluating_and_evaluates_a_new_one(tmp_path, capfd):
    task = write_tiny_task(tmp_path / "tiny", evaluator=PROBING_EVALUATOR)
    work = tmp_path / "w"
    work.mkdir()
    first = run_job(_job(task, TINY_PROGRAM, {}), str(work))
    assert first.ok and first.fingerprint and "FULL EVALUATION" in capfd.readouterr().err
    twin = TINY_PROGRAM.replace("    return a * x + b", TWIN)
    again = run_job(_job(task, twin, {first.fingerprint: 7}), str(work))
    assert again.status == "rejected" and again.score is None and again.fingerprint == first.fingerprint
    assert again.artifacts["error"] == (f"behaves like program #7 on the evaluator's probe inputs (functional "
                                        f"fingerprint {first.fingerprint}): not evaluated")
    assert "FULL EVALUATION" not in capfd.readouterr().err
    listed = run_job(_job(task, twin, [first.fingerprint]), str(work))   # a list of digests works too
    assert listed.status == "rejected" and "an evaluated program" in listed.artifacts["error"]
    other = run_job(_job(task, TINY_PROGRAM.replace("a = 1.5", "a = 2.5"), {first.fingerprint: 7}), str(work))
    assert other.ok and other.fingerprint != first.fingerprint
    plain = run_job(_job(task, twin, None), str(work))                 # no known set: no probe, no fingerprint
    assert plain.ok and plain.fingerprint is None


def test_a_probe_that_raises_gives_no_fingerprint_and_the_evaluation_runs(tmp_path, capfd):
    evaluator = PROBING_EVALUATOR.replace("def probe(program_path):\n",
                                          "def probe(program_path):\n    raise RuntimeError('probe broke')\n")
    task = write_tiny_task(tmp_path / "tiny", evaluator=evaluator)
    work = tmp_path / "w"
    work.mkdir()
    result = run_job(_job(task, TINY_PROGRAM, {}), str(work))
    assert result.ok and result.fingerprint is None and "FULL EVALUATION" in capfd.readouterr().err
    # A candidate that crashes in the probe is evaluated too, and the evaluation reports the crash.
    task = write_tiny_task(tmp_path / "tiny2", evaluator=PROBING_EVALUATOR)
    broken = TINY_PROGRAM.replace("    return a * x + b", "    return 1 / (x - x)")
    result = run_job(_job(task, broken, {}), str(work))
    assert result.status == "error" and result.fingerprint is None and "ZeroDivisionError" in result.artifacts["error"]


def test_the_fingerprint_survives_every_encoding_of_a_result():
    result = EvaluationResult(status="ok", score=1.0, fingerprint="0123456789abcdef")
    assert EvaluationResult.from_dict(result.to_dict()) == result
    # An evaluator cannot set it: a "fingerprint" key of what evaluate returned is not read.
    assert EvaluationResult.from_evaluator({"score": 1.0, "fingerprint": "ffffffffffffffff"}).fingerprint is None


# -- the engine ----------------------------------------------------------------------------------------------
def test_a_behavioural_twin_is_rejected_and_a_different_child_evaluated(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1, evaluator=PROBING_EVALUATOR)
    server, calls = _scripted(fake_openai, ["twin", "different", "twin of parent"])
    start_run(_config(task, server.base_url, 3), out=tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [r.status for r in rows] == ["ok", "rejected", "ok", "rejected"]
    initial, twin, different, third = rows
    assert twin.artifacts["error"] == (f"behaves like program #1 on the evaluator's probe inputs (functional "
                                       f"fingerprint {initial.fingerprint}): not evaluated")
    assert "FULL EVALUATION" in initial.stderr and "FULL EVALUATION" in different.stderr
    assert "FULL EVALUATION" not in twin.stderr and "FULL EVALUATION" not in third.stderr
    assert twin.cost_usd > 0 and twin.prompt_tokens > 0 and twin.code.count(TWIN) == 1 and twin.fingerprint
    assert initial.fingerprint != different.fingerprint
    assert third.artifacts["error"].startswith(f"behaves like program #{third.parent_id} on the evaluator's probe")
    # The parent's next prompt says why: it was a behavioural duplicate.
    assert "rejected edit: behaves like program #1" in calls[1]


def test_a_resumed_run_rejects_a_twin_of_a_program_from_before_the_resume(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1, evaluator=PROBING_EVALUATOR)
    server, _ = _scripted(fake_openai, ["different", "twin of parent"])
    start_run(_config(task, server.base_url, 1), out=tmp_path / "run")
    assert [r.status for r in _rows(tmp_path / "run")] == ["ok", "ok"]
    store = Store.open(tmp_path / "run" / "run.db")
    store.set_meta("config", {**store.get_meta("config"), "iterations": 2})
    store.close()
    resume_run(tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [r.status for r in rows] == ["ok", "ok", "rejected"]
    parent = rows[rows[2].parent_id - 1]
    assert rows[2].artifacts["error"].startswith(f"behaves like program #{parent.id} on the evaluator's probe")
    assert parent.fingerprint in rows[2].artifacts["error"] and "FULL EVALUATION" not in rows[2].stderr


def test_a_copy_of_a_behavioural_duplicate_is_an_exact_duplicate_before_and_after_a_resume(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1, evaluator=PROBING_EVALUATOR)
    server, _ = _scripted(fake_openai, ["twin"])          # the same edit of the same parent, every time
    start_run(_config(task, server.base_url, 3), out=tmp_path / "whole")
    start_run(_config(task, server.base_url, 1), out=tmp_path / "parts")
    store = Store.open(tmp_path / "parts" / "run.db")
    store.set_meta("config", {**store.get_meta("config"), "iterations": 3})
    store.close()
    resume_run(tmp_path / "parts")
    whole, parts = _rows(tmp_path / "whole"), _rows(tmp_path / "parts")
    assert [r.artifacts.get("error", "")[:40] for r in whole] == ["", "behaves like program #1 on the evaluator",
                                                                  "duplicate of program #2 (not evaluated a",
                                                                  "duplicate of program #2 (not evaluated a"]
    assert [(r.status, r.artifacts, r.code, r.fingerprint) for r in whole] == \
        [(r.status, r.artifacts, r.code, r.fingerprint) for r in parts]


def test_fingerprint_false_evaluates_every_twin(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1, evaluator=PROBING_EVALUATOR)
    (task / "task.toml").write_text((task / "task.toml").read_text() + "\n[search]\nfingerprint = false\n")
    server, _ = _scripted(fake_openai, ["twin"])
    start_run(_config(task, server.base_url, 1), out=tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [r.status for r in rows] == ["ok", "ok"] and {r.fingerprint for r in rows} == {None}


def test_an_offline_run_with_fingerprints_is_repeatable(tmp_path):
    task = write_tiny_task(tmp_path / "tiny", evaluator=PROBING_EVALUATOR)
    for out in ("a", "b"):
        start_run(RunConfig(task=str(task), iterations=8, llm=("offline",), concurrency=1, seed=5), out=tmp_path / out)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    fields = [[(r.iteration, r.parent_id, r.code, r.status, r.score, r.fingerprint) for r in rows] for rows in (a, b)]
    assert fields[0] == fields[1] and all(r.fingerprint for r in a if r.status == "ok")


def test_search_fingerprint_must_be_true_or_false(tmp_path):
    task = write_tiny_task(tmp_path / "tiny", evaluator=PROBING_EVALUATOR)
    assert load_task(task).has_probe and load_task(task).search.fingerprint
    (task / "task.toml").write_text((task / "task.toml").read_text() + "\n[search]\nfingerprint = \"yes\"\n")
    with pytest.raises(ConfigError) as info:
        load_task(task)
    assert str(task / "task.toml") in str(info.value) and "[search] fingerprint" in str(info.value)
    assert "\n" not in str(info.value)


# -- the store -----------------------------------------------------------------------------------------------
def test_a_run_db_without_the_fingerprint_column_is_read_and_upgraded(tmp_path):
    path = tmp_path / "run.db"
    old = Store.create(path, {})
    old.close()
    import sqlite3
    conn = sqlite3.connect(path)   # a run.db from before the column: the same schema without it
    conn.execute("DROP TABLE programs")
    conn.executescript(_SCHEMA.replace(",\n    fingerprint TEXT", ""))
    conn.execute("INSERT INTO programs (iteration, code, status, created_at, finished_at) VALUES (0, 'x', 'ok', 0, 0)")
    conn.commit()
    conn.close()
    with Store.open(path, readonly=True) as store:
        assert store.fingerprints() == {} and next(store.candidates()).fingerprint is None
    with Store.open(path) as store:
        store.add_candidate(CandidateRecord(iteration=1, code="y", status="ok", fingerprint="00ff00ff00ff00ff"))
        store.add_candidate(CandidateRecord(iteration=2, code="z", status="ok", fingerprint="00ff00ff00ff00ff"))
        store.add_candidate(CandidateRecord(iteration=3, code="w", status="rejected", fingerprint="abababababababab"))
        assert store.fingerprints() == {"00ff00ff00ff00ff": 2}


def test_evoforge_eval_shows_the_fingerprint(tmp_path):
    import json
    import subprocess
    import sys

    task = write_tiny_task(tmp_path / "tiny", evaluator=PROBING_EVALUATOR)
    program = task / "initial_program.py"
    twin = tmp_path / "twin.py"
    twin.write_text(program.read_text().replace("    return a * x + b", TWIN))

    def evaluate(path, *flags):
        done = subprocess.run([sys.executable, "-m", "evoforge", "eval", str(task), str(path), *flags],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout
    digest = json.loads(evaluate(program, "--json"))["fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert f"functional fingerprint: {digest}" in evaluate(twin)   # the same behaviour, another text
