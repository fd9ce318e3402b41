"""The languages a task's program may be written in: how its EVOLVE-BLOCK markers are commented, which
fence tags a full rewrite may carry, and whether the engine can check its syntax itself.

A program's language comes from its file's suffix (``kernel.c`` is C), or from ``language = "..."`` in
``task.toml`` when the suffix says nothing. The markers are the language's line comment followed by
``EVOLVE-BLOCK-START`` / ``EVOLVE-BLOCK-END`` (``// EVOLVE-BLOCK-START`` in C, ``-- EVOLVE-BLOCK-START`` in
Lua); a block comment ``/* EVOLVE-BLOCK-START */`` works in the C family too.

Only Python is parsed by the engine before evaluation (``ast.parse``): for every other language the
syntax check is the task's compile stage (``[compile]`` in ``task.toml``), which runs inside the sandbox
and whose errors go back to the LLM. Pure data; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

__all__ = ["Language", "LANGUAGES", "PYTHON", "language_named", "language_of_file", "MARKER_LINE"]


@dataclass(frozen=True)
class Language:
    """One language: its name, line comment, file suffixes and the tags a fenced code block may carry."""

    name: str
    comment: str
    suffixes: tuple[str, ...]
    fences: tuple[str, ...]

    @property
    def is_python(self) -> bool:
        return self.name == "python"

    @property
    def fence(self) -> str:
        """The tag the prompts put on a fenced block of this language (```c)."""
        return self.fences[0]

    def marker(self, which: str) -> str:
        """``# EVOLVE-BLOCK-START`` in this language's comment syntax; ``which`` is ``START`` or ``END``."""
        return f"{self.comment} EVOLVE-BLOCK-{which}"


def _languages(rows: Iterable[tuple[str, str, str, str]]) -> dict[str, Language]:
    return {name: Language(name, comment, tuple(suffixes.split()), tuple(fences.split()))
            for name, comment, suffixes, fences in rows}


LANGUAGES: dict[str, Language] = _languages([
    ("python", "#", ".py", "python py"),
    ("c", "//", ".c .h", "c h"),
    ("cpp", "//", ".cc .cpp .cxx .hpp .hh", "cpp c++ cc cxx"),
    ("cuda", "//", ".cu .cuh", "cuda cu"),
    ("rust", "//", ".rs", "rust rs"),
    ("go", "//", ".go", "go golang"),
    ("javascript", "//", ".js .mjs", "javascript js"),
    ("java", "//", ".java", "java"),
    ("r", "#", ".r .R", "r R"),
    ("julia", "#", ".jl", "julia jl"),
    ("shell", "#", ".sh .bash", "sh bash shell"),
    ("lua", "--", ".lua", "lua"),
    ("sql", "--", ".sql", "sql"),
    ("haskell", "--", ".hs", "haskell hs"),
])
PYTHON = LANGUAGES["python"]

# A marker line in any of the comment syntaxes above (and C's block comment): the engine finds blocks
# without being told the language, so a helper that only has the text (the offline operator, a notebook)
# sees the same blocks as the task loader.
MARKER_LINE = re.compile(
    r"^[ \t]*(?:#|//|--|/\*)[ \t]*EVOLVE-BLOCK-(?P<which>START|END)[ \t]*(?:\*/)?[ \t]*\r?$", re.MULTILINE)


def language_named(name: str, where: str = "language") -> Language:
    """The language called ``name``; ValueError naming the known ones otherwise."""
    try:
        return LANGUAGES[name.lower()]
    except KeyError:
        raise ValueError(f"{where}: unknown language {name!r} (known: {', '.join(LANGUAGES)})") from None


def language_of_file(filename: str) -> Language | None:
    """The language a file name's suffix says, or None for a suffix no language claims."""
    suffix = "." + filename.rsplit(".", 1)[-1] if "." in filename else ""
    for language in LANGUAGES.values():
        if suffix in language.suffixes:
            return language
    return None
