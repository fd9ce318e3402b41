"""The LLM seam: one method, `generate(prompt) -> Reply`, shared by real clients and the offline operator.

httpx style: each client translates its SDK's exceptions into `LLMError` at this boundary, and tests
exercise the real SDKs against fake servers on 127.0.0.1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["LLMClient", "Prompt", "Reply"]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt plus the structured parts it was rendered from.

    ``seed`` is drawn per proposal by the engine, so a stochastic operator (the offline mutator,
    an ensemble's choice of model) gives the same answer for the same proposal whatever the timing.
    """

    system: str
    user: str
    parent_code: str
    inspirations: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0


class LLMClient(ABC):
    """A source of edits. ``name`` is what the run records as the model (e.g. ``openai:gpt-4o``)."""

    name: str = "llm"

    @abstractmethod
    async def generate(self, prompt: Prompt) -> Reply:
        """Return the model's reply; raise `LLMError` when the call cannot succeed."""

    async def close(self) -> None:  # pragma: no cover - default: nothing to release
        return None
