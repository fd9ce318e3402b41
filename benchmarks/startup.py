"""Benchmark 6: start-up -- launch to the first LLM request, and ``evoforge show``, next to OpenEvolve.

*First request.* ``evoforge run`` on the cheap task with ``--llm openai-compatible:...`` pointed at a
fresh fake server (`benchmarks.fake_llm`, instant replies): the time from launching the command to
the server receiving its first chat request. That span holds everything a user waits for before the
pipeline starts -- interpreter start, imports (the openai SDK among them), the fork server, the
initial program's evaluation, the archive, the first prompt. OpenEvolve is timed the same way on the
same task folder (its driver, one worker, one iteration) in the same loop, alternating with
evoforge, so both see the same load; where it cannot be installed, the result says why.

*Show.* ``evoforge show RUN_DIR`` on the run just made (a command that needs no LLM SDK and no
archive library). OpenEvolve has no such command, so its reference is its start-up above.

*Run with 0 iterations.* ``evoforge run TASK --iterations 0 --quiet``: the whole command, offline.

Each figure is the median over ``repeats`` launches (absolute times on a shared machine are noise;
the medians taken side by side are the claim). Next to the wall time to the first request stands the
CPU time the launched process had spent by then (``/proc/PID/stat``), which the machine's load
barely moves: on an idle machine with a core to spare for the fork server, that is about the wait.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import CHEAP_EVALUATOR, REPO_ROOT, fake_llm, write_task
from benchmarks.openevolve_bench import DRIVER, ensure_openevolve

__all__ = ["startup_times"]

COMMAND_TIMEOUT_S = 300
# Launched as a user's shell would: with the bytecode cache. An environment that sets
# PYTHONDONTWRITEBYTECODE (some CI images do) makes an editable checkout recompile every module of
# ours on every launch, which a wheel install (compiled at install time) never does.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _launch(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(epoch time of the launch, wall seconds, error or '')."""
    started = time.time()
    clock = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env=_ENV)
    except subprocess.TimeoutExpired:
        return started, float("nan"), f"{cmd[0]} did not finish in {COMMAND_TIMEOUT_S} s"
    wall = time.perf_counter() - clock
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        return started, wall, f"exited {done.returncode}: {tail[-1][:300] if tail else ''}"
    return started, wall, ""


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_request(cmd_for, out: Path, cwd: Path) -> tuple[float | None, float | None, str]:
    """Seconds from launch to the fake server's first request (a fresh server per launch), and the CPU
    seconds the launched process had spent by then: a figure the machine's load barely moves."""
    with fake_llm(0.0) as llm:
        if out.exists():
            shutil.rmtree(out)
        started = time.time()
        proc = subprocess.Popen(cmd_for(llm.base_url, out), cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=_ENV)
        cpu = None
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if llm.stats()["first_request_at"] is not None:
                cpu = _cpu_s(proc.pid)
                break
            time.sleep(0.01)
        try:
            _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
            stderr = f"did not finish in {COMMAND_TIMEOUT_S} s"
        first = llm.stats()["first_request_at"]
    error = "" if proc.returncode == 0 else f"exited {proc.returncode}: {(stderr or '').strip()[-300:]}"
    if first is None:
        return None, None, error or "no LLM request was made"
    return first - started, cpu, error


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def startup_times(work: Path, *, repeats: int, openevolve: bool = True) -> dict:
    task_dir = write_task(work / "task-cheap", CHEAP_EVALUATOR, name="bench_cheap")
    python = sys.executable

    def evoforge_cmd(base_url: str, out: Path) -> list[str]:
        return [python, "-m", "evoforge", "run", str(task_dir), "--llm", f"openai-compatible:bench@{base_url}",
                "--iterations", "1", "--concurrency", "1", "--quiet", "--out", str(out)]

    oe_python, oe_version = (ensure_openevolve(work) if openevolve
                             else (None, "left out (openevolve not among the benchmarks run)"))

    def openevolve_cmd(base_url: str, out: Path) -> list[str]:
        return [str(oe_python), str(DRIVER), str(task_dir), base_url, str(out), "--iterations", "1", "--workers", "1"]

    ours, theirs, shows, zero_runs, errors = [], [], [], [], []
    our_cpu, their_cpu = [], []
    for _ in range(repeats):
        run_dir = work / "startup-evoforge"
        seconds, cpu, error = _first_request(evoforge_cmd, run_dir, REPO_ROOT)
        ours.append(seconds)
        our_cpu.append(cpu)
        if error:
            errors.append(f"evoforge run: {error}")
            continue
        _, wall, error = _launch([python, "-m", "evoforge", "show", str(run_dir)], REPO_ROOT)
        shows.append(None if error else wall)
        if error:
            errors.append(f"evoforge show: {error}")
        zero = work / "startup-zero"
        if zero.exists():
            shutil.rmtree(zero)
        _, wall, error = _launch([python, "-m", "evoforge", "run", str(task_dir), "--iterations", "0", "--llm",
                                  "offline", "--quiet", "--out", str(zero)], REPO_ROOT)
        zero_runs.append(None if error else wall)
        if error:
            errors.append(f"evoforge run --iterations 0: {error}")
        if oe_python is not None:
            seconds, cpu, error = _first_request(openevolve_cmd, work / "startup-openevolve", work)
            theirs.append(seconds)
            their_cpu.append(cpu)
            if error and seconds is None:
                errors.append(f"OpenEvolve: {error}")
    result: dict = {
        "repeats": repeats,
        "evoforge_first_request_s": _median(ours),
        "evoforge_first_request_all_s": ours,
        # CPU of the engine process until its first request (the fork server and the initial
        # evaluation run in other processes, in parallel): what an idle machine would wait.
        "evoforge_first_request_cpu_s": _median(our_cpu),
        "evoforge_show_s": _median(shows),
        "evoforge_iterations_0_s": _median(zero_runs),
        "errors": errors,
    }
    if oe_python is None:
        result["openevolve"] = {"unavailable": oe_version}
    else:
        first = _median(theirs)
        result["openevolve"] = {"version": oe_version, "first_request_s": first, "first_request_all_s": theirs,
                                "first_request_cpu_s": _median(their_cpu)}
        if first and result["evoforge_first_request_s"]:
            result["first_request_ratio"] = result["evoforge_first_request_s"] / first
        if first and result["evoforge_show_s"]:
            result["show_ratio"] = result["evoforge_show_s"] / first
    if result["evoforge_first_request_s"] is None:
        result["error"] = "; ".join(errors) or "evoforge made no LLM request"
    return result


if __name__ == "__main__":  # python -m benchmarks.startup [REPEATS]
    import json

    from benchmarks.common import WORK_DIR

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    print(json.dumps(startup_times(WORK_DIR, repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
