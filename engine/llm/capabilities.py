"""What a model accepts, decided per model from a table, overridable per model in the run config.

OpenAI's reasoning models (o1, o3, o4-mini, the gpt-5 family) reject ``max_tokens`` (they take
``max_completion_tokens``, which also bounds their hidden reasoning) and any temperature but the
default, and take a ``reasoning_effort``. Anthropic caches a prompt prefix at a ``cache_control``
breakpoint only when the prefix reaches a per-model minimum size.

A model this table does not know works without a release: ``reasoning = true`` in its
``[[llm.models]]`` table says it is a reasoning model (an OpenAI-compatible server serving one),
``reasoning = false`` says it is not. Families are matched by the longest prefix of the model id,
so dated ids (``o3-2025-04-16``) follow their family.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities", "capabilities", "REASONING_EFFORTS", "DEFAULT_CACHE_MIN_TOKENS"]

REASONING_EFFORTS = ("minimal", "low", "medium", "high")

# OpenAI reasoning families; ``gpt-5-chat`` (the ChatGPT model) is not one and takes a temperature.
_REASONING_PREFIXES = {"o1": True, "o3": True, "o4": True, "gpt-5": True, "gpt-5-chat": False}

# Anthropic's minimum cacheable prefix (tokens) per family, from its prompt-caching page (late 2025).
_CACHE_MIN_TOKENS = {"claude-haiku-4-5": 4096, "claude-opus-4-5": 4096, "claude-3-5-haiku": 2048,
                     "claude-3-haiku": 2048, "claude-sonnet-4-6": 2048}
DEFAULT_CACHE_MIN_TOKENS = 1024   # Sonnet 4 / 4.5, Opus 4 / 4.1; also OpenAI's automatic cache


def _longest_prefix(model: str, table: dict):
    matches = [k for k in table if model.startswith(k)]
    return table[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class Capabilities:
    reasoning: bool = False                       # OpenAI-style reasoning model
    cache_min_tokens: int = DEFAULT_CACHE_MIN_TOKENS


def capabilities(model: str, *, reasoning: bool | None = None) -> Capabilities:
    """What ``model`` accepts; ``reasoning`` (the config's override) wins over the table."""
    if reasoning is None:
        reasoning = bool(_longest_prefix(model, _REASONING_PREFIXES))
    return Capabilities(reasoning=reasoning,
                        cache_min_tokens=_longest_prefix(model, _CACHE_MIN_TOKENS) or DEFAULT_CACHE_MIN_TOKENS)
