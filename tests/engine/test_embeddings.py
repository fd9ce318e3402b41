"""The embeddings client (for a novelty filter): the real openai SDK against the fakes' ``/v1/embeddings``
on 127.0.0.1, with the chat clients' error translation."""

from __future__ import annotations

import asyncio
import math

import pytest

from evoforge.engine.llm.embeddings import EmbeddingClient, make_embedding_client
from evoforge.engine.llm.prices import PRICES_PER_MTOK
from evoforge.evaluators.types import ConfigError, LLMError
from fakes.anthropic_server import FakeOpenAIServerWithHeaders
from fakes.openai_server import FakeOpenAIServer


def embed(client, texts):
    async def go():
        try:
            return await client.embed(texts)
        finally:
            await client.close()
    return asyncio.run(go())


@pytest.mark.parametrize("server_cls", [FakeOpenAIServer, FakeOpenAIServerWithHeaders])
def test_embeddings_round_trip_in_order_with_usage_and_cost(server_cls):
    with server_cls(lambda request: "unused") as server:
        client = EmbeddingClient(model="text-embedding-3-small", api_key="k", base_url=server.base_url,
                                 dimensions=16, batch_size=2, max_retries=0)
        texts = ["def f(x): return x", "def g(x): return 2 * x", "def f(x): return x"]
        result = embed(client, texts)
        bodies = [r["body"] for r in server.requests]
    assert [len(b["input"]) for b in bodies] == [2, 1] and all(b["dimensions"] == 16 for b in bodies)
    assert len(result.vectors) == 3 and all(len(v) == 16 for v in result.vectors)
    assert result.vectors[0] == result.vectors[2] != result.vectors[1]      # same text, same vector
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in result.vectors)
    assert result.prompt_tokens == sum(len(t) // 4 for t in texts)
    price = PRICES_PER_MTOK["text-embedding-3-small"]
    assert result.cost_usd == pytest.approx(result.prompt_tokens * price.input / 1e6)


def test_embedding_errors_are_one_llm_error():
    from fakes.anthropic_server import openai_error_body
    failing = (401, openai_error_body("invalid_request_error", "Incorrect API key provided", "invalid_api_key"))
    with FakeOpenAIServerWithHeaders(lambda request: failing) as server:
        client = EmbeddingClient(model="m", api_key="k", base_url=server.base_url, max_retries=0)
        with pytest.raises(LLMError, match=r"openai:m: HTTP 401 from http://127\.0\.0\.1.*Incorrect API key"):
            embed(client, ["x"])


def test_connection_refused_is_an_llm_error():
    client = EmbeddingClient(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    with pytest.raises(LLMError, match="cannot reach"):
        embed(client, ["x"])


def test_make_embedding_client_specs():
    client = make_embedding_client("openai-compatible:nomic-embed@http://127.0.0.1:8000/v1", {})
    assert client.name == "openai-compatible:nomic-embed"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        make_embedding_client("openai:text-embedding-3-small", {})
    with pytest.raises(ConfigError, match="expected openai:MODEL"):
        make_embedding_client("anthropic:x", {})
