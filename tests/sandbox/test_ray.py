"""`RayExecutor` on a real local Ray: same results as the local executor, resource requests that
decide placement, a killed worker retried (then recorded as an error), and a clean shutdown.

One Ray instance serves the whole module (starting Ray costs seconds on two cores). The two CLI
tests that start their own Ray, or none, come first, before the shared instance exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evoforge[ray]')")

from evoforge.archive.store import Store  # noqa: E402
from evoforge.engine.config import RunConfig  # noqa: E402
from evoforge.engine.session import start_run  # noqa: E402
from evoforge.evaluators.types import ConfigError, Status  # noqa: E402
from fakes.tasks import PROBING_EVALUATOR, TINY_PROGRAM, write_tiny_task  # noqa: E402
from evoforge.sandbox.job import EvaluationJob  # noqa: E402
from evoforge.sandbox.local import LocalExecutor  # noqa: E402
from evoforge.sandbox.process import ProcessSandbox  # noqa: E402
from evoforge.sandbox.ray_executor import RayExecutor, pack_task_dir, unpack_task_files  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WORKER_TITLE = b"ray::evoforge_evaluate"   # Ray's process title for a worker running our task

# Imports the candidate, calls run(), and reports the GPUs it was given (placement evidence).
REPORTING = """
import importlib.util, os

def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.run()
    result = out if isinstance(out, dict) else {"score": out}
    result.setdefault("artifacts", {})["gpus"] = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    return result
"""


def _evoforge(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evoforge", *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=timeout)


def _rows(run_dir: Path) -> list[tuple]:
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return [(r.iteration, r.island, r.parent_id, r.code, r.status, r.score) for r in store.candidates()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- without the shared instance --------------------------------------------------------------------

def test_unreachable_ray_address_is_a_one_line_config_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = write_tiny_task(tmp_path / "tiny")
    done = _evoforge("run", str(task), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                     "--iterations", "1", "--quiet", "--out", str(tmp_path / "run"), timeout=60)
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("evoforge: error: --ray-address 127.0.0.1:") and "ray start --head" in message
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # refused before a run directory was made


def test_an_address_that_accepts_but_never_answers_is_refused_within_the_limit(tmp_path):
    """Ray's own connect retries for ever when the port accepts TCP but is no GCS; ours gives up.
    In a child process: the abandoned connect thread must not share a process with other tests."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # accepts connections, says nothing
        port = mute.getsockname()[1]
        code = ("from evoforge.sandbox.ray_executor import RayExecutor\n"
                f"RayExecutor('process', address='127.0.0.1:{port}', connect_timeout_s=4, startup_timeout_s=4)\n")
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep Ray on 127.0.0.1
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env,
                              timeout=120)
    assert done.returncode == 1 and time.monotonic() - started < 100
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("evoforge.evaluators.errors.ConfigError: --ray-address 127.0.0.1:") or \
        "ConfigError: --ray-address 127.0.0.1:" in last, done.stderr[-2000:]
    # the join is tried where it can be abandoned (sandbox.ray_join) before ray.init, itself bounded too
    assert "within 4 s" in last and ("could not join the Ray cluster" in last or "no Ray cluster joined" in last)


def _ray_processes(marker: str) -> set[int]:
    """Processes whose environment carries ``marker`` (every Ray process the run started inherits
    it), plus their children (the fork servers, whose own environment is scrubbed)."""
    found, parents = set(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.add(int(name))
            with open(f"/proc/{name}/stat") as fh:
                parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return found | {pid for pid, ppid in parents.items() if ppid in found}


@pytest.mark.slow
def test_cli_run_on_a_local_ray_it_starts_and_stops_leaves_no_processes(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    marker = f"EVOFORGE_RAY_TEST={os.getpid()}-{time.monotonic_ns()}"
    ray_tmp = tempfile.mkdtemp(prefix="efray", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, marker.split("=")[0]: marker.split("=")[1]}
    seen: set[int] = set()
    title_of: dict[int, str] = {}
    with open(tmp_path / "out.txt", "w+") as out_file, open(tmp_path / "err.txt", "w+") as err_file:
        run = subprocess.Popen([sys.executable, "-m", "evoforge", "run", str(task), "--executor", "ray",
                                "--iterations", "3", "--concurrency", "1", "--seed", "5", "--quiet",
                                "--out", str(tmp_path / "run")], cwd=REPO, env=env,
                               stdout=out_file, stderr=err_file)
        try:
            while run.poll() is None:  # collect every process the run starts while it lives
                for pid in _ray_processes(marker):
                    seen.add(pid)
                    if title_of.get(pid):
                        continue
                    # Read again until it has one: a process caught between fork and exec, or
                    # mid-exit, shows an empty cmdline; comm ("raylet") is the fallback.
                    try:
                        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
                        comm = Path(f"/proc/{pid}/comm").read_text().strip()
                        title_of[pid] = " ".join([b" ".join(argv).decode(errors="replace"), comm]).strip()
                    except OSError:
                        pass
                time.sleep(0.1)
        finally:
            if run.poll() is None:
                run.kill()
            run.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    titles = set(title_of.values())
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert run.returncode == 0, err
    assert "iterations: 3" in out
    # its own gcs_server and raylet, and the fork server a worker started: Ray really ran here
    assert any("gcs_server" in t for t in titles) and any("raylet" in t for t in titles), titles
    assert any("evoforge.sandbox.forkserver" in t for t in titles), titles
    deadline = time.monotonic() + 30  # give init a moment to reap orphans before judging
    while any(_alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in seen if _alive(pid)]
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        assert store.get_meta("config")["executor"] == "ray"  # what `evoforge resume` will use
        assert store.count("status = 'ok'") >= 1


# -- the shared instance -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, resources={"special": 1}, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=100 * 1024 * 1024, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture
def task(tmp_path):
    def make(evaluator: str = REPORTING) -> str:
        return str(write_tiny_task(tmp_path / f"task{len(list(tmp_path.iterdir()))}", evaluator=evaluator))
    return make


def _job(task_dir: str, program: str, **kwargs) -> EvaluationJob:
    kwargs.setdefault("timeout_s", 10)
    return EvaluationJob(program_text=textwrap.dedent(program), task_dir=task_dir, **kwargs)


def _evaluate(executor, jobs):
    async def main():
        try:
            return [await executor.evaluate(job) for job in jobs]
        finally:
            await executor.close()
    return asyncio.run(main())


PROGRAMS = [
    "def run():\n    return {'score': 2.5, 'features': {'slope': 1.0}, 'metrics': {'m': 3}}\n",
    "def run():\n    raise ValueError('broken candidate')\n",
    "def run():\n    return float('nan')\n",
    "import sys\ndef run():\n    print('to stdout'); print('to stderr', file=sys.stderr)\n    return 7\n",
]


def test_ray_results_equal_local_results(local_ray, task):
    folder = task()
    jobs = [_job(folder, p) for p in PROGRAMS]
    on_ray = _evaluate(RayExecutor("process"), jobs)
    local = _evaluate(LocalExecutor(ProcessSandbox(), slots=1), jobs)
    assert [r.status for r in on_ray] == [Status.OK, Status.ERROR, Status.INVALID, Status.OK]

    def comparable(r):
        # Tracebacks name where the evaluator was read from (the task folder, the node's task-file
        # cache on Ray, or the sandbox's private copy of either) and the evaluation's temporary
        # workdir: none of that is the result.
        def text(value):
            value = re.sub(r"/\S*/evoforge-ray-tasks-\d+/[0-9a-f]{64}", "TASK", str(value).replace(folder, "TASK"))
            value = re.sub(r"/\S*/evoforge-[a-z0-9_]{8}", "WORKDIR", value)
            return value.replace("WORKDIR.task", "TASK")  # the sandbox's private copy of the task
        artifacts = {k: text(v) for k, v in r.artifacts.items()}
        return (r.status, r.score, dict(r.features), dict(r.metrics), artifacts, r.stage, text(r.stdout),
                text(r.stderr))
    assert [comparable(r) for r in on_ray] == [comparable(r) for r in local]
    assert "TASK/evaluator.py" in comparable(on_ray[1])[4]["error"]
    assert ray.is_initialized()  # an executor that found Ray running leaves it running


def test_a_functional_fingerprint_comes_back_from_ray_as_it_does_locally(local_ray, task):
    folder = task(PROBING_EVALUATOR)
    twin = TINY_PROGRAM.replace("return a * x + b", "return b + a * x")
    first = _evaluate(RayExecutor("process"), [_job(folder, TINY_PROGRAM, extra={"known_fingerprints": {}})])[0]
    local = _evaluate(LocalExecutor(ProcessSandbox(), slots=1),
                      [_job(folder, TINY_PROGRAM, extra={"known_fingerprints": {}})])[0]
    assert first.status == Status.OK and first.fingerprint and first.fingerprint == local.fingerprint
    known = {"known_fingerprints": {first.fingerprint: 1}}
    again = _evaluate(RayExecutor("process"), [_job(folder, twin, extra=known)])[0]
    assert again.status == Status.REJECTED and again.fingerprint == first.fingerprint
    assert "behaves like program #1" in again.artifacts["error"] and "FULL EVALUATION" not in again.stderr


def test_gpu_and_custom_resource_requests_decide_placement(local_ray, task):
    folder = task()
    slow = _job(folder, "import time\ndef run():\n    time.sleep(1.5)\n    return 1.0\n")
    gpu = RayExecutor("process", resources={"num_cpus": 1, "num_gpus": 1, "custom": {"special": 1}})
    cpu = RayExecutor("process", resources={"num_cpus": 1})
    held: list[dict] = []

    async def main():
        running = asyncio.ensure_future(gpu.evaluate(slow))
        while not running.done():  # watch the cluster's free resources while it runs
            held.append(ray.available_resources())
            await asyncio.sleep(0.02)
        return await running, await cpu.evaluate(slow)

    on_gpu, on_cpu = asyncio.run(main())
    asyncio.run(gpu.close())
    asyncio.run(cpu.close())
    assert on_gpu.status == Status.OK and on_cpu.status == Status.OK
    assert on_gpu.artifacts["gpus"] == "0"      # Ray gave it the (logical) GPU and the sandbox saw it
    assert on_cpu.artifacts["gpus"] in ("unset", "")
    # While the GPU evaluation ran, it held the node's only GPU and its only "special" unit.
    assert any(r.get("GPU", 0) == 0 and r.get("special", 0) == 0 for r in held), held[-3:]


def test_a_request_no_node_can_satisfy_is_a_config_error(local_ray):
    with pytest.raises(ConfigError, match=r"special=2.*no node") as info:
        RayExecutor("process", resources={"num_cpus": 1, "custom": {"special": 2}})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="num_gpus=4"):
        RayExecutor("process", resources={"num_gpus": 4})


class WorkerKiller(threading.Thread):
    """SIGKILLs the Ray worker running our task, up to ``limit`` times: a lost worker, from outside
    (the sandboxed candidate itself cannot reach its worker, which is the point of the sandbox)."""

    def __init__(self, limit: int) -> None:
        super().__init__(daemon=True)
        self.limit, self.killed, self.stop = limit, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.killed) < self.limit:
            for name in os.listdir("/proc"):
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as fh:
                        title = fh.read().split(b"\0")[0]
                except OSError:
                    continue
                if title == WORKER_TITLE and int(name) not in self.killed:
                    os.kill(int(name), signal.SIGKILL)
                    self.killed.append(int(name))
            time.sleep(0.02)

    def __enter__(self) -> "WorkerKiller":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()


SLOW_GOOD = "import time\ndef run():\n    time.sleep(1.5)\n    return 4.5\n"


def test_a_worker_killed_mid_evaluation_is_retried(local_ray, task):
    executor = RayExecutor("process", max_retries=2)
    with WorkerKiller(limit=1) as killer:
        [result] = _evaluate(executor, [_job(task(), SLOW_GOOD)])
    assert len(killer.killed) == 1
    assert result.status == Status.OK and result.score == 4.5, result


def test_a_worker_lost_on_every_attempt_becomes_an_error_result(local_ray, task):
    executor = RayExecutor("process", max_retries=1)
    with WorkerKiller(limit=10) as killer:
        [result] = _evaluate(executor, [_job(task(), SLOW_GOOD)])
    assert len(killer.killed) == 2  # the first attempt and its one retry, then no more
    assert result.status == Status.ERROR
    assert "Ray lost the evaluation's worker" in result.artifacts["error"]
    # and the executor's Ray is still usable afterwards
    [after] = _evaluate(RayExecutor("process"), [_job(task(), "def run():\n    return 1.0\n")])
    assert after.status == Status.OK


def _running_workers() -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[0] == WORKER_TITLE:
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def test_cancelling_an_evaluation_kills_its_worker(local_ray, task):
    """The engine's second Ctrl-C cancels what is in flight: on Ray that must stop the work too."""
    executor = RayExecutor("process")

    async def main():
        sleeper = _job(task(), "import time\ndef run():\n    time.sleep(60)\n")
        running = asyncio.ensure_future(executor.evaluate(sleeper))
        while not _running_workers():
            await asyncio.sleep(0.02)
        workers = _running_workers()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        return workers

    workers = asyncio.run(main())
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)]
    [after] = _evaluate(executor, [_job(task(), "def run():\n    return 2.0\n")])
    assert after.status == Status.OK and after.score == 2.0


def test_resume_keeps_the_runs_executor_unless_told_otherwise(local_ray, tmp_path, monkeypatch):
    import evoforge.engine.session as session
    made = []
    real = session.make_executor
    monkeypatch.setattr(session, "make_executor", lambda name, *a, **kw: made.append(name) or real(name, *a, **kw))
    task = write_tiny_task(tmp_path / "tiny")
    start_run(RunConfig(task=str(task), iterations=2, llm=("offline",), concurrency=1, executor="ray"),
              out=tmp_path / "run")
    session.resume_run(tmp_path / "run", more_iterations=1)
    session.resume_run(tmp_path / "run", more_iterations=1, executor="local")
    assert made == ["ray", "ray", "local"]
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        assert store.get_meta("config")["executor"] == "local" and store.count("iteration > 0") == 4


def test_task_files_are_packed_deterministically_and_unpacked_once(tmp_path):
    folder = write_tiny_task(tmp_path / "tiny")
    (folder / "data").mkdir()
    (folder / "data" / "points.csv").write_text("1,2\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "evaluator.cpython-311.pyc").write_bytes(b"junk")
    digest, blob = pack_task_dir(folder)
    os.utime(folder / "evaluator.py", (0, 12345))  # times do not change the digest
    assert pack_task_dir(folder) == (digest, blob)
    cache = tmp_path / "cache"
    where = Path(unpack_task_files(digest, blob, cache))
    assert (where / "data" / "points.csv").read_text() == "1,2\n"
    assert (where / "evaluator.py").read_text() == (folder / "evaluator.py").read_text()
    assert not (where / "__pycache__").exists()
    assert unpack_task_files(digest, b"not even a tar", cache) == str(where)  # a cache hit reads nothing
    assert [p.name for p in cache.iterdir()] == [digest]
    assert cache.stat().st_mode & 0o777 == 0o700 and where.stat().st_mode & 0o777 == 0o700


def _listable_by(uid: float, paths: list[str]) -> list[str]:
    """The ``paths`` a process of ``uid`` (no capabilities: a plain setuid from root) can list."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(int(uid))
            os.setuid(int(uid))
            listable = []
            for path in paths:
                try:
                    os.listdir(path)
                    listable.append(path)
                except OSError:
                    pass
            os.write(write, "\n".join(listable).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return [p for p in out.split("\n") if p]


@pytest.mark.skipif(os.geteuid() != 0, reason="as non-root the process sandbox runs candidates under the "
                    "engine's own uid, which a mode cannot keep from the engine's files")
def test_a_candidate_on_ray_reads_neither_the_task_cache_nor_rays_session_folder(local_ray, task):
    """Ray makes its session folder 0777 (logs, sockets) and the task cache held every task's files."""
    from evoforge.sandbox.ray_executor import _cache_root

    other = task()  # another task's folder, cached on this node by an earlier evaluation
    _evaluate(RayExecutor("process"), [_job(other, "def run():\n    return 1.0\n")])
    session = ray._private.worker.global_worker.node.get_session_dir_path()
    probe = f"""
        import os
        def run():
            readable = []
            for root in ({str(_cache_root())!r}, {session!r}):
                for path in [root] + [os.path.join(root, n) for n in ("logs", "sockets")]:
                    try:
                        os.listdir(path)
                        readable.append(path)
                    except OSError:
                        pass
            caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff:")][0]
            return {{"score": 1.0, "artifacts": {{"readable": ",".join(readable)}},
                    "metrics": {{"uid": os.getuid(), "dac_read_search": float(int(caps, 16) >> 2 & 1)}}}}
    """
    [result] = _evaluate(RayExecutor("process"), [_job(task(), probe)])
    assert result.status == Status.OK, result.artifacts
    assert os.stat(session).st_mode & 0o777 == 0o700 and _cache_root().stat().st_mode & 0o777 == 0o700
    assert _listable_by(result.metrics["uid"], [str(_cache_root()), session]) == []
    assert result.metrics["uid"] != 0
    if result.metrics["dac_read_search"]:
        pytest.skip("the process sandbox let this candidate keep CAP_DAC_READ_SEARCH (its uid cannot read the "
                    "interpreter here), which reads past any mode; the modes above are set")
    assert result.artifacts["readable"] == ""


@pytest.mark.slow
def test_circle_packing_run_on_ray_equals_the_local_run(local_ray, tmp_path):
    def config(executor):
        return RunConfig(task="circle_packing", iterations=30, llm=("offline",), concurrency=1, seed=0,
                         executor=executor)
    start_run(config("local"), out=tmp_path / "local")
    start_run(config("ray"), out=tmp_path / "ray")
    local, on_ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert len(local) == 31 and sum(r[4] == "ok" for r in local) > 1
    assert on_ray == local
