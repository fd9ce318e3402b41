"""USD prices per million tokens for common models, so spending is visible; unknown models cost 0
(a local server) unless the run config gives a price.

Both providers bill cached prompt tokens at a fraction of the input price, and Anthropic bills the
tokens it *writes* to its cache at a premium (1.25x for the 5-minute cache), so a price has four
parts. An evolutionary prompt repeats the same system message and task description thousands of
times, so the cached rates decide what a long run really costs.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

__all__ = ["Price", "PRICES_PER_MTOK", "cost_usd", "price_per_mtok", "call_cost"]


class Price(NamedTuple):
    """USD per 1M tokens. ``cached_input`` / ``cache_write`` None: billed as plain input."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return self._asdict()


# From the providers' public price pages (late 2025). OpenAI caches automatically (no write premium);
# Anthropic's 5-minute cache writes cost 1.25x input and reads 0.1x input.
PRICES_PER_MTOK: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "o1": Price(15.00, 60.00, 7.50),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
}


def _as_price(value: Price | tuple) -> Price:
    return value if isinstance(value, Price) else Price(*value)


def _lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    price = table.get(model)
    if price is None:
        # Dated model ids ("gpt-4o-2024-08-06") are priced as their family.
        matches = [k for k in table if model.startswith(k)]
        price = table[max(matches, key=len)] if matches else None
    return price


def price_per_mtok(model: str, prices: Mapping[str, Price | tuple] | None = None) -> Price | None:
    """The `Price` of ``model``, or None when neither the table nor ``prices`` knows it. A price in
    ``prices`` (the run config's) wins; its cache rates left unset are the table's, if it has the model."""
    base = _lookup(model, PRICES_PER_MTOK)
    override = _lookup(model, {k: _as_price(v) for k, v in (prices or {}).items()})
    if override is None:
        return base
    if base is not None:
        override = override._replace(
            cached_input=base.cached_input if override.cached_input is None else override.cached_input,
            cache_write=base.cache_write if override.cache_write is None else override.cache_write)
    return override


def call_cost(price: Price | None, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
              cache_write_tokens: int = 0) -> tuple[float, float]:
    """``(cost_usd, saved_usd)`` of one call. ``prompt_tokens`` counts every prompt token, cached or not;
    ``saved_usd`` is what the same call would have cost with no cache, less what it cost (negative
    when a cache write's premium was not yet paid back by reads)."""
    if price is None:
        return 0.0, 0.0
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    plain = max(prompt_tokens - cached_tokens - cache_write_tokens, 0)
    cost = (plain * price.input + cached_tokens * cached_rate + cache_write_tokens * write_rate
            + completion_tokens * price.output) / 1e6
    full = (prompt_tokens * price.input + completion_tokens * price.output) / 1e6
    return cost, full - cost


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int,
             prices: Mapping[str, Price | tuple] | None = None, *, cached_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
    return call_cost(price_per_mtok(model, prices), prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, cached_tokens=cached_tokens,
                     cache_write_tokens=cache_write_tokens)[0]
