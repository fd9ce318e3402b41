"""The evolutionary decisions of a run, synchronous and free of I/O: ask what to try next, tell what happened.

`Evolution` is the core that `evoforge.engine.loop.Engine` drives (docs/architecture.md, "The engine: core
and driver"). It never awaits, never calls an LLM or the sandbox, and never touches the store: the driver
hands it the records it asks for (``lookup``) and writes what it returns. One iteration is::

    proposal = evolution.propose(iteration)          # island, parent, inspirations, LLM seed, prompt context
    ...the driver renders the prompt, calls the LLM, applies the edit...
    evolution.claim(code)                            # None, or the id of an identical program already stored
    ...the driver evaluates the child, passing evolution.known_fingerprints()...
    record = evolution.record_of(code=code, result=result, **fields)   # fitness and descriptor vector
    told = evolution.tell(record)                    # id, archive insertion, ring migration, feedback
    store.add_candidate(told.record, told.events)    # the driver's one transaction per candidate

Reproducibility: every random choice of an iteration comes from ``np.random.default_rng([seed, iteration])``
(the prompt's shape from its own stream), so the same sequence of ``propose``/``tell`` calls gives the same
proposals whatever the timing; with one candidate in flight a run is exactly repeatable.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from evoforge.archive.islands import IslandArchives
from evoforge.archive.pareto import ParetoFronts, objective_values
from evoforge.archive.store import ArchiveEvent, CandidateRecord
from evoforge.engine.config import RunConfig
from evoforge.engine.edits import code_hash
from evoforge.engine.features import builtin_features
from evoforge.engine.languages import language_named
from evoforge.engine.lessons import Lessons
from evoforge.engine.novelty import Embedder, NoveltyFilter
from evoforge.engine.task import Task
from evoforge.evaluators.types import EvaluationResult, Status
from evoforge.prompts import ProgramView, PromptContext

__all__ = ["Evolution", "Proposal", "Told", "FEEDBACK_PER_PARENT", "BASELINES"]

#: How many recent failures of edits to one parent go back into that parent's next prompt.
FEEDBACK_PER_PARENT = 3
_SHAPE_STREAM = 0x5A4E          # the prompt's shape (diff | rewrite | crossover) has its own random stream
_PARETO_STREAM = 0x9A2E         # so does drawing a parent from the Pareto front (tasks without objectives: unused)
_CLAIMED = -1                   # a hash whose program is being evaluated (not stored yet)
_RESET_STREAM = 0x2E5E          # which surviving island reseeds a reset one has its own random stream
BASELINES = ("best-of-n", "random-parent")


@dataclass(frozen=True)
class Proposal:
    """What one iteration will try: an edit of ``parent`` on ``island``, shown ``inspirations``.

    ``llm_seed`` picks the ensemble member and seeds a stochastic operator; ``context`` is the prompt's
    content (the driver renders and fits it to the chosen model's window).
    """

    iteration: int
    island: int
    parent: CandidateRecord
    inspirations: tuple[CandidateRecord, ...]
    llm_seed: int
    context: PromptContext


@dataclass(frozen=True)
class Told:
    """What `Evolution.tell` did with a result: the record with its id, and the archive events to store
    with it in one transaction (its insertion(s), and the ring migration it triggered, if any)."""

    record: CandidateRecord
    events: tuple[ArchiveEvent, ...]

    @property
    def program_id(self) -> int:
        assert self.record.id is not None
        return self.record.id

    @property
    def migrated(self) -> bool:
        return any(e.kind == "migrate" for e in self.events)


class Evolution:
    """Island MAP-Elites with LLM mutation, as decisions only (AlphaEvolve, Novikov et al. 2025 §2).

    Args:
        task: The task (descriptors, archive settings, objective sign, prompt text).
        config: The run config (``seed``, ``reply_format`` and the prompt-shape shares).
        islands: The archives, empty or rebuilt from a stored run (`evoforge.engine.loop.rebuild_islands`).
        lookup: A program's record by id (the driver reads the store; a test passes ``dict.__getitem__``).
        next_program_id: The id the next told candidate gets (1 for an empty run).
        done: Proposals already told (a resumed run's count), which times the migrations.
        hashes: ``code_hash -> program id`` of the programs already evaluated (duplicate detection).
        failures: Stored failed proposals, oldest first, so a resumed run prompts exactly as the original.
        front_records: Stored ok programs, oldest first, that rebuild the Pareto fronts of a task with
            ``[[objectives]]`` (`evoforge.archive.pareto`); ignored otherwise.
        history: Every stored proposal (iteration > 0), oldest first: the children per parent (weighted
            selection), the valid programs (the random-parent baseline) and the proposals since the last
            new best (patience), so a resumed run decides exactly as the original.
        embedder: What novelty rejection embeds programs with (default: `HashedNgramEmbedder`, local).
        fingerprints: ``functional fingerprint -> program id`` of the ``ok`` programs already evaluated
            (behavioural duplicate detection, Gillard et al. 2023; the sandbox computes the fingerprints).
    """

    def __init__(self, *, task: Task, config: RunConfig, islands: IslandArchives,
                 lookup: Callable[[int], CandidateRecord], next_program_id: int = 1, done: int = 0,
                 hashes: Mapping[str, int] | None = None, failures: Iterable[CandidateRecord] = (),
                 history: Iterable[CandidateRecord] = (), embedder: Embedder | None = None,
                 front_records: Iterable[CandidateRecord] = (),
                 fingerprints: Mapping[str, int] | None = None) -> None:
        self.task = task
        self.config = config
        self.islands = islands
        self._lookup = lookup
        self._next_id = int(next_program_id)
        self._done = int(done)
        self._names = [d.name for d in task.descriptors]
        self._hashes: dict[str, int] = dict(hashes or {})
        self._fingerprints: dict[str, int] = dict(fingerprints or {})
        self._feedback: dict[int, collections.deque[str]] = collections.defaultdict(
            lambda: collections.deque(maxlen=FEEDBACK_PER_PARENT))
        for record in failures:
            self._remember_failure(record)
        self.novelty = NoveltyFilter(task.search.novelty_threshold, embedder, code_of=lambda i: self._lookup(i).code)
        self.lessons = Lessons(task.search.lessons_every if config.baseline is None else 0)
        self._children: collections.Counter[int] = collections.Counter()
        self._valid: list[int] = [1] if next_program_id > 1 else []   # the initial program is #1
        best = islands.best()
        self._best = best.fitness if best is not None else None
        self._since_best = 0
        for record in history:
            assert record.id is not None
            self._count(record, record.id)
        if config.baseline not in (None, *BASELINES):
            raise ValueError(f"unknown baseline {config.baseline!r} (known: {', '.join(BASELINES)})")
        self.fronts = (ParetoFronts(objectives=task.objectives, islands=task.archive.islands)
                       if task.objectives else None)
        for record in front_records:
            if record.id is not None and record.status == Status.OK:
                homes = range(task.archive.islands) if record.island is None else [record.island]
                self._add_to_fronts(record, record.id, homes)

    @property
    def done(self) -> int:
        """Proposals told so far (rejected ones included; the initial program is not a proposal)."""
        return self._done

    def feedback(self, parent_id: int) -> list[str]:
        """The recent failures of edits to ``parent_id``, oldest first (what its next prompt shows)."""
        return list(self._feedback.get(parent_id, ()))

    def stop_reason(self) -> str | None:
        """Why the run should stop early (``[stop]`` in task.toml), or None: the target score is reached, or
        ``patience`` proposals in a row brought no new best."""
        stop = self.task.stop
        if stop.target_score is not None and self._best is not None \
                and self._best >= self.task.sign * stop.target_score:
            return f"target score {stop.target_score:g} reached"
        if stop.patience and self._since_best >= stop.patience:
            return f"no new best in {self._since_best} proposals (patience {stop.patience})"
        return None

    # -- ask --------------------------------------------------------------------------------------
    def propose(self, iteration: int) -> Proposal:
        """Choose the island (round robin), the parent, the inspirations and the LLM seed of ``iteration``.

        Baselines (``RunConfig.baseline``), so a user can show evolution helped: ``best-of-n`` proposes
        every child from the initial program with no archive context (no inspirations, no feedback);
        ``random-parent`` draws the parent uniformly among every valid program so far.
        """
        rng = np.random.default_rng([self.config.seed, iteration])
        island = iteration % self.task.archive.islands
        baseline = self.config.baseline
        if baseline == "best-of-n":
            parent = self._lookup(1)
            context = replace(self._context(iteration, parent, ()), feedback=())
            return Proposal(iteration=iteration, island=island, parent=parent, inspirations=(),
                            llm_seed=int(rng.integers(0, 2**62)), context=context)
        if baseline == "random-parent" and self._valid:
            parent_id: int | None = self._valid[int(rng.integers(len(self._valid)))]
        else:
            parent_id = self.islands.sample_parent(island, rng, children=self._children)
        if self.fronts is not None and baseline is None:
            # A share of parents from the island's Pareto front, drawn from a stream of its own so the
            # other draws of the iteration stay what they are.
            pareto = np.random.default_rng([self.config.seed, iteration, _PARETO_STREAM])
            if pareto.random() < self.task.pareto_parent_share:
                parent_id = self.fronts.sample(island, pareto) or parent_id
        if parent_id is None:  # an island emptied by nothing but never seeded: fall back to the best
            best = self.islands.best()
            parent_id = best.program_id if best else 1
        inspiration_ids = self.islands.sample_inspirations(
            island, self.task.archive.num_inspirations, rng, exclude=[parent_id])
        llm_seed = int(rng.integers(0, 2**62))
        parent = self._lookup(parent_id)
        inspirations = tuple(self._lookup(i) for i in inspiration_ids)
        return Proposal(iteration=iteration, island=island, parent=parent, inspirations=inspirations,
                        llm_seed=llm_seed, context=self._context(iteration, parent, inspirations))

    def _context(self, iteration: int, parent: CandidateRecord,
                 inspirations: Sequence[CandidateRecord]) -> PromptContext:
        """The prompt's content; its shape (diff, full rewrite, crossover) is drawn from its own stream,
        so the shares change nothing else of the iteration (the offline operator's runs stay as they were)."""
        u = float(np.random.default_rng([self.config.seed, iteration, _SHAPE_STREAM]).random())
        crossover, rewrite = self.config.setting("crossover_share"), self.config.setting("full_rewrite_share")
        reply_format, views = self.config.reply_format, [_view(r) for r in inspirations]
        second = None
        if u < crossover and views:
            second, views = views[0], views[1:]
        elif crossover <= u < crossover + rewrite:
            reply_format = "rewrite"
        assert parent.id is not None
        language = language_named(self.task.language)
        return PromptContext(
            task_name=self.task.name, task_description=self.task.description, parent=_view(parent),
            inspirations=views, feedback=self.feedback(parent.id), reply_format=reply_format,
            objective=self.task.objective, second_parent=second, lessons=self.lessons.lines,
            code_fence=language.fence, marker_comment=language.comment, multi_file=self.task.multi_file)

    def too_similar(self, code: str, island: int) -> str | None:
        """Why ``code`` should not be evaluated because it is nearly a program of ``island`` (the reason, for
        the rejected row and the parent's feedback), or None (ShinkaEvolve's novelty rejection)."""
        hit = self.similar_to(code, island)
        return None if hit is None else hit[2]

    def similar_to(self, code: str, island: int) -> tuple[int, float, str] | None:
        """`too_similar` with the closest program's id and cosine: ``(program_id, cosine, reason)``."""
        hit = self.novelty.closest(code, (e.program_id for e in self.islands.elites(island)))
        if hit is None:
            return None
        return (hit[0], hit[1], f"too similar to program #{hit[0]} of island {island} (cosine {hit[1]:.4f} >= "
                                f"novelty_threshold {self.novelty.threshold:g}): not evaluated; propose a more "
                                f"different change")

    def claim(self, code: str) -> int | None:
        """None if ``code`` is new — it is then claimed, so a concurrent twin is not evaluated either —
        else the id of the identical program (``-1``: one still being evaluated)."""
        digest = code_hash(code)
        if digest in self._hashes:
            return self._hashes[digest]
        self._hashes[digest] = _CLAIMED
        return None

    def known_fingerprints(self) -> dict[str, int] | None:
        """What the sandbox compares a child's functional fingerprint with (``job.extra["known_fingerprints"]``):
        fingerprint -> id of every ``ok`` program of the run; None when the task does not ask for fingerprints
        (``[search] fingerprint = false``, or an evaluator without ``probe``), so no probe runs."""
        if not (self.task.search.fingerprint and self.task.has_probe):
            return None
        return dict(self._fingerprints)

    # -- tell -------------------------------------------------------------------------------------
    def record_of(self, *, code: str, result: EvaluationResult, **fields: Any) -> CandidateRecord:
        """Turn an evaluation into a row with its fitness (sign-adjusted: higher is better).

        An ``ok`` result missing a declared descriptor becomes an ``error``: it has no place in the archive.
        ``fields`` are the row's other columns (iteration, parent_id, island, model, tokens, ...).
        """
        features = dict(builtin_features(code, self._names))
        features.update(result.features)
        status, artifacts = result.status, dict(result.artifacts)
        # Names the task marks private (task.toml ``private``) join what the evaluator marked itself.
        private = dict(result.private)
        metrics = dict(result.metrics)
        for table in (metrics, artifacts):
            for name in [n for n in table if n != "error" and self.task.is_private(n)]:
                private[name] = table.pop(name)
        fitness = None
        if status == Status.OK:
            missing = [n for n in self._names if n not in features]
            absent = [o.name for o in self.task.objectives if o.name not in result.metrics and o.name not in features]
            if absent and not missing:
                status = Status.ERROR
                artifacts["error"] = (f"the evaluator returned no objective {absent[0]!r}, declared in task.toml "
                                      f"[[objectives]] (return it as a metric; metrics returned: "
                                      f"{sorted(result.metrics)})")
            elif missing:
                status = Status.ERROR
                artifacts["error"] = (f"the evaluator returned no feature {missing[0]!r}, declared as a "
                                      f"descriptor in task.toml (features returned: {sorted(result.features)})")
            else:
                assert result.score is not None
                fitness = self.task.sign * float(result.score)
        return CandidateRecord(
            code=code, code_hash=code_hash(code), status=status,
            score=result.score if status == Status.OK else None, fitness=fitness, features=features,
            metrics=metrics, artifacts=artifacts, stderr=result.stderr[-8000:],
            stage=result.stage, eval_s=result.eval_s, private=private, placement=dict(result.placement),
            fingerprint=result.fingerprint, **fields)

    def seed(self, record: CandidateRecord) -> Told:
        """The initial program, evaluated ``ok``: AlphaEvolve seeds every island with it."""
        if record.status != Status.OK or record.fitness is None:
            raise ValueError(f"expected an ok initial program but got status {record.status!r}")
        told = self._commit(record, islands=range(self.task.archive.islands), migrate=False)
        self._valid = [told.program_id]
        self._best, self._since_best = record.fitness, 0
        return told

    def tell(self, record: CandidateRecord) -> Told:
        """A proposal's outcome (evaluated or rejected): its id, its insertion into its island when it is
        ``ok``, the ring migration every ``migration_interval`` proposals, and feedback for its parent."""
        islands = [record.island] if record.status == Status.OK and record.fitness is not None else []
        interval = self.task.archive.migration_interval
        self._done += 1
        migrate = self.task.archive.islands > 1 and interval > 0 and self._done % interval == 0
        reset = self.task.archive.reset_interval
        told = self._commit(record, islands=[i for i in islands if i is not None], migrate=migrate,
                            reset=self.task.archive.islands > 1 and reset > 0 and self._done % reset == 0)
        self._count(told.record, told.program_id)
        return told

    def _count(self, record: CandidateRecord, program_id: int) -> None:
        """A told proposal's part in selection and stopping: its parent's child count, the valid programs,
        and the proposals since the last new best."""
        if record.parent_id is not None:
            self._children[record.parent_id] += 1
            if record.status != Status.REJECTED and record.code and self.lessons.every:
                parent = self._lookup(record.parent_id)
                self.lessons.observe(parent_code=parent.code, child_code=record.code, parent_fitness=parent.fitness,
                                     child_fitness=record.fitness, ok=record.status == Status.OK,
                                     explanation=record.explanation)
        if record.status == Status.OK and record.fitness is not None:
            self._valid.append(program_id)
            if self._best is None or record.fitness > self._best:
                self._best, self._since_best = record.fitness, 0
                return
        self._since_best += 1

    def _commit(self, record: CandidateRecord, *, islands: Iterable[int], migrate: bool,
                reset: bool = False) -> Told:
        """Give the record its id and insert it; the driver stores the row and these events together, so a
        SIGKILL never leaves a migration half-recorded (which would make a resumed run diverge)."""
        program_id = self._next_id
        self._next_id += 1
        vector = [record.features[n] for n in self._names] if record.fitness is not None else []
        events = []
        for island in islands:
            assert record.fitness is not None
            insertion = self.islands.add(island, program_id, record.fitness, vector)
            events.append(ArchiveEvent("insert", program_id, island, insertion.status, insertion.improvement,
                                       insertion.cell, iteration=record.iteration))
        if migrate:
            # Ring migration between islands (FunSearch, Romera-Paredes et al. 2023; AlphaEvolve §2.4).
            events.extend(
                ArchiveEvent("migrate", m.program_id, m.to_island, m.insertion.status, m.insertion.improvement,
                             m.insertion.cell, from_island=m.from_island, iteration=record.iteration)
                for m in self.islands.migrate())
        if record.fitness is not None:
            self._add_to_fronts(record, program_id, islands)
        if reset:
            # FunSearch resets its weakest islands so a stagnant one restarts from a strong program.
            rng = np.random.default_rng([self.config.seed, self._done, _RESET_STREAM])
            for island, seed_id, insertion in self.islands.reset_weakest(rng):
                events.append(ArchiveEvent("reset", seed_id, island, "reset", iteration=record.iteration))
                events.append(ArchiveEvent("insert", seed_id, island, insertion.status, insertion.improvement,
                                           insertion.cell, iteration=record.iteration))
        if record.code_hash and (record.status != Status.REJECTED or record.fingerprint):
            # Evaluated, or a behavioural duplicate (rejected by the sandbox with its fingerprint): a later
            # copy of its text is an exact duplicate of it, as after a resume (Store.hashes).
            self._hashes[record.code_hash] = program_id
        if record.status == Status.OK and record.fingerprint:
            self._fingerprints.setdefault(record.fingerprint, program_id)
        self._remember_failure(record)
        return Told(record=replace(record, id=program_id), events=tuple(events))

    def _add_to_fronts(self, record: CandidateRecord, program_id: int, islands: Iterable[int]) -> None:
        if self.fronts is None:
            return
        values = objective_values(self.fronts.objectives, record.metrics, record.features)
        if values is not None:
            for island in islands:
                self.fronts.add(island, program_id, values)

    def _remember_failure(self, record: CandidateRecord) -> None:
        """Why an edit of a parent failed goes back to the LLM in that parent's next prompt."""
        if record.status == Status.OK or record.parent_id is None or record.edit is None:
            return
        detail = (record.artifacts.get("error") or record.stderr or record.status).strip()
        prefix = "rejected edit" if record.status == Status.REJECTED else record.status
        self._feedback[record.parent_id].append(f"{prefix}: {detail[-300:]}")


def _view(record: CandidateRecord) -> ProgramView:
    return ProgramView(code=record.code, score=record.score, metrics=dict(record.metrics),
                       features=dict(record.features), artifacts=dict(record.artifacts), program_id=record.id)
