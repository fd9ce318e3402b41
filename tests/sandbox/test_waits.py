"""Start-up waits on what the engine does not control end within their limit with one line, and
leave nothing running: a fork server that never says hello, a Docker daemon that takes the
connection and never answers, a Ray GCS that does the same (tests/fakes/silent_server.py, on
loopback only), and the notice shown while such a wait lasts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError, SandboxError
from evoforge.sandbox.process import ProcessSandbox
from evoforge.sandbox.waits import listen, waiting
from fakes.silent_server import SilentServer
from fakes.tasks import write_tiny_task

REPO = Path(__file__).resolve().parents[2]
GENEROUS_S = 30.0


def _processes_mentioning(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line or environment holds ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                text = fh.read()
            with open(f"/proc/{name}/environ", "rb") as fh:
                text += fh.read()
        except OSError:
            continue
        if marker.encode() in text:
            found.append(int(name))
    return found


def _children() -> set[int]:
    me, kids = os.getpid(), set()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            kids.add(int(name))
    return kids


# -- the notice ----------------------------------------------------------------------------------

def test_a_long_wait_is_announced_and_its_end_too():
    heard: list[str | None] = []
    with listen(heard.append):
        with waiting("the thing to answer", limit_s=9, notice_after_s=0.05):
            time.sleep(0.5)
        with waiting("the quick thing", limit_s=9, notice_after_s=5):
            pass
    assert heard == ["waiting for the thing to answer (gives up after 9 s)", None]


def test_without_a_listener_the_notice_goes_to_stderr(capsys):
    with waiting("the slow thing", limit_s=3, notice_after_s=0.05):
        time.sleep(0.5)
    assert capsys.readouterr().err == "evoforge: waiting for the slow thing (gives up after 3 s)\n"


# -- the fork server -----------------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ("exec sleep 600", "did not say hello within 1.5 s"),
    ("echo 'cannot import evoforge: boom' >&2; exit 3", "exited with code 3 before saying hello; "
                                                        "its stderr ends with: cannot import evoforge: boom"),
])
def test_a_fork_server_that_never_says_hello(tmp_path, script, expected):
    marker = f"silent-python-{uuid.uuid4().hex}"
    python = tmp_path / marker
    python.write_text(f"#!/bin/sh\n{script}\n")
    python.chmod(0o755)
    before, threads = _children(), threading.active_count()
    sandbox = ProcessSandbox(python=str(python), startup_timeout_s=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(SandboxError) as info:
            sandbox.server_info  # noqa: B018 - the property starts the server
    finally:
        sandbox.close()
    assert time.monotonic() - started < GENEROUS_S
    message = str(info.value)
    assert "\n" not in message and expected in message
    assert message.startswith(f"the fork server ({python} -m evoforge.sandbox.forkserver)")
    assert "raise [limits] startup_timeout_s" in message
    assert not _processes_mentioning(marker), "the stand-in interpreter is still running"
    assert _children() <= before and threading.active_count() <= threads


# -- the Docker daemon ---------------------------------------------------------------------------

def test_a_docker_daemon_that_never_answers(monkeypatch):
    pytest.importorskip("docker", reason="the docker SDK is not installed")
    from evoforge.sandbox.docker import DockerSandbox

    with SilentServer() as daemon:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://{daemon.address}")
        threads = threading.active_count()
        started = time.monotonic()
        with pytest.raises(SandboxError) as info:
            DockerSandbox(startup_timeout_s=1.0)
        assert daemon.accepted >= 1
    assert time.monotonic() - started < GENEROUS_S
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--sandbox docker: the Docker engine at tcp://{daemon.address} accepted the "
                              "connection but did not answer within 1 s; check that the daemon is healthy")
    assert threading.active_count() <= threads


# -- Ray -----------------------------------------------------------------------------------------

def test_a_ray_cluster_that_never_answers_stops_the_run_in_one_line(tmp_path):
    """The misconfigured head of issue 18 (GCS on loopback, Ray dialling the interface address)
    cannot be reproduced without contacting a non-loopback address, so the unanswering GCS is a
    stand-in on 127.0.0.2, an address Ray dials as given (it rewrites only 127.0.0.1, localhost
    and ::1): the TCP probe passes, ``ray.init`` alone would wait, the run must not."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'evoforge[ray]')")
    task = write_tiny_task(tmp_path / "tiny")
    _set_limit(task, "startup_timeout_s = 4")
    marker = uuid.uuid4().hex
    env = dict(os.environ, EVOFORGE_HANG_TEST=marker)   # every process the run starts inherits it
    with SilentServer("127.0.0.2") as gcs:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "evoforge", "run", str(task), "--executor", "ray",
                               "--ray-address", gcs.address, "--iterations", "1", "--quiet",
                               "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                              env=env, timeout=120)
        assert gcs.accepted >= 1
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("evoforge: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    message = lines[0]
    assert message.startswith(f"evoforge: error: --ray-address {gcs.address}: could not join the Ray "
                              "cluster within")
    assert f"Ray dialled {gcs.address}" in message
    assert "the head's node IP address must be reachable from this machine" in message
    assert "evoforge: waiting for the Ray cluster at" in done.stderr   # --quiet: the notice on stderr
    assert not (tmp_path / "run").exists()
    assert not _processes_mentioning(marker), "the run left a process behind"


def test_the_ray_message_names_the_rewritten_address():
    from evoforge.sandbox.ray_join import _hang_message, _tried

    assert _tried("noise\nTRIED 127.0.1.1:6379\n") == "127.0.1.1:6379"
    message = _hang_message("127.0.0.1:6379", "127.0.1.1:6379", 60.2)
    assert "Ray replaced 127.0.0.1:6379 with this machine's node IP address and dialled 127.0.1.1:6379" in message
    assert "within 60 s" in message and "\n" not in message


# -- the setting ---------------------------------------------------------------------------------

def _set_limit(task: Path, line: str) -> None:
    toml = task / "task.toml"
    text = toml.read_text()
    assert "[limits]" in text
    toml.write_text(text.replace("[limits]", f"[limits]\n{line}", 1))


def test_startup_timeout_is_a_limits_key(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    assert load_task(task).limits.startup_timeout_s == 60.0
    _set_limit(task, "startup_timeout_s = 5")
    assert load_task(task).limits.startup_timeout_s == 5.0
    task = write_tiny_task(tmp_path / "zero")
    _set_limit(task, "startup_timeout_s = 0")
    with pytest.raises(ConfigError, match=r"startup_timeout_s: expected a number of seconds > 0 but got 0"):
        load_task(task)


def test_a_ray_result_that_never_comes_costs_one_candidate(tmp_path, monkeypatch):
    """A real Ray task that never returns (a stand-in for a worker stuck outside the sandbox or an
    object store that never delivers) ends as an ``error`` result within its bound; the task is
    cancelled and its worker goes away."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evoforge[ray]')")

    from evoforge.evaluators.types import Status
    from evoforge.sandbox import ray_executor
    from evoforge.sandbox.job import EvaluationJob

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024 * 1024)
    try:
        monkeypatch.setattr(ray_executor, "RESULT_GRACE_S", 1.0)
        executor = ray_executor.RayExecutor("process", max_retries=0)
        marker = f"evoforge_never_{uuid.uuid4().hex[:8]}"
        executor._remote = ray.remote(lambda *args: time.sleep(600)).options(name=marker, max_retries=0)
        job = EvaluationJob(program_text="def run():\n    return 1.0\n", task_dir=str(write_tiny_task(tmp_path / "t")),
                            timeout_s=0.5)
        started = time.monotonic()
        result = asyncio.run(executor.evaluate(job))
        assert time.monotonic() - started < GENEROUS_S
        assert result.status == Status.ERROR
        error = result.artifacts["error"]
        assert "\n" not in error and error.startswith("no result from Ray within ")
        assert "(the evaluation's own limit is 0.5 s)" in error
        deadline = time.monotonic() + 20
        while _processes_mentioning(f"ray::{marker}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_mentioning(f"ray::{marker}"), "the cancelled task's worker is still running"
        asyncio.run(executor.close())
    finally:
        ray.shutdown()


def test_the_progress_line_says_what_start_up_waits_for():
    import io

    from rich.console import Console

    from evoforge.engine.progress import RichReporter

    out = io.StringIO()
    with RichReporter(Console(file=out, force_terminal=False, width=200)) as reporter:
        with waiting("the Docker daemon at unix:///x.sock to answer", limit_s=7, notice_after_s=0.05):
            time.sleep(0.3)
            line = reporter._progress.tasks[0].fields["line"]
        after = reporter._progress.tasks[0].fields["line"]
    assert line == "waiting for the Docker daemon at unix:///x.sock to answer (gives up after 7 s)"
    assert after == "starting…"


def test_a_docker_daemon_that_answers_ping_then_hangs(monkeypatch, tmp_path):
    """Ping answered, then the image inspection never is: the evaluation's machinery error is one line."""
    pytest.importorskip("docker", reason="the docker SDK is not installed")
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from evoforge.sandbox import docker as docker_backend
    from evoforge.sandbox.job import EvaluationJob

    stop = threading.Event()

    class Daemon(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path.endswith("/_ping") or self.path.endswith("/version"):
                body = b"OK" if self.path.endswith("/_ping") else json.dumps(
                    {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.0"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            stop.wait(30)   # every other call: accepted, never answered

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Daemon)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        where = f"tcp://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("DOCKER_HOST", where)
        monkeypatch.setattr(docker_backend, "API_TIMEOUT_S", 1.0)
        sandbox = docker_backend.DockerSandbox(startup_timeout_s=5.0)
        job = EvaluationJob(program_text="def run():\n    return 1.0\n",
                            task_dir=str(write_tiny_task(tmp_path / "t")), timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(SandboxError) as info:
            sandbox.run(job)
        assert time.monotonic() - started < GENEROUS_S
        sandbox.close()
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"docker: the Docker engine at {where} did not answer within 1 s while inspecting "
                              "image 'evoforge-sandbox:latest'; check that the daemon is healthy")


def test_a_healthy_cluster_is_joined_through_the_bounded_path():
    """Ray's own test cluster, its head on 127.0.0.2 (an address Ray dials as given): the child's
    join succeeds, the driver joins, the first task runs, and the executor leaves the cluster as it was."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evoforge[ray]')")
    from ray.cluster_utils import Cluster

    from evoforge.sandbox.ray_executor import RayExecutor
    from evoforge.sandbox.ray_join import check_join

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.2", "num_cpus": 1,
                                                            "include_dashboard": False})
    try:
        check_join(cluster.address, timeout_s=60)
        executor = RayExecutor("process", address=cluster.address, startup_timeout_s=60)
        assert ray.is_initialized() and executor.slots == 1
        asyncio.run(executor.close())
        assert not ray.is_initialized()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
