"""The wheel, as a user gets it: one top-level package (`evoforge`) with its data, working from a folder
that has its own engine.py, prompts.py, tasks.py and archive.py.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps --no-build-isolation``,
so setuptools and wheel come from this environment) and installed with ``--no-deps`` into a fresh
virtual environment. Its dependencies come from this project's environment through a ``.pth`` file
naming our site-packages: a path added that way is appended to ``sys.path`` but the ``.pth`` files
inside it are not processed, so the editable install's import finder does not leak in (checked below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The folders that install as evoforge.<folder> (pyproject.toml's package-dir mapping).
FOLDERS = ("evoforge", "engine", "evaluators", "prompts", "archive", "sandbox", "tasks")
SHADOWS = ("engine", "prompts", "tasks", "archive", "evaluators", "sandbox")

pytestmark = pytest.mark.slow


def _build_tools_missing() -> str | None:
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError as exc:
        return f"building the wheel offline needs setuptools>=77 and wheel in this environment ({exc})"
    if int(setuptools.__version__.split(".")[0]) < 77:
        return f"pyproject.toml needs setuptools>=77 to build, this environment has {setuptools.__version__}"
    return None


def _run(cmd, *, cwd, env=None, timeout=600):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory) -> Path:
    missing = _build_tools_missing()
    if missing:
        pytest.skip(missing)
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-q", "-w", out], cwd=source)
    (wheel,) = out.glob("evoforge-*.whl")
    return wheel


@pytest.fixture(scope="module")
def fresh_env(wheel_file, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root).stdout.strip())
    before = set(os.listdir(site))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel_file], cwd=root)
    after = set(os.listdir(site))
    # Dependencies (numpy, openai, pandas...) from this project's environment, after our package.
    (site / "_project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # A user's folder whose module names are ours without the prefix; each raises if anything imports it.
    work = root / "notebooks"
    work.mkdir()
    for name in SHADOWS:
        (work / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "OPENAI", "ANTHROPIC"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
    return {"venv": venv, "python": python, "site": site, "added": after - before, "work": work, "env": env}


def test_the_wheel_installs_one_top_level_package_with_its_data(wheel_file, fresh_env):
    with zipfile.ZipFile(wheel_file) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        assert wheel.read(f"{info}/top_level.txt").decode().split() == ["evoforge"]
        record = wheel.read(f"{info}/RECORD").decode().splitlines()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"evoforge", info}
    assert {line.split(",")[0].split("/")[0] for line in record if line} == {"evoforge", info}
    assert "evoforge = evoforge.engine.cli:main" in entry_points
    assert fresh_env["added"] == {"evoforge", info}, fresh_env["added"]

    # Every file of the package folders is in the wheel: code, prompt templates, report templates,
    # the sandbox's Dockerfile and scripts, each task folder with its data.
    listed = subprocess.run(["git", "ls-files", *FOLDERS], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        files = listed.stdout.split()
    else:  # not a git checkout: every file under the folders
        files = [str(p.relative_to(REPO)) for f in FOLDERS for p in (REPO / f).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    expected = {f if f.startswith("evoforge/") else "evoforge/" + f for f in files}
    assert expected - set(names) == set()
    for data in ("evoforge/prompts/system.j2", "evoforge/sandbox/Dockerfile", "evoforge/sandbox/build_image.sh",
                 "evoforge/tasks/circle_packing/task.toml", "evoforge/tasks/circle_packing/initial_program.py"):
        assert data in names
    assert any(n.startswith("evoforge/engine/templates/") and n.endswith(".j2") for n in names)
    assert any("/data/" in n and n.startswith("evoforge/tasks/") for n in names)


def test_the_installed_package_not_the_repository_is_imported(fresh_env):
    code = ("import sys, evoforge, evoforge.engine.cli, evoforge.archive, evoforge.evaluators; "
            "print(sys.modules['evoforge.engine.cli'].__file__); print(evoforge.archive.__file__); "
            "print(any('editable' in type(f).__module__.lower() for f in sys.meta_path)); "
            "print(any('__editable__' in m for m in sys.modules)); print(evoforge.__version__)")
    lines = _run([fresh_env["python"], "-c", code], cwd=fresh_env["work"], env=fresh_env["env"]).stdout.split()
    site = str(fresh_env["site"])
    assert lines[0].startswith(site) and lines[1].startswith(site), lines
    assert lines[2:4] == ["False", "False"], "the editable install's finder leaked into the fresh environment"
    import evoforge

    assert lines[4] == evoforge.__version__


def test_run_show_and_the_notebook_api_from_a_folder_that_shadows_our_names(fresh_env):
    work, env = fresh_env["work"], fresh_env["env"]
    # Proof that the folder's modules would break anything that imported them by the bare name.
    shadowed = subprocess.run([fresh_env["python"], "-c", "import engine"], cwd=work, env=env,
                              capture_output=True, text=True)
    assert shadowed.returncode != 0 and "the user's own engine.py was imported" in shadowed.stderr

    evoforge = fresh_env["venv"] / "bin" / "evoforge"
    done = _run([evoforge, "run", "circle_packing", "--iterations", "20", "--seed", "0", "--quiet", "--out", "r"],
                cwd=work, env=env)
    assert "iterations: 20" in done.stdout
    # `python -m` puts the working folder first on sys.path: the bare names must never be imported.
    shown = _run([fresh_env["python"], "-m", "evoforge", "show", "r", "--json"], cwd=work, env=env)
    summary = json.loads(shown.stdout)
    assert summary, shown.stdout
    notebook = ("import evoforge\n"
                "from evoforge.archive import Run\n"
                "with Run.open('r') as run, evoforge.Run.open('r') as same:\n"
                "    frame = run.programs()\n"
                "    best = run.best()\n"
                "    assert same.best().id == best.id\n"
                "    print(len(frame), (frame.status == 'ok').sum(), best.score, run.meta('task_name'))\n")
    count, ok, best, task = _run([fresh_env["python"], "-c", notebook], cwd=work, env=env).stdout.split()
    assert int(count) == 21 and int(ok) >= 1 and float(best) > 0 and task == "circle_packing"
    assert (work / "r" / "best_program.py").is_file()
