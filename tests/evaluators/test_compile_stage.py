"""The compile stage (task.toml [compile]) as `run_job` runs it: placeholders, compiler errors fed back as
the ``error`` artifact, a compiler that hangs killed at its limit, the seconds it took as a metric."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evoforge.evaluators import Status, run_job
from evoforge.sandbox.job import EvaluationJob

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc); `make test-deps` installs gcc")

# The evaluator runs the binary the compile stage built and scores what it prints.
EVALUATOR = """
import os, subprocess

def evaluate(program_path):
    binary = os.path.splitext(program_path)[0]
    out = subprocess.run([binary], capture_output=True, text=True, timeout=10)
    return {"score": float(out.stdout), "artifacts": {"task_file": open(os.path.join(TASK, "helper.c")).read()[:20]}}

TASK = os.path.dirname(os.path.abspath(__file__))
"""

PROGRAM = """\
#include <stdio.h>
int helper(void);
// EVOLVE-BLOCK-START
int main(void) { printf("%d\\n", helper() * 2); return 0; }
// EVOLVE-BLOCK-END
"""


def _job(tmp_path: Path, program: str, command: tuple[str, ...], timeout_s: float = 30.0) -> EvaluationJob:
    task = tmp_path / "task"
    task.mkdir(exist_ok=True)
    (task / "evaluator.py").write_text(textwrap.dedent(EVALUATOR))
    (task / "helper.c").write_text("int helper(void) { return 21; }\n")
    return EvaluationJob(program_text=program, task_dir=str(task), program_name="program.c",
                         compile_command=command, compile_timeout_s=timeout_s)


def _work(tmp_path: Path) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return str(work)


@needs_cc
def test_the_compile_stage_builds_with_placeholders_and_reports_its_seconds(tmp_path):
    job = _job(tmp_path, PROGRAM, (CC, "-O1", "-o", "{binary}", "{program}", "{task}/helper.c"))
    result = run_job(job, _work(tmp_path))
    assert result.status == Status.OK, result.artifacts
    assert result.score == 42.0 and result.metrics["compile_s"] > 0
    assert (tmp_path / "work" / "program").is_file() and (tmp_path / "work" / "program.c").read_text() == PROGRAM


@needs_cc
def test_a_compiler_error_is_an_error_result_with_the_compilers_messages(tmp_path):
    broken = PROGRAM.replace("helper() * 2", "helper() * undeclared_name")
    result = run_job(_job(tmp_path, broken, (CC, "-o", "{binary}", "{program}", "{task}/helper.c")), _work(tmp_path))
    assert result.status == Status.ERROR
    assert "the compile stage failed (exit 1)" in result.artifacts["error"]
    assert "undeclared_name" in result.artifacts["error"] and "undeclared_name" in result.artifacts["compiler_output"]
    assert str(tmp_path / "work") not in result.artifacts["error"]        # paths shown relative to the work folder


def test_a_compiler_that_hangs_is_killed_with_its_children_and_times_out(tmp_path):
    marker = tmp_path / "grandchild-alive"
    script = f"sleep 30 & echo $! > {marker}; wait"
    result = run_job(_job(tmp_path, PROGRAM, ("sh", "-c", script), timeout_s=0.5), _work(tmp_path))
    assert result.status == Status.TIMEOUT and "ran past its limit of 0.5 s" in result.artifacts["error"]
    pid = int(marker.read_text())
    deadline = time.monotonic() + 10          # SIGKILL lands within moments, even on a loaded machine
    while True:
        try:   # killed: gone, or a zombie waiting for init to reap it
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("gone", "Z", "X") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert state in ("gone", "Z", "X"), f"the compiler's child {pid} survived the compile stage's timeout ({state})"


def test_a_missing_compiler_says_so(tmp_path):
    result = run_job(_job(tmp_path, PROGRAM, ("no-such-compiler-here", "{program}")), _work(tmp_path))
    assert result.status == Status.ERROR
    assert "cannot start 'no-such-compiler-here'" in result.artifacts["error"]


def test_no_compile_stage_leaves_python_tasks_as_they_were(tmp_path):
    task = tmp_path / "task"
    task.mkdir()
    (task / "evaluator.py").write_text("def evaluate(p):\n    return {'score': 1.0}\n")
    result = run_job(EvaluationJob(program_text="x = 1\n", task_dir=str(task)), _work(tmp_path))
    assert result.status == Status.OK and "compile_s" not in result.metrics
    assert sys.executable  # the job ran in this interpreter
