"""Prompt caching over whole runs: the real SDKs against the fakes (which cache as each service does),
a task whose description makes the stable prefix cacheable; run.db, `evoforge show`, the report and the
progress line show the hit rate and the money saved, priced at the rates stored with the run."""

from __future__ import annotations

import pytest

from evoforge.archive.store import Store
from evoforge.engine.cli import main
from evoforge.engine.config import RunConfig
from evoforge.engine.progress import describe
from evoforge.engine.report import render_report
from evoforge.engine.session import start_run
from fakes.anthropic_server import FakeAnthropicServer, FakeOpenAIServerWithHeaders
from fakes.replies import raise_a
from fakes.tasks import write_tiny_task

DESCRIPTION = "Make f(x) equal 3 * x for x in 0..9. " + "Explain nothing; keep the edits small and exact. " * 110


@pytest.mark.parametrize("provider, model", [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o-mini")])
def test_a_run_reads_its_stable_prefix_from_the_cache_and_says_what_it_saved(tmp_path, provider, model, capsys,
                                                                              monkeypatch):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    toml = (task / "task.toml").read_text()
    (task / "task.toml").write_text(toml.replace('description = "Make f(x) equal 3 * x for x in 0..9."',
                                                 f'description = "{DESCRIPTION}"'))
    server_cls = FakeAnthropicServer if provider == "anthropic" else FakeOpenAIServerWithHeaders
    with server_cls(raise_a) as server:
        spec = {"provider": provider, "model": model, "base_url": server.base_url, "max_retries": 0,
                "api_key_env": "FAKE_KEY"}
        monkeypatch.setenv("FAKE_KEY", "sk-test")
        outcome = start_run(RunConfig(task=str(task), iterations=6, concurrency=1, seed=1, llm=(spec,),
                                      full_rewrite_share=0.0, crossover_share=0.0), out=tmp_path / "run")
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        totals = store.totals()
        calls = list(store.llm_calls())
        prices = store.get_meta("llm_prices")
    assert prices[f"{provider}:{model}"]["cached_input"] is not None
    assert len(calls) == 6 and calls[0]["cached_tokens"] == 0
    assert all(c["cached_tokens"] >= 1024 for c in calls[1:])            # every call after the first hits
    if provider == "anthropic":
        assert calls[0]["cache_write_tokens"] > 0 and calls[0]["saved_usd"] < 0   # the write premium
    assert totals["saved_usd"] > 0 and totals["cost_usd"] > 0
    assert totals["saved_usd"] == pytest.approx(sum(c["saved_usd"] for c in calls))
    assert main(["show", str(tmp_path / "run")]) == 0
    shown = capsys.readouterr().out
    rate = totals["cached_tokens"] / totals["prompt_tokens"]
    assert f"prompt cache: {rate:.1%} of prompt tokens read from the cache" in shown
    assert f"${totals['saved_usd']:.4f} saved" in shown
    html = render_report(tmp_path / "run")
    assert f"{rate:.1%}" in html and "saved by caching" in html
    s = outcome.snapshot     # what the progress line showed at the end
    assert (s.prompt_tokens, s.cached_tokens) == (totals["prompt_tokens"], totals["cached_tokens"])
    assert s.saved_usd == pytest.approx(totals["saved_usd"])
    line = describe(s)
    assert f"cache {rate:.0%} (saved ${totals['saved_usd']:.4f})" in line


def test_thinking_is_stored_with_the_reply_and_never_parsed(tmp_path, monkeypatch):
    from fakes.anthropic_server import FAKE_THINKING
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    with FakeAnthropicServer(raise_a) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        spec = {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": server.base_url, "max_retries": 0,
                "max_tokens": 30000, "thinking_budget_tokens": 20000}
        start_run(RunConfig(task=str(task), iterations=3, concurrency=1, seed=1, llm=(spec,)), out=tmp_path / "run")
        assert all(r["body"]["stream"] is True for r in server.requests)       # 30000 > the SDK's guard
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        calls = list(store.llm_calls())
        children = list(store.candidates(where="iteration > 0"))
    assert calls and all(c["thinking"] == FAKE_THINKING for c in calls)
    assert all(FAKE_THINKING not in (c.edit or "") for c in children) and any(c.status == "ok" for c in children)
