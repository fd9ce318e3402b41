"""Real models as researchers run them: reasoning models, extended thinking, streaming and prompt
caching — the real openai / anthropic SDKs against fakes on 127.0.0.1 that enforce the services' rules
(tests/fakes). Each rule is shown twice: the fake refuses the wrong request with the service's 400,
and our client sends the right one."""

from __future__ import annotations

import asyncio

import pytest

from evoforge.engine.llm import LLMSpec, Prompt, make_client, spec_from_dict
from evoforge.engine.llm.anthropic_client import AnthropicClient, needs_streaming
from evoforge.engine.llm.capabilities import capabilities
from evoforge.engine.llm.openai_compat import OpenAIChatClient
from evoforge.engine.llm.prices import PRICES_PER_MTOK, call_cost
from evoforge.evaluators.types import ConfigError, LLMError
from fakes.anthropic_server import FAKE_THINKING, FakeAnthropicServer, FakeOpenAIServerWithHeaders

EDIT = "Nudge a.\n<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 2.0\n>>>>>>> REPLACE\n"
PROMPT = Prompt(system="You improve code.", user="Make it faster.", parent_code="", seed=3)
# A realistic stable prefix: long enough (>= 1024 tokens at 4 characters a token) to be cached.
LONG_SYSTEM = "You evolve programs. " + "The task description goes on and on with details. " * 110


@pytest.fixture
def serve():
    started = []

    def start(cls, reply=lambda request: EDIT):
        server = cls(reply)
        server.__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


def run(coro):
    return asyncio.run(coro)


def generate(client, prompt: Prompt = PROMPT):
    async def go():
        try:
            return await client.generate(prompt)
        finally:
            await client.close()
    return run(go())


def raw_openai(base_url: str, **kwargs):
    """A request straight through the SDK, as a naive client would send it."""
    import openai

    async def go():
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        try:
            return await client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **kwargs)
        finally:
            await client.close()
    return run(go())


def raw_anthropic(base_url: str, **kwargs):
    import anthropic

    async def go():
        client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=base_url, max_retries=0, timeout=10.0)
        try:
            return await client.messages.create(messages=[{"role": "user", "content": "hi"}], **kwargs)
        finally:
            await client.close()
    return run(go())


# ----------------------------------------------------------------------------------------------
# OpenAI reasoning models


@pytest.mark.parametrize("model", ["o1", "o3", "o4-mini", "gpt-5", "gpt-5-mini", "o3-2025-04-16"])
def test_fake_refuses_max_tokens_and_temperature_on_reasoning_models(serve, model):
    import openai
    server = serve(FakeOpenAIServerWithHeaders)
    with pytest.raises(openai.BadRequestError) as exc:
        raw_openai(server.base_url, model=model, max_tokens=100)
    assert exc.value.body["code"] == "unsupported_parameter" and exc.value.body["param"] == "max_tokens"
    assert exc.value.body["message"] == ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                                         "Use 'max_completion_tokens' instead.")
    with pytest.raises(openai.BadRequestError) as exc:
        raw_openai(server.base_url, model=model, max_completion_tokens=100, temperature=0.8)
    assert exc.value.body["code"] == "unsupported_value"
    assert exc.value.body["message"] == ("Unsupported value: 'temperature' does not support 0.8 with this model. "
                                         "Only the default (1) value is supported.")


@pytest.mark.parametrize("model", ["o3", "gpt-5", "o4-mini"])
def test_reasoning_model_gets_max_completion_tokens_no_temperature_and_effort(serve, model):
    server = serve(FakeOpenAIServerWithHeaders)
    client = make_client(spec_from_dict({"provider": "openai", "model": model, "max_tokens": 3000,
                                         "reasoning_effort": "high", "base_url": server.base_url}),
                         {"OPENAI_API_KEY": "sk-test"})
    reply = generate(client)
    body = server.requests[0]["body"]
    assert body["max_completion_tokens"] == 3000 and body["reasoning_effort"] == "high"
    assert "max_tokens" not in body and "temperature" not in body
    # reasoning tokens are part of the completion and billed as output
    assert reply.reasoning_tokens == 1024 and reply.completion_tokens == 1024 + len(EDIT) // 4
    price = PRICES_PER_MTOK["o4-mini" if model == "o4-mini" else model]
    expected = (reply.prompt_tokens * price.input + reply.completion_tokens * price.output) / 1e6
    assert reply.cost_usd == pytest.approx(expected)
    assert reply.text == EDIT


def test_plain_model_still_gets_max_tokens_and_temperature(serve):
    server = serve(FakeOpenAIServerWithHeaders)
    generate(OpenAIChatClient(model="gpt-4o-mini", api_key="k", base_url=server.base_url, max_retries=0))
    body = server.requests[0]["body"]
    assert body["max_tokens"] == 4096 and body["temperature"] == 0.8 and "max_completion_tokens" not in body


def test_capability_table_and_override():
    assert capabilities("o3-mini").reasoning and capabilities("gpt-5-nano").reasoning
    assert not capabilities("gpt-5-chat-latest").reasoning and not capabilities("gpt-4o").reasoning
    assert capabilities("qwq-32b", reasoning=True).reasoning      # a new name works without a release
    assert not capabilities("o3", reasoning=False).reasoning


def test_override_makes_a_compatible_server_model_a_reasoning_model(serve):
    server = serve(FakeOpenAIServerWithHeaders)
    spec = spec_from_dict({"provider": "openai-compatible", "model": "deepseek-r1-distill", "reasoning": True,
                           "base_url": server.base_url, "temperature": 1.0})
    generate(make_client(spec, {}))
    body = server.requests[0]["body"]
    assert "max_completion_tokens" in body and "max_tokens" not in body and "temperature" not in body


def test_reasoning_spent_the_whole_budget_is_a_clear_error(serve):
    server = serve(FakeOpenAIServerWithHeaders)
    client = OpenAIChatClient(model="o3", api_key="k", base_url=server.base_url, max_tokens=200, max_retries=0)
    with pytest.raises(LLMError, match="spent 200 of max_tokens 200 reasoning; raise max_tokens"):
        generate(client)


def test_if_the_client_sent_max_tokens_the_user_would_see_the_real_400(serve):
    """The regression this guards against, end to end: the fake's 400 comes through as one LLMError."""
    server = serve(FakeOpenAIServerWithHeaders)
    client = OpenAIChatClient(model="o3", api_key="k", base_url=server.base_url, reasoning=False, max_retries=0)
    with pytest.raises(LLMError, match="HTTP 400 .*Unsupported parameter: 'max_tokens'"):
        generate(client)


@pytest.mark.parametrize("table, message", [
    ({"model": "o3", "temperature": 0.7}, "reasoning model, which accepts only the default temperature"),
    ({"model": "gpt-4o", "reasoning_effort": "high"}, "not a reasoning model in the capability table"),
    ({"model": "o3", "reasoning_effort": "extreme"}, "expected one of minimal, low, medium, high"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-5", "thinking_budget_tokens": 512},
     "at least 1024"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-5", "thinking_budget_tokens": 4096},
     "expected less than max_tokens"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-5", "thinking_budget_tokens": 2048, "temperature": 0.5},
     "extended thinking accepts only temperature 1"),
    ({"model": "gpt-4o", "thinking_budget_tokens": 2048}, "only anthropic models"),
    ({"model": "gpt-4o", "prompt_cache": "yes"}, "expected true or false"),
])
def test_config_refuses_what_the_service_would_refuse(table, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_dict({"provider": "openai", **table}, "task.toml [[llm.models]] #1")


# ----------------------------------------------------------------------------------------------
# Anthropic extended thinking and streaming


@pytest.mark.parametrize("kwargs, message", [
    ({"thinking": {"type": "enabled", "budget_tokens": 512}, "max_tokens": 4000},
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ({"thinking": {"type": "enabled", "budget_tokens": 4000}, "max_tokens": 4000},
     "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4000,
      "extra_body": {"temperature": 0.5}}, "`temperature` may only be set to 1 when thinking is enabled"),
    ({"max_tokens": 64000}, "Streaming is required"),
])
def test_fake_refuses_what_anthropic_refuses(serve, kwargs, message):
    import anthropic
    server = serve(FakeAnthropicServer)
    with pytest.raises(anthropic.BadRequestError) as exc:
        raw_anthropic(server.base_url, model="claude-sonnet-4-5", **kwargs)
    assert message in exc.value.body["error"]["message"]
    assert exc.value.body["error"]["type"] == "invalid_request_error"


def test_thinking_blocks_are_stored_but_kept_out_of_the_text(serve):
    server = serve(FakeAnthropicServer)
    spec = spec_from_dict({"provider": "anthropic", "model": "claude-sonnet-4-5", "max_tokens": 8000,
                           "thinking_budget_tokens": 4000, "base_url": server.base_url})
    reply = generate(make_client(spec, {"ANTHROPIC_API_KEY": "k"}))
    body = server.requests[0]["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4000} and "temperature" not in body
    assert reply.text == EDIT and reply.thinking == FAKE_THINKING
    assert reply.completion_tokens == (len(EDIT) + len(FAKE_THINKING)) // 4


@pytest.mark.parametrize("thinking", [None, 16000])
def test_large_max_tokens_is_streamed(serve, thinking):
    assert needs_streaming("claude-sonnet-4-5", 64000) and not needs_streaming("claude-sonnet-4-5", 8000)
    server = serve(FakeAnthropicServer)
    client = AnthropicClient(model="claude-sonnet-4-5", api_key="k", base_url=server.base_url, max_tokens=64000,
                             thinking_budget_tokens=thinking, max_retries=0)
    reply = generate(client)
    assert server.requests[0]["body"]["stream"] is True
    assert reply.text == EDIT and reply.thinking == (FAKE_THINKING if thinking else "")
    assert reply.prompt_tokens > 0 and reply.completion_tokens >= len(EDIT) // 4 and reply.cost_usd > 0


# ----------------------------------------------------------------------------------------------
# prompt caching


def two_calls(client_factory, system: str):
    prompts = [Prompt(system=system, user=f"Program {i}: make it faster.", parent_code="", seed=i) for i in range(2)]

    async def go():
        client = client_factory()
        try:
            return [await client.generate(p) for p in prompts]
        finally:
            await client.close()
    return run(go())


def test_openai_reports_and_prices_cached_prefixes(serve):
    server = serve(FakeOpenAIServerWithHeaders)
    first, second = two_calls(lambda: OpenAIChatClient(model="gpt-4o-mini", api_key="k", base_url=server.base_url,
                                                       max_retries=0), LONG_SYSTEM)
    assert first.cached_tokens == 0 and first.saved_usd == 0
    assert second.cached_tokens >= 1024 and second.cached_tokens % 128 == 0
    assert second.cached_tokens <= len(LONG_SYSTEM) // 4
    price = PRICES_PER_MTOK["gpt-4o-mini"]
    cost, saved = call_cost(price, prompt_tokens=second.prompt_tokens, completion_tokens=second.completion_tokens,
                            cached_tokens=second.cached_tokens)
    assert second.cost_usd == pytest.approx(cost) and second.saved_usd == pytest.approx(saved)
    assert saved == pytest.approx(second.cached_tokens * (price.input - price.cached_input) / 1e6)


def test_openai_short_prompts_are_not_cached(serve):
    server = serve(FakeOpenAIServerWithHeaders)
    _, second = two_calls(lambda: OpenAIChatClient(model="gpt-4o-mini", api_key="k", base_url=server.base_url,
                                                   max_retries=0), "short system text")
    assert second.cached_tokens == 0


@pytest.mark.parametrize("model, cached", [("claude-sonnet-4-5", True), ("claude-haiku-4-5", False)])
def test_anthropic_breakpoint_writes_then_reads_the_stable_prefix(serve, model, cached):
    server = serve(FakeAnthropicServer)
    first, second = two_calls(lambda: AnthropicClient(model=model, api_key="k", base_url=server.base_url,
                                                      max_retries=0), LONG_SYSTEM)
    prefix = len(LONG_SYSTEM) // 4   # ~1400 tokens: above Sonnet's 1024 minimum, below Haiku 4.5's 4096
    if not cached:
        assert first.cache_write_tokens == second.cached_tokens == 0
        return
    assert (first.cache_write_tokens, first.cached_tokens) == (prefix, 0)
    assert (second.cache_write_tokens, second.cached_tokens) == (0, prefix)
    assert first.prompt_tokens == second.prompt_tokens      # the prompt counts every token, cached or not
    price = PRICES_PER_MTOK[model]
    assert first.saved_usd == pytest.approx(-prefix * (price.cache_write - price.input) / 1e6)   # the write premium
    assert second.saved_usd == pytest.approx(prefix * (price.input - price.cached_input) / 1e6)
    assert second.cost_usd < first.cost_usd


def test_anthropic_prompt_cache_off_sends_no_breakpoint(serve):
    server = serve(FakeAnthropicServer)
    _, second = two_calls(lambda: AnthropicClient(model="claude-sonnet-4-5", api_key="k", base_url=server.base_url,
                                                  prompt_cache=False, max_retries=0), LONG_SYSTEM)
    assert server.requests[0]["body"]["system"] == LONG_SYSTEM
    assert second.cached_tokens == 0 and second.saved_usd == 0


def test_spec_prices_override_the_cached_rates():
    spec = spec_from_dict({"provider": "openai", "model": "my-model", "input_usd_per_mtok": 1.0,
                           "output_usd_per_mtok": 2.0, "cached_input_usd_per_mtok": 0.1})
    assert tuple(spec.prices) == (1.0, 2.0, 0.1, None)
    assert LLMSpec("openai", "gpt-4o").to_dict() == {"provider": "openai", "model": "gpt-4o"}


# ----------------------------------------------------------------------------------------------
# the dry run's estimate with and without caching


@pytest.mark.parametrize("model, cached", [("claude-sonnet-4-5", True), ("claude-haiku-4-5", False),
                                           ("gpt-4o-mini", True)])
def test_dry_run_estimates_the_cost_with_the_stable_prefix_cached(tmp_path, model, cached):
    from evoforge.engine.config import RunConfig
    from evoforge.engine.dryrun import dry_run_report, estimate_iteration
    from evoforge.engine.task import load_task
    from fakes.tasks import write_tiny_task

    task_dir = write_tiny_task(tmp_path / "tiny")
    toml = (task_dir / "task.toml").read_text()
    (task_dir / "task.toml").write_text(toml.replace('description = "Make f(x) equal 3 * x for x in 0..9."',
                                                     f'description = "{LONG_SYSTEM.strip()}"'))
    task = load_task(str(task_dir))
    provider = "anthropic" if model.startswith("claude") else "openai"
    config = RunConfig(task=str(task_dir), llm=({"provider": provider, "model": model},), iterations=100)
    (estimate,) = estimate_iteration(config, task)
    report = dry_run_report(config, task, environ={})
    assert estimate.stable_tokens > 1024
    if cached:
        assert 1024 <= estimate.cached_tokens <= estimate.stable_tokens
        assert estimate.cached_cost_usd < estimate.cost_usd
        assert "with prompt caching: ~$" in report
    else:   # Haiku 4.5 caches only prefixes of 4096 tokens and more
        assert estimate.cached_tokens == 0 and "below the provider's caching minimum" in report


def test_anthropic_second_breakpoint_follows_the_parent_program(serve):
    """A short stable prefix (as in the built-in tasks) is below the minimum alone; with the parent
    program, which recurs whenever that elite is drawn again, it is cached."""
    parent = "def f(x):\n" + "    x = x + 1  # a long program line\n" * 200
    other = parent.replace("+ 1", "+ 2")
    server = serve(FakeAnthropicServer)

    def prompt(code, i):
        return Prompt(system="You evolve programs.", seed=i, parent_code=code,
                      user=f"# Current program (score 1)\n```python\n{code}```\n\n# Inspiration {i}\nvaries {i}\n")

    async def go():
        client = AnthropicClient(model="claude-sonnet-4-5", api_key="k", base_url=server.base_url, max_retries=0)
        try:
            return [await client.generate(prompt(code, i)) for i, code in enumerate([parent, parent, other])]
        finally:
            await client.close()
    first, again, new_parent = run(go())
    head, tail = server.requests[0]["body"]["messages"][0]["content"]
    assert head["cache_control"] == {"type": "ephemeral"} and head["text"].endswith(parent + "```\n")
    assert "cache_control" not in tail and tail["text"].startswith("\n# Inspiration 0")
    assert first.cache_write_tokens > 1024 and again.cached_tokens == first.cache_write_tokens
    assert new_parent.cached_tokens == 0 and new_parent.cache_write_tokens > 1024


def test_first_run_with_a_reasoning_model_works_from_the_command_line(tmp_path, serve, monkeypatch):
    """`evoforge run --llm openai:o3`: what failed with HTTP 400 on every call before."""
    from evoforge.engine.cli import main
    from evoforge.archive.store import Store
    from fakes.replies import raise_a
    from fakes.tasks import write_tiny_task

    server = serve(FakeOpenAIServerWithHeaders, raise_a)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    assert main(["run", str(task), "--llm", "openai:o3", "--iterations", "3", "--concurrency", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        calls = list(store.llm_calls())
        statuses = [r.status for r in store.candidates(where="iteration > 0")]
    assert len(calls) == 3 and not any(c["error"] for c in calls) and statuses.count("ok") >= 1
    assert all(c["reasoning_tokens"] == 256 for c in calls)       # the default (medium) effort's, counted
    assert all("max_completion_tokens" in r["body"] for r in server.requests)


def test_a_config_price_keeps_the_tables_cache_rates_unless_it_sets_them():
    from evoforge.engine.llm.prices import Price, price_per_mtok
    dated = "gpt-4o-mini-2024-07-18"
    assert price_per_mtok(dated, {dated: (1.0, 2.0)}) == Price(1.0, 2.0, 0.075, None)
    assert price_per_mtok("claude-haiku-4-5", {"claude-haiku-4-5": Price(2.0, 6.0, 0.5)}) == Price(2.0, 6.0, 0.5, 1.25)
    assert price_per_mtok("my-local-model") is None


def test_compatible_server_reasoning_content_is_kept_as_thinking(serve):
    def answer(request):
        return 200, {"id": "c", "object": "chat.completion", "created": 0, "model": request["model"],
                     "choices": [{"index": 0, "finish_reason": "stop", "message": {
                         "role": "assistant", "content": EDIT, "reasoning_content": "First I read the code."}}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}
    server = serve(FakeOpenAIServerWithHeaders, answer)
    reply = generate(OpenAIChatClient(model="deepseek-r1", api_key="k", base_url=server.base_url, reasoning=True,
                                      max_retries=0))
    assert reply.text == EDIT and reply.thinking == "First I read the code."
