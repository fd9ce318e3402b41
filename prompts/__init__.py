"""Prompt templates (``*.j2``) and the pure function that renders them."""

from evoforge.prompts.fit import FittedPrompt, estimate_tokens, fit_prompt
from evoforge.prompts.render import TEMPLATES_DIR, ProgramView, PromptContext, render_prompt, render_retry

__all__ = ["ProgramView", "PromptContext", "render_prompt", "render_retry", "fit_prompt", "FittedPrompt",
           "estimate_tokens", "TEMPLATES_DIR"]
