"""sort_c: score a C sort of uint32 keys on correctness and on speed against the C library's qsort.

By the time `evaluate` runs, the compile stage of task.toml has built the candidate with the frozen
harness (harness.c) into ``program`` beside ``program.c``; a candidate that does not compile never gets
here (its compiler errors went back to the LLM). The evaluator then

1. compiles the trusted reference (reference.c, qsort) with the same harness and flags, in a folder of
   its own that the candidate cannot write;
2. draws fresh arrays for this evaluation (uniform keys, 16 distinct keys, nearly sorted) from an
   unpredictable seed, so no answer can be stored in advance;
3. runs reference and candidate alternately, twice each, as confined children
   (`evoforge.evaluators.binary.run_binary`), timing each from outside: ``max(wall, cpu)`` seconds;
4. checks every output against numpy's sort: one wrong key makes the result invalid.

score = reference seconds / candidate seconds (the speedup over qsort; higher is better), each the faster
of its two runs, measured in the same evaluation so machine load mostly cancels.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.evaluators.binary import BinaryRun, run_binary

HERE = Path(__file__).resolve().parent
N_KEYS = 1 << 19                 # keys per array
ROUNDS = 3                       # sorts per array per run (from a fresh copy each time)
REPEATS = 2                      # runs per program; the faster counts
RUN_TIMEOUT_S = 20.0
CFLAGS = ("-O2", "-std=c11")


def _arrays(rng: np.random.Generator) -> list[np.ndarray]:
    uniform = rng.integers(0, 2**32, N_KEYS, dtype=np.uint64).astype(np.uint32)
    few = rng.integers(0, 16, N_KEYS, dtype=np.uint32)
    nearly = np.sort(rng.integers(0, 2**32, N_KEYS, dtype=np.uint64).astype(np.uint32))
    swaps = rng.integers(0, N_KEYS, (N_KEYS // 100, 2))
    nearly[swaps[:, 0]], nearly[swaps[:, 1]] = nearly[swaps[:, 1]], nearly[swaps[:, 0]].copy()
    return [uniform, few, nearly]


def _stdin(arrays: list[np.ndarray]) -> bytes:
    parts = [np.array([ROUNDS, len(arrays)], dtype="<u8").tobytes()]
    for a in arrays:
        parts += [np.array([a.size], dtype="<u8").tobytes(), a.astype("<u4").tobytes()]
    return b"".join(parts)


def _check(run: BinaryRun, arrays: list[np.ndarray], who: str) -> str:
    """"" when ``run`` printed every array sorted, else why not."""
    if run.timed_out:
        return f"{who} did not finish within {RUN_TIMEOUT_S:g} s"
    if run.returncode != 0:
        tail = run.stderr.decode("utf-8", "replace")[-500:]
        return f"{who} exited with status {run.returncode}" + (f": {tail}" if tail else "")
    expected = np.concatenate([np.sort(a) for a in arrays])
    got = np.frombuffer(run.stdout, dtype="<u4")
    if got.size != expected.size:
        return f"{who} wrote {len(run.stdout)} bytes; expected {expected.size * 4} (the sorted keys)"
    wrong = np.flatnonzero(got != expected)
    if wrong.size:
        i = int(wrong[0])
        start = 0
        for k, a in enumerate(arrays):
            if i < start + a.size:
                name = ("uniform keys", "16 distinct keys", "nearly sorted keys")[k]
                return (f"{who} sorted the {name} wrongly: {wrong.size} wrong positions, first at index "
                        f"{i - start}: got {int(got[i])}, expected {int(expected[i])}")
            start += a.size
    return ""


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def evaluate(program_path: str) -> dict[str, Any]:
    binary = os.path.splitext(program_path)[0]
    if not os.path.isfile(binary):
        return {"status": "error", "error": f"no compiled program at {binary}: is the [compile] stage in task.toml?"}
    cc = _compiler()
    if cc is None:
        return {"status": "error", "error": "no C compiler (cc or gcc) where the evaluation runs"}
    work = os.path.dirname(os.path.abspath(program_path))
    trusted = tempfile.mkdtemp(prefix="reference-", dir=work)    # the candidate's runs cannot write here
    reference = os.path.join(trusted, "reference")
    built = subprocess.run([cc, *CFLAGS, "-o", reference, str(HERE / "reference.c"), str(HERE / "harness.c")],
                           capture_output=True, timeout=60, env={**os.environ, "TMPDIR": trusted})
    if built.returncode != 0:
        return {"status": "error", "error": f"the reference does not compile: {built.stderr.decode()[-1000:]}"}

    # Landlock keeps the candidate's runs from writing here; the digest catches it where Landlock is missing.
    digest = hashlib.sha256(Path(reference).read_bytes()).hexdigest()
    arrays = _arrays(np.random.default_rng(secrets.randbits(64)))
    stdin = _stdin(arrays)
    hidden = [p for p in os.environ.get("EVOFORGE_TASK_DIR", "").split(os.pathsep) if p]
    times: dict[str, list[float]] = {"reference": [], "candidate": []}
    for _ in range(REPEATS):
        for who, path in (("reference", reference), ("candidate", binary)):
            if who == "reference" and hashlib.sha256(Path(reference).read_bytes()).hexdigest() != digest:
                why = "the reference binary changed during the evaluation: a run of the program wrote to it"
                return {"status": "invalid", "error": why, "artifacts": {"failure": why}}
            scratch = tempfile.mkdtemp(prefix=f"{who}-", dir=work)
            run = run_binary([path], stdin, timeout_s=RUN_TIMEOUT_S, scratch=scratch, hidden=hidden)
            problem = _check(run, arrays, "the program" if who == "candidate" else "the reference")
            if problem:
                if who == "reference":
                    return {"status": "error", "error": problem}
                return {"status": "invalid", "error": problem, "artifacts": {"failure": problem}}
            times[who].append(run.seconds)
    ref_s, cand_s = min(times["reference"]), min(times["candidate"])
    speedup = ref_s / max(cand_s, 1e-9)
    summary = (f"{speedup:.2f}x qsort: {cand_s * 1e3:.1f} ms against {ref_s * 1e3:.1f} ms for {len(arrays)} arrays "
               f"of {N_KEYS} keys (uniform, 16 distinct, nearly sorted), each sorted {ROUNDS} times per run; "
               f"time = max(wall, cpu) measured by the evaluator, the faster of {REPEATS} runs")
    return {"score": speedup,
            "features": {"binary_kb": os.path.getsize(binary) / 1024.0},
            "metrics": {"speedup": speedup, "candidate_s": cand_s, "reference_s": ref_s},
            "artifacts": {"timing": summary}}
