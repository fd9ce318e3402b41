"""One classifier for how an isolated evaluation ended without a result: exit status -> outcome.

Shared by the fork server (`evoforge.sandbox.forkserver`, a wait status) and the docker backend
(`evoforge.sandbox.docker`, tini's exit code, where a child killed by signal N exits 128 + N), so both
backends call a death by the same name:

- SIGXCPU, or SIGKILL after the CPU seconds were used up (the hard RLIMIT_CPU) -> ``timeout``;
- the out-of-memory killer fired (cgroup/container counter) or stderr says so -> ``oom``;
- anything else -> ``error`` naming the signal or the exit code, with the stderr tail.
"""

from __future__ import annotations

import signal

from evoforge.evaluators.types import EvaluationResult, Status

__all__ = ["classify_exit", "signal_name", "OOM_MARKERS", "STDERR_IN_ERROR_CHARS"]

OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")
STDERR_IN_ERROR_CHARS = 2000           # stderr tail copied into a failure's "error" artifact


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def classify_exit(*, signal_number: int | None, exit_code: int | None, stderr_text: str = "",
                  cpu_used_s: float = 0.0, cpu_limit_s: float | None = None, oom_killed: bool = False,
                  memory_what: str = "the memory limit") -> EvaluationResult:
    """The failure for a process that ended without a result: killed by ``signal_number``, or exited
    with ``exit_code``. ``oom_killed`` is the kernel's word (a cgroup's or the container's OOM
    counter) and wins over the signal, since the OOM killer's weapon is a plain SIGKILL."""
    if signal_number is not None and cpu_limit_s is not None and (
            signal_number == signal.SIGXCPU
            or (signal_number == signal.SIGKILL and not oom_killed and cpu_used_s >= cpu_limit_s - 0.5)):
        return EvaluationResult.failure(Status.TIMEOUT, f"exceeded the CPU-time limit of {cpu_limit_s:g} s")
    if oom_killed:
        return EvaluationResult.failure(Status.OOM, f"killed by the out-of-memory killer at {memory_what}")
    if signal_number is not None:
        message = f"program killed by signal {signal_name(signal_number)}"
    else:
        message = f"program exited with code {exit_code} without returning a result"
    kind = Status.OOM if any(m in stderr_text for m in OOM_MARKERS) else Status.ERROR
    if stderr_text:
        message += "\n--- stderr tail ---\n" + stderr_text[-STDERR_IN_ERROR_CHARS:]
    return EvaluationResult.failure(kind, message)
