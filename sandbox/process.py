"""The ``process`` isolation backend: a client for the pre-warmed fork server (`evoforge.sandbox.forkserver`).

`ProcessSandbox.run` blocks and is thread-safe: each call sends one request frame, and a single
reader thread hands every response to the waiting caller by request id. The server starts lazily
on the first `run`, with an allow-listed environment (no API keys, tokens or host secrets leak into
candidates), and is restarted on the next `run` if it died. Starting it also makes this process
non-dumpable, so a candidate running as the same uid cannot read the engine's environment (the API
keys) from ``/proc/<pid>/environ``; the engine user's home is passed to the server to be hidden.

Failure contract: whatever the *candidate* does comes back as an `EvaluationResult` (timeout, oom,
error...). `SandboxError` is raised only when the *machinery* fails: the server cannot start,
dies with a job in flight, a supervisor breaks, or no answer arrives long after the job's limit.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import IO, Any

from evoforge.evaluators.confine import make_undumpable
from evoforge.evaluators.location import evaluators_dir
from evoforge.evaluators.types import EvaluationResult, SandboxError
from evoforge.sandbox.forkserver import FRAME_HEADER, HIDE_ENV, MAX_FRAME_BYTES, encode_frame
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.waits import waiting

__all__ = ["ProcessSandbox", "ENV_ALLOWLIST", "FIXED_ENV", "clean_environment"]

# Copied from the host when set: harmless and needed for a sane interpreter (locale, time zone),
# and the GPUs this evaluation may use (Ray sets CUDA_VISIBLE_DEVICES per task: sandbox.ray_executor).
# Any other variable reaches an evaluator only when its task names it ([sandbox] pass_env, --env): it
# then travels with that job (EvaluationJob.env), never in the fork server's own environment.
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES")

# Always set: reproducible hashing, no .pyc litter in task folders, and single-threaded BLAS so the
# fork server never has threads when it forks (and N slots do not oversubscribe the cores).
FIXED_ENV = {
    "HOME": "/tmp",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

STARTUP_TIMEOUT_S = 60.0
RESPONSE_GRACE_S = 60.0   # beyond the job's own timeout before we call the machinery broken
SHUTDOWN_WAIT_S = 5.0
STDERR_TAIL_CHARS = 2000


def clean_environment() -> dict[str, str]:
    """The fork server's whole environment: the allow-list and the fixed values; nothing else from
    ``os.environ`` (no PYTHONPATH either: the interpreter finds ``evoforge`` where it is installed)."""
    env = {key: os.environ[key] for key in ENV_ALLOWLIST if key in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(FIXED_ENV)
    home = os.path.expanduser("~")
    if home and os.path.realpath(home) != "/":
        env[HIDE_ENV] = os.path.realpath(home)   # the server pops it: candidates may not read ~/.ssh, ~/.aws...
    return env


def import_shim() -> str:
    """A folder that makes ``evoforge.evaluators`` and ``evoforge.sandbox`` importable by an interpreter
    in which evoforge is not installed (``ProcessSandbox(python=...)``): ``evoforge/`` (a namespace
    package) holding links to the two real folders, wherever the installation put them. Put it on
    PYTHONPATH; remove it with `shutil.rmtree`."""
    shim = tempfile.mkdtemp(prefix="evoforge-import-")
    os.chmod(shim, 0o755)   # a fork server that drops to nobody must still read it
    package = os.path.join(shim, "evoforge")
    os.mkdir(package, 0o755)
    os.symlink(evaluators_dir(), os.path.join(package, "evaluators"))
    os.symlink(os.path.dirname(os.path.abspath(__file__)), os.path.join(package, "sandbox"))
    return shim


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Server:
    """One fork-server process, its pending requests and the thread that reads its answers."""

    def __init__(self, python: str, pythonpath: str | None = None) -> None:
        self.stderr_file = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "evoforge.sandbox.forkserver"], cwd="/",
                env={**clean_environment(), **({"PYTHONPATH": pythonpath} if pythonpath else {})},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                start_new_session=True,  # a Ctrl-C at the terminal is the engine's, not the server's
                close_fds=True)
        except OSError as exc:
            self.stderr_file.close()
            raise SandboxError(f"cannot start the fork server with {python}: {exc}") from exc
        self.pending: dict[int, Future] = {}
        self.lock = threading.Lock()   # guards pending and writes to stdin
        self.alive = True
        self.info: dict[str, Any] = {}
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read_loop, name="evoforge-forkserver-reader",
                                       daemon=True)
        self.reader.start()

    def stderr_tail(self) -> str:
        try:
            self.stderr_file.seek(0, os.SEEK_END)
            size = self.stderr_file.tell()
            self.stderr_file.seek(max(0, size - STDERR_TAIL_CHARS))
            return self.stderr_file.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return ""

    def _read_loop(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                header = _read_exact(stream, FRAME_HEADER.size)
                if header is None:
                    break
                (size,) = FRAME_HEADER.unpack(header)
                if size > MAX_FRAME_BYTES:
                    break
                body = _read_exact(stream, size)
                if body is None:
                    break
                self._dispatch(json.loads(body.decode("utf-8")))
        except Exception:  # a garbled stream is a dead server
            pass
        self._fail_all("the fork server exited")

    def _dispatch(self, frame: dict) -> None:
        if frame.get("ready"):
            self.info = frame
            self.ready.set()
            return
        with self.lock:
            future = self.pending.pop(frame.get("id"), None)
        if future is None:
            return  # its caller gave up waiting
        if "error" in frame:
            future.set_exception(SandboxError(str(frame["error"])))
            return
        try:
            future.set_result(EvaluationResult.from_dict(frame["result"]))
        except Exception as exc:
            future.set_exception(SandboxError(f"unreadable response from the fork server: {exc}"))

    def _fail_all(self, why: str) -> None:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        message = f"{why} (exit code {code})"
        tail = self.stderr_tail()
        if tail:
            message += f"; its stderr ends with:\n{tail}"
        with self.lock:
            self.alive = False
            pending, self.pending = self.pending, {}
        self.ready.set()
        for future in pending.values():
            if not future.done():
                future.set_exception(SandboxError(message))

    def submit(self, request_id: int, job: EvaluationJob) -> Future:
        try:
            frame = encode_frame({"id": request_id, "job": job.to_dict()})
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"job is not JSON-serialisable: {exc}") from exc
        future: Future = Future()
        with self.lock:
            if not self.alive:
                raise SandboxError("the fork server is not running")
            self.pending[request_id] = future
            try:
                self.proc.stdin.write(frame)
                self.proc.stdin.flush()
            except (OSError, ValueError) as exc:
                self.pending.pop(request_id, None)
                self.alive = False
                raise SandboxError(f"cannot send a job to the fork server: {exc}") from exc
        return future

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.pending.pop(request_id, None)

    def stop(self, *, force: bool = False) -> None:
        """Closing stdin asks the server to kill its supervisors, clean up and exit; ``force``: a
        server that never said hello is not asked, its process group is killed at once."""
        if force:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with self.lock:
            self.alive = False
            try:
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=SHUTDOWN_WAIT_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        self.reader.join(timeout=SHUTDOWN_WAIT_S)
        try:
            self.proc.stdout.close()
        except (OSError, ValueError):
            pass
        self.stderr_file.close()


class ProcessSandbox:
    """Isolation backend: each `run` evaluates one job in a fresh child of the fork server.

    ``python`` is the interpreter for the server (default: this one); another interpreter gets
    evoforge's sandbox code through `import_shim`, and should have numpy. Safe to share between threads.
    """

    def __init__(self, *, python: str | None = None, startup_timeout_s: float = STARTUP_TIMEOUT_S,
                 response_grace_s: float = RESPONSE_GRACE_S) -> None:
        self.python = python or sys.executable
        # Another interpreter has no evoforge installed: lend it ours through a folder of links.
        self._shim = import_shim() if os.path.realpath(self.python) != os.path.realpath(sys.executable) else None
        self.startup_timeout_s = startup_timeout_s
        self.response_grace_s = response_grace_s
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        atexit.register(self.close)

    # -- lifecycle

    def _ensure_server(self) -> _Server:
        with self._lock:
            if self._closed:
                raise SandboxError("this ProcessSandbox is closed")
            server = self._server
            if server is not None and server.alive:
                return server
            if server is not None:
                server.stop()
            # Not dumpable: a candidate running as the same uid cannot read our environment (API keys)
            # through /proc/<pid>/environ, nor our memory (its capabilities are dropped, too).
            make_undumpable()
            server = self._server = _Server(self.python, self._shim)
            with waiting(f"the fork server ({self.python}) to start", limit_s=self.startup_timeout_s):
                ready = server.ready.wait(self.startup_timeout_s)
            if not ready or not server.alive:
                self._server = None
                tail = " ".join(server.stderr_tail().split()[-40:])
                exited = server.proc.poll()
                server.stop(force=True)
                what = (f"exited with code {exited} before saying hello" if exited is not None
                        else f"did not say hello within {self.startup_timeout_s:g} s")
                raise SandboxError(
                    f"the fork server ({self.python} -m evoforge.sandbox.forkserver) {what}"
                    + (f"; its stderr ends with: {tail}" if tail else "")
                    + "; check that this interpreter starts and imports evoforge, or raise [limits] "
                      "startup_timeout_s in task.toml")
            return server

    @property
    def server_info(self) -> dict[str, Any]:
        """The server's hello (``pid``, ``numpy``, ``drop_uid``, ``python``); starts it if needed."""
        return dict(self._ensure_server().info)

    def protections(self) -> dict[str, bool]:
        """Which protections hold on this machine (`evoforge.sandbox.protections`); starts the server.
        ``missing_line(sandbox.protections())`` is the one-line notice for the CLI."""
        return dict(self._ensure_server().info.get("protections") or {})

    def close(self) -> None:
        """Stop the fork server (killing evaluations in flight). Idempotent."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._shim is not None:
            shutil.rmtree(self._shim, ignore_errors=True)
            self._shim = None
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    def __enter__(self) -> "ProcessSandbox":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- work

    def run(self, job: EvaluationJob) -> EvaluationResult:
        """Evaluate ``job`` in isolation; blocks until done. Raises `SandboxError` only when the
        sandbox machinery (not the candidate) failed."""
        server = self._ensure_server()
        request_id = next(self._ids)
        future = server.submit(request_id, job)
        try:
            return future.result(timeout=float(job.timeout_s) + self.response_grace_s)
        except FutureTimeout as exc:
            server.forget(request_id)
            raise SandboxError(
                f"no answer from the fork server {self.response_grace_s:g} s after the job's "
                f"{job.timeout_s:g} s limit") from exc
