"""End-to-end runs: real fork-server sandbox, real SQLite, the real openai SDK against a fake server."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.edits import START_MARKER
from evoforge.engine.loop import rebuild_islands
from evoforge.engine.session import resume_run, start_run
from evoforge.engine.task import load_task
from fakes.tasks import write_tiny_task

REPO = Path(__file__).resolve().parents[2]


def rows(run_dir):
    with Store.open(Path(run_dir) / "run.db", readonly=True) as store:
        return [(r.iteration, r.island, r.parent_id, r.code, r.status, r.score) for r in store.candidates()]


def offline_config(task_dir, **kw):
    values = dict(task=str(task_dir), iterations=30, llm=("offline",), concurrency=1, seed=7)
    values.update(kw)
    return RunConfig(**values)


def test_offline_run_improves_and_writes_the_run_directory(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    outcome = start_run(offline_config(task, iterations=40, concurrency=3), out=tmp_path / "run")
    snap = outcome.snapshot
    assert snap.stop_reason == "iterations reached" and snap.done == 40, snap
    assert snap.best_score > snap.initial_score
    run_dir = tmp_path / "run"
    assert (run_dir / "best_program.py").read_text().startswith('"""Approximate 3 * x')
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert len(events) == 41
    assert {e["status"] for e in events} <= {"ok", "invalid", "error", "timeout", "oom", "rejected"}
    with Store.open(run_dir / "run.db", readonly=True) as store:
        assert store.count() == 41 and store.integrity_ok()
        best = max((r for r in store.candidates() if r.status == "ok"), key=lambda r: r.score)
        assert best.score == snap.best_score
        assert (run_dir / "best_program.py").read_text() == best.code
        assert store.get_meta("state") == "finished"


def test_same_seed_and_concurrency_one_give_identical_runs(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    start_run(offline_config(task, iterations=25), out=tmp_path / "a")
    start_run(offline_config(task, iterations=25), out=tmp_path / "b")
    start_run(offline_config(task, iterations=25, seed=8), out=tmp_path / "c")
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert rows(tmp_path / "a") != rows(tmp_path / "c")


def test_resume_after_a_stop_continues_to_the_same_result(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    start_run(offline_config(task, iterations=30), out=tmp_path / "whole")
    start_run(offline_config(task, iterations=12), out=tmp_path / "parts")
    # The first part stopped at 12 of its target; resume it to 30 like the uninterrupted run.
    store = Store.open(tmp_path / "parts" / "run.db")
    store.set_meta("config", {**store.get_meta("config"), "iterations": 30})
    store.close()
    resume_run(tmp_path / "parts")
    assert rows(tmp_path / "parts") == rows(tmp_path / "whole")


def test_duplicate_children_are_not_evaluated_again(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    def reply(body):  # always "set a to 2.5": from the initial program and from its child alike
        a = re.search(r"a = ([0-9.]+)", _current_program(body["messages"][1]["content"])).group(1)
        return f"<<<<<<< SEARCH\n    a = {a}\n=======\n    a = 2.5\n>>>>>>> REPLACE\n"

    server = fake_openai(reply)
    config = offline_config(task, iterations=4, llm=(f"openai-compatible:fake@{server.base_url}",))
    start_run(config, out=tmp_path / "run")
    statuses = [r[4] for r in rows(tmp_path / "run")]
    # iteration 1 evaluates the edit; every later child is the same program again
    assert statuses == ["ok", "ok", "rejected", "rejected", "rejected"]
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        reasons = [r.artifacts["error"] for r in store.candidates(where="status = 'rejected'")]
    assert reasons == ["duplicate of program #2 (not evaluated again)"] * 3


def _current_program(prompt: str) -> str:
    return re.search(r"```python\n(.*?)\n```", prompt, re.S).group(1)


def test_full_run_through_a_fake_openai_server(tmp_path, fake_openai):
    """The real openai SDK talks HTTP to 127.0.0.1; replies mix good edits, bad edits and prose."""
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    calls = []

    def reply(body):
        calls.append(body)
        user = body["messages"][1]["content"]
        program = _current_program(user)
        a = float(re.search(r"a = ([0-9.]+)", program).group(1))
        n = len(calls)
        if n % 3 == 0:
            return "I would rather not change anything."      # no edit → rejected
        if n % 3 == 2:
            return "<<<<<<< SEARCH\n    c = 9\n=======\n    c = 1\n>>>>>>> REPLACE\n"  # does not apply
        return f"Raise a.\n<<<<<<< SEARCH\n    a = {a}\n=======\n    a = {a + 0.5}\n>>>>>>> REPLACE\n"

    server = fake_openai(reply)
    os.environ["OPENAI_API_KEY"] = "sk-test-not-for-candidates"
    try:
        # retry_failed_edit off: one call per iteration keeps the reply pattern aligned with iterations
        # (the retry has its own tests in tests/engine/test_llm_run.py)
        config = offline_config(task, iterations=9, llm=(f"openai-compatible:fake-coder@{server.base_url}",),
                                retry_failed_edit=False)
        outcome = start_run(config, out=tmp_path / "run")
    finally:
        del os.environ["OPENAI_API_KEY"]
    assert len(server.requests) == 9
    assert server.requests[0]["path"].endswith("/chat/completions")
    assert server.requests[0]["body"]["model"] == "fake-coder"
    assert "EVOLVE-BLOCK-START" in server.requests[0]["body"]["messages"][1]["content"]
    statuses = [r[4] for r in rows(tmp_path / "run")][1:]
    assert statuses == ["ok", "rejected", "rejected"] * 3
    assert outcome.snapshot.best_score > outcome.snapshot.initial_score
    # The rejection reason goes back to the LLM in the next prompt for that parent.
    later = [c["messages"][1]["content"] for c in calls[2:]]
    assert any("SEARCH matched nothing" in text for text in later)
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        totals = store.totals()
        assert totals["llm_calls"] == 9 and totals["prompt_tokens"] > 0
        assert all(r.model == "openai-compatible:fake-coder" for r in store.candidates(where="iteration > 0"))


def test_initial_program_that_fails_stops_before_any_llm_call(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", program=f"{START_MARKER}\ndef f(x):\n    return 1 / 0\n"
                           "# EVOLVE-BLOCK-END\n\ndef run():\n    return [f(x) for x in range(10)]\n")
    server = fake_openai(lambda body: "unused")
    config = offline_config(task, llm=(f"openai-compatible:m@{server.base_url}",))
    with pytest.raises(Exception, match="initial program fails its own evaluation.*ZeroDivisionError"):
        start_run(config, out=tmp_path / "run")
    assert server.requests == []


def _wait_for_rows(db: Path, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with Store.open(db, readonly=True) as store:
                    if store.count() >= n:
                        return
            except Exception:  # noqa: BLE001 - the database may be half-created: look again
                pass
        time.sleep(0.05)
    raise AssertionError(f"{db} did not reach {n} rows")


@pytest.mark.slow
def test_resume_after_sigkill_loses_nothing_and_matches_an_uninterrupted_run(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    cli = [sys.executable, "-m", "evoforge", "run", str(task), "--iterations", "40", "--concurrency", "1",
           "--seed", "3", "--quiet"]
    subprocess.run(cli + ["--out", str(tmp_path / "whole")], check=True, cwd=REPO, capture_output=True)
    victim = subprocess.Popen(cli + ["--out", str(tmp_path / "killed")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_rows(tmp_path / "killed" / "run.db", 15)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = rows(tmp_path / "killed")
    assert 15 <= len(before) < 41
    done = subprocess.run([sys.executable, "-m", "evoforge", "resume", str(tmp_path / "killed"), "--quiet"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = rows(tmp_path / "killed")
    assert after[:len(before)] == before                       # nothing finished was lost or changed
    assert len({r[0] for r in after}) == len(after) == 41      # no iteration duplicated
    assert after == rows(tmp_path / "whole")                   # and the run is the uninterrupted one
    with Store.open(tmp_path / "killed" / "run.db", readonly=True) as store:
        assert store.integrity_ok()
        config = RunConfig.from_dict(store.get_meta("config"))
        a = rebuild_islands(load_task(config.task), store, config.seed)
    with Store.open(tmp_path / "whole" / "run.db", readonly=True) as store:
        b = rebuild_islands(load_task(config.task), store, config.seed)
    assert a.elites() == b.elites()


def test_cost_budget_stops_the_run_cleanly(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = fake_openai(lambda body: "x" * 4000)  # priced model, no usable edit: each call costs money
    config = offline_config(task, iterations=50, llm=(f"openai-compatible:gpt-4o@{server.base_url}",),
                            max_cost_usd=0.02)
    outcome = start_run(config, out=tmp_path / "run")
    assert outcome.snapshot.stop_reason.startswith("cost budget reached")
    assert 1 <= outcome.snapshot.done < 50
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        spent = store.totals()["cost_usd"]
        assert spent >= 0.02 and store.count("iteration > 0") == outcome.snapshot.done == len(server.requests)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "evoforge", "run", str(task), "--iterations", "100000",
                             "--out", str(run_dir), "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run_dir / "run.db", 10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped: interrupted (Ctrl-C)" in out
    with Store.open(run_dir / "run.db", readonly=True) as store:
        n = store.count("iteration > 0")
        assert store.get_meta("state") == "stopped" and store.integrity_ok()
    done = subprocess.run([sys.executable, "-m", "evoforge", "resume", str(run_dir), "--iterations", "5",
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(rows(run_dir)) == n + 6
