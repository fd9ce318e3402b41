"""Evaluator for fast_exp2: approximate ``2**x`` on [0, 1] in float32 with few operations.

After AutoNumerics-Zero (Raghavan et al. 2024): the candidate is a straight-line float32 program; the
score is its accuracy, the maximum error in ULPs, under an operation budget.

**How the candidate is run -- it is not.** The evolvable function ``exp2_approx(x)`` must be straight-line
arithmetic, so the evaluator reads the program *text*, extracts that one function from its syntax tree,
checks it against a whitelist and evaluates the tree itself with numpy float32 arithmetic (a ~50-line
interpreter, `_Interpreter`). No candidate code is imported or executed, here or in a nested process,
so nothing it does at module level (monkeypatching numpy, precomputing a table, rebinding the function
after its definition, reading files) can reach the result: the operations counted are exactly the
operations evaluated. (The issue-7 rule "call the candidate through ``evoforge.evaluators.candidate``" exists to
keep candidate code out of the evaluator's interpreter; here no candidate code runs at all, which is
stricter, and running it in a nested process could not give the op count this guarantee.)

The whitelist (anything else is ``invalid``, with the line and the construct named):

* ``def exp2_approx(x):`` -- one positional argument, no defaults or decorators, defined exactly once
  at the top level of the program;
* statements: an optional docstring, ``name = expr``, ``name op= expr`` and a final ``return expr``;
* expressions: ``+ - * /`` and unary ``-``/``+``; the argument and names assigned earlier in the
  function; int/float literals; ``np.float32(<constant expression>)`` to round a constant to float32.
  No ``**``, no other calls (``np.exp2``, ``np.power``, ``math.pow``, ``np.ldexp``, ``np.frexp``, bit
  tricks), no attributes, subscripts, comparisons, loops, globals or closures.

Semantics are numpy 2's (NEP 50), as if the function ran on a float32 array: an operation between two
Python numbers happens in Python (float64) and is free -- it is constant folding; any operation that
involves the input (or an ``np.float32`` value) happens in float32, with Python numbers rounded to
float32 first. **Operations** = the ``+ - * /``, unary ``-`` and augmented assignments evaluated in
float32; the budget is ``MAX_OPS = 12`` (a degree-6 polynomial in Horner form).

**Accuracy** = ``|y - 2**x| / ulp(2**x)`` with the exact value from float64 ``np.exp2`` (error ~1e-16
relative, negligible against float32's 1.2e-7) and ``ulp = 2**-23`` on [1, 2), ``2**-22`` at 2. There are
1,065,353,217 float32 values in [0, 1]. The score sample holds **every** float32 in [2**-4, 1]
(33,554,433 values: the binades where a polynomial's error varies and where every example we measured
has its maximum) plus, for each lower binade down to the subnormals, 4,097 evenly spaced bit patterns
including both ends, plus 0: 34.0 million inputs, under a second. Below 2**-4 the result is
``c0 + x (c1 + ...)`` with x small, so the error is the slowly varying polynomial error plus the rounding
noise of the last operations, and 4,097 samples per binade come within a small fraction of an ULP of
each binade's maximum. The exhaustive sweep agreed with the sample to every printed digit for the
initial program and both published baselines (README). ``full_sweep(program_path)`` evaluates all
1.07e9 values (about 15 s per program on an idle core); it is a held-out check run by hand
(``python evaluator.py --full-sweep PROGRAM``), not part of every evaluation.

Score (maximise) = ``-max_ulp`` on the sample. Descriptors: ``op_count`` (0..12) and ``mean_ulp``.
Metrics: ``max_ulp``, ``mean_ulp``, the argument of the worst error, the share of correctly rounded
results, the op counts by kind, and ``ns_per_value``: the measured time of the straight-line program on
2**20 float32 values (numpy, median of 5 after a warm-up, timed here with a trusted clock) -- it grows
with the number and kind of operations (a division costs more than a multiplication).
"""

from __future__ import annotations

import ast
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["evaluate", "compile_program", "ExpProgram", "score_sample", "full_sweep", "ulp_errors",
           "MAX_OPS", "FUNCTION"]

FUNCTION = "exp2_approx"
MAX_OPS = 12
EXHAUSTIVE_FROM = 2.0 ** -4          # every float32 in [2**-4, 1] is in the score sample
PER_LOW_BINADE = 4097                # evenly spaced bit patterns per binade below that
CHUNK = 1 << 22                      # values per interpreted chunk (16 MB of float32)
ONE_BITS = 0x3F800000                # bit pattern of 1.0f

_OPS = {ast.Add: ("add", np.add, lambda a, b: a + b), ast.Sub: ("sub", np.subtract, lambda a, b: a - b),
        ast.Mult: ("mul", np.multiply, lambda a, b: a * b), ast.Div: ("div", np.divide, lambda a, b: a / b)}


class ProgramRejected(ValueError):
    """The function breaks the whitelist; the message names the line and the construct."""


def _reject(node: ast.AST, why: str) -> ProgramRejected:
    return ProgramRejected(f"line {getattr(node, 'lineno', '?')}: {why}")


class ExpProgram:
    """A checked ``exp2_approx``: its statements, op counts, and a float32 interpreter for them."""

    def __init__(self, fn: ast.FunctionDef) -> None:
        self.fn = fn
        self.arg = fn.args.args[0].arg
        self.counts = {"add": 0, "sub": 0, "mul": 0, "div": 0, "neg": 0}
        self._check()

    @property
    def op_count(self) -> int:
        return sum(self.counts.values())

    # ---- static check: walk once with "is this value float32 (depends on x)?" instead of values
    def _check(self) -> None:
        body = list(self.fn.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]                                     # the docstring
        if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
            raise _reject(self.fn, f"{FUNCTION} must end with `return <expression>`")
        self.statements = body
        kinds = {self.arg: True}                                # name -> is float32 (vs Python number)
        for stmt in body[:-1]:
            if isinstance(stmt, ast.Assign):
                if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                    raise _reject(stmt, "only `name = expression` assignments are allowed")
                kinds[stmt.targets[0].id] = self._kind(stmt.value, kinds)
            elif isinstance(stmt, ast.AugAssign):
                if not isinstance(stmt.target, ast.Name) or stmt.target.id not in kinds:
                    raise _reject(stmt, "augmented assignment to an unassigned name")
                if type(stmt.op) not in _OPS:
                    raise _reject(stmt, f"operator {type(stmt.op).__name__} is not allowed (only + - * /)")
                value_kind = self._kind(stmt.value, kinds)
                if kinds[stmt.target.id] or value_kind:
                    self.counts[_OPS[type(stmt.op)][0]] += 1
                kinds[stmt.target.id] = kinds[stmt.target.id] or value_kind
            else:
                raise _reject(stmt, f"{type(stmt).__name__} statements are not allowed "
                                    f"(only assignments and a final return)")
        self._kind(body[-1].value, kinds)

    def _kind(self, node: ast.AST, kinds: dict[str, bool]) -> bool:
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float) or not math.isfinite(node.value):
                raise _reject(node, f"literal {node.value!r} is not allowed (finite int/float only)")
            return False
        if isinstance(node, ast.Name):
            if node.id not in kinds:
                raise _reject(node, f"name {node.id!r} is not the argument or a local assigned earlier "
                                    f"(globals, builtins and closures are not allowed)")
            return kinds[node.id]
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _OPS:
                raise _reject(node, f"operator {type(node.op).__name__} is not allowed (only + - * /; "
                                    f"write x * x, not x ** 2)")
            is_f32 = self._kind(node.left, kinds) | self._kind(node.right, kinds)
            if is_f32:
                self.counts[_OPS[type(node.op)][0]] += 1
            return is_f32
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            is_f32 = self._kind(node.operand, kinds)
            if is_f32 and isinstance(node.op, ast.USub):
                self.counts["neg"] += 1
            return is_f32
        if isinstance(node, ast.Call):
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr == "float32" and isinstance(f.value, ast.Name)
                    and f.value.id in ("np", "numpy") and len(node.args) == 1 and not node.keywords):
                raise _reject(node, f"call to {ast.unparse(f)} is not allowed (only np.float32(constant))")
            if any(isinstance(n, ast.Name) for n in ast.walk(node.args[0])):
                raise _reject(node, "np.float32() takes a constant expression only (no names)")
            self._kind(node.args[0], {})
            return True
        raise _reject(node, f"{type(node).__name__} expressions are not allowed "
                            f"({ast.unparse(node)[:60]!r}; only + - * /, names, numbers, np.float32(constant))")

    # ---- evaluation: the same walk with values (Python numbers or float32 arrays/scalars)
    def __call__(self, x: np.ndarray) -> np.ndarray:
        env: dict[str, Any] = {self.arg: x}
        with np.errstate(all="ignore"):
            for stmt in self.statements[:-1]:
                if isinstance(stmt, ast.Assign):
                    env[stmt.targets[0].id] = self._eval(stmt.value, env)
                else:
                    env[stmt.target.id] = self._apply(stmt.op, env[stmt.target.id], self._eval(stmt.value, env))
            y = self._eval(self.statements[-1].value, env)
        return np.broadcast_to(np.asarray(y, dtype=np.float32) if not isinstance(y, np.ndarray) else y,
                               x.shape).astype(np.float32, copy=False)

    def _eval(self, node: ast.AST, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BinOp):
            return self._apply(node.op, self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, env)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):                           # np.float32(constant)
            return np.float32(self._eval(node.args[0], env))
        raise AssertionError(f"unchecked node {node!r}")         # _check rejected everything else

    @staticmethod
    def _apply(op: ast.operator, a: Any, b: Any) -> Any:
        _, ufunc, python = _OPS[type(op)]
        if not isinstance(a, (np.ndarray, np.generic)) and not isinstance(b, (np.ndarray, np.generic)):
            try:
                return python(a, b)                              # constant folding, in Python
            except (ZeroDivisionError, OverflowError) as exc:
                raise ProgramRejected(f"constant expression fails: {exc}") from None
        if not isinstance(a, (np.ndarray, np.generic)):
            a = np.float32(a)                                    # NEP 50: the Python number becomes float32
        if not isinstance(b, (np.ndarray, np.generic)):
            b = np.float32(b)
        return ufunc(a, b, dtype=np.float32)


def compile_program(source: str) -> ExpProgram:
    """Parse a program's text and check its ``exp2_approx``; raises `ProgramRejected`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ProgramRejected(f"the program does not parse: {exc}") from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == FUNCTION]
    if len(defs) != 1:
        raise ProgramRejected(f"the program must define {FUNCTION}(x) exactly once at the top level "
                              f"(found {len(defs)})")
    fn = defs[0]
    a = fn.args
    if isinstance(fn, ast.AsyncFunctionDef) or fn.decorator_list or len(a.args) != 1 or a.posonlyargs \
            or a.kwonlyargs or a.vararg or a.kwarg or a.defaults:
        raise _reject(fn, f"{FUNCTION} must be a plain `def {FUNCTION}(x):` with one argument, no decorators")
    return ExpProgram(fn)


# ---- inputs and errors ---------------------------------------------------------------------------

def _bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return bits.astype(np.uint32).view(np.float32)


def score_sample() -> list[np.ndarray]:
    """The score's inputs, in chunks of float32: all of [2**-4, 1] plus a dense sample below."""
    low_bits = int(np.float32(EXHAUSTIVE_FROM).view(np.uint32))
    parts = [np.array([0], dtype=np.uint32)]
    edges = list(range(0, low_bits + 1, 1 << 23))               # binade starts (bits), 0 = subnormals
    for start, stop in zip(edges[:-1], edges[1:]):
        parts.append(np.unique(np.linspace(max(start, 1), stop - 1, PER_LOW_BINADE).astype(np.uint32)))
    low = np.concatenate(parts)
    chunks = [_bits_to_f32(low)]
    for start in range(low_bits, ONE_BITS + 1, CHUNK):
        chunks.append(_bits_to_f32(np.arange(start, min(start + CHUNK, ONE_BITS + 1), dtype=np.uint32)))
    return chunks


def ulp_errors(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``|y - 2**x| / ulp(2**x)`` in float64 (ulp = 2**-23 on [1, 2), 2**-22 at 2)."""
    exact = np.exp2(x.astype(np.float64))
    err = y.astype(np.float64)
    err -= exact
    np.abs(err, out=err)
    err *= 2.0 ** 23
    if x.size and exact.max() >= 2.0:               # only x = 1 (or beyond): the next binade's ulp
        err[exact >= 2.0] *= 0.5
    return err


def _sweep(program: ExpProgram, chunks) -> dict[str, float]:
    worst, worst_x, total, n, rounded = -1.0, 0.0, 0.0, 0, 0
    for x in chunks:
        y = program(x)
        err = ulp_errors(x, y)
        if not np.all(np.isfinite(err)):
            bad = x[~np.isfinite(err)][0]
            raise ProgramRejected(f"{FUNCTION}({float(bad)!r}) is not finite ({float(program(np.array([bad]))[0])!r})")
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, worst_x = float(err[i]), float(x[i])
        total += float(np.sum(err))
        rounded += int(np.count_nonzero(err <= 0.5))
        n += x.size
    return {"max_ulp": worst, "worst_x": worst_x, "mean_ulp": total / n, "correctly_rounded": rounded / n,
            "n_inputs": float(n)}


def full_sweep(program_path: str) -> dict[str, float]:
    """All 1,065,353,217 float32 values in [0, 1] (about a minute): the held-out exhaustive check."""
    program = compile_program(Path(program_path).read_text())
    chunks = (_bits_to_f32(np.arange(s, min(s + CHUNK, ONE_BITS + 1), dtype=np.uint32))
              for s in range(0, ONE_BITS + 1, CHUNK))
    return _sweep(program, chunks)


def _time_ns_per_value(program: ExpProgram) -> float:
    x = np.random.default_rng(0).random(1 << 20, dtype=np.float32)
    program(x)                                                  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        program(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / x.size * 1e9


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate(program_path: str) -> dict[str, Any]:
    """Check ``exp2_approx`` against the whitelist and budget, then score its max ULP error."""
    try:
        program = compile_program(Path(program_path).read_text())
        if program.op_count > MAX_OPS:
            return _invalid(f"{FUNCTION} uses {program.op_count} float32 operations, over the budget of "
                            f"{MAX_OPS} ({program.counts})")
        stats = _sweep(program, score_sample())
    except ProgramRejected as exc:
        return _invalid(str(exc))
    ns = _time_ns_per_value(program)
    features = {"op_count": float(program.op_count), "mean_ulp": stats["mean_ulp"]}
    metrics = dict(stats)
    metrics.update({f"ops_{k}": float(v) for k, v in program.counts.items()})
    metrics["op_count"] = float(program.op_count)
    metrics["ns_per_value"] = ns
    summary = (f"max error {stats['max_ulp']:.4f} ULP at x = {stats['worst_x']!r}; mean {stats['mean_ulp']:.4f} "
               f"ULP; {100 * stats['correctly_rounded']:.2f}% within 0.5 ULP; {program.op_count} float32 ops "
               f"{program.counts} (budget {MAX_OPS}); {ns:.2f} ns per value (numpy, 2**20 values)")
    return {"score": -stats["max_ulp"], "features": features, "metrics": metrics, "artifacts": {"summary": summary}}


if __name__ == "__main__":  # python evaluator.py --full-sweep PROGRAM
    if len(sys.argv) == 3 and sys.argv[1] == "--full-sweep":
        print(full_sweep(sys.argv[2]))
    else:
        print("usage: python evaluator.py --full-sweep PROGRAM", file=sys.stderr)
        sys.exit(2)
