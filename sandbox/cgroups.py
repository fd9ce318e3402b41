"""Per-job resource limits through cgroups: memory, process count and CPUs for a whole job, not per process.

RLIMIT_AS bounds one process, so four forked children of 700 MB each pass a 1 GB limit; RLIMIT_NPROC
counts processes per uid. A cgroup counts every process of the job together: the evaluator, the
candidate zygote and every candidate process they start. The kernel's OOM killer then acts inside
the job, and the job's counter (``oom_kill``) tells the supervisor that the job ran out of memory.

Both cgroup versions are supported, v2 preferred when it can do the job:

- **v2** (a ``cgroup2`` mount with ``memory`` and ``pids`` enabled for our subtree): ``memory.max``,
  ``memory.swap.max = 0``, ``pids.max``; ``memory.events`` counts OOM kills; ``cgroup.kill`` ends it.
- **v1** (``memory`` and ``pids`` hierarchies): ``memory.limit_in_bytes`` (and ``memsw`` where swap
  accounting exists), ``pids.max``; ``memory.oom_control`` counts OOM kills; processes are killed one
  by one from ``cgroup.procs``.

CPUs come from the ``cpu`` controller where it can be used (v2 ``cpu.max``; v1 ``cpu`` or
``cpu,cpuacct`` hierarchy, ``cpu.cfs_quota_us``/``cpu.cfs_period_us``): a CFS bandwidth quota of
``num_cpus`` x period, so a job with ``num_cpus = 1`` gets one core's worth of time per period however
many busy processes it starts, and concurrent jobs keep theirs. It is optional: without it the job
still gets its memory and pids limits, and `CgroupSupport.cpu_parent` is None, which the protections
line names.

Job cgroups are made beneath the cgroup the fork server itself sits in, so whatever limit the host
put on us still holds. Only root can create them here (the files are root's); a non-root server, or
a machine without these controllers, gets ``None`` from `CgroupSupport.detect`, and the fork server
says so (`evoforge.sandbox.protections`) and falls back to RLIMITs.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

__all__ = ["CgroupSupport", "JobCgroup", "cpu_quota_us", "CPU_PERIOD_US"]

_RMDIR_TRIES = 50
CPU_PERIOD_US = 100_000     # the kernel's default CFS period
_MIN_QUOTA_US = 1_000       # the kernel refuses a smaller quota


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup mount."""
    found = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
                found.append((fields[1].replace("\\040", " "), fields[2], set(fields[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> our cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                paths[""] = path
            for name in controllers.split(","):
                if name:
                    paths[name] = path
    return paths


@dataclass(frozen=True)
class CgroupSupport:
    """Where this server makes job cgroups: ``version`` 2 with one parent, or 1 with a memory and a
    pids parent; ``cpu_parent`` where the cpu controller is usable too (v2: the same parent)."""

    version: int
    memory_parent: str
    pids_parent: str
    cpu_parent: str | None = None

    @classmethod
    def detect(cls) -> "tuple[CgroupSupport | None, str]":
        """The usable cgroup set-up and a one-line reason when there is none."""
        if os.geteuid() != 0:
            return None, "not root"
        try:
            mounts, own = _mounts(), _own_paths()
        except OSError as exc:
            return None, f"cannot read /proc/self/cgroup: {exc}"
        why_not_v2 = "no cgroup2 mount"
        for point, kind, _opts in mounts:
            if kind != "cgroup2" or "" not in own:
                continue
            parent = os.path.join(point, own[""].lstrip("/"))
            try:
                available = set(_read(os.path.join(parent, "cgroup.controllers")).split())
                if not {"memory", "pids"} <= available:
                    why_not_v2 = f"cgroup2 at {point} offers {' '.join(sorted(available)) or 'no controllers'}"
                    continue
                enabled = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
                if not {"memory", "pids"} <= enabled:
                    _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids")
                return cls(2, parent, parent, parent if _enable_v2_cpu(parent, available, enabled) else None), ""
            except OSError as exc:
                why_not_v2 = f"cgroup2 at {point}: {exc.strerror or exc}"
        parents = {}
        for point, kind, opts in mounts:
            for name in ("memory", "pids", "cpu"):
                if kind == "cgroup" and name in opts and name in own:
                    parents[name] = os.path.join(point, own[name].lstrip("/"))
        if {"memory", "pids"} <= parents.keys() and all(os.access(parents[n], os.W_OK) for n in ("memory", "pids")):
            cpu = parents.get("cpu")
            usable = cpu is not None and os.access(cpu, os.W_OK) and os.path.exists(
                os.path.join(cpu, "cpu.cfs_quota_us"))
            return cls(1, parents["memory"], parents["pids"], cpu if usable else None), ""
        return None, f"{why_not_v2}, and no writable cgroup v1 memory+pids hierarchies"

    def sweep(self, prefix: str = "evoforge-") -> int:
        """Remove the empty job cgroups ``<prefix><pid>`` whose supervisor is gone (a fork server that
        was killed cannot remove its jobs' cgroups); returns how many went."""
        removed = 0
        for parent in {self.memory_parent, self.pids_parent, self.cpu_parent} - {None}:
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                pid = name[len(prefix):]
                if not (name.startswith(prefix) and pid.isdigit()) or os.path.exists(f"/proc/{pid}"):
                    continue
                try:
                    os.rmdir(os.path.join(parent, name))   # refused while any process is in it
                    removed += 1
                except OSError:
                    pass
        return removed

    def create(self, name: str, *, memory_mb: int, max_processes: int, cpus: float | None = None) -> "JobCgroup":
        return JobCgroup.create(self, name, memory_mb=memory_mb, max_processes=max_processes, cpus=cpus)


def _enable_v2_cpu(parent: str, available: set[str], enabled: set[str]) -> bool:
    """Whether job cgroups beneath ``parent`` get the v2 cpu controller (enabling it can be refused,
    e.g. while a real-time process sits in the parent; then jobs go without a CPU quota)."""
    if "cpu" not in available:
        return False
    if "cpu" in enabled:
        return True
    try:
        _write(os.path.join(parent, "cgroup.subtree_control"), "+cpu")
        return True
    except OSError:
        return False


def cpu_quota_us(cpus: float, period_us: int, parent_quota_us: int = -1, parent_period_us: int = CPU_PERIOD_US) -> int:
    """The CFS quota for ``cpus`` CPUs per ``period_us``: at least the kernel's 1 ms, and no more than
    the parent's share (v1 refuses a child quota above its parent's)."""
    quota = max(_MIN_QUOTA_US, int(round(float(cpus) * period_us)))
    if parent_quota_us > 0:
        quota = min(quota, max(_MIN_QUOTA_US, parent_quota_us * period_us // max(1, parent_period_us)))
    return quota


class JobCgroup:
    """One job's cgroup(s). `join` from the process to limit (its children follow); `kill` then
    `remove` at the end of the job."""

    def __init__(self, support: CgroupSupport, dirs: list[str]) -> None:
        self.support = support
        self.dirs = dirs

    @classmethod
    def create(cls, support: CgroupSupport, name: str, *, memory_mb: int, max_processes: int,
               cpus: float | None = None) -> "JobCgroup":
        """``cpus`` (the job's ``num_cpus``) sets a CPU quota where `CgroupSupport.cpu_parent` exists;
        None or <= 0 leaves the job's CPUs unlimited."""
        memory_bytes = str(int(memory_mb) * 1024 * 1024)
        limit_cpus = support.cpu_parent is not None and cpus is not None and float(cpus) > 0
        if support.version == 2:
            path = os.path.join(support.memory_parent, name)
            os.mkdir(path, 0o755)
            group = cls(support, [path])
            _write(os.path.join(path, "memory.max"), memory_bytes)
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _write(os.path.join(path, "memory.swap.max"), "0")
            _write(os.path.join(path, "pids.max"), str(int(max_processes)))
            if limit_cpus:      # v2 checks against ancestors at run time, so no clamp is needed
                _write(os.path.join(path, "cpu.max"), f"{cpu_quota_us(cpus, CPU_PERIOD_US)} {CPU_PERIOD_US}")
            return group
        memory, pids = os.path.join(support.memory_parent, name), os.path.join(support.pids_parent, name)
        os.mkdir(memory, 0o755)
        group = cls(support, [memory])
        os.mkdir(pids, 0o755)
        group.dirs.append(pids)
        _write(os.path.join(memory, "memory.limit_in_bytes"), memory_bytes)
        memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):          # no swapping past the limit either
            try:
                _write(memsw, memory_bytes)
            except OSError:
                pass
        _write(os.path.join(pids, "pids.max"), str(int(max_processes)))
        if limit_cpus:
            cpu = os.path.join(support.cpu_parent, name)
            os.mkdir(cpu, 0o755)
            group.dirs.append(cpu)
            parent_quota = int(_read(os.path.join(support.cpu_parent, "cpu.cfs_quota_us")))
            parent_period = int(_read(os.path.join(support.cpu_parent, "cpu.cfs_period_us")))
            _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"),
                   str(cpu_quota_us(cpus, CPU_PERIOD_US, parent_quota, parent_period)))
        return group

    @classmethod
    def existing(cls, support: CgroupSupport, name: str) -> "JobCgroup":
        """The job cgroup ``name`` made earlier (by a supervisor that has exited since)."""
        if support.version == 2:
            return cls(support, [os.path.join(support.memory_parent, name)])
        dirs = [os.path.join(support.memory_parent, name), os.path.join(support.pids_parent, name)]
        if support.cpu_parent is not None:      # absent where the job had no num_cpus: remove() skips it
            dirs.append(os.path.join(support.cpu_parent, name))
        return cls(support, dirs)

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (default: the caller) into every cgroup of the job."""
        for path in self.dirs:
            _write(os.path.join(path, "cgroup.procs"), str(pid or os.getpid()))

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in this job."""
        name = "memory.events" if self.support.version == 2 else "memory.oom_control"
        try:
            for line in _read(os.path.join(self.dirs[0], name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.dirs:
            try:
                found.update(int(p) for p in _read(os.path.join(path, "cgroup.procs")).split())
            except OSError:
                pass
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process of the job (the caller reaps its own children)."""
        if self.support.version == 2:
            try:
                _write(os.path.join(self.dirs[0], "cgroup.kill"), "1")
                return
            except OSError:
                pass
        for _ in range(100):
            pids = [p for p in self.pids() if p != os.getpid()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def remove(self, tries: int = _RMDIR_TRIES) -> bool:
        """rmdir the job's cgroups (a dying process may keep one busy for a moment); whether all are gone."""
        gone = True
        for path in self.dirs:
            for attempt in range(tries):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == tries - 1:
                        gone = False
                    else:
                        time.sleep(0.01)
        return gone
