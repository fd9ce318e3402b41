"""Text embeddings from OpenAI or an OpenAI-compatible server (``POST /v1/embeddings``), for a
novelty filter over candidate programs (embedding-similarity rejection as in ShinkaEvolve, Lange et
al. 2025). The same seam and the same error translation as the chat clients: every SDK failure is
one `LLMError` naming the model, the URL and the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from evoforge.evaluators.types import ConfigError, LLMError
from evoforge.engine.llm.prices import Price, call_cost, price_per_mtok
from evoforge.engine.llm.sdk_errors import translated_sdk_errors

__all__ = ["Embeddings", "EmbeddingClient", "make_embedding_client"]


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]    # one per input text, in order
    model: str
    prompt_tokens: int = 0
    cost_usd: float = 0.0


class EmbeddingClient:
    """``await client.embed(texts) -> Embeddings``; ``dimensions`` (None: the model's) is sent when given."""

    def __init__(self, *, model: str, api_key: str | None, base_url: str | None = None, provider: str = "openai",
                 dimensions: int | None = None, timeout_s: float = 60.0, max_retries: int = 3,
                 prices: Price | tuple | None = None, batch_size: int = 256) -> None:
        import openai

        self.model = model
        self.name = f"{provider}:{model}"
        self.dimensions = dimensions
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.price = price_per_mtok(model, None if prices is None else {model: prices})
        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=base_url, timeout=timeout_s,
                                          max_retries=max_retries)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        texts = list(texts)
        if not texts:
            return Embeddings([], self.name)
        if any(not isinstance(t, str) or not t for t in texts):
            raise ValueError("expected non-empty strings to embed")  # the service answers 400 to an empty one
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            extra = {} if self.dimensions is None else {"dimensions": self.dimensions}
            with translated_sdk_errors(self._openai, self._openai.OpenAIError, name=self.name,
                                       base_url=self._client.base_url, timeout_s=self.timeout_s,
                                       max_retries=self.max_retries):
                response = await self._client.embeddings.create(model=self.model, input=batch, **extra)
            data = sorted(response.data or [], key=lambda d: d.index)
            if len(data) != len(batch):
                raise LLMError(f"{self.name}: expected {len(batch)} embeddings but got {len(data)}")
            vectors.extend(list(d.embedding) for d in data)
            tokens += (response.usage.prompt_tokens or 0) if response.usage else 0
        cost, _ = call_cost(self.price, prompt_tokens=tokens, completion_tokens=0)
        return Embeddings(vectors, self.name, tokens, cost)

    async def close(self) -> None:
        await self._client.close()


def make_embedding_client(spec: str, environ: Mapping[str, str], **kwargs) -> EmbeddingClient:
    """``openai:MODEL`` or ``openai-compatible:MODEL@BASE_URL`` (the ``--llm`` forms) → a client."""
    provider, sep, model = spec.partition(":")
    if provider == "openai" and model:
        key = environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(f"embeddings {spec}: OPENAI_API_KEY is not set in the environment")
        return EmbeddingClient(model=model, api_key=key, base_url=environ.get("OPENAI_BASE_URL"), **kwargs)
    if provider == "openai-compatible" and "@" in model:
        model, _, base_url = model.partition("@")
        if model and base_url.startswith(("http://", "https://")):
            return EmbeddingClient(model=model, api_key=environ.get("OPENAI_API_KEY"), base_url=base_url,
                                   provider=provider, **kwargs)
    raise ConfigError(f"embeddings {spec!r}: expected openai:MODEL or openai-compatible:MODEL@BASE_URL")
