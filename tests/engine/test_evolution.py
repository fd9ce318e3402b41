"""The evolutionary core (`evoforge.engine.evolution`) driven directly, with in-process fakes.

No sandbox, no SQLite, no event loop: `fake_llm` writes a SEARCH/REPLACE edit of the tiny task's slope
constant from the proposal's seed, and `fake_evaluate` scores a child in-process by reading its two constants
(what the tiny task's evaluator computes, without running the code). The last tests run the asynchronous
driver (`Engine`) over the same fakes and check it makes exactly the decisions the core makes alone.
"""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from evoforge.archive.islands import IslandArchives
from evoforge.archive.store import CandidateRecord
from evoforge.engine.config import RunConfig
from evoforge.engine.edits import apply_reply
from evoforge.engine.evolution import FEEDBACK_PER_PARENT, Evolution
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.loop import Engine
from evoforge.engine.rundir import RunDir
from evoforge.engine.task import load_task
from evoforge.evaluators.types import EvaluationResult, LLMError, Status
from fakes.tasks import write_tiny_task

_CONSTANT = re.compile(r"^    (a|b) = (-?[0-9.e+-]+)$", re.MULTILINE)


def fake_evaluate(code: str) -> EvaluationResult:
    """The tiny task's evaluator, in-process and without executing ``code``: f(x) = a x + b against 3 x."""
    values = dict((name, float(v)) for name, v in _CONSTANT.findall(code))
    a, b = values["a"], values["b"]
    error = sum(abs(a * x + b - 3.0 * x) for x in range(10)) / 10
    return EvaluationResult(status=Status.OK, score=-error, features={"slope": a}, metrics={"error": error})


def fake_llm(parent_code: str, seed: int) -> str:
    """A diff that nudges the slope constant by a seeded step (a stand-in for a model's edit)."""
    a = float(re.search(r"^    a = (.+)$", parent_code, re.MULTILINE).group(1))
    step = float(np.random.default_rng(seed).normal(0.0, 0.4))
    return f"<<<<<<< SEARCH\n    a = {a!r}\n=======\n    a = {round(a + step, 4)!r}\n>>>>>>> REPLACE\n"


def garbage_llm(parent_code: str, seed: int) -> str:
    return "<<<<<<< SEARCH\n    this line is not in the program\n=======\n    x = 1\n>>>>>>> REPLACE\n"


class CoreRun:
    """The core plus a dict standing in for the store (what a driver would write)."""

    def __init__(self, tmp_path, *, seed: int = 0, islands: int = 2, done: int = 0) -> None:
        folder = tmp_path / f"tiny{islands}"
        if not folder.exists():
            write_tiny_task(folder, islands=islands)
        self.task = load_task(str(folder))
        self.config = RunConfig(task=str(self.task.path), llm=("offline",), seed=seed)
        self.programs: dict[int, CandidateRecord] = {}
        self.events: list = []
        self.core = Evolution(task=self.task, config=self.config, lookup=self.programs.__getitem__, done=done,
                              islands=IslandArchives(descriptors=self.task.descriptors, config=self.task.archive,
                                                     seed=seed))

    def keep(self, told):
        self.programs[told.program_id] = told.record
        self.events.extend(told.events)
        return told

    def seed_initial(self):
        code = self.task.initial_program
        return self.keep(self.core.seed(self.core.record_of(code=code, result=fake_evaluate(code), iteration=0,
                                                            parent_id=None, island=None)))

    def step(self, iteration: int, llm=fake_llm, evaluate=fake_evaluate):
        proposal = self.core.propose(iteration)
        reply = llm(proposal.parent.code, proposal.llm_seed)
        edit = apply_reply(proposal.parent.code, reply)
        common = dict(iteration=iteration, parent_id=proposal.parent.id, island=proposal.island, model="fake",
                      inspirations=tuple(r.id for r in proposal.inspirations), edit=reply)
        if not edit.ok:
            record = CandidateRecord(code="", status=Status.REJECTED, edit_kind=edit.kind,
                                     artifacts={"error": edit.reason}, **common)
        elif (twin := self.core.claim(edit.code)) is not None:
            record = CandidateRecord(code=edit.code, status=Status.REJECTED, edit_kind=edit.kind,
                                     artifacts={"error": f"duplicate of program #{twin}"}, **common)
        else:
            record = self.core.record_of(code=edit.code, result=evaluate(edit.code), edit_kind=edit.kind, **common)
        return proposal, self.keep(self.core.tell(record))


def test_a_propose_tell_sequence_evolves_the_islands(tmp_path):
    run = CoreRun(tmp_path)
    seeded = run.seed_initial()
    assert seeded.program_id == 1 and [(e.kind, e.island, e.status) for e in seeded.events] == [
        ("insert", 0, "new"), ("insert", 1, "new")]  # AlphaEvolve seeds every island
    for iteration in range(1, 31):
        elites_before = {e.program_id for e in run.core.islands.elites(iteration % 2)}
        proposal, told = run.step(iteration)
        assert proposal.island == iteration % 2                      # islands take turns
        assert proposal.parent.id in elites_before                   # the parent is an elite of its island
        assert proposal.parent.id not in {r.id for r in proposal.inspirations}
        assert told.program_id == iteration + 1 and told.record.iteration == iteration
        inserts = [e for e in told.events if e.kind == "insert"]
        assert [e.island for e in inserts] == ([proposal.island] if told.record.status == Status.OK else [])
    assert run.core.done == 30
    initial = run.programs[1].fitness
    assert run.core.islands.best().fitness > initial                  # the slope moved towards 3
    assert {e.program_id for e in run.core.islands.elites()} <= set(run.programs)


def test_a_seed_fixes_every_decision(tmp_path):
    def trace(seed):
        run = CoreRun(tmp_path, seed=seed)
        run.seed_initial()
        out = []
        for iteration in range(1, 21):
            proposal, told = run.step(iteration)
            out.append((proposal.island, proposal.parent.id, tuple(r.id for r in proposal.inspirations),
                        proposal.llm_seed, proposal.context.reply_format, told.record.code, told.events))
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_a_rejected_edit_goes_back_into_the_parents_next_prompt(tmp_path):
    run = CoreRun(tmp_path)
    run.seed_initial()
    proposal, told = run.step(1, llm=garbage_llm)
    assert told.record.status == Status.REJECTED and told.events == ()
    assert proposal.context.feedback == []
    (note,) = run.core.feedback(1)
    assert note.startswith("rejected edit: ") and "SEARCH" in note
    nxt = run.core.propose(2)                                         # program 1 is still the only elite
    assert nxt.parent.id == 1 and nxt.context.feedback == [note]
    for iteration in range(2, 2 + FEEDBACK_PER_PARENT + 2):
        run.step(iteration, llm=garbage_llm)
    assert len(run.core.feedback(1)) == FEEDBACK_PER_PARENT          # only the most recent ones


def test_a_failed_evaluation_is_feedback_and_never_an_elite(tmp_path):
    run = CoreRun(tmp_path)
    run.seed_initial()
    crash = EvaluationResult.failure(Status.ERROR, "ZeroDivisionError: division by zero")
    _, told = run.step(1, evaluate=lambda code: crash)
    assert told.record.status == Status.ERROR and told.events == () and told.record.fitness is None
    assert run.core.feedback(1) == ["error: ZeroDivisionError: division by zero"]
    no_descriptor = EvaluationResult(status=Status.OK, score=1.0, features={})
    _, told = run.step(2, evaluate=lambda code: no_descriptor)
    assert told.record.status == Status.ERROR and "no feature 'slope'" in told.record.artifacts["error"]
    assert run.core.islands.stats().num_elites == 1


def test_migration_comes_every_interval_and_counts_a_resumed_runs_proposals(tmp_path):
    run = CoreRun(tmp_path)                                               # the tiny task migrates every 5 proposals
    run.seed_initial()
    migrated = [run.step(i, llm=garbage_llm)[1].migrated for i in range(1, 16)]
    assert [i for i, m in enumerate(migrated, start=1) if m] == [5, 10, 15]
    resumed = CoreRun(tmp_path, done=3)                                   # 3 proposals were stored before
    resumed.seed_initial()
    migrated = [resumed.step(i, llm=garbage_llm)[1].migrated for i in range(4, 9)]
    assert migrated == [False, True, False, False, False]             # the 5th proposal overall
    single = CoreRun(tmp_path, islands=1)
    single.seed_initial()
    assert not any(single.step(i, llm=garbage_llm)[1].migrated for i in range(1, 11))


def test_a_duplicate_is_claimed_once_and_then_names_the_stored_program(tmp_path):
    run = CoreRun(tmp_path)
    run.seed_initial()
    assert run.core.claim(run.task.initial_program) == 1
    child = run.task.initial_program.replace("a = 1.5", "a = 2.5")
    assert run.core.claim(child) is None                              # new: claimed for this evaluation
    assert run.core.claim(child) == -1                                # a concurrent twin is not evaluated
    told = run.core.tell(run.core.record_of(code=child, result=fake_evaluate(child), iteration=1, parent_id=1,
                                            island=1, edit="x"))
    assert run.core.claim(child) == told.program_id == 2


def test_a_core_rebuilt_from_what_was_stored_continues_exactly(tmp_path):
    whole = CoreRun(tmp_path, seed=5)
    whole.seed_initial()
    for iteration in range(1, 13):
        whole.step(iteration)
    # What `Engine` does on resume: replay the archive events, remember failures, count proposals and hashes.
    stored = dict(whole.programs)
    islands = IslandArchives(descriptors=whole.task.descriptors, config=whole.task.archive, seed=5)
    for event in whole.events:
        record = stored[event.program_id]
        vector = [record.features[n] for n in ("slope", "code_length")]
        islands.add(event.island, event.program_id, record.fitness, vector)
    resumed = CoreRun(tmp_path, seed=5)
    resumed.programs.update(stored)
    resumed.core = Evolution(
        task=resumed.task, config=resumed.config, islands=islands, lookup=resumed.programs.__getitem__,
        next_program_id=max(stored) + 1, done=12,
        hashes={r.code_hash: i for i, r in sorted(stored.items(), reverse=True) if r.status != Status.REJECTED},
        failures=[r for _, r in sorted(stored.items()) if r.status != Status.OK and r.iteration > 0],
        history=[r for _, r in sorted(stored.items()) if r.iteration > 0])   # children, lessons, patience
    for iteration in range(13, 25):
        a, b = whole.step(iteration), resumed.step(iteration)
        assert a == b


# -- the driver over the same fakes ---------------------------------------------------------------------------

class FakeLLM(LLMClient):
    """An in-process LLM: ``fake_llm`` on the prompt's parent and seed (no server, no SDK)."""

    name = "fake"

    def __init__(self, write=fake_llm, fail: bool = False) -> None:
        self.write, self.fail, self.prompts = write, fail, []

    async def generate(self, prompt: Prompt) -> Reply:
        self.prompts.append(prompt)
        if self.fail:
            raise LLMError("401 invalid API key")
        return Reply(text=self.write(prompt.parent_code, prompt.seed), model=self.name, prompt_tokens=10,
                     completion_tokens=5)


class InProcessExecutor:
    """An executor without a sandbox: ``fake_evaluate`` on the job's program text."""

    slots = 1

    async def evaluate(self, job) -> EvaluationResult:
        await asyncio.sleep(0)
        return fake_evaluate(job.program_text)


def engine_run(tmp_path, name, llm, iterations, seed=0):
    task = load_task(str(write_tiny_task(tmp_path / "tiny2", islands=2)))
    config = RunConfig(task=str(task.path), llm=("offline",), seed=seed, concurrency=1, iterations=iterations)
    run_dir = RunDir.create(tmp_path / name, config.to_dict())
    try:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=llm, executor=InProcessExecutor())
        snapshot = asyncio.run(engine.run(iterations))
        rows = [(r.id, r.iteration, r.island, r.parent_id, r.code, r.status, r.score)
                for r in run_dir.store.candidates()]
        events = run_dir.store.events()
        return snapshot, rows, events
    finally:
        run_dir.close()


def test_the_driver_makes_exactly_the_cores_decisions(tmp_path):
    snapshot, rows, events = engine_run(tmp_path, "engine", FakeLLM(), 20)
    assert snapshot.done == 20 and snapshot.stop_reason == "iterations reached"
    alone = CoreRun(tmp_path)
    alone.seed_initial()
    for iteration in range(1, 21):
        alone.step(iteration)
    assert rows == [(r.id, r.iteration, r.island, r.parent_id, r.code, r.status, r.score)
                    for _, r in sorted(alone.programs.items())]
    assert [(e.kind, e.program_id, e.island, e.status, e.cell) for e in events] == [
        (e.kind, e.program_id, e.island, e.status, e.cell) for e in alone.events]


def test_the_driver_stops_when_every_first_llm_call_fails(tmp_path):
    llm = FakeLLM(fail=True)
    with pytest.raises(LLMError, match="the first 5 LLM calls all failed"):
        engine_run(tmp_path, "failing", llm, 20)
    assert len(llm.prompts) == 5
