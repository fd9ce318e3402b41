"""The LLM seam: one method, `generate(prompt) -> Reply`, shared by real clients and the offline operator.

httpx style: each client translates its SDK's exceptions into `LLMError` at this boundary, and tests
exercise the real SDKs against fake servers on 127.0.0.1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from evoforge.prompts.sanitize import code_safe

__all__ = ["LLMClient", "Prompt", "Reply"]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt plus the structured parts it was rendered from.

    ``seed`` is drawn per proposal by the engine, so a stochastic operator (the offline mutator,
    an ensemble's choice of model) gives the same answer for the same proposal whatever the timing.
    ``history`` continues the conversation after ``user`` as ``(role, text)`` turns, role
    ``assistant`` or ``user`` — how a failed edit goes back to the model with its error.

    Prompt caching: ``system`` is the stable prefix (role, rules, task description: the same in every
    prompt of a run), so both providers can serve it from their cache; everything that varies is in
    ``user``, most stable first. ``iteration`` names the proposal (a replay looks its reply up by it).
    """

    system: str
    user: str
    parent_code: str
    inspirations: tuple[str, ...] = ()
    seed: int = 0
    history: tuple[tuple[str, str], ...] = ()
    iteration: int | None = None
    language: str = "python"    # the program's language (evoforge.engine.languages): the offline operator reads it
    # The call's number within its iteration, set by the engine (a resample, the novelty judge and a lessons
    # call share their iteration's number), so ``(iteration, attempt)`` names one call; None: from history.
    call_index: int | None = None

    @property
    def attempt(self) -> int:
        """0 for the first call of a proposal, 1 for the retry of a failed edit, then a resample, a judge's
        call, ... in the order the iteration made them (``call_index``)."""
        return self.call_index if self.call_index is not None else len(self.history) // 2

    def messages(self) -> list[dict[str, str]]:
        """The user turn and any history, in chat-message form (the system text goes separately)."""
        return [{"role": "user", "content": self.user}] + [{"role": r, "content": t} for r, t in self.history]

    def stored(self) -> dict:
        """What run.db keeps of this prompt (`evoforge.archive.store.Store.add_llm_call` keywords)."""
        return {"system": self.system, "messages": self.messages(), "seed": self.seed, "attempt": self.attempt}


@dataclass(frozen=True)
class Reply:
    """A model's answer. ``text`` is what the edit parser sees; ``thinking`` (Anthropic thinking
    blocks, an OpenAI-compatible server's ``reasoning_content``) is stored, never parsed.

    Tokens: ``prompt_tokens`` counts every prompt token, of which ``cached_tokens`` were read from
    the provider's cache and ``cache_write_tokens`` written to it; ``completion_tokens`` includes
    ``reasoning_tokens``. ``saved_usd``: what caching saved on this call against full price.
    """

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    truncated: bool = False     # the model stopped at max_tokens (finish_reason length / max_tokens)
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    thinking: str = ""
    saved_usd: float = 0.0

    def stored(self) -> dict:
        """What run.db keeps of this reply (`evoforge.archive.store.Store.add_llm_call` keywords)."""
        return {"model": self.model, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd, "latency_s": self.latency_s, "reply": self.text,
                "thinking": self.thinking, "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens, "reasoning_tokens": self.reasoning_tokens,
                "saved_usd": self.saved_usd, "truncated": self.truncated}

    def __post_init__(self) -> None:
        # A reply is untrusted text too, and JSON can carry a lone surrogate ("\udcff", e.g. copied
        # from an escaped error in the prompt) that nothing downstream can encode: ast.parse, SQLite and
        # the next request all raise, and the run crashed. Escaped once, here (prompts.sanitize).
        for name in ("text", "thinking"):  # both are stored (SQLite) and may be sent back
            value = getattr(self, name)
            object.__setattr__(self, name, code_safe(value) if isinstance(value, str) else value)


class LLMClient(ABC):
    """A source of edits. ``name`` is what the run records as the model (e.g. ``openai:gpt-4o``).

    ``context_tokens`` is the model's context window (None: unbounded, the offline operator) and
    ``max_tokens`` the completion it may write, so the engine can shrink a prompt that would not fit.
    ``conversational`` clients can be sent a failed edit back with its error.
    """

    name: str = "llm"
    context_tokens: int | None = None
    max_tokens: int = 0
    conversational: bool = True

    def pick(self, seed: int) -> "LLMClient":
        """The client that answers the proposal with this seed (an ensemble chooses; others are it)."""
        return self

    def observe(self, model: str, *, improved: bool, cost_usd: float, replay: bool = False) -> None:
        """Learn from the outcome of a proposal by ``model`` (an adaptive ensemble does; others ignore it).

        ``replay``: an outcome read back from run.db on resume, not one of this process's choices.
        """
        return None

    @abstractmethod
    async def generate(self, prompt: Prompt) -> Reply:
        """Return the model's reply; raise `LLMError` when the call cannot succeed."""

    async def close(self) -> None:  # pragma: no cover - default: nothing to release
        return None
