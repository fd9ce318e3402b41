"""OpenEvolve-format folders, written here (none copied from OpenEvolve), through the real process sandbox.

Each test builds the folder it needs: the ``openevolve.evaluation_result`` import, OpenEvolve's cascade,
the environment allow-list, the working directory, the limits, the command line, nothing written into
the folder, and descriptors that separate constant-tuning children.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.archive.islands import ArchiveConfig, DescriptorSpec, IslandArchives
from evoforge.engine import openevolve_compat
from evoforge.engine.features import builtin_features
from evoforge.engine.session import evaluate_file
from evoforge.engine.startup import job_for
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.limits import cpu_limit_s

REPO = Path(__file__).resolve().parents[2]
PROGRAM = """import math

# EVOLVE-BLOCK-START
STEP = 0.5
DECAY = 0.9


def solve():
    x = 3.0
    for _ in range(20):
        x -= STEP * 2 * x
        x *= DECAY
    return x
# EVOLVE-BLOCK-END
"""


def make_folder(root: Path, evaluator: str, config: str | None = None, name: str = "oe_task",
                files: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "initial_program.py").write_text(PROGRAM)
    (folder / "evaluator.py").write_text(evaluator)
    if config is not None:
        (folder / "config.yaml").write_text(config)
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- 1. openevolve.evaluation_result without the package -------------------------------------------

SHIM_EVALUATOR = """from openevolve.evaluation_result import EvaluationResult


def evaluate(program_path):
    result = EvaluationResult(metrics={"combined_score": 0.7, "speed": 2.0},
                              artifacts={"log": b"bytes are text", "note": "ok"})
    assert result.has_artifacts() and result.get_artifact_size("log") == 14
    assert EvaluationResult.from_dict({"a": 1.0}).to_dict() == {"a": 1.0}
    return result
"""


@pytest.mark.skipif(importlib.util.find_spec("openevolve") is not None,
                    reason="the openevolve package is installed here: its EvaluationResult would be used")
def test_evaluation_result_imports_without_the_package_and_converts(tmp_path):
    folder = make_folder(tmp_path, SHIM_EVALUATOR, "evaluator:\n  cascade_evaluation: false\n")
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok", result.artifacts
    assert result.score == pytest.approx(0.7) and result.metrics["speed"] == 2.0
    assert result.artifacts["log"] == "bytes are text" and result.artifacts["note"] == "ok"


def test_shim_is_not_importable_for_evoforge_tasks(tmp_path):
    folder = make_folder(tmp_path, SHIM_EVALUATOR)
    (folder / "task.toml").write_text('name = "ours"\n')
    if importlib.util.find_spec("openevolve") is not None:
        pytest.skip("the openevolve package is installed here")
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "error" and "No module named 'openevolve'" in result.artifacts["error"]


def test_errors_in_the_evaluator_name_evaluator_py_never_a_generated_file(tmp_path):
    folder = make_folder(tmp_path, "from openevolve.evaluation_result import EvaluationResult\n"
                                   "def evaluate(program_path):\n    return 1 / 0\n")
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "error"
    error = result.artifacts["error"]
    assert "evaluator.py" in error and "ZeroDivisionError" in error and ".evoforge" not in error


# -- 2. OpenEvolve's cascade -----------------------------------------------------------------------

CASCADE_EVALUATOR = """import os

def evaluate_stage1(program_path):
    return {"quick": float(os.environ.get("STAGE1", "0.9"))}

def evaluate_stage2(program_path):
    if os.environ.get("STAGE2") == "crash":
        raise RuntimeError("stage two broke")
    return {"full": 0.7}

def evaluate(program_path):
    raise AssertionError("OpenEvolve never calls evaluate() after the stages")
"""


@pytest.mark.parametrize("stage1, expected_stage, expected_score", [
    ("0.2", 1, 0.2),            # below the threshold: kept as the program's result, not invalid
    ("0.9", 2, 0.8),            # passes: stage 2 merged, no combined_score -> the mean, no evaluate()
])
def test_cascade_keeps_below_threshold_results_and_never_calls_evaluate_after(tmp_path, stage1, expected_stage,
                                                                               expected_score):
    # cascade_evaluation is not written: OpenEvolve's default (on) applies.
    folder = make_folder(tmp_path, CASCADE_EVALUATOR, "evoforge:\n  pass_env: [STAGE1]\n"
                                                     "evaluator:\n  cascade_thresholds: [0.5]\n")
    result = evaluate_file(str(folder), folder / "initial_program.py", environ={"STAGE1": stage1},
                           pass_env=["STAGE1"])
    assert result.status == "ok", result.artifacts
    assert result.stage == expected_stage and result.score == pytest.approx(expected_score)


def test_cascade_defaults_and_switch_off(tmp_path):
    task = load_task(make_folder(tmp_path, CASCADE_EVALUATOR))
    assert task.cascade_thresholds == (0.5, 0.75, 0.9) and task.openevolve["cascade"] is True
    off = make_folder(tmp_path, CASCADE_EVALUATOR, "evaluator:\n  cascade_evaluation: false\n", name="off")
    result = evaluate_file(str(off), off / "initial_program.py")
    assert result.status == "error" and "never calls evaluate()" in result.artifacts["error"]


def test_a_crash_in_a_later_stage_keeps_the_earlier_result(tmp_path):
    folder = make_folder(tmp_path, CASCADE_EVALUATOR, "evoforge:\n  pass_env: [STAGE2]\n"
                                                     "evaluator:\n  cascade_thresholds: [0.5]\n")
    result = evaluate_file(str(folder), folder / "initial_program.py", environ={"STAGE2": "crash"})
    assert result.status == "ok" and result.stage == 1
    assert result.metrics["stage2_passed"] == 0.0 and result.score == pytest.approx((0.9 + 0.0) / 2)
    assert "stage two broke" in result.artifacts["stage2_error"]


# -- 3. environment allow-list and working directory -----------------------------------------------

ENV_EVALUATOR = """import json, os

def evaluate(program_path):
    names = sorted(k for k in os.environ if k in ("DATA_ROOT", "RICH_FEEDBACK", "OPENAI_API_KEY", "UNNAMED_SECRET"))
    data = open("data/points.txt").read().split()          # relative to the task folder
    try:
        with open("written.txt", "w") as fh:
            fh.write("x")
        wrote = "yes"
    except OSError as exc:
        wrote = type(exc).__name__
    return {"combined_score": float(len(data)),
            "artifacts": {"env": json.dumps({k: os.environ[k] for k in names}), "wrote": wrote, "cwd": os.getcwd()}}
"""


def test_only_named_variables_reach_the_evaluator_and_cwd_is_a_read_only_task_view(tmp_path, monkeypatch):
    folder = make_folder(tmp_path, ENV_EVALUATOR, "evoforge:\n  pass_env: [DATA_ROOT]\n",
                         files={"data/points.txt": "1 2 3\n"})
    before = listing(folder)
    for name, value in (("DATA_ROOT", "/data/root"), ("RICH_FEEDBACK", "1"),
                        ("OPENAI_API_KEY", "sk-test-never-leaks"), ("UNNAMED_SECRET", "hunter2")):
        monkeypatch.setenv(name, value)
    result = evaluate_file(str(folder), folder / "initial_program.py", pass_env=["RICH_FEEDBACK"])
    assert result.status == "ok", result.artifacts
    assert json.loads(result.artifacts["env"]) == {"DATA_ROOT": "/data/root", "RICH_FEEDBACK": "1"}
    assert result.score == 3.0                                     # the relative data file was read
    assert Path(result.artifacts["cwd"]).resolve() == folder.resolve() or result.artifacts["cwd"].endswith(".task")
    assert result.artifacts["wrote"] != "yes" and listing(folder) == before   # nothing written there


def test_task_toml_pass_env_and_unset_env_flag(tmp_path, monkeypatch):
    folder = make_folder(tmp_path, "import os\ndef evaluate(p):\n"
                                   "    names = sorted(k for k in os.environ if k.startswith('OE_'))\n"
                                   "    return {'score': 1.0, 'artifacts': {'env': ','.join(names)}}\n")
    (folder / "task.toml").write_text('name = "ours"\n[sandbox]\npass_env = ["OE_DATA"]\n')
    monkeypatch.setenv("OE_DATA", "x")
    monkeypatch.setenv("OE_OTHER", "y")
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok" and result.artifacts["env"] == "OE_DATA"
    with pytest.raises(ConfigError, match="--env OE_MISSING: not set"):
        evaluate_file(str(folder), folder / "initial_program.py", pass_env=["OE_MISSING"])
    (folder / "task.toml").write_text('[sandbox]\npass_env = "OE_DATA"\n')
    with pytest.raises(ConfigError, match=r"task.toml: \[sandbox\] pass_env"):
        load_task(folder)


# -- 4. limits ---------------------------------------------------------------------------------------

LIMIT_EVALUATOR = """import resource

def evaluate(program_path):
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)
    address, _ = resource.getrlimit(resource.RLIMIT_AS)
    return {"combined_score": 1.0, "cpu_limit": -1.0 if soft == resource.RLIM_INFINITY else float(soft),
            "as_mb": -1.0 if address == resource.RLIM_INFINITY else address / 2 ** 20}
"""


def test_limits_come_from_config_yaml_and_the_cpu_limit_is_off_by_default(tmp_path):
    folder = make_folder(tmp_path, LIMIT_EVALUATOR,
                         "evaluator:\n  timeout: 7\n  memory_limit_mb: 1536\n  cascade_evaluation: false\n")
    task = load_task(folder)
    assert (task.limits.timeout_s, task.limits.memory_mb, task.limits.cpu_s) == (7.0, 1536, 0.0)
    assert cpu_limit_s(job_for(task, PROGRAM)) is None
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok", result.artifacts
    # No CPU-time limit: threads summing CPU seconds are ended by the wall clock only.
    assert result.metrics["cpu_limit"] == -1.0 and result.metrics["as_mb"] == 1536.0
    capped = make_folder(tmp_path, LIMIT_EVALUATOR, "evoforge:\n  cpu_s: 30\n", name="capped")
    result = evaluate_file(str(capped), capped / "initial_program.py")
    assert result.metrics["cpu_limit"] == 30.0


def test_task_toml_cpu_s_zero_is_no_limit(tmp_path):
    folder = make_folder(tmp_path, LIMIT_EVALUATOR.replace("combined_score", "score"))
    (folder / "task.toml").write_text("[limits]\ncpu_s = 0\ntimeout_s = 9\n")
    result = evaluate_file(str(folder), folder / "initial_program.py")
    assert result.status == "ok" and result.metrics["cpu_limit"] == -1.0
    (folder / "task.toml").write_text("[limits]\ntimeout_s = 9\n")
    assert evaluate_file(str(folder), folder / "initial_program.py").metrics["cpu_limit"] == 10.0


# -- 5 and 6. command line, language, the notice, a read-only folder -------------------------------

def test_language_other_than_python_is_one_clear_line(tmp_path):
    folder = make_folder(tmp_path, CASCADE_EVALUATOR, "language: rust\n")
    plain = make_folder(tmp_path, CASCADE_EVALUATOR, name="plain")
    with pytest.raises(ConfigError, match=r"config.yaml: language 'rust' is not supported \(supported: python\)"):
        load_task(folder)
    (tmp_path / "prog.rs").write_text("fn main() {}\n")
    with pytest.raises(ConfigError, match="language 'rs' is not supported"):
        load_task(plain, program=tmp_path / "prog.rs", evaluator=plain / "evaluator.py")


def test_notice_names_mapped_and_ignored_keys_but_not_the_evaluators_own_sections(tmp_path, capsys):
    openevolve_compat._noticed.clear()
    folder = make_folder(tmp_path, CASCADE_EVALUATOR, "max_iterations: 3\nlog_level: INFO\n"
                         "database:\n  num_islands: 2\n  population_size: 40\n"
                         "algotune:\n  num_trials: 5\n  data_dir: x\n")
    load_task(folder)
    notice = capsys.readouterr().err.strip()
    assert notice.count("\n") == 0
    assert "mapped config.yaml keys: database.num_islands, max_iterations" in notice
    assert "ignored config.yaml keys: database.population_size, log_level" in notice
    assert "algotune" not in notice


@pytest.mark.slow
def test_openevolve_command_line_with_any_paths_and_a_read_only_folder(tmp_path):
    folder = make_folder(tmp_path, CASCADE_EVALUATOR.replace('"0.9"', '"0.6"'), name="evaluators")
    (folder / "initial_program.py").unlink()
    programs = tmp_path / "programs"
    programs.mkdir()
    (programs / "seed_program.py").write_text(PROGRAM)
    config = tmp_path / "config_phase_1.yaml"
    config.write_text("max_iterations: 4\nrandom_seed: 7\nevaluator:\n  cascade_thresholds: [0.5, 0.9]\n")
    before = listing(folder)
    os.chmod(folder, 0o555)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "evoforge", "run", str(programs / "seed_program.py"), str(folder / "evaluator.py"),
             "--config", str(config), "--llm", "offline", "--quiet", "--concurrency", "1",
             "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=600)
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 0, done.stderr
    assert listing(folder) == before
    assert "mapped config_phase_1.yaml keys: evaluator.cascade_thresholds, max_iterations, random_seed" in done.stderr
    from evoforge.archive import Run
    with Run.open(tmp_path / "run") as run:
        assert run.config["iterations"] == 4 and run.config["seed"] == 7
        first = run.program(1)
        # stage 1 (0.6) passes 0.5; stage 2 merged: mean(0.6, 0.7) = 0.65 < 0.9 -> the final result
        assert first.status == "ok" and first.score == pytest.approx(0.65)
        assert run.descriptor_names == ["complexity", "diversity"]
    import sqlite3
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    assert not [r for (r,) in conn.execute("SELECT artifacts FROM programs WHERE status = 'rejected'") if "#-1" in r]
    assert conn.execute("SELECT stage FROM programs WHERE id = 1").fetchone() == (2,)
    conn.close()
    resumed = subprocess.run([sys.executable, "-m", "evoforge", "resume", str(tmp_path / "run"), "--iterations", "1",
                              "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stderr           # the stored PROGRAM EVALUATOR --config load again
    bad = subprocess.run([sys.executable, "-m", "evoforge", "run", str(programs / "seed_program.py"),
                          str(folder / "nope.py"), "--llm", "offline"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope.py" in bad.stderr


def test_eval_takes_an_evaluator_file_a_config_and_env_flags(tmp_path, monkeypatch, capsys):
    from evoforge.engine.cli import main

    folder = make_folder(tmp_path, CASCADE_EVALUATOR, name="evaluators")
    config = tmp_path / "configs" / "phase_2.yaml"
    config.parent.mkdir()
    config.write_text("evaluator:\n  cascade_thresholds: [0.5]\n")
    other = tmp_path / "elsewhere.py"
    other.write_text(PROGRAM)
    monkeypatch.setenv("STAGE1", "0.3")
    assert main(["eval", str(folder / "evaluator.py"), str(other), "--config", str(config), "--env", "STAGE1",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["stage"], result["score"]) == ("ok", 1, 0.3)
    monkeypatch.delenv("STAGE1")
    assert main(["eval", str(folder / "evaluator.py"), str(other), "--config", str(config), "--env", "STAGE1"]) == 2
    assert "--env STAGE1: not set" in capsys.readouterr().err


# -- 7. descriptors that separate constant-tuning children ------------------------------------------

def _cells(descriptors, codes):
    archive = IslandArchives(descriptors=descriptors, config=ArchiveConfig(islands=1), seed=0)
    names = [d.name for d in descriptors]
    return {archive.cell_of([builtin_features(c, names)[n] for n in names]) for c in codes}


def test_constant_tuning_children_land_in_different_cells(tmp_path):
    children = [PROGRAM.replace("STEP = 0.5", f"STEP = {0.05 * k:.2f}") for k in range(1, 13)]
    assert len(set(children)) == 12
    old = (DescriptorSpec(name="code_length", low=0.0, high=200.0, bins=10),
           DescriptorSpec(name="ast_nodes", low=0.0, high=2000.0, bins=10))
    assert len(_cells(old, children)) == 1                       # the old default: one elite per island
    task = load_task(make_folder(tmp_path, CASCADE_EVALUATOR))
    assert [d.name for d in task.descriptors] == ["complexity", "diversity"]
    assert len(_cells(task.descriptors, children)) >= 6          # 12 independent draws over 10 cells
    # Layout and comments do not move a program; the hash is stable across processes.
    reformatted = PROGRAM.replace("STEP = 0.5", "STEP  =  0.5   # tuned")
    assert builtin_features(reformatted, ["diversity"])["diversity"] == builtin_features(PROGRAM, ["diversity"])[
        "diversity"]
    again = subprocess.run([sys.executable, "-c", "import sys; from evoforge.engine.features import diversity; "
                            "print(repr(diversity(sys.stdin.read())))"], input=PROGRAM, capture_output=True,
                           text=True, check=True)
    assert float(again.stdout) == builtin_features(PROGRAM, ["diversity"])["diversity"]
