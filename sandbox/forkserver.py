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

import ctypes
import faulthandler
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from evoforge.evaluators.confine import (
    CAP_DAC_READ_SEARCH, confine, drop_capabilities, make_undumpable, needed_paths,
)
from evoforge.evaluators.location import code_dirs, evaluators_dir
from evoforge.evaluators.runner import run_job
from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.sandbox import mounts
from evoforge.sandbox.cgroups import CgroupSupport, JobCgroup
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.limits import apply_rlimits, cpu_limit_s, setrlimit
from evoforge.sandbox.outcome import OOM_MARKERS, STDERR_IN_ERROR_CHARS, classify_exit
from evoforge.sandbox.privileges import JOB_UID_BASE, JOB_UID_POOL, NOBODY_UID, UidLeases, become
from evoforge.sandbox.processes import (
    children_of, close_fds_except, kill, kill_descendants, killpg, redirect_std_to_devnull, rmtree, set_subreaper,
)
from evoforge.sandbox.protections import protection_report
from evoforge.sandbox.seccomp import install_filter
from evoforge.sandbox.zygote import ZYGOTE_FD_ENV, serve_zygote

__all__ = ["encode_frame", "FrameReader", "children_of", "kill_descendants", "serve", "main",
           "MAX_RESULT_BYTES", "NOBODY_UID", "JOB_UID_BASE", "JOB_UID_POOL", "OOM_MARKERS",
           "STDERR_IN_ERROR_CHARS", "cpu_limit_s", "TailBuffer"]

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024 * 1024    # a request/response bigger than this is a protocol error
MAX_RESULT_BYTES = 16 * 1024 * 1024    # W's result JSON; bigger is the candidate's fault -> ERROR
READ_CHUNK_BYTES = 1 << 16
DRAIN_AFTER_EXIT_S = 2.0               # reading what is left in the pipes once everyone is dead
HIDE_ENV = "EVOFORGE_HIDE_PATHS"       # set by the client: os.pathsep-separated paths W must not read
ZYGOTE_SLACK = 8                       # processes of ours in a job's cgroup beyond max_processes

_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- frames

def encode_frame(obj: Any) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return FRAME_HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoder: feed bytes as they arrive, get whole frames back."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        while len(self._buf) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self._buf)
            if size > self._max:
                raise ValueError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            end = FRAME_HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append(json.loads(bytes(self._buf[FRAME_HEADER.size:end]).decode("utf-8")))
            del self._buf[:end]
        return frames


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --------------------------------------------------------------------------- job folders

def _task_copy_dir(workdir: str) -> str:
    """Where W puts a private copy of a task folder the job's uid cannot read: beside the workdir,
    never inside it, because the candidate's nested process may read everything under the workdir
    (Landlock only adds permissions beneath a path) and the task folder may hold answer keys."""
    return workdir.rstrip("/") + ".task"


def _remove_job_dirs(workdir: str) -> None:
    rmtree(workdir)
    rmtree(_task_copy_dir(workdir))


# --------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class Policy:
    """Per-server decisions, made once at startup (`make_policy`); ``drop_uid`` is per job."""

    drop_uid: int | None   # uid W switches to, or None to keep the current one
    read_cap: bool = False # keep CAP_DAC_READ_SEARCH after the switch (the interpreter is not readable otherwise)
    hidden: tuple[str, ...] = ()   # paths W may not read: the engine user's home, the source checkout
    masked: bool = False   # root with mount namespaces: W's home/checkout replaced by allow-listed views
    zygote_root: str | None = None  # empty folder the candidate zygote builds each candidate's root on
    cgroups: CgroupSupport | None = None
    notes: tuple[str, ...] = ()    # protections that could not be applied (see sandbox.protections)


def _checkout_root() -> str | None:
    """The source checkout evoforge runs from (editable install), if any: its .git holds every
    task's history, so the sandbox hides it all except the code and the task folder."""
    here = os.path.dirname(evaluators_dir())
    for folder in (here, os.path.dirname(here)):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def _w_keep(task_dir: str | None = None) -> list[str]:
    """What W must still read beneath the hidden folders."""
    return needed_paths() + code_dirs() + [os.path.dirname(os.path.abspath(__file__))] + \
        ([os.path.abspath(task_dir)] if task_dir else [])


def _probe(hidden: tuple[str, ...], read_cap: bool) -> bool:
    """Fork a probe that masks ``hidden`` as W will, becomes nobody and starts this interpreter."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            mounts.unshare(mounts.CLONE_NEWNS)
            mounts.make_private()
            mounts.mask(list(hidden), _w_keep())
            become(NOBODY_UID, read_cap)
            for p in [p for p in sys.path if p and os.path.isdir(p)] + [os.path.dirname(os.__file__)]:
                os.listdir(p)
            ok = os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", "import json, numbers"]) == 0
        except BaseException:
            ok = False
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def make_policy() -> Policy:
    """As root, each job's W runs as a uid of its own in a private mount namespace where the home
    and the checkout are masked (`mounts.mask`), so it needs no capability at all to read this
    interpreter even under a 0700 /root; candidates come from a zygote in views built for them.
    CAP_DAC_READ_SEARCH is kept only where masking is impossible and nobody cannot read Python."""
    hidden = tuple(p for p in os.environ.pop(HIDE_ENV, "").split(os.pathsep) if p)
    checkout = _checkout_root()
    if checkout:
        hidden += (checkout,)
    notes: list[str] = []
    cgroups, why = CgroupSupport.detect()
    if cgroups is None:
        notes.append(f"cgroups ({why})")
    if os.geteuid() != 0:
        return Policy(drop_uid=None, hidden=hidden, cgroups=None, notes=tuple(notes) + ("root",))
    masked = _probe(hidden, read_cap=False)
    if masked:
        root = tempfile.mkdtemp(prefix="evoforge-root-")
        return Policy(drop_uid=NOBODY_UID, hidden=hidden, masked=True, zygote_root=root, cgroups=cgroups,
                      notes=tuple(notes))
    notes.append("mount namespaces")
    for read_cap in (False, True):
        if _nobody_can_import(read_cap):
            return Policy(drop_uid=NOBODY_UID, read_cap=read_cap, hidden=hidden, cgroups=cgroups,
                          notes=tuple(notes))
    return Policy(drop_uid=None, hidden=hidden, cgroups=cgroups, notes=tuple(notes) + ("a user to drop to",))


def _nobody_can_import(read_cap: bool = False) -> bool:
    """Without masking: can nobody (keeping CAP_DAC_READ_SEARCH if ``read_cap``) start Python?"""
    paths = [p for p in sys.path if p and os.path.isdir(p)] + [os.path.dirname(os.__file__)]
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            become(NOBODY_UID, read_cap)
            for p in paths:
                os.listdir(p)
            ok = os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", "import json, numbers"]) == 0
        except BaseException:
            ok = False
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --------------------------------------------------------------------------- worker (W)

def _enter_network_namespace() -> None:
    """No network for the candidate. Root can unshare directly; a normal user needs a user
    namespace too (mapping its own uid to itself). Best effort: some kernels/containers refuse."""
    if _libc.unshare(mounts.CLONE_NEWNET) == 0:
        return
    if os.geteuid() == 0:
        return
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(mounts.CLONE_NEWUSER | mounts.CLONE_NEWNET) != 0:
        return
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
        except OSError:
            pass


def _private_mounts(job: EvaluationJob, workdir: str, policy: Policy) -> bool:
    """As root: a private mount and IPC namespace; a size-capped tmpfs on the workdir (a disk filler
    stops at ``max_file_mb``, its files vanish with the namespace) and on /dev/shm (nothing there
    outlives the job, nothing of an earlier job is there); the home and the checkout masked. Best
    effort without root."""
    if os.geteuid() != 0 or _libc.unshare(mounts.CLONE_NEWNS | mounts.CLONE_NEWIPC) != 0:
        return False
    mounts.make_private()
    mounts.tmpfs(workdir, size_mb=job.max_file_mb, mode=0o700)
    if os.path.isdir("/dev/shm"):
        mounts.tmpfs("/dev/shm", size_mb=job.max_file_mb, mode=0o1777)
    if policy.masked:
        mounts.mask(list(policy.hidden), _w_keep(job.task_dir))
    return True


def _others_can_read(path: str) -> bool:
    """Static check: every ancestor searchable by 'other', ``path`` itself readable."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
        if not st.st_mode & stat.S_IROTH or (stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH):
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def _chown_tree(path: str, uid: int) -> None:
    os.chown(path, uid, uid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def _drop_privileges(job: EvaluationJob, workdir: str, uid: int, read_cap: bool = False) -> EvaluationJob:
    evaluator = os.path.join(job.task_dir, job.evaluator_file)
    if not (_others_can_read(job.task_dir) and _others_can_read(evaluator)):
        # nobody could not import the evaluator from there: give it a private copy
        copy = _task_copy_dir(workdir)
        shutil.copytree(job.task_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
        os.chmod(copy, 0o700)
        _chown_tree(copy, uid)
        job = replace(job, task_dir=copy)
    _chown_tree(workdir, uid)
    setrlimit(resource.RLIMIT_NPROC, int(job.max_processes))  # per-user count: only meaningful as nobody
    become(uid, read_cap)
    return job


def _lock_down(job: EvaluationJob, workdir: str, policy: Policy, original_task_dir: str) -> None:
    """Last step before the evaluator runs, irreversible: Landlock (writes only in the workdir, the
    engine user's home and the checkout unreadable, no signals to or ptrace of processes outside --
    the supervisor, the server, the engine) where the kernel has it; no capabilities at all (so a root
    W cannot read the non-dumpable engine's /proc/<pid>/environ or remount anything); the seccomp
    filter; not dumpable itself, so a candidate cannot reach into the evaluator's memory."""
    abi = confine(writable=[workdir], hidden=policy.hidden, keep=[job.task_dir, *code_dirs()])
    os.environ["EVOFORGE_LANDLOCK_ABI"] = str(abi or 0)
    # Hidden from a candidate's process started without the zygote: the task folder and W's private copy.
    os.environ["EVOFORGE_TASK_DIR"] = os.pathsep.join(
        sorted({os.path.abspath(job.task_dir), os.path.abspath(original_task_dir)}))
    drop_capabilities(keep=(CAP_DAC_READ_SEARCH,) if policy.read_cap else ())
    install_filter()
    make_undumpable()


def _worker_main(job: EvaluationJob, workdir: str, policy: Policy, out_w: int, err_w: int, res_w: int,
                 zygote_fd: int | None) -> None:
    """Body of W; never returns (os._exit)."""
    os.setsid()  # own session and process group: one killpg reaches everything it started
    if zygote_fd is not None:  # out of the way of the dup2s below, which may land on its number
        zygote_fd = fcntl.fcntl(zygote_fd, fcntl.F_DUPFD_CLOEXEC, 100)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(res_w, 3, inheritable=False)  # not passed to anything the candidate execs
    keep = {0, 1, 2, 3}
    os.environ.pop(ZYGOTE_FD_ENV, None)
    if zygote_fd is not None:
        os.dup2(zygote_fd, 4, inheritable=False)
        keep.add(4)
        os.environ[ZYGOTE_FD_ENV] = "4"
    close_fds_except(keep)
    faulthandler.enable(file=sys.stderr)  # a segfault leaves a Python traceback in the stderr tail
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it; W need not
    try:
        _private_mounts(job, workdir, policy)
        os.chdir(workdir)
        os.environ["HOME"] = workdir
        os.environ["TMPDIR"] = workdir  # stray temp files die with the workdir
        tempfile.tempdir = workdir
        apply_rlimits(job)
        _enter_network_namespace()
        original_task_dir = job.task_dir
        if policy.drop_uid is not None:
            job = _drop_privileges(job, workdir, policy.drop_uid, policy.read_cap)
        _lock_down(job, workdir, policy, original_task_dir)
        result = run_job(job, workdir)
    except BaseException as exc:  # the isolation set-up itself failed: report it as data from here
        result = EvaluationResult.failure(
            Status.ERROR, f"sandbox worker set-up failed: {type(exc).__name__}: {exc}")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        payload = json.dumps(result.to_dict()).encode("utf-8")
    except BaseException as exc:
        payload = json.dumps(EvaluationResult.failure(
            Status.ERROR, f"result is not serialisable: {exc}").to_dict()).encode("utf-8")
    try:
        _write_all(3, payload)
    except BaseException:
        os._exit(75)
    os._exit(0)


# --------------------------------------------------------------------------- supervisor (S)

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


def _job_cgroup(job: EvaluationJob, policy: Policy) -> JobCgroup | None:
    if policy.cgroups is None:
        return None
    try:
        # The zygote and each candidate's launcher count too: a few processes above the job's own.
        return policy.cgroups.create(f"evoforge-{os.getpid()}", memory_mb=job.memory_mb,
                                     max_processes=int(job.max_processes) + 2 * ZYGOTE_SLACK)
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
            if group is not None:
                group.join()
            sock_fd = theirs.detach()
            close_fds_except({2, sock_fd})   # S's response pipe above all: the server waits for its EOF
            serve_zygote(job, policy.drop_uid, policy.zygote_root, sock_fd)
        finally:
            os._exit(70)
    theirs.close()
    return pid, ours.detach()


def supervise_job(job: EvaluationJob, workdir: str, policy: Policy) -> EvaluationResult:
    """Fork the zygote and W, drain W's pipes, enforce the wall clock, then kill everything left."""
    group = _job_cgroup(job, policy)
    try:
        return _supervise(job, workdir, policy, group)
    finally:
        if group is not None:
            group.kill()
            kill_descendants()
            group.remove()


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
            if group is not None:
                group.join()
            _worker_main(job, workdir, policy, out_w, err_w, res_w, zygote[1] if zygote else None)
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


def _supervisor_main(request_id: Any, job_data: dict, workdir: str, policy: Policy, out_fd: int) -> None:
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
    _remove_job_dirs(workdir)
    try:
        _write_all(out_fd, frame)
    finally:
        os._exit(0)


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
        self.leases = UidLeases() if policy.drop_uid is not None else None
        self.by_fd: dict[int, int] = {}              # pipe fd -> supervisor pid
        self.poller = select.poll()
        self.poller.register(in_fd, select.POLLIN)
        self.reader = FrameReader()

    def start(self, request: dict) -> None:
        rid = request.get("id")
        # Made here, not in S, so the server can still remove it if S is killed.
        workdir = tempfile.mkdtemp(prefix="evoforge-")
        lease_fd = None
        if self.leases is not None:
            uid, lease_fd = self.leases.acquire()    # host-wide: no other server's live job has it
            policy = replace(self.policy, drop_uid=uid)
        else:
            policy = self.policy
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                redirect_std_to_devnull()
                close_fds_except({0, 1, 2, w})
                _supervisor_main(rid, request.get("job") or {}, workdir, policy, w)
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
        _remove_job_dirs(sup.workdir)  # normally S already did; a killed S did not
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
        _write_all(self.out_fd, encode_frame(response))

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
        for sup in self.sups.values():
            _remove_job_dirs(sup.workdir)
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
    _write_all(out_fd, encode_frame({"ready": True, "pid": os.getpid(), "numpy": has_numpy,
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
