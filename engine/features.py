"""Built-in behaviour descriptors computed by evoforge itself, from the program text alone.

The engine computes them on the child's text, outside the sandbox (so they live here, not in
`evoforge.evaluators`); a task may declare them as descriptors without its evaluator returning them.
"""

from __future__ import annotations

import ast

__all__ = ["builtin_features", "BUILTIN_FEATURES"]

BUILTIN_FEATURES = ("code_length", "ast_nodes")


def builtin_features(code: str) -> dict[str, float]:
    """``code_length``: non-blank lines; ``ast_nodes``: nodes in the parsed tree (0 if it does not parse)."""
    lines = sum(1 for line in code.splitlines() if line.strip())
    try:
        nodes = sum(1 for _ in ast.walk(ast.parse(code)))
    except SyntaxError:
        nodes = 0
    return {"code_length": float(lines), "ast_nodes": float(nodes)}
