"""Prompt templates (``*.j2``), the pure function that renders them, and `sanitize` for candidate text.

Names load on first use (PEP 562): the CLI's ``eval`` and ``show`` need `evoforge.prompts.sanitize`
but not Jinja2, which only rendering imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evoforge.prompts.fit import FittedPrompt, estimate_tokens, fit_prompt
    from evoforge.prompts.render import (TEMPLATES_DIR, ProgramView, PromptContext, render_lessons,
                                         render_novelty_judge, render_prompt, render_retry)

__all__ = ["ProgramView", "PromptContext", "render_prompt", "render_retry", "render_novelty_judge", "render_lessons",
           "fit_prompt", "FittedPrompt",
           "estimate_tokens", "TEMPLATES_DIR"]

_EXPORTS = {name: "evoforge.prompts.render" for name in
            ("ProgramView", "PromptContext", "render_prompt", "render_retry", "render_novelty_judge",
             "render_lessons", "TEMPLATES_DIR")}
_EXPORTS.update({name: "evoforge.prompts.fit" for name in ("fit_prompt", "FittedPrompt", "estimate_tokens")})


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evoforge.prompts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
