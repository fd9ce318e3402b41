"""`ProcessSandbox` end to end, with real processes: every way a candidate can misbehave comes back
as a scored failure, and this test process is never harmed."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from evoforge.evaluators.types import EvaluationResult, SandboxError, Status
from evoforge.sandbox import EvaluationJob, ProcessSandbox
from evoforge.sandbox.forkserver import JOB_UID_BASE
from evoforge.sandbox.process import ENV_ALLOWLIST, clean_environment
from fakes.tasks import IMPORTING_EVALUATOR

# The evaluator imports the candidate and calls its run(); run() returns a score or a whole dict.
IMPORTING = IMPORTING_EVALUATOR


@pytest.fixture(scope="module")
def sandbox():
    with ProcessSandbox() as box:
        yield box


@pytest.fixture
def task(tmp_path):
    def make(source: str = IMPORTING, name: str = "task") -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "evaluator.py").write_text(textwrap.dedent(source))
        return str(folder)
    return make


def _job(task_dir: str, program: str, **kwargs) -> EvaluationJob:
    kwargs.setdefault("timeout_s", 10)
    return EvaluationJob(program_text=textwrap.dedent(program), task_dir=task_dir, **kwargs)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_ok_result_and_workdir_removed(sandbox, task):
    result = sandbox.run(_job(task(), """
        import os
        def run():
            print("hello from the candidate")
            return {"score": 1.5, "features": {"f": 0.25}, "metrics": {"m": 2},
                    "artifacts": {"cwd": os.getcwd()}}
    """))
    assert result.status == Status.OK, result
    assert (result.score, result.features, result.metrics) == (1.5, {"f": 0.25}, {"m": 2.0})
    assert "hello from the candidate" in result.stdout
    assert result.eval_s > 0
    workdir = result.artifacts["cwd"]
    assert Path(workdir).name.startswith("evoforge-")
    assert not os.path.exists(workdir)


def test_nan_score_is_invalid(sandbox, task):
    result = sandbox.run(_job(task(), "def run():\n    return float('nan')\n"))
    assert result.status == Status.INVALID


def test_non_dict_is_error(sandbox, task):
    result = sandbox.run(_job(task("def evaluate(path):\n    return 'nope'\n"), ""))
    assert result.status == Status.ERROR


def test_missing_evaluate_is_error(sandbox, task):
    result = sandbox.run(_job(task("X = 1\n"), ""))
    assert result.status == Status.ERROR
    assert "evaluator.py" in result.artifacts["error"]


def test_infinite_loop_times_out(sandbox, task):
    result = sandbox.run(_job(task(), "def run():\n    while True:\n        pass\n", timeout_s=1))
    assert result.status == Status.TIMEOUT
    assert "CPU" not in result.artifacts["error"]   # the wall clock ended it, not the CPU limit


def test_cpu_limit_times_out(sandbox, task):
    result = sandbox.run(_job(task(), "def run():\n    while True:\n        pass\n", timeout_s=8, cpu_s=1))
    assert result.status == Status.TIMEOUT
    assert "CPU" in result.artifacts["error"]   # RLIMIT_CPU fired, long before the 8 s wall clock


def test_sleeping_candidate_times_out_on_wall_clock(sandbox, task):
    result = sandbox.run(_job(task(), "import time\ndef run():\n    time.sleep(30)\n", timeout_s=1))
    assert result.status == Status.TIMEOUT
    assert result.eval_s < 25   # killed on its 1 s limit: it never slept its 30 s (a generous bound, not a timing)


def test_memory_blow_up_is_oom(sandbox, task):
    result = sandbox.run(_job(task(), "def run():\n    return len(bytearray(4 * 1024 ** 3))\n", memory_mb=256))
    assert result.status == Status.OOM, result


def test_numpy_memory_blow_up_is_oom(sandbox, task):
    pytest.importorskip("numpy")
    result = sandbox.run(_job(task(), "import numpy as np\ndef run():\n    return float(np.ones(10**9).sum())\n",
                              memory_mb=256))
    assert result.status == Status.OOM, result


def test_segfault_is_error_with_signal_name(sandbox, task):
    result = sandbox.run(_job(task(), "import ctypes\ndef run():\n    ctypes.string_at(0)\n"))
    assert result.status == Status.ERROR
    assert "SIGSEGV" in result.artifacts["error"]
    assert "Fatal Python error" in result.stderr  # faulthandler's traceback


def test_sys_exit_is_error(sandbox, task):
    result = sandbox.run(_job(task(), "import sys\ndef run():\n    sys.exit(3)\n"))
    assert result.status == Status.ERROR
    assert "SystemExit" in result.artifacts["error"]


def test_os_exit_is_error(sandbox, task):
    result = sandbox.run(_job(task(), "import os, sys\ndef run():\n    sys.stderr.write('bye now')\n"
                                      "    sys.stderr.flush()\n    os._exit(0)\n"))
    assert result.status == Status.ERROR
    assert "exited with code 0" in result.artifacts["error"]
    assert "bye now" in result.stderr and "bye now" in result.artifacts["error"]


def test_huge_output_is_bounded(sandbox, task):
    result = sandbox.run(_job(task(), """
        import sys
        def run():
            chunk = "x" * 1_000_000
            for _ in range(50):
                sys.stdout.write(chunk)
            sys.stderr.write("e" * 5_000_000)
            return 1.0
    """, max_output_bytes=4096))
    assert result.status in (Status.OK, Status.ERROR)
    assert len(result.stdout) <= 4096 and len(result.stderr) <= 4096
    assert "dropped" in result.stdout


def test_api_keys_do_not_reach_the_candidate(monkeypatch, task):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("SOME_TOKEN", "tok")
    env = clean_environment()
    assert "OPENAI_API_KEY" not in env and "SOME_TOKEN" not in env
    assert set(env) <= set(ENV_ALLOWLIST) | {"HOME", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
                                             "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                             "EVOFORGE_HIDE_PATHS"}
    with ProcessSandbox() as box:
        result = box.run(_job(task(), """
            import os
            def run():
                return {"score": 1, "artifacts": {"key": repr(os.environ.get("OPENAI_API_KEY")),
                                                  "names": ",".join(sorted(os.environ))}}
        """))
    assert result.status == Status.OK, result
    assert result.artifacts["key"] == "None"
    assert "SOME_TOKEN" not in result.artifacts["names"]


def test_double_forked_daemon_is_killed(sandbox, task):
    # The daemon reports its pid through a pipe (the worker may write nowhere but its workdir).
    result = sandbox.run(_job(task(), """
        import os, time
        def run():
            r, w = os.pipe()
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(w, str(os.getpid()).encode())
                    time.sleep(60)
                os._exit(0)
            os.close(w)
            return {"score": 1.0, "artifacts": {"daemon": os.read(r, 32).decode()}}
    """))
    assert result.status == Status.OK, result
    daemon_pid = int(result.artifacts["daemon"])
    assert not _alive(daemon_pid)


def test_network_is_unreachable(sandbox, task):
    if os.geteuid() != 0:
        pytest.skip("a new network namespace is best effort without root")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        result = sandbox.run(_job(task(), f"""
            import socket
            def run():
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                    return {{"score": 1.0, "connected": 1}}
                except OSError as exc:
                    return {{"score": 0.0, "connected": 0, "artifacts": {{"why": repr(exc)}}}}
        """))
    finally:
        listener.close()
    assert result.status == Status.OK, result
    assert result.metrics["connected"] == 0.0


def test_cascade_gating(sandbox, task):
    folder = task("""
        def evaluate_stage1(path):
            return {"score": float(open(path).read())}
        def evaluate(path):
            return {"score": 100.0}
    """)
    low = sandbox.run(_job(folder, "0.1", cascade_thresholds=(0.5,)))
    high = sandbox.run(_job(folder, "0.9", cascade_thresholds=(0.5,)))
    assert (low.status, low.stage, low.metrics["stage1_score"]) == (Status.INVALID, 1, 0.1)
    assert (high.status, high.stage, high.score) == (Status.OK, 2, 100.0)


def test_concurrent_calls_get_their_own_results(sandbox, task):
    folder = task()
    results: dict[tuple[int, int], EvaluationResult] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for j in range(3):
                results[t, j] = sandbox.run(_job(folder, f"def run():\n    return {t * 10 + j}\n"))
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert {key: r.score for key, r in results.items()} == {(t, j): float(t * 10 + j)
                                                              for t in range(4) for j in range(3)}


def test_close_leaves_no_server_and_is_idempotent(task):
    box = ProcessSandbox()
    assert box.run(_job(task(), "def run():\n    return 1\n")).ok
    pid = box.server_info["pid"]
    assert _alive(pid)
    box.close()
    box.close()
    assert not _alive(pid)
    with pytest.raises(SandboxError):
        box.run(_job(task(name="again"), "def run():\n    return 1\n"))


def test_dead_server_fails_in_flight_job_and_restarts(task):
    folder = task()
    with ProcessSandbox() as box:
        first_pid = box.server_info["pid"]
        outcome: list[object] = []

        def slow() -> None:
            try:
                outcome.append(box.run(_job(folder, "import time\ndef run():\n    time.sleep(1.5)\n    return 1\n",
                                            timeout_s=2)))
            except SandboxError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.3)
        os.kill(first_pid, signal.SIGKILL)
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], SandboxError)
        result = box.run(_job(folder, "def run():\n    return 2\n"))
        assert result.ok and result.score == 2.0
        assert box.server_info["pid"] != first_pid


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root and a system Python that nobody can read")
def test_root_drops_to_nobody_when_the_interpreter_allows(task):
    """The default venv may live under a 0700 /root (then the worker stays root); a system Python
    lets us check the nobody path: uid, a copied task folder, and RLIMIT_NPROC against fork bombs."""
    with ProcessSandbox(python="/usr/bin/python3") as box:
        if box.server_info["drop_uid"] is None:
            pytest.skip("nobody cannot read /usr/bin/python3's import paths here")
        result = box.run(_job(task(), """
            import os
            def run():
                children = 0
                try:
                    for _ in range(200):
                        pid = os.fork()
                        if pid == 0:
                            import time
                            time.sleep(30)
                            os._exit(0)
                        children += 1
                except OSError:
                    pass
                return {"score": 1.0, "uid": os.getuid(), "children": children}
        """, max_processes=16))
    assert result.status == Status.OK, result
    assert result.metrics["uid"] >= JOB_UID_BASE
    assert result.metrics["children"] < 16


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root can give each job a uid of its own")
def test_a_fork_bomb_does_not_starve_a_concurrent_job(sandbox, task):
    """RLIMIT_NPROC counts per uid; each job has its own, so one job holding its whole process budget
    leaves another job, running at the same time, free to start processes (and unable to signal it)."""
    if sandbox.server_info["drop_uid"] is None:
        pytest.skip("the worker keeps root's uid here")
    folder = task()
    bomb = _job(folder, """
        import os, time
        def run():
            children = 0
            try:
                while children < 100:
                    if os.fork() == 0:
                        time.sleep(3)
                        os._exit(0)
                    children += 1
            except OSError:
                pass
            time.sleep(2)          # hold the whole budget while the other job runs
            return {"score": 1.0, "uid": os.getuid(), "children": children}
    """, max_processes=12)
    spawner = _job(folder, """
        import os, subprocess, sys, time
        def run():
            time.sleep(0.5)        # start once the bomb holds its budget
            done = [subprocess.run([sys.executable, "-c", "pass"]).returncode for _ in range(4)]
            return {"score": float(sum(done) == 0), "uid": os.getuid()}
    """, max_processes=12)
    outcome = {}
    threads = [threading.Thread(target=lambda k=k, j=j: outcome.__setitem__(k, sandbox.run(j)))
               for k, j in (("bomb", bomb), ("spawner", spawner))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome["bomb"].status == Status.OK and outcome["bomb"].metrics["children"] < 12, outcome["bomb"]
    assert outcome["spawner"].status == Status.OK and outcome["spawner"].score == 1.0, outcome["spawner"]
    assert outcome["bomb"].metrics["uid"] != outcome["spawner"].metrics["uid"]
    assert min(outcome["bomb"].metrics["uid"], outcome["spawner"].metrics["uid"]) >= JOB_UID_BASE
