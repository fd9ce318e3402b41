"""The Python API (evoforge.run / resume / evaluate / evolve_function): short offline runs through the
real fork-server sandbox and SQLite, compared with the command line."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

import evoforge
from evoforge.archive.store import Store
from evoforge.engine.session import plan_run
from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.local import default_slots
from fakes.tasks import write_tiny_task


def rows(run_dir):
    with Store.open(Path(run_dir) / "run.db", readonly=True) as store:
        return [(r.iteration, r.island, r.parent_id, r.code, r.status, r.score) for r in store.candidates()]


def stored_config(run_dir):
    with Store.open(Path(run_dir) / "run.db", readonly=True) as store:
        return store.get_meta("config")


# ---- run / resume / evaluate ----------------------------------------------------------------------

def test_run_gives_what_the_command_line_gives(tmp_path):
    """Same options, same defaults: the same stored config and, with concurrency 1, the same programs."""
    task = write_tiny_task(tmp_path / "tiny")
    run = evoforge.run(task, iterations=8, seed=3, concurrency=1, llm="offline", out=tmp_path / "api")
    with run:
        assert isinstance(run, evoforge.Run)
        assert run.qd_stats()["programs"] == 9 and run.meta("state") == "finished"
        assert (tmp_path / "api" / "best_program.py").read_text() == run.best().code
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", str(task), "--iterations", "8", "--seed", "3",
                           "--concurrency", "1", "--llm", "offline", "--quiet", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert stored_config(tmp_path / "api") == stored_config(tmp_path / "cli")
    assert rows(tmp_path / "api") == rows(tmp_path / "cli")


def test_defaults_are_the_command_lines(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    plan = plan_run(task, environ={})
    assert plan.config.iterations == 100 and plan.config.seed == 0
    assert list(plan.config.llm) == ["offline"] and "offline mutation operator" in plan.note
    assert plan.config.concurrency == 2 * default_slots()
    assert plan_run(task, eval_slots=3, environ={}).config.concurrency == 6
    keyed = plan_run(task, environ={"OPENAI_API_KEY": "sk-test"})
    assert list(keyed.config.llm) == ["openai:gpt-4o-mini"] and keyed.config.concurrency == 8
    assert plan_run(task, llm=["offline", "offline*2"], environ={}).config.llm  # repeated specs, as --llm
    with pytest.raises(ConfigError, match="--sandbox"):
        plan_run(task, sandbox="vm")
    with pytest.raises(ConfigError, match="unknown task"):
        plan_run(tmp_path / "nowhere")


def test_resume_adds_iterations_and_evaluate_matches_the_run(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    evoforge.run(task, iterations=4, concurrency=1, llm="offline", out=tmp_path / "r").close()
    with evoforge.resume(tmp_path / "r", iterations=3) as run:
        assert run.qd_stats()["programs"] == 8
        best = run.best()
    program = tmp_path / "best.py"
    program.write_text(best.code)
    result = evoforge.evaluate(task, program)
    assert isinstance(result, evoforge.EvaluationResult)
    assert result.status == "ok" and result.score == pytest.approx(best.score)


# ---- evolve_function ------------------------------------------------------------------------------

def approx_sine(x):
    """Taylor series of sin around 0, two terms."""
    return x - x ** 3 / 6.0


def sine_score(candidate):
    """Minus the largest error against math.sin on [0, pi] (higher is better)."""
    xs = [math.pi * i / 32 for i in range(33)]
    errors = [abs(candidate(x) - math.sin(x)) for x in xs]
    return {"score": -max(errors), "features": {"mean_error": sum(errors) / len(errors)}}


def patches_sine(x):
    """Hostile: patch math.sin so that an in-process evaluator compares 0 with 0."""
    import math

    math.sin = lambda v: 0.0
    return 0.0


def sine_error(candidate):
    return -max(abs(candidate(math.pi * i / 32) - math.sin(math.pi * i / 32)) for i in range(33))


def test_evolve_function_runs_and_resumes(tmp_path):
    run = evoforge.evolve_function(approx_sine, sine_score, iterations=10, seed=1, concurrency=1, llm="offline",
                                   descriptors=[{"name": "mean_error", "range": [0.0, 1.0], "bins": 8}],
                                   timeout_s=20, out=tmp_path / "r")
    with run:
        programs = run.programs()
        assert len(programs) == 11 and run.descriptor_names == ["mean_error"]
        initial = programs[programs.iteration == 0].iloc[0]
        assert initial.status == "ok"
        assert initial.score == pytest.approx(-max(abs(approx_sine(math.pi * i / 32) - math.sin(math.pi * i / 32))
                                                   for i in range(33)))
        assert run.best().score >= initial.score
        assert "def approx_sine(x):" in run.best().code
    task = tmp_path / "r" / "task"
    evaluator = (task / "evaluator.py").read_text()
    # The candidate is reached through the nested-process API only, never imported here.
    assert "CandidateSession" in evaluator and "exec_module" not in evaluator and "import_module" not in evaluator
    assert "Taylor series" not in (task / "task.toml").read_text()  # the evaluator's docstring describes the task
    assert "Minus the largest error" in (task / "task.toml").read_text()
    with evoforge.resume(tmp_path / "r", iterations=2) as again:
        assert len(again.programs()) == 13


def test_a_candidate_cannot_patch_the_evaluator_of_evolve_function(tmp_path):
    """In-process, patches_sine would score a perfect -0.0; through the nested process it scores what it
    is: max |0 - sin x| = 1 on [0, pi]."""
    honest_sin = math.sin
    try:
        assert sine_error(patches_sine) == 0.0  # the attack works in-process...
    finally:
        math.sin = honest_sin                   # (undone for the rest of the test session)
    with evoforge.evolve_function(patches_sine, sine_error, iterations=0, llm="offline", timeout_s=20,
                                  out=tmp_path / "r") as run:
        initial = run.programs().iloc[0]
    assert initial.status == "ok" and initial.score == pytest.approx(-1.0)


@pytest.mark.parametrize("make, message", [
    (lambda: (lambda x: x), "is a lambda"),
    (lambda: _closure(), "is a closure over k"),
    (lambda: _uses_global, "uses the global 'GLOBAL_CONSTANT'"),
    (lambda: len, "not a plain Python function"),
])
def test_functions_that_cannot_stand_alone_are_config_errors(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        evoforge.evolve_function(make(), sine_score, iterations=0, out=tmp_path / "r")
    with pytest.raises(ConfigError, match=message):
        evoforge.evolve_function(approx_sine, make(), iterations=0, out=tmp_path / "r")
    assert not (tmp_path / "r" / "run.db").exists()


def test_initial_source_text_and_bad_options(tmp_path):
    source = "def helper(x):\n    return 2 * x\n\n\ndef approx(x):\n    return helper(x) / 2 - x ** 3 / 6\n"
    description = 'Approximate sin ↑ 😀 "quoted" \\ and\nnew lines'
    with evoforge.evolve_function(source, sine_error, name="approx", iterations=0, llm="offline",
                                  description=description, out=tmp_path / "r") as run:
        assert run.programs().iloc[0].status == "ok"
    from evoforge.engine.task import load_task

    assert load_task(tmp_path / "r" / "task").description == description.strip()
    program = (tmp_path / "r" / "task" / "initial_program.py").read_text()
    assert "# EVOLVE-BLOCK-START\ndef helper(x):" in program
    evaluator = ("import math\n\ndef helper(v):\n    return v\n\n"
                 "def score(f):\n    return -abs(f(1.0) - math.sin(1.0))\n")
    with evoforge.evolve_function(approx_sine, evaluator, iterations=0, llm="offline", out=tmp_path / "s") as run:
        assert run.programs().iloc[0].score == pytest.approx(-abs(approx_sine(1.0) - math.sin(1.0)))
    with pytest.raises(ConfigError, match="name the scoring function `score`"):
        evoforge.evolve_function(approx_sine, "def a(f):\n    return 1\n\ndef b(f):\n    return 2\n")
    with pytest.raises(ConfigError, match="unknown option 'iteration'"):
        evoforge.evolve_function(approx_sine, sine_error, iteration=3)
    with pytest.raises(ConfigError, match="name='nope' but the initial source defines helper, approx"):
        evoforge.evolve_function(source, sine_error, name="nope")


GLOBAL_CONSTANT = 3


def _closure():
    k = 2

    def inner(x):
        return k * x
    return inner


def _uses_global(x):
    return GLOBAL_CONSTANT * x


# ---- each command imports only what it uses (start-up time; no times asserted) --------------------

HEAVY = ("openai", "anthropic", "ribs", "sklearn", "numba", "pandas", "matplotlib", "jinja2", "rich", "docker", "ray")


def _imported_by(argv, cwd, code_after=""):
    code = ("import sys, io, contextlib\n"
            "from evoforge.engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main({argv!r}) == 0\n"
            f"{code_after}"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_commands_import_only_what_they_use(tmp_path):
    task = write_tiny_task(tmp_path / "tiny")
    evoforge.run(task, iterations=3, llm="offline", out=tmp_path / "r").close()
    sdks_and_archive_libraries = {"openai", "anthropic", "ribs", "sklearn", "numba", "docker", "ray"}
    # A grid archive needs no pyribs (scikit-learn, numba); the offline operator no SDK; no plots.
    ran = _imported_by(["run", str(task), "--iterations", "2", "--llm", "offline", "--quiet", "--out",
                        str(tmp_path / "r2")], tmp_path)
    assert not ran & (sdks_and_archive_libraries | {"pandas", "matplotlib"}), ran
    shown = _imported_by(["show", str(tmp_path / "r")], tmp_path)
    assert not shown & (sdks_and_archive_libraries | {"matplotlib"}), shown
    # One evaluation needs neither the archive nor the loop's prompts.
    assert _imported_by(["eval", str(task), str(task / "initial_program.py")], tmp_path) == set()
    notebook = ("from evoforge.archive import Run\n"
                f"with Run.open({str(tmp_path / 'r')!r}) as run:\n"
                "    run.programs(); run.best(); run.qd_stats()\n"
                f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", "import sys\n" + notebook], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"pandas"}   # no SDK, no pyribs, no Jinja2
