"""``make bench-search`` cannot rot: the surrogate LLM's replies apply and are seeded, its lessons-reading shifts
its mix, and one tiny run of the benchmark drives the real engine through the real OpenAI SDK on 127.0.0.1."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a folder of the repo, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.search import SETUPS, one_run, table  # noqa: E402
from benchmarks.surrogate import CONSTANT_SHARE, _constant_share, propose  # noqa: E402
from evoforge.engine.edits import apply_reply  # noqa: E402
from evoforge.engine.task import load_task  # noqa: E402
from evoforge.prompts import ProgramView, PromptContext, render_prompt  # noqa: E402


def _prompt(task_name: str, lessons=()) -> tuple[str, str]:
    task = load_task(task_name)
    context = PromptContext(task_name=task.name, task_description=task.description,
                            parent=ProgramView(code=task.initial_program, score=1.0,
                                               artifacts={"summary": "x = 0.5\n```\ny = 2\n```"}), lessons=lessons)
    return task.initial_program, render_prompt(context)[1]


@pytest.mark.parametrize("task", ["circle_packing", "pde_advection", "matmul_decomposition"])
def test_surrogate_replies_apply_change_the_program_and_are_seeded(task):
    program, prompt = _prompt(task)
    replies = [propose(prompt, random.Random(seed)) for seed in range(40)]
    assert replies == [propose(prompt, random.Random(seed)) for seed in range(40)]
    results = [apply_reply(program, r) for r in replies]
    assert all(r.ok and r.code != program for r in results), [r.reason for r in results if not r.ok]
    assert len({r.code for r in results}) > 20
    assert any(r.startswith("Swap an operator") for r in replies) and any(r.startswith("Tune") for r in replies)


def test_surrogate_follows_the_lessons():
    _, plain = _prompt("circle_packing")
    assert _constant_share(plain) == CONSTANT_SHARE
    _, taught = _prompt("circle_packing", lessons=(
        "constant tweaks: 20 tried, 8 improved on their parent (best gain 0.01)",
        "operator or comparison swaps: 10 tried, 0 improved on their parent, 6 failed to run or were invalid"))
    assert _constant_share(taught) > 0.9
    _, reverse = _prompt("circle_packing", lessons=(
        "operator or comparison swaps: 10 tried, 6 improved on their parent (best gain 0.1)",
        "constant tweaks: 20 tried, 0 improved on their parent"))
    assert _constant_share(reverse) < 0.5


@pytest.mark.slow
def test_one_tiny_benchmark_run_and_its_table():
    by_name = {s.name: s for s in SETUPS}
    results = [one_run(("circle_packing", by_name[name], 0, 3)) for name in ("default", "best-of-n")]
    for r in results:
        assert r["initial"] == pytest.approx(1.72518257564566) and r["best"] >= r["initial"]
        assert sum(r["statuses"].values()) == 4                     # the initial program and 3 proposals
    text, ratios = table(results, (by_name["default"], by_name["best-of-n"]), ("circle_packing",))
    assert "| default |" in text and ratios["best-of-n"]["circle_packing"] == 1.0
