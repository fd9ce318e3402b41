"""Tiny task folders written into a test's tmp_path: fast to evaluate, easy to reason about."""

from __future__ import annotations

from pathlib import Path

# An evaluator that imports the candidate in-process (as old-style evaluators do) and calls its run(),
# which returns a score or a whole result dict: the sandbox tests' stand-in for any evaluator.
IMPORTING_EVALUATOR = """
import importlib.util

def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate_under_test", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.run()
    return out if isinstance(out, dict) else {"score": out}
"""

TINY_PROGRAM = '''"""Approximate 3 * x with a few constants (a toy to evolve)."""

# EVOLVE-BLOCK-START
def f(x):
    a = 1.5
    b = 0.25
    return a * x + b
# EVOLVE-BLOCK-END


def run():
    return [f(x) for x in range(10)]
'''

TINY_EVALUATOR = '''import importlib.util


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ys = module.run()
    error = sum(abs(float(y) - 3.0 * x) for x, y in enumerate(ys)) / len(ys)
    return {
        "score": -error,
        "features": {"slope": (float(ys[-1]) - float(ys[0])) / 9.0},
        "metrics": {"error": error},
        "artifacts": {"worst": f"f(9) = {float(ys[-1]):.4g}, want 27"},
    }
'''

TINY_TOML = '''name = "tiny"
description = "Make f(x) equal 3 * x for x in 0..9."
objective = "maximize"

[archive]
kind = "grid"
islands = {islands}
migration_interval = 5

[[descriptors]]
name = "slope"
range = [0.0, 6.0]
bins = 12

[[descriptors]]
name = "code_length"
range = [0.0, 40.0]
bins = 8

[limits]
timeout_s = 10
memory_mb = 1024
'''


def write_tiny_task(path: Path, *, islands: int = 2, program: str = TINY_PROGRAM,
                    evaluator: str = TINY_EVALUATOR) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "initial_program.py").write_text(program)
    (path / "evaluator.py").write_text(evaluator)
    (path / "task.toml").write_text(TINY_TOML.format(islands=islands))
    return path


# TINY_EVALUATOR with a functional-fingerprint probe: f at three fixed points, called through the nested
# candidate process as the built-in evaluators do. The full evaluation says so on stderr (stored with the
# row), which is how a test sees that a behavioural duplicate was not evaluated.
PROBING_EVALUATOR = '''import sys

from evoforge.evaluators.candidate import CandidateSession

PROBE_X = (0, 1, 2)


def _values(program_path, xs):
    with CandidateSession(program_path, timeout_s=10, import_timeout_s=30) as candidate:
        return [candidate.call("f", x) for x in xs]


def probe(program_path):
    return _values(program_path, PROBE_X)


def evaluate(program_path):
    print("FULL EVALUATION", file=sys.stderr)
    ys = _values(program_path, range(10))
    error = sum(abs(float(y) - 3.0 * x) for x, y in enumerate(ys)) / len(ys)
    return {"score": -error, "features": {"slope": (float(ys[-1]) - float(ys[0])) / 9.0},
            "metrics": {"error": error}}
'''
