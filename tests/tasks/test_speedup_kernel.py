"""The built-in speedup_kernel task: correctness against the reference, trusted timing arithmetic.

No wall-clock assertions: timings are checked for structure (finite, positive, consistent), the
arithmetic that turns them into a speed-up is tested on given numbers, and cheating candidates
(precomputed answers, wrong dtype, NaN, patched clocks) are invalid or cannot move the clock.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "speedup_kernel"
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("speedup_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()

FFT = """
def convolve(x, h):
    n = x.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
"""


def _program(tmp_path: Path, block: str, name: str = "candidate.py", prelude: str = "") -> str:
    text = (TASK / "initial_program.py").read_text()
    head, rest = text.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(prelude) + START + "\n" + textwrap.dedent(block).strip("\n") + "\n"
                    + END + "\n" + tail)
    return str(path)


def _assert_invalid(result: dict, needle: str) -> None:
    assert result.get("status") == "invalid", result
    assert "score" not in result and needle in result["error"], result["error"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # the evaluator writes its echo program into the working directory
    return tmp_path


def test_reference_is_np_convolve():
    rng = np.random.default_rng(0)
    for n, m, _ in ev.CORRECTNESS_CASES:
        x, h = rng.standard_normal(n), rng.standard_normal(m)
        assert np.allclose(ev.reference_convolve(x, h), np.convolve(x, h), rtol=0, atol=1e-12 * n * m)


def test_speedup_arithmetic_removes_the_echo_and_caps_noise():
    out = ev.speedup([0.020, 0.021, 0.019], [0.003, 0.0031, 0.0029], [0.001, 0.0011, 0.0009])
    assert out["speedup"] == pytest.approx(0.020 / 0.002) and out["raw_speedup"] == pytest.approx(0.020 / 0.003)
    assert out["candidate_ms"] == pytest.approx(2.0)
    capped = ev.speedup([0.02], [0.001], [0.0012])           # faster than the IPC: noise, capped
    assert capped["speedup"] == pytest.approx(ev.MAX_SPEEDUP)


def test_check_result_names_the_problem():
    x, h = np.ones(4), np.ones(3)
    good = np.convolve(x, h)
    assert ev.check_result(good, x, h, good) == (0.0, "")
    assert "float64 array of shape (6,)" in ev.check_result(good.astype(np.float32), x, h, good)[1]
    assert "float64 array of shape (6,)" in ev.check_result(good[:-1], x, h, good)[1]
    assert "non-finite" in ev.check_result(good * np.nan, x, h, good)[1]
    wrong = good.copy()
    wrong[2] += 1e-6
    assert "is wrong: y[2]" in ev.check_result(wrong, x, h, good)[1]


@pytest.mark.parametrize("which", ["initial", "fft"])
def test_correct_programs_are_timed(in_tmp, which):
    path = str(TASK / "initial_program.py") if which == "initial" else _program(in_tmp, FFT)
    result = ev.evaluate(path)
    assert result.get("status", "ok") == "ok", result
    m = result["metrics"]
    assert math.isfinite(result["score"]) and 0 < result["score"] <= ev.MAX_SPEEDUP
    assert result["score"] == m["speedup"] and m["reference_ms"] > 0 and m["echo_roundtrip_ms"] > 0
    assert m["candidate_roundtrip_ms"] >= m["candidate_ms"] - 1e-9
    assert -17.0 <= result["features"]["log10_rel_error"] <= -9.0
    if which == "initial":                                 # the same code as the reference: exact
        assert m["max_rel_error"] == 0.0 and result["features"]["log10_rel_error"] == -17.0
    else:
        assert 0 < m["max_rel_error"] < 1e-14
    assert not list(in_tmp.glob("evoforge_echo_*"))        # the echo program is cleaned up


@pytest.mark.parametrize("block, needle", [
    ("def convolve(x, h):\n    return np.convolve(x, h).astype(np.float32)", "must return a float64 array"),
    ("def convolve(x, h):\n    return np.convolve(x, h)[:-1]", "must return a float64 array of shape"),
    ("def convolve(x, h):\n    return np.full(x.size + h.size - 1, np.nan)", "non-finite"),
    ("def convolve(x, h):\n    return list(np.convolve(x, h))", "must return a float64 array"),
    ("def convolve(x, h):\n    return np.convolve(x, h[:-1]) if h.size > 1 else np.convolve(x, h)", "must return"),
    ("def convolve(x, h):\n    y = np.convolve(x, h)\n    y[0] += 1e-3\n    return y", "is wrong"),
])
def test_wrong_results_are_invalid(in_tmp, block, needle):
    _assert_invalid(ev.evaluate(_program(in_tmp, block)), needle)


def test_replaying_the_evaluators_generator_does_not_help(in_tmp):
    """Precompute every answer at import (untimed) from the evaluator's own seed, then look them up."""
    path = _program(in_tmp, """
        def convolve(x, h):
            global CALLS
            CALLS += 1
            return ANSWERS[CALLS - 1] if CALLS - 1 < len(ANSWERS) else np.zeros(x.size + h.size - 1)
        """, prelude=f"""
        import importlib.util, pathlib
        _spec = importlib.util.spec_from_file_location("e", {str(TASK / 'evaluator.py')!r})
        _ev = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_ev)
        _rng = np.random.default_rng(_ev.SEED)
        ANSWERS = [np.convolve(*_ev._inputs(_rng, n, m, s)) for n, m, s in _ev.CORRECTNESS_CASES]
        ANSWERS += [np.convolve(*_ev._inputs(_rng, *_ev.TIMING_SHAPE, 1.0)) for _ in range(9)]
        CALLS = 0
        """)
    _assert_invalid(ev.evaluate(path), "timed call 0")


def test_patching_the_clock_in_the_candidate_changes_nothing(in_tmp):
    path = _program(in_tmp, (TASK / "initial_program.py").read_text().split(START + "\n")[1].split(END)[0],
                    prelude="import time\ntime.perf_counter = lambda: 0.0\ntime.monotonic = lambda: 0.0\n")
    result = ev.evaluate(path)
    assert result.get("status", "ok") == "ok", result
    assert result["metrics"]["candidate_roundtrip_ms"] > 0.1     # the reference's work really was timed


def test_raising_candidate_propagates(in_tmp):
    from evoforge.evaluators.candidate import CandidateRaised

    with pytest.raises(CandidateRaised, match="boom"):
        ev.evaluate(_program(in_tmp, "def convolve(x, h):\n    raise ValueError('boom')"))


def test_offline_run_and_tasks_listing(tmp_path):
    from evoforge.engine.task import builtin_tasks

    assert "speedup_kernel" in builtin_tasks()                  # what `evoforge tasks` lists (CLI: test_triton_softmax)
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "speedup_kernel", "--iterations", "5",
                           "--quiet", "--seed", "0", "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert rows and any(r.get("status") == "ok" for r in rows)
