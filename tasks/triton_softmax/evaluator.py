"""Evaluator for triton_softmax: a row-wise softmax kernel written in Triton (GPU task, ``num_gpus = 1``).

What evolves: a ``@triton.jit`` kernel and the wrapper ``softmax(x)`` that launches it on a 2-D float32
CUDA tensor. The evaluation has three steps, each a clear verdict:

1. **Structure** (any machine, no torch needed; failures are ``invalid``): the program parses; it
   defines at least one ``@triton.jit`` function and a top-level ``def softmax(x)`` with one positional
   argument that launches a jit kernel (``kernel[grid](...)``); it does not call a library softmax
   (``torch.softmax``, ``F.softmax``, ``x.softmax``, ``log_softmax``: the kernel must be the candidate's),
   does not assign to attributes at module level or call ``setattr``/``exec``/``eval``/``__import__``
   (monkeypatching torch could fake the timing harness), and the frozen helpers ``run_softmax`` and
   ``benchmark`` are exactly the initial program's (compared as syntax trees).
2. **Environment**: torch and triton importable and ``torch.cuda.is_available()``. Without them the result
   has status ``error`` (not the candidate's fault) with a one-line error saying what is missing
   (e.g. ``triton_softmax needs an NVIDIA GPU with torch and triton: torch is not installed``), so
   ``evoforge eval`` on a CPU-only machine reports that instead of a traceback. The task declares
   ``[resources] num_gpus = 1`` so Ray places it on a GPU node.
3. **Correctness and speed** (GPU): the candidate runs in a nested process (`evoforge.evaluators.candidate`).
   ``run_softmax(x)`` on `CORRECTNESS_SHAPES` (seeded numpy inputs, scales 1 and 100) must match a float64
   numpy softmax within ``|y - ref| <= ATOL + RTOL |ref|``. Timing uses this process's clock only: a
   round trip of ``benchmark(rows, cols, seed, k)`` (k softmax calls on one device tensor, then a
   synchronising ``.item()``) for ``k = 1`` and ``k = 1 + ITERATIONS``; their difference divided by
   ``ITERATIONS`` is the time per call, with the IPC, the input generation and the launch of the
   process cancelled out; median of ``REPEATS``. The same measurement on the trusted
   ``reference_softmax.py`` (``torch.softmax`` behind the same harness) gives the reference, and the
   checksum ``benchmark`` returns must be ``rows`` (a softmax's rows sum to 1).

Score (maximise) = the geometric mean over `TIMING_SHAPES` of ``t_torch / t_candidate``: speed-up over
PyTorch's softmax on the same GPU. Descriptors: ``log10_max_error`` (accuracy, [-9, -4]) and the built-in
``code_length``. Residual risk, stated plainly: the timing harness runs in the candidate's process, so a
candidate that patched CUDA synchronisation through means the static check does not see could make calls
look faster; the engine keeps the harness frozen and the check rejects the direct ways.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["evaluate", "check_structure", "gpu_problem", "numpy_softmax", "CORRECTNESS_SHAPES", "TIMING_SHAPES"]

TASK_DIR = Path(__file__).resolve().parent
WRAPPER = "softmax"
FROZEN = ("run_softmax", "benchmark")
CORRECTNESS_SHAPES = ((1, 1), (3, 7), (64, 1000), (257, 4097), (128, 16384))
TIMING_SHAPES = ((4096, 1024), (4096, 4096), (1024, 16384))
ATOL, RTOL = 1e-6, 1e-4
ITERATIONS = 100
REPEATS = 5
SEED = 20250101
CALL_TIMEOUT_S = 120.0                 # the first call compiles the kernel
LIBRARY_SOFTMAX = ("softmax", "log_softmax", "softmin")


class StructureError(ValueError):
    """The program does not have the required shape; the message names what is missing."""


def _is_triton_jit(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr in ("jit", "autotune", "heuristics")
            and isinstance(target.value, ast.Name) and target.value.id == "triton") or \
        (isinstance(target, ast.Name) and target.id == "jit")


def _frozen_dumps(tree: ast.Module) -> dict[str, str]:
    return {n.name: ast.dump(n) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in FROZEN}


def check_structure(source: str) -> dict[str, Any]:
    """Static checks (step 1). Returns {"kernels": [...]} or raises `StructureError`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise StructureError(f"the program does not parse: {exc}") from None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    kernels = [name for name, fn in functions.items() if any(_is_triton_jit(d) for d in fn.decorator_list)]
    if not kernels:
        raise StructureError("the program defines no @triton.jit kernel at the top level")
    wrapper = functions.get(WRAPPER)
    if wrapper is None:
        raise StructureError(f"the program defines no top-level {WRAPPER}(x) wrapper")
    a = wrapper.args
    if len(a.args) != 1 or a.vararg or a.kwonlyargs or a.kwarg or a.posonlyargs or a.defaults:
        raise StructureError(f"{WRAPPER} must take exactly one argument, {WRAPPER}(x), got "
                             f"{WRAPPER}({ast.unparse(a)})")
    launches = [n for n in ast.walk(wrapper) if isinstance(n, ast.Call) and isinstance(n.func, ast.Subscript)
                and isinstance(n.func.value, ast.Name) and n.func.value.id in kernels]
    if not launches and not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions
                                for n in ast.walk(wrapper)):
        raise StructureError(f"{WRAPPER}(x) launches no jit kernel (expected `{kernels[0]}[grid](...)`)")
    evolvable = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name in FROZEN)]
    for node in (sub for top in evolvable for sub in ast.walk(top)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in LIBRARY_SOFTMAX:
                raise StructureError(f"line {node.lineno}: calling a library {name}() is not allowed; "
                                     f"the softmax must be computed by your Triton kernel")
            if name in ("setattr", "exec", "eval", "__import__", "compile"):
                raise StructureError(f"line {node.lineno}: {name}() is not allowed")
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)):
                raise StructureError(f"line {node.lineno}: assigning to {ast.unparse(target)} at module level "
                                     f"is not allowed (no monkeypatching)")
    initial = _frozen_dumps(ast.parse((TASK_DIR / "initial_program.py").read_text()))
    got = _frozen_dumps(tree)
    changed = [name for name in FROZEN if got.get(name) != initial[name]]
    if changed:
        raise StructureError(f"the frozen helper(s) {', '.join(changed)} differ from the task's initial program; "
                             f"only the kernel and the {WRAPPER} wrapper may change")
    return {"kernels": kernels}


def gpu_problem() -> str | None:
    """None when torch, triton and a CUDA GPU are usable here, else what is missing (one line)."""
    missing = [m for m in ("torch", "triton") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    import torch  # noqa: PLC0415 - heavy, and only on machines that have it

    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (no CUDA GPU visible)"
    return None


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _invalid(message: str, **metrics: float) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": dict(metrics), "artifacts": {"violation": message}}


def _per_call_s(session: Any, rows: int, cols: int) -> tuple[float, float]:
    """(seconds per softmax call, checksum), by differencing two round trips (see module docstring)."""
    samples, checksum = [], math.nan
    session.call("benchmark", rows, cols, SEED, 1)                                  # warm-up and compile
    for _ in range(REPEATS):
        start = time.perf_counter()
        session.call("benchmark", rows, cols, SEED, 1)
        one = time.perf_counter() - start
        start = time.perf_counter()
        checksum = session.call("benchmark", rows, cols, SEED, 1 + ITERATIONS)
        many = time.perf_counter() - start
        samples.append(max(many - one, 1e-9) / ITERATIONS)
    return statistics.median(samples), checksum


def evaluate(program_path: str) -> dict[str, Any]:
    """Structure, then environment, then correctness and timing on the GPU."""
    try:
        structure = check_structure(Path(program_path).read_text())
    except StructureError as exc:
        return _invalid(str(exc))
    problem = gpu_problem()
    if problem is not None:
        # Not the candidate's fault, so `error`, not `invalid`; one line (an exception would print a
        # traceback), once, in the `error` artifact.
        return {"status": "error", "error": f"triton_softmax needs an NVIDIA GPU with torch and triton: {problem}"}

    from evoforge.evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession  # noqa: PLC0415

    rng = np.random.default_rng(SEED)
    worst = 0.0
    try:
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate:
            for rows, cols in CORRECTNESS_SHAPES:
                for scale in (1.0, 100.0):
                    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
                    y = candidate.call("run_softmax", x)
                    ref = numpy_softmax(x)
                    if not isinstance(y, np.ndarray) or y.shape != x.shape or y.dtype.kind != "f":
                        return _invalid(f"run_softmax on a {rows}x{cols} input returned "
                                        f"{getattr(y, 'shape', type(y).__name__)}, expected a float array {x.shape}")
                    err = np.abs(y.astype(np.float64) - ref)
                    if not np.all(np.isfinite(y)) or np.any(err > ATOL + RTOL * ref):
                        return _invalid(f"softmax of a {rows}x{cols} input (scale {scale:g}) is wrong: max error "
                                        f"{float(np.nanmax(err)) if np.isfinite(err).any() else math.nan:.3e}")
                    worst = max(worst, float(err.max()))
            speedups, lines = [], []
            with CandidateSession(TASK_DIR / "reference_softmax.py", timeout_s=CALL_TIMEOUT_S) as reference:
                for rows, cols in TIMING_SHAPES:
                    t_cand, checksum = _per_call_s(candidate, rows, cols)
                    if not abs(checksum - rows) <= 1e-3 * rows:
                        return _invalid(f"benchmark({rows}, {cols}) returned a checksum of {checksum!r}, not {rows}")
                    t_ref, _ = _per_call_s(reference, rows, cols)
                    speedups.append(t_ref / t_cand)
                    lines.append(f"{rows}x{cols}: {1e6 * t_cand:.1f} us vs torch {1e6 * t_ref:.1f} us")
    except CandidateInvalid as exc:
        return _invalid(f"the program returned something that is not plain data: {exc}")
    except CandidateError:
        raise
    score = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
    metrics = {"max_abs_error": worst, "geomean_speedup_vs_torch": score}
    metrics.update({f"speedup_{r}x{c}": s for (r, c), s in zip(TIMING_SHAPES, speedups)})
    log_err = min(max(math.log10(worst) if worst > 0 else -9.0, -9.0), -4.0)
    return {"score": score, "features": {"log10_max_error": log_err}, "metrics": metrics,
            "artifacts": {"summary": f"kernels {structure['kernels']}; correct (max error {worst:.2e}); "
                                     + "; ".join(lines) + f"; geometric-mean speed-up {score:.3f}x"}}
