"""Anthropic messages client (the ``anthropic`` SDK). SDK errors become `LLMError` here, once."""

from __future__ import annotations

import time

from evaluators.types import LLMError
from engine.llm.base import LLMClient, Prompt, Reply
from engine.llm.prices import cost_usd

__all__ = ["AnthropicClient"]


class AnthropicClient(LLMClient):
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None,
                 temperature: float = 0.8, max_tokens: int = 4096, timeout_s: float = 120.0,
                 max_retries: int = 3) -> None:
        import anthropic

        self.model = model
        self.name = f"anthropic:{model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                                max_retries=max_retries)

    async def generate(self, prompt: Prompt) -> Reply:
        started = time.perf_counter()
        try:
            message = await self._client.messages.create(
                model=self.model, system=prompt.system, max_tokens=self.max_tokens,
                temperature=min(self.temperature, 1.0),
                messages=[{"role": "user", "content": prompt.user}],
            )
        except self._anthropic.APIStatusError as exc:
            raise LLMError(f"{self.name}: HTTP {exc.status_code}: {exc.message}") from exc
        except self._anthropic.APIConnectionError as exc:
            raise LLMError(f"{self.name}: cannot reach the API: {exc}") from exc
        except self._anthropic.AnthropicError as exc:
            raise LLMError(f"{self.name}: {exc}") from exc
        text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
        if not text:
            raise LLMError(f"{self.name}: the reply holds no text")
        usage = message.usage
        return Reply(text=text, model=self.name, prompt_tokens=usage.input_tokens,
                     completion_tokens=usage.output_tokens,
                     cost_usd=cost_usd(self.model, usage.input_tokens, usage.output_tokens),
                     latency_s=time.perf_counter() - started)

    async def close(self) -> None:
        await self._client.close()
