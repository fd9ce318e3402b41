"""Regression tests for the attacks of issue 12, each written as a motivated candidate would.

Every test runs a real job through `ProcessSandbox` (real namespaces, cgroups, uids) and asserts the
attack failed. On the sandbox before issue 12 each of them succeeded: the candidate's nested process
shared the evaluator's writable workdir, started as ``python -c`` in it, kept CAP_DAC_READ_SEARCH
under a 0700 /root, could read the checkout's .git, left /dev/shm files and SysV segments behind,
had only per-process memory limits, and every fork server counted uids from the same base.
Network isolation is checked by what the candidate sees (interfaces, routes) and by a listener on
127.0.0.1 in this test's own namespace: nothing else is ever contacted.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading

import pytest

from evoforge.evaluators.location import evaluators_dir
from evoforge.evaluators.types import Status
from evoforge.sandbox import EvaluationJob, ProcessSandbox
from fakes.tasks import IMPORTING_EVALUATOR

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: uids per job, mounts and cgroups")

# The evaluator imports the candidate in-process (as old-style evaluators do) and calls run().
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
        folder.chmod(0o755)
        (folder / "evaluator.py").write_text(textwrap.dedent(source))
        (folder / "answers.txt").write_text("the held-out answer key\n")
        return str(folder)
    return make


def _job(task_dir: str, program: str, **kwargs) -> EvaluationJob:
    kwargs.setdefault("timeout_s", 30)
    return EvaluationJob(program_text=textwrap.dedent(program), task_dir=task_dir, **kwargs)


def _checkout() -> str | None:
    here = os.path.dirname(evaluators_dir())
    return here if os.path.exists(os.path.join(here, ".git")) else None


def test_a_candidate_cannot_rewrite_a_helper_the_evaluator_trusts(sandbox, task):
    """speedup_kernel's echo program sat in the shared workdir: a candidate rewrote it at import."""
    folder = task("""
        from pathlib import Path
        from evoforge.evaluators.candidate import CandidateSession

        def evaluate(program_path):
            helper = Path("helper_program.py").resolve()
            helper.write_text("def answer():\\n    return 'honest'\\n")
            with CandidateSession(program_path, timeout_s=20) as candidate:
                candidate.call("noop")
            with CandidateSession(str(helper), timeout_s=20) as trusted:
                got = trusted.call("answer")
            return {"score": float(got == "honest"), "artifacts": {"got": got}}
    """)
    result = sandbox.run(_job(folder, """
        import glob, os
        for folder in {os.path.dirname(os.path.abspath(__file__)), os.getcwd(), *glob.glob("/tmp/evoforge-*")}:
            try:
                with open(os.path.join(folder, "helper_program.py"), "w") as fh:
                    fh.write("def answer():\\n    return 'forged'\\n")
            except OSError:
                pass

        def noop():
            return None
    """))
    assert result.status == Status.OK, result
    assert result.score == 1.0, result.artifacts


def test_outputs_cached_by_one_candidate_process_are_gone_in_the_next(sandbox, task):
    """optimizer_update_rule replays calls in a fresh process; a cache in the workdir defeated it."""
    folder = task("""
        from evoforge.evaluators.candidate import CandidateSession

        def evaluate(program_path):
            answers = []
            for _ in range(2):
                with CandidateSession(program_path, timeout_s=20) as candidate:
                    answers.append(candidate.call("step"))
            return {"score": float(answers == ["fresh", "fresh"]), "artifacts": {"answers": repr(answers)}}
    """)
    result = sandbox.run(_job(folder, """
        import os
        PLACES = [os.getcwd(), os.path.dirname(os.path.abspath(__file__)), "/tmp", "/dev/shm"]

        def step():
            for place in PLACES:
                if os.path.exists(os.path.join(place, "cache.txt")):
                    return "cached"
            for place in PLACES:
                try:
                    with open(os.path.join(place, "cache.txt"), "w") as fh:
                        fh.write("1")
                except OSError:
                    pass
            return "fresh"
    """))
    assert result.status == Status.OK, result
    assert result.score == 1.0, result.artifacts


@pytest.mark.skipif(_checkout() is None, reason="evoforge is not running from a git checkout here")
def test_neither_evaluator_side_nor_candidate_reads_git_history_task_folder_or_home(sandbox, task):
    """bin_packing_or's training instances were readable from the checkout's .git."""
    import sys

    git_head = os.path.join(_checkout(), ".git", "HEAD")
    home = os.path.realpath(os.path.expanduser("~"))
    # What the home holds beyond the interpreter (which may live there, and stays readable).
    needed = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)]
    private = [os.path.join(home, n) for n in sorted(os.listdir(home)) if not any(
        p == os.path.join(home, n) or p.startswith(os.path.join(home, n) + "/") for p in needed)][:5]
    folder = task("""
        import os
        from evoforge.evaluators.candidate import run_candidate

        def evaluate(program_path):
            here = os.path.dirname(os.path.abspath(__file__))
            seen = run_candidate(program_path, "peek", [GIT, os.path.join(here, "answers.txt"), *HOME], timeout_s=20)
            mine = [p for p in (GIT, *HOME) if _readable(p)]
            return {"score": float(not seen and not mine),
                    "artifacts": {"candidate": repr(seen), "evaluator": repr(mine)}}

        def _readable(path):
            try:
                os.listdir(path) if os.path.isdir(path) else open(path).read()
                return bool(os.listdir(path)) if os.path.isdir(path) else True
            except OSError:
                return False
    """.replace("GIT", repr(git_head)).replace("HOME", repr(private)))
    result = sandbox.run(_job(folder, """
        import os

        def peek(paths):
            seen = []
            for path in paths:
                try:
                    if os.path.isdir(path):
                        if os.listdir(path):
                            seen.append(path)
                    else:
                        open(path).read()
                        seen.append(path)
                except OSError:
                    pass
            return seen
    """))
    assert result.status == Status.OK, result
    assert result.score == 1.0, result.artifacts


def test_a_module_planted_for_the_next_candidate_process_never_runs_unconfined(sandbox, task):
    """The nested interpreter started as ``python -c`` in the writable workdir imported a planted
    ``subprocess.py`` before confining itself, and read the hidden task folder."""
    folder = task("""
        from evoforge.evaluators.candidate import CandidateSession

        def evaluate(program_path):
            with CandidateSession(program_path, timeout_s=20) as first:
                first.call("plant")
            with CandidateSession(program_path, timeout_s=20) as second:
                loot = second.call("loot")
            return {"score": float(loot is None), "artifacts": {"loot": repr(loot)}}
    """)
    result = sandbox.run(_job(folder, """
        import os
        PLANT = ("import sys, os\\n"
                 "for hidden in (sys.argv[5] if len(sys.argv) > 5 else '').split(os.pathsep):\\n"
                 "    try:\\n"
                 "        open('stolen.txt', 'w').write(open(os.path.join(hidden, 'answers.txt')).read())\\n"
                 "    except OSError:\\n"
                 "        pass\\n")

        def plant():
            for folder in {os.getcwd(), os.path.dirname(os.path.abspath(__file__))}:
                for name in ("subprocess.py", "usercustomize.py", "sitecustomize.py"):
                    try:
                        with open(os.path.join(folder, name), "w") as fh:
                            fh.write(PLANT)
                    except OSError:
                        pass

        def loot():
            for folder in {os.getcwd(), os.path.dirname(os.path.abspath(__file__))}:
                try:
                    return open(os.path.join(folder, "stolen.txt")).read()
                except OSError:
                    pass
            return None
    """))
    assert result.status == Status.OK, result
    assert result.score == 1.0, result.artifacts


SHM_JOB = """
    import ctypes, os
    KEY = 0x5EED1234

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        seen = [n for n in os.listdir("/dev/shm") if n.startswith("evoforge-leak")]
        old = libc.shmget(KEY, 0, 0)
        try:
            with open("/dev/shm/evoforge-leak", "wb") as fh:
                fh.write(b"x" * 4096)
        except OSError:
            pass
        segment = libc.shmget(KEY, 4096, 0o1000 | 0o666)     # IPC_CREAT
        return {"score": 1.0, "leaked_files": float(len(seen)), "leaked_segment": float(old >= 0),
                "created_segment": float(segment >= 0)}
"""


@ROOT_ONLY
def test_dev_shm_files_and_sysv_segments_do_not_outlive_a_job(sandbox, task):
    folder = task()
    first = sandbox.run(_job(folder, SHM_JOB))
    second = sandbox.run(_job(folder, SHM_JOB))
    assert first.status == second.status == Status.OK, (first, second)
    assert first.metrics["created_segment"] == 1.0
    assert second.metrics["leaked_files"] == 0.0 and second.metrics["leaked_segment"] == 0.0, second.metrics
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("evoforge-leak")]
    with open("/proc/sysvipc/shm") as fh:
        assert f"{0x5EED1234:d}" not in fh.read().split()


@ROOT_ONLY
def test_four_children_of_400_mb_do_not_pass_a_1_gb_job_limit(sandbox, task):
    """memory_mb was a per-process RLIMIT_AS; the job's cgroup counts all its processes together.
    (The issue's 4 x 700 MB against 1 GB, scaled down for a shared test machine.)"""
    result = sandbox.run(_job(task(), """
        import os, time

        def run():
            r, w = os.pipe()
            kids = []
            for _ in range(4):
                pid = os.fork()
                if pid == 0:
                    block = b"\\x01" * (400 * 1024 * 1024)      # touched: resident, not just reserved
                    os.write(w, b"+")
                    time.sleep(5)
                    os._exit(0)
                kids.append(pid)
            os.close(w)
            held, deadline = 0, time.monotonic() + 8
            while time.monotonic() < deadline and held < 4:
                chunk = os.read(r, 16)
                if not chunk:
                    break
                held += len(chunk)
            return {"score": float(held)}
    """, memory_mb=1024, timeout_s=30))
    assert result.status == Status.OOM or (result.score is not None and result.score < 4), result


@ROOT_ONLY
def test_processes_held_by_one_server_s_job_do_not_starve_another_server_s_job(task):
    """Two runs on one host: each fork server counted uids from the same base, so both first jobs
    shared a uid and RLIMIT_NPROC; the holder starved the other (recorded as ``error``)."""
    folder = task()
    holder = _job(folder, """
        import os, time
        def run():
            children = 0
            try:
                while children < 100:
                    if os.fork() == 0:
                        time.sleep(4)
                        os._exit(0)
                    children += 1
            except OSError:
                pass
            time.sleep(3)
            return {"score": 1.0, "uid": os.getuid()}
    """, max_processes=12)
    spawner = _job(folder, """
        import os, time
        def run():
            time.sleep(1.0)
            started = 0
            for _ in range(6):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
                started += 1
            return {"score": float(started), "uid": os.getuid()}
    """, max_processes=12)
    with ProcessSandbox() as first, ProcessSandbox() as second:
        assert first.server_info["ready"] and second.server_info["ready"]   # both up before the race
        outcome = {}
        threads = [threading.Thread(target=lambda k=k, b=b, j=j: outcome.__setitem__(k, b.run(j)))
                   for k, b, j in (("holder", first, holder), ("spawner", second, spawner))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert outcome["spawner"].status == Status.OK and outcome["spawner"].score == 6.0, outcome["spawner"]
    assert outcome["holder"].metrics["uid"] != outcome["spawner"].metrics["uid"]


@ROOT_ONLY
def test_no_capability_reads_etc_shadow(sandbox, task):
    """With the interpreter under a 0700 /root the evaluator and its candidates kept CAP_DAC_READ_SEARCH."""
    folder = task("""
        from evoforge.evaluators.candidate import run_candidate

        def evaluate(program_path):
            theirs = run_candidate(program_path, "shadow", timeout_s=20)
            try:
                mine = open("/etc/shadow").read()[:4]
            except OSError as exc:
                mine = None
            return {"score": float(theirs is None and mine is None),
                    "artifacts": {"candidate": repr(theirs), "evaluator": repr(mine)}}
    """)
    result = sandbox.run(_job(folder, """
        def shadow():
            try:
                return open("/etc/shadow").read()[:4]
            except OSError:
                return None
    """))
    assert result.status == Status.OK, result
    assert result.score == 1.0, result.artifacts


def test_a_candidate_has_no_network_and_cannot_reach_a_loopback_listener_of_the_host(sandbox, task):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    folder = task("""
        from evoforge.evaluators.candidate import run_candidate

        def evaluate(program_path):
            seen = run_candidate(program_path, "look", PORT, timeout_s=20)
            return {"score": 1.0, "artifacts": {k: repr(v) for k, v in seen.items()}}
    """.replace("PORT", str(port)))
    try:
        result = sandbox.run(_job(folder, """
            import socket

            def look(port):
                with open("/proc/net/dev") as fh:
                    interfaces = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
                with open("/proc/net/route") as fh:
                    routes = len(fh.readlines()[1:])
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    reached = True
                except OSError:
                    reached = False
                return {"interfaces": interfaces, "routes": routes, "reached": reached}
        """))
    finally:
        listener.close()
    assert result.status == Status.OK, result
    assert result.artifacts["interfaces"] in ("['lo']", "[]"), result.artifacts
    assert result.artifacts["routes"] == "0" and result.artifacts["reached"] == "False", result.artifacts


@ROOT_ONLY
def test_namespace_and_mount_calls_fail_for_a_candidate(sandbox, task):
    folder = task("""
        from evoforge.evaluators.candidate import run_candidate

        def evaluate(program_path):
            return {"score": 1.0, "metrics": run_candidate(program_path, "escape", timeout_s=20)}
    """)
    result = sandbox.run(_job(folder, """
        import ctypes

        def escape():
            libc = ctypes.CDLL(None, use_errno=True)
            return {"unshare_user": float(libc.unshare(0x10000000)),
                    "mount": float(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
                    "keyctl": float(libc.syscall(250 if ctypes.sizeof(ctypes.c_void_p) == 8 else 0, 0, 0, 0))}
    """))
    assert result.status == Status.OK, result
    assert result.metrics["unshare_user"] == -1.0 and result.metrics["mount"] == -1.0, result.metrics


def test_the_sandbox_names_the_protections_it_holds(sandbox):
    from evoforge.sandbox.protections import missing_line

    report = sandbox.protections()
    assert {"root", "uid per job", "cgroups", "mount namespaces", "landlock", "seccomp"} <= report.keys()
    line = missing_line(report)
    assert line is None or ("\n" not in line and line.startswith("process sandbox: no "))
    if os.geteuid() == 0:
        assert report["uid per job"] and report["mount namespaces"], report
