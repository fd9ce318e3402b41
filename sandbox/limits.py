"""RLIMITs for a sandboxed process: the per-process fallback under the job's cgroup limits.

RLIMIT_AS gives a clean ``MemoryError`` (status ``oom``) where a cgroup would kill; RLIMIT_CPU makes
a busy loop end with SIGXCPU; RLIMIT_FSIZE, RLIMIT_NOFILE and no core files bound the rest. Where
the machine has no usable cgroups (`evoforge.sandbox.cgroups`), these are all there is, and they
count per process (memory) or per uid (RLIMIT_NPROC), which `evoforge.sandbox.protections` says.
"""

from __future__ import annotations

import math
import resource

__all__ = ["setrlimit", "cpu_limit_s", "apply_rlimits"]

_MIB = 1024 * 1024


def setrlimit(which: int, value: int, hard: int | None = None) -> None:
    """Lower a limit, never above the current hard limit; a refusal is not fatal."""
    hard = value if hard is None else hard
    _, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        value, hard = min(value, cur_hard), min(hard, cur_hard)
    try:
        resource.setrlimit(which, (value, hard))
    except (ValueError, OSError):
        pass


def cpu_limit_s(job) -> int | None:
    """RLIMIT_CPU soft limit: ``cpu_s``, or a little above the wall clock so the wall clock rules
    (``cpu_s`` None); ``cpu_s <= 0`` is no CPU-time limit at all, for an evaluator whose threads
    together use more CPU seconds than wall-clock seconds (JAX, BLAS): the wall clock still ends it."""
    if job.cpu_s is not None and job.cpu_s <= 0:
        return None
    return int(math.ceil(job.cpu_s)) if job.cpu_s else int(math.ceil(job.timeout_s)) + 1


def apply_rlimits(job) -> None:
    setrlimit(resource.RLIMIT_AS, int(job.memory_mb) * _MIB)
    cpu = cpu_limit_s(job)
    if cpu is not None:
        setrlimit(resource.RLIMIT_CPU, cpu, cpu + 1)  # soft -> SIGXCPU, hard -> SIGKILL
    setrlimit(resource.RLIMIT_FSIZE, int(job.max_file_mb) * _MIB)
    setrlimit(resource.RLIMIT_NOFILE, int(job.max_open_files))
    setrlimit(resource.RLIMIT_CORE, 0)
