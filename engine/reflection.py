"""The model's second opinions on the search: the novelty judge and written lessons (pure; no I/O).

Both follow ShinkaEvolve (Lange et al. 2025): when the embedding says a proposed child is nearly a program
already in its island, an LLM may be asked whether the change is meaningfully new anyway (its *novelty
judge*), and every few children a model may turn the computed tallies of `evoforge.engine.lessons` and the
most recent changes into a few written lessons (its *meta-recommendations*). The engine's driver makes the
calls (`evoforge.engine.loop`); this module decides who is asked, reads the replies, and derives seeds.

Who is asked: only a model that reads its prompt. The offline operator mutates the parent's text and never
reads a prompt, so it can neither judge nor write; a run whose models are all offline keeps the judge off and
its lessons computed, and `notices` says so once when task.toml asked for more. The rule is read from the
run's model specs (provider ``offline`` or not), not from the client objects, so a replay of a run (whose
clients stand in for the originals) decides exactly as the original did.

``[search] lessons = "auto"`` (the default) means "llm" when the run has a real model and "computed" otherwise: a real
model reads the lessons it is shown, and one more short call every ``lessons_every`` children is small next
to the proposals; the offline operator reads nothing, and computed lessons keep its runs exactly repeatable.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import numpy as np

from evoforge.prompts.sanitize import one_line

__all__ = ["LESSON_MODES", "MAX_LESSONS", "MAX_LESSON_CHARS", "has_real_model", "lessons_mode", "judge_enabled",
           "notices", "read_verdict", "read_lessons", "derived_seed"]

LESSON_MODES = ("auto", "computed", "llm")
MAX_LESSONS = 6            # written lessons kept from one reply
MAX_LESSON_CHARS = 240     # per lesson line, after sanitising
_JUDGE_STREAM = 0x7D6E     # seeds of judge and lessons calls: their own streams, nothing else shifts
_LESSONS_STREAM = 0x1E55
_RESAMPLE_STREAM = 0x2E5A
_VERDICT = re.compile(r"^(?P<not>NOT[\s_-]*)?NOVEL\b")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+(?P<text>\S.*)$")
_BACKTICKS = re.compile(r"`{2,}")


def has_real_model(specs: Iterable[Any]) -> bool:
    """Whether any of the run's models (spec strings, stored dicts or `LLMSpec`) reads its prompt."""
    from evoforge.engine.llm import as_spec   # here: engine.task imports this module for LESSON_MODES alone

    return any(as_spec(s).provider != "offline" for s in specs)


def lessons_mode(setting: str | None, specs: Iterable[Any]) -> str:
    """``[search] lessons`` ("auto" | "computed" | "llm"; None: "auto") resolved for this run: "llm" only
    with a real model to write them."""
    real = has_real_model(specs)
    if setting in (None, "auto"):
        return "llm" if real else "computed"
    return setting if real else "computed"


def judge_enabled(setting: bool, specs: Iterable[Any]) -> bool:
    return bool(setting) and has_real_model(specs)


def notices(*, novelty_judge: bool, novelty_threshold: float, lessons: str | None, lessons_every: int,
            specs: Sequence[Any]) -> list[str]:
    """One line for each [search] setting that this run's models cannot honour (``evoforge run`` prints them)."""
    if has_real_model(specs):
        return []
    out = []
    if novelty_judge and novelty_threshold > 0:
        out.append("[search] novelty_judge is off: the offline operator cannot judge novelty (it reads no prompt), "
                   "so a too-similar child is resampled without asking")
    if lessons == "llm" and lessons_every > 0:
        out.append("[search] lessons = \"llm\" falls back to computed lessons: the offline operator writes none")
    return out


def read_verdict(reply: str) -> tuple[bool | None, str]:
    """The judge's answer: (True: NOVEL, False: NOT NOVEL, None: neither) and its one-line reason.

    The first non-empty line must start with the verdict (markdown emphasis and quotes are ignored);
    the reason is the rest of that line or the next non-empty line.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    if not lines:
        return None, ""
    first = re.sub(r"^[\s*_#>`'\"]+", "", lines[0])
    match = _VERDICT.match(first.upper())    # the verdict is ASCII: its span is the same in ``first``
    if match is None:
        return None, one_line(lines[0], max_chars=160)
    rest = re.sub(r"^[\s*_`'\".:;,\-\u2013\u2014]+", "", first[match.end():])
    reason = rest or (lines[1] if len(lines) > 1 else "")
    return match["not"] is None, one_line(reason, max_chars=200)


def read_lessons(reply: str) -> tuple[str, ...]:
    """The bullet lines of a lessons reply, sanitised (one clean line each, no code fences, capped),
    at most `MAX_LESSONS`; () when there are none (the computed lines then stay)."""
    out: list[str] = []
    for line in reply.splitlines():
        match = _BULLET.match(line)
        if match is None:
            continue
        text = one_line(_BACKTICKS.sub("`", match["text"]), max_chars=MAX_LESSON_CHARS).strip()
        if text:
            out.append(text)
        if len(out) == MAX_LESSONS:
            break
    return tuple(out)


def derived_seed(seed: int, stream: str, *numbers: int) -> int:
    """A call's seed derived from its proposal's seed (or the run's) and a number: the resample of attempt
    k, the judge of an attempt, the lessons of refresh n — deterministic and apart from every other stream."""
    key = {"resample": _RESAMPLE_STREAM, "judge": _JUDGE_STREAM, "lessons": _LESSONS_STREAM}[stream]
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), key, *[int(n) for n in numbers]])
    return int(rng.integers(0, 2**62))
