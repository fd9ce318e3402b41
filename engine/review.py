"""The two review calls of a run — the novelty judge and written lessons — made through the driver's own
call function, which numbers, stores and prices each call (`evoforge.engine.loop.Engine._call`).

What is decided (who reviews, how replies are read, the seeds) is `evoforge.engine.reflection`'s; this module
renders the prompts (prompts/novelty_judge.j2, prompts/lessons.j2), sends them and reads the answers. It
writes nothing: the driver stores what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from evoforge.engine.lessons import Lessons
from evoforge.engine.llm import as_spec
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.novelty import compared_text
from evoforge.engine.reflection import judge_enabled, lessons_mode, read_lessons, read_verdict
from evoforge.prompts import render_lessons, render_novelty_judge
from evoforge.prompts.sanitize import one_line

__all__ = ["Reviewer", "Verdict", "Written"]

Call = Callable[[LLMClient, Prompt, int], Awaitable["Reply | None"]]


@dataclass(frozen=True)
class Verdict:
    """The judge's ruling: ``novel`` lets the child be evaluated; ``reason`` is the row's reason otherwise;
    ``reply`` (None when the call failed) carries the tokens and cost the proposal's row adds."""

    novel: bool
    reason: str
    reply: Reply | None


@dataclass(frozen=True)
class Written:
    """A lessons call's outcome: the lines to install (empty: keep the computed ones) and the run's record of
    where the shown lessons came from (meta ``lessons_source``)."""

    lines: tuple[str, ...]
    source: dict[str, Any]
    reply: Reply | None


class Reviewer:
    """Who reviews and how, for one run (the models that read prompts; `reflection` for the rules)."""

    def __init__(self, *, llm: LLMClient, specs: Sequence[Any], novelty_judge: bool, novelty_threshold: float,
                 lessons: str | None, task_name: str, objective: str, task_dir: Path, language: str,
                 call: Call, last_error: Callable[[], str]) -> None:
        real = {s.label for s in map(as_spec, specs) if s.provider != "offline"}
        self.clients = [c for c in (getattr(llm, "clients", None) or [llm]) if c.name in real]
        specs = specs if self.clients else ("offline",)   # no client answers for a real spec: none reviews
        self.judge_on = judge_enabled(novelty_judge, specs) and novelty_threshold > 0
        self.lessons_mode = lessons_mode(lessons, specs)
        self._task_name, self._objective, self._task_dir, self._language = task_name, objective, task_dir, language
        self._call, self._last_error = call, last_error

    def client_for(self, proposer: LLMClient) -> LLMClient:
        """The proposal's own model when it reads prompts, else the run's first one that does."""
        return proposer if proposer in self.clients else self.clients[0]

    async def judge(self, *, proposer: LLMClient, iteration: int, seed: int, code: str, other_code: str,
                    other_id: int, cosine: float, reason: str) -> Verdict:
        """ShinkaEvolve's novelty judge: is ``code`` meaningfully new against program ``other_id``? A NOT NOVEL,
        an unreadable reply or a failed call all reject (the reason says which)."""
        client = self.client_for(proposer)
        system, user = render_novelty_judge(task_name=self._task_name, child=compared_text(code),
                                            other=compared_text(other_code), other_id=other_id, cosine=cosine,
                                            task_dir=self._task_dir)
        reply = await self._call(client, Prompt(system=system, user=user, parent_code=code, seed=seed,
                                                iteration=iteration, language=self._language), iteration)
        if reply is None:
            return Verdict(False, f"{reason}; the novelty judge's call failed, so it counts as not novel: "
                                  f"{one_line(self._last_error(), max_chars=300)}", None)
        novel, why = read_verdict(reply.text)
        if novel is None:
            return Verdict(False, f"{reason}; the novelty judge's reply was neither NOVEL nor NOT NOVEL, so it "
                                  f"counts as not novel: {why or '(empty reply)'}", reply)
        if not novel:
            return Verdict(False, f"{reason}; the novelty judge ({client.name}) found it NOT NOVEL: "
                                  f"{why or '(no reason given)'}", reply)
        return Verdict(True, why, reply)

    async def write_lessons(self, lessons: Lessons, *, iteration: int, seed: int) -> Written:
        """One call turns the computed tallies and the recent changes into a few lessons (ShinkaEvolve's
        meta-recommendations); nothing of a program but its change kind, gain and explanation is shown."""
        client, refresh = self.clients[0], lessons.refreshes
        system, user = render_lessons(task_name=self._task_name, objective=self._objective, tallies=lessons.computed,
                                      changes=lessons.recent, task_dir=self._task_dir)
        reply = await self._call(client, Prompt(system=system, user=user, parent_code="", seed=seed,
                                                iteration=iteration, language=self._language), iteration)
        lines = read_lessons(reply.text) if reply is not None else ()
        if lines:
            return Written(lines, {"source": "llm", "refresh": refresh, "model": client.name}, reply)
        why = (f"the lessons call failed: {self._last_error()}" if reply is None else
               "the lessons reply held no lines starting with '- '")
        return Written((), {"source": "computed", "refresh": refresh, "why": one_line(why, max_chars=300)}, reply)

