"""The candidate zygote: forks each candidate process of a job from a clean, warm interpreter.

`evoforge.evaluators.candidate.CandidateSession` used to start every candidate as a fresh interpreter
that imported numpy again (~230 ms of a ~270 ms circle_packing evaluation). The supervisor now forks
this zygote (Z) for each job before the evaluator (W) exists, so Z never held evaluator state (no
task data, no answers), only the fork server's pre-imported modules. W asks Z for a candidate over a
UNIX socket (fd number in ``EVOFORGE_ZYGOTE_FD``), passing four descriptors with SCM_RIGHTS: a control
socket, the reply pipe's write end, the request pipe's read end and its stderr.

For each request Z forks C1, which enters new mount, PID, network, IPC, UTS and cgroup namespaces
and forks C2, PID 1 of the new PID namespace and the candidate's process. C2 builds its filesystem
from nothing (`evoforge.sandbox.mounts.build_root`), sets the job's RLIMITs, drops to the job's uid with
no capabilities, installs the seccomp filter (`evoforge.sandbox.seccomp`), reads the program text
from the request pipe into its fresh /candidate, and serves calls (`evoforge.evaluators.candidate._serve`).
C1 stays outside: it sends C2's pid on the control socket, kills C2 when W shuts the control
socket (close, timeout, W's death), and sends C2's wait status when it has died. When PID 1 of a
namespace dies the kernel kills every other process in it, so nothing a candidate starts survives
its session; its /candidate, /tmp, /dev/shm and SysV IPC objects die with their namespaces.

Z, C1 and C2 are in the job's cgroup (`evoforge.sandbox.cgroups`), so memory and process counts are
the job's, together with W's.
"""

from __future__ import annotations

import array
import ctypes
import os
import select
import signal
import socket
import struct
import sys

from evoforge.evaluators.location import code_dirs
from evoforge.sandbox import mounts
from evoforge.sandbox.limits import apply_rlimits, setrlimit
from evoforge.sandbox.privileges import become
from evoforge.sandbox.seccomp import install_filter

__all__ = ["serve_zygote", "candidate_read_only_paths", "ZYGOTE_FD_ENV", "STATUS"]

ZYGOTE_FD_ENV = "EVOFORGE_ZYGOTE_FD"
STATUS = struct.Struct("<cq")            # (b"p", pid) then (b"s", wait status) on the control socket
PR_SET_PDEATHSIG = 1
SYSTEM_READ_ONLY = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
CANDIDATE_HOSTNAME = b"candidate"
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES")   # the GPUs this evaluation may use
WORKDIR = "/candidate"                   # the candidate's own fresh, writable folder
_libc = ctypes.CDLL(None, use_errno=True)


def candidate_read_only_paths() -> list[str]:
    """The allow-list of host paths a candidate sees (read-only): the interpreter, its libraries
    and import paths, evoforge's code; GPU nodes' /sys only where there are GPUs."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isdir(p) and p != "/"]
    paths += code_dirs() + list(SYSTEM_READ_ONLY)
    if os.path.exists("/dev/nvidiactl"):
        paths.append("/sys")
    return sorted({os.path.realpath(p) if not os.path.islink(p) else p for p in paths if os.path.exists(p)})


def _devices() -> list[str]:
    found = list(DEVICES)
    found += sorted("/dev/" + n for n in os.listdir("/dev") if n.startswith("nvidia"))
    return found


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _send(control: int, kind: bytes, value: int) -> None:
    try:
        os.write(control, STATUS.pack(kind, value))
    except OSError:
        pass


def _candidate(job, uid: int, root: str, control: int, reply_w: int, request_r: int, err: int,
               release_r: int) -> None:
    """C2: PID 1 of the new namespaces. Never returns."""
    from evoforge.evaluators.candidate import _read_program, _serve

    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.read(release_r, 1) != b"g":          # C1 died before letting us go
            os._exit(70)
        os.close(release_r)
        os.close(control)
        mounts.make_private()
        mounts.build_root(root, read_only=candidate_read_only_paths(), devices=_devices(),
                          tmp_mb=job.max_file_mb, work_mb=job.max_file_mb)
        _libc.sethostname(CANDIDATE_HOSTNAME, len(CANDIDATE_HOSTNAME))
        mounts.pivot_into(root)
        os.chown(WORKDIR, uid, uid)
        os.chdir(WORKDIR)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(err, 2)
        os.dup2(err, 1)                            # prints go to stderr, never into the replies
        for fd in (null, err):
            if fd > 2:
                os.close(fd)
        kept = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}   # the server's, already clean
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **kept, "HOME": WORKDIR, "TMPDIR": "/tmp",
                           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        import tempfile
        tempfile.tempdir = "/tmp"
        apply_rlimits(job)
        import resource
        setrlimit(resource.RLIMIT_NPROC, int(job.max_processes))
        become(uid)                                # all capabilities go with root's uid
        from evoforge.evaluators.confine import drop_capabilities
        drop_capabilities()                        # and the bounding set, so no exec regains them
        if not install_filter():
            raise OSError("seccomp filter refused")
        program_path = _read_program(request_r, WORKDIR)
    except BaseException as exc:
        try:
            os.write(2, f"candidate set-up failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(71)
    sys.stdout = sys.stderr
    try:
        _serve(program_path, reply_w, request_r, None)
    finally:
        os._exit(0)


def _launcher(job, uid: int, root: str, fds: list[int]) -> None:
    """C1: new namespaces, fork C2, relay its pid and end, kill it when W lets go. Never returns."""
    control, reply_w, request_r, err = fds
    try:
        mounts.unshare(mounts.CLONE_NEWNS | mounts.CLONE_NEWPID | mounts.CLONE_NEWNET | mounts.CLONE_NEWIPC
                       | mounts.CLONE_NEWUTS | mounts.CLONE_NEWCGROUP)
        release_r, release_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(release_w)
            _candidate(job, uid, root, control, reply_w, request_r, err, release_r)
        os.close(release_r)
        for fd in (reply_w, request_r, err):
            os.close(fd)
        _send(control, b"p", pid)
        os.write(release_w, b"g")
        os.close(release_w)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(control, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if pidfd in ready:
                break
            if control in ready:                   # W shut the session (or died): end the candidate
                try:
                    data = os.read(control, 64)
                except OSError:
                    data = b""
                if not data:
                    os.kill(pid, signal.SIGKILL)
                    poller.unregister(control)
        _, status = os.waitpid(pid, 0)
        _send(control, b"s", status)
    finally:
        os._exit(0)


def _receive(sock: socket.socket) -> list[int] | None:
    """One request: four descriptors. None when W has gone."""
    fds = array.array("i")
    try:
        msg, ancdata, _flags, _addr = sock.recvmsg(16, socket.CMSG_LEN(8 * fds.itemsize))
    except OSError:
        return None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    if not msg and not fds:
        return None
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return []
    return list(fds)


def serve_zygote(job, uid: int, root: str, sock_fd: int) -> None:
    """Z's loop: one candidate per request until W closes its end. Never returns."""
    try:
        os.setsid()
        sock = socket.socket(fileno=sock_fd)
        launched: set[int] = set()
        while True:
            fds = _receive(sock)
            if fds is None:
                break
            if not fds:
                continue
            pid = os.fork()
            if pid == 0:
                _close_fds_except({2, *fds})
                _launcher(job, uid, root, fds)
            launched.add(pid)
            for fd in fds:
                os.close(fd)
            for child in list(launched):           # reap the launchers that finished
                try:
                    if os.waitpid(child, os.WNOHANG)[0]:
                        launched.discard(child)
                except ChildProcessError:
                    launched.discard(child)
        for child in launched:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        os._exit(0)
