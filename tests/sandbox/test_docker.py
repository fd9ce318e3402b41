"""`DockerSandbox` against a real Docker engine and the real evoforge-sandbox image: what a candidate
does comes back as a scored result, and what the machinery does wrong comes back as `SandboxError`.

Needs a daemon and the image (`sandbox/ci_docker.sh start` sets both up as root); otherwise every
test that needs them skips with the reason. One container per test, so the module takes seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoforge.evaluators.types import SandboxError, Status
from evoforge.sandbox.job import EvaluationJob

docker_sdk = pytest.importorskip("docker", reason="the docker Python SDK is not installed")

from evoforge.sandbox import docker as docker_backend  # noqa: E402  (after the importorskip)
from evoforge.sandbox.docker import CONTAINER_LABEL, DEFAULT_IMAGE, DockerSandbox, docker_available  # noqa: E402
from fakes.tasks import IMPORTING_EVALUATOR  # noqa: E402  (after the importorskip)

AVAILABLE, WHY = docker_available()
needs_docker = pytest.mark.skipif(not AVAILABLE, reason=f"docker sandbox unavailable: {WHY} "
                                  "(as root, `sandbox/ci_docker.sh start` installs and starts one)")
REPO = Path(__file__).resolve().parents[2]

# The evaluator imports the candidate and calls its run(); run() returns a score or a whole dict.
IMPORTING = IMPORTING_EVALUATOR


@pytest.fixture(scope="module")
def box():
    if not AVAILABLE:
        pytest.skip(f"docker sandbox unavailable: {WHY}")
    with DockerSandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("docker_task")
    (folder / "evaluator.py").write_text(textwrap.dedent(IMPORTING))
    return str(folder)


def _job(task_dir: str, program: str, **kwargs) -> EvaluationJob:
    kwargs.setdefault("timeout_s", 20)
    kwargs.setdefault("memory_mb", 256)
    return EvaluationJob(program_text=textwrap.dedent(program), task_dir=task_dir, **kwargs)


def _our_containers() -> list:
    client = docker_sdk.from_env()
    try:
        # ours only: another test run may share the daemon
        return client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={os.getpid()}"})
    finally:
        client.close()


# ------------------------------------------------------------------ no daemon needed

def test_unreachable_daemon_is_a_one_line_sandbox_error_naming_the_fix(tmp_path):
    with pytest.raises(SandboxError) as info:
        DockerSandbox(base_url=f"unix://{tmp_path}/no-docker.sock")
    message = str(info.value)
    assert "no Docker engine answers" in message and "--sandbox process" in message
    assert "\n" not in message


def test_root_user_is_refused():
    with pytest.raises(SandboxError, match="non-root"):
        DockerSandbox(user="0:0", base_url="unix:///nonexistent.sock")
    with pytest.raises(SandboxError, match="other than the candidates'"):   # the evaluator never shares it
        DockerSandbox(user=f"{docker_backend.CANDIDATE_UID}:65534", base_url="unix:///nonexistent.sock")


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def test_frame_reader_reads_frames_split_across_chunks():
    frames = docker_backend._FrameReader(cap_bytes=1000)
    stream = (_frame(b"o", b"hello ") + _frame(b"e", b"warn\n") + _frame(b"o", b"world")
              + _frame(b"r", b'{"status": "ok"}'))
    for i in range(0, len(stream), 3):  # every 3 bytes: headers and payloads straddle chunks
        frames.add(stream[i:i + 3])
    assert frames.stdout.text() == "hello world" and frames.stderr.text() == "warn\n"
    assert frames.result == b'{"status": "ok"}' and not frames.corrupt


def test_frame_reader_refuses_what_our_supervisor_never_writes():
    frames = docker_backend._FrameReader(cap_bytes=1000)
    frames.add(b"garbage that is no frame")
    assert frames.corrupt and frames.result is None


# ------------------------------------------------------------------ real containers

@needs_docker
def test_good_program_scores_the_same_as_under_the_process_sandbox(box, task_dir):
    from evoforge.sandbox.process import ProcessSandbox

    job = _job(task_dir, """
        import math
        def run():
            print("computing")
            return {"score": math.fsum(1.0 / k**2 for k in range(1, 2000)), "features": {"x": 0.5}}
    """)
    result = box.run(job)
    with ProcessSandbox() as process:
        expected = process.run(job)
    assert result.status == Status.OK, result.artifacts
    assert result.score == expected.score and result.features == expected.features
    assert result.stdout == "computing\n" == expected.stdout


@needs_docker
def test_runs_as_nobody_without_capabilities_or_privilege_escalation(box, task_dir):
    result = box.run(_job(task_dir, """
        import os
        def run():
            status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
            return {"score": 1.0, "metrics": {"uid": os.getuid(), "gid": os.getgid(),
                    "cap_eff": int(status["CapEff"].strip(), 16),
                    "no_new_privs": int(status["NoNewPrivs"].strip())}}
    """))
    assert result.status == Status.OK, result.artifacts
    assert result.metrics == {"uid": 65534.0, "gid": 65534.0, "cap_eff": 0.0, "no_new_privs": 1.0}


@needs_docker
def test_no_network_only_loopback(box, task_dir):
    """Proved without contacting anything but loopback: what the candidate sees (only ``lo``, no route,
    no IPv6 address but loopback) and a listener on 127.0.0.1 in the host's namespace it cannot reach."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        result = box.run(_job(task_dir, """
            import os, socket
            def run():
                dev = [l.split(":", 1)[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
                routes = open("/proc/net/route").read().splitlines()[1:]
                try:
                    inet6 = [l.split()[-1] for l in open("/proc/net/if_inet6").read().splitlines()]
                except FileNotFoundError:
                    inet6 = []
                try:
                    socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
                    reached = "connected"
                except OSError as exc:
                    reached = type(exc).__name__
                return {"score": 1.0, "artifacts": {
                    "interfaces": ",".join(sorted(dev)),
                    "sys_class_net": ",".join(sorted(os.listdir("/sys/class/net"))),
                    "routes": str(len(routes)), "inet6_not_lo": ",".join(i for i in inet6 if i != "lo"),
                    "reached": reached}}
        """.replace("PORT", str(listener.getsockname()[1]))))
    finally:
        listener.close()
    assert result.status == Status.OK, result.artifacts
    assert result.artifacts == {"interfaces": "lo", "sys_class_net": "lo", "routes": "0", "inet6_not_lo": "",
                                "reached": "ConnectionRefusedError"}


@needs_docker
def test_writes_only_inside_the_tmpfs_workdir(box, task_dir):
    result = box.run(_job(task_dir, """
        import os
        def run():
            outcome = {}
            for path in ("/etc/evil", "/opt/evoforge/task/evil.py", "/opt/evoforge/evaluators/evil.py",
                         "/tmp/evil", "/usr/lib/evil", "inside.txt"):
                try:
                    with open(path, "w") as fh:
                        fh.write("x")
                    outcome[path] = "written"
                except OSError as exc:
                    outcome[path] = type(exc).__name__
            return {"score": 1.0, "artifacts": outcome | {"cwd": os.getcwd()}}
    """))
    assert result.status == Status.OK, result.artifacts
    written = {k for k, v in result.artifacts.items() if v == "written"}
    assert written == {"inside.txt"}
    assert result.artifacts["cwd"] == "/work"
    assert not (Path(task_dir) / "evil.py").exists()


@needs_docker
def test_timeout_kills_and_removes_the_container(box, task_dir):
    result = box.run(_job(task_dir, """
        def run():
            print("spinning", flush=True)
            while True:
                pass
    """, timeout_s=1.5))
    assert result.status == Status.TIMEOUT
    assert "wall-clock limit of 1.5 s" in result.artifacts["error"]
    assert result.stdout == "spinning\n"
    assert _our_containers() == []


@needs_docker
def test_memory_bomb_is_oom(box, task_dir):
    result = box.run(_job(task_dir, """
        def run():
            hog = []
            while True:
                hog.append(bytearray(16 * 1024 * 1024))  # touched: zero-filled pages count
    """, memory_mb=128))
    assert result.status == Status.OOM, result.artifacts
    assert _our_containers() == []


@needs_docker
def test_pids_limit_stops_a_fork_bomb(box, task_dir):
    result = box.run(_job(task_dir, """
        import os, time
        def run():
            started = 0
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                started += 1
            return {"score": float(started)}
    """, max_processes=16))
    assert result.status == Status.OK, result.artifacts
    assert result.score < 16  # the evaluator itself is one of the 16


@needs_docker
def test_output_is_truncated_to_a_tail(box, task_dir):
    result = box.run(_job(task_dir, """
        import sys
        def run():
            for i in range(20000):
                print(f"out line {i}")
                print(f"err line {i}", file=sys.stderr)
            return 2.0
    """, max_output_bytes=1000))
    assert result.status == Status.OK and result.score == 2.0
    for text, stream in ((result.stdout, "out"), (result.stderr, "err")):
        assert len(text) <= 1000
        assert "earlier bytes dropped" in text and text.endswith(f"{stream} line 19999\n")


@needs_docker
def test_candidate_crash_is_an_error_with_the_stderr_tail(box, task_dir):
    result = box.run(_job(task_dir, """
        import os, sys
        def run():
            print("about to die", file=sys.stderr, flush=True)
            os._exit(3)
    """))
    assert result.status == Status.ERROR
    assert "exited with code 3" in result.artifacts["error"] and "about to die" in result.artifacts["error"]


@needs_docker
def test_missing_image_is_a_sandbox_error_naming_it(box, task_dir):
    job = _job(task_dir, "def run():\n    return 1.0\n", extra={"docker_image": "evoforge-no-such-image:404"})
    with pytest.raises(SandboxError, match=r"evoforge-no-such-image:404.*build_image\.sh"):
        box.run(job)


@needs_docker
def test_wait_read_timeout_is_translated(box, monkeypatch):
    """`container.wait` past its timeout raises requests' ReadTimeout (or ConnectionError); we see ours."""
    client = docker_sdk.from_env()
    container = client.containers.create(DEFAULT_IMAGE, ["sleep", "30"], network_mode="none",
                                         labels={CONTAINER_LABEL: "1"})
    try:
        container.start()
        monkeypatch.setattr(docker_backend, "EXIT_GRACE_S", 0.5)
        with pytest.raises(SandboxError, match="did not report the container's exit"):
            box._wait(container)
    finally:
        container.remove(force=True)
        client.close()


@needs_docker
def test_cli_eval_circle_packing_with_docker_matches_process(tmp_path):
    program = REPO / "tasks" / "circle_packing" / "initial_program.py"
    scores = {}
    for sandbox in ("docker", "process"):
        proc = subprocess.run([sys.executable, "-m", "evoforge", "eval", "circle_packing", str(program),
                               "--sandbox", sandbox, "--json"], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["status"] == "ok", data
        scores[sandbox] = data["score"]
    assert scores["docker"] == scores["process"]


def _task_with_toml(folder: Path, toml: str) -> Path:
    folder.mkdir()
    (folder / "task.toml").write_text(textwrap.dedent(toml))
    (folder / "initial_program.py").write_text("def run():\n    return 1.0\n")
    (folder / "evaluator.py").write_text(textwrap.dedent(IMPORTING))
    return folder


def test_task_toml_sandbox_image_is_parsed_and_checked(tmp_path):
    from evoforge.engine.task import load_task
    from evoforge.evaluators.types import ConfigError

    assert load_task(_task_with_toml(tmp_path / "a", "")).sandbox_image == DEFAULT_IMAGE
    task = load_task(_task_with_toml(tmp_path / "b", '[sandbox]\nimage = "registry.example/eval:3"\n'))
    assert task.sandbox_image == "registry.example/eval:3"
    with pytest.raises(ConfigError, match=r"\[sandbox\] image"):
        load_task(_task_with_toml(tmp_path / "c", "[sandbox]\nimage = 3\n"))
    with pytest.raises(ConfigError, match="unknown key 'pull'"):
        load_task(_task_with_toml(tmp_path / "d", "[sandbox]\npull = true\n"))


@needs_docker
def test_task_toml_image_reaches_the_docker_sandbox(tmp_path):
    """`evoforge eval` with a task naming a missing image: exit 1, and the message names that image."""
    folder = _task_with_toml(tmp_path / "t", '[sandbox]\nimage = "evoforge-missing-image:7"\n')
    proc = subprocess.run([sys.executable, "-m", "evoforge", "eval", str(folder),
                           str(folder / "initial_program.py"), "--sandbox", "docker"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "evoforge-missing-image:7" in proc.stderr and "build_image.sh" in proc.stderr


@needs_docker
def test_concurrent_runs_from_several_threads(box, task_dir):
    from concurrent.futures import ThreadPoolExecutor

    jobs = [_job(task_dir, f"def run():\n    return {k}.0\n") for k in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(box.run, jobs))
    assert [r.score for r in results] == [0.0, 1.0, 2.0, 3.0]
    assert _our_containers() == []


# ------------------------------------------------------------------ a candidate that attacks the evaluator (issue 12)

FORGER = """
    import glob, json, os, signal, struct
    FORGED = {"status": "ok", "score": 123456.0}
    def run():
        body = json.dumps(FORGED).encode()   # a forged frame, for any framed channel on stdout
        os.write(1, b"r" + struct.pack(">I", len(body)) + body)
        # What the attack on the old design did: read the result marker from the job file, print a
        # forged result after it, and kill the evaluator so nothing honest follows.
        for path in glob.glob("/opt/evoforge/**/*.json", recursive=True):
            try:
                with open(path) as fh:
                    marker = json.load(fh).get("marker", "")
                os.write(1, (marker + json.dumps(FORGED)).encode())
            except (OSError, ValueError, AttributeError):
                pass
        for target in (os.getppid(), 1, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)
"""


@needs_docker
def test_a_candidate_cannot_forge_a_result_or_kill_the_evaluator(box, task_dir):
    result = box.run(_job(task_dir, FORGER))
    assert result.score != 123456.0 and result.status != Status.OK, result.to_dict()
    assert result.status == Status.ERROR and "without returning a result" in result.artifacts["error"]


@needs_docker
def test_candidate_runs_as_another_uid_than_the_evaluator_and_cannot_read_the_job(box, task_dir):
    result = box.run(_job(task_dir, """
        import glob, os, signal, site, sys
        def run():
            supervisor = os.getppid()
            uids = {line.split()[0]: line.split()[1] for line in open(f"/proc/{supervisor}/status")
                    if line.startswith(("Uid:",))}
            try:
                os.kill(supervisor, 0)
                signal_ok = 1.0
            except PermissionError:
                signal_ok = 0.0
            readable = 0
            for path in glob.glob("/opt/evoforge/in/**", recursive=True) + ["/opt/evoforge/in/job.json"]:
                try:
                    open(path).read() if os.path.isfile(path) else os.listdir(path)
                    readable += 1
                except OSError:
                    pass
            return {"score": 1.0, "metrics": {"uid": os.getuid(), "supervisor_uid": float(uids["Uid:"]),
                    "can_signal_supervisor": signal_ok, "job_paths_readable": float(readable),
                    "user_site": float(bool(site.ENABLE_USER_SITE)), "no_user_site": float(sys.flags.no_user_site),
                    "hash_randomization": float(sys.flags.hash_randomization)}}
    """))
    assert result.status == Status.OK, result.artifacts
    assert result.metrics["uid"] == 65534.0 and result.metrics["supervisor_uid"] == 0.0
    assert result.metrics["can_signal_supervisor"] == 0.0
    assert result.metrics["job_paths_readable"] == 0.0
    assert result.metrics["user_site"] == 0.0 and result.metrics["no_user_site"] == 1.0
    assert result.metrics["hash_randomization"] == 0.0  # PYTHONHASHSEED=0 holds: scores repeat


@needs_docker
def test_no_writable_start_up_hook_for_the_next_interpreter(box, task_dir):
    """The planted start-up code of the attack: user site-packages under HOME, a .pth, usercustomize."""
    result = box.run(_job(task_dir, """
        import os, site, subprocess, sys
        def run():
            planted = []
            home = os.path.expanduser("~")
            targets = [site.getusersitepackages() if isinstance(site.getusersitepackages(), str) else "",
                       os.path.join(home, ".local", "lib"), home]
            for folder in targets:
                for name, text in (("usercustomize.py", "print('HOOKED')"), ("evil.pth", "import os; print('HOOKED')")):
                    try:
                        os.makedirs(folder, exist_ok=True)
                        with open(os.path.join(folder, name), "w") as fh:
                            fh.write(text)
                        planted.append(os.path.join(folder, name))
                    except OSError:
                        pass
            nested = subprocess.run([sys.executable, "-c", "print('nested ran')"], capture_output=True,
                                    text=True, timeout=20, env=dict(os.environ))
            return {"score": 1.0, "artifacts": {"planted": ",".join(planted), "home": home,
                                                "nested": nested.stdout + nested.stderr},
                    "metrics": {"hooked": float("HOOKED" in nested.stdout)}}
    """))
    assert result.status == Status.OK, result.artifacts
    assert result.artifacts["planted"] == "", result.artifacts
    assert result.metrics["hooked"] == 0.0 and "nested ran" in result.artifacts["nested"]


def test_a_result_never_overrides_a_timeout_or_a_kill():
    """Whatever the container printed, the wall clock and the way it ended decide first."""
    job = EvaluationJob(program_text="", task_dir="/nonexistent", timeout_s=2.0, memory_mb=256)
    ok = json.dumps({"status": "ok", "score": 7.0}).encode()

    def reader():
        frames = docker_backend._FrameReader(cap_bytes=1000)
        frames.add(b"r" + len(ok).to_bytes(4, "big") + ok)
        return frames

    assert docker_backend.DockerSandbox._outcome(job, reader(), False, 0, False, "").score == 7.0
    timed_out = docker_backend.DockerSandbox._outcome(job, reader(), True, 0, False, "")
    assert timed_out.status == Status.TIMEOUT and timed_out.score is None
    killed = docker_backend.DockerSandbox._outcome(job, reader(), False, 137, False, "")
    assert killed.status == Status.ERROR and "SIGKILL" in killed.artifacts["error"]
    oom = docker_backend.DockerSandbox._outcome(job, reader(), False, 137, True, "")
    assert oom.status == Status.OOM


@needs_docker
def test_dev_shm_is_private_to_each_container(box, task_dir):
    writer = box.run(_job(task_dir, """
        import os
        def run():
            with open("/dev/shm/left-behind", "w") as fh:
                fh.write("secret")
            return {"score": 1.0, "artifacts": {"shm": ",".join(os.listdir("/dev/shm"))}}
    """))
    reader = box.run(_job(task_dir, """
        import os
        def run():
            return {"score": 1.0, "artifacts": {"shm": ",".join(os.listdir("/dev/shm"))}}
    """))
    assert writer.status == Status.OK and writer.artifacts["shm"] == "left-behind", writer.artifacts
    assert reader.status == Status.OK and reader.artifacts["shm"] == "", reader.artifacts


@needs_docker
def test_a_nested_candidate_reads_neither_the_task_folder_nor_the_job(box, tmp_path):
    """The evaluator reads its task folder; the candidate it starts with run_candidate sees none of it."""
    (tmp_path / "answers.txt").write_text("42")
    (tmp_path / "evaluator.py").write_text(textwrap.dedent("""
        from evoforge.evaluators.candidate import run_candidate
        def evaluate(program_path):
            with open("/opt/evoforge/task/answers.txt") as fh:
                mine = fh.read()
            return {"score": 1.0, "artifacts": {"evaluator_saw": mine,
                                                **run_candidate(program_path, "peek", timeout_s=20)}}
    """))
    result = box.run(_job(str(tmp_path), """
        def peek():
            seen = {}
            for path in ("/opt/evoforge/task/answers.txt", "/opt/evoforge/task/evaluator.py",
                         "/opt/evoforge/in/job.json"):
                try:
                    seen[path] = open(path).read()[:20]
                except OSError as exc:
                    seen[path] = type(exc).__name__
            return seen
    """))
    assert result.status == Status.OK, result.artifacts
    assert result.artifacts["evaluator_saw"] == "42"
    assert {k: v for k, v in result.artifacts.items() if k != "evaluator_saw"} == {
        "/opt/evoforge/task/answers.txt": "PermissionError", "/opt/evoforge/task/evaluator.py": "PermissionError",
        "/opt/evoforge/in/job.json": "PermissionError"}


@needs_docker
def test_a_nested_candidate_runs_under_its_own_uid_and_cannot_list_the_task_or_the_job(box, tmp_path):
    """Issue 12: the candidate run_candidate starts is another uid than its evaluator's, with no
    capabilities, and can neither list nor read the task folder, the job's folder, or the evaluator's
    workdir (where its own program sits); the evaluator still reads its task."""
    (tmp_path / "answers.txt").write_text("42")
    (tmp_path / "evaluator.py").write_text(textwrap.dedent("""
        import os
        from evoforge.evaluators.candidate import run_candidate
        def evaluate(program_path):
            with open("/opt/evoforge/task/answers.txt") as fh:
                mine = fh.read()
            seen = run_candidate(program_path, "peek", os.path.dirname(program_path), timeout_s=20)
            again = run_candidate(program_path, "peek", os.path.dirname(program_path), timeout_s=20)
            return {"score": 1.0, "metrics": {"evaluator_uid": os.getuid(), "candidate_uid": seen.pop("uid"),
                                              "candidate_gid": seen.pop("gid"), "cap_eff": seen.pop("cap_eff"),
                                              "left_over": again["left_over"]},
                    "artifacts": {"evaluator_saw": mine, **{k: str(v) for k, v in seen.items() if k != "left_over"}}}
    """))
    result = box.run(_job(str(tmp_path), """
        import os
        def peek(evaluator_workdir):
            seen = {"uid": os.getuid(), "gid": os.getgid(),
                    "cap_eff": int([l for l in open("/proc/self/status") if l.startswith("CapEff:")][0].split()[1], 16),
                    "left_over": float(os.path.exists(os.path.join(os.path.dirname(os.getcwd()), "planted")))}
            with open(os.path.join(os.path.dirname(os.getcwd()), "planted"), "w") if os.access(
                    os.path.dirname(os.getcwd()), os.W_OK) else open(os.path.join(os.getcwd(), "planted"), "w") as fh:
                fh.write("x")
            for path in ("/opt/evoforge/task", "/opt/evoforge/in", evaluator_workdir):
                try:
                    seen["list " + path] = sorted(os.listdir(path))
                except OSError as exc:
                    seen["list " + path] = type(exc).__name__
            for path in ("/opt/evoforge/task/answers.txt", "/opt/evoforge/task/evaluator.py",
                         "/opt/evoforge/in/job.json", "/opt/evoforge/in/task/answers.txt"):
                try:
                    seen[path] = open(path).read()[:20]
                except OSError as exc:
                    seen[path] = type(exc).__name__
            return seen
    """))
    assert result.status == Status.OK, result.artifacts
    assert result.artifacts.pop("evaluator_saw") == "42"
    assert result.metrics["evaluator_uid"] == 65534.0
    assert result.metrics["candidate_uid"] == result.metrics["candidate_gid"] == float(docker_backend.CANDIDATE_UID)
    assert result.metrics["candidate_uid"] != result.metrics["evaluator_uid"]
    assert result.metrics["cap_eff"] == 0.0
    assert result.metrics["left_over"] == 0.0   # the second candidate does not see the first one's files
    assert set(result.artifacts.values()) == {"PermissionError"}, result.artifacts
    assert len(result.artifacts) == 7
