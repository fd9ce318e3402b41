"""The ``docker`` isolation backend: one throw-away container per evaluation, through the docker SDK.

Each `DockerSandbox.run` creates a container from the task's image (``[sandbox] image`` in task.toml,
carried in ``job.extra["docker_image"]``; default ``evoforge-sandbox:latest``, built offline by
``sandbox/build_image.sh`` or from ``sandbox/Dockerfile``) and runs the same `evoforge.evaluators.runner.run_job`
the process sandbox runs, so both backends score a candidate the same way. The container gets:

- no network (``network_mode="none"``), a read-only root file system, all capabilities dropped,
  ``no-new-privileges``, and a non-root user (``nobody``, 65534:65534, by default);
- a cgroup memory limit of ``memory_mb`` with swap off, a CPU quota (the task's ``num_cpus``), a
  pids limit of ``max_processes``, and rlimits for CPU seconds, file size, open files and cores;
- a ``tmpfs`` work directory (``/work``, ``max_file_mb`` large, ``noexec``) holding the candidate;
  tmpfs pages are charged to the container's memory cgroup, so it cannot outgrow the memory limit;
- read-only bind mounts: the repo's ``evaluators`` package, the task folder and a per-job input folder
  holding ``job.json`` (the job itself, plus the marker that frames the result; see below);
- no log driver: output is read live from an attach stream into bounded tail buffers, so a candidate
  that prints gigabytes costs neither memory nor the daemon's disk.

Results travel on stdout after a per-job random marker (a 128-bit nonce, made with ``secrets`` so a
candidate cannot predict it before the job starts). Whatever precedes the marker is the candidate's
stdout. As with the process sandbox's fd 3, a candidate running inside the evaluator's interpreter
could read the marker and forge a result; that is the evaluator's threat model, not the sandbox's.
Before writing the result, the entry program SIGKILLs every other process in the container, so
nothing can interleave with it. It runs under Docker's init (``init=True``, tini) rather than as PID 1:
the kernel drops default-action signals sent to a namespace's PID 1, and RLIMIT_CPU's SIGXCPU would
be lost. When the entry program exits, tini exits with its status and the kernel kills the rest.

Outcome mapping: the result the entry program wrote wins (but an ``error`` while the cgroup OOM
killer fired becomes ``oom``: the killer may pick the evaluator's candidate child rather than PID 1);
otherwise the wall clock passed -> ``timeout`` (container killed); OOM-killed -> ``oom``; killed by
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
import secrets
import shutil
import signal
import stat
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

__all__ = ["DockerSandbox", "DEFAULT_IMAGE", "CONTAINER_LABEL", "docker_available"]

DEFAULT_IMAGE = "evoforge-sandbox:latest"
DEFAULT_USER = "65534:65534"          # nobody:nogroup in Debian's base-passwd
CONTAINER_LABEL = "evoforge.sandbox"  # every container we make carries it (clean-up, tests)
WORKDIR = "/work"                     # the tmpfs; not an image WORKDIR (Docker would reset its mode)
LIB_DIR = "/opt/evoforge"             # evoforge/evaluators/ is mounted under it (a namespace package); on PYTHONPATH
TASK_DIR = f"{LIB_DIR}/task"
IN_DIR = f"{LIB_DIR}/in"
API_TIMEOUT_S = 60.0                  # one docker API call (create, start, remove), not the evaluation
EXIT_GRACE_S = 30.0                   # after the output ends or a kill, for the daemon to report the exit
SIGXCPU_EXIT = 128 + 24               # RLIMIT_CPU soft limit hit
DAEMON_HINT = ("start one (as root: `sandbox/ci_docker.sh start`, or `systemctl start docker`), "
               "or use --sandbox process")

# Runs as PID 2 inside the container, under tini (``python3 -c``). Standard library only, then the mounted
# `evaluators` package. ``os.dup(1)`` keeps a private copy of stdout: the result still gets out if
# the candidate closes or redirects fd 1.
_ENTRY = r"""
import faulthandler, json, os, signal, sys, tempfile, types
faulthandler.enable()
with open(%(job_file)r, encoding="utf-8") as fh:
    spec = json.load(fh)
out = os.dup(1)
os.set_inheritable(out, False)
tempfile.tempdir = %(workdir)r
try:
    sys.path.insert(0, %(lib_dir)r)
    from evoforge.evaluators.runner import run_job
    result = run_job(types.SimpleNamespace(**spec["job"]), %(workdir)r).to_dict()
except BaseException as exc:
    result = {"status": "error", "artifacts": {
        "error": "sandbox container set-up failed: %%s: %%s" %% (type(exc).__name__, exc)}}
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except BaseException:
        pass
try:
    os.kill(-1, signal.SIGKILL)  # every process in the container except tini (PID 1) and us
except OSError:
    pass
try:
    data = (spec["marker"] + json.dumps(result)).encode("utf-8")
except BaseException as exc:
    data = (spec["marker"] + json.dumps({"status": "error", "artifacts": {
        "error": "the result is not JSON-serialisable: %%s" %% exc}})).encode("utf-8")
view = memoryview(data)
while view:
    view = view[os.write(out, view):]
os._exit(0)
""" % {"job_file": f"{IN_DIR}/job.json", "workdir": WORKDIR, "lib_dir": LIB_DIR}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _why_unreachable(where: str, exc: BaseException) -> str:
    if where.startswith("unix://") and not os.path.exists(where[len("unix://"):]):
        return "its socket does not exist: no daemon is running"
    return _one_line(exc, 160)


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


class _StdoutSplitter:
    """Splits the container's stdout into the candidate's output (a bounded tail) and the result
    (everything after ``marker``, capped at ``MAX_RESULT_BYTES``). The marker may straddle chunks."""

    def __init__(self, marker: bytes, cap_bytes: int) -> None:
        self.marker = marker
        self.tail = TailBuffer(cap_bytes)
        self.pending = b""
        self.result: bytearray | None = None
        self.oversized = False

    def add(self, data: bytes) -> None:
        if self.result is not None:
            if len(self.result) + len(data) > MAX_RESULT_BYTES:
                self.oversized = True
                self.result.clear()
            elif not self.oversized:
                self.result += data
            return
        buf = self.pending + data
        at = buf.find(self.marker)
        if at >= 0:
            self.tail.add(buf[:at])
            self.pending = b""
            self.result = bytearray()
            self.add(buf[at + len(self.marker):])
            return
        keep = len(self.marker) - 1  # a prefix of the marker may end this chunk
        self.tail.add(buf[:-keep] if len(buf) > keep else b"")
        self.pending = buf[-keep:] if len(buf) > keep else buf

    def finish(self) -> None:
        if self.result is None:
            self.tail.add(self.pending)
            self.pending = b""


def _readable_by_others(path: Path) -> bool:
    """Whether the container's non-root user can read ``path`` (a bind mount keeps host modes)."""
    try:
        for p in [path, *[q for q in path.rglob("*") if "__pycache__" not in q.parts]]:
            mode = p.stat().st_mode
            if not mode & stat.S_IROTH or (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH):
                return False
    except OSError:
        return False
    return True


class DockerSandbox:
    """Isolation in containers; ``run`` blocks and is safe to call from several threads.

    ``image`` is the default when a job names none; ``user`` runs the candidate (``uid:gid``, never
    root: the point is an unprivileged process even inside the container); ``cpus`` is the CPU quota
    when a job carries no ``num_cpus``; ``base_url`` picks the daemon (default: ``DOCKER_HOST`` or the
    local socket). The daemon must be local: the task folder and ``evaluators`` are bind-mounted.
    """

    def __init__(self, *, image: str = DEFAULT_IMAGE, user: str = DEFAULT_USER, cpus: float = 1.0,
                 base_url: str | None = None, max_pool_size: int = 64) -> None:
        try:
            import docker
        except ImportError as exc:  # registry turns this into a ConfigError
            raise ImportError(f"the docker Python SDK is missing ({exc}); pip install docker") from exc
        uid, _, gid = user.partition(":")
        if not (uid.isdigit() and gid.isdigit()) or int(uid) == 0:
            raise SandboxError(f"DockerSandbox user: expected a non-root 'uid:gid' like {DEFAULT_USER} "
                               f"but got {user!r}")
        self.image, self.user, self.cpus = image, user, float(cpus)
        self._uid, self._gid = int(uid), int(gid)
        try:
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S,
                                                   max_pool_size=max_pool_size)
            else:
                self._client = docker.from_env(timeout=API_TIMEOUT_S, max_pool_size=max_pool_size)
            self._client.ping()
        except _sdk_errors() as exc:
            where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
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
        # A fresh unpredictable marker per job (security, not an algorithmic random choice: no seed).
        marker = f"\n\x1eevoforge-result-{secrets.token_hex(16)}\n"
        indir = tempfile.mkdtemp(prefix="evoforge-docker-")
        try:
            task_dir = self._stage_inputs(job, marker, indir)
            container = self._create(job, image, indir, task_dir)
            try:
                return self._drive(container, job, marker.encode("utf-8"))
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
            raise SandboxError(f"docker: cannot inspect image {image!r}: {_one_line(exc)}") from exc
        with self._lock:
            self._images_ok.add(image)

    def _stage_inputs(self, job: EvaluationJob, marker: str, indir: str) -> str:
        """Write job.json into ``indir`` (mounted read-only); return the host task folder to mount,
        copied into ``indir`` when the container's user could not read it in place."""
        task_dir = Path(job.task_dir).resolve()
        if not task_dir.is_dir():
            raise SandboxError(f"task folder {task_dir} does not exist")
        if not _readable_by_others(task_dir):
            copy = Path(indir) / "task"
            shutil.copytree(task_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
            for p in [copy, *copy.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
            task_dir = copy
        spec = job.to_dict()
        spec["task_dir"] = TASK_DIR
        with open(os.path.join(indir, "job.json"), "w", encoding="utf-8") as fh:
            json.dump({"job": spec, "marker": marker}, fh)
        os.chmod(indir, 0o755)  # mkdtemp's 0700 would hide it from the container's user
        os.chmod(os.path.join(indir, "job.json"), 0o644)
        return str(task_dir)

    def _create(self, job: EvaluationJob, image: str, indir: str, task_dir: str) -> Any:
        from docker.types import LogConfig, Ulimit
        mib = 1024 * 1024
        cpus = float(job.extra.get("num_cpus") or self.cpus)
        cpu_s = cpu_limit_s(job)
        env = dict(FIXED_ENV, HOME=WORKDIR, TMPDIR=WORKDIR, PYTHONPATH=LIB_DIR,
                   PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        try:
            container = self._client.containers.create(
                image, ["python3", "-c", _ENTRY],
                user=self.user, working_dir=WORKDIR, environment=env, hostname="evoforge",
                labels={CONTAINER_LABEL: "1"}, init=True,
                network_mode="none", read_only=True, cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=f"{int(job.memory_mb)}m", memswap_limit=f"{int(job.memory_mb)}m",
                nano_cpus=int(cpus * 1e9) if cpus > 0 else None,
                pids_limit=int(job.max_processes),
                ulimits=[Ulimit(name="cpu", soft=cpu_s, hard=cpu_s + 1),
                         Ulimit(name="fsize", soft=int(job.max_file_mb) * mib, hard=int(job.max_file_mb) * mib),
                         Ulimit(name="nofile", soft=int(job.max_open_files), hard=int(job.max_open_files)),
                         Ulimit(name="core", soft=0, hard=0)],
                # noexec is Docker's default for tmpfs; uid/gid rather than mode, which Docker resets
                tmpfs={WORKDIR: f"rw,nosuid,nodev,noexec,size={int(job.max_file_mb)}m,"
                                f"uid={self._uid},gid={self._gid}"},
                volumes={evaluators_dir(): {"bind": f"{LIB_DIR}/evoforge/evaluators", "mode": "ro"},
                         task_dir: {"bind": TASK_DIR, "mode": "ro"},
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
        return SandboxError(f"docker: {what} failed: {_one_line(exc)}")

    def _drive(self, container: Any, job: EvaluationJob, marker: bytes) -> EvaluationResult:
        """Attach, start, read the output until the container ends or the wall clock passes."""
        splitter = _StdoutSplitter(marker, job.max_output_bytes)
        stderr = TailBuffer(job.max_output_bytes)
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
                        splitter.add(out)
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
        if reader.is_alive() or (pump_error and splitter.result is None and not timed_out):
            why = _one_line(pump_error[0]) if pump_error else "it did not end"
            raise SandboxError(f"docker: reading the container's output failed: {why}")
        splitter.finish()
        try:
            container.reload()
            oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
        except _sdk_errors() as exc:
            raise self._translate(exc, "inspecting the finished container") from exc

        stdout_text, stderr_text = splitter.tail.text(), stderr.text()
        result = self._outcome(job, splitter, timed_out, exit_code, oom_killed, stderr_text)
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
    def _outcome(job: EvaluationJob, splitter: _StdoutSplitter, timed_out: bool, exit_code: int,
                 oom_killed: bool, stderr_text: str) -> EvaluationResult:
        memory = f"the container's memory limit of {int(job.memory_mb)} MB"
        if splitter.oversized:
            return EvaluationResult.failure(
                Status.ERROR, f"the result was larger than {MAX_RESULT_BYTES // (1024 * 1024)} MiB")
        if splitter.result is not None and splitter.result:
            try:
                result = EvaluationResult.from_dict(json.loads(bytes(splitter.result).decode("utf-8")))
            except Exception:
                return EvaluationResult.failure(Status.ERROR, "the container's result could not be read")
            if oom_killed and result.status == Status.ERROR:
                artifacts = dict(result.artifacts)
                artifacts["error"] = f"out-of-memory killer fired at {memory}\n" + artifacts.get("error", "")
                return EvaluationResult.from_dict(dict(result.to_dict(), status=Status.OOM, artifacts=artifacts))
            return result
        if timed_out:
            return EvaluationResult.failure(Status.TIMEOUT, f"exceeded the wall-clock limit of {job.timeout_s:g} s")
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
