"""The worker W: the process that runs a task's evaluator, and how it is confined before it does.

Order matters and is irreversible: cgroup (joined by the caller), private mount and IPC namespaces
(tmpfs workdir and /dev/shm; home and checkout masked), rlimits, network namespace, the job's uid,
then `_lock_down`: Landlock, no capabilities, the seccomp filter, not dumpable.
"""

from __future__ import annotations

import ctypes
import faulthandler
import fcntl
import json
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import replace

from evoforge.evaluators.confine import CAP_DAC_READ_SEARCH, confine, drop_capabilities, make_undumpable
from evoforge.evaluators.location import code_dirs
from evoforge.evaluators.runner import run_job
from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.sandbox import mounts
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.limits import apply_rlimits, setrlimit
from evoforge.sandbox.policy import Policy, w_keep
from evoforge.sandbox.privileges import become
from evoforge.sandbox.processes import close_fds_except
from evoforge.sandbox.seccomp import install_filter
from evoforge.sandbox.zygote import ZYGOTE_FD_ENV

__all__ = ["worker_main", "task_copy_dir"]

_libc = ctypes.CDLL(None, use_errno=True)


def task_copy_dir(workdir: str) -> str:
    """Where W puts a private copy of a task folder the job's uid cannot read: beside the workdir,
    never inside it, because a candidate's process may read the workdir and the task folder may hold
    answer keys."""
    return workdir.rstrip("/") + ".task"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
        mounts.mask(list(policy.hidden), w_keep(job.task_dir))
    if getattr(job, "cwd", "workdir") == "task":
        # The evaluator's working directory is the task folder (OpenEvolve evaluators open data files
        # by relative path): a read-only bind of it onto itself, in this namespace only.
        mounts.bind(os.path.realpath(job.task_dir), os.path.realpath(job.task_dir))
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


def _drop_privileges(job: EvaluationJob, workdir: str, uid: int, read_cap: bool = False,
                     private_mounts: bool = False) -> EvaluationJob:
    evaluator = os.path.join(job.task_dir, job.evaluator_file)
    if not (_others_can_read(job.task_dir) and _others_can_read(evaluator)):
        # nobody could not import the evaluator from there: give it a private copy
        copy = task_copy_dir(workdir)
        shutil.copytree(job.task_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
        os.chmod(copy, 0o700)
        _chown_tree(copy, uid)
        if job.cwd == "task" and private_mounts:  # the evaluator's cwd: read-only, as the original is
            mounts.bind(copy, copy)      # (without a namespace of its own, Landlock keeps writes out)
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


def worker_main(job: EvaluationJob, workdir: str, policy: Policy, out_w: int, err_w: int, res_w: int,
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
        private_mounts = _private_mounts(job, workdir, policy)
        os.chdir(workdir)
        os.environ["HOME"] = workdir
        os.environ["TMPDIR"] = workdir  # stray temp files die with the workdir
        tempfile.tempdir = workdir
        apply_rlimits(job)
        _enter_network_namespace()
        original_task_dir = job.task_dir
        if policy.drop_uid is not None:
            job = _drop_privileges(job, workdir, policy.drop_uid, policy.read_cap, private_mounts)
        _lock_down(job, workdir, policy, original_task_dir)
        if job.cwd == "task":
            # Read-only as root (the bind above); without root, Landlock keeps writes to the workdir
            # where the kernel has it (sandbox.protections names what is missing).
            os.chdir(job.task_dir)
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
