"""Private results never reach a prompt: every built-in task, with its real evaluator output on its initial program.

Each task's evaluator runs in-process (``runner.run_job``, what the sandbox runs; the candidate still runs in its
nested process) on the initial program, and, where it defines one, its ``evaluate_heldout``. The record the
engine stores (the task's ``private`` patterns applied, the held-out results attached as the engine attaches
them) goes through the core's ``propose`` as the parent *and* as an inspiration, and the rendered system and
user prompts are searched for every private name and every distinctive private value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evoforge.archive.islands import IslandArchives
from evoforge.engine.config import RunConfig
from evoforge.engine.evolution import Evolution
from evoforge.engine.task import builtin_tasks, load_task
from evoforge.evaluators.runner import run_job
from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.prompts import render_prompt
from evoforge.sandbox.job import EvaluationJob

BUILTIN = sorted(builtin_tasks())
HELDOUT_TASKS = {"bin_packing_or", "bin_packing_weibull", "pde_advection", "pde_burgers",
                 "pde_reaction_diffusion", "tsp_construct", "optimizer_update_rule"}


def _evaluate(task, workdir: Path, entry: str = "evaluate") -> EvaluationResult:
    workdir.mkdir(parents=True, exist_ok=True)
    job = EvaluationJob(program_text=task.initial_program, task_dir=str(task.path),
                        evaluator_file=task.evaluator_file, cascade_thresholds=task.cascade_thresholds,
                        extra={"entry": entry})
    return run_job(job, str(workdir))


def _texts(value) -> list[str]:
    """How a private value could show up in a prompt (numbers as the templates print them, and as Python does)."""
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if len(line.strip()) >= 12]
    return [f"{value:.6g}", repr(value), f"{value:.4f}", f"{value:.3e}", f"{value:.2f}"]


def test_the_builtin_tasks_with_held_out_data_mark_it():
    for name in HELDOUT_TASKS:
        task = load_task(name)
        assert task.has_heldout and task.private, name


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN)
def test_no_private_name_or_value_reaches_a_prompt(tmp_path, name):
    task = load_task(name)
    result = _evaluate(task, tmp_path / "train")
    held = _evaluate(task, tmp_path / "heldout", "heldout") if task.has_heldout else None
    if name in HELDOUT_TASKS:
        assert result.ok, result
        assert held is not None and held.ok and held.private, held
    islands = IslandArchives(descriptors=task.descriptors, config=task.archive, seed=0)
    programs: dict = {}
    core = Evolution(task=task, config=RunConfig(task=str(task.path), llm=("offline",)), islands=islands,
                     lookup=programs.__getitem__)
    record = core.record_of(code=task.initial_program, result=result, iteration=0, parent_id=None, island=None)
    private = dict(record.private)
    if held is not None:
        private.update(held.private)   # what Engine._heldout stores with the program
    record = dataclasses.replace(record, private=private)
    if name in HELDOUT_TASKS:
        assert private and not any(task.is_private(n) for n in [*record.metrics, *record.artifacts])
    if record.status != Status.OK:   # e.g. a GPU task on a machine without one: the prompt shows the failure
        pytest.skip(f"{name}'s initial program is {record.status} here: {record.artifacts.get('error', '')[:200]}")
    told = core.seed(record)
    programs[told.program_id] = told.record
    # A better second program on island 0, so the first is shown as an inspiration (from the other islands) too.
    twin = dataclasses.replace(told.record, code=told.record.code + "\n# twin\n", id=None, iteration=1,
                               parent_id=1, island=0, fitness=told.record.fitness + 1.0)
    told2 = core.tell(twin)
    programs[told2.program_id] = dataclasses.replace(told2.record, private=private)

    public = " ".join(f"{v:.6g}" for v in [*record.metrics.values(), *record.features.values(),
                                            record.score or 0.0])
    public += " " + " ".join(record.artifacts.values()) + " " + task.description
    public += " " + record.code   # the program text is public: a private runtime of 0.25 s may match a 0.25 in it
    shown = 0
    for iteration in range(1, 5):
        proposal = core.propose(iteration)
        shown += len(proposal.inspirations)
        system, user = render_prompt(proposal.context, task_dir=task.path)
        prompt = system + "\n" + user
        for key, value in private.items():
            assert key not in prompt, (name, key)
            for text in _texts(value):
                if len(text) >= 4 and text not in public and not text.lstrip("-0.").startswith(("0", "1e")):
                    assert text not in prompt, (name, key, text)
    assert shown > 0
