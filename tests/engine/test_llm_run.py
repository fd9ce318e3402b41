"""Whole runs under LLM faults and the prompting features, through the real openai SDK talking HTTP
to a fake server on 127.0.0.1: one failed call never stops a run, a run whose every call fails stops
with a clear message, 429s are retried, truncated/empty/useless replies are recorded, a failed edit
is sent back once with its error, crossover and full-rewrite prompts, and context-window shrinking.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from evoforge.archive.store import Store
from evoforge.engine.cli import main
from evoforge.engine.config import RunConfig
from evoforge.engine.session import start_run
from evoforge.evaluators.types import LLMError
from fakes.anthropic_server import FakeOpenAIServerWithHeaders, openai_error_body
from fakes.replies import openai_body, raise_a, user_prompt
from fakes.tasks import write_tiny_task
from evoforge.prompts import PromptContext, ProgramView, estimate_tokens, render_prompt


@pytest.fixture
def serve():
    started = []

    def start(reply):
        server = FakeOpenAIServerWithHeaders(reply).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


def model(server, **settings) -> dict:
    return {"provider": "openai-compatible", "model": "fake", "base_url": server.base_url, "max_retries": 0,
            **settings}


def config(task: Path, server, iterations: int, model_settings: dict | None = None, **kw) -> RunConfig:
    values = dict(task=str(task), iterations=iterations, llm=(model(server, **(model_settings or {})),),
                  concurrency=1, seed=2, full_rewrite_share=0.0, crossover_share=0.0)
    values.update(kw)
    return RunConfig(**values)


def records(run_dir: Path):
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return list(store.candidates(where="iteration > 0"))


def calls(run_dir: Path):
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return [dict(r) for r in store._conn.execute("SELECT * FROM llm_calls ORDER BY id")]


def counter(*answers):
    """Answers in order by request number, then the last one forever."""
    seen = []

    def reply(request):
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        return answer(request) if callable(answer) else answer
    return reply


# ----------------------------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("status, kind, message", [
    (401, "invalid_request_error", "Incorrect API key provided"),
    (404, "invalid_request_error", "The model `fake` does not exist"),
])
def test_every_call_failing_stops_the_run_with_a_clear_message(tmp_path, serve, status, kind, message):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = serve(lambda request: (status, openai_error_body(kind, message)))
    with pytest.raises(LLMError) as info:
        start_run(config(task, server, 30), out=tmp_path / "run")
    text = str(info.value)
    assert "the first 5 LLM calls all failed" in text and f"HTTP {status}" in text and message in text
    assert len(server.requests) == 5  # 4xx: no SDK retry, and the run stopped at once
    assert [r.status for r in records(tmp_path / "run")] == ["rejected"] * 5  # every attempt recorded


def test_wrong_url_stops_the_cli_with_exit_1_and_one_line(tmp_path, capsys):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    models = tmp_path / "models.toml"
    models.write_text(textwrap.dedent("""
        [[llm.models]]
        provider = "openai-compatible"
        model = "fake"
        base_url = "http://127.0.0.1:9/v1"
        max_retries = 0
    """))
    code = main(["run", str(task), "--llm", str(models), "--iterations", "20", "--concurrency", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("evoforge: run failed: the first 5 LLM calls all failed")
    assert "cannot reach http://127.0.0.1:9/v1" in err[-1]


def test_one_failed_call_never_stops_the_run(tmp_path, serve):
    """A 500, an empty reply, a reply with no edit and prose: recorded, and the run goes on."""
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = serve(counter(raise_a, (500, openai_error_body("server_error", "backend down")), "",
                           "I would not change anything.", raise_a))
    outcome = start_run(config(task, server, 6), out=tmp_path / "run")
    assert outcome.snapshot.done == 6 and outcome.snapshot.stop_reason == "iterations reached"
    rs = records(tmp_path / "run")
    assert [r.status for r in rs][:4] == ["ok", "rejected", "rejected", "rejected"]
    # later good edits are evaluated again (or, from a parent already edited, caught as duplicates)
    assert all(r.status == "ok" or "duplicate" in r.artifacts["error"] for r in rs[4:])
    assert "HTTP 500" in rs[1].artifacts["error"] and "backend down" in rs[1].artifacts["error"]
    assert "empty message content" in rs[2].artifacts["error"]
    assert "no SEARCH/REPLACE block" in rs[3].artifacts["error"] and rs[3].edit == "I would not change anything."
    assert len(server.requests) == 6  # a reply without any edit is not retried
    errors = [c["error"] for c in calls(tmp_path / "run")]
    assert sum(e is not None for e in errors) == 2


def test_rate_limit_with_retry_after_is_retried_by_the_sdk(tmp_path, serve):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    limited = (429, openai_error_body("rate_limit_error", "slow down"), {"Retry-After": "0.01"})
    server = serve(counter(limited, raise_a, limited, raise_a, raise_a))
    outcome = start_run(config(task, server, 3, {"max_retries": 2}), out=tmp_path / "run")
    rs = records(tmp_path / "run")
    assert rs[0].status == "ok" and not any("LLM call failed" in r.artifacts.get("error", "") for r in rs)
    assert len(server.requests) == 5 and outcome.snapshot.done == 3
    assert all(c["error"] is None for c in calls(tmp_path / "run"))


def test_failed_edit_goes_back_once_with_the_match_error(tmp_path, serve):
    bad = "<<<<<<< SEARCH\n    a = 99\n=======\n    a = 2\n>>>>>>> REPLACE\n"
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = serve(counter(bad, raise_a, bad, bad, raise_a))
    start_run(config(task, server, 3), out=tmp_path / "run")
    rs = records(tmp_path / "run")
    assert [r.status for r in rs] == ["ok", "rejected", "ok"]
    assert len(server.requests) == 5  # iteration 1: 2 calls, iteration 2: 2 calls (retry failed too), 3: 1
    retry = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == bad and "SEARCH matched nothing" in retry[3]["content"]
    assert retry[1] == server.requests[0]["body"]["messages"][1]  # the same prompt, same model
    assert "after one retry" in rs[1].artifacts["error"]
    # both calls of a retried iteration are paid for and recorded
    assert rs[0].prompt_tokens > server.requests[0]["body"]["messages"][1]["content"].__len__() // 4
    assert len(calls(tmp_path / "run")) == 5


def test_truncated_reply_is_retried_and_recorded(tmp_path, serve):
    cut = "<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 2"
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = serve(counter(lambda r: openai_body(r, cut, "length"), raise_a,
                           lambda r: openai_body(r, cut, "length")))
    start_run(config(task, server, 2, {"max_tokens": 50}), out=tmp_path / "run")
    assert "cut off at the completion token limit" in server.requests[1]["body"]["messages"][3]["content"]
    rs = records(tmp_path / "run")
    assert rs[0].status == "ok"
    assert rs[1].status == "rejected" and "cut off at max_tokens" in rs[1].artifacts["error"]
    # with the retry off, a truncated reply is recorded as such at once
    server2 = serve(lambda r: openai_body(r, cut, "length"))
    start_run(config(task, server2, 1, retry_failed_edit=False), out=tmp_path / "run2")
    (r,) = records(tmp_path / "run2")
    assert r.status == "rejected" and "cut off at max_tokens" in r.artifacts["error"] and len(server2.requests) == 1


# ----------------------------------------------------------------------------------------------
# prompt shapes and the context window


def test_crossover_and_full_rewrite_prompts(tmp_path, serve):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = serve(raise_a)
    start_run(config(task, server, 8, crossover_share=1.0), out=tmp_path / "cross")
    prompts = [user_prompt(r["body"]) for r in server.requests]
    # once the archive holds a second program, every prompt shows two parents
    crossed = [p for p in prompts if "# Second parent" in p]
    assert crossed and all("combines the current program with the second parent" in p for p in crossed)
    server2 = serve(raise_a)
    start_run(config(task, server2, 3, full_rewrite_share=1.0), out=tmp_path / "rewrite")
    systems = [r["body"]["messages"][0]["content"] for r in server2.requests]
    assert all("complete new content of the evolvable region" in s for s in systems)


def test_prompt_is_shrunk_to_the_context_window(tmp_path, serve):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    initial = (task / "initial_program.py").read_text()
    bare = PromptContext(task_name="tiny", task_description="Make f(x) equal 3 * x for x in 0..9.",
                         parent=ProgramView(code=initial, score=-13.0, artifacts={"worst": "f(9) = 13.75, want 27"}))
    system, user = render_prompt(bare)
    window = estimate_tokens(system) + estimate_tokens(user) + 150  # room for the parent, not for 3 inspirations
    server = serve(raise_a)
    start_run(config(task, server, 10, {"max_tokens": 100, "context_tokens": window + 100}), out=tmp_path / "run")
    sizes = [estimate_tokens(r["body"]["messages"][0]["content"]) + estimate_tokens(user_prompt(r["body"]))
             for r in server.requests]
    assert len(sizes) == 10 and max(sizes) <= window
    with_inspirations = [r for r in records(tmp_path / "run") if len(r.inspirations) >= 2]
    assert with_inspirations  # the archive offered inspirations that the window could not take
    # a window too small even for the parent: recorded as rejected, never sent
    server2 = serve(raise_a)
    start_run(config(task, server2, 2, {"max_tokens": 100, "context_tokens": 150}), out=tmp_path / "tiny-window")
    assert server2.requests == []
    assert all(r.status == "rejected" and "context_tokens 150" in r.artifacts["error"]
               for r in records(tmp_path / "tiny-window"))
