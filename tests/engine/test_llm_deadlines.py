"""An LLM server that accepts the connection and never answers (or trickles a byte at a time) ends
the call within its limits with one `LLMError` line: the real openai and anthropic SDKs against a
stand-in on 127.0.0.1 (tests/fakes/silent_server.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from evoforge.engine.llm import LLMSpec, Prompt
from evoforge.engine.llm.anthropic_client import AnthropicClient
from evoforge.engine.llm.models import spec_from_dict
from evoforge.engine.llm.openai_compat import OpenAIChatClient
from evoforge.engine.llm.sdk_errors import call_deadline_s
from evoforge.evaluators.types import ConfigError, LLMError
from fakes.silent_server import SilentServer

PROMPT = Prompt(system="You improve code.", user="Make it faster.", parent_code="def f(): pass", seed=7)
GENEROUS_S = 20.0


def client(provider: str, base_url: str, **kwargs):
    if provider == "openai":
        return OpenAIChatClient(model="gpt-4o-mini", api_key="sk-test", base_url=base_url, **kwargs)
    return AnthropicClient(model="claude-haiku-4-5", api_key="sk-ant-test", base_url=base_url, **kwargs)


def _ours() -> set[str]:
    """Live threads but the stand-in server's own."""
    return {t.name for t in threading.enumerate() if not t.name.startswith("silent-server")}


def fail(llm) -> str:
    async def go() -> str:
        try:
            with pytest.raises(LLMError) as info:
                await llm.generate(PROMPT)
        finally:
            await llm.close()
        return str(info.value)

    threads = _ours()
    started = time.monotonic()
    message = asyncio.run(go())
    assert time.monotonic() - started < GENEROUS_S
    assert _ours() <= threads, "the call left a thread running"
    return message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_server_that_never_answers_ends_at_the_read_timeout(provider):
    with SilentServer() as server:
        base_url = f"http://{server.address}" + ("/v1" if provider == "openai" else "")
        message = fail(client(provider, base_url, timeout_s=0.5, max_retries=1))
        assert server.accepted >= 2, "the SDK's retry should have tried again"
    assert "\n" not in message
    assert "timed out (read 0.5 s, connect 0.5 s; 2 attempt(s))" in message
    assert server.address in message and "check that the server is up" in message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_server_that_trickles_ends_at_the_call_deadline(provider):
    """A byte every 0.1 s never trips a 5 s read timeout; the per-call deadline ends it."""
    with SilentServer(trickle_s=0.1) as server:
        base_url = f"http://{server.address}" + ("/v1" if provider == "openai" else "")
        message = fail(client(provider, base_url, timeout_s=5.0, max_retries=2, deadline_s=1.5))
    assert "\n" not in message
    assert "did not finish answering within the call's deadline of 1.5 s" in message
    assert "read timeout 5 s, up to 3 attempt(s)" in message and "raise deadline_s" in message


def test_limits_are_settings_with_defaults():
    spec = spec_from_dict({"provider": "openai", "model": "m", "connect_timeout_s": 3, "deadline_s": 90})
    assert (spec.connect_timeout_s, spec.deadline_s) == (3.0, 90.0)
    assert LLMSpec("openai", "m").connect_timeout_s == 10.0 and LLMSpec("openai", "m").deadline_s is None
    assert call_deadline_s(120.0, 3, None) == 4 * 120.0 + 30.0
    with pytest.raises(ConfigError, match="deadline_s: expected a number"):
        spec_from_dict({"provider": "openai", "model": "m", "deadline_s": "soon"})
    llm = client("openai", "http://127.0.0.1:9/v1", timeout_s=60.0, connect_timeout_s=2.0)
    timeout = llm._client.timeout
    assert (timeout.connect, timeout.read) == (2.0, 60.0)
    asyncio.run(llm.close())
