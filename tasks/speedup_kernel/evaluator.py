"""Evaluator for speedup_kernel: a CPU speed task on a numeric kernel (1-D full convolution, float64).

The kernel is ``y = convolve(x, h)`` with ``y[k] = sum_j x[j] h[k - j]`` (``np.convolve(x, h, "full")``).
The reference implementation is `reference_convolve` below (the tap loop the initial program starts from);
the candidate must match it on random inputs and be faster.

**Correctness.** `CORRECTNESS_CASES` (sizes from 1 x 1 to 4096 x 512, either operand longer, values from
1e-6 to 1e6) plus every timed call: the result must be a float64 array of shape ``(n + m - 1,)`` with
``max|y - y_ref| <= RTOL * |x|_2 |h|_2`` (a Cauchy-Schwarz bound on ``|y_k|``; FFT-based methods are
around 1e-15 of it, the reference itself 1e-16). Anything else is ``invalid``, with the case named.

**Timing, and who owns it.** The candidate runs in a nested process (`evoforge.evaluators.candidate`), so what
the evaluator can clock is a round trip: send the inputs, compute, send the result back. The clock is
this process's ``time.perf_counter``; nothing the candidate reports is used. To take the IPC out, the
evaluator starts a second nested process on a *trusted* echo program it writes itself (``convolve``
returns zeros of the right length: identical message sizes, no work) and times it on the same inputs,
interleaved with the candidate's calls so drifts in machine load hit both. Per repeat: the reference
runs here (no IPC), then the echo, then the candidate, each on the same fresh inputs. The timed inputs
come from a secret seed (``os.urandom``), so a candidate can neither cache results nor precompute them
at import time (which is not timed) by replaying this file's generator; the correctness cases use the
fixed ``SEED`` so verdicts are reproducible, and a timing is a measurement anyway. After ``WARMUP``
untimed repeats, ``REPEATS`` timed ones::

    t_candidate = median(candidate round trips) - median(echo round trips)      # IPC taken out
    speedup     = median(reference times) / max(t_candidate, median(reference times) / MAX_SPEEDUP)

Score (maximise) = ``speedup`` on ``TIMING_SHAPE = (16384, 2048)``: about 1 for the initial program;
``np.convolve`` about 3.6; FFT convolution about 34 (measured on a shared 2-core machine).
``MAX_SPEEDUP = 1000`` caps what timing noise can produce. Metrics: the medians in ms, ``raw_speedup``
(round trips without the echo correction: a lower bound), the maximum relative error. Descriptors:
``log10_rel_error`` (accuracy, clamped to [-17, -9]) and the built-in ``code_length``.

Timing is machine-dependent by nature: compare speed-ups measured on the same machine. Standard
library + numpy in the evaluator; a candidate may use whatever the sandbox's Python has (numpy; scipy if
installed) but must be deterministic.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.evaluators.candidate import CandidateError, CandidateInvalid, CandidateSession

__all__ = ["evaluate", "reference_convolve", "check_result", "speedup", "CORRECTNESS_CASES", "TIMING_SHAPE"]

RTOL = 1e-10
TIMING_SHAPE = (16384, 2048)
WARMUP = 2
REPEATS = 7
MAX_SPEEDUP = 1000.0
CALL_TIMEOUT_S = 20.0
SEED = 20240607
# (n, m, scale): random normal x of length n and h of length m, times scale.
CORRECTNESS_CASES = ((1, 1, 1.0), (5, 3, 1.0), (3, 5, 1.0), (100, 1, 1.0), (1, 100, 1.0), (1000, 37, 1e6),
                     (257, 1000, 1e-6), (4096, 512, 1.0), (2049, 2047, 1.0))

ECHO_PROGRAM = """import numpy as np


def convolve(x, h):
    return np.zeros(x.size + h.size - 1)
"""


def reference_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The trusted reference: one shifted, scaled copy of x per filter tap."""
    y = np.zeros(x.size + h.size - 1)
    for k in range(h.size):
        y[k:k + x.size] += h[k] * x
    return y


def _inputs(rng: np.random.Generator, n: int, m: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal(n) * scale, rng.standard_normal(m) * scale


def check_result(y: Any, x: np.ndarray, h: np.ndarray, expected: np.ndarray) -> tuple[float, str]:
    """(relative error, "") or (nan, why it is wrong)."""
    n, m = x.size, h.size
    if not isinstance(y, np.ndarray) or y.dtype != np.float64 or y.shape != (n + m - 1,):
        what = f"array of dtype {y.dtype} and shape {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        return math.nan, f"convolve(x[{n}], h[{m}]) must return a float64 array of shape ({n + m - 1},), got {what}"
    if not np.all(np.isfinite(y)):
        return math.nan, f"convolve(x[{n}], h[{m}]) returned non-finite values"
    bound = float(np.linalg.norm(x) * np.linalg.norm(h)) or 1.0
    rel = float(np.max(np.abs(y - expected))) / bound
    if rel > RTOL:
        k = int(np.argmax(np.abs(y - expected)))
        return math.nan, (f"convolve(x[{n}], h[{m}]) is wrong: y[{k}] = {y[k]!r} but the reference gives "
                          f"{expected[k]!r} (error {rel:.2e} of |x||h|, allowed {RTOL:g})")
    return rel, ""


def speedup(reference_s: list[float], candidate_s: list[float], echo_s: list[float]) -> dict[str, float]:
    """The timing arithmetic (pure): medians, IPC-corrected candidate time, speed-ups."""
    ref, cand, echo = (statistics.median(v) for v in (reference_s, candidate_s, echo_s))
    compute = max(cand - echo, ref / MAX_SPEEDUP)
    return {"reference_ms": 1e3 * ref, "candidate_roundtrip_ms": 1e3 * cand, "echo_roundtrip_ms": 1e3 * echo,
            "candidate_ms": 1e3 * compute, "speedup": min(MAX_SPEEDUP, ref / compute), "raw_speedup": ref / cand}


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate(program_path: str) -> dict[str, Any]:
    """Check ``convolve`` on the correctness cases, then time it against the reference."""
    rng = np.random.default_rng(SEED)
    worst = 0.0
    echo_path = Path("evoforge_echo_convolve.py").resolve()        # the sandbox's working directory
    echo_path.write_text(ECHO_PROGRAM)
    try:
        with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S) as candidate, \
                CandidateSession(echo_path, timeout_s=CALL_TIMEOUT_S) as echo:
            for n, m, scale in CORRECTNESS_CASES:
                x, h = _inputs(rng, n, m, scale)
                rel, why = check_result(candidate.call("convolve", x, h), x, h, reference_convolve(x, h))
                if why:
                    return _invalid(why)
                worst = max(worst, rel)
            times: dict[str, list[float]] = {"reference": [], "echo": [], "candidate": []}
            rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))    # secret: see docstring
            for repeat in range(WARMUP + REPEATS):
                x, h = _inputs(rng, *TIMING_SHAPE, 1.0)
                start = time.perf_counter()
                expected = reference_convolve(x, h)
                t_ref = time.perf_counter() - start
                start = time.perf_counter()
                echo.call("convolve", x, h)
                t_echo = time.perf_counter() - start
                start = time.perf_counter()
                y = candidate.call("convolve", x, h)
                t_cand = time.perf_counter() - start
                rel, why = check_result(y, x, h, expected)
                if why:
                    return _invalid(f"timed call {repeat}: {why}")
                worst = max(worst, rel)
                if repeat >= WARMUP:
                    for key, value in (("reference", t_ref), ("echo", t_echo), ("candidate", t_cand)):
                        times[key].append(value)
    except CandidateInvalid as exc:
        return _invalid(f"convolve() returned something that is not plain data: {exc}")
    except CandidateError:
        raise   # raised / crashed / timed out: the runner records error / timeout
    finally:
        echo_path.unlink(missing_ok=True)

    timing = speedup(times["reference"], times["candidate"], times["echo"])
    log_err = min(max(math.log10(worst) if worst > 0 else -17.0, -17.0), -9.0)
    metrics = dict(timing)
    metrics["max_rel_error"] = worst
    summary = (f"correct on {len(CORRECTNESS_CASES)} cases and {WARMUP + REPEATS} timed calls (max error "
               f"{worst:.1e} of |x||h|); x[{TIMING_SHAPE[0]}] * h[{TIMING_SHAPE[1]}]: reference "
               f"{timing['reference_ms']:.2f} ms, candidate {timing['candidate_ms']:.3f} ms after removing "
               f"{timing['echo_roundtrip_ms']:.2f} ms of IPC (round trip {timing['candidate_roundtrip_ms']:.2f} ms); "
               f"speed-up {timing['speedup']:.2f}x (medians of {REPEATS})")
    return {"score": timing["speedup"], "features": {"log10_rel_error": log_err}, "metrics": metrics,
            "artifacts": {"summary": summary}}
