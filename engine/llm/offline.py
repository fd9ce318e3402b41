"""The offline mutation operator: genetic programming on the AST of the evolvable regions.

It is the embedded default when no LLM is configured. It reads Python only; a program in another language
gets the token-level operator of `evoforge.engine.llm.token_mutations` (numbers, operators, adjacent
statements) instead. Each reply is one to ``max_mutations``
SEARCH/REPLACE blocks — exactly the format an LLM answers in — so the rest of the pipeline
(`evoforge.engine.edits.apply_reply`, the archive, the prompts) cannot tell the difference.

Mutation kinds (`KINDS`):

* ``constant``  — perturb a numeric literal (indices, shapes, exponents and tiny safety margins are
  picked a tenth as often: perturbing them mostly breaks the program): floats by ``× exp(N(0, 0.3))``, by additive noise
  relative to their magnitude, or (rarely) by a larger sign-preserving jump; ints by ±1 or a small
  step, never below 1 when they were at least 1 (so ``range(n)`` keeps a positive count); bools,
  strings and literals inside f-strings are left alone;
* ``operator``  — swap ``+ ↔ -``, ``* ↔ /`` (also in ``+=`` style augmented assignments),
  ``< ↔ <=``, ``> ↔ >=``, ``min ↔ max`` and ``np.minimum ↔ np.maximum``; ``**`` and ``and``/``or``
  stay as they are;
* ``duplicate`` — insert a copy of a statement right after it;
* ``delete``    — delete a statement, never a ``return``, a ``def``/``class``, an import, the last
  statement of a body, nor one that binds a name a later statement of its body reads and nothing
  else binds;
* ``swap``      — swap two adjacent, independent statements of the same body (neither reads or
  writes what the other writes);
* ``crossover`` — replace a simple statement with one from an inspiration's evolvable region,
  preferring one in a function of the same name that assigns the same target (chosen with
  probability ``crossover_rate`` per mutation when inspirations are given).

Constants and operators are edited token-wise in the original line, so comments survive; the
statement kinds copy whole original lines; only crossover re-renders (``ast.unparse``) the donor
statement, re-indented to the target's column. Every SEARCH consists of whole lines lying inside one
EVOLVE-BLOCK, and is widened with neighbouring lines of that block until it is the first match that
`apply_reply` would find. Each candidate edit is checked with `apply_reply` (it must apply and parse)
before it is kept, and every kind changes the normalised code by construction; later edits are made
against the text produced by the earlier ones, so applying the reply's blocks in order reproduces
the child. A program that does not parse, or has nothing to mutate, gets an empty reply.

Deterministic: the same ``(parent_code, inspirations, seed)`` gives a byte-identical reply — all
randomness comes from the generator passed in, and nothing depends on set order or ``hash()``.
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evoforge.engine.edits import SearchReplace, apply_reply, code_hash, evolve_blocks, format_search_replace
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.evaluators.bundle import is_bundle, split_bundle

__all__ = ["KINDS", "Mutation", "OfflineMutator"]

KINDS = ("constant", "operator", "duplicate", "delete", "swap", "crossover")

# Relative odds of the non-crossover kinds (crossover has its own rate).
_WEIGHTS = {"constant": 0.45, "operator": 0.17, "duplicate": 0.12, "delete": 0.12, "swap": 0.14}
_ATTEMPTS = 24          # candidate edits tried per mutation before giving up
_MAX_WIDEN = 12         # extra context lines a SEARCH may take to become unique

_BINOP_SWAP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*")}
_CMP_SWAP = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">")}
_NAME_SWAP = {"min": "max", "max": "min"}
_ATTR_SWAP = {"minimum": "maximum", "maximum": "minimum"}
_NOISE = re.compile(r"[\s()\\]")
_NUMBER = re.compile(r"^(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?$|^0[xXoObB][0-9a-fA-F_]+$")

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_FRAGILE_WEIGHT = 0.1   # relative odds of perturbing a literal `_fragile_constants` names
_SHAPE_CALLS = {"zeros", "ones", "empty", "full", "reshape", "range", "arange", "eye", "identity", "tile",
                "repeat", "roll", "transpose", "swapaxes", "expand_dims", "squeeze", "stack", "concatenate"}
_NEVER_MOVE = _DEFS + (ast.Import, ast.ImportFrom, ast.Return, ast.Global, ast.Nonlocal)
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)


@dataclass(frozen=True)
class Mutation:
    """One applied mutation: its kind, the SEARCH/REPLACE block, and the program after it."""

    kind: str
    edit: SearchReplace
    code: str


@dataclass(frozen=True)
class _LineEdit:
    """Replace lines ``first..last`` (0-based, inclusive) of the current text with ``text``."""

    first: int
    last: int
    text: str


@dataclass(frozen=True)
class _Stmt:
    node: ast.stmt
    body: list
    index: int
    func: str      # innermost enclosing def/class name ("" at module level)
    first: int     # 0-based first line (decorators included)
    last: int      # 0-based last line
    region: int    # index of the EVOLVE-BLOCK holding all its lines, whole lines only; else -1
    outer: frozenset[str] = frozenset()   # names bound before its body starts (enclosing bodies, parameters)


def _split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _walk(root: ast.AST):
    """Depth-first, source order, iterative (long expression chains nest deeply); skips f-strings."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.JoinedStr)]
        stack.extend(reversed(children))


class _Source:
    """One version of the program: text, lines, AST, and which lines lie in which EVOLVE-BLOCK."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.tree = ast.parse(code)
        self.spans = evolve_blocks(code)
        self.lines = _split_lines(code)
        self.offsets = [0]
        for line in self.lines:
            self.offsets.append(self.offsets[-1] + len(line))
        self.line_region = [-1] * len(self.lines)
        for r, (a, b) in enumerate(self.spans):
            i = bisect.bisect_left(self.offsets, a)
            while i < len(self.lines) and self.offsets[i + 1] <= b:
                self.line_region[i] = r
                i += 1
        self._encoded: dict[int, bytes] = {}
        self.stmts: list[_Stmt] = []
        self._collect(self.tree.body, "")
        self._constants: list | None = None
        self.constant_weights = np.ones(0)
        self._operators: list | None = None

    # -- positions -------------------------------------------------------------------------
    def char_at(self, lineno: int, col: int) -> int:
        """Character offset of an AST position (1-based line, UTF-8 byte column)."""
        i = lineno - 1
        if i >= len(self.lines):
            return len(self.code)
        raw = self._encoded.get(i)
        if raw is None:
            raw = self._encoded[i] = self.lines[i].encode("utf-8")
        return self.offsets[i] + len(raw[:col].decode("utf-8", errors="ignore"))

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.offsets, pos) - 1

    def region_of(self, first: int, last: int) -> int:
        if not (0 <= first <= last < len(self.lines)):
            return -1
        r = self.line_region[first]
        return r if r == self.line_region[last] else -1

    def indent_of(self, line: int) -> str:
        text = self.lines[line]
        return text[:len(text) - len(text.lstrip(" \t"))]

    def text_edit(self, start: int, end: int, new: str) -> _LineEdit | None:
        """Turn a character-range replacement into a whole-line edit, if it lies in one block."""
        first = self.line_of(start)
        last = self.line_of(max(start, end - 1))
        if self.region_of(first, last) < 0:
            return None
        text = self.code[self.offsets[first]:start] + new + self.code[end:self.offsets[last + 1]]
        return _LineEdit(first, last, text)

    # -- statements ------------------------------------------------------------------------
    def _whole_lines(self, node: ast.stmt) -> bool:
        start = self.char_at(node.lineno, node.col_offset)
        if self.code[self.offsets[node.lineno - 1]:start].strip():
            return False
        end = self.char_at(node.end_lineno, node.end_col_offset)
        rest = self.code[end:self.offsets[min(node.end_lineno, len(self.lines))]].strip()
        return not rest or rest.startswith("#")

    def _collect(self, body: list, func: str, outer: frozenset[str] = frozenset()) -> None:
        for index, node in enumerate(body):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            last = node.end_lineno - 1
            region = self.region_of(first, last) if self._whole_lines(node) else -1
            self.stmts.append(_Stmt(node, body, index, func, first, last, region, outer))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):   # a new scope: its parameters
                inner, bound = node.name, frozenset(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
            else:
                inner = node.name if isinstance(node, ast.ClassDef) else func
                bound = outer.union(*(_stores(s) for s in body[:index]))
                if isinstance(node, (ast.For, ast.AsyncFor)):
                    bound |= _stores(node.target)
            for field in ("body", "orelse", "finalbody"):
                sub = getattr(node, field, None)
                if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                    self._collect(sub, inner, bound)
            for handler in getattr(node, "handlers", None) or []:
                self._collect(handler.body, inner, bound | ({handler.name} if handler.name else set()))
            for case in getattr(node, "cases", None) or []:
                self._collect(case.body, inner, bound)

    def block_text(self, stmt: _Stmt) -> str:
        text = "".join(self.lines[stmt.first:stmt.last + 1])
        return text if text.endswith("\n") else text + "\n"

    # -- candidates for the token-level kinds --------------------------------------------------
    def _token_region_ok(self, node: ast.AST) -> bool:
        return self.region_of(node.lineno - 1, node.end_lineno - 1) >= 0

    @property
    def constants(self) -> list[tuple[int, int, int | float]]:
        if self._constants is None:
            found = []
            weights = []
            fragile = _fragile_constants(self.tree)
            for node in _walk(self.tree):
                if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
                    continue
                if node.lineno != node.end_lineno or not self._token_region_ok(node):
                    continue
                start = self.char_at(node.lineno, node.col_offset)
                end = self.char_at(node.end_lineno, node.end_col_offset)
                segment = self.code[start:end]
                if not _NUMBER.match(segment):
                    continue
                try:
                    if ast.literal_eval(segment) != node.value:
                        continue
                except (ValueError, SyntaxError):
                    continue
                if isinstance(node.value, float) and not math.isfinite(node.value):
                    continue
                found.append((start, end, node.value))
                weights.append(_FRAGILE_WEIGHT if id(node) in fragile else 1.0)
            self._constants = found
            self.constant_weights = np.array(weights)
        return self._constants

    def _between(self, left: ast.AST, right: ast.AST, symbol: str) -> tuple[int, int] | None:
        """Position of the operator ``symbol`` between two operands (parentheses and spaces allowed)."""
        start = self.char_at(left.end_lineno, left.end_col_offset)
        end = self.char_at(right.lineno, right.col_offset)
        segment = self.code[start:end]
        if _NOISE.sub("", segment) != symbol:
            return None
        at = start + segment.find(symbol)
        return at, at + len(symbol)

    @property
    def operators(self) -> list[tuple[int, int, str]]:
        if self._operators is None:
            found: list[tuple[int, int, str]] = []

            def add(where: tuple[int, int] | None, new: str) -> None:
                if where is not None:
                    line = self.line_of(where[0])
                    if self.region_of(line, line) >= 0:
                        found.append((where[0], where[1], new))

            for node in _walk(self.tree):
                if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
                    old, new = _BINOP_SWAP[type(node.op)]
                    add(self._between(node.left, node.right, old), new)
                elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
                    old, new = _BINOP_SWAP[type(node.op)]
                    add(self._between(node.target, node.value, old + "="), new + "=")
                elif isinstance(node, ast.Compare):
                    left = node.left
                    for op, right in zip(node.ops, node.comparators):
                        if type(op) in _CMP_SWAP:
                            old, new = _CMP_SWAP[type(op)]
                            add(self._between(left, right, old), new)
                        left = right
                elif isinstance(node, ast.Name) and node.id in _NAME_SWAP and isinstance(node.ctx, ast.Load):
                    start = self.char_at(node.lineno, node.col_offset)
                    end = self.char_at(node.end_lineno, node.end_col_offset)
                    if self.code[start:end] == node.id:
                        add((start, end), _NAME_SWAP[node.id])
                elif (isinstance(node, ast.Attribute) and node.attr in _ATTR_SWAP
                      and isinstance(node.ctx, ast.Load) and node.end_lineno is not None):
                    end = self.char_at(node.end_lineno, node.end_col_offset)
                    start = end - len(node.attr)
                    if self.code[start:end] == node.attr:
                        add((start, end), _ATTR_SWAP[node.attr])
            self._operators = found
        return self._operators


# ---------------------------------------------------------------------------------------------
# numeric perturbations

def _perturb_float(value: float, rng: np.random.Generator) -> str | None:
    u = rng.random()
    if value == 0.0:
        new = abs(float(rng.normal(0.0, 0.1)))
    elif u < 0.5:
        new = value * math.exp(float(rng.normal(0.0, 0.3)))
    elif u < 0.85:
        new = value + float(rng.normal(0.0, 0.1 * abs(value)))
        if new <= 0.0:             # literals are non-negative: keep the sign
            new = value * 0.5
    else:
        new = value * math.exp(float(rng.normal(0.0, 1.2)))
    if not math.isfinite(new) or new > 1e300:
        return None
    new = float(f"{new:.5g}")
    if new == value:
        return None
    return repr(new)


def _perturb_int(value: int, rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        step = 1
    else:
        step = int(rng.integers(2, max(3, abs(value) // 4 + 2)))
    new = value + (step if rng.random() < 0.5 else -step)
    floor = 1 if value >= 1 else 0
    if new < floor:
        new = value + step
    return str(new)


# ---------------------------------------------------------------------------------------------
# the mutation kinds: each returns a _LineEdit, None (this try failed) or _NONE (no candidates)

_NONE = object()


def _fragile_constants(tree: ast.AST) -> set[int]:
    """Ids of numeric literals whose perturbation usually breaks the program rather than tuning it: integers
    that index (``x[:, 0]``), shape (``np.zeros((n, 2))``, ``reshape``, ``axis=1``), count loop offsets
    (``range(i + 1, n)``) or are exponents (``d ** 2``), and tiny floats (safety margins like ``1e-9``).
    On circle_packing about half the constant mutations raised or were invalid before they were damped."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            out.update(id(n) for n in ast.walk(node.slice) if isinstance(n, ast.Constant))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            out.update(id(n) for n in ast.walk(node.right) if isinstance(n, ast.Constant))
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in _SHAPE_CALLS:
                for arg in node.args:
                    out.update(id(n) for n in ast.walk(arg) if isinstance(n, ast.Constant) and type(n.value) is int)
            out.update(id(k.value) for k in node.keywords if k.arg in ("axis", "axes", "ndmin")
                       and isinstance(k.value, ast.Constant))
        elif isinstance(node, ast.Constant) and type(node.value) is float and 0 < abs(node.value) < 1e-6:
            out.add(id(node))
    return out


def _mutate_constant(src: _Source, rng: np.random.Generator, donors: list) -> object:
    if not src.constants:
        return _NONE
    weights = src.constant_weights
    start, end, value = src.constants[int(rng.choice(len(src.constants), p=weights / weights.sum()))]
    new = _perturb_float(value, rng) if isinstance(value, float) else _perturb_int(value, rng)
    if new is None:
        return None
    return src.text_edit(start, end, new)


def _mutate_operator(src: _Source, rng: np.random.Generator, donors: list) -> object:
    if not src.operators:
        return _NONE
    start, end, new = src.operators[int(rng.integers(len(src.operators)))]
    return src.text_edit(start, end, new)


def _movable(stmt: _Stmt) -> bool:
    return stmt.region >= 0 and not isinstance(stmt.node, _NEVER_MOVE) and not _is_docstring(stmt.node)


def _pick_stmt(candidates: list[_Stmt], rng: np.random.Generator) -> _Stmt:
    """Prefer simple statements; compound ones (for/if/while/with/try) get a quarter of the weight."""
    weights = np.array([0.25 if hasattr(s.node, "body") else 1.0 for s in candidates])
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def _mutate_duplicate(src: _Source, rng: np.random.Generator, donors: list) -> object:
    candidates = [s for s in src.stmts if _movable(s) and not isinstance(s.node, (ast.Pass, ast.Raise))]
    if not candidates:
        return _NONE
    stmt = _pick_stmt(candidates, rng)
    text = src.block_text(stmt)
    return _LineEdit(stmt.first, stmt.last, text + text)


def _stores(node: ast.AST) -> set[str]:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names | {n.name for n in ast.walk(node) if isinstance(n, _DEFS)}


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _reads(node: ast.AST) -> set[str]:
    """Names a statement reads, counting an augmented assignment's target (``x += 1`` reads ``x``)."""
    augmented = {n.target.id for n in ast.walk(node) if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
    return _loads(node) | augmented


def _unbinds(stmt: _Stmt, reads: frozenset[str] = frozenset(), binds: frozenset[str] = frozenset()) -> bool:
    """Whether replacing ``stmt`` with a statement that reads ``reads`` and binds ``binds`` (deleting it: both
    empty) leaves a name read while unbound in its body — a NameError or UnboundLocalError to be.

    * the new statement reads a name that this body binds only here or later (a crossover donor's
      ``centers = np.clip(centers, ..)`` put in place of ``centers = np.zeros(..)``: on circle_packing most
      of the offline operator's exceptions);
    * a name ``stmt`` binds, that no earlier statement binds and the new one does not, is read later before
      a plain assignment rebinds it (a rebinding *after* the read does not help; one inside a loop or a
      branch may not happen).
    Names bound before the body starts (enclosing bodies, parameters, a loop's target) count as bound; a
    name bound later in a loop's body does not, though a second pass would see it: cautious."""
    earlier = set(stmt.outer).union(*(_stores(s) for s in stmt.body[:stmt.index]))
    from_here = set().union(*(_stores(s) for s in stmt.body[stmt.index:]))
    if reads & (from_here - earlier):
        return True
    for name in _stores(stmt.node) - earlier - binds:
        for later in stmt.body[stmt.index + 1:]:
            if name in _reads(later):
                return True
            if isinstance(later, (ast.Assign, ast.AnnAssign)) and name in _stores(later):
                break
    return False


def _mutate_delete(src: _Source, rng: np.random.Generator, donors: list) -> object:
    candidates = [s for s in src.stmts if _movable(s) and len(s.body) > 1 and not _unbinds(s)]
    if not candidates:
        return _NONE
    stmt = _pick_stmt(candidates, rng)
    return _LineEdit(stmt.first, stmt.last, "")


def _mutate_swap(src: _Source, rng: np.random.Generator, donors: list) -> object:
    movable = [s for s in src.stmts if _movable(s)]
    # Only independent neighbours: swapping a statement with one that reads what it writes (or writes what
    # it reads) turns a working program into a NameError or a different computation more often than not.
    pairs = [(a, b) for a, b in zip(movable, movable[1:])
             if a.body is b.body and b.index == a.index + 1 and a.region == b.region
             and not (_stores(a.node) & (_loads(b.node) | _stores(b.node)) or _stores(b.node) & _loads(a.node))]
    if not pairs:
        return _NONE
    a, b = pairs[int(rng.integers(len(pairs)))]
    if ast.dump(a.node) == ast.dump(b.node):   # identical statements (up to comments): no change
        return None
    first_text, second_text = src.block_text(a), src.block_text(b)
    between = "".join(src.lines[a.last + 1:b.first])
    return _LineEdit(a.first, b.last, second_text + between + first_text)


@dataclass(frozen=True)
class _Donor:
    func: str
    kind: str
    key: str
    text: str
    dump: str
    reads: frozenset[str]
    binds: frozenset[str]


def _stmt_key(node: ast.stmt) -> str:
    if isinstance(node, ast.Assign):
        return " = ".join(ast.unparse(t) for t in node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return ast.unparse(node.target)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return ast.unparse(node.value.func)
    return ""


def _crossover_target(stmt: _Stmt) -> bool:
    return (stmt.region >= 0 and isinstance(stmt.node, _SIMPLE) and not _is_docstring(stmt.node))


def _donors(inspirations: Sequence[str]) -> list[_Donor]:
    found: list[_Donor] = []
    seen: list[tuple[str, str]] = []
    for text in inspirations:
        try:
            src = _Source(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for stmt in src.stmts:
            if not _crossover_target(stmt):
                continue
            try:
                dump = ast.dump(stmt.node)
                donor = _Donor(stmt.func, type(stmt.node).__name__, _stmt_key(stmt.node),
                               ast.unparse(stmt.node), dump, frozenset(_reads(stmt.node)),
                               frozenset(_stores(stmt.node)))
            except RecursionError:   # pathologically deep expressions: not worth donating
                continue
            if (stmt.func, dump) in seen:
                continue
            seen.append((stmt.func, dump))
            found.append(donor)
    return found


def _mutate_crossover(src: _Source, rng: np.random.Generator, donors: list[_Donor]) -> object:
    targets = [s for s in src.stmts if _crossover_target(s)]
    if not targets or not donors:
        return _NONE
    # Tiers, best first: a donor new to the parent's function beats one the parent already has
    # there; then same function and same target, same function, same target elsewhere.
    present = [(s.func, ast.dump(s.node)) for s in targets]
    tiers: list[list[tuple[_Stmt, _Donor]]] = [[] for _ in range(6)]
    for stmt in targets:
        kind, key, dump = type(stmt.node).__name__, _stmt_key(stmt.node), ast.dump(stmt.node)
        for donor in donors:
            if donor.kind != kind or donor.dump == dump or _unbinds(stmt, donor.reads, donor.binds):
                continue
            offset = 3 if (stmt.func, donor.dump) in present else 0
            if donor.func == stmt.func and donor.key == key:
                tiers[offset].append((stmt, donor))
            elif donor.func == stmt.func:
                tiers[offset + 1].append((stmt, donor))
            elif donor.key == key and key:
                tiers[offset + 2].append((stmt, donor))
    pairs = next((tier for tier in tiers if tier), None)
    if pairs is None:
        return _NONE
    stmt, donor = pairs[int(rng.integers(len(pairs)))]
    indent = src.indent_of(stmt.first)
    text = "".join(indent + line + "\n" for line in donor.text.split("\n"))
    return _LineEdit(stmt.first, stmt.last, text)


_MUTATORS = {
    "constant": _mutate_constant, "operator": _mutate_operator, "duplicate": _mutate_duplicate,
    "delete": _mutate_delete, "swap": _mutate_swap, "crossover": _mutate_crossover,
}


# ---------------------------------------------------------------------------------------------
# emitting SEARCH/REPLACE blocks

def _first_match(src: _Source, search: str) -> int:
    """Where `apply_reply` would apply ``search``: its first occurrence in the first block holding one."""
    for a, b in src.spans:
        at = src.code.find(search, a, b)
        if at != -1:
            return at
    return -1


def _emit(src: _Source, edit: _LineEdit) -> SearchReplace | None:
    """The SEARCH/REPLACE block for ``edit``, widened with context lines until it matches only there."""
    first, last, text = edit.first, edit.last, edit.text
    region = src.region_of(first, last)
    if region < 0:
        return None
    for _ in range(_MAX_WIDEN + 1):
        search = "".join(src.lines[first:last + 1])
        if search.strip() and _first_match(src, search) == src.offsets[first]:
            return SearchReplace(search, text)
        if first > 0 and src.line_region[first - 1] == region:
            first -= 1
            text = src.lines[first] + text
        elif last + 1 < len(src.lines) and src.line_region[last + 1] == region:
            last += 1
            text = text + src.lines[last]
        else:
            return None
    return None


# ---------------------------------------------------------------------------------------------

class OfflineMutator(LLMClient):
    """Genetic programming on the evolvable regions, answering in the LLM's SEARCH/REPLACE format."""

    name = "offline"
    conversational = False  # it does not read the prompt, so sending an error back would change nothing

    def __init__(self, *, max_mutations: int = 3, crossover_rate: float = 0.2) -> None:
        if max_mutations < 1:
            raise ValueError(f"expected max_mutations >= 1 but got {max_mutations}")
        if not 0.0 <= crossover_rate <= 1.0:
            raise ValueError(f"expected crossover_rate in [0, 1] but got {crossover_rate}")
        self.max_mutations = int(max_mutations)
        self.crossover_rate = float(crossover_rate)

    async def generate(self, prompt: Prompt) -> Reply:
        seed = prompt.seed if prompt.seed >= 0 else prompt.seed & ((1 << 64) - 1)
        rng = np.random.default_rng(seed)
        if is_bundle(prompt.parent_code):
            text = self._propose_in_bundle(prompt.parent_code, prompt.inspirations, rng)
            return Reply(text=text, model="offline", prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        if prompt.language != "python":
            # No syntax tree for other languages: token-level mutations (engine.llm.token_mutations).
            from evoforge.engine.languages import language_named
            from evoforge.engine.llm.token_mutations import propose_tokens
            text = propose_tokens(prompt.parent_code, language_named(prompt.language), rng,
                                  max_mutations=self.max_mutations)
            return Reply(text=text, model="offline", prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        text = self.propose(prompt.parent_code, prompt.inspirations, rng)
        return Reply(text=text, model="offline", prompt_tokens=0, completion_tokens=0, cost_usd=0.0)

    def _propose_in_bundle(self, parent_code: str, inspirations: Sequence[str], rng: np.random.Generator) -> str:
        """Several files: mutate one evolvable file (drawn at random) with its language's operator; each
        block names that file, as `apply_reply` expects of a program of several files."""
        from evoforge.engine.edits import has_markers, parse_search_replace
        from evoforge.engine.languages import PYTHON, language_of_file
        from evoforge.engine.llm.token_mutations import propose_tokens

        files = [(path, text) for path, text in split_bundle(parent_code) if has_markers(text)]
        for i in rng.permutation(len(files)):
            path, text = files[int(i)]
            language = language_of_file(path) or PYTHON
            if language.is_python:
                donors = [dict(split_bundle(c)).get(path, "") for c in inspirations if is_bundle(c)]
                reply = self.propose(text, [d for d in donors if d], rng)
            else:
                reply = propose_tokens(text, language, rng, max_mutations=self.max_mutations)
            edits = [SearchReplace(e.search, e.replace, path) for e in parse_search_replace(reply)]
            if edits and apply_reply(parent_code, format_search_replace(edits)).ok:
                return format_search_replace(edits)
        return ""

    def propose(self, parent_code: str, inspirations: Sequence[str], rng: np.random.Generator, *,
                kinds: Sequence[str] | None = None, n_mutations: int | None = None) -> str:
        """A reply of SEARCH/REPLACE blocks for ``parent_code``, or "" when nothing can be mutated.

        ``kinds`` restricts (and, for crossover, forces) the mutation kinds; ``n_mutations`` fixes
        how many mutations are stacked (default: 1..max_mutations, fewer more likely).
        """
        mutations = self.propose_mutations(parent_code, inspirations, rng, kinds=kinds, n_mutations=n_mutations)
        return format_search_replace([m.edit for m in mutations]) if mutations else ""

    def propose_mutations(self, parent_code: str, inspirations: Sequence[str], rng: np.random.Generator, *,
                          kinds: Sequence[str] | None = None, n_mutations: int | None = None) -> list[Mutation]:
        """The mutations behind `propose`, in order, each with its kind and the program after it."""
        forced = kinds is not None
        pool = list(KINDS) if kinds is None else [k for k in KINDS if k in kinds]
        unknown = [k for k in (kinds or ()) if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown mutation kinds {unknown}; expected some of {', '.join(KINDS)}")
        if n_mutations is None:
            p = 0.5 ** np.arange(self.max_mutations)
            n_mutations = 1 + int(rng.choice(self.max_mutations, p=p / p.sum()))
        donors = _donors(inspirations) if "crossover" in pool and inspirations else []
        if not donors and "crossover" in pool:
            pool.remove("crossover")
        mutations: list[Mutation] = []
        current = parent_code
        for _ in range(n_mutations):
            mutation = self._mutate_once(current, donors, rng, pool, forced)
            if mutation is None:
                break
            mutations.append(mutation)
            current = mutation.code
        # The blocks, applied in order to the parent, must give the last child (they do by
        # construction; this guards the contract with apply_reply).
        while mutations:
            result = apply_reply(parent_code, format_search_replace([m.edit for m in mutations]))
            # ... and must differ from the parent (stacked mutations can undo each other: a swap back).
            if result.ok and result.code == mutations[-1].code and code_hash(result.code) != code_hash(parent_code):
                break
            mutations.pop()
        return mutations

    def _pick_kind(self, pool: list[str], rng: np.random.Generator, forced: bool) -> str:
        if forced:
            return pool[int(rng.integers(len(pool)))]
        if "crossover" in pool and rng.random() < self.crossover_rate:
            return "crossover"
        others = [k for k in pool if k != "crossover"]
        if not others:
            return "crossover"
        weights = np.array([_WEIGHTS[k] for k in others])
        return others[int(rng.choice(len(others), p=weights / weights.sum()))]

    def _mutate_once(self, code: str, donors: list[_Donor], rng: np.random.Generator,
                     kinds: list[str], forced: bool) -> Mutation | None:
        try:
            src = _Source(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        pool = list(kinds)
        for _ in range(_ATTEMPTS):
            if not pool:
                return None
            kind = self._pick_kind(pool, rng, forced)
            try:
                edit = _MUTATORS[kind](src, rng, donors)
            except RecursionError:   # ast.dump/unparse on pathologically deep code
                pool.remove(kind)
                continue
            if edit is _NONE:
                pool.remove(kind)
                continue
            if edit is None:
                continue
            block = _emit(src, edit)
            if block is None:
                continue
            result = apply_reply(code, format_search_replace([block]))
            # Every kind changes the normalised code by construction (a different value, operator,
            # statement count or order, or a donor whose AST differs), so a text check suffices.
            if not result.ok or result.code == code:
                continue
            return Mutation(kind, block, result.code)
        return None
