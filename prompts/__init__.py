"""Prompt templates (``*.j2``) and the pure function that renders them."""

from prompts.render import TEMPLATES_DIR, ProgramView, PromptContext, render_prompt

__all__ = ["ProgramView", "PromptContext", "render_prompt", "TEMPLATES_DIR"]
