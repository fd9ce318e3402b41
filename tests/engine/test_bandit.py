"""The adaptive ensemble: UCB1 over models rewarding improvements per dollar (after ShinkaEvolve).

Unit tests on `ModelBandit`, then whole runs with two models behind fake servers speaking the real
wire formats — one (openai-compatible) whose edits improve, one (anthropic) whose edits break —
to show the bandit prefers the first, and that its state survives a stop and `resume`.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.llm.bandit import ModelBandit
from evoforge.engine.session import resume_run, start_run
from evoforge.engine.summary import format_summary, summarize
from fakes.anthropic_server import FakeAnthropicServer, FakeOpenAIServerWithHeaders
from fakes.replies import break_b, raise_a
from fakes.tasks import write_tiny_task


# ----------------------------------------------------------------------------------------------
# the policy


def test_every_arm_is_tried_first_then_the_improving_one_leads():
    bandit = ModelBandit(["good", "bad"])
    first = {bandit.arms[bandit.choose(seed)] for seed in (1, 2)}
    assert first == {"good", "bad"}  # unpulled arms go first (pending choices count as pulls)
    bandit.update("good", improved=True, cost_usd=0.01)
    bandit.update("bad", improved=False, cost_usd=0.01)
    picks = []
    for seed in range(40):
        arm = bandit.arms[bandit.choose(seed)]
        picks.append(arm)
        bandit.update(arm, improved=arm == "good", cost_usd=0.01)
    counts = collections.Counter(picks)
    assert counts["good"] > 3 * counts["bad"] > 0, counts  # exploits, and still explores
    assert bandit.values() == [1.0, 0.0]


def test_value_is_improvements_per_dollar():
    bandit = ModelBandit(["pricey", "cheap"])
    for _ in range(10):  # both improve half the time; pricey costs 10x more per call
        for i in range(2):
            bandit.update("pricey", improved=i == 0, cost_usd=0.10)
            bandit.update("cheap", improved=i == 0, cost_usd=0.01)
    values = dict(zip(bandit.arms, bandit.values()))
    assert values["cheap"] == 1.0 and values["pricey"] == pytest.approx(0.1)
    # free models: the cost floor keeps the value finite, and it reduces to the improvement rate
    free = ModelBandit(["a", "b"])
    free.update("a", improved=True, cost_usd=0.0)
    free.update("a", improved=False, cost_usd=0.0)
    free.update("b", improved=True, cost_usd=0.0)
    assert free.values() == [0.5, 1.0]


def test_choice_is_a_function_of_state_and_seed():
    def run(seed0: int) -> list[str]:
        bandit = ModelBandit(["a", "b", "c"])
        out = []
        for i in range(30):
            arm = bandit.arms[bandit.choose(seed0 + i)]
            out.append(arm)
            bandit.update(arm, improved=(i % 3 == 0) == (arm == "c"), cost_usd=0.001)
        return out

    assert run(0) == run(0)
    assert ModelBandit(["a"]).state()["arms"][0] == {"model": "a", "pulls": 0, "improvements": 0,
                                                      "cost_usd": 0.0, "value": 0.0}
    with pytest.raises(ValueError):
        ModelBandit(["a", "a"])


def test_unknown_arm_outcomes_are_ignored():
    bandit = ModelBandit(["a"])
    bandit.update("no-longer-configured", improved=True, cost_usd=1.0)
    assert bandit.pulls == [0]


# ----------------------------------------------------------------------------------------------
# whole runs


class Servers:
    """The good model (openai-compatible) and the bad one (anthropic), each a real fake server."""

    def __enter__(self):
        self.good = FakeOpenAIServerWithHeaders(raise_a).__enter__()
        self.bad = FakeAnthropicServer(break_b).__enter__()
        return self

    def __exit__(self, *exc):
        self.good.__exit__()
        self.bad.__exit__()

    def models(self) -> tuple[dict, ...]:
        prices = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 4.0}
        return ({"provider": "openai-compatible", "model": "good-coder", "base_url": self.good.base_url, **prices},
                {"provider": "anthropic", "model": "bad-coder", "base_url": self.bad.origin,
                 "api_key_env": "FAKE_ANTHROPIC_KEY", **prices})


def bandit_config(task: Path, servers: Servers, iterations: int) -> RunConfig:
    return RunConfig(task=str(task), iterations=iterations, llm=servers.models(), ensemble="bandit",
                     concurrency=1, seed=5)


def rows(run_dir: Path) -> list[tuple]:
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return [(r.iteration, r.parent_id, r.model, r.code, r.status, r.score) for r in store.candidates()]


def bandit_meta(run_dir: Path) -> dict:
    with Store.open(run_dir / "run.db", readonly=True) as store:
        return store.get_meta("llm_bandit")


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
    with Servers() as s:
        yield s


def test_bandit_prefers_the_model_whose_edits_improve(tmp_path, servers):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    outcome = start_run(bandit_config(task, servers, 24), out=tmp_path / "run")
    assert outcome.snapshot.done == 24
    models = collections.Counter(r[2] for r in rows(tmp_path / "run")[1:])
    good, bad = models["openai-compatible:good-coder"], models["anthropic:bad-coder"]
    assert good + bad == 24 and good >= 2 * bad and bad >= 1, models
    assert len(servers.good.requests) == good and len(servers.bad.requests) == bad
    arms = {a["model"]: a for a in bandit_meta(tmp_path / "run")["arms"]}
    assert arms["openai-compatible:good-coder"]["improvements"] >= 3
    assert arms["anthropic:bad-coder"]["improvements"] == 0 and arms["anthropic:bad-coder"]["cost_usd"] > 0
    # `evoforge show` reports the arms and what each model cost and achieved
    text = format_summary(summarize(tmp_path / "run"))
    assert "ensemble: bandit" in text and "anthropic:bad-coder:" in text and "improvements over the parent" in text


def test_bandit_state_survives_a_stop_and_resume(tmp_path, servers):
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    start_run(bandit_config(task, servers, 20), out=tmp_path / "whole")
    start_run(bandit_config(task, servers, 9), out=tmp_path / "parts")
    stopped = bandit_meta(tmp_path / "parts")
    assert sum(a["pulls"] for a in stopped["arms"]) == 9  # persisted in run.db as it learned
    store = Store.open(tmp_path / "parts" / "run.db")
    store.set_meta("config", {**store.get_meta("config"), "iterations": 20})
    store.close()
    resume_run(tmp_path / "parts")
    # The resumed bandit continued from the stored outcomes: the same models chose the same edits.
    assert rows(tmp_path / "parts") == rows(tmp_path / "whole")
    assert bandit_meta(tmp_path / "parts") == bandit_meta(tmp_path / "whole")
