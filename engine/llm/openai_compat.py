"""OpenAI chat-completions client (the ``openai`` SDK), also for any OpenAI-compatible server
(vLLM, Ollama, llama.cpp server, LM Studio) through ``base_url``.

SDK errors are translated into `LLMError` here, once (httpx style). The SDK's own retry with
backoff (it honours ``Retry-After`` on 429) handles transient faults; what survives it is ours.
"""

from __future__ import annotations

import time

from evoforge.evaluators.types import LLMError
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.prices import cost_usd
from evoforge.engine.llm.sdk_errors import translated_sdk_errors

__all__ = ["OpenAIChatClient"]


class OpenAIChatClient(LLMClient):
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None,
                 temperature: float | None = 0.8, max_tokens: int = 4096, timeout_s: float = 120.0,
                 max_retries: int = 3, provider: str = "openai", name: str | None = None,
                 context_tokens: int | None = None,
                 prices: tuple[float, float] | None = None) -> None:
        import openai  # lazily: the offline default needs no SDK import

        self.model = model
        self.name = name or f"{provider}:{model}"
        self.temperature = 0.8 if temperature is None else temperature
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.prices = prices  # (input, output) USD per 1M tokens, overriding the table
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=base_url,
                                          timeout=timeout_s, max_retries=max_retries)

    async def generate(self, prompt: Prompt) -> Reply:
        started = time.perf_counter()
        with translated_sdk_errors(self._openai, self._openai.OpenAIError, name=self.name,
                                   base_url=self._client.base_url, timeout_s=self.timeout_s,
                                   max_retries=self.max_retries):
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": prompt.system}, *prompt.messages()],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=prompt.seed % (2**31),
            )
        choices = response.choices or []
        content = choices[0].message.content if choices and choices[0].message else None
        if not content or not content.strip():
            reason = ("no choices" if not choices
                      else f"empty message content (finish_reason={choices[0].finish_reason!r})")
            raise LLMError(f"{self.name}: the reply holds {reason}")
        usage = response.usage
        prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
        return Reply(
            text=content,
            model=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(self.model, prompt_tokens, completion_tokens,
                              None if self.prices is None else {self.model: self.prices}),
            latency_s=time.perf_counter() - started,
            truncated=choices[0].finish_reason == "length",
        )

    async def close(self) -> None:
        await self._client.close()
