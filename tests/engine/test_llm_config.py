"""Configuring models: ``[[llm.models]]`` in task.toml or a ``--llm FILE.toml``, one-line errors for
mistakes, per-model settings reaching the wire, and ``evoforge run --dry-run``."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from evoforge.engine.cli import main
from evoforge.engine.config import RunConfig
from evoforge.engine.llm import (Ensemble, LLMSpec, Prompt, as_spec, check_llm_specs, llm_from_flags, make_llm,
                        parse_llm_table)
from evoforge.engine.llm.models import default_context_tokens
from evoforge.engine.session import resolve_config
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError
from fakes.anthropic_server import FakeOpenAIServerWithHeaders
from fakes.tasks import write_tiny_task

PROMPT = Prompt(system="s", user="u", parent_code="", seed=3)


def tiny_with_llm(tmp_path, llm_toml: str):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    with open(task / "task.toml", "a") as f:
        f.write("\n" + textwrap.dedent(llm_toml))
    return task


def test_llm_models_table_in_task_toml(tmp_path):
    task = load_task(tiny_with_llm(tmp_path, """
        [llm]
        ensemble = "bandit"
        crossover_share = 0.25

        [[llm.models]]
        provider = "openai"
        model = "gpt-4o-mini"
        weight = 3
        temperature = 0.5
        max_tokens = 2000

        [[llm.models]]
        provider = "openai-compatible"
        model = "qwen2.5-coder"
        base_url = "http://127.0.0.1:8000/v1"
        input_usd_per_mtok = 0.1
        output_usd_per_mtok = 0.2
        context_tokens = 16000
    """))
    llm = task.llm
    assert llm.ensemble == "bandit" and llm.crossover_share == 0.25 and llm.full_rewrite_share == 0.1
    assert llm.given == {"ensemble", "crossover_share"}
    gpt, qwen = llm.models
    assert gpt == LLMSpec("openai", "gpt-4o-mini", weight=3.0, temperature=0.5, max_tokens=2000)
    assert gpt.context_window == 128_000 and gpt.prices is None
    assert qwen.prices[:2] == (0.1, 0.2) and qwen.prices.cached_input is None and qwen.context_window == 16000 and str(qwen).endswith("@http://127.0.0.1:8000/v1")
    # Resolution: no --llm → the task's models and settings, stored as dicts that round-trip.
    config, note = resolve_config(RunConfig(task=str(task.path)), task, environ={})
    assert "[[llm.models]]" in note and "qwen2.5-coder" in note
    assert [as_spec(s) for s in RunConfig.from_dict(config.to_dict()).llm] == [gpt, qwen]
    assert config.ensemble == "bandit" and config.crossover_share == 0.25 and config.retry_failed_edit is True
    # --llm on the command line wins over the task's models, the task's settings still apply
    config, note = resolve_config(RunConfig(task=str(task.path), llm=("offline",)), task, environ={})
    assert config.llm == ("offline",) and note == "" and config.ensemble == "bandit"


@pytest.mark.parametrize("table, fragment", [
    ('[[llm.models]]\nprovider = "mistral"\nmodel = "large"\n', "unknown provider 'mistral'"),
    ('[[llm.models]]\nprovider = "openai"\nmodel = "gpt-4o"\ncolour = "red"\n', "unknown key 'colour'"),
    ('[[llm.models]]\nprovider = "openai"\n', "needs a model"),
    ('[[llm.models]]\nprovider = "openai"\nmodel = "gpt-4o"\nweight = "high"\n', "weight: expected a number"),
    ('[[llm.models]]\nprovider = "openai-compatible"\nmodel = "q"\n', "needs an http(s) base_url"),
    ('[[llm.models]]\nprovider = "openai"\nmodel = "m"\nmax_tokens = 4096\ncontext_tokens = 1000\n',
     "context_tokens: expected more than max_tokens"),
    ('[llm]\nensemble = "greedy"\n', "ensemble: expected one of weighted, bandit"),
    ('[llm]\nfull_rewrite_share = 0.7\ncrossover_share = 0.7\n', "must be at most 1"),
    ('[[llm.models]]\nprovider = "openai"\nmodel = "gpt-4o"\n[[llm.models]]\nprovider = "openai"\nmodel = "gpt-4o"\n',
     "two models are named 'openai:gpt-4o'"),
])
def test_bad_llm_tables_are_one_line_errors_naming_file_and_key(tmp_path, table, fragment):
    task = tiny_with_llm(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        load_task(task)
    message = str(info.value)
    assert fragment in message and "task.toml" in message and "\n" not in message


def test_missing_api_key_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        check_llm_specs(["openai:gpt-4o"], environ={})
    spec = {"provider": "anthropic", "model": "claude-haiku-4-5", "api_key_env": "MY_CLAUDE_KEY"}
    with pytest.raises(ConfigError, match="MY_CLAUDE_KEY is not set"):
        check_llm_specs([spec], environ={"ANTHROPIC_API_KEY": "not this one"})
    assert check_llm_specs([spec], environ={"MY_CLAUDE_KEY": "k"})[0].api_key_env == "MY_CLAUDE_KEY"
    # a local server needs no key
    assert check_llm_specs(["openai-compatible:q@http://127.0.0.1:1/v1"], environ={})
    # through the CLI: exit 2, one line, before any run directory exists
    task = write_tiny_task(tmp_path / "tiny")
    assert main(["run", str(task), "--llm", "openai:gpt-4o", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()


def test_llm_file_flag_and_per_model_settings_reach_the_wire(tmp_path, monkeypatch):
    replies = []
    with FakeOpenAIServerWithHeaders(lambda request: replies.append(request) or "hello") as server:
        models = tmp_path / "models.toml"
        models.write_text(textwrap.dedent(f"""
            [llm]
            ensemble = "bandit"

            [[llm.models]]
            provider = "openai-compatible"
            model = "coder"
            name = "cheap-coder"
            base_url = "{server.base_url}"
            temperature = 0.3
            max_tokens = 123
            input_usd_per_mtok = 1000.0
            output_usd_per_mtok = 2000.0
            api_key_env = "LOCAL_KEY"
        """))
        llm, settings = llm_from_flags([str(models)])
        assert settings == {"ensemble": "bandit"} and llm[0]["name"] == "cheap-coder"
        monkeypatch.setenv("LOCAL_KEY", "sk-local")
        client = make_llm(llm)

        async def go():
            try:
                return await client.generate(PROMPT)
            finally:
                await client.close()
        reply = asyncio.run(go())
    body = server.requests[0]["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("coder", 0.3, 123)
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-local"
    assert reply.model == "cheap-coder"
    # the configured prices override the table (an unknown model would otherwise cost 0)
    assert reply.cost_usd == pytest.approx((reply.prompt_tokens * 1000 + reply.completion_tokens * 2000) / 1e6)
    assert reply.cost_usd > 0


def test_bad_llm_file_is_one_line(tmp_path):
    bad = tmp_path / "models.toml"
    bad.write_text('[llm]\n[[llm.models]]\nprovider = "openai"\nmodel = "gpt-4o"\ntemprature = 1\n')
    assert main(["run", "circle_packing", "--llm", str(bad), "--dry-run"]) == 2
    with pytest.raises(ConfigError, match="unknown key 'temprature'"):
        llm_from_flags([str(bad)])
    with pytest.raises(ConfigError, match="cannot read"):
        llm_from_flags([str(tmp_path / "missing.toml")])


def test_ensemble_modes_and_context_defaults():
    env = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}
    llm = make_llm(["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"], environ=env, ensemble="bandit")
    assert isinstance(llm, Ensemble) and llm.bandit is not None and llm.bandit.arms == [
        "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"]
    assert llm.context_tokens == 128_000
    asyncio.run(llm.close())
    assert default_context_tokens("gpt-4o-2024-08-06") == 128_000
    assert default_context_tokens("claude-3-7-sonnet") == 200_000
    assert default_context_tokens("my-local-model") == 32_768
    with pytest.raises(ConfigError, match="given twice"):
        make_llm(["offline", "offline"], environ={})
    assert parse_llm_table({}, "x").models == ()


def test_dry_run_prints_config_and_estimate_without_calling_or_creating(tmp_path, capsys):
    with FakeOpenAIServerWithHeaders(lambda request: "never") as server:
        task = tiny_with_llm(tmp_path, f"""
            [[llm.models]]
            provider = "openai-compatible"
            model = "priced"
            base_url = "{server.base_url}"
            input_usd_per_mtok = 2.0
            output_usd_per_mtok = 8.0
            weight = 3

            [[llm.models]]
            provider = "offline"
        """)
        code = main(["run", str(task), "--dry-run", "--out", str(tmp_path / "run"), "--iterations", "40",
                     "--max-cost-usd", "0.001", "--max-tokens", "5000"])
        assert server.requests == []
    out = capsys.readouterr().out
    assert code == 0
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    for fragment in ("task: tiny", f"openai-compatible:priced @ {server.base_url}", "share 75%",
                     "offline · share 25%", "$2/$8 per 1M in/out (from config)", "max tokens 5000",
                     "max cost $0.001", "sandbox process", "(not created)"):
        assert fragment in out, fragment
    line = next(row for row in out.splitlines() if row.strip().startswith("per iteration"))
    prompt_tokens = int(line.split("~")[1].split(" ")[0])
    completion_tokens = int(line.split("+ ~")[1].split(" ")[0])
    cost = float(line.split("~$")[1])
    assert prompt_tokens > 100 and completion_tokens > 0
    assert cost == pytest.approx((prompt_tokens * 2 + completion_tokens * 8) / 1e6, abs=1e-4)
    assert "would stop the run after about" in out
