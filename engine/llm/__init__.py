"""LLM clients behind one seam, chosen by spec strings (DESIGN.md §5):

``offline`` · ``openai:MODEL`` · ``anthropic:MODEL`` · ``openai-compatible:MODEL@BASE_URL``,
each optionally followed by ``*WEIGHT`` (``--llm openai:gpt-4o*3 --llm offline``); repeated specs
form a weighted ensemble.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from evaluators.types import ConfigError
from engine.llm.base import LLMClient, Prompt, Reply

__all__ = ["LLMClient", "Prompt", "Reply", "LLMSpec", "Ensemble", "parse_llm_spec", "make_llm",
           "default_llm_specs", "PROVIDERS"]

PROVIDERS = ("offline", "openai", "anthropic", "openai-compatible")


@dataclass(frozen=True)
class LLMSpec:
    provider: str
    model: str = ""
    base_url: str | None = None
    weight: float = 1.0

    def __str__(self) -> str:
        text = self.provider if self.provider == "offline" else f"{self.provider}:{self.model}"
        if self.base_url and self.provider == "openai-compatible":
            text += f"@{self.base_url}"
        return text + (f"*{self.weight:g}" if self.weight != 1.0 else "")


def parse_llm_spec(spec: str) -> LLMSpec:
    text, weight = spec.strip(), 1.0
    if "*" in text:
        text, _, w = text.rpartition("*")
        try:
            weight = float(w)
        except ValueError:
            raise ConfigError(f"--llm {spec!r}: expected a number after '*' but got {w!r}") from None
        if weight <= 0:
            raise ConfigError(f"--llm {spec!r}: the weight must be positive")
    if text == "offline":
        return LLMSpec("offline", weight=weight)
    provider, sep, model = text.partition(":")
    if not sep or provider not in PROVIDERS or not model:
        raise ConfigError(f"--llm {spec!r}: expected one of offline, openai:MODEL, anthropic:MODEL, "
                          f"openai-compatible:MODEL@BASE_URL")
    base_url = None
    if provider == "openai-compatible":
        model, at, base_url = model.partition("@")
        if not at or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--llm {spec!r}: openai-compatible needs MODEL@BASE_URL, "
                              f"e.g. openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1")
    return LLMSpec(provider, model, base_url, weight)


def default_llm_specs(environ: Mapping[str, str] | None = None) -> list[LLMSpec]:
    """With no ``--llm``: a key in the environment picks its provider; with none, offline."""
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY"):
        return [LLMSpec("openai", env.get("EVOFORGE_OPENAI_MODEL", "gpt-4o-mini"))]
    if env.get("ANTHROPIC_API_KEY"):
        return [LLMSpec("anthropic", env.get("EVOFORGE_ANTHROPIC_MODEL", "claude-sonnet-4-5"))]
    return [LLMSpec("offline")]


def _make_one(spec: LLMSpec, environ: Mapping[str, str]) -> LLMClient:
    if spec.provider == "offline":
        from engine.llm.offline import OfflineMutator
        return OfflineMutator()
    if spec.provider == "openai":
        from engine.llm.openai_compat import OpenAIChatClient
        key = environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(f"--llm {spec}: OPENAI_API_KEY is not set in the environment")
        return OpenAIChatClient(model=spec.model, api_key=key, base_url=environ.get("OPENAI_BASE_URL"))
    if spec.provider == "openai-compatible":
        from engine.llm.openai_compat import OpenAIChatClient
        return OpenAIChatClient(model=spec.model, api_key=environ.get("OPENAI_API_KEY", "EMPTY"),
                                base_url=spec.base_url, provider="openai-compatible")
    if spec.provider == "anthropic":
        from engine.llm.anthropic_client import AnthropicClient
        key = environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(f"--llm {spec}: ANTHROPIC_API_KEY is not set in the environment")
        return AnthropicClient(model=spec.model, api_key=key, base_url=environ.get("ANTHROPIC_BASE_URL"))
    raise ConfigError(f"unknown LLM provider {spec.provider!r} (known: {', '.join(PROVIDERS)})")


class Ensemble(LLMClient):
    """Weighted choice of a model per proposal, drawn from the proposal's seed (reproducible)."""

    def __init__(self, clients: Sequence[LLMClient], weights: Sequence[float]) -> None:
        if len(clients) != len(weights) or not clients:
            raise ValueError(f"expected one weight per client but got {len(clients)} clients, {len(weights)} weights")
        self.clients = list(clients)
        total = float(sum(weights))
        self.probabilities = np.asarray(weights, dtype=float) / total
        self.name = "+".join(c.name for c in clients)

    def choose(self, seed: int) -> LLMClient:
        rng = np.random.default_rng([seed, 0x11])
        return self.clients[int(rng.choice(len(self.clients), p=self.probabilities))]

    async def generate(self, prompt: Prompt) -> Reply:
        return await self.choose(prompt.seed).generate(prompt)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def make_llm(specs: Sequence[LLMSpec], environ: Mapping[str, str] | None = None) -> LLMClient:
    env = os.environ if environ is None else environ
    clients = [_make_one(spec, env) for spec in specs]
    if len(clients) == 1:
        return clients[0]
    return Ensemble(clients, [spec.weight for spec in specs])
