"""Anthropic messages client (the ``anthropic`` SDK). SDK errors become `LLMError` here, once.

The installed SDK (2.x) has no ``temperature`` parameter on ``messages.create`` (passing one is a
``TypeError`` before any request), so the model's default sampling is used; a ``temperature`` given
explicitly is sent through ``extra_body`` for servers that still accept it.
"""

from __future__ import annotations

import time

from evoforge.evaluators.types import LLMError
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.prices import cost_usd
from evoforge.engine.llm.sdk_errors import translated_sdk_errors

__all__ = ["AnthropicClient"]


class AnthropicClient(LLMClient):
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None,
                 temperature: float | None = None, max_tokens: int = 4096, timeout_s: float = 120.0,
                 max_retries: int = 3, name: str | None = None, context_tokens: int | None = None,
                 prices: tuple[float, float] | None = None) -> None:
        import anthropic

        self.model = model
        self.name = name or f"anthropic:{model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.prices = prices  # (input, output) USD per 1M tokens, overriding the table
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                                max_retries=max_retries)

    async def generate(self, prompt: Prompt) -> Reply:
        started = time.perf_counter()
        with translated_sdk_errors(self._anthropic, self._anthropic.AnthropicError, name=self.name,
                                   base_url=self._client.base_url, timeout_s=self.timeout_s,
                                   max_retries=self.max_retries):
            message = await self._client.messages.create(
                model=self.model, system=prompt.system, max_tokens=self.max_tokens,
                messages=prompt.messages(),
                extra_body=(None if self.temperature is None
                            else {"temperature": min(max(self.temperature, 0.0), 1.0)}),
            )
        blocks = message.content or []
        text = "".join(getattr(block, "text", "") or "" for block in blocks
                       if getattr(block, "type", "") == "text")
        if not text.strip():
            raise LLMError(f"{self.name}: the reply holds no text (stop_reason={message.stop_reason!r}, "
                           f"{len(blocks)} content block(s))")
        usage = message.usage
        prompt_tokens = (usage.input_tokens or 0) if usage else 0
        completion_tokens = (usage.output_tokens or 0) if usage else 0
        return Reply(text=text, model=self.name, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens,
                     cost_usd=cost_usd(self.model, prompt_tokens, completion_tokens,
                                       None if self.prices is None else {self.model: self.prices}),
                     latency_s=time.perf_counter() - started,
                     truncated=message.stop_reason == "max_tokens")

    async def close(self) -> None:
        await self._client.close()
