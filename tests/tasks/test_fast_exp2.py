"""The built-in fast_exp2 task: a whitelisted float32 interpreter, ULP errors, the op budget.

The published polynomial baselines (degree 5: ~2.4 ULP with 10 ops, degree 6: ~1.2 ULP with 12 ops,
AutoNumerics-Zero) are reproduced with Remez coefficients; anything outside straight-line arithmetic
is invalid; module-level code in the program never runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "fast_exp2"


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("fast_exp2_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()

# Absolute-error minimax (Remez) coefficients of 2**x on [0, 1], rounded to float32; lowest degree first.
REMEZ5 = [0.9999998807907104, 0.6931547522544861, 0.24013970792293549, 0.05586624518036842,
          0.008942829445004463, 0.0018964611226692796]
REMEZ6 = [1.0, 0.6931469440460205, 0.24023054540157318, 0.055480219423770905, 0.009684976190328598,
          0.0012384303845465183, 0.00021889229537919164]


def horner(coefficients: list[float]) -> str:
    expr = f"np.float32({coefficients[-1]!r})"
    for c in reversed(coefficients[:-1]):
        expr = f"np.float32({c!r}) + x * ({expr})"
    return f"import numpy as np\n\n\ndef exp2_approx(x):\n    return {expr}\n"


def _write(tmp_path: Path, source: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return str(path)


def _native(source: str):
    """Run the function for real (trusted test code only) to compare with the interpreter."""
    namespace: dict = {}
    exec(compile(textwrap.dedent(source), "<test>", "exec"), namespace)
    return namespace["exp2_approx"]


def _assert_invalid(result: dict, needle: str) -> None:
    assert result.get("status") == "invalid", result
    assert "score" not in result and needle in result["error"], result["error"]


# ---------------------------------------------------------------------------------------------
# published baselines and the initial program


def test_initial_program_scores_the_taylor_polynomial():
    result = ev.evaluate(str(TASK / "initial_program.py"))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] == pytest.approx(-1432.9454937595874, rel=1e-9)
    assert result["features"]["op_count"] == 10.0 and result["metrics"]["ops_mul"] == 5.0
    assert result["metrics"]["n_inputs"] == 34058365.0 and result["metrics"]["ns_per_value"] > 0
    raw = tomllib.loads((TASK / "task.toml").read_text())
    for spec in raw["descriptors"]:
        assert spec["name"] in result["features"]
    assert 0 <= result["features"]["op_count"] <= 12


@pytest.mark.parametrize("coefficients, ops, published", [(REMEZ5, 10, 2.4), (REMEZ6, 12, 1.2)])
def test_published_polynomial_baselines(tmp_path, coefficients, ops, published):
    result = ev.evaluate(_write(tmp_path, horner(coefficients)))
    assert result.get("status", "ok") == "ok", result
    assert result["features"]["op_count"] == ops
    assert result["metrics"]["max_ulp"] == pytest.approx(published, abs=0.25)   # measured 2.22 and 1.37


def test_score_sample_covers_the_top_binades_exhaustively():
    chunks = ev.score_sample()
    low, top = chunks[0], chunks[1:]
    assert all(c.dtype == np.float32 for c in chunks)
    assert low[0] == 0.0 and np.float32(1.4e-45) in low and np.all(np.diff(low) > 0)
    assert low[-1] < 2.0 ** -4 == top[0][0] and top[-1][-1] == 1.0
    bits = [c.view(np.uint32) for c in top]
    assert all(np.all(np.diff(b) == 1) for b in bits)                       # no gaps inside a chunk
    assert all(int(a[-1]) + 1 == int(b[0]) for a, b in zip(bits, bits[1:]))  # nor between chunks
    assert sum(c.size for c in top) == 4 * 2 ** 23 + 1                      # every float32 in [2**-4, 1]


def test_ulp_error_definition():
    x = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    exact = np.exp2(x.astype(np.float64))
    y = (exact + np.array([2.0 ** -23, 0.0, 2.0 ** -22])).astype(np.float32)
    err = ev.ulp_errors(x, y)
    assert err[0] == pytest.approx(1.0) and err[2] == pytest.approx(1.0)
    assert err[1] == pytest.approx(abs(float(np.float32(np.sqrt(2.0))) - np.sqrt(2.0)) * 2 ** 23)


# ---------------------------------------------------------------------------------------------
# the interpreter is exactly numpy 2's float32 semantics


@pytest.mark.parametrize("source", [
    (TASK / "initial_program.py").read_text(),
    horner(REMEZ6),
    """
    import numpy as np
    def exp2_approx(x):
        '''mixed forms: folding, augmented assignment, division, negation, ints'''
        a = 1.0 / 3.0 + 2 * 0.25
        t = x * x
        t += a
        u = -t / (np.float32(3) - x)
        u *= 2
        return 1 + x - u * np.float32(0.1 + 0.2)
    """,
])
def test_interpreter_matches_native_float32_execution(source):
    program = ev.compile_program(textwrap.dedent(source))
    x = np.random.default_rng(0).random(100_000, dtype=np.float32)
    x[:3] = [0.0, 1.0, np.float32(1e-40)]
    expected = _native(source)(x)
    got = program(x)
    assert got.dtype == np.float32 and expected.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_op_counting_folds_constants_and_counts_each_float32_operation():
    program = ev.compile_program(textwrap.dedent("""
        def exp2_approx(x):
            c = (1.0 + 2.0) * 3.0 / 4.0 - 1      # constants only: folded, free
            y = -x                               # 1 neg
            y -= c                               # 1 sub
            return y * x + c / x                 # mul, add, div
    """))
    assert program.counts == {"add": 1, "sub": 1, "mul": 1, "div": 1, "neg": 1} and program.op_count == 5


def test_over_the_budget_is_invalid(tmp_path):
    coefficients = [1.0, 0.69, 0.24, 0.055, 0.0096, 0.0013, 0.00015, 0.00002]   # degree 7: 14 ops
    _assert_invalid(ev.evaluate(_write(tmp_path, horner(coefficients))), "14 float32 operations, over the budget of 12")


# ---------------------------------------------------------------------------------------------
# rejected constructs and cheating


@pytest.mark.parametrize("body, needle", [
    ("return np.exp2(x)", "call to np.exp2 is not allowed"),
    ("return np.power(2.0, x)", "call to np.power is not allowed"),
    ("return 2.0 ** x", "operator Pow is not allowed"),
    ("return x ** 2 + 1", "operator Pow is not allowed"),
    ("return math.pow(2.0, x)", "call to math.pow is not allowed"),
    ("return np.ldexp(np.float32(1), 0) + x", "call to np.ldexp is not allowed"),
    ("return TABLE[0] + x", "Subscript expressions are not allowed"),
    ("return x + OFFSET", "name 'OFFSET' is not the argument"),
    ("return np.float32(x)", "constant expression only"),
    ("return x.astype(np.float64)", "call to x.astype is not allowed"),
    ("return np.pi + x", "Attribute expressions are not allowed"),
    ("return x if True else x", "IfExp expressions are not allowed"),
    ("return x + True", "literal True is not allowed"),
    ("for _ in range(2):\n        x = x + 1\n    return x", "For statements are not allowed"),
    ("import numpy\n    return x", "Import statements are not allowed"),
    ("y = x + 1", "must end with `return <expression>`"),
    ("return (lambda t: t)(x)", "not allowed"),
])
def test_forbidden_constructs_are_invalid(tmp_path, body, needle):
    source = f"import math\nimport numpy as np\nTABLE = [1.0]\nOFFSET = 1.0\n\ndef exp2_approx(x):\n    {body}\n"
    _assert_invalid(ev.evaluate(_write(tmp_path, source)), needle)


@pytest.mark.parametrize("source, needle", [
    ("def f(x):\n    return x\n", "must define exp2_approx(x) exactly once"),
    ("def exp2_approx(x):\n    return x\ndef exp2_approx(x):\n    return x\n", "exactly once"),
    ("def exp2_approx(x, y=1):\n    return x\n", "one argument"),
    ("import functools\n@functools.cache\ndef exp2_approx(x):\n    return x\n", "no decorators"),
    ("def exp2_approx(x):\n    return x +\n", "does not parse"),
    ("def exp2_approx(x):\n    return x / 0.0 + 1\n", "is not finite"),
    ("def exp2_approx(x):\n    return x + 1.0 / 0.0\n", "constant expression fails"),
    ("import numpy as np\ndef exp2_approx(x):\n    return x * np.float32(1e39)\n", "is not finite"),
])
def test_malformed_programs_are_invalid(tmp_path, source, needle):
    _assert_invalid(ev.evaluate(_write(tmp_path, source)), needle)


def test_module_level_code_never_runs_so_patches_and_rebinding_change_nothing(tmp_path):
    honest = ev.evaluate(_write(tmp_path, horner(REMEZ6), "honest.py"))
    cheat = horner(REMEZ6) + textwrap.dedent("""
        np.add = np.subtract                           # monkeypatching numpy
        exp2_approx = lambda x: np.exp2(x)             # rebinding the function to the exact answer
        globals()["exp2_approx"] = np.exp2
        open("answer_key.txt", "w").write("leak")      # side effects at import
        raise SystemExit("this line would stop an import")
    """)
    result = ev.evaluate(_write(tmp_path, cheat, "cheat.py"))
    assert result["score"] == honest["score"] and result["metrics"]["op_count"] == 12
    assert not (tmp_path / "answer_key.txt").exists()


def test_offline_run_and_tasks_listing(tmp_path):
    from evoforge.engine.task import builtin_tasks

    assert "fast_exp2" in builtin_tasks()                  # what `evoforge tasks` lists (CLI: test_triton_softmax)
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "fast_exp2", "--iterations", "5", "--quiet",
                           "--seed", "0", "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert rows and any(r.get("status") == "ok" for r in rows)
