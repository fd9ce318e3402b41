"""The LLM layer under faults: the real openai / anthropic SDKs talk real HTTP to fake servers on
127.0.0.1 (tests/fakes), and every failure surfaces as one `LLMError` naming the model and the cause.

Retries use the SDKs' own backoff: ``Retry-After: 0`` is not a positive delay, so both SDKs fall
back to their exponential backoff, 0.5 s * (0.75..1) for the first retry (then 1 s, 2 s, ... capped
at 8 s). Hence every retrying test here uses ``max_retries=1``: one retry, at most 0.5 s.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest

from evoforge.engine.llm import Ensemble, LLMClient, LLMSpec, Prompt, Reply, make_llm, parse_llm_spec
from evoforge.engine.llm.anthropic_client import AnthropicClient
from evoforge.engine.llm.openai_compat import OpenAIChatClient
from evoforge.evaluators.types import ConfigError, LLMError
from fakes.anthropic_server import (FakeAnthropicServer, FakeOpenAIServerWithHeaders, error_body,
                                    openai_error_body)

PROMPT = Prompt(system="You improve code.", user="Make it faster.", parent_code="def f(): pass", seed=7)
PROVIDERS = ["openai", "anthropic"]
PRICED = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


# ----------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def serve():
    """``serve(provider, reply, latency_s=0) -> server`` (started; shut down after the test)."""
    started = []

    def start(provider, reply, **kwargs):
        cls = FakeOpenAIServerWithHeaders if provider == "openai" else FakeAnthropicServer
        server = cls(reply, **kwargs)
        server.__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


def make_client(provider: str, base_url: str, *, model: str | None = None, **kwargs) -> LLMClient:
    model = model or PRICED[provider]
    kwargs.setdefault("max_retries", 1)
    kwargs.setdefault("timeout_s", 10.0)
    if provider == "openai":
        return OpenAIChatClient(model=model, api_key="sk-test", base_url=base_url, **kwargs)
    return AnthropicClient(model=model, api_key="sk-ant-test", base_url=base_url, **kwargs)


def generate(client: LLMClient, prompt: Prompt = PROMPT) -> Reply:
    async def go() -> Reply:
        try:
            return await client.generate(prompt)
        finally:
            await client.close()
    return asyncio.run(go())


def fail(provider: str, status: int, message: str = "boom", headers: dict | None = None) -> tuple:
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    body = openai_error_body(kind, message) if provider == "openai" else error_body(kind, message)
    return (status, body, headers or {})


def script(*answers):
    """A reply function giving ``answers`` in order, then repeating the last one."""
    answers = list(answers)

    def reply(request: dict):
        return answers.pop(0) if len(answers) > 1 else answers[0]
    return reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# success and the wire format


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reply_text_usage_and_cost(serve, provider):
    server = serve(provider, lambda request: "def f(): return 1  # faster")
    reply = generate(make_client(provider, server.base_url))
    assert reply.text == "def f(): return 1  # faster"
    assert reply.model == f"{provider}:{PRICED[provider]}"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.cost_usd > 0
    assert reply.latency_s >= 0
    assert len(server.requests) == 1
    request = server.requests[0]
    if provider == "openai":
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["authorization"] == "Bearer sk-test"
        assert request["body"]["messages"] == [{"role": "system", "content": PROMPT.system},
                                               {"role": "user", "content": PROMPT.user}]
        assert request["body"]["seed"] == PROMPT.seed
    else:
        assert request["path"] == "/v1/messages"
        # this SDK sends the key as a bearer token; older ones used x-api-key
        headers = request["headers"]
        assert "sk-ant-test" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
        assert "temperature" not in request["body"]  # SDK 2.x has no such parameter
        # the system text is the stable prefix of every prompt: it carries the cache breakpoint
        assert request["body"]["system"] == [{"type": "text", "text": PROMPT.system,
                                              "cache_control": {"type": "ephemeral"}}]
        assert request["body"]["messages"] == [{"role": "user", "content": PROMPT.user}]
    assert request["body"]["model"] == PRICED[provider]


def test_anthropic_explicit_temperature_goes_through_extra_body(serve):
    server = serve("anthropic", lambda request: "warm")
    assert generate(make_client("anthropic", server.base_url, temperature=1.7)).text == "warm"
    assert server.requests[0]["body"]["temperature"] == 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_model_costs_nothing(serve, provider):
    server = serve(provider, lambda request: "ok then")
    reply = generate(make_client(provider, server.base_url, model="my-local-model"))
    assert reply.text == "ok then"
    assert reply.prompt_tokens > 0
    assert reply.cost_usd == 0.0


def test_openai_cost_follows_the_price_table(serve):
    from evoforge.engine.llm.prices import cost_usd
    server = serve("openai", lambda request: "x" * 400)
    reply = generate(make_client("openai", server.base_url, model="gpt-4o-mini"))
    assert reply.completion_tokens == 100
    assert reply.cost_usd == pytest.approx(cost_usd("gpt-4o-mini", reply.prompt_tokens, 100))


def test_openai_missing_usage_counts_zero_tokens(serve):
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}]}
    server = serve("openai", lambda request: (200, body))
    reply = generate(make_client("openai", server.base_url))
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd) == ("hello", 0, 0, 0.0)


# ----------------------------------------------------------------------------------------------
# transient faults: the SDK retries


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_with_retry_after_then_success(serve, provider):
    server = serve(provider, script(fail(provider, 429, "slow down", {"Retry-After": "0"}), "recovered"))
    reply = generate(make_client(provider, server.base_url, max_retries=1))
    assert reply.text == "recovered"
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_error_then_success(serve, provider):
    server = serve(provider, script(fail(provider, 500, "internal"), "recovered"))
    reply = generate(make_client(provider, server.base_url, max_retries=1))
    assert reply.text == "recovered"
    assert len(server.requests) == 2


# ----------------------------------------------------------------------------------------------
# faults that survive the retries become LLMError


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_server_error_is_llm_error_after_all_attempts(serve, provider):
    server = serve(provider, lambda request: fail(provider, 500, "the backend is down"))
    with pytest.raises(LLMError) as info:
        generate(make_client(provider, server.base_url, max_retries=1))
    message = str(info.value)
    assert f"{provider}:{PRICED[provider]}" in message
    assert "HTTP 500" in message
    assert "the backend is down" in message
    assert len(server.requests) == 2  # max_retries + 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unauthorized_fails_at_once(serve, provider):
    server = serve(provider, lambda request: fail(provider, 401, "invalid x-api-key"))
    with pytest.raises(LLMError) as info:
        generate(make_client(provider, server.base_url, max_retries=3))
    message = str(info.value)
    assert f"{provider}:{PRICED[provider]}" in message
    assert "HTTP 401" in message
    assert "attempts" not in message
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_refused(provider):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    with pytest.raises(LLMError) as info:
        generate(make_client(provider, base_url, max_retries=0))
    message = str(info.value)
    assert "cannot reach" in message
    assert f"127.0.0.1:{port}" in message
    assert provider in message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout(serve, provider):
    server = serve(provider, lambda request: "too late", latency_s=1.0)
    with pytest.raises(LLMError) as info:
        generate(make_client(provider, server.base_url, timeout_s=0.3, max_retries=0))
    message = str(info.value)
    assert "timed out" in message
    assert f"{provider}:{PRICED[provider]}" in message
    assert "0.3 s" in message
    assert len(server.requests) == 1


@pytest.mark.parametrize("text", ["", "   \n"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_content_is_llm_error(serve, provider, text):
    server = serve(provider, lambda request: text)
    with pytest.raises(LLMError, match="holds no|empty"):
        generate(make_client(provider, server.base_url))


def test_openai_no_choices_is_llm_error(serve):
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}
    server = serve("openai", lambda request: (200, body))
    with pytest.raises(LLMError, match="no choices"):
        generate(make_client("openai", server.base_url))


def test_openai_null_content_is_llm_error(serve):
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": None}}]}
    server = serve("openai", lambda request: (200, body))
    with pytest.raises(LLMError, match="empty message content.*length"):
        generate(make_client("openai", server.base_url))


def test_anthropic_no_content_blocks_is_llm_error(serve):
    body = {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "claude-haiku-4-5",
            "stop_reason": "max_tokens", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 0}}
    server = serve("anthropic", lambda request: (200, body))
    with pytest.raises(LLMError, match="no text.*max_tokens"):
        generate(make_client("anthropic", server.base_url))


# ----------------------------------------------------------------------------------------------
# specs, make_llm, Ensemble


def test_parse_llm_spec():
    assert parse_llm_spec("offline") == LLMSpec("offline")
    assert parse_llm_spec("openai:gpt-4o") == LLMSpec("openai", "gpt-4o")
    assert parse_llm_spec(" anthropic:claude-sonnet-4-5*2.5 ") == LLMSpec("anthropic", "claude-sonnet-4-5",
                                                                           weight=2.5)
    spec = parse_llm_spec("openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1*3")
    assert spec == LLMSpec("openai-compatible", "qwen2.5-coder", "http://127.0.0.1:8000/v1", 3.0)
    assert str(spec) == "openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1*3"
    assert parse_llm_spec(str(spec)) == spec
    assert str(parse_llm_spec("offline*2")) == "offline*2"


@pytest.mark.parametrize("bad", ["", "gpt-4o", "openai:", "mistral:large", "openai:gpt-4o*x",
                                 "openai:gpt-4o*0", "openai:gpt-4o*-1",
                                 "openai-compatible:qwen", "openai-compatible:qwen@localhost:8000"])
def test_parse_llm_spec_rejects(bad):
    with pytest.raises(ConfigError):
        parse_llm_spec(bad)


def test_make_llm_needs_api_keys():
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_llm([parse_llm_spec("openai:gpt-4o")], environ={})
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_llm([parse_llm_spec("anthropic:claude-sonnet-4-5")], environ={})


def test_make_llm_builds_clients(serve):
    client = make_llm([parse_llm_spec("openai:gpt-4o")], environ={"OPENAI_API_KEY": "sk-x"})
    assert isinstance(client, OpenAIChatClient) and client.name == "openai:gpt-4o"
    asyncio.run(client.close())
    # openai-compatible needs no key; it talks to its own base URL.
    server = serve("openai", lambda request: "local answer")
    client = make_llm([parse_llm_spec(f"openai-compatible:qwen@{server.base_url}")], environ={})
    assert client.name == "openai-compatible:qwen"
    reply = generate(client)
    assert reply.text == "local answer" and reply.cost_usd == 0.0
    assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"
    offline = make_llm([parse_llm_spec("offline")], environ={})
    assert not isinstance(offline, Ensemble)


def test_make_llm_ensemble_of_several_specs():
    env = {"ANTHROPIC_API_KEY": "sk-ant"}
    llm = make_llm([parse_llm_spec("anthropic:claude-haiku-4-5*3"), parse_llm_spec("offline")], environ=env)
    assert isinstance(llm, Ensemble)
    assert llm.name.startswith("anthropic:claude-haiku-4-5+")
    assert list(llm.probabilities) == pytest.approx([0.75, 0.25])
    asyncio.run(llm.close())


class Named(LLMClient):
    def __init__(self, name: str) -> None:
        self.name = name

    async def generate(self, prompt: Prompt) -> Reply:
        return Reply(text=f"from {self.name}", model=self.name)


def test_ensemble_is_reproducible_per_seed_and_follows_weights():
    clients = [Named("a"), Named("b"), Named("c")]
    ensemble = Ensemble(clients, [6, 3, 1])
    again = Ensemble([Named("a"), Named("b"), Named("c")], [6, 3, 1])
    picks = [ensemble.choose(seed).name for seed in range(2000)]
    assert picks == [ensemble.choose(seed).name for seed in range(2000)]
    assert picks == [again.choose(seed).name for seed in range(2000)]
    counts = Counter(picks)
    for name, share in {"a": 0.6, "b": 0.3, "c": 0.1}.items():
        assert abs(counts[name] / 2000 - share) < 0.04, counts
    # generate() routes to the client its prompt's seed picks
    for seed in (0, 1, 2, 3, 99):
        prompt = Prompt(system="s", user="u", parent_code="", seed=seed)
        assert asyncio.run(ensemble.generate(prompt)).model == ensemble.choose(seed).name


def test_ensemble_rejects_mismatched_weights():
    with pytest.raises(ValueError):
        Ensemble([Named("a")], [1, 2])
    with pytest.raises(ValueError):
        Ensemble([], [])
