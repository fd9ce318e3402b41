"""Budgets in every unit (--max-tokens, --max-cost-usd, --max-time, --iterations): the run stops
cleanly at the first reached, with everything it did stored; the progress line and `evoforge show`
report tokens and dollars. (The cost budget alone: tests/engine/test_run.py.)"""

from __future__ import annotations

import pytest

from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.loop import Snapshot
from evoforge.engine.progress import describe
from evoforge.engine.session import resume_run, start_run
from evoforge.engine.summary import format_summary, summarize
from evoforge.evaluators.types import ConfigError
from fakes.tasks import write_tiny_task

NO_EDIT = "x" * 400  # 100 completion tokens, no usable edit: every call spends, nothing is evaluated


def llm_config(task, server, **kw) -> RunConfig:
    values = dict(task=str(task), iterations=50, concurrency=1, seed=1,
                  llm=({"provider": "openai-compatible", "model": "priced", "base_url": server.base_url,
                        "input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0},))
    values.update(kw)
    return RunConfig(**values)


def stored(run_dir):
    with Store.open(run_dir / "run.db", readonly=True) as store:
        tokens = [r.prompt_tokens + r.completion_tokens for r in store.candidates(where="iteration > 0")]
        return tokens, store.totals(), store.get_meta("state")


def test_token_budget_stops_at_the_first_launch_past_it(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = fake_openai(lambda body: NO_EDIT)
    outcome = start_run(llm_config(task, server, max_total_tokens=2000), out=tmp_path / "run")
    s = outcome.snapshot
    assert s.stop_reason.startswith("token budget reached") and "of 2000 tokens" in s.stop_reason
    tokens, totals, state = stored(tmp_path / "run")
    # concurrency 1: it stopped at the first proposal that took the total to the budget
    assert sum(tokens) >= 2000 > sum(tokens[:-1])
    assert len(tokens) == s.done == len(server.requests) == totals["llm_calls"]  # nothing lost
    assert totals["prompt_tokens"] + totals["completion_tokens"] == sum(tokens) == s.tokens
    assert state == "stopped"
    # resuming a budget-stopped run stops again at once: the budget covers the whole run
    again = resume_run(tmp_path / "run", more_iterations=5)
    assert again.snapshot.stop_reason.startswith("token budget reached") and len(server.requests) == len(tokens)


def test_the_first_budget_reached_wins(tmp_path, fake_openai):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = fake_openai(lambda body: NO_EDIT)
    # per call: a few hundred prompt tokens + 100 completion at $10/$30 per 1M → about $0.005
    outcome = start_run(llm_config(task, server, max_total_tokens=10_000, max_cost_usd=0.01),
                        out=tmp_path / "cost")
    assert outcome.snapshot.stop_reason.startswith("cost budget reached")
    outcome = start_run(llm_config(task, server, max_total_tokens=500, max_cost_usd=1.0), out=tmp_path / "tokens")
    assert outcome.snapshot.stop_reason.startswith("token budget reached")
    outcome = start_run(llm_config(task, server, iterations=2, max_total_tokens=10**9, max_cost_usd=100.0),
                        out=tmp_path / "iterations")
    assert outcome.snapshot.stop_reason == "iterations reached" and outcome.snapshot.done == 2


def test_time_budget_stops_cleanly(tmp_path):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    # The initial evaluation alone (a real sandboxed process) outlasts a 1 µs budget.
    outcome = start_run(RunConfig(task=str(task), iterations=50, llm=("offline",), max_time_s=1e-6),
                        out=tmp_path / "run")
    assert outcome.snapshot.stop_reason.startswith("time budget reached") and outcome.snapshot.done == 0
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        assert store.count() == 1 and store.get_meta("state") == "stopped"


@pytest.mark.parametrize("field, value, flag", [("max_total_tokens", 0, "--max-tokens"),
                                                ("max_cost_usd", -1.0, "--max-cost-usd"),
                                                ("max_time_s", 0.0, "--max-time")])
def test_budgets_must_be_positive(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        RunConfig(task="t", **{field: value})


def test_progress_line_and_show_report_tokens_and_dollars(tmp_path, fake_openai):
    line = describe(Snapshot(done=3, tokens=12_345, cost_usd=0.0123, max_cost_usd=0.05, max_tokens=2_000_000))
    assert "$0.0123/$0.05" in line and "12.3k/2.00M tok" in line
    assert "$0.0000/$1 · 0 tok" in describe(Snapshot(max_cost_usd=1.0))
    assert "tok" not in describe(Snapshot())  # offline and unbounded: no money shown
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    server = fake_openai(lambda body: NO_EDIT)
    start_run(llm_config(task, server, iterations=3, max_total_tokens=10**6), out=tmp_path / "run")
    summary = summarize(tmp_path / "run")
    (row,) = summary["models"]
    assert row["model"] == "openai-compatible:priced" and row["calls"] == 3 and row["cost_usd"] > 0
    assert summary["llm"] == ["openai-compatible:priced"] and summary["budgets"]["max_tokens"] == 10**6
    text = format_summary(summary)
    assert "openai-compatible:priced: 3 calls (0 failed)" in text and "budgets: 1000000 tokens" in text
