"""Built-in behaviour descriptors computed by evoforge itself, from the program text alone.

The engine computes them on the child's text, outside the sandbox (so they live here, not in
`evoforge.evaluators`); a task may declare them as descriptors without its evaluator returning them.

``code_length`` and ``ast_nodes`` are always computed. ``complexity`` and ``diversity`` -- the names of
OpenEvolve's default feature dimensions, which OpenEvolve folders get (`evoforge.engine.openevolve_compat`)
-- only when a task declares them:

* ``complexity``: the program's length in characters, as OpenEvolve measures it.
* ``diversity``: where the program falls in a fixed random partition of program space, in [0, 1): a
  stable hash (BLAKE2b, not Python's salted ``hash``) of its token sequence, comments and layout
  dropped. OpenEvolve's diversity is the edit distance to a sample of the population, rescaled to
  the range seen so far; our grid has fixed ranges, so that scale is not available, and on a fixed
  scale the few characters a constant-tuning edit changes move no program out of its cell (code
  length and AST size put every such child into one cell, and each island kept one elite). Hashing
  the tokens makes any token change -- a tuned constant included -- an independent draw of the cell,
  so an island keeps up to ``bins`` variants per complexity bin, best of each; a reformatting or a
  comment does not move the program. It is a niching device (like a random partition), not a
  measure of behaviour: a task that has one declares it.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from typing import Iterable

__all__ = ["builtin_features", "BUILTIN_FEATURES", "ON_REQUEST_FEATURES", "diversity"]

BUILTIN_FEATURES = ("code_length", "ast_nodes")
ON_REQUEST_FEATURES = ("complexity", "diversity")
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def diversity(code: str) -> float:
    """A value in [0, 1) determined by the program's tokens (layout and comments ignored)."""
    try:
        tokens = [tok.string for tok in tokenize.generate_tokens(io.StringIO(code).readline)
                  if tok.type not in _SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        tokens = code.split()
    digest = hashlib.blake2b("\x00".join(tokens).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def builtin_features(code: str, names: Iterable[str] = ()) -> dict[str, float]:
    """``code_length``: non-blank lines; ``ast_nodes``: nodes in the parsed tree (0 if it does not parse);
    and, when ``names`` asks for them, ``complexity`` (characters) and ``diversity`` (`diversity`)."""
    lines = sum(1 for line in code.splitlines() if line.strip())
    try:
        nodes = sum(1 for _ in ast.walk(ast.parse(code)))
    except SyntaxError:
        nodes = 0
    out = {"code_length": float(lines), "ast_nodes": float(nodes)}
    wanted = set(names)
    if "complexity" in wanted:
        out["complexity"] = float(len(code))
    if "diversity" in wanted:
        out["diversity"] = diversity(code)
    return out
