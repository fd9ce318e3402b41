"""The asynchronous driver of a run: LLM calls, retries, the executor, budgets, progress and the store.

The evolutionary decisions (which island, parent and inspirations; fitness, insertion, migration,
feedback) are `evoforge.engine.evolution.Evolution`'s, a synchronous core without I/O; this module
turns its proposals into LLM calls and evaluations and writes what it is told to the run directory
(docs/architecture.md, "The engine: core and driver").

Each proposal is one *iteration*. LLM calls and evaluations are separate pools: up to
``concurrency`` candidates are in flight (most of them waiting on slow LLM calls), while the
executor bounds how many evaluations use the cores at once — AlphaEvolve's asynchronous
pipeline (Novikov et al. 2025, §2.6), which keeps both the LLM and the machine busy.

Reproducibility: every random choice of an iteration (island, parent, inspirations, the LLM seed)
comes from ``np.random.default_rng([seed, iteration])``, so with ``concurrency = 1`` a run — and
a resumed run — is exactly repeatable whatever the timing, executor or sandbox.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from evoforge.archive.islands import IslandArchives
from evoforge.archive.store import CandidateRecord, Store
from evoforge.engine.config import RunConfig
from evoforge.engine.edits import EditResult, apply_reply, code_hash
from evoforge.engine.evolution import Evolution, Proposal, Told
from evoforge.engine.lessons import explanation_of
from evoforge.engine.reflection import derived_seed
from evoforge.engine.review import Reviewer
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.rundir import RunDir
from evoforge.engine.startup import job_for
from evoforge.engine.task import Task
from evoforge.evaluators.types import EvaluationResult, LLMError, Status, StoreError, TaskError
from evoforge.prompts import PromptContext, render_prompt, render_retry
from evoforge.prompts.fit import fit_prompt
from evoforge.sandbox.job import EvaluationJob

__all__ = ["Engine", "Snapshot", "Reporter", "NullReporter", "Executor", "rebuild_islands"]

_FAILED_LLM_CALLS_TO_ABORT = 5   # every one of the first N calls failed: a bad key, URL or model name


@dataclass
class Snapshot:
    """What the progress display shows; updated after every finished candidate."""

    done: int = 0
    target: int = 0
    best_score: float | None = None
    initial_score: float | None = None
    coverage: float = 0.0
    qd_score: float = 0.0
    statuses: dict[str, int] = field(default_factory=lambda: collections.Counter())
    evals_per_s: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0                # of the LLM calls, and how many of them the provider's cache served
    cached_tokens: int = 0
    saved_usd: float = 0.0                # what prompt caching saved against full price
    max_cost_usd: float | None = None     # the budgets, so the display can show how much is left
    max_tokens: int | None = None
    stop_reason: str = ""


class Reporter(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...


class NullReporter:
    def update(self, snapshot: Snapshot) -> None:
        return None


class Executor(Protocol):
    slots: int

    async def evaluate(self, job: EvaluationJob) -> EvaluationResult: ...


def rebuild_islands(task: Task, store: Store, seed: int) -> IslandArchives:
    """Replay the stored archive events in order: the islands come back exactly as they were."""
    centroids = store.get_meta("cvt_centroids")
    islands = IslandArchives(descriptors=task.descriptors, config=task.archive, seed=seed,
                             centroids=None if centroids is None else np.asarray(centroids))
    if centroids is None and islands.centroids is not None and not store.readonly:
        store.set_meta("cvt_centroids", islands.centroids.tolist())
    cache: dict[int, CandidateRecord] = {}
    names = [d.name for d in task.descriptors]
    for event in store.events():
        if event.kind == "reset":    # FunSearch's island reset; the reseeding insertion follows
            islands.clear(event.island)
            continue
        record = cache.get(event.program_id) or store.candidate(event.program_id)
        cache[event.program_id] = record
        islands.add(event.island, event.program_id, record.fitness, [record.features[n] for n in names])
    return islands


class Engine:
    """One discovery run over a task, writing everything to its run directory.

    The driver around `Evolution`: it owns the concurrency (``concurrency`` LLM calls, the executor's
    slots), the LLM calls and the one retry of a failed edit, the budgets, the progress snapshot and
    every write to the run directory.
    """

    def __init__(self, *, config: RunConfig, task: Task, run_dir: RunDir, llm: LLMClient,
                 executor: Executor, reporter: Reporter | None = None,
                 clock: Callable[[], float] = time.monotonic, embedder: Any = None) -> None:
        self.config = config
        self.task = task
        self.run_dir = run_dir
        self.store = run_dir.store
        self.llm = llm
        self.executor = executor
        self.reporter = reporter or NullReporter()
        self._clock = clock
        self.evolution = Evolution(
            task=task, config=config, islands=rebuild_islands(task, self.store, config.seed),
            lookup=self._program, next_program_id=self.store.next_program_id(),
            done=self.store.count("iteration > 0"), hashes=self.store.hashes(),
            # so a resumed run prompts exactly as the original would
            failures=self.store.candidates(where="status != 'ok' AND iteration > 0"),
            history=self.store.candidates(where="iteration > 0"), embedder=embedder,
            # the Pareto fronts of a task with [[objectives]], rebuilt from the rows (archive.pareto)
            front_records=self.store.candidates(where="status = 'ok'") if task.objectives else (),
            fingerprints=self.store.fingerprints())   # behavioural twins of programs from before a resume too
        self._stop_requested = False
        self._stop_reason = ""
        self._last_llm_error = ""
        self._failures: list[BaseException] = []
        self._llm_failures = 0
        self._llm_successes = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self.snapshot = Snapshot(max_cost_usd=config.max_cost_usd, max_tokens=config.max_total_tokens)
        self._started = clock()
        self._evaluated_since_start = 0
        self._launched = 0            # proposals stored or under way, against the target of `run`
        self._target = 0
        self._call_counts: dict[int, int] = {}   # LLM calls made so far per iteration (their `attempt` numbers)
        # The model's second opinions (engine.review): the novelty judge and written lessons. Who reviews and
        # how lessons are made is read from the run's model specs (engine.reflection), so a replay decides as
        # the original did.
        self.reviewer = Reviewer(llm=llm, specs=config.llm, novelty_judge=task.search.novelty_judge,
                                 novelty_threshold=task.search.novelty_threshold, lessons=task.search.lessons,
                                 task_name=task.name, objective=task.objective, task_dir=task.path,
                                 language=task.language, call=self._call, last_error=lambda: self._last_llm_error)
        self._lessons_due: int | None = None     # a refresh waiting for its written lessons
        self._load_snapshot()
        self._replay_model_outcomes()
        self._restore_lessons()

    @property
    def islands(self) -> IslandArchives:
        return self.evolution.islands

    # -- public -----------------------------------------------------------------------------
    def request_stop(self, reason: str = "stopped by user") -> None:
        """Stop launching proposals; the ones in flight finish and are stored."""
        if not self._stop_requested:
            self._stop_requested = True
            self._stop_reason = reason

    def cancel_in_flight(self) -> None:
        """Second Ctrl-C: abandon the candidates in flight (nothing finished is lost)."""
        self.request_stop()
        for task in list(self._in_flight):
            task.cancel()

    async def run(self, iterations: int) -> Snapshot:
        """Make proposals until ``iterations`` proposals exist in the store (rejected ones count)."""
        if self.store.count() == 0:
            await self._evaluate_initial()
        target = iterations
        self.snapshot.target = target
        # Proposals stored, then launched by this call (an iteration's resamples take theirs as they go).
        self._launched, self._target = self.store.count("iteration > 0"), target
        next_iteration = self.store.max_iteration() + 1
        # `concurrency` bounds LLM calls; a candidate frees its LLM slot when its reply has arrived,
        # so slow calls overlap evaluations. At most `concurrency + executor.slots` candidates are in
        # flight, so replies never pile up behind busy cores. With concurrency 1 an iteration keeps its
        # slot until its result is in the archive: the next parent is drawn from a settled archive,
        # which is what makes such a run exactly repeatable.
        # The executor's slots are read again before each launch: on Ray they follow the live nodes,
        # so a node added mid-run is used at once and a lost one stops being counted.
        llm_slots = asyncio.Semaphore(self.config.concurrency)
        pipelined = self.config.concurrency > 1
        settled = asyncio.Event()

        def room() -> int:
            return self.config.concurrency + (int(getattr(self.executor, "slots", 1)) if pipelined else 0)

        while self._launched < target and not self._stop_requested:
            while len(self._in_flight) >= room() and not self._stop_requested:
                settled.clear()
                try:  # woken by a finished candidate, or after a second to look at the slots again
                    await asyncio.wait_for(settled.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
            await llm_slots.acquire()
            if (reason := self.evolution.stop_reason()) is not None:
                self.request_stop(reason)
            if self._stop_requested or self._budget_reached() or self._launched >= target:
                llm_slots.release()   # (resamples of the iterations in flight may have taken the budget)
                break
            release_llm_slot = _once(llm_slots.release)
            task = asyncio.create_task(self._proposal(next_iteration, release_llm_slot if pipelined else None))
            self._in_flight.add(task)
            task.add_done_callback(lambda t, release=release_llm_slot: (
                self._in_flight.discard(t), self._stop_on_failure(t), release(), settled.set()))
            next_iteration += 1
            self._launched += 1
        results = await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        for result in [*self._failures, *results]:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        await self._heldout_final()
        if not self._stop_reason:
            self._stop_reason = "iterations reached" if self.store.count("iteration > 0") >= target else "stopped"
        self.snapshot.stop_reason = self._stop_reason
        self.reporter.update(self.snapshot)
        return self.snapshot

    def _stop_on_failure(self, task: asyncio.Task[None]) -> None:
        """An iteration that raised (every LLM call failing, a broken store) stops new launches at once;
        `run` re-raises its error after the ones in flight finish."""
        if not task.cancelled() and (error := task.exception()) is not None:
            self._failures.append(error)
            self.request_stop("failed")

    # -- the initial program ------------------------------------------------------------------
    async def _evaluate_initial(self) -> None:
        code = self.task.initial_program
        result = await self.executor.evaluate(self._job(code))
        record = self.evolution.record_of(code=code, result=result, iteration=0, parent_id=None, island=None,
                                          edit=None, edit_kind=None)
        if record.status != Status.OK:
            self.store.add_candidate(record)
            detail = record.artifacts.get("error") or record.stderr[-500:] or record.status
            raise TaskError(f"{self.task.path}: the initial program fails its own evaluation "
                            f"({record.status}): {detail.strip().splitlines()[-1] if detail.strip() else detail}")
        told = self.evolution.seed(record)
        self._store(told)
        if self.task.has_heldout and self.task.heldout.on_new_best:   # the reference every later best is read against
            await self._heldout(told.program_id, code)

    # -- the LLM part of an iteration: ask, retry a failed edit, resample a near copy, judge -----------
    async def _novel_child(self, iteration: int, client: LLMClient, prompt: Prompt, shown: PromptContext,
                           proposal: Proposal, common: dict[str, Any]) -> EditResult | None:
        """A child that applies and is new enough to evaluate (``common`` then holds its row's fields), or
        None when the iteration ended with stored rejected rows.

        Novelty (ShinkaEvolve, Lange et al. 2025): a child too similar to a program of its island may be
        judged by a model (``[search] novelty_judge``) and is evaluated if it says NOVEL; otherwise it is
        stored ``rejected`` with its reason and its cost, and the iteration asks again from the same parent,
        its prompt's feedback saying which program the last attempt was too close to — up to ``[search]
        novelty_attempts`` proposals in all. Each attempt is one stored row with this iteration's number and
        one proposal of the ``--iterations`` budget (docs/architecture.md, "Proposals and iterations"): a
        resample is made only while the budget has room. Its seed is derived from the proposal's seed and
        the attempt number, so an offline run stays exactly repeatable. A resample is a fresh prompt (the
        proposal's context plus a feedback line per rejected attempt, fitted to the window again) rather than
        a follow-up turn: the same for every client, and no conversation grows past the window.
        """
        parent, base, notes = proposal.parent, dict(common), []
        for attempt in range(self.task.search.novelty_attempts):
            if attempt:
                if not self._reserve_proposal():
                    return None
                context = replace(proposal.context, feedback=(*proposal.context.feedback, *notes))
                fitted = fit_prompt(context, lambda ctx: render_prompt(ctx, task_dir=self.task.path),
                                    _prompt_budget(client))
                if not fitted.fits:    # cannot happen unless the feedback tipped it over: the budget is kept
                    self._launched -= 1
                    return None
                prompt = replace(prompt, system=fitted.system, user=fitted.user, history=(),
                                 seed=derived_seed(proposal.llm_seed, "resample", attempt))
                shown = fitted.context
                common.clear()
                common.update(base, created_at=time.time())
            edit = await self._ask(client, prompt, shown, iteration, common, parent)
            if edit is None:
                return None
            hit = self.evolution.similar_to(edit.code, proposal.island)
            if hit is None:
                return edit
            other_id, cosine, reason = hit
            if self.reviewer.judge_on:
                verdict = await self.reviewer.judge(
                    proposer=client, iteration=iteration, seed=derived_seed(proposal.llm_seed, "judge", attempt),
                    code=edit.code, other_code=self._program(other_id).code, other_id=other_id, cosine=cosine,
                    reason=reason)
                if verdict.reply is not None:   # the judge's call is part of this proposal's cost
                    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
                        common[key] = common.get(key, 0) + getattr(verdict.reply, key)
                if verdict.novel:
                    return edit
                reason = verdict.reason
            self._settle(client, CandidateRecord(code=edit.code, code_hash=code_hash(edit.code), status=Status.REJECTED,
                                                 edit_kind=edit.kind, artifacts={"error": reason}, **common), parent)
            notes.append(f"rejected edit (the previous attempt of this proposal): {reason}")
        return None

    async def _ask(self, client: LLMClient, prompt: Prompt, shown: PromptContext, iteration: int,
                   common: dict[str, Any], parent: CandidateRecord) -> EditResult | None:
        """One proposal's LLM call and the one retry of a failed edit: the applied edit (its tokens, cost,
        reply and explanation added to ``common``), or None when it was stored as a rejected row."""
        reply = await self._call(client, prompt, iteration)
        if reply is None:
            error = self._last_llm_error
            self._settle(client, CandidateRecord(code="", status=Status.REJECTED,
                                                 artifacts={"error": f"LLM call failed: {error}"}, **common), parent)
            if self._llm_successes == 0 and self._llm_failures >= _FAILED_LLM_CALLS_TO_ABORT:
                raise LLMError(f"the first {self._llm_failures} LLM calls all failed, so the run stops "
                               f"(check the API key, the base URL and the model name); last error: {error}")
            return None
        spent = [reply]
        edit = apply_reply(parent.code, reply.text, language=self.task.language)
        if not edit.ok and (edit.kind != "none" or reply.truncated) and client.conversational \
                and self.config.setting("retry_failed_edit"):
            # One retry with the match error, in the same conversation and to the same model
            # (the "reflection" on a failed patch in ShinkaEvolve; Aider's edit-error loop).
            followup = replace(prompt, history=(("assistant", reply.text), ("user", render_retry(
                _reason(edit.reason, reply), reply_format=shown.reply_format, truncated=reply.truncated,
                task_dir=self.task.path, code_fence=shown.code_fence))))
            second = await self._call(client, followup, iteration)
            if second is not None:
                spent.append(second)
                retried = apply_reply(parent.code, second.text, language=self.task.language)
                edit = retried if retried.ok else EditResult(
                    False, reason=f"{_reason(edit.reason, reply)}; after one retry: {_reason(retried.reason, second)}",
                    kind=retried.kind)
                reply = second
        common.update(prompt_tokens=sum(r.prompt_tokens for r in spent), cost_usd=sum(r.cost_usd for r in spent),
                      completion_tokens=sum(r.completion_tokens for r in spent), edit=reply.text,
                      explanation=explanation_of(reply.text))
        if not edit.ok:
            self._settle(client, CandidateRecord(code="", status=Status.REJECTED, edit_kind=edit.kind,
                                                 artifacts={"error": _reason(edit.reason, reply)}, **common), parent)
            return None
        return edit

    # -- one iteration --------------------------------------------------------------------------
    async def _iteration(self, iteration: int, llm_done: Callable[[], None] | None = None) -> None:
        """One proposal; ``llm_done`` (if given) is called once its LLM calls are over."""
        proposal = self.evolution.propose(iteration)
        parent = proposal.parent
        client = self.llm.pick(proposal.llm_seed)
        common: dict[str, Any] = dict(
            iteration=iteration, parent_id=parent.id, island=proposal.island, model=client.name,
            inspirations=tuple(r.id for r in proposal.inspirations), created_at=time.time())
        fitted = fit_prompt(proposal.context, lambda ctx: render_prompt(ctx, task_dir=self.task.path),
                            _prompt_budget(client))
        if not fitted.fits:
            # Not sent to fail: the parent alone is larger than the model's window allows.
            reason = (f"the prompt needs ~{fitted.tokens} tokens but {client.name} leaves "
                      f"{_prompt_budget(client)} for it (context_tokens {client.context_tokens} - max_tokens "
                      f"{client.max_tokens}), even after shrinking ({', '.join(fitted.steps) or 'nothing to cut'})")
            self._settle(client, CandidateRecord(code="", status=Status.REJECTED, artifacts={"error": reason},
                                                 **common), parent)
            return
        prompt = Prompt(system=fitted.system, user=fitted.user, parent_code=parent.code,
                        inspirations=tuple(r.code for r in proposal.inspirations), seed=proposal.llm_seed,
                        iteration=iteration, language=self.task.language)
        edit = await self._novel_child(iteration, client, prompt, fitted.context, proposal, common)
        if edit is None:   # the iteration ended with a stored rejected row (or several: its resamples)
            return
        twin = self.evolution.claim(edit.code)
        if twin is not None:
            reason = (f"duplicate of program #{twin} (not evaluated again)" if twin >= 0 else
                      "duplicate of a program still being evaluated (not evaluated again)")
            self._settle(client, CandidateRecord(code=edit.code, code_hash=code_hash(edit.code), status=Status.REJECTED,
                                                 edit_kind=edit.kind, artifacts={"error": reason}, **common), parent)
            return
        if llm_done is not None:
            llm_done()
        result = await self.executor.evaluate(self._candidate_job(edit.code))
        best_before = self.islands.best()
        told = self._settle(client, self.evolution.record_of(code=edit.code, result=result, edit_kind=edit.kind,
                                                             **common), parent)
        if self.task.has_heldout and self.task.heldout.on_new_best and told.record.fitness is not None \
                and (best_before is None or told.record.fitness > best_before.fitness):
            await self._heldout(told.program_id, edit.code)

    def _reserve_proposal(self) -> bool:
        """One more proposal for an iteration's resample, if the run's budget and stop conditions allow."""
        if (reason := self.evolution.stop_reason()) is not None:
            self.request_stop(reason)
        if self._stop_requested or self._budget_reached() or self._launched >= self._target:
            return False
        self._launched += 1
        return True

    async def _proposal(self, iteration: int, llm_done: Callable[[], None] | None = None) -> None:
        """One iteration, then the written lessons its children made due (``[search] lessons = "llm"``),
        before its slot is freed: with ``concurrency`` 1 the next prompt already shows them."""
        await self._iteration(iteration, llm_done)
        if self._lessons_due is not None:
            due, self._lessons_due = self._lessons_due, None
            lessons = self.evolution.lessons
            written = await self.reviewer.write_lessons(lessons, iteration=iteration,
                                                        seed=derived_seed(self.config.seed, "lessons", due))
            if written.reply is not None:   # not a proposal's row: its cost joins the totals here
                self.snapshot.cost_usd += written.reply.cost_usd
                self.snapshot.tokens += written.reply.prompt_tokens + written.reply.completion_tokens
            if due == lessons.refreshes:    # (else a newer refresh came meanwhile, concurrency > 1: it gets its own)
                if written.lines:
                    lessons.write(written.lines)
                self.store.set_meta("lessons", list(lessons.lines))
                self.store.set_meta("lessons_source", written.source)   # a model's, or why the computed stay
        self._call_counts.pop(iteration, None)

    def _restore_lessons(self) -> None:
        """Resume: the lessons a model wrote for the latest refresh come back (the tallies were replayed)."""
        source = self.store.get_meta("lessons_source") or {}
        lines = self.store.get_meta("lessons") or []
        if source.get("source") == "llm" and source.get("refresh") == self.evolution.lessons.refreshes and lines:
            self.evolution.lessons.write(tuple(lines))

    # -- held-out evaluation -----------------------------------------------------------------------
    async def _heldout(self, program_id: int, code: str) -> None:
        """Score one program on the evaluator's held-out data (``evaluate_heldout``, under ``[heldout]
        timeout_s``) and store the numbers with it as private results: never in a prompt, never in the
        fitness, so the search and its determinism are unchanged (docs/architecture.md, "The task contract")."""
        job = replace(self._job(code), timeout_s=self.task.heldout.timeout_s,
                      extra={**self._job(code).extra, "entry": "heldout"})
        result = await self.executor.evaluate(job)
        values: dict[str, Any] = dict(result.private)
        if result.status != Status.OK:
            values["heldout_status"] = result.status
            values["heldout_error"] = (result.artifacts.get("error") or result.stderr or result.status)[-2000:]
        values["heldout_eval_s"] = result.eval_s
        self.store.set_private(program_id, values)

    async def _heldout_final(self) -> None:
        """The run's best ``[heldout] final_elites`` programs get their held-out numbers (once each)."""
        if not self.task.has_heldout or self.task.heldout.final_elites == 0 or self._failures:
            return
        elites = sorted(self.islands.result_elites(), key=lambda e: (-e.fitness, e.program_id))
        for elite in elites[: self.task.heldout.final_elites]:
            record = self._program(elite.program_id)
            if "heldout_eval_s" not in record.private:
                await self._heldout(elite.program_id, record.code)

    async def _call(self, client: LLMClient, prompt: Prompt, iteration: int) -> Reply | None:
        """One LLM call, stored in ``llm_calls`` whatever happens; None when it failed (the run goes on).

        Calls are numbered within their iteration (the stored ``attempt``: 0, then a retry, a resample, a
        judge's or a lessons call in the order made), so a replay finds each one's reply."""
        number = self._call_counts.get(iteration, 0)
        self._call_counts[iteration] = number + 1
        prompt = replace(prompt, call_index=number)
        try:
            reply = await client.generate(prompt)
        except LLMError as exc:
            self._llm_failures += 1
            self._last_llm_error = str(exc)
            self.store.add_llm_call(iteration=iteration, model=client.name, error=str(exc), **prompt.stored())
            return None
        self._llm_successes += 1
        self.store.add_llm_call(iteration=iteration, **prompt.stored(), **reply.stored())
        s = self.snapshot
        s.prompt_tokens += reply.prompt_tokens
        s.cached_tokens += reply.cached_tokens
        s.saved_usd += reply.saved_usd
        return reply

    def _settle(self, client: LLMClient, record: CandidateRecord, parent: CandidateRecord) -> Told:
        """Tell the core, store the candidate, then tell the LLM (an adaptive ensemble) how its proposal did."""
        lessons = self.evolution.lessons
        refreshes = lessons.refreshes
        told = self.evolution.tell(record)
        self._store(told)
        if lessons.refreshes != refreshes:   # refreshed: `evoforge show` and the notebook read them here
            self.store.set_meta("lessons", list(lessons.lines))
            self.store.set_meta("lessons_source", {"source": "computed", "refresh": lessons.refreshes})
            if self.reviewer.lessons_mode == "llm":   # written after this iteration (`_proposal`), before the next
                self._lessons_due = lessons.refreshes
        self.llm.observe(client.name, improved=_improved(record.fitness, parent.fitness), cost_usd=record.cost_usd)
        bandit = getattr(self.llm, "bandit", None)
        if bandit is not None:
            self.store.set_meta("llm_bandit", bandit.state())
        return told

    def _store(self, told: Told) -> None:
        """The row, its archive insertions and any migration in one transaction, then the run directory's files.

        The core gave the row its id before this write (nothing else writes between: one event-loop
        thread), so the row and its events land together or not at all.
        """
        self.store.add_candidate(told.record, told.events)
        self._after_candidate(told.program_id, told.record)

    def _program(self, program_id: int) -> CandidateRecord:
        record = self.store.candidate(program_id)
        if record is None:
            raise StoreError(f"{self.run_dir.path / 'run.db'}: the archive holds program #{program_id}, "
                             f"which the store does not")
        return record

    def _replay_model_outcomes(self) -> None:
        """Resume: rebuild the ensemble's bandit from the stored candidates, in the order they finished.

        The rows are the record (written with their archive events in one transaction), so the bandit
        comes back exactly as it was — a SIGKILL cannot leave it ahead of or behind the archive.
        """
        if getattr(self.llm, "bandit", None) is None:
            return
        fitness: dict[int | None, float | None] = {}
        for record in self.store.candidates():
            fitness[record.id] = record.fitness
            if record.iteration > 0 and record.model:
                self.llm.observe(record.model, improved=_improved(record.fitness, fitness.get(record.parent_id)),
                                 cost_usd=record.cost_usd, replay=True)

    # -- helpers ----------------------------------------------------------------------------------
    def _job(self, code: str) -> EvaluationJob:
        return job_for(self.task, code)

    def _candidate_job(self, code: str) -> EvaluationJob:
        """The job of a child: the evaluator's probe compares it with the run's evaluated programs, and a
        behavioural duplicate comes back ``rejected`` without its full evaluation (evaluators.runner)."""
        job, known = self._job(code), self.evolution.known_fingerprints()
        return job if known is None else replace(job, extra={**job.extra, "known_fingerprints": known})

    def _after_candidate(self, program_id: int, record: CandidateRecord) -> None:
        s = self.snapshot
        s.statuses[record.status] += 1
        if record.iteration > 0:
            s.done += 1
        if record.status not in (Status.REJECTED,):
            self._evaluated_since_start += 1
        elapsed = max(self._clock() - self._started, 1e-9)
        s.evals_per_s = self._evaluated_since_start / elapsed
        stats = self.islands.stats()
        s.coverage, s.qd_score = stats.coverage, stats.qd_score
        s.cost_usd += record.cost_usd
        s.tokens += record.prompt_tokens + record.completion_tokens
        if record.iteration == 0 and record.status == Status.OK:
            s.initial_score = record.score
        if record.status == Status.OK and record.score is not None:
            better = (s.best_score is None or self.task.sign * record.score > self.task.sign * s.best_score)
            if better:
                s.best_score = record.score
                self.run_dir.write_best(record.code, suffix=Path(self.task.program_name).suffix or ".py")
        self.run_dir.append_event(program_id, record)
        self.reporter.update(s)

    def _load_snapshot(self) -> None:
        s = self.snapshot
        s.statuses.update(self.store.status_counts())
        s.done = self.store.count("iteration > 0")
        initial = next(iter(self.store.candidates(where="iteration = 0")), None)
        s.initial_score = initial.score if initial else None
        best = self.islands.best()
        if best is not None:
            s.best_score = self.task.sign * best.fitness
        totals = self.store.totals()
        s.cost_usd = totals["cost_usd"]
        s.tokens = int(totals["prompt_tokens"] + totals["completion_tokens"])
        s.prompt_tokens, s.cached_tokens, s.saved_usd = (int(totals["prompt_tokens"]), int(totals["cached_tokens"]),
                                                         float(totals["saved_usd"]))
        stats = self.islands.stats()
        s.coverage, s.qd_score = stats.coverage, stats.qd_score

    def _budget_reached(self) -> bool:
        """Checked before each launch: the first budget reached stops new proposals; those in flight finish."""
        if self.config.max_cost_usd is not None and self.snapshot.cost_usd >= self.config.max_cost_usd:
            self.request_stop(f"cost budget reached (${self.snapshot.cost_usd:.4f} of ${self.config.max_cost_usd:g})")
        elif self.config.max_total_tokens is not None and self.snapshot.tokens >= self.config.max_total_tokens:
            self.request_stop(f"token budget reached ({self.snapshot.tokens} of {self.config.max_total_tokens} tokens)")
        elif self.config.max_time_s is not None and self._clock() - self._started >= self.config.max_time_s:
            self.request_stop(f"time budget reached ({self.config.max_time_s:g} s)")
        return self._stop_requested


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` made idempotent: a slot is freed by the first of its two possible releasers."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()
    return call


def _prompt_budget(client: LLMClient) -> int | None:
    """Prompt tokens ``client`` can take: its window less the completion it may write (None: no limit)."""
    return None if not client.context_tokens else max(client.context_tokens - client.max_tokens, 0)


def _reason(reason: str, reply: Reply) -> str:
    if reply.truncated:
        return f"the reply was cut off at max_tokens ({reply.completion_tokens} completion tokens): {reason}"
    return reason


def _improved(child: float | None, parent: float | None) -> bool:
    """The bandit's reward: the child beats its parent (fitness is sign-adjusted, so higher is better)."""
    return child is not None and parent is not None and child > parent
