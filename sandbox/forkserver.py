"""Pre-warmed fork server: evaluate candidates in forked, isolated children (``python -m evoforge.sandbox.forkserver``).

Started by `evoforge.sandbox.process.ProcessSandbox` with an allow-listed environment. Paying the interpreter
start and ``import numpy`` once here makes an evaluation cost a ``fork`` (milliseconds).

Process tree, per request::

    server  (subreaper; single-threaded poll loop over stdin + one pipe per supervisor)
    └── S   supervisor (subreaper): makes the job's cgroup, drains W's output, enforces the wall
        │   clock, kills every descendant and the cgroup's processes at the end
        ├── Z   candidate zygote (`evoforge.sandbox.zygote`), forked before W so it never held evaluator
        │   │   state; in the job's cgroup
        │   └── C1 ── C2  one per candidate process: new namespaces, a root built for it, job uid
        └── W   worker, own session: the job's cgroup, private mount+IPC namespaces (tmpfs workdir and
                /dev/shm, home and checkout masked), rlimits, network namespace, the job's uid,
                Landlock, no capabilities, seccomp; runs `evoforge.evaluators.runner.run_job` and sends
                the result as JSON over a pipe

Why a supervisor per job rather than the server watching W directly: S is a subreaper, so a
double-forked daemon W leaves behind reparents to S, where S can find and kill it; and if
anything in S goes wrong only that job is lost, never the server loop.

Wire protocol on stdin/stdout: frames of a 4-byte big-endian length and UTF-8 JSON. Request
``{"id", "job": EvaluationJob.to_dict()}``; response ``{"id", "result": EvaluationResult.to_dict()}``
or, when the machinery (not the candidate) failed, ``{"id", "error": "..."}``. The server's first
frame is a hello: ``{"ready": true, "pid", "numpy", "drop_uid", "read_cap", "protections", "python"}``.

Privileges (decided once, `make_policy`; what could not be applied is in the hello's ``protections``,
`evoforge.sandbox.protections`): as root, each job's W and candidates run as a uid of their own, leased
host-wide (`evoforge.sandbox.privileges`), so they cannot signal, ptrace or write to root's processes and
files or another job's, on this server or any other. W's home and checkout are masked
(`evoforge.sandbox.mounts.mask`), so no capability is needed to read an interpreter under a 0700 /root;
only where masking is impossible does W keep CAP_DAC_READ_SEARCH (read access only). Memory and
process counts are limited per job by a cgroup (`evoforge.sandbox.cgroups`), RLIMITs per process as
the fallback (`evoforge.sandbox.limits`). As non-root, W keeps the caller's uid and candidates are
fresh ``python -I`` interpreters confined by Landlock (`evoforge.evaluators.candidate`). A task folder
the job's uid cannot read is copied beside the workdir first.

Outcome mapping (S): the result W sent wins (an ``error`` becomes ``oom`` if the kernel killed a
process of the job for memory); otherwise wall clock passed -> ``timeout``; any other death is
classified by `evoforge.sandbox.outcome.classify_exit`, shared with the docker backend.

The per-job temporary workdir is made by the server just before forking S (not by S), so the
server can still delete it if S is killed; S normally deletes it itself.

No threads here, ever: forking a threaded process can deadlock the child on a lock some other
thread held (and OPENBLAS_NUM_THREADS=1 from the environment keeps numpy from starting any).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Any

from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.sandbox.frames import FRAME_HEADER, MAX_FRAME_BYTES, FrameReader, encode_frame, write_all
from evoforge.sandbox.limits import cpu_limit_s
from evoforge.sandbox.outcome import OOM_MARKERS, STDERR_IN_ERROR_CHARS
from evoforge.sandbox.policy import HIDE_ENV, Policy, make_policy
from evoforge.sandbox.privileges import JOB_UID_BASE, JOB_UID_POOL, NOBODY_UID, UidLeases
from evoforge.sandbox.processes import (
    children_of, close_fds_except, kill, kill_descendants, redirect_std_to_devnull, set_subreaper,
)
from evoforge.sandbox.protections import protection_report
from evoforge.sandbox.cgroups import JobCgroup
from evoforge.sandbox.supervisor import (
    MAX_RESULT_BYTES, TailBuffer, job_cgroup_name, remove_job_dirs, supervisor_main,
)

__all__ = ["encode_frame", "FrameReader", "children_of", "kill_descendants", "serve", "main",
           "MAX_RESULT_BYTES", "NOBODY_UID", "JOB_UID_BASE", "JOB_UID_POOL", "OOM_MARKERS",
           "STDERR_IN_ERROR_CHARS", "cpu_limit_s", "TailBuffer", "FRAME_HEADER", "MAX_FRAME_BYTES", "HIDE_ENV"]

READ_CHUNK_BYTES = 1 << 16


# --------------------------------------------------------------------------- server loop

@dataclass
class _Supervisor:
    request_id: Any
    fd: int
    workdir: str
    buf: bytearray
    uid: int | None = None          # the job's own uid, while it is alive
    status: int | None = None
    lease_fd: int | None = None     # holds the uid's host-wide lease (privileges.UidLeases)


class _Server:
    def __init__(self, in_fd: int, out_fd: int, policy: Policy) -> None:
        self.in_fd, self.out_fd, self.policy = in_fd, out_fd, policy
        self.sups: dict[int, _Supervisor] = {}      # by pid
        self.stale_cgroups: list[JobCgroup] = []
        self.leases = None
        if policy.drop_uid is not None:
            try:
                self.leases = UidLeases()
            except OSError:            # every job then shares nobody's uid; said in the hello
                self.policy = replace(policy, notes=policy.notes + ("uid leases",))
        self.by_fd: dict[int, int] = {}              # pipe fd -> supervisor pid
        self.poller = select.poll()
        self.poller.register(in_fd, select.POLLIN)
        self.reader = FrameReader()

    def start(self, request: dict) -> None:
        rid = request.get("id")
        lease_fd = None
        if self.leases is not None:
            try:
                uid, lease_fd = self.leases.acquire()    # host-wide: no other server's live job has it
            except OSError as exc:
                write_all(self.out_fd, encode_frame({"id": rid, "error": f"no job uid to run as: {exc}"}))
                return
            policy = replace(self.policy, drop_uid=uid)
        else:
            policy = self.policy
        # Made here, not in S, so the server can still remove it if S is killed.
        workdir = tempfile.mkdtemp(prefix="evoforge-")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                redirect_std_to_devnull()
                close_fds_except({0, 1, 2, w})
                supervisor_main(rid, request.get("job") or {}, workdir, policy, w)
            finally:
                os._exit(70)
        os.close(w)
        self.sups[pid] = _Supervisor(rid, r, workdir, bytearray(), policy.drop_uid, lease_fd=lease_fd)
        self.by_fd[r] = pid
        self.poller.register(r, select.POLLIN)

    def on_supervisor_readable(self, fd: int) -> None:
        pid = self.by_fd[fd]
        sup = self.sups[pid]
        data = os.read(fd, READ_CHUNK_BYTES)
        if data:
            sup.buf += data
            return
        self.poller.unregister(fd)
        os.close(fd)
        del self.by_fd[fd], self.sups[pid]
        if sup.status is None:
            try:
                _, sup.status = os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        remove_job_dirs(sup.workdir)  # normally S already did; a killed S did not
        if self.policy.cgroups is not None:   # S was in it to the end; anything left dies with it
            group = JobCgroup.existing(self.policy.cgroups, job_cgroup_name(pid))
            group.kill()
            if not group.remove(tries=1):
                self.stale_cgroups.append(group)   # retried by police(), never blocking the loop
        if sup.lease_fd is not None:
            UidLeases.release(sup.lease_fd)
        frames = []
        try:
            frames = FrameReader().feed(bytes(sup.buf))
        except ValueError:
            pass
        if frames:
            response = frames[0]
        else:
            # S runs only our code; what kills it is almost surely the candidate (a root W without
            # Landlock's signal scoping can signal its parent). Its job failed; the run goes on.
            result = EvaluationResult.failure(
                Status.ERROR, f"the sandbox supervisor was killed (wait status {sup.status}) before it "
                              f"answered: the program probably signalled its parent process")
            response = {"id": sup.request_id, "result": result.to_dict()}
        write_all(self.out_fd, encode_frame(response))

    def police(self) -> None:
        """Reap finished children; kill any child that is not a known supervisor (orphans of a
        supervisor that died, reparented to us because we are a subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.sups:
                self.sups[pid].status = status
        for pid in children_of(os.getpid()):
            if pid not in self.sups:
                kill(pid)
        self.stale_cgroups = [g for g in self.stale_cgroups if not g.remove(tries=1)]

    def loop(self) -> None:
        while True:
            for fd, _ev in self.poller.poll(1000):
                if fd == self.in_fd:
                    data = os.read(fd, READ_CHUNK_BYTES * 16)
                    if not data:
                        return
                    for request in self.reader.feed(data):
                        self.start(request)
                elif fd in self.by_fd:
                    self.on_supervisor_readable(fd)
            self.police()

    def shutdown(self) -> None:
        kill_descendants()
        for pid, sup in self.sups.items():
            remove_job_dirs(sup.workdir)
            if self.policy.cgroups is not None:
                self.stale_cgroups.append(JobCgroup.existing(self.policy.cgroups, job_cgroup_name(pid)))
        for group in self.stale_cgroups:
            group.kill()
            group.remove()
        if self.policy.zygote_root:
            shutil.rmtree(self.policy.zygote_root, ignore_errors=True)


def _preimport() -> bool:
    try:
        import numpy  # noqa: F401  (the point: children fork with it already loaded)
        import evoforge.evaluators.candidate  # noqa: F401  (and the zygote's candidates with this)
        return True
    except Exception:
        return False


def serve(in_fd: int = 0, out_fd: int = 1) -> None:
    set_subreaper()
    has_numpy = _preimport()
    policy = make_policy()
    server = _Server(in_fd, out_fd, policy)
    policy = server.policy
    write_all(out_fd, encode_frame({"ready": True, "pid": os.getpid(), "numpy": has_numpy,
                                     "drop_uid": policy.drop_uid, "read_cap": policy.read_cap,
                                     "protections": protection_report(policy),
                                     "python": sys.version}))
    try:
        server.loop()
    except BrokenPipeError:
        pass  # the client went away
    finally:
        server.shutdown()


def main() -> None:
    # SIGINT belongs to the client; it stops us by closing our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve()


if __name__ == "__main__":
    main()
