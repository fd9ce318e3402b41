"""Anthropic messages client (the ``anthropic`` SDK). SDK errors become `LLMError` here, once.

The installed SDK (2.x) has no ``temperature`` parameter on ``messages.create`` (passing one is a
``TypeError`` before any request), so the model's default sampling is used; a ``temperature`` given
explicitly is sent through ``extra_body`` for servers that still accept it.

What the service enforces, honoured here (and by tests/fakes/anthropic_server.py):

* extended thinking (``thinking_budget_tokens``): ``budget_tokens >= 1024`` and ``< max_tokens``,
  temperature unset (or 1) — checked when the config is read (`evoforge.engine.llm.models`). The
  thinking blocks come back before the text; they are stored with the reply, never parsed as edits.
* long generations: the SDK refuses a non-streaming request whose ``max_tokens`` implies more than
  10 minutes (60 min x max_tokens / 128k, or a per-model cap), so such requests are streamed and the
  final message assembled by the SDK — a large ``max_tokens`` never fails on that guard.
* prompt caching: the system text is the stable prefix of every prompt of a run, so it carries a
  ``cache_control`` breakpoint; a second one follows the parent program in the user turn (the
  prompt shows the parent right after the stable part, and an elite is drawn as a parent again and
  again, so system + parent is the next most stable prefix). The usage's
  ``cache_creation_input_tokens`` and ``cache_read_input_tokens`` are priced at the cache write /
  read rates. Anthropic caches a prefix only from a per-model minimum size on (1024 tokens for
  Sonnet 4.5), below which a mark is inert; a write costs 1.25x input and a read 0.1x, so a prefix
  pays for itself from its second use.
"""

from __future__ import annotations

import time

from evoforge.evaluators.types import LLMError
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.prices import Price, call_cost, price_per_mtok
from evoforge.engine.llm.sdk_errors import (CONNECT_TIMEOUT_S, call_deadline_s, sdk_timeout,
                                            translated_sdk_errors, within_deadline)

__all__ = ["AnthropicClient", "needs_streaming"]

# The SDK's long-request guard: 60 min per 128k tokens must stay under 10 minutes.
_NONSTREAMING_MAX_TOKENS = 600 * 128_000 // 3600


def needs_streaming(model: str, max_tokens: int) -> bool:
    """Whether the SDK would refuse ``max_tokens`` without streaming (its rule, read from the SDK)."""
    try:
        from anthropic._constants import MODEL_NONSTREAMING_TOKENS
    except ImportError:  # pragma: no cover - an SDK without per-model caps
        MODEL_NONSTREAMING_TOKENS = {}
    cap = MODEL_NONSTREAMING_TOKENS.get(model)
    return max_tokens > _NONSTREAMING_MAX_TOKENS or bool(cap and max_tokens > cap)


def _split_after_parent(user: str, parent_code: str) -> str | list[dict]:
    """The user turn as two text blocks, a cache breakpoint after the parent program's code block;
    the plain text when the parent is not shown verbatim (a task's own template) or nothing follows."""
    code = parent_code.rstrip()
    at = user.find(code) if code else -1
    if at < 0:
        return user
    fence = user.find("```", at + len(code))
    end = user.find("\n", fence) + 1 if fence >= 0 else at + len(code)
    if end <= 0 or end >= len(user):
        return user
    return [{"type": "text", "text": user[:end], "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": user[end:]}]


class AnthropicClient(LLMClient):
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None,
                 temperature: float | None = None, max_tokens: int = 4096, timeout_s: float = 120.0,
                 max_retries: int = 3, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 deadline_s: float | None = None, name: str | None = None, context_tokens: int | None = None,
                 prices: Price | tuple | None = None, thinking_budget_tokens: int | None = None,
                 prompt_cache: bool = True, **_ignored: object) -> None:
        import anthropic

        self.model = model
        self.name = name or f"anthropic:{model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.price = price_per_mtok(model, None if prices is None else {model: prices})
        self.thinking_budget_tokens = thinking_budget_tokens
        self.prompt_cache = prompt_cache
        self.stream = needs_streaming(model, max_tokens)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.deadline_s = call_deadline_s(timeout_s, max_retries, deadline_s)
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=max_retries,
                                                timeout=sdk_timeout(anthropic, timeout_s, connect_timeout_s))
        self.connect_timeout_s = self._client.timeout.connect   # as sent: never above timeout_s

    def request(self, prompt: Prompt) -> dict:
        """The keyword arguments of ``messages.create`` for ``prompt`` (what goes on the wire)."""
        system: object = prompt.system
        if self.prompt_cache:
            system = [{"type": "text", "text": prompt.system, "cache_control": {"type": "ephemeral"}}]
        messages: list[dict] = prompt.messages()
        if self.prompt_cache:
            messages[0] = {"role": "user", "content": _split_after_parent(prompt.user, prompt.parent_code)}
        kwargs: dict = dict(model=self.model, system=system, max_tokens=self.max_tokens, messages=messages)
        if self.thinking_budget_tokens:
            kwargs["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_budget_tokens}
        elif self.temperature is not None:
            kwargs["extra_body"] = {"temperature": min(max(self.temperature, 0.0), 1.0)}
        return kwargs

    async def generate(self, prompt: Prompt) -> Reply:
        started = time.perf_counter()
        kwargs = self.request(prompt)
        with translated_sdk_errors(self._anthropic, self._anthropic.AnthropicError, name=self.name,
                                   base_url=self._client.base_url, timeout_s=self.timeout_s,
                                   max_retries=self.max_retries, connect_timeout_s=self.connect_timeout_s):
            message = await within_deadline(self._message(kwargs), name=self.name,
                                            base_url=self._client.base_url, deadline_s=self.deadline_s,
                                            timeout_s=self.timeout_s, max_retries=self.max_retries)
        blocks = message.content or []
        text = "".join(getattr(block, "text", "") or "" for block in blocks
                       if getattr(block, "type", "") == "text")
        thinking = "\n\n".join(getattr(block, "thinking", "") or "" for block in blocks
                               if getattr(block, "type", "") == "thinking")
        if not text.strip():
            raise LLMError(f"{self.name}: the reply holds no text (stop_reason={message.stop_reason!r}, "
                           f"{len(blocks)} content block(s))")
        usage = message.usage
        # input_tokens excludes the cached part: the prompt is all three together.
        plain = (getattr(usage, "input_tokens", 0) or 0) if usage else 0
        written = (getattr(usage, "cache_creation_input_tokens", 0) or 0) if usage else 0
        read = (getattr(usage, "cache_read_input_tokens", 0) or 0) if usage else 0
        completion_tokens = (getattr(usage, "output_tokens", 0) or 0) if usage else 0
        prompt_tokens = plain + written + read
        cost, saved = call_cost(self.price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                cached_tokens=read, cache_write_tokens=written)
        return Reply(text=text, model=self.name, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, cost_usd=cost, saved_usd=saved,
                     cached_tokens=read, cache_write_tokens=written, thinking=thinking,
                     latency_s=time.perf_counter() - started,
                     truncated=message.stop_reason == "max_tokens")

    async def _message(self, kwargs: dict):
        if self.stream:
            async with self._client.messages.stream(**kwargs) as stream:
                return await stream.get_final_message()
        return await self._client.messages.create(**kwargs)

    async def close(self) -> None:
        await self._client.close()
