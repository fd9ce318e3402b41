"""Search settings through the real driver: parent selection, island reset, early stopping, baselines, and
private held-out results (evaluated only for a new best and the final elites, never in a prompt).

The LLM is an in-process fake (a seeded SEARCH/REPLACE nudge of the tiny task's slope); evaluations run the
tiny task's real evaluator through ``runner.run_job`` in-process (what the sandbox runs, without the sandbox:
these tests are about the engine's decisions, and tests/sandbox covers isolation).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evoforge.archive.islands import PARENT_SELECTIONS
from evoforge.archive.store import SCHEMA_VERSION, Store
from evoforge.engine.config import RunConfig
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.loop import Engine
from evoforge.engine.rundir import RunDir
from evoforge.engine.summary import format_summary, summarize
from evoforge.engine.task import load_task
from evoforge.evaluators.runner import run_job
from evoforge.evaluators.types import ConfigError, EvaluationResult, Status
from fakes.tasks import TINY_EVALUATOR, TINY_TOML, write_tiny_task

ROOT = Path(__file__).resolve().parents[2]

HELDOUT_EVALUATOR = TINY_EVALUATOR.replace('"metrics": {"error": error},', '"metrics": {"error": error, '
                                           '"secret_probe": 1000 + error},') + '''

def evaluate_heldout(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ys = [module.f(x) for x in range(20, 30)]
    return {"score": -sum(abs(float(y) - 3.0 * x) for x, y in zip(range(20, 30), ys)),
            "metrics": {"holdout_err": 7777.0 + float(ys[0])}, "artifacts": {"holdout_note": "HIDDEN-NOTE"}}
'''


def nudge(parent_code: str, seed: int) -> str:
    a = float(re.search(r"^    a = (.+)$", parent_code, re.MULTILINE).group(1))
    step = float(np.random.default_rng(seed).normal(0.0, 0.4))
    return (f"Moved the slope.\n<<<<<<< SEARCH\n    a = {a!r}\n=======\n    a = {round(a + step, 4)!r}\n"
            ">>>>>>> REPLACE\n")


def garbage(parent_code: str, seed: int) -> str:
    return "<<<<<<< SEARCH\n    not in the program\n=======\n    x = 1\n>>>>>>> REPLACE\n"


class FakeLLM(LLMClient):
    name = "fake"

    def __init__(self, write=nudge) -> None:
        self.write, self.prompts = write, []

    async def generate(self, prompt: Prompt) -> Reply:
        self.prompts.append(prompt)
        return Reply(text=self.write(prompt.parent_code, prompt.seed), model=self.name, prompt_tokens=10,
                     completion_tokens=5)


class RunnerExecutor:
    """``runner.run_job`` in-process: the task's real evaluator, no sandbox; remembers the jobs."""

    slots = 1

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.jobs = workdir, []

    async def evaluate(self, job) -> EvaluationResult:
        self.jobs.append(job)
        folder = self.workdir / str(len(self.jobs))
        folder.mkdir(parents=True)
        await asyncio.sleep(0)
        return run_job(job, str(folder))


def tiny(tmp_path: Path, *, archive: str = "", extra: str = "", evaluator: str = TINY_EVALUATOR,
         islands: int = 2, top: str = "") -> Path:
    folder = write_tiny_task(tmp_path / "task", islands=islands, evaluator=evaluator)
    text = TINY_TOML.format(islands=islands).replace("[archive]\n", f"[archive]\n{archive}\n")
    (folder / "task.toml").write_text(top + "\n" + text + "\n" + extra)
    return folder


def run(folder: Path, out: Path, iterations: int, llm=None, *, seed: int = 0, baseline=None, resume=False):
    task = load_task(str(folder))
    config = RunConfig(task=str(folder), llm=("offline",), seed=seed, concurrency=1, iterations=iterations,
                       baseline=baseline)
    run_dir = RunDir.open(out) if resume else RunDir.create(out, config.to_dict())
    llm = llm or FakeLLM()
    executor = RunnerExecutor(out.parent / f"{out.name}-work-{iterations}")
    try:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=llm, executor=executor)
        snapshot = asyncio.run(engine.run(iterations))
        rows = list(run_dir.store.candidates())
        events = [(e.kind, e.program_id, e.island, e.status, e.cell) for e in run_dir.store.events()]
        return snapshot, rows, events, llm, executor
    finally:
        run_dir.close()


def _decisions(rows):
    return [(r.id, r.iteration, r.island, r.parent_id, r.code, r.status, r.score) for r in rows]


@pytest.mark.parametrize("policy", PARENT_SELECTIONS)
def test_each_policy_with_island_resets_is_repeatable_and_resumes_exactly(tmp_path, policy):
    folder = tiny(tmp_path, archive=f'parent_selection = "{policy}"\nreset_interval = 4', islands=3)
    _, rows, events, _, _ = run(folder, tmp_path / "a", 16)
    _, again, events2, _, _ = run(folder, tmp_path / "b", 16)
    assert _decisions(rows) == _decisions(again) and events == events2
    assert any(kind == "reset" for kind, *_ in events)                # every 4 proposals
    run(folder, tmp_path / "c", 8)
    _, resumed, events3, _, _ = run(folder, tmp_path / "c", 16, resume=True)
    assert _decisions(resumed) == _decisions(rows) and events3 == events


def test_policies_make_different_decisions(tmp_path):
    parents = {}
    for policy in PARENT_SELECTIONS:
        folder = tiny(tmp_path / policy, archive=f'parent_selection = "{policy}"')
        _, rows, _, _, _ = run(folder, tmp_path / policy / "run", 16)
        parents[policy] = [r.parent_id for r in rows]
    assert len({tuple(p) for p in parents.values()}) > 1


def test_patience_stops_a_run_that_finds_nothing(tmp_path):
    folder = tiny(tmp_path, extra="[stop]\npatience = 3\n")
    snapshot, rows, _, _, _ = run(folder, tmp_path / "run", 20, FakeLLM(garbage))
    assert len(rows) == 1 + 3 and "patience 3" in snapshot.stop_reason


def test_a_reached_target_score_stops_the_run(tmp_path):
    folder = tiny(tmp_path, extra="[stop]\ntarget_score = -100.0\n")     # the initial program already has it
    snapshot, rows, _, _, _ = run(folder, tmp_path / "run", 20)
    assert len(rows) == 1 and snapshot.stop_reason == "target score -100 reached"


def test_unknown_policy_is_a_one_line_config_error_naming_the_file(tmp_path):
    folder = tiny(tmp_path, archive='parent_selection = "tournament"')
    with pytest.raises(ConfigError) as info:
        load_task(str(folder))
    assert str(folder / "task.toml") in str(info.value) and "tournament" in str(info.value)
    assert "\n" not in str(info.value)


def test_best_of_n_proposes_everything_from_the_initial_program_without_context(tmp_path):
    folder = tiny(tmp_path)
    _, rows, _, llm, _ = run(folder, tmp_path / "run", 12, FakeLLM(), baseline="best-of-n")
    assert all(r.parent_id == 1 for r in rows[1:]) and all(not r.inspirations for r in rows[1:])
    assert not any("Inspiration" in p.user or "Earlier attempts" in p.user for p in llm.prompts)


def test_random_parent_draws_among_all_valid_programs(tmp_path):
    folder = tiny(tmp_path)
    _, rows, _, _, _ = run(folder, tmp_path / "run", 30, baseline="random-parent")
    ok = {r.id for r in rows if r.status == Status.OK}
    parents = [r.parent_id for r in rows[1:]]
    assert set(parents) <= ok and len(set(parents)) > 3


def test_heldout_runs_for_new_bests_and_final_elites_and_never_reaches_a_prompt(tmp_path):
    folder = tiny(tmp_path, evaluator=HELDOUT_EVALUATOR, top='private = ["secret_*"]\n',
                  extra="[heldout]\ntimeout_s = 33\nfinal_elites = 2\n")
    task = load_task(str(folder))
    assert task.has_heldout and task.heldout.timeout_s == 33
    _, rows, _, llm, executor = run(folder, tmp_path / "run", 15)
    heldout_jobs = [j for j in executor.jobs if j.extra.get("entry") == "heldout"]
    assert heldout_jobs and all(j.timeout_s == 33 for j in heldout_jobs)
    assert all(j.timeout_s == task.limits.timeout_s for j in executor.jobs if j not in heldout_jobs)
    best, scored = None, set()
    for r in rows:
        if r.status == Status.OK and (best is None or r.fitness > best):
            best = r.fitness
            scored.add(r.id)                                              # each new best is held-out scored
    top2 = sorted((r for r in rows if r.status == Status.OK), key=lambda r: (-r.fitness, r.id))[:2]
    scored |= {r.id for r in top2}
    assert {r.id for r in rows if "heldout_eval_s" in r.private} == scored
    assert len(heldout_jobs) == len(scored)
    for r in rows:
        assert "secret_probe" not in r.metrics
        if r.status == Status.OK:
            assert r.private["secret_probe"] > 1000                         # marked private by task.toml
        if r.id in scored:
            assert r.private["holdout_err"] > 7000 and r.private["holdout_note"] == "HIDDEN-NOTE"
            assert "heldout_score" in r.private
    values = {f"{r.private[k]:.6g}" for r in rows for k in ("holdout_err", "secret_probe") if k in r.private}
    for prompt in llm.prompts:
        text = prompt.system + prompt.user
        assert not any(s in text for s in ("secret_probe", "holdout_err", "HIDDEN-NOTE", "heldout", *values))
    shown = format_summary(summarize(tmp_path / "run"))
    assert "private:" in shown and "holdout_err=" in shown


def _evoforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "evoforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_eval_heldout_on_demand(tmp_path):
    folder = tiny(tmp_path, evaluator=HELDOUT_EVALUATOR, top='private = ["secret_*"]\n')
    program = folder / "initial_program.py"
    result = _evoforge("eval", str(folder), str(program), "--heldout", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["private"]["holdout_err"] > 7000 and data["private"]["secret_probe"] > 1000
    assert "secret_probe" not in data["metrics"] and "holdout_err" not in data["metrics"]
    plain = tiny(tmp_path / "plain")
    refused = _evoforge("eval", str(plain), str(program), "--heldout", cwd=tmp_path)
    assert refused.returncode == 2 and "evaluate_heldout" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_schema_2_run_gets_the_new_columns_when_opened(tmp_path):
    path = tmp_path / "run.db"
    store = Store.create(path, {"task": "x"})
    store._conn.execute("ALTER TABLE programs DROP COLUMN private")
    store._conn.execute("ALTER TABLE programs DROP COLUMN explanation")
    store.set_meta("schema_version", 2)
    store.close()
    with Store.open(path, readonly=True) as old:                        # read as it is
        assert list(old.candidates()) == []
    with Store.open(path) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION == 3
        columns = {r["name"] for r in store._conn.execute("PRAGMA table_info(programs)")}
        assert {"private", "explanation"} <= columns


def test_lessons_and_explanations_are_fed_forward_and_shown(tmp_path):
    folder = tiny(tmp_path, extra="[search]\nlessons_every = 4\n")
    _, rows, _, llm, _ = run(folder, tmp_path / "run", 16)
    assert all(r.explanation == "Moved the slope." for r in rows[1:] if r.status != Status.REJECTED)
    taught = [p for p in llm.prompts if "# What earlier changes on this task taught" in p.user]
    assert taught and "constant tweaks:" in taught[-1].user and llm.prompts[0] not in taught
    shown = format_summary(summarize(tmp_path / "run"))
    assert "lessons (what the prompts were told" in shown and "constant tweaks:" in shown
    assert "why: Moved the slope." in shown
    off = tiny(tmp_path / "off", extra="[search]\nlessons_every = 0\n")
    _, _, _, quiet, _ = run(off, tmp_path / "off" / "run", 8)
    assert not any("taught" in p.user for p in quiet.prompts)


def test_novelty_rejects_near_copies_before_evaluation_and_says_why(tmp_path):
    folder = tiny(tmp_path, extra="[search]\nnovelty_threshold = 0.85\n")   # a changed constant is ~0.90 here
    _, rows, _, _, executor = run(folder, tmp_path / "run", 10)
    rejected = [r for r in rows if "too similar to program #" in r.artifacts.get("error", "")]
    assert len(rejected) == 10 and all(r.status == Status.REJECTED and r.code for r in rejected)
    assert all(r.prompt_tokens > 0 for r in rejected)                  # stored with what it cost
    assert len(executor.jobs) == 1                                     # only the initial program ran
    off = tiny(tmp_path / "off")
    _, rows_off, _, _, _ = run(off, tmp_path / "off" / "run", 10)
    assert not any("too similar" in r.artifacts.get("error", "") for r in rows_off)


class CountingEmbedder:
    """An injected embedder (as a provider's embeddings client would be): every program maps to one vector."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, text: str) -> np.ndarray:
        self.calls += 1
        return np.ones(4)


def test_an_injected_embedder_is_used(tmp_path):
    folder = tiny(tmp_path, extra="[search]\nnovelty_threshold = 0.999\n")
    task = load_task(str(folder))
    config = RunConfig(task=str(folder), llm=("offline",), concurrency=1, iterations=3)
    embedder = CountingEmbedder()
    run_dir = RunDir.create(tmp_path / "run", config.to_dict())
    try:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=FakeLLM(),
                        executor=RunnerExecutor(tmp_path / "work"), embedder=embedder)
        asyncio.run(engine.run(3))
        statuses = [r.status for r in run_dir.store.candidates()]
    finally:
        run_dir.close()
    assert embedder.calls >= 4 and statuses == ["ok", "rejected", "rejected", "rejected"]
