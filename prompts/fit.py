"""Fitting a prompt into a model's context window: shrink it before sending, never send it to fail.

Pure: a context and a render function in, the largest prompt that fits out. What goes first is what
the model misses least (OpenEvolve and ShinkaEvolve likewise cap inspirations and artifact lengths):

1. inspirations, the last (least relevant) first — then the second parent of a crossover;
2. evaluator artifacts, truncated to 2000, then 500, then 100 characters each, then dropped;
3. feedback on earlier failed edits, truncated to 200 characters, then only the latest, then none.

The parent program itself is never cut: an edit must copy its lines verbatim. If the prompt is still
too large, ``fits`` is False and the engine records the proposal as rejected without a call.

Tokens are estimated with ``tiktoken`` when it is installed (cl100k, close to every current
tokenizer), otherwise as characters / 4 — a fair average for English and code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from evoforge.prompts.render import ProgramView, PromptContext

__all__ = ["FittedPrompt", "estimate_tokens", "fit_prompt"]

_ARTIFACT_CAPS = (2000, 500, 100, 0)
_FEEDBACK_CAP = 200


def _tiktoken_counter() -> Callable[[str], int] | None:
    try:  # optional: not a dependency; loading an encoding may need a download, so fail soft
        import tiktoken
        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - any failure means "use the estimate"
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


_COUNTER: list[Callable[[str], int] | None] = []


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: tiktoken's count when available, else ceil(chars / 4)."""
    if not _COUNTER:
        _COUNTER.append(_tiktoken_counter())
    counter = _COUNTER[0]
    return counter(text) if counter is not None else math.ceil(len(text) / 4)


@dataclass(frozen=True)
class FittedPrompt:
    system: str
    user: str
    context: PromptContext        # what was actually rendered
    tokens: int                   # estimated prompt tokens (system + user)
    fits: bool
    steps: tuple[str, ...] = ()   # what was cut, for the record ("dropped inspiration 3", ...)


def _cap_artifacts(view: ProgramView, cap: int) -> ProgramView:
    if not view.artifacts:
        return view
    artifacts: Mapping[str, str] = {} if cap == 0 else {
        k: (v if len(v) <= cap else v[:cap] + f"\n… ({len(v) - cap} more characters cut to fit the context window)")
        for k, v in view.artifacts.items()}
    return dataclasses.replace(view, artifacts=artifacts)


def _shrinks(context: PromptContext) -> Iterator[tuple[PromptContext, str]]:
    """Successively smaller contexts, each with a note of what it cut."""
    ctx = context
    for i in range(len(ctx.inspirations), 0, -1):
        ctx = dataclasses.replace(ctx, inspirations=list(ctx.inspirations)[:i - 1])
        yield ctx, f"dropped inspiration {i}"
    if ctx.second_parent is not None:
        ctx = dataclasses.replace(ctx, second_parent=None)
        yield ctx, "dropped the second parent"
    if any(len(v) > _ARTIFACT_CAPS[-2] for v in ctx.parent.artifacts.values()):
        for cap in _ARTIFACT_CAPS:
            ctx = dataclasses.replace(ctx, parent=_cap_artifacts(ctx.parent, cap))
            yield ctx, f"artifacts cut to {cap} characters" if cap else "artifacts dropped"
    if ctx.feedback:
        ctx = dataclasses.replace(ctx, feedback=[f if len(f) <= _FEEDBACK_CAP else f[:_FEEDBACK_CAP] + " …"
                                                 for f in ctx.feedback])
        yield ctx, f"feedback cut to {_FEEDBACK_CAP} characters"
        if len(ctx.feedback) > 1:
            ctx = dataclasses.replace(ctx, feedback=list(ctx.feedback)[-1:])
            yield ctx, "feedback cut to the latest"
        ctx = dataclasses.replace(ctx, feedback=[])
        yield ctx, "feedback dropped"


def fit_prompt(context: PromptContext, render: Callable[[PromptContext], tuple[str, str]],
               max_prompt_tokens: int | None) -> FittedPrompt:
    """Render ``context``, shrinking it until the estimate is at most ``max_prompt_tokens`` (None: no limit)."""
    system, user = render(context)
    tokens = estimate_tokens(system) + estimate_tokens(user)
    if max_prompt_tokens is None or tokens <= max_prompt_tokens:
        return FittedPrompt(system, user, context, tokens, True)
    steps: list[str] = []
    ctx = context
    for ctx, step in _shrinks(context):
        steps.append(step)
        system, user = render(ctx)
        tokens = estimate_tokens(system) + estimate_tokens(user)
        if tokens <= max_prompt_tokens:
            return FittedPrompt(system, user, ctx, tokens, True, tuple(steps))
    return FittedPrompt(system, user, ctx, tokens, False, tuple(steps))
