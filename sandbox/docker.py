"""The ``docker`` isolation backend: one throw-away container per evaluation, through the docker SDK.

Each `DockerSandbox.run` creates a container from the task's image (``[sandbox] image`` in task.toml,
carried in ``job.extra["docker_image"]``; default ``evoforge-sandbox:latest``, built offline by
``sandbox/build_image.sh`` or from ``sandbox/Dockerfile``) and runs the same `evoforge.evaluators.runner.run_job`
the process sandbox runs, so both backends score a candidate the same way. The container gets:

- no network (``network_mode="none"``), a read-only root file system, ``no-new-privileges``, a private
  IPC namespace and a ``/dev/shm`` of its own (``SHM_MB``), all capabilities dropped but the
  supervisor's four (below), which the evaluator and the candidate never hold;
- a cgroup memory limit of ``memory_mb`` with swap off, a CPU quota (the task's ``num_cpus``), a
  pids limit of ``max_processes``, and rlimits for CPU seconds, file size, open files and cores;
- a ``tmpfs`` work directory (``/work``, ``max_file_mb`` large, ``noexec``) holding the candidate;
  tmpfs pages are charged to the container's memory cgroup, so it cannot outgrow the memory limit;
- read-only bind mounts: the repo's ``evaluators`` package and a per-job input folder holding
  ``job.json`` and a copy of the task folder (mode 0700: only the supervisor reads it); tmpfs folders,
  each 0700 and its uid's alone: ``/opt/evoforge/task`` (the evaluator's copy of the task) and
  ``/candidate`` (the nested candidates');
- HOME on the read-only root and ``PYTHONNOUSERSITE``, and the supervisor runs ``python3 -s`` in ``/``:
  no user site-packages and nothing writable on ``sys.path``, so no start-up hook (``usercustomize``,
  a ``.pth``) can be planted for a later interpreter;
- no log driver: output is read live from an attach stream into bounded tail buffers, so a candidate
  that prints gigabytes costs neither memory nor the daemon's disk.

Two uids (issue 12: under the old design a candidate read the result marker from a job file it could
read, printed a forged "ok, 123456" after it and killed the evaluator). A *supervisor* (``_ENTRY``)
runs as the container's root with only CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_DAC_READ_SEARCH and
never runs task or candidate code. It reads the job, forks the *evaluator*, which drops to ``user``
(65534 by default; every capability goes with the uid) and runs the same
`evoforge.evaluators.runner.run_job` the process sandbox runs, with its stdout and stderr on pipes to
the supervisor and its result on a third, close-on-exec pipe. The supervisor alone holds the
container's stdout and writes frames there (``o`` stdout, ``e`` stderr, ``r`` result, ``x`` "ended
without a result" with the wait status), so nothing a candidate prints can pass for a result, and a
candidate can neither signal nor ptrace the supervisor (another uid, non-dumpable) nor read the job.
When the evaluator ends, the supervisor SIGKILLs every other process in the container, then reports.
It runs under Docker's init (``init=True``, tini) rather than as PID 1: the kernel drops
default-action signals sent to a namespace's PID 1, and RLIMIT_CPU's SIGXCPU would be lost.

A third uid for nested candidates (issue 12: a candidate under the evaluator's uid could list the task
folder). Before it reads the job, the supervisor forks a candidate *zygote* (`serve_candidates` in
``_ENTRY``) that drops to ``CANDIDATE_UID`` with no capabilities and imports the ``evaluators``
package (numpy) once; it never held the job. The evaluator's `CandidateSession` reaches it through
``EVOFORGE_ZYGOTE_FD`` with the protocol of `evoforge.sandbox.zygote` (four descriptors by SCM_RIGHTS;
pid, then wait status on the control socket); each candidate runs in its own session and a fresh
folder under ``CANDIDATE_DIR``, and what it wrote there is deleted before the next one starts. The
evaluator copies the task folder out of the input folder (as root, before its drop) into a 0700 tmpfs
of its uid, so no candidate can list or read it, the job or the evaluator's ``/work``. Not separated:
a candidate the evaluator imports in-process (the evaluator's uid), ``/dev/shm`` between candidates of
one evaluation, and a process a candidate detached (no PID namespace here: the container has no
CAP_SYS_ADMIN) lives until the evaluation ends.

Outcome mapping, in this order: the wall clock passed -> ``timeout`` (container killed), whatever was
printed; a container that did not end cleanly (killed, OOM) never yields a result it may have sent;
otherwise the supervisor's result wins (an ``error`` while the cgroup OOM killer fired becomes
``oom``); an evaluator that ended without one is classified by how it ended: OOM-killed -> ``oom``;
SIGXCPU -> ``timeout``; any other exit -> ``error`` with the exit code and the stderr tail. Every
container is removed (forced) when its evaluation ends, whatever happened, and `close` removes those
still running.

Why not a warm pool with ``exec``: a reused container keeps its tmpfs and any process the previous
candidate left behind (a daemonised child survives the exec), so isolation between candidates would
rest on our clean-up; one container per evaluation keeps it structural. Measured overhead is in the
README ("Docker sandbox").

Error contract: every docker SDK / ``requests`` failure is translated here into `SandboxError` with the
original chained; nothing the candidate does raises.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from evoforge.evaluators.types import EvaluationResult, SandboxError, Status
from evoforge.sandbox.forkserver import MAX_RESULT_BYTES, TailBuffer, cpu_limit_s
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.outcome import classify_exit
from evoforge.evaluators.location import evaluators_dir
from evoforge.sandbox.process import FIXED_ENV
from evoforge.sandbox.waits import waiting

__all__ = ["DockerSandbox", "DEFAULT_IMAGE", "CONTAINER_LABEL", "docker_available"]

DEFAULT_IMAGE = "evoforge-sandbox:latest"
DEFAULT_USER = "65534:65534"          # nobody:nogroup in Debian's base-passwd
CANDIDATE_UID = 65533                 # nested candidates' uid and gid: no passwd entry needed, not the evaluator's
CANDIDATE_DIR = "/candidate"          # tmpfs of CANDIDATE_UID, 0700: each candidate's fresh folder under it
CONTAINER_LABEL = "evoforge.sandbox"  # on every container we make (clean-up, tests); value: the engine's pid
WORKDIR = "/work"                     # the tmpfs; not an image WORKDIR (Docker would reset its mode)
LIB_DIR = "/opt/evoforge"             # evoforge/evaluators/ is mounted under it (a namespace package); on PYTHONPATH
TASK_DIR = f"{LIB_DIR}/task"
IN_DIR = f"{LIB_DIR}/in"
API_TIMEOUT_S = 60.0                  # one docker API call (create, start, remove), not the evaluation
EXIT_GRACE_S = 30.0                   # after the output ends or a kill, for the daemon to report the exit
SIGXCPU_EXIT = 128 + 24               # RLIMIT_CPU soft limit hit
SUPERVISOR_CAPS = ["SETUID", "SETGID", "KILL", "DAC_READ_SEARCH"]  # the supervisor's only ones; see _ENTRY
SHM_MB = 64                           # the container's own /dev/shm (tmpfs, charged to its memory cgroup)
READONLY_HOME = "/nonexistent"        # HOME on the read-only root: nothing can be planted in it
DAEMON_HINT = ("start one (as root: `sandbox/ci_docker.sh start`, or `systemctl start docker`), "
               "or use --sandbox process")

# The supervisor: PID 2 inside the container, under tini, as the container's root with only CAP_SETUID,
# CAP_SETGID, CAP_KILL and CAP_DAC_READ_SEARCH (``python3 -s`` in ``/``: no user site, nothing writable
# on sys.path; not ``-I``, which would also drop PYTHONHASHSEED=0 and make scores depend on hash order).
# It never runs task or candidate code: it reads the job (a file only it can read), forks the evaluator,
# which drops to the job's uid (every capability goes with the uid; if the drop fails, `run_job` never
# starts) and runs `run_job`, and relays the evaluator's stdout, stderr and result as frames on the
# container's stdout, which only it holds. Frame: 1 kind byte (o stdout, e stderr, r result, x "no result", with
# the evaluator's wait status), 4-byte big-endian length, payload. Standard library only, then the
# mounted `evaluators` package (imported by the evaluator, after the drop).
_ENTRY = r"""
import array, ctypes, faulthandler, json, os, select, shutil, signal, socket, struct, sys, tempfile, time, types

def read_tree(root):
    found = []
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        found.append((rel, None, 0))
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as fh:
                found.append((os.path.join(rel, name), fh.read(), os.stat(path).st_mode & 0o100))
    return found

def write_tree(root, found):
    for rel, data, exe in found:
        path = os.path.normpath(os.path.join(root, rel))
        if data is None:
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                fh.write(data)
            os.chmod(path, 0o500 if exe else 0o400)
    for rel, data, exe in reversed(found):  # read-only like the mount it replaces (its owner could chmod
        if data is None:                    # it back, but it is this container's copy, not the task's)
            os.chmod(os.path.normpath(os.path.join(root, rel)), 0o500)

def launch(fds, home, read_program, serve):
    # C1, under the candidate's uid: forks the candidate C2 in a session and a fresh folder of its own,
    # sends its pid, kills its session when the evaluator lets go, sends its wait status.
    control, reply_w, request_r, err = fds
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            os.close(control)
            os.chdir(home)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(err, 1)  # prints go to stderr, never into the replies
            os.dup2(err, 2)
            os.environ.clear()
            os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home,
                               "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
                               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
            tempfile.tempdir = home
            path = read_program(request_r, home)
        except BaseException as exc:
            try:
                os.write(2, ("candidate set-up failed: %%s: %%s\n" %% (type(exc).__name__, exc)).encode())
            finally:
                os._exit(71)
        sys.stdout = sys.stderr
        try:
            serve(path, reply_w, request_r, None)
        finally:
            os._exit(0)
    for fd in (reply_w, request_r, err):
        os.close(fd)
    os.write(control, struct.pack("<cq", b"p", child))
    pidfd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(control, select.POLLIN)
    while True:
        ready = dict(poller.poll())
        if pidfd in ready:
            break
        if control in ready:
            try:
                data = os.read(control, 64)
            except OSError:
                data = b""
            if not data:  # the evaluator shut the session (or died): end the candidate's session
                os.killpg(child, signal.SIGKILL)
                poller.unregister(control)
    _, status = os.waitpid(child, 0)
    try:
        os.killpg(child, signal.SIGKILL)  # whatever it left in its session
    except OSError:
        pass
    shutil.rmtree(home, ignore_errors=True)  # before the evaluator hears of the end: no next candidate sees it
    try:
        os.write(control, struct.pack("<cq", b"s", status))
    except OSError:
        pass

def serve_candidates(sock, read_program, serve):
    # Z: one launcher per request (four descriptors by SCM_RIGHTS) until the evaluator closes its end.
    launched = {}  # launcher pid -> its candidate's folder
    while True:
        fds = array.array("i")
        try:
            msg, anc, _, _ = sock.recvmsg(16, socket.CMSG_LEN(8 * fds.itemsize))
        except OSError:
            return
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) %% fds.itemsize])
        if not msg and not fds:
            return
        if len(fds) == 4:
            for child in list(launched):  # reap the launchers that finished
                if os.waitpid(child, os.WNOHANG)[0]:
                    del launched[child]
            # Nothing a finished candidate wrote (its folder, files beside it) is left for the next one.
            for name in os.listdir(%(candidate_dir)r):
                path = os.path.join(%(candidate_dir)r, name)
                if path not in launched.values():
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        try:
                            os.unlink(path)
                        except OSError:
                            pass
            home = tempfile.mkdtemp(dir=%(candidate_dir)r)
            child = os.fork()
            if child == 0:
                try:
                    sock.close()
                    for name in os.listdir("/proc/self/fd"):
                        if int(name) > 2 and int(name) not in fds:
                            try:
                                os.close(int(name))
                            except OSError:
                                pass
                    launch(list(fds), home, read_program, serve)
                finally:
                    os._exit(0)
            launched[child] = home
        for fd in fds:
            os.close(fd)

faulthandler.enable()
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no same-uid /proc/<pid>/fd, mem, environ of ours
sys.path.insert(0, %(lib_dir)r)
# The candidate zygote, forked before the job is read: it never holds the job, the task or the
# evaluator's state. It drops to the candidate's uid at once and forks each candidate of the
# evaluator's run_candidate / CandidateSession (the EVOFORGE_ZYGOTE_FD protocol of the process sandbox).
zygote_sock, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
zygote = os.fork()
if zygote == 0:
    try:
        zygote_sock.close()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)  # the container's stdout carries the supervisor's frames only
        os.close(null)
        os.setgroups([])
        os.setgid(%(candidate_uid)d)
        os.setuid(%(candidate_uid)d)  # every capability goes with root's uid
        libc.prctl(4, 0, 0, 0, 0)
        os.chdir(%(candidate_dir)r)
        from evoforge.evaluators.candidate import _read_program, _serve  # warm: numpy once, not per candidate
        serve_candidates(zygote_end, _read_program, _serve)
    finally:
        os._exit(0)
zygote_end.close()
with open(%(job_file)r, encoding="utf-8") as fh:
    spec = json.load(fh)
uid, gid, max_result = spec["uid"], spec["gid"], spec["max_result_bytes"]
out = os.dup(1)
os.set_inheritable(out, False)
pipes = {kind: os.pipe() for kind in "oer"}
wake_r, wake_w = os.pipe()  # SIGCHLD wakes the relay loop at once (signal.set_wakeup_fd)
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.set_wakeup_fd(wake_w)
pid = os.fork()
if pid == 0:
    data = b""
    os.set_inheritable(zygote_sock.fileno(), False)  # the evaluator's, in-process only
    result_fd = pipes["r"][1]
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)
        os.close(out)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(pipes["o"][1], 1)
        os.dup2(pipes["e"][1], 2)
        for r, w in pipes.values():
            os.close(r)
        os.set_inheritable(result_fd, False)  # a nested candidate (an exec) never holds it
        task = read_tree(%(staged_task)r)  # as root (CAP_DAC_READ_SEARCH): the staged copy is 0700
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # from root to another uid: every capability is dropped with it
        libc.prctl(4, 0, 0, 0, 0)
        write_tree(%(task_dir)r, task)  # into a 0700 tmpfs of the evaluator's uid: no candidate reads it
        del task
        os.chdir(%(workdir)r)
        tempfile.tempdir = %(workdir)r
        # What a nested candidate (run_candidate) hides from itself with Landlock: the task folder
        # and the job's input folder (the contract sandbox.forkserver sets for the process sandbox).
        os.environ["EVOFORGE_TASK_DIR"] = %(task_dir)r + os.pathsep + %(in_dir)r
        os.environ["EVOFORGE_ZYGOTE_FD"] = str(zygote_sock.fileno())
        from evoforge.evaluators.runner import run_job
        result = run_job(types.SimpleNamespace(**spec["job"]), %(workdir)r).to_dict()
        try:
            data = json.dumps(result).encode("utf-8")
        except BaseException as exc:
            data = json.dumps({"status": "error", "artifacts": {
                "error": "the result is not JSON-serialisable: %%s" %% exc}}).encode("utf-8")
    except BaseException as exc:
        data = json.dumps({"status": "error", "artifacts": {
            "error": "sandbox container set-up failed: %%s: %%s" %% (type(exc).__name__, exc)}}).encode("utf-8")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view):]
    os._exit(0)

for r, w in pipes.values():
    os.close(w)
zygote_sock.close()  # the evaluator holds the only end: when it ends, the zygote does
kind_of = {pipes[k][0]: k for k in "oer"}
result = bytearray()
oversized = False

def frame(kind, payload):
    view = memoryview(kind.encode() + struct.pack(">I", len(payload)) + payload)
    while view:
        view = view[os.write(out, view):]

def pump(timeout):
    global oversized
    ready = select.select(list(kind_of) + [wake_r], [], [], timeout)[0]
    for fd in ready:
        if fd == wake_r:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            del kind_of[fd]
        elif kind_of[fd] == "r":
            if len(result) + len(chunk) > max_result:
                oversized = True
                result.clear()
            elif not oversized:
                result.extend(chunk)
        else:
            frame(kind_of[fd], chunk)
    return bool(ready)

status = None
while status is None:
    pump(0.5)  # a bound, not a pace: output and SIGCHLD wake it
    done, wait_status = os.waitpid(pid, os.WNOHANG)
    if done:
        status = wait_status
try:
    os.kill(-1, signal.SIGKILL)  # every process but tini (PID 1) and us: nothing outlives the evaluator
except OSError:
    pass  # none left
deadline = time.monotonic() + 5.0  # the killed close their ends at once; a bound all the same
while kind_of and time.monotonic() < deadline:
    pump(0.05)  # what the evaluator wrote before it ended, then end of file on every pipe
if oversized:
    frame("r", json.dumps({"status": "error", "artifacts": {"error": "the result was larger than %%d MiB" %% (
        max_result // 1048576)}}).encode())
elif result:
    frame("r", bytes(result))
else:
    frame("x", json.dumps({"wait_status": status}).encode())
os._exit(0)
""" % {"job_file": f"{IN_DIR}/job.json", "workdir": WORKDIR, "lib_dir": LIB_DIR, "task_dir": TASK_DIR,
       "in_dir": IN_DIR, "staged_task": f"{IN_DIR}/task", "candidate_uid": CANDIDATE_UID,
       "candidate_dir": CANDIDATE_DIR}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _why_unreachable(where: str, exc: BaseException) -> str:
    if where.startswith("unix://") and not os.path.exists(where[len("unix://"):]):
        return "its socket does not exist: no daemon is running"
    return _one_line(exc, 160)


def _is_timeout(exc: BaseException) -> bool:
    """A read timeout from `requests` (or its urllib3 cause), however docker-py wrapped it."""
    import requests.exceptions
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.exceptions.Timeout, TimeoutError)) or "timed out" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _sdk_errors() -> tuple[type[BaseException], ...]:
    """Everything the docker SDK raises at us: its own tree and the transport's (`requests`)."""
    import docker.errors
    import requests.exceptions
    return (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError)


def docker_available(*, probe: bool = True) -> tuple[bool, str]:
    """(True, "") when a Docker engine answers, has the default image and (``probe``) can run a
    container from it; else (False, why). For tests and diagnostics: the probe costs a container."""
    try:
        import docker
    except ImportError as exc:
        return False, f"the docker Python SDK is not installed ({exc})"
    try:
        client = docker.from_env(timeout=10)
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return False, f"no Docker engine answers at {where} ({_why_unreachable(where, exc)})"
    try:
        client.ping()
        client.images.get(DEFAULT_IMAGE)
    except Exception as exc:
        client.close()
        return False, (f"Docker engine up but image {DEFAULT_IMAGE} missing ({_one_line(exc, 120)}); "
                       "build it with sandbox/build_image.sh")
    try:
        if probe:
            client.containers.run(DEFAULT_IMAGE, ["python3", "-c", "import numpy"], network_mode="none",
                                  init=True, remove=True, labels={CONTAINER_LABEL: "probe"})
    except Exception as exc:
        return False, f"a container from {DEFAULT_IMAGE} does not run here ({_one_line(exc, 160)})"
    finally:
        client.close()
    return True, ""


class _FrameReader:
    """Reads the supervisor's frames from the container's stdout (the only writer there): the
    evaluator's stdout and stderr into bounded tails, its result (capped at ``MAX_RESULT_BYTES``), or
    the wait status of an evaluator that ended without one. A frame may straddle chunks."""

    _HEADER = 5  # kind byte + 4-byte big-endian length

    def __init__(self, cap_bytes: int) -> None:
        self.stdout = TailBuffer(cap_bytes)
        self.stderr = TailBuffer(cap_bytes)
        self.pending = bytearray()
        self.result: bytes | None = None
        self.no_result: dict | None = None
        self.corrupt = False

    def add(self, data: bytes) -> None:
        if self.corrupt:
            return
        self.pending += data
        while len(self.pending) >= self._HEADER:
            kind, size = self.pending[:1], int.from_bytes(self.pending[1:self._HEADER], "big")
            if kind not in (b"o", b"e", b"r", b"x") or size > MAX_RESULT_BYTES:
                self.corrupt = True   # only our supervisor writes here: this is a bug, not a candidate
                self.pending.clear()
                return
            if len(self.pending) < self._HEADER + size:
                return
            payload = bytes(self.pending[self._HEADER:self._HEADER + size])
            del self.pending[:self._HEADER + size]
            if kind == b"o":
                self.stdout.add(payload)
            elif kind == b"e":
                self.stderr.add(payload)
            elif kind == b"r":
                self.result = payload
            else:
                try:
                    self.no_result = json.loads(payload)
                except ValueError:
                    self.corrupt = True


class DockerSandbox:
    """Isolation in containers; ``run`` blocks and is safe to call from several threads.

    ``image`` is the default when a job names none; ``user`` runs the candidate (``uid:gid``, never
    root: the point is an unprivileged process even inside the container); ``cpus`` is the CPU quota
    when a job carries no ``num_cpus``; ``base_url`` picks the daemon (default: ``DOCKER_HOST`` or the
    local socket). The daemon must be local: the task folder and ``evaluators`` are bind-mounted.
    """

    def __init__(self, *, image: str = DEFAULT_IMAGE, user: str = DEFAULT_USER, cpus: float = 1.0,
                 base_url: str | None = None, max_pool_size: int = 64,
                 startup_timeout_s: float = API_TIMEOUT_S) -> None:
        try:
            import docker
        except ImportError as exc:  # registry turns this into a ConfigError
            raise ImportError(f"the docker Python SDK is missing ({exc}); pip install docker") from exc
        uid, _, gid = user.partition(":")
        if not (uid.isdigit() and gid.isdigit()) or int(uid) == 0 or CANDIDATE_UID in (int(uid), int(gid)):
            raise SandboxError(f"DockerSandbox user: expected a non-root 'uid:gid' like {DEFAULT_USER}, "
                               f"other than the candidates' {CANDIDATE_UID}, but got {user!r}")
        self.image, self.user, self.cpus = image, user, float(cpus)
        self._uid, self._gid = int(uid), int(gid)
        where = self._where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            # The first answer within [limits] startup_timeout_s (a daemon that takes the connection
            # and never answers is as absent as none); every later API call within API_TIMEOUT_S.
            with waiting(f"the Docker daemon at {where} to answer", limit_s=startup_timeout_s):
                if base_url:
                    self._client = docker.DockerClient(base_url=base_url, timeout=startup_timeout_s,
                                                       max_pool_size=max_pool_size)
                else:
                    self._client = docker.from_env(timeout=startup_timeout_s, max_pool_size=max_pool_size)
                self._client.ping()
            self._client.api.timeout = API_TIMEOUT_S
        except _sdk_errors() as exc:
            if _is_timeout(exc):
                raise SandboxError(f"--sandbox docker: the Docker engine at {where} accepted the connection but "
                                   f"did not answer within {startup_timeout_s:g} s; check that the daemon is "
                                   "healthy (`docker info`), or raise [limits] startup_timeout_s in task.toml") from exc
            raise SandboxError(f"--sandbox docker: no Docker engine answers at {where} "
                               f"({_why_unreachable(where, exc)}); {DAEMON_HINT}") from exc
        self._lock = threading.Lock()
        self._images_ok: set[str] = set()
        self._live: set[str] = set()       # ids of containers not yet removed
        self._closed = False

    # -- lifecycle

    def close(self) -> None:
        """Kill and remove containers still running (evaluations in flight fail). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live, self._live = set(self._live), set()
        for cid in live:
            try:
                self._client.api.remove_container(cid, force=True)
            except _sdk_errors():
                pass  # already gone, or the daemon went away: nothing more we can do
        try:
            self._client.close()
        except Exception:
            pass

    def __enter__(self) -> "DockerSandbox":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- work

    def run(self, job: EvaluationJob) -> EvaluationResult:
        """Evaluate ``job`` in a fresh container; raises `SandboxError` only for machinery failures."""
        if self._closed:
            raise SandboxError("this DockerSandbox is closed")
        image = str(job.extra.get("docker_image") or self.image)
        self._check_image(image)
        indir = tempfile.mkdtemp(prefix="evoforge-docker-")  # 0700: only the supervisor reads it
        try:
            task_mb = self._stage_inputs(job, indir)
            container = self._create(job, image, indir, task_mb)
            try:
                return self._drive(container, job)
            finally:
                self._remove(container)
        finally:
            shutil.rmtree(indir, ignore_errors=True)

    def _check_image(self, image: str) -> None:
        if image in self._images_ok:
            return
        import docker.errors
        try:
            self._client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                f"docker image {image!r} not found: build it with `sandbox/build_image.sh` (offline, "
                f"as root) or `docker build -t {image} sandbox/`, or set [sandbox] image in task.toml"
            ) from exc
        except _sdk_errors() as exc:
            raise self._translate(exc, f"inspecting image {image!r}") from exc
        with self._lock:
            self._images_ok.add(image)

    def _stage_inputs(self, job: EvaluationJob, indir: str) -> int:
        """Write job.json and a copy of the task folder into ``indir`` (0700, mounted read-only: only
        the supervisor reads it, with its own uid or CAP_DAC_READ_SEARCH); the evaluator copies the task
        into a 0700 tmpfs of its own uid before it drops root, so no candidate uid reads it. Returns
        the size in MiB that tmpfs needs."""
        task_dir = Path(job.task_dir).resolve()
        if not task_dir.is_dir():
            raise SandboxError(f"task folder {task_dir} does not exist")
        copy = Path(indir) / "task"
        try:
            shutil.copytree(task_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
        except OSError as exc:
            raise SandboxError(f"cannot copy task folder {task_dir} for the container: {_one_line(exc)}") from exc
        task_bytes = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
        spec = job.to_dict()
        spec["task_dir"] = TASK_DIR
        path = os.path.join(indir, "job.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            json.dump({"job": spec, "uid": self._uid, "gid": self._gid, "max_result_bytes": MAX_RESULT_BYTES}, fh)
        return 1 + 2 * task_bytes // (1024 * 1024)

    def _create(self, job: EvaluationJob, image: str, indir: str, task_mb: int) -> Any:
        from docker.types import LogConfig, Ulimit
        mib = 1024 * 1024
        cpus = float(job.extra.get("num_cpus") or self.cpus)
        cpu_s = cpu_limit_s(job)
        # HOME on the read-only root and user site off: no start-up hook (usercustomize, .pth) can be
        # planted for a later interpreter; PYTHONSTARTUP is never set (and only read interactively).
        env = dict(FIXED_ENV, HOME=READONLY_HOME, TMPDIR=WORKDIR, PYTHONPATH=LIB_DIR, PYTHONNOUSERSITE="1",
                   PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        try:
            container = self._client.containers.create(
                image, ["python3", "-s", "-c", _ENTRY],
                # The supervisor is the container's root with four capabilities; the evaluator and the
                # candidate run as ``self.user`` with none (the drop happens in _ENTRY).
                user="0:0", working_dir="/", environment=env, hostname="evoforge",
                labels={CONTAINER_LABEL: str(os.getpid())}, init=True,  # the engine that made it
                network_mode="none", read_only=True, cap_drop=["ALL"], cap_add=SUPERVISOR_CAPS,
                security_opt=["no-new-privileges"],
                ipc_mode="private", shm_size=f"{SHM_MB}m",   # a /dev/shm and SysV IPC of its own
                mem_limit=f"{int(job.memory_mb)}m", memswap_limit=f"{int(job.memory_mb)}m",
                nano_cpus=int(cpus * 1e9) if cpus > 0 else None,
                pids_limit=int(job.max_processes),
                ulimits=([Ulimit(name="cpu", soft=cpu_s, hard=cpu_s + 1)] if cpu_s is not None else []) + [
                         Ulimit(name="fsize", soft=int(job.max_file_mb) * mib, hard=int(job.max_file_mb) * mib),
                         Ulimit(name="nofile", soft=int(job.max_open_files), hard=int(job.max_open_files)),
                         Ulimit(name="core", soft=0, hard=0)],
                # noexec is Docker's default for tmpfs; mode 0700: the evaluator's and the candidates'
                # folders are each their own uid's alone (the task's: it may hold programs to run).
                tmpfs={WORKDIR: f"rw,nosuid,nodev,noexec,size={int(job.max_file_mb)}m,"
                                f"uid={self._uid},gid={self._gid},mode=0700",
                       TASK_DIR: f"rw,nosuid,nodev,exec,size={task_mb}m,uid={self._uid},gid={self._gid},mode=0700",
                       CANDIDATE_DIR: f"rw,nosuid,nodev,noexec,size={int(job.max_file_mb)}m,"
                                      f"uid={CANDIDATE_UID},gid={CANDIDATE_UID},mode=0700"},
                volumes={evaluators_dir(): {"bind": f"{LIB_DIR}/evoforge/evaluators", "mode": "ro"},
                         indir: {"bind": IN_DIR, "mode": "ro"}},
                log_config=LogConfig(type="none"), stdin_open=False, tty=False)
        except _sdk_errors() as exc:
            raise self._translate(exc, f"creating a container from {image!r}", image) from exc
        with self._lock:
            self._live.add(container.id)
        return container

    def _translate(self, exc: BaseException, what: str, image: str | None = None) -> SandboxError:
        import docker.errors
        if isinstance(exc, docker.errors.ImageNotFound) and image:
            return SandboxError(f"docker image {image!r} not found: build it with `sandbox/build_image.sh` "
                                f"or `docker build -t {image} sandbox/`")
        if _is_timeout(exc):
            return SandboxError(f"docker: the Docker engine at {self._where} did not answer within "
                                f"{API_TIMEOUT_S:g} s while {what}; check that the daemon is healthy (`docker info`)")
        return SandboxError(f"docker: {what} failed: {_one_line(exc)}")

    def _drive(self, container: Any, job: EvaluationJob) -> EvaluationResult:
        """Attach, start, read the output until the container ends or the wall clock passes."""
        frames = _FrameReader(job.max_output_bytes)
        stderr = TailBuffer(job.max_output_bytes)   # the supervisor's own (and tini's): a crash of ours
        try:
            # Attached before start, so no output is lost (what `docker run` does).
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
        except _sdk_errors() as exc:
            raise self._translate(exc, "attaching to the container") from exc
        pump_error: list[BaseException] = []

        def pump() -> None:
            try:
                for out, err in stream:
                    if out:
                        frames.add(out)
                    if err:
                        stderr.add(err)
            except BaseException as exc:  # the connection broke: reported below, after the exit code
                pump_error.append(exc)

        reader = threading.Thread(target=pump, name="evoforge-docker-output", daemon=True)
        reader.start()
        try:
            try:
                container.start()
            except _sdk_errors() as exc:
                raise self._translate(exc, "starting the container") from exc
            start = time.monotonic()
            reader.join(float(job.timeout_s))
            timed_out = reader.is_alive()
            if timed_out:
                try:
                    container.kill()
                except _sdk_errors():
                    pass  # it ended on its own meanwhile; the exit code below says how
            exit_code = self._wait(container)
            eval_s = time.monotonic() - start
            reader.join(EXIT_GRACE_S)
        finally:
            stream.close()
        if reader.is_alive() or (pump_error and frames.result is None and not timed_out):
            why = _one_line(pump_error[0]) if pump_error else "it did not end"
            raise SandboxError(f"docker: reading the container's output failed: {why}")
        try:
            container.reload()
            oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
        except _sdk_errors() as exc:
            raise self._translate(exc, "inspecting the finished container") from exc

        stdout_text = frames.stdout.text()
        stderr_text = frames.stderr.text() + stderr.text()
        result = self._outcome(job, frames, timed_out, exit_code, oom_killed, stderr_text)
        data = result.to_dict()
        data.update(stdout=stdout_text, stderr=stderr_text, eval_s=eval_s)
        return EvaluationResult.from_dict(data)

    def _wait(self, container: Any) -> int:
        try:
            status = container.wait(timeout=EXIT_GRACE_S)
        except _sdk_errors() as exc:  # includes requests' ReadTimeout / ConnectionError
            raise SandboxError(f"docker: the daemon did not report the container's exit within "
                               f"{EXIT_GRACE_S:g} s: {_one_line(exc)}") from exc
        return int(status.get("StatusCode", -1))

    @staticmethod
    def _outcome(job: EvaluationJob, frames: _FrameReader, timed_out: bool, exit_code: int,
                 oom_killed: bool, stderr_text: str) -> EvaluationResult:
        memory = f"the container's memory limit of {int(job.memory_mb)} MB"
        # The wall clock and the way the container ended decide first: a result read from a container
        # that was timed out or killed never counts, whatever it says.
        if timed_out:
            return EvaluationResult.failure(Status.TIMEOUT, f"exceeded the wall-clock limit of {job.timeout_s:g} s")
        if frames.corrupt:
            return EvaluationResult.failure(Status.ERROR, "the container's output could not be read")
        if exit_code == 0 and frames.result is not None:
            try:
                result = EvaluationResult.from_dict(json.loads(frames.result.decode("utf-8")))
            except Exception:
                return EvaluationResult.failure(Status.ERROR, "the container's result could not be read")
            if oom_killed and result.status == Status.ERROR:
                artifacts = dict(result.artifacts)
                artifacts["error"] = f"out-of-memory killer fired at {memory}\n" + artifacts.get("error", "")
                return EvaluationResult.from_dict(dict(result.to_dict(), status=Status.OOM, artifacts=artifacts))
            return result
        if exit_code == 0 and frames.no_result is not None:
            # The supervisor ran to its end; the evaluator ended without a result: classify how it ended.
            wait_status = int(frames.no_result.get("wait_status", 0))
            exit_code = (128 + os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status)
                         else os.WEXITSTATUS(wait_status))
        # tini reports a child killed by signal N as 128 + N; one classifier with the fork server.
        sig = exit_code - 128 if exit_code > 128 and exit_code - 128 in {int(s) for s in signal.Signals} else None
        return classify_exit(signal_number=sig, exit_code=exit_code, stderr_text=stderr_text,
                             cpu_limit_s=cpu_limit_s(job), oom_killed=oom_killed, memory_what=memory)

    def _remove(self, container: Any) -> None:
        import docker.errors
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except _sdk_errors() as exc:
            raise SandboxError(f"docker: removing container {container.short_id} failed: "
                               f"{_one_line(exc)}") from exc
        finally:
            with self._lock:
                self._live.discard(container.id)
