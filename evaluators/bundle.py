"""A program of several files, as one text: the form the engine edits, stores and sends to the sandbox.

A task whose ``initial_program`` is a folder evolves every file in it: the files with EVOLVE-BLOCKs change
only inside their blocks, the files without are frozen. The engine keeps such a program as a *bundle*,
the files in path order, each after a header line of its own::

    === FILE: main.py ===
    ...main.py...
    === FILE: scoring.py ===
    ...scoring.py...

so everything that handles one program text (edits, the store, duplicate hashing, diffs, prompts)
handles several files unchanged, and every version of every file is stored. The header lines lie outside
every EVOLVE-BLOCK, so an edit can never rename, add or drop a file. The sandbox materialises a bundle as
a folder (`materialise`) and the evaluator gets that folder's path. Standard library only: this module
runs inside the sandbox.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

__all__ = ["HEADER", "is_bundle", "split_bundle", "join_bundle", "materialise", "check_path", "section_of"]

HEADER = "=== FILE: {path} ==="
_HEADER_LINE = re.compile(r"^=== FILE: (?P<path>[^\n]+?) ===[ \t]*$", re.MULTILINE)


def is_bundle(text: str) -> bool:
    """Whether ``text`` is a bundle: its first line is a file header."""
    first = text.split("\n", 1)[0]
    return _HEADER_LINE.fullmatch(first) is not None


def check_path(path: str) -> str:
    """``path`` if it is a safe relative file path (no ``..``, not absolute, no empty parts); else ValueError."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")) \
            or "\\" in path or "\0" in path:
        raise ValueError(f"file path {path!r} must be relative, inside the program folder, without '..'")
    return path


def split_bundle(text: str) -> list[tuple[str, str]]:
    """``[(path, content), ...]`` in order; ValueError if ``text`` is not a bundle or repeats a path."""
    headers = list(_HEADER_LINE.finditer(text))
    if not headers or headers[0].start() != 0:
        raise ValueError("not a bundle: the first line must be '=== FILE: <path> ==='")
    files, seen = [], set()
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        path = check_path(match["path"])
        if path in seen:
            raise ValueError(f"the bundle holds {path!r} twice")
        seen.add(path)
        files.append((path, text[match.end() + 1:end]))
    return files


def join_bundle(files: list[tuple[str, str]]) -> str:
    """The bundle of ``files`` (each content ends with a newline in the bundle)."""
    parts = []
    for path, content in files:
        parts.append(HEADER.format(path=check_path(path)) + "\n")
        parts.append(content if content.endswith("\n") or not content else content + "\n")
    return "".join(parts)


def section_of(text: str, path: str) -> tuple[int, int] | None:
    """Character span of ``path``'s content in the bundle ``text`` (after its header), or None."""
    headers = list(_HEADER_LINE.finditer(text))
    for i, match in enumerate(headers):
        if match["path"] == path:
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            return min(match.end() + 1, end), end
    return None


def materialise(text: str, folder: str) -> list[str]:
    """Write the bundle's files under ``folder`` (created); returns their paths."""
    written = []
    root = os.path.realpath(folder)
    os.makedirs(root, exist_ok=True)
    for path, content in split_bundle(text):
        target = os.path.realpath(os.path.join(root, path))
        if not target.startswith(root + os.sep):
            raise ValueError(f"file path {path!r} leaves the program folder")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(content)
        written.append(target)
    return written
