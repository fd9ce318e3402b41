"""The offline operator for programs that are not Python: token-level mutations of the EVOLVE-BLOCKs.

The Python operator (`evoforge.engine.llm.offline`) edits the syntax tree; for C, Rust, Lua, ... there is
no parser here, so this one works on a tokenizer that knows only the shape every such language shares:
comments (the language's line comment and C's ``/* */``), string and character literals, numbers,
identifiers and operators. Three kinds, chosen with the odds in `_WEIGHTS`:

* ``constant`` — perturb a number literal (floats as the Python operator does, ints by ±1 or a small
  step), keeping its suffix (``1.5f``, ``16u``); hexadecimal literals are left alone;
* ``operator`` — swap ``+ ↔ -`` and ``* ↔ /`` (and ``+= ↔ -=``, ``*= ↔ /=``), ``< ↔ <=``, ``> ↔ >=``,
  never inside a preprocessor line, and not a ``*`` right after a type name (a pointer declaration);
* ``swap`` — swap two adjacent simple statements (lines ending in ``;`` at the same indentation,
  without braces or ``return``).

Nothing in a comment or a string is touched. Each mutation is one SEARCH/REPLACE block of whole
lines inside one EVOLVE-BLOCK, widened with neighbouring lines until `apply_reply` would apply it
exactly there, and checked with `apply_reply` for the program's language. The child may not compile:
that is what the task's compile stage, and its error fed back, are for. This is a deliberately small
operator — enough for offline runs and tests to exercise the pipeline on compiled tasks — not a
substitute for an LLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from evoforge.engine.edits import SearchReplace, apply_reply, evolve_blocks, format_search_replace
from evoforge.engine.languages import Language

__all__ = ["TOKEN_KINDS", "propose_tokens"]

TOKEN_KINDS = ("constant", "operator", "swap")
_WEIGHTS = np.array([0.55, 0.3, 0.15])
_ATTEMPTS = 24
_MAX_WIDEN = 12

_OP_SWAP = {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*=",
            "<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_TYPE_WORDS = {"int", "float", "double", "char", "void", "long", "short", "unsigned", "signed", "const",
               "size_t", "bool", "auto", "struct", "restrict", "__restrict__", "volatile", "static"}
_NUMBER = re.compile(r"(?P<body>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)(?P<suffix>[uUlLfF]*)\Z")


@dataclass(frozen=True)
class _Token:
    kind: str        # "number" | "op" | "word" | "skip"
    start: int
    end: int
    text: str


def _tokenizer(language: Language) -> re.Pattern[str]:
    comment = re.escape(language.comment)
    return re.compile(
        rf"(?P<skip>{comment}[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*')"
        r"|(?P<number>0[xXbB][0-9a-fA-F_]+[uUlL]*|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uUlLfF]*)"
        r"|(?P<word>[A-Za-z_]\w*)"
        r"|(?P<op><<=|>>=|<<|>>|->|\+\+|--|&&|\|\||[-+*/%<>=!&|^]=?|\S)",
        re.DOTALL)


def _tokens(code: str, language: Language) -> list[_Token]:
    return [_Token(m.lastgroup or "skip", m.start(), m.end(), m.group()) for m in _tokenizer(language).finditer(code)]


def _lines(code: str) -> tuple[list[str], list[int]]:
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    return lines, offsets


def _perturb(text: str, rng: np.random.Generator) -> str | None:
    from evoforge.engine.llm.offline import _perturb_float, _perturb_int   # the Python operator's rules

    match = _NUMBER.match(text)
    if match is None:
        return None
    body, suffix = match["body"], match["suffix"]
    is_float = any(c in body for c in ".eE") or "f" in suffix.lower() and "." in body
    if is_float:
        new = _perturb_float(float(body), rng)
        if new is None:
            return None
        if "e" in new and "e" not in body.lower() and "." not in new:
            new = new.replace("e", ".0e")
        return new + suffix
    return _perturb_int(int(body), rng) + suffix


class _Program:
    """One version of the text: its tokens that lie in an EVOLVE-BLOCK, and its lines."""

    def __init__(self, code: str, language: Language) -> None:
        self.code = code
        self.spans = evolve_blocks(code)
        self.lines, self.offsets = _lines(code)
        self.line_block = [-1] * len(self.lines)
        for b, (a, z) in enumerate(self.spans):
            for i in range(len(self.lines)):
                if a <= self.offsets[i] and self.offsets[i + 1] <= z:
                    self.line_block[i] = b
        self.tokens = [t for t in _tokens(code, language) if self._inside(t.start, t.end)]

    def _inside(self, start: int, end: int) -> bool:
        return any(a <= start and end <= z for a, z in self.spans)

    def line_of(self, pos: int) -> int:
        return max(i for i in range(len(self.lines)) if self.offsets[i] <= pos)

    def replace(self, start: int, end: int, new: str) -> tuple[int, int, str]:
        first, last = self.line_of(start), self.line_of(max(start, end - 1))
        return first, last, self.code[self.offsets[first]:start] + new + self.code[end:self.offsets[last + 1]]

    def preprocessor(self, token: _Token) -> bool:
        return self.lines[self.line_of(token.start)].lstrip().startswith("#")


def _constant(prog: _Program, rng: np.random.Generator) -> tuple[int, int, str] | None:
    numbers = [t for t in prog.tokens if t.kind == "number" and not t.text.lower().startswith(("0x", "0b"))]
    if not numbers:
        return None
    token = numbers[int(rng.integers(len(numbers)))]
    new = _perturb(token.text, rng)
    return None if new is None or new == token.text else prog.replace(token.start, token.end, new)


def _operator(prog: _Program, rng: np.random.Generator) -> tuple[int, int, str] | None:
    candidates = []
    for i, token in enumerate(prog.tokens):
        if token.kind != "op" or token.text not in _OP_SWAP or i == 0 or prog.preprocessor(token):
            continue
        before = prog.tokens[i - 1]
        binary = before.kind in ("number", "word") or before.text in (")", "]")
        if not binary or before.kind == "word" and token.text == "*" and (
                before.text in _TYPE_WORDS or before.text.endswith("_t")):
            continue
        candidates.append(token)
    if not candidates:
        return None
    token = candidates[int(rng.integers(len(candidates)))]
    return prog.replace(token.start, token.end, _OP_SWAP[token.text])


def _simple(line: str) -> bool:
    text = line.strip()
    return text.endswith(";") and not any(c in text for c in "{}") and not text.startswith(("return", "#"))


def _swap(prog: _Program, rng: np.random.Generator) -> tuple[int, int, str] | None:
    def indent(line: str) -> str:
        return line[:len(line) - len(line.lstrip())]

    pairs = [i for i in range(len(prog.lines) - 1)
             if prog.line_block[i] >= 0 and prog.line_block[i] == prog.line_block[i + 1]
             and _simple(prog.lines[i]) and _simple(prog.lines[i + 1])
             and indent(prog.lines[i]) == indent(prog.lines[i + 1])
             and prog.lines[i].strip() != prog.lines[i + 1].strip()]
    if not pairs:
        return None
    i = pairs[int(rng.integers(len(pairs)))]
    second = prog.lines[i + 1] if prog.lines[i + 1].endswith("\n") else prog.lines[i + 1] + "\n"
    return i, i + 1, second + prog.lines[i]


_KINDS = {"constant": _constant, "operator": _operator, "swap": _swap}


def _emit(prog: _Program, first: int, last: int, text: str) -> SearchReplace | None:
    """Widen the lines ``first..last`` within their block until they match first exactly there."""
    block = prog.line_block[first]
    if block < 0 or prog.line_block[last] != block:
        return None
    for _ in range(_MAX_WIDEN + 1):
        search = "".join(prog.lines[first:last + 1])
        a, z = prog.spans[block]
        earlier = [prog.code.find(search, s, e) for s, e in prog.spans[:block]]
        if search.strip() and all(at == -1 for at in earlier) and prog.code.find(search, a, z) == prog.offsets[first]:
            return SearchReplace(search, text)
        if first > 0 and prog.line_block[first - 1] == block:
            first -= 1
            text = prog.lines[first] + text
        elif last + 1 < len(prog.lines) and prog.line_block[last + 1] == block:
            last += 1
            text = text + prog.lines[last]
        else:
            return None
    return None


def propose_tokens(parent_code: str, language: Language, rng: np.random.Generator, *,
                   max_mutations: int = 3) -> str:
    """SEARCH/REPLACE blocks for 1..``max_mutations`` token mutations of ``parent_code``, or "" if none applies."""
    p = 0.5 ** np.arange(max_mutations)
    n_mutations = 1 + int(rng.choice(max_mutations, p=p / p.sum()))
    edits: list[SearchReplace] = []
    current = parent_code
    for _ in range(n_mutations):
        prog = _Program(current, language)
        for _ in range(_ATTEMPTS):
            kind = TOKEN_KINDS[int(rng.choice(len(TOKEN_KINDS), p=_WEIGHTS))]
            found = _KINDS[kind](prog, rng)
            if found is None:
                continue
            block = _emit(prog, *found)
            if block is None:
                continue
            result = apply_reply(current, format_search_replace([block]), language=language.name)
            if result.ok and result.code is not None and result.code not in (current, parent_code):
                edits.append(block)
                current = result.code
                break
        else:
            break
    # The blocks applied in order to the parent must give the last child (the contract with apply_reply).
    while edits:
        result = apply_reply(parent_code, format_search_replace(edits), language=language.name)
        if result.ok and result.code == current:
            break
        edits.pop()
        current = parent_code
        for edit in edits:
            current = apply_reply(current, format_search_replace([edit]), language=language.name).code or current
    return format_search_replace(edits) if edits else ""
