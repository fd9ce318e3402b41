"""Reply scripts for the fake LLM servers, reading the prompt a run really sent."""

from __future__ import annotations

import re

__all__ = ["user_prompt", "current_program", "current_a", "raise_a", "break_b", "openai_body"]


def user_prompt(request: dict) -> str:
    """The first user turn of a chat-completions or messages request (text blocks joined)."""
    content = next(m["content"] for m in request["messages"] if m["role"] == "user")
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def current_program(request: dict) -> str:
    return re.search(r"```python\n(.*?)\n```", user_prompt(request), re.S).group(1)


def current_a(request: dict) -> float:
    return float(re.search(r"a = ([0-9.]+)", current_program(request)).group(1))


def raise_a(request: dict) -> str:
    """An edit that moves ``a`` halfway to 3 (the tiny task's target slope): it usually improves."""
    a = current_a(request)
    return (f"Move a towards 3.\n<<<<<<< SEARCH\n    a = {a}\n=======\n"
            f"    a = {round(a + (3 - a) / 2, 6)}\n>>>>>>> REPLACE\n")


def break_b(request: dict) -> str:
    """An edit that applies but makes the program crash when evaluated."""
    return "<<<<<<< SEARCH\n    b = 0.25\n=======\n    b = 1 / 0\n>>>>>>> REPLACE\n"


def openai_body(request: dict, content: str | None, finish_reason: str = "stop",
                usage: tuple[int, int] | None = None) -> tuple[int, dict]:
    """A raw chat-completions answer (for finish_reason ``length`` and the like)."""
    prompt_tokens, completion_tokens = usage or (100, len(content or "") // 4)
    return 200, {"id": "c", "object": "chat.completion", "created": 0, "model": request.get("model", "m"),
                 "choices": [{"index": 0, "finish_reason": finish_reason,
                              "message": {"role": "assistant", "content": content}}],
                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens}}
