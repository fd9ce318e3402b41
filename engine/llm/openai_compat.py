"""OpenAI chat-completions client (the ``openai`` SDK), also for any OpenAI-compatible server
(vLLM, Ollama, llama.cpp server, LM Studio) through ``base_url``.

SDK errors are translated into `LLMError` here, once (httpx style). The SDK's own retry with
backoff (it honours ``Retry-After`` on 429) handles transient faults; what survives it is ours.

Reasoning models (o1, o3, o4-mini, the gpt-5 family; `evoforge.engine.llm.capabilities`, or
``reasoning = true`` in the model's config) answer ``max_tokens`` and any temperature but the
default with HTTP 400, so they get ``max_completion_tokens`` (which bounds the hidden reasoning too),
no temperature, and the configured ``reasoning_effort``. Their reasoning tokens
(``completion_tokens_details.reasoning_tokens``) are part of ``completion_tokens`` and billed as
output. Cached prompt tokens (``prompt_tokens_details.cached_tokens``: OpenAI caches prompt
prefixes of 1024 tokens and more by itself) are priced at the cached rate.
"""

from __future__ import annotations

import time

from evoforge.evaluators.types import LLMError
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.capabilities import capabilities
from evoforge.engine.llm.prices import Price, call_cost, price_per_mtok
from evoforge.engine.llm.sdk_errors import (CONNECT_TIMEOUT_S, call_deadline_s, sdk_timeout,
                                            translated_sdk_errors, within_deadline)

__all__ = ["OpenAIChatClient"]


class OpenAIChatClient(LLMClient):
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None,
                 temperature: float | None = 0.8, max_tokens: int = 4096, timeout_s: float = 120.0,
                 max_retries: int = 3, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 deadline_s: float | None = None, provider: str = "openai", name: str | None = None,
                 context_tokens: int | None = None, prices: Price | tuple | None = None,
                 reasoning: bool | None = None, reasoning_effort: str | None = None,
                 **_ignored: object) -> None:
        import openai  # lazily: the offline default needs no SDK import

        self.model = model
        self.name = name or f"{provider}:{model}"
        self.reasoning = capabilities(model, reasoning=reasoning).reasoning
        # A reasoning model takes only its default temperature: none is sent.
        self.temperature = None if self.reasoning else (0.8 if temperature is None else temperature)
        self.reasoning_effort = reasoning_effort
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.price = price_per_mtok(model, None if prices is None else {model: prices})
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.deadline_s = call_deadline_s(timeout_s, max_retries, deadline_s)
        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=base_url, max_retries=max_retries,
                                          timeout=sdk_timeout(openai, timeout_s, connect_timeout_s))
        self.connect_timeout_s = self._client.timeout.connect   # as sent: never above timeout_s

    def request(self, prompt: Prompt) -> dict:
        """The keyword arguments of ``chat.completions.create`` for ``prompt`` (what goes on the wire)."""
        kwargs: dict = dict(model=self.model, seed=prompt.seed % (2**31),
                            messages=[{"role": "system", "content": prompt.system}, *prompt.messages()])
        if self.reasoning:
            kwargs["max_completion_tokens"] = self.max_tokens
            if self.reasoning_effort:
                kwargs["reasoning_effort"] = self.reasoning_effort
        else:
            kwargs["max_tokens"] = self.max_tokens
            kwargs["temperature"] = self.temperature
        return kwargs

    async def generate(self, prompt: Prompt) -> Reply:
        started = time.perf_counter()
        with translated_sdk_errors(self._openai, self._openai.OpenAIError, name=self.name,
                                   base_url=self._client.base_url, timeout_s=self.timeout_s,
                                   max_retries=self.max_retries, connect_timeout_s=self.connect_timeout_s):
            response = await within_deadline(
                self._client.chat.completions.create(**self.request(prompt)), name=self.name,
                base_url=self._client.base_url, deadline_s=self.deadline_s, timeout_s=self.timeout_s,
                max_retries=self.max_retries)
        choices = response.choices or []
        message = choices[0].message if choices else None
        content = message.content if message else None
        usage = response.usage
        prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
        out_details = getattr(usage, "completion_tokens_details", None) if usage else None
        reasoning_tokens = (getattr(out_details, "reasoning_tokens", 0) or 0) if out_details else 0
        if not content or not content.strip():
            reason = ("no choices" if not choices
                      else f"empty message content (finish_reason={choices[0].finish_reason!r})")
            if choices and choices[0].finish_reason == "length" and reasoning_tokens:
                reason += (f": the model spent {reasoning_tokens} of max_tokens {self.max_tokens} reasoning; "
                           f"raise max_tokens or lower reasoning_effort")
            raise LLMError(f"{self.name}: the reply holds {reason}")
        # vLLM / DeepSeek-style servers return the reasoning text beside the answer.
        thinking = getattr(message, "reasoning_content", None) or (message.model_extra or {}).get("reasoning_content")
        cost, saved = call_cost(self.price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                cached_tokens=cached)
        return Reply(
            text=content,
            model=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            saved_usd=saved,
            cached_tokens=cached,
            reasoning_tokens=reasoning_tokens,
            thinking=thinking if isinstance(thinking, str) else "",
            latency_s=time.perf_counter() - started,
            truncated=choices[0].finish_reason == "length",
        )

    async def close(self) -> None:
        await self._client.close()
