"""`RayExecutor` on a real multi-node Ray cluster on this machine (Ray's own `ray.cluster_utils.Cluster`:
one GCS and a raylet per node), every node on 127.0.0.1.

The cluster: a head node with one CPU and no GPU, and two worker nodes with one CPU, one logical GPU and
one unit of a custom resource ``accel`` each. Every node has its own task-file cache folder
(``EVOFORGE_RAY_TASK_CACHE`` in that raylet's environment), so a node that never saw the task folder
has to fetch it from the object store. The head also runs the Ray Client server (``ray://``) and the
dashboard's job API (``ray job submit``), both on loopback.

One cluster serves the module (starting it costs ~20 s on two cores). The test that removes and adds
nodes comes last, since it leaves the cluster changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evoforge[ray]')")

from evoforge.archive.run import Run  # noqa: E402
from evoforge.archive.store import Store  # noqa: E402
from evoforge.engine.config import RunConfig  # noqa: E402
from evoforge.engine.session import start_run  # noqa: E402
from evoforge.engine.summary import format_summary, summarize  # noqa: E402
from evoforge.evaluators.types import ConfigError, Status  # noqa: E402
from evoforge.sandbox.job import EvaluationJob  # noqa: E402
from evoforge.sandbox.ray_executor import CACHE_ENV, RayExecutor  # noqa: E402
from fakes.tasks import TINY_EVALUATOR, write_tiny_task  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 80 * 1024 * 1024
WORKER_TITLE = b"ray::evoforge_evaluate"
# Ray rewrites 127.0.0.1 to the interface address unless this is off; every process the cluster
# starts inherits it from the test's environment.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                # The Ray Client server starts a Python process per client and gives it 30 s to answer;
                # on two shared cores that start-up alone can take longer.
                "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "180"}
# A lost node is noticed within a couple of seconds instead of Ray's default of half a minute.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalCluster:
    """The module's cluster and what the tests need to know about it."""

    def __init__(self, root: Path) -> None:
        from ray.cluster_utils import Cluster

        self.root = root
        self.client_port, self.dashboard_port = _free_port(), _free_port()
        self.cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=1, num_gpus=0, node_ip_address="127.0.0.1", object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=self.dashboard_port,
            ray_client_server_port=self.client_port, env_vars=self.cache_env("head"),
            _system_config=FAST_HEALTH_CHECKS))
        self.head_id = self.cluster.head_node.node_id
        self.workers = {name: self.add("gpu" + name) for name in ("1", "2")}

    def cache_env(self, name: str) -> dict[str, str]:
        return {CACHE_ENV: str(self.root / f"cache-{name}")}

    def add(self, name: str):
        return self.cluster.add_node(num_cpus=1, num_gpus=1, resources={"accel": 1}, node_ip_address="127.0.0.1",
                                     object_store_memory=OBJECT_STORE_BYTES, env_vars=self.cache_env(name))

    @property
    def gpu_node_ids(self) -> set[str]:
        return {n.node_id for n in self.cluster.worker_nodes}

    def cache(self, name: str) -> Path:
        return self.root / f"cache-{name}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray._private import ray_constants

    saved = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)  # for every process the cluster starts
    # and for this one, where Ray read the variable when it was imported (maybe by another module)
    saved_constant, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    if ray.is_initialized():
        ray.shutdown()
    # Ray's socket paths have a length limit: a short temporary root.
    root = Path(tmp_path_factory.mktemp("raycluster"))
    local = LocalCluster(root)
    ray.init(address=local.cluster.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield local
    finally:
        ray.shutdown()
        local.cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sleeping_evaluator(sleep_s: float) -> str:
    return TINY_EVALUATOR.replace("def evaluate(program_path):\n",
                                  f"def evaluate(program_path):\n    import time\n    time.sleep({sleep_s})\n")


def _task(path: Path, *, sleep_s: float = 0.0, resources: str = "") -> Path:
    folder = write_tiny_task(path, evaluator=_sleeping_evaluator(sleep_s))
    if resources:
        with open(folder / "task.toml", "a") as fh:
            fh.write(f"\n[resources]\n{resources}\n")
    return folder


def _placements(run_dir: Path) -> list[dict]:
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return [dict(r.placement) for r in store.candidates()]


def _evoforge(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, **LOOPBACK_ENV}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "evoforge", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=timeout)


# -- placement -----------------------------------------------------------------------------------

def test_every_node_listens_on_loopback_only(cluster):
    """Every socket a process of the cluster listens on (GCS, raylets, object managers, workers, the
    client server, the dashboard) is bound to 127.0.0.1; the processes are found by the cache folder
    their node's environment names."""
    import re

    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    ours, exposed = 0, []
    for line in listening:
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        try:
            mine = any(str(cluster.root).encode() in Path(f"/proc/{pid}/environ").read_bytes() for pid in pids)
        except OSError:
            continue
        if mine:
            ours += 1
            if not line.split()[3].startswith(("127.", "[::ffff:127.", "[::1]")):
                exposed.append(line)
    assert ours >= 6 and not exposed, (ours, exposed)
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}


def test_gpu_evaluations_run_only_on_gpu_nodes_and_say_where(cluster, tmp_path):
    task = _task(tmp_path / "gpu", resources="num_cpus = 1\nnum_gpus = 1\ncustom = { accel = 1 }")
    start_run(RunConfig(task=str(task), iterations=6, llm=("offline",), concurrency=2, executor="ray"),
              out=tmp_path / "run")
    placements = _placements(tmp_path / "run")
    placements = [p for p in placements if p]  # a rejected proposal (an edit that did not apply) has none
    assert placements and all(p["attempts"] == 1 for p in placements)
    assert {p["node_id"] for p in placements} <= cluster.gpu_node_ids
    assert all(p["cuda_visible_devices"] == "0" and p["node_ip"] == "127.0.0.1" for p in placements)
    # the head never saw the task folder: its cache stays empty; a GPU node that ran one unpacked it
    assert not cluster.cache("head").exists() or not any(cluster.cache("head").iterdir())
    unpacked = [d for name in ("gpu1", "gpu2") for d in cluster.cache(name).glob("[0-9a-f]*")]
    assert unpacked and all((d / "evaluator.py").read_text() == (task / "evaluator.py").read_text()
                            for d in unpacked)
    lines = format_summary(summarize(tmp_path / "run"))
    assert "placement: " in lines and "0 evaluations retried" in lines and "GPUs 0" in lines


def _evaluate_all(executor: RayExecutor, jobs: list[EvaluationJob]):
    async def main():
        try:
            return await asyncio.gather(*(executor.evaluate(job) for job in jobs))
        finally:
            await executor.close()
    return asyncio.run(main())


def test_cpu_evaluations_spread_over_all_nodes(cluster, tmp_path):
    task = _task(tmp_path / "cpu", sleep_s=2.0)
    executor = RayExecutor("process", resources={"num_cpus": 1})
    assert executor.slots == 3  # one CPU on each of the three nodes
    program = (task / "initial_program.py").read_text()
    results = _evaluate_all(executor, [EvaluationJob(program_text=program, task_dir=str(task), timeout_s=30)
                                       for _ in range(3)])
    assert [r.status for r in results] == [Status.OK] * 3
    # three sleepers at once on three one-CPU nodes: one on each, the head included
    assert {r.placement["node_id"] for r in results} == cluster.gpu_node_ids | {cluster.head_id}


def test_gpu_slots_count_gpu_nodes_only(cluster):
    executor = RayExecutor("process", resources={"num_cpus": 1, "num_gpus": 1})
    try:
        assert executor.slots == 2
        assert RayExecutor("process", resources={"num_cpus": 0.5}).slots == 6
    finally:
        asyncio.run(executor.close())


def test_a_request_no_node_satisfies_is_refused_at_start_with_the_nodes_listed(cluster, tmp_path):
    with pytest.raises(ConfigError, match=r"num_gpus=2.*no node") as info:
        RayExecutor("process", resources={"num_cpus": 1, "num_gpus": 2})
    assert "\n" not in str(info.value) and str(info.value).count("GPU=1") == 2 and "accel=1" in str(info.value)
    # and from the CLI, joining the cluster by its address: one line, exit 2, no run directory
    task = _task(tmp_path / "big", resources="num_gpus = 2")
    done = _evoforge("run", str(task), "--executor", "ray", "--ray-address", cluster.cluster.address,
                     "--iterations", "1", "--quiet", "--out", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("evoforge: error: task.toml [resources] asks each evaluation for num_cpus=1, num_gpus=2")
    assert "(nodes: node " in last and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_changed_task_folder_is_never_served_stale(cluster, tmp_path):
    task = _task(tmp_path / "changing")
    program = (task / "initial_program.py").read_text()
    executor = RayExecutor("process", resources={"num_cpus": 1, "num_gpus": 1})
    job = EvaluationJob(program_text=program, task_dir=str(task), timeout_s=30)

    async def main():
        try:
            first = await executor.evaluate(job)
            evaluator = (task / "evaluator.py").read_text()
            (task / "evaluator.py").write_text(evaluator.replace('"error": error', '"error": error, "edited": 1.0'))
            second = await executor.evaluate(job)
            return first, second
        finally:
            await executor.close()

    first, second = asyncio.run(main())
    assert "edited" not in first.metrics and second.metrics["edited"] == 1.0
    digests = {d.name for name in ("gpu1", "gpu2") for d in cluster.cache(name).glob("[0-9a-f]*")}
    assert len(digests) >= 2  # one folder per content, never overwritten in place


# -- Ray Client and Ray Jobs -----------------------------------------------------------------------

def test_a_run_through_ray_client(cluster, tmp_path):
    task = _task(tmp_path / "client", resources="num_gpus = 1")
    args = ("run", str(task), "--executor", "ray", "--ray-address", f"ray://127.0.0.1:{cluster.client_port}",
            "--iterations", "3", "--concurrency", "1", "--quiet", "--out", str(tmp_path / "run"))
    done = _evoforge(*args, timeout=420)
    if done.returncode != 0 and "Initialization failure from server" in done.stderr:
        # Ray's client server starts a Python process per client and, on a loaded 2-core machine, can
        # miss its own start-up limit (seen about 1 run in 4): one more connection, not a retry of ours.
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        done = _evoforge(*args, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    placements = [p for p in _placements(tmp_path / "run") if p]
    assert placements and {p["node_id"] for p in placements} <= cluster.gpu_node_ids


def test_a_run_submitted_as_a_ray_job(cluster, tmp_path):
    task = _task(tmp_path / "job")
    run_dir = tmp_path / "run-on-head"
    env = {**os.environ, **LOOPBACK_ENV}
    env.pop("RAY_ADDRESS", None)
    address = f"http://127.0.0.1:{cluster.dashboard_port}"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    deadline = time.monotonic() + 60  # the dashboard's job API comes up a little after the head
    while True:
        listed = subprocess.run([ray_cli, "job", "list", "--address", address], capture_output=True, text=True,
                                env=env, timeout=60)
        if listed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert listed.returncode == 0, listed.stderr[-2000:]
    done = subprocess.run([ray_cli, "job", "submit", "--address", address, "--",
                           sys.executable, "-m", "evoforge", "run", str(task), "--executor", "ray",
                           "--iterations", "3", "--concurrency", "1", "--quiet", "--out", str(run_dir)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "succeeded" in done.stdout
    placements = [p for p in _placements(run_dir) if p]
    known = {n["NodeID"] for n in ray.nodes()}
    assert placements and {p["node_id"] for p in placements} <= known
    with Store.open(run_dir / "run.db", readonly=True) as store:
        assert store.get_meta("config")["executor"] == "ray"


# -- the docker sandbox on the workers ------------------------------------------------------------

def _docker_why_not() -> str:
    try:
        from evoforge.sandbox.docker import docker_available
    except ImportError as exc:
        return f"the docker SDK is not importable ({exc})"
    available, why = docker_available()
    return "" if available else why


IN_CONTAINER = TINY_EVALUATOR.replace(
    '"metrics": {"error": error}', '"metrics": {"error": error, "in_container": float(os.path.exists("/.dockerenv"))}',
).replace("import importlib.util", "import importlib.util, os")


def test_the_docker_sandbox_runs_on_ray_workers(cluster, tmp_path):
    why = _docker_why_not()
    if why:
        pytest.skip(f"docker sandbox unavailable: {why} (as root, `sandbox/ci_docker.sh start` installs and "
                    "starts one)")
    task = write_tiny_task(tmp_path / "docker", evaluator=IN_CONTAINER)
    program = (task / "initial_program.py").read_text()
    executor = RayExecutor("docker", resources={"num_cpus": 1, "num_gpus": 1})
    jobs = [EvaluationJob(program_text=program, task_dir=str(task), timeout_s=60, memory_mb=256) for _ in range(2)]
    results = _evaluate_all(executor, jobs)
    assert [r.status for r in results] == [Status.OK] * 2, [r.artifacts for r in results]
    assert all(r.metrics["in_container"] == 1.0 for r in results)  # inside a container, not a forked process
    assert {r.placement["node_id"] for r in results} <= cluster.gpu_node_ids


# -- losing and adding nodes (last: it changes the cluster) --------------------------------------

def _worker_on(cache: Path) -> int | None:
    """The pid of a Ray worker running our task on the node whose cache folder is ``cache``."""
    marker = f"{CACHE_ENV}={cache}".encode()
    for name in os.listdir("/proc"):
        try:
            if Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[0] != WORKER_TITLE:
                continue
            if marker in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                return int(name)
        except OSError:
            continue
    return None


def test_losing_a_node_mid_run_retries_its_evaluations_and_a_new_node_is_used(cluster, tmp_path):
    task = _task(tmp_path / "loss", sleep_s=1.5)
    iterations = 14
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["snapshot"] = start_run(RunConfig(task=str(task), iterations=iterations, llm=("offline",),
                                                      concurrency=2, executor="ray"), out=tmp_path / "run")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    victim = cluster.workers["2"]
    deadline = time.monotonic() + 120
    while _worker_on(cluster.cache("gpu2")) is None:  # an evaluation is running on the victim
        assert time.monotonic() < deadline and runner.is_alive(), outcome
        time.sleep(0.05)
    cluster.cluster.remove_node(victim)
    removed_at = time.monotonic()
    newcomer = cluster.add("gpu3")
    runner.join(timeout=300)
    assert not runner.is_alive() and "error" not in outcome, outcome

    run_dir = tmp_path / "run"
    with Store.open(run_dir / "run.db", readonly=True) as store:
        assert store.count("iteration > 0") == iterations and store.count() == iterations + 1
        iterations_seen = [r.iteration for r in store.candidates()]
        assert sorted(iterations_seen) == list(range(iterations + 1))  # nothing lost, nothing twice
        # every result is the evaluator's (offline mutations may break the program), none the machinery's
        machinery = [r.artifacts["error"] for r in store.candidates() if "Ray" in r.artifacts.get("error", "")]
        assert not machinery, machinery
    placements = _placements(run_dir)
    retried = [p for p in placements if p.get("attempts", 0) > 1]  # rejected candidates have none
    assert retried and all(p["node_id"] != victim.node_id for p in retried)
    assert all("lost" in p for p in retried)
    assert newcomer.node_id in {p.get("node_id") for p in placements}  # joined mid-run, used without a restart
    with Run.open(run_dir) as handle:
        counts = handle.placements()
    assert counts["retried"] == len(retried) and counts["extra_attempts"] >= len(retried)
    shown = format_summary(summarize(run_dir))
    assert f"{len(retried)} evaluations retried" in shown, shown
    assert time.monotonic() - removed_at < 300
    json.dumps(counts)  # `evoforge show --json` prints it
