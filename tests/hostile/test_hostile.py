"""The hostile corpus (``tests/hostile/cases/*.py``): each case through every isolation backend, through
`evoforge eval`, and all of them in one short run. Each ends as the right status, with the engine, the run
directory and the machine unharmed and no process left behind.

Leftover processes are found without psutil: this pytest process makes itself a *child subreaper* for the
module, so anything that escapes the sandbox's own subreapers (a double-forked daemon, a fork-bomb child)
is reparented here, where ``/proc/<pid>/task/*/children`` lists it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoforge.engine.task import load_task
from evoforge.evaluators.types import Status
from evoforge.sandbox.forkserver import children_of
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.registry import make_isolation

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CASES_DIR = HERE / "cases"
MARKER = "sk-hostile-marker-5c1e"          # an "API key" the candidates hunt for
PR_SET_CHILD_SUBREAPER = 36

OK, ERROR, TIMEOUT, OOM = Status.OK, Status.ERROR, Status.TIMEOUT, Status.OOM
EXPECTED = {        # case -> statuses that are right for it
    "infinite_loop": {TIMEOUT},
    "busy_threads": {OK},
    "memory_bomb": {OOM},
    "fork_bomb": {TIMEOUT},
    "double_fork_daemon": {OK},
    "disk_filler": {OK},
    # 2 GiB through two pipes takes about a second alone, but can pass the 4 s limit while 18 hostile
    # cases share 2 cores; either way the output is cut to its tail and nothing else is harmed.
    "stdout_flood": {OK, TIMEOUT},
    "os_exit": {ERROR},
    "sys_exit": {ERROR},
    "sigkill_self": {ERROR},
    "sigkill_parent": {OK},
    "segfault": {ERROR},
    "socket_local": {OK},
    "socket_outside": {OK},
    "read_secrets": {OK},
    "write_outside": {OK},
    "delete_workdir": {OK},
    "signal_handlers": {TIMEOUT},
}
METRICS = {         # case -> metric the case reports, and the value it must have
    "sigkill_parent": ("killed", 0.0),
    "socket_local": ("connected", 0.0),
    "socket_outside": ("connected", 0.0),
    "read_secrets": ("found", 0.0),
    "write_outside": ("damage", 0.0),
}
assert set(EXPECTED) == {p.stem for p in CASES_DIR.glob("*.py")}, "every case needs an expectation"


def _backends() -> list:
    params = [pytest.param("process", id="process")]
    try:
        from evoforge.sandbox.docker import docker_available
        available, why = docker_available()
    except Exception as exc:  # noqa: BLE001 - the docker backend is optional
        available, why = False, f"sandbox.docker not importable: {exc}"
    params.append(pytest.param("docker", id="docker", marks=pytest.mark.skipif(
        not available, reason=f"docker sandbox unavailable: {why}")))
    return params


# ---- the world the candidates attack ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    home = root / "home"
    home.mkdir()
    (home / "secret.txt").write_text(f"OPENAI_API_KEY={MARKER}\n")
    task = root / "task"
    shutil.copytree(HERE / "task", task)
    run_dir = root / "run"
    run_dir.mkdir()
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (42)")
    os.chmod(root, 0o755)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    snapshot = _snapshot([run_dir, task, home])
    yield {"root": root, "home": home, "task": task, "run_dir": run_dir, "port": listener.getsockname()[1],
           "snapshot": snapshot}
    listener.close()


def _snapshot(folders: list[Path]) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _render(name: str, world: dict) -> str:
    source = (CASES_DIR / f"{name}.py").read_text()
    return (source.replace("__PORT__", str(world["port"])).replace("__MARKER__", MARKER)
            .replace("__HOME_SECRET__", str(world["home"] / "secret.txt")).replace("__HOME_DIR__", str(world["home"]))
            .replace("__RUN_DIR__", str(world["run_dir"])).replace("__TASK_DIR__", str(world["task"])))


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Orphans that escape the sandbox come to us; at the end of the module none may remain."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    before = set(children_of(os.getpid()))
    yield
    strays = _wait_for_no_children(before)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    assert not strays, f"processes left behind: {strays}"


def _wait_for_no_children(allowed: set[int], wait_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        strays = [pid for pid in children_of(os.getpid()) if pid not in allowed and not _reap(pid)]
        if not strays or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    described = [f"{pid}: {_cmdline(pid)}" for pid in strays]
    for pid in strays:  # do not leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    return described


def _reap(pid: int) -> bool:
    """True if ``pid`` was a zombie (now reaped) -- a finished process is not a leftover."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def _check(name: str, result, world: dict) -> None:
    detail = (result.status, dict(result.metrics), dict(result.artifacts), result.stderr[-800:])
    assert result.status in EXPECTED[name], detail
    if name in METRICS and result.status == OK:
        metric, value = METRICS[name]
        assert result.metrics[metric] == value, detail
    if name == "disk_filler":
        assert result.metrics["written_mb"] <= 512, detail          # the workdir quota (or the file limit)
    if name == "stdout_flood":
        assert len(result.stdout) <= 128 * 1024 and len(result.stderr) <= 128 * 1024
    assert _snapshot([world["run_dir"], world["task"], world["home"]]) == world["snapshot"], "files were changed"


# ---- each case through each isolation backend -------------------------------------------------------------

@pytest.fixture(scope="module")
def isolation(request, world):
    """The backend, started as if the engine user's home were ``world["home"]`` (its secrets hidden)."""
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(world["home"])
    try:
        box = make_isolation(request.param)
        if hasattr(box, "server_info"):
            _ = box.server_info  # start the fork server now, with this HOME
    finally:
        os.environ["HOME"] = saved if saved is not None else ""
    yield box
    box.close()


@pytest.mark.parametrize("isolation", _backends(), indirect=True)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_through_the_sandbox(isolation, name, world):
    task = load_task(world["task"])
    job = EvaluationJob(program_text=_render(name, world), task_dir=str(task.path),
                        evaluator_file=task.evaluator_file, timeout_s=task.limits.timeout_s,
                        memory_mb=task.limits.memory_mb)
    result = isolation.run(job)
    _check(name, result, world)
    # The sandbox still works after it (and its server process was not killed by the case).
    honest = isolation.run(EvaluationJob(program_text="def run():\n    return 2.0\n", task_dir=str(task.path),
                                         timeout_s=task.limits.timeout_s, memory_mb=task.limits.memory_mb))
    assert honest.status == OK and honest.score == 2.0, honest


# ---- through the command line, with a key in the engine's environment ------------------------------------

def _cli(args: list[str], world: dict, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(OPENAI_API_KEY=MARKER, HOME=str(world["home"]), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "evoforge", *args], cwd=world["root"], env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.parametrize("sandbox", _backends())
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_through_evoforge_eval(name, sandbox, world, tmp_path):
    program = tmp_path / f"{name}.py"
    program.write_text(_render(name, world))
    proc = _cli(["eval", str(world["task"]), str(program), "--json", "--sandbox", sandbox], world)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from evoforge.evaluators.types import EvaluationResult

    _check(name, EvaluationResult.from_dict(json.loads(proc.stdout)), world)
    assert MARKER not in proc.stdout


@pytest.mark.parametrize("sandbox", _backends())
def test_all_cases_in_one_short_run(sandbox, world, fake_openai):
    """A fake LLM proposes every hostile case in turn; the run finishes and records each one right."""
    names = sorted(EXPECTED)
    sources = {name: _render(name, world) for name in names}
    queue = list(names)

    def reply(body):
        if "# Lessons from recent changes" in json.dumps(body):   # the run's written-lessons call, not a proposal
            return "- no lessons"
        name = queue.pop(0) if queue else "infinite_loop"
        return f"```python\n{sources[name]}\n```"

    server = fake_openai(reply)
    out = world["root"] / f"short-run-{sandbox}"
    proc = _cli(["run", str(world["task"]), "--llm", f"openai-compatible:fake@{server.base_url}",
                 "--iterations", str(len(names)), "--concurrency", "2", "--eval-slots", "2", "--quiet",
                 "--sandbox", sandbox, "--out", str(out)], world)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    with sqlite3.connect(out / "run.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT code, status FROM programs WHERE iteration > 0").fetchall()
        outputs = db.execute("SELECT artifacts || stderr || metrics FROM programs").fetchall()
    seen = {}
    for code, status in rows:
        for name, source in sources.items():
            if source.strip() in code:
                seen[name] = status
    assert set(seen) == set(names), sorted(set(names) - set(seen))
    wrong = {name: status for name, status in seen.items() if status not in EXPECTED[name]}
    assert not wrong, wrong
    assert not [text for (text,) in outputs if MARKER in text], "a candidate got hold of the key"
    assert _snapshot([world["run_dir"], world["task"], world["home"]]) == world["snapshot"]
