"""Ray placement (``--executor ray``): each evaluation is one Ray task, scheduled by Ray's own
resource-aware scheduler — not a home-made one — so GPU evaluations land on GPU nodes.

What travels with a task (docs/architecture.md, "Isolation and placement"): the job (program text + limits, a
few hundred bytes) and a *reference* to the task folder, which is packed once into a deterministic tar blob
and put once in the object store. A worker unpacks it into a per-node cache directory keyed by the blob's
SHA-256, so a node fetches the files once however many evaluations it runs. Nothing of the archive or the run
directory ever leaves the driver.

Nothing of Ray's or of other tasks is for a candidate to read: the task-file cache is mode 0700
(owned by the Ray worker's user), and so is this node's Ray session folder, which Ray itself makes
0777 (logs of every worker, its sockets, spilled objects). Both hold only against a candidate under
another uid than the Ray worker: the process sandbox as root (a uid per job) and the docker sandbox
(its own uid and a private copy of the task folder); the sandboxes copy the task folder for the
candidate's uid when it cannot read it in place. As non-root with the process sandbox, the candidate
shares the worker's uid and the modes do not separate them; that backend's own confinement applies.

Inside the worker the job still runs through an isolation backend (``process`` or ``docker``):
Ray decides *where*, the sandbox decides *how*. One isolation backend is kept per Ray worker
process (module-level cache) so the fork server is started once per worker, not once per job.

Several nodes (docs/architecture.md, "Isolation and placement"): a node that never saw the task folder
fetches it from the object store on its first evaluation; a changed folder gets a new digest, so no
node serves a stale copy. Each result carries its placement (node id and address, ``CUDA_VISIBLE_DEVICES``,
attempts), which run.db stores with the candidate. Retries are ours, not Ray's, so they are counted:
an attempt whose worker or node is lost is submitted again and placed on the nodes alive then.
``slots`` follows the live nodes (`evoforge.sandbox.ray_cluster`).

Errors, translated here once (httpx style, see evaluators.types)::

    unreachable / malformed --ray-address, one that never completes Ray's handshake,
        a request no node can satisfy  -> ConfigError
    worker or node lost (WorkerCrashedError, NodeDiedError, ObjectLostError, OutOfMemoryError...)
        -> submitted again (``max_retries``), then an ``error`` EvaluationResult: the run goes on
    SandboxError inside the worker -> submitted again, then SandboxError, as the local executor raises it
    no result within the job's timeout plus a grace, or no live node left that fits -> SandboxError
    anything else Ray raises (an evoforge not installed on a node...) -> SandboxError
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from evoforge.evaluators.types import ConfigError, EvaluationResult, SandboxError, Status
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.ray_cluster import ClusterView

__all__ = ["RayExecutor", "pack_task_dir", "unpack_task_files", "resource_request", "protect_ray_session",
           "DEFAULT_MAX_RETRIES", "CACHE_ENV"]

DEFAULT_MAX_RETRIES = 2        # attempts after the first when a worker or node is lost
CONNECT_TIMEOUT_S = 5.0        # TCP probe of a host:port address before ray.init (which would hang)
CONNECT_LIMIT_S = 120.0        # ray.init on an address that accepts TCP: Ray itself would retry for ever
FIRST_NODE_TIMEOUT_S = 60.0    # after connecting, for the cluster to list a live node
RESULT_GRACE_S = 120.0         # per attempt, on top of the job's timeout_s: scheduling, worker start, transfer
NO_NODE_GRACE_S = 120.0        # how long an evaluation waits while no live node can run its request
RESULT_POLL_S = 1.0            # how often a waiting evaluation re-checks the cluster
_log = logging.getLogger(__name__)
TASK_FILES_MAX_MB = 256        # a task folder larger than this belongs in shared storage, not the object store
_SKIPPED_NAMES = {"__pycache__", ".git", ".ipynb_checkpoints"}
_REMOTE_NAME = "evoforge_evaluate"   # also the worker's process title while it runs: ray::evoforge_evaluate
_log = logging.getLogger(__name__)


# -- task files: packed once on the driver, unpacked once per node ---------------------------------

def pack_task_dir(task_dir: str | os.PathLike[str]) -> tuple[str, bytes]:
    """The task folder as ``(sha256 hex, tar bytes)``; deterministic (sorted names, zeroed owners
    and times), so the same folder gives the same digest on every run and the node cache hits."""
    root = Path(task_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: the task folder does not exist on the driver")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if _SKIPPED_NAMES & set(rel.parts) or path.suffix == ".pyc" or path.is_symlink():
                continue
            info = tar.gettarinfo(str(path), arcname=rel.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isfile():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif info.isdir():
                tar.addfile(info)
    blob = buffer.getvalue()
    if len(blob) > TASK_FILES_MAX_MB * 1024 * 1024:
        raise ConfigError(f"{root}: the task folder is {len(blob) / 2**20:.0f} MB packed; --executor ray ships "
                          f"it through the object store (limit {TASK_FILES_MAX_MB} MB): move large data "
                          "to storage every node can read and load it from the evaluator")
    return hashlib.sha256(blob).hexdigest(), blob


CACHE_ENV = "EVOFORGE_RAY_TASK_CACHE"   # a node's task-file cache folder (set per node, e.g. `ray start` env)


def _cache_root() -> Path:
    """This node's task-file cache: ``$EVOFORGE_RAY_TASK_CACHE`` where the node's environment sets it
    (several raylets on one machine in the tests; a node-local disk in production), else a folder
    in the temporary directory named after the user."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"evoforge-ray-tasks-{os.getuid()}"


def unpack_task_files(digest: str, blob: bytes | Any, cache_root: Path | None = None) -> str:
    """The task folder for ``digest`` on this node, unpacking ``blob`` (bytes, or an ObjectRef
    fetched only on a cache miss) the first time. Safe against concurrent workers: each unpacks
    into its own temporary directory and the first atomic rename wins."""
    root = cache_root or _cache_root()
    target = root / digest
    if target.is_dir():
        if root.stat().st_mode & 0o077:
            os.chmod(root, 0o700)  # a cache an older evoforge left open
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    if root.stat().st_uid != os.getuid():  # a shared /tmp: never run an evaluator someone else planted
        raise SandboxError(f"{root} belongs to another user; remove it or set TMPDIR for the Ray workers")
    # 0700: a candidate (another uid) reads neither this task's files nor other tasks' cached folders;
    # the sandbox gives its evaluator a private copy it can read.
    os.chmod(root, 0o700)
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        import ray
        blob = ray.get(blob)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    try:
        with tarfile.open(fileobj=io.BytesIO(bytes(blob)), mode="r") as tar:
            tar.extractall(staging, filter="data")
        os.chmod(staging, 0o700)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)  # another worker won the rename
    return str(target)


# -- the worker side -----------------------------------------------------------------------------

_ISOLATIONS: dict[tuple[str, str | None], Any] = {}
_ISOLATIONS_LOCK = threading.Lock()


def _isolation(name: str):
    """One isolation backend per worker process and GPU assignment. Ray sets CUDA_VISIBLE_DEVICES
    per task; the fork server copies it at start (sandbox.process.ENV_ALLOWLIST), so a worker that
    is handed a different GPU gets a server started with that GPU visible."""
    from evoforge.sandbox.isolation import make_isolation

    key = (name, os.environ.get("CUDA_VISIBLE_DEVICES"))
    with _ISOLATIONS_LOCK:
        if key not in _ISOLATIONS:
            _ISOLATIONS[key] = make_isolation(name)
        return _ISOLATIONS[key]


_PROTECTED_SESSIONS: set[str] = set()


def protect_ray_session(session_dir: str | None = None) -> str | None:
    """Make this node's Ray session folder 0700 (Ray creates it 0777). Every Ray process of the
    session runs as its owner, so Ray is unaffected; a candidate under another uid sees nothing of
    it. Returns the folder, or None (and logs why) where it cannot be done: said, never silent."""
    try:
        if session_dir is None:
            import ray
            # Ray has no public accessor for the session folder (Ray 2.60); the private one is stable
            # across 2.x. A future Ray without it gets the warning below, not a failed evaluation.
            session_dir = ray._private.worker.global_worker.node.get_session_dir_path()
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised into an evaluation
        _log.warning("evoforge: cannot find Ray's session folder to make it private (%s); candidates under "
                     "another uid may read Ray's logs and sockets", exc)
        return None
    if session_dir in _PROTECTED_SESSIONS:
        return session_dir
    try:
        if os.stat(session_dir).st_uid == os.getuid():
            os.chmod(session_dir, 0o700)
        else:
            _log.warning("evoforge: Ray's session folder %s belongs to another user; left as it is", session_dir)
    except OSError as exc:
        _log.warning("evoforge: cannot make Ray's session folder %s private: %s", session_dir, exc)
        return None
    _PROTECTED_SESSIONS.add(session_dir)
    return session_dir


def evoforge_evaluate(job_data: dict, task_files: list, digest: str, isolation_name: str) -> dict:
    """Body of the Ray task. ``task_files`` is ``[ObjectRef]``: nested in a list so Ray does not
    fetch the blob for every task, only on a node-cache miss. Returns plain data (a result dict)
    with where it ran: the node's id and address and the GPUs Ray gave it (``CUDA_VISIBLE_DEVICES``,
    which the sandbox passes on to the candidate)."""
    import ray

    protect_ray_session()
    task_dir = unpack_task_files(digest, task_files[0])
    job = replace(EvaluationJob.from_dict(job_data), task_dir=task_dir)
    result = _isolation(isolation_name).run(job).to_dict()
    context = ray.get_runtime_context()
    result["placement"] = {"node_id": context.get_node_id(),
                           "node_ip": ray.util.get_node_ip_address(),
                           "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    return result


# -- the driver side -----------------------------------------------------------------------------

def resource_request(resources: Any = None) -> dict[str, Any]:
    """Ray task options from a task's ``[resources]`` (an ``evoforge.engine.task.Resources`` or a mapping
    with ``num_cpus``, ``num_gpus``, ``custom``)."""
    if resources is None:
        return {"num_cpus": 1.0, "num_gpus": 0.0, "resources": {}}
    get = resources.get if isinstance(resources, Mapping) else (lambda k, d=None: getattr(resources, k, d))
    custom = {str(k): float(v) for k, v in dict(get("custom", {}) or {}).items()}
    return {"num_cpus": float(get("num_cpus", 1.0)), "num_gpus": float(get("num_gpus", 0.0)),
            "resources": custom}


def _probe(address: str) -> None:
    """Ray's own connect retries for minutes on a dead GCS address; a TCP probe fails in seconds."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            f"`ray start --head` on that machine, or leave out --ray-address to run Ray locally") from exc


def _asked(request: Mapping[str, Any]) -> str:
    """A request in task.toml's words: ``num_cpus=1, num_gpus=1, accel=1``."""
    named = {"num_cpus": request["num_cpus"], "num_gpus": request["num_gpus"], **request["resources"]}
    return ", ".join(f"{k}={v:g}" for k, v in named.items() if v)


class RayExecutor:
    """Placement on a Ray cluster (or a local Ray instance when ``address`` is None).

    ``slots`` is how many evaluations the cluster's live nodes hold at once for this task's request
    (summed per node, so a GPU request counts GPU nodes only), re-read as nodes join or leave; a fixed
    ``slots`` (``--eval-slots``) caps evaluations in flight instead. A lost worker or node is retried
    on whatever nodes are left, up to ``max_retries`` times; every result carries its placement
    (node, GPUs, attempts). If Ray is already initialised in this process (a notebook, a test), that
    connection is used and left open at close.
    """

    def __init__(self, isolation_name: str = "process", *, address: str | None = None,
                 slots: int | None = None, resources: Any = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, num_cpus: int | None = None,
                 first_node_timeout_s: float = FIRST_NODE_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_LIMIT_S,
                 startup_timeout_s: float | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a declared extra
            raise ConfigError("--executor ray needs Ray: pip install 'evoforge[ray]'") from exc
        self._ray = ray
        self.isolation_name = isolation_name
        # Inside a Ray job (`ray job submit -- evoforge run ...`) Ray sets RAY_ADDRESS: join that cluster.
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_retries = int(max_retries)
        self.request = resource_request(resources)
        self._owns_connection = False
        self.startup_timeout_s = startup_timeout_s
        self._blobs: dict[str, tuple[tuple, str, Any]] = {}   # task_dir -> (fingerprint, digest, ObjectRef)
        self._fixed_slots = slots
        self._in_flight = 0
        self._connect(num_cpus, connect_timeout_s)
        self.cluster = ClusterView(ray)
        try:
            self._wait_for_nodes(first_node_timeout_s)
            self._check_feasible()
            self._check_first_task()
        except BaseException:
            self._disconnect()
            raise
        self._cap = asyncio.Semaphore(slots) if slots else None
        # Retries are ours, not Ray's (max_retries=0): each attempt is counted and stored with the
        # candidate, and a retry is placed on the nodes alive at that moment.
        self._remote = ray.remote(evoforge_evaluate).options(
            name=_REMOTE_NAME, max_retries=0,
            num_cpus=self.request["num_cpus"], num_gpus=self.request["num_gpus"],
            resources=self.request["resources"] or None)

    @property
    def slots(self) -> int:
        """Evaluations at once: ``--eval-slots`` if given, else what the live nodes hold (at least 1)."""
        return self._fixed_slots or max(1, self.cluster.slots(self.request))

    # -- lifecycle

    def _connect(self, num_cpus: int | None, timeout_s: float = CONNECT_LIMIT_S) -> None:
        ray = self._ray
        if ray.is_initialized():
            return  # someone else's connection: use it, leave it open
        # Quiet: the candidates' output is captured by the sandbox, not Ray's log streaming.
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report phoning home
        if self.address is None or not self.address.startswith("ray://"):
            options["include_dashboard"] = False  # not an option of a Ray Client connection
        if self.address is None:
            from evoforge.sandbox.local import default_slots
            # A fresh local instance enables token auth by default and warns about it; that is the
            # safe setting, not something the user must act on.
            logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
            options["num_cpus"] = num_cpus or default_slots()
            # A local instance serves this process only: its servers listen on loopback, not on the
            # machine's interface address that Ray picks by default.
            options["_node_ip_address"] = "127.0.0.1"
        else:
            if self.address != "auto":
                _probe(self.address)
            if not self.address.startswith("ray://"):
                # The GCS address rewrite (a head on loopback) hangs ray.init for ever: try the join in a
                # child first. Ray Client joins a server, not a GCS; `_init_within` bounds it below.
                self._check_join()
            options["address"] = self.address
        try:
            if self.address is None:
                ray.init(**options)  # starts its own processes, with Ray's own time limits
            else:
                # A Ray Client server starts a Python process per client before it answers: allow more.
                _init_within(ray, options, timeout_s * (2.5 if self.address.startswith("ray://") else 1))
        except _NoHandshake as exc:
            raise ConfigError(
                f"--ray-address {self.address}: something answers there but no Ray cluster joined within "
                f"{exc} (a wrong port, another Ray version, or a cluster that wants its token: "
                "RAY_AUTH_MODE=token with ~/.ray/auth_token); check `ray status` on the head") from exc
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self.address is None:
                raise SandboxError(f"could not start a local Ray instance: {first}") from exc
            hint = "start one with `ray start --head`, or leave out --ray-address to run Ray locally"
            if self.address != "auto" and "RAY_AUTH_MODE" not in os.environ:
                # Ray joins an explicit address without its token unless told to (Ray 2.60).
                hint = ("if the cluster uses token authentication, set RAY_AUTH_MODE=token with its token in "
                        "~/.ray/auth_token (`ray get-auth-token` on the head); otherwise " + hint)
            raise ConfigError(f"--ray-address {self.address}: cannot join the Ray cluster ({first}); {hint}") from exc
        self._owns_connection = True
        if self.address is None:
            protect_ray_session()  # the instance we started; workers do it on every node they run on

    def _wait_for_nodes(self, timeout_s: float) -> None:
        """A cluster just started may not list its nodes yet: wait for a first live node, bounded."""
        deadline = time.monotonic() + timeout_s
        while not self.cluster.refresh():
            if time.monotonic() > deadline:
                raise SandboxError(f"{self.address or 'the local Ray instance'} reported no live node within "
                                   f"{timeout_s:g} s of connecting; check `ray status` on the head node")
            time.sleep(0.2)

    def _check_join(self) -> None:
        """``ray.init`` may wait for ever on a cluster that takes the connection and never answers
        (a head whose node IP address this machine cannot reach): try the join where it can be
        abandoned first (`evoforge.sandbox.ray_join`)."""
        from evoforge.sandbox.ray_join import JOIN_TIMEOUT_S, check_join
        check_join(self.address, timeout_s=self.startup_timeout_s or JOIN_TIMEOUT_S)

    def _check_feasible(self) -> None:
        """A request no node can satisfy would sit in Ray's queue forever: refuse it up front."""
        if self.cluster.slots(self.request) > 0:
            return
        where = self.address or "the local Ray instance"
        raise ConfigError(
            f"task.toml [resources] asks each evaluation for {_asked(self.request)} but no node of {where} has "
            f"that (nodes: {self.cluster.describe()}); add a node with `ray start --address HEAD:6379 "
            "--num-gpus N --resources '{\"NAME\": N}'` or lower the request")

    def _check_first_task(self) -> None:
        """A cluster that has the resources may still never start a task (workers that cannot start,
        a node that cannot reach the object store): run one empty task with the evaluations' request
        within the start-up limit, so the run stops with one line instead of waiting on its first
        evaluation."""
        from evoforge.sandbox.ray_join import JOIN_TIMEOUT_S
        from evoforge.sandbox.waits import waiting

        limit_s = self.startup_timeout_s or JOIN_TIMEOUT_S
        ready = self._ray.remote(_worker_ready).options(
            num_cpus=self.request["num_cpus"], num_gpus=self.request["num_gpus"],
            resources=self.request["resources"] or None, max_retries=0)
        ref = ready.remote()
        where = self.address or "the local Ray instance"
        try:
            with waiting(f"a Ray worker of {where} to run a first task", limit_s=limit_s):
                self._ray.get(ref, timeout=limit_s)
        except self._ray.exceptions.GetTimeoutError:
            self._ray.cancel(ref, force=True)
            raise SandboxError(
                f"no Ray worker of {where} started a task within {limit_s:g} s although a node has the "
                "resources; check `ray status` and the workers' logs (the same Python and evoforge on every "
                "node?), or raise [limits] startup_timeout_s in task.toml") from None
        except self._ray.exceptions.RayError as exc:
            raise SandboxError(f"a first Ray task failed on {where}: {type(exc).__name__}: {_first_line(exc)}; "
                               "is the same evoforge installed on every node?") from exc

    def _disconnect(self) -> None:
        if self._owns_connection:
            self._owns_connection = False
            self._ray.shutdown()

    async def close(self) -> None:
        """Disconnect; a local instance we started is stopped with its workers (and their fork
        servers, which exit when their worker's pipe closes). A cluster we joined keeps running."""
        self._blobs.clear()
        self._disconnect()

    # -- work

    def _task_files(self, task_dir: str) -> tuple[str, Any]:
        """The task folder's digest and object-store reference, packed again whenever a file in it
        changed (size, mtime or ctime), so a node is never served a stale folder: its cache is keyed
        by the content digest, which changes with the content."""
        fingerprint = _fingerprint(task_dir)
        known = self._blobs.get(task_dir)
        if known is None or known[0] != fingerprint:
            digest, blob = pack_task_dir(task_dir)
            if known is None or known[1] != digest:
                known = (fingerprint, digest, self._ray.put(blob))
            else:
                known = (fingerprint, digest, known[2])
            self._blobs[task_dir] = known
        return known[1], known[2]

    async def evaluate(self, job: EvaluationJob) -> EvaluationResult:
        if self._cap is None:
            return await self._evaluate(job)
        async with self._cap:
            return await self._evaluate(job)

    async def _evaluate(self, job: EvaluationJob) -> EvaluationResult:
        digest, ref = self._task_files(job.task_dir)
        data = job.to_dict()
        data["task_dir"] = ""  # the driver's path means nothing on another node
        lost: list[str] = []
        self._in_flight += 1
        try:
            for attempt in range(1, self.max_retries + 2):
                result_ref = self._remote.remote(data, [ref], digest, self.isolation_name)
                try:
                    raw = await self._result(result_ref, job)
                except _Lost as exc:
                    lost.append(str(exc))
                    _log.warning("evaluation lost on attempt %d: %s", attempt, exc)
                    continue
                except _SandboxFailed as exc:
                    if attempt <= self.max_retries:
                        lost.append(str(exc))
                        continue
                    raise SandboxError(f"on a Ray worker, after {self.max_retries} retries: {exc}") from exc
                result = EvaluationResult.from_dict(raw)
                placement = {**dict(result.placement), "attempts": attempt}
                if lost:
                    placement["lost"] = lost
                return replace(result, placement=placement)
        finally:
            self._in_flight -= 1
        # Lost machinery, not a bad candidate: record it and go on.
        return EvaluationResult.failure(
            Status.ERROR, f"Ray lost the evaluation's worker or node {self.max_retries + 1} times ({lost[-1]})",
            placement={"attempts": self.max_retries + 1, "lost": lost})

    def _result_limit_s(self, job: EvaluationJob) -> float:
        """How long one attempt may take from submission: its own timeout once per evaluation that
        may be queued ahead of it on the slots, plus a grace for scheduling and starting a worker."""
        rounds = math.ceil(max(self._in_flight, 1) / max(self.slots, 1))
        return RESULT_GRACE_S + rounds * (float(job.timeout_s or 0) + RESULT_GRACE_S)

    async def _result(self, result_ref: Any, job: EvaluationJob) -> dict:
        """One attempt's result dict. Raises `_Lost` (worker or node gone: retry elsewhere),
        `_SandboxFailed`, or SandboxError; never waits past `_result_limit_s` or, while no live
        node can run the request, past NO_NODE_GRACE_S."""
        exceptions = self._ray.exceptions
        limit_s = self._result_limit_s(job)
        started = time.monotonic()
        no_node_since: float | None = None
        future = asyncio.ensure_future(_awaitable(self._ray, result_ref))
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=RESULT_POLL_S)
                if done:
                    return future.result()
                now = time.monotonic()
                if now - started > limit_s:
                    # A worker stuck outside the sandbox or an object store that never delivers costs
                    # one candidate, not the run: the task is cancelled (its worker killed).
                    self._ray.cancel(result_ref, force=True)
                    return EvaluationResult.failure(
                        Status.ERROR, f"no result from Ray within {limit_s:g} s (the evaluation's own limit is "
                                      f"{job.timeout_s:g} s); check `ray status` and the object store's use "
                                      "(`ray memory`) on the cluster").to_dict()
                if self.cluster.slots(self.request) > 0:
                    no_node_since = None
                elif no_node_since is None:
                    no_node_since = now
                elif now - no_node_since > NO_NODE_GRACE_S:
                    raise SandboxError(
                        f"no live node of the Ray cluster can run an evaluation asking for "
                        f"{_asked(self.request)} any more, for "
                        f"{NO_NODE_GRACE_S:g} s (nodes: {self.cluster.describe()}); add such a node")
        except asyncio.CancelledError:
            self._ray.cancel(result_ref, force=True)  # kills the worker; its fork server follows
            raise
        except exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
            if isinstance(cause, SandboxError):
                raise _SandboxFailed(str(cause)) from exc
            raise SandboxError(
                f"the Ray task failed outside the sandbox "
                f"({type(cause or exc).__name__}: {_first_line(cause or exc)}); "
                "is the same evoforge installed on every node?") from exc
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError,
                exceptions.OutOfMemoryError, exceptions.LocalRayletDiedError) as exc:
            self.cluster.refresh()
            raise _Lost(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        except exceptions.TaskCancelledError as exc:
            raise SandboxError("the Ray task was cancelled from outside evoforge") from exc
        except exceptions.RayError as exc:
            raise SandboxError(f"Ray failed to run the evaluation: {type(exc).__name__}: {_first_line(exc)}") from exc
        finally:
            if not future.done():
                future.cancel()


class _NoSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


class _NoHandshake(Exception):
    """ray.init did not return within its limit."""


def _init_within(ray: Any, options: dict[str, Any], timeout_s: float) -> None:
    """``ray.init(**options)`` with a limit. Ray's connect to a GCS address retries for ever when the
    port accepts connections but never answers; the call runs in a daemon thread that is abandoned
    on expiry (the caller reports and exits; Ray's state in this process is then unusable)."""
    outcome: dict[str, BaseException] = {}
    # Off the main thread Ray skips its SIGTERM handler (sys.exit) and warns; evoforge's session
    # handles SIGTERM itself (a graceful stop), so the warning says nothing the user must act on.
    worker_log = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, _NoSigtermWarning) for f in worker_log.filters):
        worker_log.addFilter(_NoSigtermWarning())

    def connect() -> None:
        try:
            ray.init(**options)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread below
            outcome["error"] = exc

    thread = threading.Thread(target=connect, name="evoforge-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _NoHandshake(f"{timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]


class _Lost(Exception):
    """An attempt whose worker or node went away."""


class _SandboxFailed(Exception):
    """An attempt whose sandbox failed on the worker (SandboxError there)."""


async def _awaitable(ray: Any, ref: Any) -> Any:
    """Await an ObjectRef; a Ray Client reference (``ray://``) is awaited through its future."""
    if hasattr(ref, "__await__"):
        return await ref
    return await asyncio.wrap_future(ref.future())


def _fingerprint(task_dir: str) -> tuple:
    """Cheap change detector for a task folder: every entry's path, size, mtime and ctime (ns)."""
    entries = []
    for path in sorted(Path(task_dir).rglob("*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        entries.append((str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(entries)


def _worker_ready() -> int:
    """The empty first task (`RayExecutor._check_first_task`)."""
    return os.getpid()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
