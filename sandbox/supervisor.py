"""The supervisor S of one job: cgroup, zygote, worker, wall clock, and the end of every process.

S is a subreaper, so whatever W or a candidate double-forks reparents to S, where S can find and
kill it; the job's cgroup catches the rest. See `evoforge.sandbox.forkserver` for the process tree.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
import traceback
from typing import Any

from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.sandbox.cgroups import JobCgroup
from evoforge.sandbox.frames import encode_frame, write_all
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.limits import cpu_limit_s
from evoforge.sandbox.outcome import STDERR_IN_ERROR_CHARS, classify_exit
from evoforge.sandbox.policy import Policy
from evoforge.sandbox.processes import close_fds_except, kill, kill_descendants, killpg, rmtree, set_subreaper
from evoforge.sandbox.worker import task_copy_dir, worker_main
from evoforge.sandbox.zygote import serve_zygote

__all__ = ["supervise_job", "supervisor_main", "TailBuffer", "remove_job_dirs", "job_cgroup_name", "MAX_RESULT_BYTES"]

MAX_RESULT_BYTES = 16 * 1024 * 1024    # W's result JSON; bigger is the candidate's fault -> ERROR
READ_CHUNK_BYTES = 1 << 16
DRAIN_AFTER_EXIT_S = 2.0               # reading what is left in the pipes once everyone is dead
ZYGOTE_SLACK = 8                       # processes of ours in a job's cgroup beyond max_processes


def remove_job_dirs(workdir: str) -> None:
    rmtree(workdir)
    rmtree(task_copy_dir(workdir))


class TailBuffer:
    """Keeps the last ``cap_bytes`` of a stream and counts what it dropped (bounded memory)."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap = max(0, int(cap_bytes))
        self.buf = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - self.cap
        if excess > 0:
            del self.buf[:excess]
            self.dropped += excess

    def text(self) -> str:
        """Decoded tail, at most ``cap`` characters including the "dropped" note."""
        if not self.dropped:
            return self.buf.decode("utf-8", errors="replace")
        note = f"[... {self.dropped} earlier bytes dropped ...]\n"
        if len(note) >= self.cap:
            return note[: self.cap]
        body = self.buf[len(note):]
        return note + body.decode("utf-8", errors="replace")


def _exit_failure(job: EvaluationJob, status: int, rusage: Any, stderr_text: str,
                  oom_killed: bool = False) -> EvaluationResult:
    """Why W ended without a result, as a scored failure (one classifier with docker)."""
    cpu_used_s = rusage.ru_utime + rusage.ru_stime if rusage is not None else 0.0
    return classify_exit(signal_number=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                         exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                         stderr_text=stderr_text, cpu_used_s=cpu_used_s, cpu_limit_s=cpu_limit_s(job),
                         oom_killed=oom_killed, memory_what=f"the job's memory limit of {int(job.memory_mb)} MB")


def _parse_result(raw: bytes) -> EvaluationResult | None:
    try:
        return EvaluationResult.from_dict(json.loads(raw.decode("utf-8")))
    except Exception:
        return None


def job_cgroup_name(supervisor_pid: int) -> str:
    return f"evoforge-{supervisor_pid}"


def _num_cpus(job: EvaluationJob) -> float | None:
    """The job's ``num_cpus`` (the task's ``[resources]``), the CPU quota of its cgroup; None: unlimited."""
    try:
        value = float(job.extra.get("num_cpus") or 0)
    except (TypeError, ValueError):
        return None
    return value if 0 < value < float("inf") else None


def _job_cgroup(job: EvaluationJob, policy: Policy) -> JobCgroup | None:
    if policy.cgroups is None:
        return None
    try:
        # The zygote and each candidate's launcher count too: a few processes above the job's own.
        return policy.cgroups.create(job_cgroup_name(os.getpid()), memory_mb=job.memory_mb,
                                     max_processes=int(job.max_processes) + 2 * ZYGOTE_SLACK,
                                     cpus=_num_cpus(job))
    except OSError:
        return None


def _start_zygote(job: EvaluationJob, policy: Policy, group: JobCgroup | None) -> tuple[int, int] | None:
    """Fork the job's candidate zygote (before W exists, so it never held evaluator state); returns
    (its pid, W's end of its socket), or None when candidates cannot get views of their own here."""
    if policy.zygote_root is None or policy.drop_uid is None:
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _set_oom_score_adj(0)
            sock_fd = theirs.detach()
            # S's response pipe above all (the server waits for its EOF); 0-2 stay (/dev/null), so
            # descriptors received later never take the numbers a candidate's stdio is dup2-ed onto.
            close_fds_except({0, 1, 2, sock_fd})
            serve_zygote(job, policy.drop_uid, policy.zygote_root, sock_fd)
        finally:
            os._exit(70)
    theirs.close()
    return pid, ours.detach()


def _set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(value))
    except OSError:
        pass


def supervise_job(job: EvaluationJob, workdir: str, policy: Policy) -> EvaluationResult:
    """Fork the zygote and W, drain W's pipes, enforce the wall clock, then kill everything left.

    S joins the job's cgroup itself, once, and Z and W inherit it: each move into a cgroup waits for
    an RCU grace period (milliseconds on a busy machine), and v1 has two hierarchies to move into.
    S is exempt from the OOM killer (and its children reset that); the server removes the cgroup
    once S has exited (`JobCgroup.remove`)."""
    group = _job_cgroup(job, policy)
    if group is not None:
        _set_oom_score_adj(-1000)
        try:
            group.join()
        except OSError:
            group.remove()
            group = None
    try:
        return _supervise(job, workdir, policy, group)
    finally:
        if group is not None:
            group.kill()          # all but S
            kill_descendants()


def _supervise(job: EvaluationJob, workdir: str, policy: Policy, group: JobCgroup | None) -> EvaluationResult:
    zygote = _start_zygote(job, policy, group)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (out_r, err_r, res_r):
                os.close(fd)
            _set_oom_score_adj(0)
            worker_main(job, workdir, policy, out_w, err_w, res_w, zygote[1] if zygote else None)
        finally:
            os._exit(70)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    if zygote is not None:
        os.close(zygote[1])

    streams = {out_r: TailBuffer(job.max_output_bytes), err_r: TailBuffer(job.max_output_bytes)}
    result_buf = bytearray()
    result_oversized = False
    poller = select.poll()
    open_fds = {out_r, err_r, res_r}
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
            poller.register(pidfd, select.POLLIN)  # readable when W exits: no busy polling
        except OSError:
            pidfd = None

    def pump(timeout_ms: int) -> None:
        nonlocal result_oversized
        for fd, _ev in poller.poll(timeout_ms):
            if fd == pidfd:
                continue
            data = os.read(fd, READ_CHUNK_BYTES)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
            elif fd == res_r:
                if len(result_buf) + len(data) > MAX_RESULT_BYTES:
                    result_oversized = True  # keep draining so W never blocks, but keep nothing
                    result_buf.clear()
                elif not result_oversized:
                    result_buf.extend(data)
            else:
                streams[fd].add(data)

    deadline = start + float(job.timeout_s)
    timed_out = False
    while True:
        now = time.monotonic()
        if not timed_out and now >= deadline:
            timed_out = True
            killpg(pid)
            kill(pid)
        wait_s = 0.05 if (timed_out or pidfd is None) else min(deadline - now, 1.0)
        pump(max(1, int(wait_s * 1000)))
        # WNOWAIT: W stays a zombie, so its pid -- and thus its process-group id -- cannot be
        # reused before we killpg it below.
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
    eval_s = time.monotonic() - start
    if pidfd is not None:
        poller.unregister(pidfd)
        os.close(pidfd)

    # W is gone; its group and anything double-forked (reparented to us, the subreaper) go too.
    killpg(pid)
    _, status, rusage = os.wait4(pid, 0)
    kill_descendants()
    drain_until = time.monotonic() + DRAIN_AFTER_EXIT_S
    while open_fds and time.monotonic() < drain_until:
        pump(50)
    for fd in (out_r, err_r, res_r):
        os.close(fd)

    stdout_text, stderr_text = streams[out_r].text(), streams[err_r].text()
    result = None if result_oversized else _parse_result(bytes(result_buf)) if result_buf else None
    if result_oversized:
        result = EvaluationResult.failure(
            Status.ERROR, f"the result was larger than {MAX_RESULT_BYTES // (1024 * 1024)} MiB")
    elif result is None and timed_out:
        result = EvaluationResult.failure(
            Status.TIMEOUT, f"exceeded the wall-clock limit of {job.timeout_s:g} s")
    elif result is None and result_buf:
        result = EvaluationResult.failure(
            Status.ERROR, "the worker's result could not be read (was fd 3 written to by the program?)")
    elif result is None:
        result = _exit_failure(job, status, rusage, stderr_text, oom_killed=bool(group and group.oom_kills()))
    elif result.status == Status.ERROR and group is not None and group.oom_kills():
        # The kernel killed a process of the job for memory (a candidate, a child of the evaluator):
        # whatever error the evaluator made of that, the job ran out of memory.
        data = result.to_dict()
        data.update(status=Status.OOM, artifacts={**result.artifacts, "error": (
            f"the job exceeded its memory limit of {int(job.memory_mb)} MB (the kernel killed a process)\n"
            + str(result.artifacts.get("error", "")))})
        result = EvaluationResult.from_dict(data)
    data = result.to_dict()
    data.update(stdout=stdout_text, stderr=stderr_text, eval_s=eval_s)
    return EvaluationResult.from_dict(data)


def supervisor_main(request_id: Any, job_data: dict, workdir: str, policy: Policy, out_fd: int) -> None:
    """Body of S; never returns (os._exit). Writes exactly one response frame to ``out_fd``."""
    try:
        set_subreaper()
        job = EvaluationJob.from_dict(job_data)
        result = supervise_job(job, workdir, policy)
        frame = encode_frame({"id": request_id, "result": result.to_dict()})
    except BaseException:
        kill_descendants()
        frame = encode_frame({"id": request_id, "error": "sandbox supervisor failed:\n"
                              + traceback.format_exc()[-STDERR_IN_ERROR_CHARS:]})
    remove_job_dirs(workdir)
    try:
        write_all(out_fd, frame)
    finally:
        os._exit(0)
