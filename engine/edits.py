"""Edits: turning an LLM reply into a child program.

Two reply formats, as in AlphaEvolve (Novikov et al. 2025, §2.3):

* diff edits — one or more blocks ::

      <<<<<<< SEARCH
      lines copied exactly from the current program
      =======
      the lines that replace them
      >>>>>>> REPLACE

  applied in order, each to the first match inside an EVOLVE-BLOCK;
* a full rewrite — a fenced ```python block holding either the whole program (markers included)
  or, when the program has a single EVOLVE-BLOCK, just that block's new content.

Only the regions between ``# EVOLVE-BLOCK-START`` and ``# EVOLVE-BLOCK-END`` may change; an edit
that does not apply, touches frozen code or yields code that does not parse is *rejected* with a
reason that goes back to the LLM. Everything here is pure: text in, `EditResult` out.

Other languages (`evoforge.engine.languages`): the markers may be written in any line-comment syntax
(``// EVOLVE-BLOCK-START`` in C, ``-- EVOLVE-BLOCK-START`` in Lua), a rewrite's fence carries the
language's tag (```c), and only Python is parsed here: ``language="c"`` skips the parse check, since the
task's compile stage, inside the sandbox, is that language's syntax check.

Several files (`evoforge.evaluators.bundle`): a program of several files is one text with a header line
per file. An edit names its file on the line before ``<<<<<<< SEARCH`` (or before a rewrite's fence) and
then matches only in that file; each Python file of the child must parse.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass

from evoforge.engine.languages import MARKER_LINE, PYTHON, language_named, language_of_file
from evoforge.evaluators.bundle import is_bundle, section_of, split_bundle

__all__ = [
    "START_MARKER", "END_MARKER", "EditResult", "SearchReplace", "apply_reply", "code_hash",
    "evolve_blocks", "evolvable_text", "has_markers", "normalize_code", "parse_search_replace", "format_search_replace",
]

START_MARKER = "# EVOLVE-BLOCK-START"
END_MARKER = "# EVOLVE-BLOCK-END"

_SEARCH_REPLACE = re.compile(
    r"^<{7}\s*SEARCH[ \t]*\n(?P<search>.*?)^={7}[ \t]*\n(?P<replace>.*?)^>{7}\s*REPLACE[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# A file path alone on its line (``scoring.py``, ``src/kernel.c``, optionally in backticks): names the file
# of the SEARCH block or fenced rewrite right below it, in a program of several files.
_PATH_LINE = re.compile(r"(?:^|\n)[ \t]*`?(?P<path>[\w.\-]+(?:/[\w.\-]+)*\.\w+)`?:?[ \t]*\n?$")
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_FENCES: dict[str, re.Pattern[str]] = {"python": _FENCE}


def _fence(language: str) -> re.Pattern[str]:
    """A fenced block tagged as ``language`` (any of its tags) or not tagged at all."""
    if language not in _FENCES:
        tags = "|".join(re.escape(t) for t in language_named(language).fences)
        _FENCES[language] = re.compile(rf"```[ \t]*(?:{tags})?[ \t]*\n(?P<code>.*?)^```",
                                       re.MULTILINE | re.DOTALL)
    return _FENCES[language]


def has_markers(text: str) -> bool:
    """Whether ``text`` holds an EVOLVE-BLOCK marker line, in any comment syntax."""
    return MARKER_LINE.search(text) is not None


@dataclass(frozen=True)
class SearchReplace:
    search: str
    replace: str
    path: str = ""      # the file it edits, in a program of several files ("" = the first match anywhere)


@dataclass(frozen=True)
class EditResult:
    """Outcome of applying a reply: ``code`` is the child when ``ok``, ``reason`` says why not."""

    ok: bool
    code: str | None = None
    reason: str = ""
    kind: str = "diff"   # "diff" | "rewrite" | "none"
    n_edits: int = 0


def evolve_blocks(program: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the evolvable regions (the lines between the markers).

    No markers at all means the whole file evolves. Unbalanced markers raise ValueError (a broken
    task, not a broken candidate).
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    start: int | None = None
    for line in program.splitlines(keepends=True):
        marker = MARKER_LINE.match(line.rstrip("\n"))
        which = marker["which"] if marker else ""
        if which == "START":
            if start is not None:
                raise ValueError("expected # EVOLVE-BLOCK-END before another # EVOLVE-BLOCK-START")
            start = pos + len(line)
        elif which == "END":
            if start is None:
                raise ValueError("expected # EVOLVE-BLOCK-START before # EVOLVE-BLOCK-END")
            spans.append((start, pos))
            start = None
        pos += len(line)
    if start is not None:
        raise ValueError("expected # EVOLVE-BLOCK-END after # EVOLVE-BLOCK-START")
    if not spans and not has_markers(program):
        spans.append((0, len(program)))
    return spans


def evolvable_text(program: str) -> list[str]:
    """The text of each evolvable region."""
    return [program[a:b] for a, b in evolve_blocks(program)]


def _path_before(reply: str, at: int) -> str:
    """The file path on the line right before position ``at`` of the reply, or ""."""
    match = _PATH_LINE.search(reply[max(0, at - 300):at])
    return match["path"] if match else ""


def parse_search_replace(reply: str) -> list[SearchReplace]:
    return [SearchReplace(m["search"], m["replace"], _path_before(reply, m.start()))
            for m in _SEARCH_REPLACE.finditer(reply)]


def format_search_replace(edits: list[SearchReplace]) -> str:
    """The inverse of `parse_search_replace` (used by the offline operator and the fakes)."""
    parts = []
    for edit in edits:
        search = edit.search if edit.search.endswith("\n") else edit.search + "\n"
        replace = edit.replace if not edit.replace or edit.replace.endswith("\n") else edit.replace + "\n"
        named = f"{edit.path}\n" if edit.path else ""
        parts.append(f"{named}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    return "\n".join(parts)


def _within(spans: list[tuple[int, int]], window: tuple[int, int] | None) -> list[tuple[int, int]]:
    return spans if window is None else [(a, b) for a, b in spans if window[0] <= a and b <= window[1]]


def _find_in_blocks(program: str, search: str,
                    window: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """First occurrence of ``search`` lying wholly inside one evolvable region (of ``window``, if given)."""
    for a, b in _within(evolve_blocks(program), window):
        at = program.find(search, a, b)
        if at != -1 and at + len(search) <= b:
            return at, at + len(search)
    return None


def _loose_find(program: str, search: str, window: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Match ignoring trailing white space on each line — LLMs often drop or add it."""
    want = [line.rstrip() for line in search.rstrip("\n").split("\n")]
    for a, b in _within(evolve_blocks(program), window):
        region = program[a:b]
        lines = region.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))
        for i in range(len(lines) - len(want) + 1):
            if all(lines[i + j].rstrip() == want[j] for j in range(len(want))):
                return a + offsets[i], a + offsets[i + len(want)]
    return None


def _check_parses(code: str, language: str = "python") -> str:
    if is_bundle(code):   # several files: each Python file must parse
        for path, content in split_bundle(code):
            found = language_of_file(path)
            if found is not None and found.is_python:
                reason = _check_parses(content)
                if reason:
                    return f"{path}: {reason}"
        return ""
    if language != PYTHON.name:   # no parser here: the task's compile stage checks it in the sandbox
        return ""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"the edited program does not parse: line {exc.lineno}: {exc.msg}"
    return ""


def _apply_diff(program: str, edits: list[SearchReplace], language: str = "python") -> EditResult:
    code = program
    for number, edit in enumerate(edits, start=1):
        if not edit.search.strip():
            return EditResult(False, reason=f"edit {number}: the SEARCH section is empty")
        if has_markers(edit.replace) or START_MARKER in edit.replace or END_MARKER in edit.replace:
            return EditResult(False, reason=f"edit {number}: REPLACE must not contain EVOLVE-BLOCK markers")
        window = None
        if edit.path and is_bundle(code):
            window = section_of(code, edit.path)
            if window is None:
                files = ", ".join(p for p, _ in split_bundle(code))
                return EditResult(False, reason=f"edit {number}: the program has no file {edit.path!r} "
                                                f"(its files: {files})")
        span = _find_in_blocks(code, edit.search, window) or _loose_find(code, edit.search, window)
        if span is None:
            where = "frozen code outside the EVOLVE-BLOCKs" if edit.search in code else "nothing in the program"
            first = edit.search.strip().splitlines()[0][:80]
            return EditResult(False, reason=f"edit {number}: SEARCH matched {where} (first line: {first!r})")
        replace = edit.replace
        if replace and not replace.endswith("\n") and code[span[0]:span[1]].endswith("\n"):
            replace += "\n"
        code = code[:span[0]] + replace + code[span[1]:]
    reason = _check_parses(code, language)
    if reason:
        return EditResult(False, reason=reason, n_edits=len(edits))
    return EditResult(True, code=code, kind="diff", n_edits=len(edits))


def _frozen_parts(program: str) -> list[str]:
    spans = evolve_blocks(program)
    parts, pos = [], 0
    for a, b in spans:
        parts.append(program[pos:a])
        pos = b
    parts.append(program[pos:])
    return [p.strip() for p in parts]


def _apply_rewrite(program: str, rewrite: str, language: str = "python") -> EditResult:
    spans = evolve_blocks(program)
    marked = has_markers(program)
    if has_markers(rewrite) or not marked:
        code = rewrite
        if marked:
            try:
                same = _frozen_parts(code) == _frozen_parts(program)
            except ValueError as exc:
                return EditResult(False, reason=f"the rewrite has broken EVOLVE-BLOCK markers: {exc}", kind="rewrite")
            if not same:
                return EditResult(False, reason="the rewrite changes frozen code outside the EVOLVE-BLOCKs",
                                  kind="rewrite")
    elif len(spans) == 1:
        a, b = spans[0]
        body = rewrite if rewrite.endswith("\n") else rewrite + "\n"
        code = program[:a] + body + program[b:]
    else:
        return EditResult(False, kind="rewrite", reason=(
            "the program has several EVOLVE-BLOCKs: a full rewrite must be the whole program, markers included"))
    reason = _check_parses(code, language)
    if reason:
        return EditResult(False, reason=reason, kind="rewrite")
    return EditResult(True, code=code, kind="rewrite", n_edits=1)


def apply_reply(program: str, reply: str, *, language: str = "python") -> EditResult:
    """Apply an LLM reply to ``program``: SEARCH/REPLACE blocks if any, else a fenced full rewrite.

    ``language`` (a name in `evoforge.engine.languages.LANGUAGES`) picks the fence tags a rewrite may carry
    and whether the child must parse as Python.
    """
    edits = parse_search_replace(reply)
    if edits:
        return _apply_diff(program, edits, language)
    if is_bundle(program):
        matches = list(_ANY_FENCE.finditer(reply))
        if matches:
            return _apply_bundle_rewrites(program, reply, matches)
    fences = [m["code"] for m in _fence(language).finditer(reply)]
    if fences:
        return _apply_rewrite(program, max(fences, key=len), language)
    if "<<<<<<< SEARCH" in reply:
        return EditResult(False, kind="none", reason=(
            "a SEARCH block is malformed: expected '<<<<<<< SEARCH', '=======' and '>>>>>>> REPLACE' "
            "each on a line of its own"))
    tag = language_named(language).fence
    return EditResult(False, kind="none", reason=f"the reply holds no SEARCH/REPLACE block and no ```{tag} block")


_ANY_FENCE = re.compile(r"```[ \t]*[\w+#-]*[ \t]*\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)


def _apply_bundle_rewrites(program: str, reply: str, matches: list[re.Match[str]]) -> EditResult:
    """Rewrites of files of a bundle: each fenced block names its file on the line above it."""
    code = program
    for match in matches:
        path = _path_before(reply, match.start())
        window = section_of(code, path) if path else None
        if window is None:
            files = ", ".join(p for p, _ in split_bundle(code))
            return EditResult(False, kind="rewrite", reason=(
                f"a full rewrite in a program of several files must name its file on the line before the "
                f"fenced block ({'no file ' + repr(path) if path else 'no file named'}; its files: {files})"))
        if not has_markers(code[window[0]:window[1]]):
            return EditResult(False, kind="rewrite", reason=f"{path} is frozen: it has no EVOLVE-BLOCK")
        found = language_of_file(path)
        result = _apply_rewrite(code[window[0]:window[1]], match["code"], found.name if found else "python")
        if not result.ok or result.code is None:
            return EditResult(False, kind="rewrite", reason=f"{path}: {result.reason}")
        body = result.code if result.code.endswith("\n") else result.code + "\n"
        code = code[:window[0]] + body + code[window[1]:]
    reason = _check_parses(code)
    if reason:
        return EditResult(False, reason=reason, kind="rewrite")
    return EditResult(True, code=code, kind="rewrite", n_edits=len(matches))


def normalize_code(code: str) -> str:
    """Code with comments, blank lines and formatting removed, so trivially different programs hash alike."""
    try:
        return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def code_hash(code: str) -> str:
    """Exact-duplicate key: SHA-256 of the normalised code."""
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()
