"""What the search has learned so far, fed forward into later prompts (pure; no I/O).

Each evaluated child is classified by the *kind* of change that made it from its parent (read from the two
program texts, so it works for any operator: an LLM, the offline mutator, a human), and its fitness delta
against the parent is tallied per kind. Every ``every`` proposals the tallies become a few short lines
("constant tweaks: 14 tried, 5 improved their parent (best +0.021), 3 failed") that the prompt shows, so a
model learns which kinds of change have paid off on this task — the ``meta-recommendations`` of
ShinkaEvolve (Lange et al. 2025) and the "insights" of ReEvo's reflection (Ye et al. 2024), computed here
from stored diffs and score deltas rather than written by a model.

Also `explanation_of`: the prose of an LLM reply outside its edits, stored with the child as its rationale.

With ``[search] lessons = "llm"`` a model rewrites each refresh as a few lessons of its own from the tallies
and the `recent` changes (`evoforge.engine.reflection`, the driver's call); `write` installs them, and they
are what `lines` shows until the next refresh. A failed or empty call installs nothing: the computed lines
stay.
"""

from __future__ import annotations

import collections
import difflib
import re
from dataclasses import dataclass

__all__ = ["KINDS", "Change", "Lessons", "change_kind", "explanation_of"]

#: Kinds of change, most specific first.
KINDS = ("constant", "operator", "insertion", "deletion", "restructure")
_LABELS = {"constant": "constant tweaks", "operator": "operator or comparison swaps",
           "insertion": "added statements", "deletion": "removed statements", "restructure": "rewritten logic"}
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATOR = re.compile(r"<=|>=|==|!=|\*\*|//|[-+*/<>%]|\bmin\b|\bmax\b|\bminimum\b|\bmaximum\b|\band\b|\bor\b")
_EDIT_BLOCK = re.compile(r"^<{7}\s*SEARCH.*?^>{7}\s*REPLACE[ \t]*$", re.MULTILINE | re.DOTALL)
_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MAX_EXPLANATION_CHARS = 1500
RECENT_CHANGES = 8         # what a written-lessons prompt shows besides the tallies


def explanation_of(reply: str) -> str | None:
    """The reply's own words about its change: the text outside SEARCH/REPLACE blocks and code fences,
    whitespace-collapsed and cut to a paragraph; None when there is none (the offline operator)."""
    prose = _FENCE.sub(" ", _EDIT_BLOCK.sub(" ", reply))
    prose = " ".join(prose.split())
    return prose[:_MAX_EXPLANATION_CHARS] or None


def change_kind(parent: str, child: str) -> str:
    """The coarsest honest label for how ``child`` differs from ``parent`` (one of `KINDS`)."""
    old, new = parent.splitlines(), child.splitlines()
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += old[i1:i2]
            added += new[j1:j2]
    if len(removed) == len(added):
        if [_NUMBER.sub("N", s) for s in removed] == [_NUMBER.sub("N", s) for s in added]:
            return "constant"
        if [_OPERATOR.sub("O", s) for s in removed] == [_OPERATOR.sub("O", s) for s in added]:
            return "operator"
    if not removed or (added and len(added) > len(removed) and all(r in added for r in removed)):
        return "insertion"
    if not added or (len(removed) > len(added) and all(a in removed for a in added)):
        return "deletion"
    return "restructure"


@dataclass(frozen=True)
class Change:
    """One evaluated child as a lessons prompt shows it: the kind of change (its label), whether it ran,
    its fitness gain over its parent (sign-adjusted: positive is better; None when either has none) and
    the proposer's explanation (model-written text: a prompt quotes it as data)."""

    kind: str
    ok: bool
    gain: float | None
    explanation: str | None = None

    @property
    def outcome(self) -> str:
        if not self.ok:
            return "failed to run or was invalid"
        if self.gain is None:
            return "ran (no parent score to compare)"
        return f"improved on its parent by {self.gain:.4g}" if self.gain > 0 else \
            f"did not improve on its parent ({self.gain:.4g})"


@dataclass
class _Tally:
    tried: int = 0
    improved: int = 0
    failed: int = 0
    best_gain: float = 0.0


class Lessons:
    """Per-kind tallies of evaluated children; `lines` is what the prompts show, refreshed every ``every``
    tallied children (0: never), so the text is fixed between refreshes and a run stays repeatable."""

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self._tallies: dict[str, _Tally] = collections.defaultdict(_Tally)
        self._seen = 0
        self._lines: tuple[str, ...] = ()
        self._written: tuple[str, ...] = ()
        self._written_at = -1
        self._recent: collections.deque[Change] = collections.deque(maxlen=RECENT_CHANGES)

    @property
    def lines(self) -> tuple[str, ...]:
        """What prompts show: the lessons written for the latest refresh, else the computed tallies."""
        return self._written if self._written_at == self.refreshes else self._lines

    @property
    def computed(self) -> tuple[str, ...]:
        """The tally lines of the latest refresh (what a lessons prompt is given)."""
        return self._lines

    @property
    def refreshes(self) -> int:
        """How many times the lines were refreshed (resume compares it): one per ``every`` tallied children."""
        return self._seen // self.every if self.every > 0 else 0

    @property
    def recent(self) -> tuple[Change, ...]:
        """The latest evaluated children, oldest first."""
        return tuple(self._recent)

    def write(self, lines: tuple[str, ...] | list[str]) -> None:
        """Install model-written lessons for the latest refresh (until the next one)."""
        self._written, self._written_at = tuple(lines), self.refreshes

    def observe(self, *, parent_code: str, child_code: str, parent_fitness: float | None,
                child_fitness: float | None, ok: bool, explanation: str | None = None) -> bool:
        """Tally one evaluated child; True when the lessons were refreshed (the driver then stores them)."""
        if self.every <= 0 or not child_code:
            return False
        kind = change_kind(parent_code, child_code)
        tally = self._tallies[kind]
        tally.tried += 1
        gain = None if child_fitness is None or parent_fitness is None else child_fitness - parent_fitness
        if not ok or child_fitness is None:
            tally.failed += 1
        elif gain is not None and gain > 0:
            tally.improved += 1
            tally.best_gain = max(tally.best_gain, gain)
        self._recent.append(Change(_LABELS[kind], ok and child_fitness is not None, gain, explanation))
        self._seen += 1
        if self._seen % self.every:
            return False
        self._lines = self._summary()
        return True

    def _summary(self) -> tuple[str, ...]:
        rows = sorted(self._tallies.items(), key=lambda kv: (-kv[1].improved / kv[1].tried, KINDS.index(kv[0])))
        out = []
        for kind, t in rows:
            gain = f" (best gain {t.best_gain:.3g})" if t.improved else ""
            failed = f", {t.failed} failed to run or were invalid" if t.failed else ""
            out.append(f"{_LABELS[kind]}: {t.tried} tried, {t.improved} improved on their parent{gain}{failed}")
        return tuple(out)
