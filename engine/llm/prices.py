"""USD prices per million tokens for common models, so spending is visible; unknown models cost 0
(a local server) unless the run config gives a price."""

from __future__ import annotations

__all__ = ["PRICES_PER_MTOK", "cost_usd", "price_per_mtok"]

# (input, output) USD per 1M tokens, from the providers' public price pages (late 2025).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-haiku-4-5": (1.00, 5.00),
}


def price_per_mtok(model: str, prices: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens of ``model``, or None when neither the table nor ``prices`` knows it."""
    table = PRICES_PER_MTOK if prices is None else {**PRICES_PER_MTOK, **prices}
    price = table.get(model)
    if price is None:
        # Dated model ids ("gpt-4o-2024-08-06") are priced as their family.
        matches = [k for k in table if model.startswith(k)]
        price = table[max(matches, key=len)] if matches else None
    return price


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int,
             prices: dict[str, tuple[float, float]] | None = None) -> float:
    price = price_per_mtok(model, prices) or (0.0, 0.0)
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
