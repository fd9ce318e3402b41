"""`evoforge replay RUN_DIR --out NEW`: re-run a run from its stored replies, calling no model.

Every LLM call of a run is in its run.db with its prompt and reply (`evoforge.archive.store`), so
the same proposals can be evaluated again — against a changed evaluator, another sandbox, a fixed
bug in the engine — for free. A `ReplayClient` stands in for each of the run's models: asked for
the reply of iteration *i* (attempt *a*: 0, or 1 for the retry of a failed edit), it hands back what
the model said then, with the tokens and dollars the call cost then (so a replayed run's rows equal
the original's where nothing changed; nothing is spent). A stored failure is replayed as the same
failure.

The reply is looked up by the proposal, not by the prompt: where the evaluator changed, the archive,
the parents and so the prompts may differ from the original's, and the stored edit may no longer
apply (it is then rejected, as any edit that does not match). The replay says where that starts
(the first iteration whose prompt differs) and where the stored replies run out: a proposal past
the original's last call stops the replay there (`RepliesExhausted`), resumable by nobody — a
replay directory refuses `evoforge resume`, which would call the real models.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoforge.archive.store import Store
from evoforge.engine.config import RunConfig
from evoforge.engine.llm import as_spec
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.ensemble import Ensemble
from evoforge.engine.loop import Engine, Reporter, Snapshot
from evoforge.engine.rundir import RunDir
from evoforge.evaluators.types import ConfigError, EvoforgeError, LLMError, StoreError

__all__ = ["ReplyBook", "ReplayClient", "RepliesExhausted", "ReplayOutcome", "replay_run", "replay_llm"]

# Metadata the notebook API and `evoforge show` read, copied so the replay reads like the original.
_COPIED_META = ("task_name", "objective", "descriptors", "archive", "cvt_centroids", "llm_prices")


class RepliesExhausted(EvoforgeError):
    """A proposal past the last one the original run asked a model for."""

    def __init__(self, iteration: int, last: int) -> None:
        super().__init__(f"the stored replies run out at iteration {iteration} "
                         f"(the original run's last LLM call was in iteration {last})")
        self.iteration = iteration
        self.last = last


# Each evaluation runs in a fresh temporary directory whose random name shows in tracebacks, and so in
# the feedback a prompt carries; it is not a difference between the runs.
_TEMP_DIR = re.compile(r"evoforge-[A-Za-z0-9_]{8}")


def _digest(system: str | None, messages: Any) -> str:
    text = json.dumps([system, messages], sort_keys=True)
    return hashlib.sha256(_TEMP_DIR.sub("evoforge-TMP", text).encode()).hexdigest()


class ReplyBook:
    """The stored calls of a run by ``(iteration, attempt)``, and how the replay's prompts compare."""

    def __init__(self, store: Store) -> None:
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}
        for call in store.llm_calls():
            if call.get("iteration") is None:
                continue
            self.calls[(int(call["iteration"]), int(call.get("attempt") or 0))] = call
        if self.calls and all(c.get("messages") is None and c.get("reply") is None and not c.get("error")
                              for c in self.calls.values()):
            raise StoreError(f"{store.path}: this run predates stored replies (schema version 1), so it cannot "
                             f"be replayed")
        self.last_iteration = max((i for i, _ in self.calls), default=0)
        self.served = 0
        self.differing: list[int] = []      # iterations whose replayed prompt is not the original's

    def reply(self, prompt: Prompt, name: str) -> Reply:
        iteration = prompt.iteration if prompt.iteration is not None else -1
        call = self.calls.get((iteration, prompt.attempt))
        if call is None:
            if prompt.attempt == 0 and iteration > self.last_iteration:
                raise RepliesExhausted(iteration, self.last_iteration)
            raise LLMError(f"{name}: no stored reply for iteration {iteration}"
                           f"{' (retry)' if prompt.attempt else ''}: the original run made no such call")
        self.served += 1
        if call.get("messages") is not None and _digest(call.get("system"), call["messages"]) != \
                _digest(prompt.system, prompt.messages()) and iteration not in self.differing:
            self.differing.append(iteration)
        if call.get("error"):
            raise LLMError(call["error"])
        return Reply(text=call.get("reply") or "", model=call.get("model") or name,
                     prompt_tokens=call.get("prompt_tokens") or 0, completion_tokens=call.get("completion_tokens") or 0,
                     cost_usd=call.get("cost_usd") or 0.0, latency_s=0.0, truncated=bool(call.get("truncated")),
                     cached_tokens=call.get("cached_tokens") or 0,
                     cache_write_tokens=call.get("cache_write_tokens") or 0,
                     reasoning_tokens=call.get("reasoning_tokens") or 0, thinking=call.get("thinking") or "",
                     saved_usd=call.get("saved_usd") or 0.0)


class ReplayClient(LLMClient):
    """One of the original run's models, answering from the `ReplyBook`. It keeps the model's name,
    context window and ``max_tokens``, so prompts are fitted exactly as the original's were."""

    def __init__(self, book: ReplyBook, *, name: str, context_tokens: int | None, max_tokens: int,
                 conversational: bool) -> None:
        self.book = book
        self.name = name
        self.context_tokens = context_tokens
        self.max_tokens = max_tokens
        self.conversational = conversational

    async def generate(self, prompt: Prompt) -> Reply:
        return self.book.reply(prompt, self.name)


def replay_llm(config: RunConfig, book: ReplyBook) -> LLMClient:
    """The original run's model line-up (one model or its ensemble), each answering from ``book``."""
    specs = [as_spec(s) for s in config.llm]
    clients = [ReplayClient(book, name=s.label, context_tokens=s.context_window,
                            max_tokens=s.max_tokens if s.provider != "offline" else 0,
                            conversational=s.provider != "offline") for s in specs]
    if len(clients) == 1:
        return clients[0]
    return Ensemble(clients, [s.weight for s in specs], mode=config.setting("ensemble"))


@dataclass(frozen=True)
class ReplayOutcome:
    run_dir: Path
    snapshot: Snapshot
    replies: int                   # stored replies served
    differing: tuple[int, ...]     # iterations whose prompt differed from the original's
    exhausted_at: int | None       # the iteration where the stored replies ran out, if they did

    def describe(self) -> str:
        lines = [f"replayed {self.replies} stored replies; no model was called (tokens and costs are the original's)"]
        if self.differing:
            lines.append(f"prompts differ from the original's from iteration {self.differing[0]} on "
                         f"({len(self.differing)} iteration(s)): the archive diverged, so the stored edits met "
                         f"other parents")
        else:
            lines.append("every prompt equals the original's")
        if self.exhausted_at is not None:
            lines.append(f"the stored replies run out at iteration {self.exhausted_at}: the replay stops there")
        return "\n".join(lines)


def replay_run(source: Path, *, out: Path, iterations: int | None = None, task: str | None = None,
               sandbox: str | None = None, executor: str | None = None, concurrency: int | None = None,
               reporter: Reporter | None = None) -> ReplayOutcome:
    """Replay the run in ``source`` into the new run directory ``out``; see the module docstring.

    ``iterations``: proposals to replay (default: as many as the original made). ``task`` / ``sandbox``
    / ``executor``: what to change (default: the original's); ``concurrency`` likewise — keep it 1
    (and the original's) for a replay equal to the original.
    """
    from evoforge.engine.session import _drive, _executor, _preflight_isolation, task_of

    db = Path(source) / "run.db"
    with Store.open(db, readonly=True) as original:
        config = RunConfig.from_dict(original.get_meta("config"))
        book = ReplyBook(original)
        meta = {key: original.get_meta(key) for key in _COPIED_META}
        proposals = original.count("iteration > 0")
    if Path(out).resolve() == Path(source).resolve():
        raise ConfigError(f"--out {out}: the replay needs a new run directory, not the original")
    changes: dict[str, Any] = {"extra": {**dict(config.extra or {}), "replay_of": str(Path(source).resolve())},
                               "iterations": proposals if iterations is None else iterations}
    for key, value in (("task", task), ("sandbox", sandbox), ("executor", executor), ("concurrency", concurrency)):
        if value is not None:
            changes[key] = value
    if task is not None:   # another task folder: not the original's PROGRAM EVALUATOR --config (session.task_of)
        changes["extra"].pop("task_args", None)
    config = config.replace(**changes)
    task_obj = task_of(config)
    _preflight_isolation(config.sandbox)
    llm = replay_llm(config, book)
    executor_obj = _executor(config, task_obj)
    try:
        run_dir = RunDir.create(Path(out), config.to_dict())
    except BaseException:
        asyncio.run(executor_obj.close())
        raise
    for key, value in meta.items():
        if value is not None:
            run_dir.store.set_meta(key, value)
    run_dir.store.set_meta("state", "running")
    exhausted: list[RepliesExhausted] = []

    async def main() -> Snapshot:
        engine = Engine(config=config, task=task_obj, run_dir=run_dir, llm=llm, executor=executor_obj,
                        reporter=reporter)
        try:
            return await _drive(engine, config.iterations)
        except RepliesExhausted as exc:
            exhausted.append(exc)
            return engine.snapshot
        finally:
            await executor_obj.close()

    try:
        snapshot = asyncio.run(main())
        if exhausted:
            snapshot.stop_reason = str(exhausted[0])
        outcome = ReplayOutcome(Path(out), snapshot, book.served, tuple(sorted(book.differing)),
                                exhausted[0].iteration if exhausted else None)
        run_dir.store.set_meta("replay", {"of": str(Path(source).resolve()), "replies": outcome.replies,
                                          "differing": list(outcome.differing), "exhausted_at": outcome.exhausted_at})
        run_dir.store.set_meta("state", "finished" if snapshot.stop_reason == "iterations reached" else "stopped")
        return outcome
    finally:
        run_dir.close()
