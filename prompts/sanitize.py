"""Text a candidate controls, made safe to show: pure functions, no I/O.

A candidate writes its own stderr, exception messages, artifacts and (through its evaluator) metric
names. The store keeps that text exactly as it came (the record is evidence); every place the text
*leaves* the engine passes it through here first:

- prompts (``render.py`` here): a lone surrogate such as ``chr(0xDCFF)`` cannot be encoded as UTF-8,
  so an SDK serialising the request raises, and a run (and each resume of it) crashed on it;
- JSON (``events.jsonl``, ``evoforge show --json``, ``evoforge eval --json``): lone surrogates make
  invalid UTF-8 and ``NaN``/``Infinity`` are not JSON at all;
- the HTML report: NUL and C0 controls are parse errors in HTML, and a surrogate fails the write;
- the terminal: an ESC starts a control sequence that can rewrite the screen, the title or the
  clipboard (OSC 52), so no candidate byte reaches a terminal raw.

What `clean` does, and why each:

- a lone surrogate (U+D800..U+DFFF, only possible unpaired in a Python str) becomes ``\\udcff``;
- C0 controls other than tab and newline, DEL and C1 controls (U+0080..U+009F, 8-bit CSI among them)
  become ``\\x1b``-style escapes; ``\\r\\n`` and a lone ``\\r`` become ``\\n`` (progress bars print ``\\r``);
- Unicode bidirectional overrides and isolates and the line/paragraph separators become ``\\u202e``-
  style escapes: they reorder or break what a reader sees ("Trojan Source", Boucher & Anderson 2021);
- with ``max_chars``, the text is clipped to its head and tail with a note of what was cut (an error's
  message is at its end, a failing case usually at its start).

Everything else, including any printable Unicode, stays as it is: the goal is text that cannot act,
not text that is ASCII.

It lives in ``prompts`` because prompts are its first user and import nothing of ours; the engine (CLI,
report, progress line, ``events.jsonl``, the LLM seam) imports it from here.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["clean", "one_line", "clip", "json_safe", "code_safe"]

# Characters that are never shown raw. Built as a class of code points so one regex pass does it.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"      # C0 (less \t \n \r), DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"                              # line and paragraph separators
    "\ud800-\udfff]")                           # surrogates: in a str, only ever unpaired
_SURROGATE = re.compile("[\ud800-\udfff]")
_NEWLINES = re.compile("\r\n?")
_LINE_BREAKS = re.compile("[\n\t]+")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to about ``max_chars``: its head and tail around a note of what was cut."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    note = f"\n… ({len(text) - max_chars} characters cut) …\n"
    head = max_chars // 2
    tail = max_chars - head
    return text[:head] + note + text[len(text) - tail:]


def clean(text: Any, *, max_chars: int | None = None) -> str:
    """``text`` (anything; ``str()`` of it) safe to print, embed in HTML/JSON or send to an LLM API;
    newlines and tabs are kept; clipped to ``max_chars`` (head and tail) when given."""
    text = text if isinstance(text, str) else str(text)
    if max_chars is not None:
        text = clip(text, max_chars)
    return _UNSAFE.sub(_escape, _NEWLINES.sub("\n", text))


def one_line(text: Any, *, max_chars: int = 300) -> str:
    """``clean`` on one line (newlines and tabs become single spaces), for a label, a metric name,
    a progress line or an error message."""
    flat = _LINE_BREAKS.sub(" ", clean(text)).strip()
    return flat if len(flat) <= max_chars else flat[: max(max_chars - 1, 0)] + "…"


def code_safe(code: str) -> str:
    """Program text for a prompt: only what no API can carry (lone surrogates) is escaped, because an
    edit must copy the program's lines verbatim; a program's text comes from the LLM, not a candidate."""
    return _SURROGATE.sub(_escape, code)


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, strings, numbers, None) with every string — keys too — cleaned
    and every non-finite float made ``None``, so ``json.dumps(..., allow_nan=False)`` writes strict,
    valid UTF-8 JSON that a reader can print safely."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
