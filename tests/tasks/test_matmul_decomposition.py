"""The built-in matmul_decomposition task: exact verification of <n,m,p> tensor decompositions.

Strassen is rank 7 and verifies; the naive algorithm is rank 8 (27 for <3,3,3>) and verifies; a wrong
decomposition does not; cheating or malformed candidates are invalid; the candidate runs in a nested
process, so patching numpy there cannot change the verdict.
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
TASK = REPO / "tasks" / "matmul_decomposition"
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("matmul_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()

# Strassen (1969) in this task's convention: a = A.flat (a11, a12, a21, a22), same for B and C.
STRASSEN_U = np.array([[1, 0, 1, 0, 1, -1, 0], [0, 0, 0, 0, 1, 0, 1], [0, 1, 0, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0, -1]])
STRASSEN_V = np.array([[1, 1, 0, -1, 0, 1, 0], [0, 0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0, 1], [1, 0, -1, 0, 1, 0, 1]])
STRASSEN_W = np.array([[1, 0, 0, 1, -1, 0, 1], [0, 0, 1, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0, 0], [1, -1, 1, 0, 0, 1, 0]])


def naive(n: int, m: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One column per product A[i, j] * B[j, k] -> C[i, k]: rank n*m*p."""
    u, v, w = (np.zeros((rows, n * m * p)) for rows in (n * m, m * p, n * p))
    r = 0
    for i in range(n):
        for j in range(m):
            for k in range(p):
                u[i * m + j, r] = v[j * p + k, r] = w[i * p + k, r] = 1.0
                r += 1
    return u, v, w


def _program(tmp_path: Path, search_body: str, name: str = "candidate.py") -> str:
    """The initial program with its EVOLVE-BLOCK replaced by ``LIBRARY`` + ``search_body``."""
    search_body = LIBRARY.strip("\n") + "\n\n" + textwrap.dedent(search_body).strip("\n")
    text = (TASK / "initial_program.py").read_text()
    head, rest = text.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / name
    path.write_text(head + START + "\n" + textwrap.dedent(search_body).strip("\n") + "\n" + END + "\n" + tail)
    return str(path)


LIBRARY = f"""
STRASSEN = (np.array({STRASSEN_U.tolist()}), np.array({STRASSEN_V.tolist()}), np.array({STRASSEN_W.tolist()}))

def naive(n, m, p):
    u, v, w = (np.zeros((rows, n * m * p)) for rows in (n * m, m * p, n * p))
    r = 0
    for i in range(n):
        for j in range(m):
            for k in range(p):
                u[i * m + j, r] = v[j * p + k, r] = w[i * p + k, r] = 1.0
                r += 1
    return u, v, w
"""


def _assert_invalid(result: dict, needle: str) -> None:
    assert result.get("status") == "invalid", result
    assert "score" not in result and needle in result["error"], result["error"]


# ---------------------------------------------------------------------------------------------
# verification


def test_strassen_is_rank_7_and_verifies():
    result = ev.verify(STRASSEN_U, STRASSEN_V, STRASSEN_W, (2, 2, 2))
    assert result["exact"] and result["rank"] == 7 and result["error"] == 0.0
    assert result["density"] == pytest.approx(36 / 84)
    assert ev.score_target(result, (2, 2, 2)) == pytest.approx(8 / 7)


def test_strassen_multiplies_matrices():
    """The convention in the docstring: M = (U^T a) * (V^T b), c = W M."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(-9, 9, (2, 2)), rng.integers(-9, 9, (2, 2))
    products = (STRASSEN_U.T @ a.ravel()) * (STRASSEN_V.T @ b.ravel())
    assert np.array_equal(STRASSEN_W @ products, (a @ b).ravel())


@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 3, 3), (2, 3, 4)])
def test_naive_decomposition_verifies_with_rank_nmp(shape):
    result = ev.verify(*naive(*shape), shape)
    assert result["exact"] and result["rank"] == shape[0] * shape[1] * shape[2]
    assert ev.score_target(result, shape) == 1.0


def test_a_wrong_decomposition_does_not_verify():
    w = STRASSEN_W.copy()
    w[3, 1] = 1                       # one sign flipped in C22
    result = ev.verify(STRASSEN_U, STRASSEN_V, w, (2, 2, 2))
    # M2 = (a21 + a22) b11 now enters C22 with +2 too many: two residual entries of 2, norm sqrt(8).
    assert not result["exact"] and result["error"] == pytest.approx(np.sqrt(8) / np.sqrt(8))
    assert ev.score_target(result, (2, 2, 2)) == -1.0
    dropped = ev.verify(STRASSEN_U[:, :6], STRASSEN_V[:, :6], STRASSEN_W[:, :6], (2, 2, 2))
    assert not dropped["exact"] and dropped["rank"] == 6


def test_rounding_accepts_small_noise_and_rationals_but_not_far_entries():
    rng = np.random.default_rng(1)
    noisy = [f + rng.uniform(-1e-3, 1e-3, f.shape) for f in (STRASSEN_U, STRASSEN_V, STRASSEN_W)]
    assert ev.verify(*noisy, (2, 2, 2))["exact"]
    halves = (STRASSEN_U / 2, STRASSEN_V * 3, STRASSEN_W * (2 / 3))     # (1/2)(3)(2/3) = 1 per column
    assert ev.verify(*halves, (2, 2, 2))["exact"]
    far = [STRASSEN_U + 0.05 * (STRASSEN_U != 0), STRASSEN_V, STRASSEN_W]
    result = ev.verify(*far, (2, 2, 2))
    assert not result["exact"] and not result["rounded"] and result["error"] > 0


def test_zero_columns_do_not_count_towards_the_rank():
    pad = np.zeros((4, 3))
    u, v, w = (np.hstack([f, pad + (1.0 if f is STRASSEN_U else 0.0)]) for f in (STRASSEN_U, STRASSEN_V, STRASSEN_W))
    result = ev.verify(u, v, w, (2, 2, 2))
    assert result["exact"] and result["rank"] == 7 and result["columns"] == 10


@pytest.mark.parametrize("factors, needle", [
    ((STRASSEN_U[:3], STRASSEN_V, STRASSEN_W), "U must have shape (4, R)"),
    ((STRASSEN_U, STRASSEN_V[:, :6], STRASSEN_W), "same number of columns"),
    ((STRASSEN_U.astype(float) * np.nan, STRASSEN_V, STRASSEN_W), "non-finite"),
    ((STRASSEN_U * 1e4, STRASSEN_V, STRASSEN_W), "larger than 1000"),
    ((STRASSEN_U.astype(str), STRASSEN_V, STRASSEN_W), "real numbers"),
    ((np.zeros((4, 17)), np.zeros((4, 17)), np.zeros((4, 17))), "R = 17 must be in 1..16"),
    ((STRASSEN_U.ravel(), STRASSEN_V, STRASSEN_W), "U must have shape (4, R)"),
])
def test_malformed_factors_are_rejected(factors, needle):
    result = ev.verify(*factors, (2, 2, 2))
    assert needle in result["invalid"], result


# ---------------------------------------------------------------------------------------------
# whole evaluations (the candidate runs in a nested process)


def test_initial_program_evaluates_inexact_and_deterministic():
    result = ev.evaluate(str(TASK / "initial_program.py"))
    assert result.get("status", "ok") == "ok", result
    assert -1.0 < result["score"] < 0.0                   # two inexact fits, small errors
    assert result["metrics"]["rank_222"] == 7 and result["metrics"]["rank_333"] == 23
    assert result["metrics"]["n_exact"] == 0.0
    raw = tomllib.loads((TASK / "task.toml").read_text())
    for spec in raw["descriptors"]:
        low, high = spec["range"]
        assert low <= result["features"][spec["name"]] <= high
    assert ev.evaluate(str(TASK / "initial_program.py")) == result


def test_strassen_program_scores_above_naive_above_inexact(tmp_path):
    strassen = _program(tmp_path, """
        def search(n, m, p):
            return STRASSEN if (n, m, p) == (2, 2, 2) else naive(n, m, p)
        """, "strassen.py")
    plain = _program(tmp_path, """
        def search(n, m, p):
            return naive(n, m, p)
        """, "naive.py")
    s, p = ev.evaluate(strassen), ev.evaluate(plain)
    assert s["score"] == pytest.approx(8 / 7 + 1.0) and p["score"] == pytest.approx(2.0)
    assert s["metrics"]["exact_222"] == 1.0 and s["metrics"]["rank_222"] == 7.0
    assert s["features"]["rank_ratio_333"] == 1.0
    assert s["score"] > p["score"] > ev.evaluate(str(TASK / "initial_program.py"))["score"]


@pytest.mark.parametrize("body, needle", [
    ("def search(n, m, p):\n    u, v, w = naive(n, m, p)\n    return u * np.nan, v, w", "non-finite"),
    ("def search(n, m, p):\n    u, v, w = naive(n, m, p)\n    return u[:, :-1], v, w", "same number of columns"),
    ("def search(n, m, p):\n    u, v, w = naive(n, m, p)\n    return u * 1e6, v, w", "larger than 1000"),
    ("def search(n, m, p):\n    u, v, w = naive(n, m, p)\n    return u.T, v, w", "U must have shape"),
])
def test_invalid_candidates(tmp_path, body, needle):
    _assert_invalid(ev.evaluate(_program(tmp_path, body)), needle)


def test_claimed_rank_is_not_read_and_non_plain_data_is_invalid(tmp_path):
    liar = tmp_path / "liar.py"
    liar.write_text("import numpy as np\ndef decompose(n, m, p):\n"
                    "    return np.zeros((n*m, 1)), np.zeros((m*p, 1)), np.zeros((n*p, 1)), 'rank 1'\n")
    _assert_invalid(ev.evaluate(str(liar)), "must return (U, V, W)")
    obj = tmp_path / "obj.py"
    obj.write_text("import numpy as np\nclass F(float):\n    pass\n"
                   "def decompose(n, m, p):\n    return F(1.0), F(1.0), F(1.0)\n")
    _assert_invalid(ev.evaluate(str(obj)), "not plain data")


def test_monkeypatching_numpy_in_the_candidate_changes_nothing(tmp_path):
    path = _program(tmp_path, """
        np.einsum = lambda *a, **k: 0
        np.array_equal = lambda *a, **k: True
        np.linalg.norm = lambda *a, **k: 0.0
        def search(n, m, p):
            u, v, w = naive(n, m, p)
            return u[:, 1:], v[:, 1:], w[:, 1:]      # one product missing: not exact
        """)
    result = ev.evaluate(path)
    assert result["metrics"]["n_exact"] == 0.0 and result["score"] < 0


def test_raising_candidate_propagates_as_candidate_error(tmp_path):
    from evoforge.evaluators.candidate import CandidateRaised

    path = _program(tmp_path, "def search(n, m, p):\n    raise RuntimeError('boom')")
    with pytest.raises(CandidateRaised, match="boom"):
        ev.evaluate(path)


def test_offline_run_and_tasks_listing(tmp_path):
    from evoforge.engine.task import builtin_tasks

    # what `evoforge tasks` lists (the CLI itself: test_triton_softmax)
    assert "matmul_decomposition" in builtin_tasks()
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "matmul_decomposition", "--iterations", "5",
                           "--quiet", "--seed", "0", "--out", str(tmp_path / "run")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "best score:" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert rows and any(r.get("status") == "ok" for r in rows)
