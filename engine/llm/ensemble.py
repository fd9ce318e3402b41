"""Several models behind one `LLMClient`: a weighted draw per proposal, or an adaptive bandit.

``weighted``: each proposal's model is drawn with probability proportional to its weight, from the
proposal's seed — reproducible whatever the timing (AlphaEvolve mixes a fast and a strong model
this way, Novikov et al. 2025 §2.3). ``bandit``: UCB1 over the models, learning which one yields
improvements per dollar (`evoforge.engine.llm.bandit`, after ShinkaEvolve); the engine reports each outcome
through `observe`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evoforge.engine.llm.bandit import ModelBandit
from evoforge.engine.llm.base import LLMClient, Prompt, Reply

__all__ = ["Ensemble"]


class Ensemble(LLMClient):
    def __init__(self, clients: Sequence[LLMClient], weights: Sequence[float], *, mode: str = "weighted",
                 exploration: float = 1.0) -> None:
        if len(clients) != len(weights) or not clients:
            raise ValueError(f"expected one weight per client but got {len(clients)} clients, {len(weights)} weights")
        if mode not in ("weighted", "bandit"):
            raise ValueError(f"expected mode 'weighted' or 'bandit' but got {mode!r}")
        self.clients = list(clients)
        total = float(sum(weights))
        self.probabilities = np.asarray(weights, dtype=float) / total
        self.name = "+".join(c.name for c in clients)
        self.mode = mode
        self.bandit = ModelBandit([c.name for c in clients], exploration=exploration) if mode == "bandit" else None
        # The strictest member bounds prompts rendered before the choice (e.g. `evoforge run --dry-run`).
        windows = [c.context_tokens for c in clients if c.context_tokens]
        self.context_tokens = min(windows) if windows else None
        self.max_tokens = max(c.max_tokens for c in clients)

    def pick(self, seed: int) -> LLMClient:
        if self.bandit is not None:
            return self.clients[self.bandit.choose(seed)]
        return self.choose(seed)

    def choose(self, seed: int) -> LLMClient:
        """The weighted draw for ``seed`` (independent of any state)."""
        rng = np.random.default_rng([seed & ((1 << 63) - 1), 0x11])
        return self.clients[int(rng.choice(len(self.clients), p=self.probabilities))]

    def observe(self, model: str, *, improved: bool, cost_usd: float, replay: bool = False) -> None:
        if self.bandit is not None:
            self.bandit.update(model, improved=improved, cost_usd=cost_usd, pending=not replay)

    async def generate(self, prompt: Prompt) -> Reply:
        return await self.pick(prompt.seed).generate(prompt)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
