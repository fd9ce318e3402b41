"""Online bin packing (FunSearch, Romera-Paredes et al., Nature 2023): the packing loop, the checks and the score.

The candidate supplies only ``priority(item, bins) -> scores``; this harness owns the packing loop, so a
candidate cannot misreport the number of bins. The loop is FunSearch's ``online_binpack``::

    bins = np.full(num_items, capacity)              # one slot per item, remaining capacities
    for item in items:                               # items arrive online, in order
        valid = np.nonzero(bins - item >= 0)[0]      # bins the item fits into
        scores = priority(item, bins[valid])         # one score per feasible bin
        bins[valid[np.argmax(scores)]] -= item       # highest score wins, ties -> lowest index
    used = (bins != capacity).sum()

``scores`` must convert to a real (bool/int/float) array of shape ``(len(valid),)`` with every value finite;
anything else makes the candidate invalid (the message names the item and what was wrong). A scalar is
rejected too (write ``np.zeros_like(bins)``, not ``0``). Exceptions raised by the candidate propagate as
`evoforge.evaluators.candidate.CandidateRaised` (the engine records them as errors).

Score (maximise): ``-mean(bins used)`` over training instances generated with a fixed seed from the task's
distribution. Held-out metrics: the fraction of excess bins ``(mean_bins - mean_LB) / mean_LB`` with
``LB = ceil(sum(items) / capacity)`` per instance (a ratio of data-set means) on the task's held-out sets,
reported in percent. They never enter the score.

The candidate runs in its own process (`evoforge.evaluators.candidate.CandidateSession`, one per evaluation):
``priority`` is called there with copies of ``item`` and ``bins`` and only plain data comes back, so it
cannot patch this module, ``numpy`` or ``builtins``, read the items still to come from this loop's frame,
or return an object that lies (a ``float`` subclass, an object array). A reply that is not plain data is
invalid; a candidate that raises or crashes is an error, one that hangs a timeout. Standard library + numpy.

Shared by ``tasks/bin_packing_or`` and ``tasks/bin_packing_weibull``, whose evaluators hold only a
`BinPackingTask` (distribution, capacity, training set size, held-out files).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from evoforge.evaluators.candidate import CandidateInvalid, CandidateSession

__all__ = ["BinPackingTask", "evaluate_priority", "online_binpack", "count_bins", "lower_bound", "load_dataset",
           "train_instances", "heldout_excess", "CandidateViolation", "evaluate_heldout_priority", "probe_priority",
           "probe_instances", "PROBE_SEED"]

PROBE_SEED = 11                 # the probe's small instances (functional fingerprint): fixed, never the training ones
PROBE_ITEMS = (20, 40)
CALL_TIMEOUT_S = 10.0           # one priority() call; the whole evaluation is bounded by task.toml's timeout_s
IMPORT_TIMEOUT_S = 30.0

# Bound at import (defence in depth: the candidate runs in another process anyway).
_asarray = np.asarray
_full = np.full
_nonzero = np.nonzero
_argmax = np.argmax
_isfinite = np.isfinite
_all = np.all
_int64 = np.int64
_float64 = np.float64
_fsum = math.fsum
_len = len
_int = int
_sum = sum

Instances = list[tuple[list[int], int]]


@dataclass(frozen=True)
class BinPackingTask:
    """One bin-packing task's data.

    Attributes:
        distribution: The item distribution in words (shown to the LLM in the summary artifact).
        capacity: Bin capacity of the training instances.
        train_seed: Seed of the training instances (fixed: every candidate sees the same ones).
        train_instances: Number of training instances.
        train_items: Items per training instance.
        generate_items: ``(rng, n) -> n item sizes`` from the task's distribution.
        heldout_sets: Metric suffix -> held-out data file, relative to ``data_dir``.
        data_dir: The task folder (where ``heldout_sets`` are).
    """

    distribution: str
    capacity: int
    train_seed: int
    train_instances: int
    train_items: int
    generate_items: Callable[[np.random.Generator, int], list[int]]
    heldout_sets: Mapping[str, str]
    data_dir: Path


class CandidateViolation(ValueError):
    """The candidate's ``priority`` returned something unusable."""


def _check_scores(raw: Any, n_valid: int, item: int, step: int) -> np.ndarray:
    try:
        arr = _asarray(raw)
    except Exception as exc:  # noqa: BLE001 - anything a candidate hands back
        raise CandidateViolation(f"item #{step} (size {item}): priority() returned something that is not an "
                                 f"array: {type(exc).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise CandidateViolation(f"item #{step} (size {item}): priority() must return real numbers, but the "
                                 f"array dtype is {arr.dtype} (kind {arr.dtype.kind!r})")
    if arr.shape != (n_valid,):
        raise CandidateViolation(f"item #{step} (size {item}): priority() must return one score per feasible bin, "
                                 f"shape ({n_valid},), but returned shape {arr.shape}"
                                 + (" (a scalar: use np.zeros_like(bins) etc.)" if arr.ndim == 0 else ""))
    if arr.dtype.kind == "f" and not _all(_isfinite(arr)):
        raise CandidateViolation(f"item #{step} (size {item}): priority() returned non-finite scores "
                                 f"(NaN or inf) for {n_valid} feasible bins")
    return arr


def online_binpack(items: list[int], capacity: int, priority: Callable[..., Any],
                   trace: list[list[float]] | None = None) -> np.ndarray:
    """FunSearch's online packing loop. Returns the remaining capacities (one slot per item); the scores of
    each call, as floats, are appended to ``trace`` when given (the probe's functional fingerprint)."""
    bins = _full(_len(items), capacity, dtype=_int64)
    for step, item in enumerate(items):
        valid = _nonzero(bins >= item)[0]
        try:
            raw = priority(item, bins[valid])
        except CandidateInvalid as exc:            # not plain data (an object array, a float subclass...)
            raise CandidateViolation(f"item #{step} (size {item}): {exc}") from None
        scores = _check_scores(raw, _len(valid), item, step)
        bins[valid[_argmax(scores)]] -= item
        if trace is not None:
            trace.append(scores.astype(_float64).tolist())
    return bins


def count_bins(items: list[int], capacity: int, priority: Callable[..., Any]) -> tuple[int, int]:
    """(bins used, bins filled exactly to capacity)."""
    bins = online_binpack(items, capacity, priority)
    return _int((bins != capacity).sum()), _int((bins == 0).sum())


def lower_bound(items: list[int], capacity: int) -> int:
    return -(-_int(_sum(items)) // capacity)           # ceil(sum / capacity), exact in integers


def load_dataset(task: BinPackingTask, name: str) -> Instances:
    """A held-out set (key of ``task.heldout_sets``) as a list of ``(items, capacity)``."""
    raw = json.loads((task.data_dir / task.heldout_sets[name]).read_text())
    return [(list(inst["items"]), _int(inst["capacity"])) for _, inst in sorted(raw.items())]


def train_instances(task: BinPackingTask) -> Instances:
    rng = np.random.default_rng(task.train_seed)
    return [(task.generate_items(rng, task.train_items), task.capacity) for _ in range(task.train_instances)]


def _excess(instances: Instances, priority: Callable[..., Any]) -> float:
    used = [count_bins(items, cap, priority)[0] for items, cap in instances]
    lbs = [lower_bound(items, cap) for items, cap in instances]
    mean_used, mean_lb = _fsum(used) / _len(used), _fsum(lbs) / _len(lbs)
    return (mean_used - mean_lb) / mean_lb


def heldout_excess(task: BinPackingTask, priority_fn: Callable[..., Any], dataset: str) -> float:
    """Fraction of excess bins (mean_bins - mean_LB) / mean_LB of ``priority_fn`` on a held-out set."""
    return _excess(load_dataset(task, dataset), priority_fn)


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate_priority(program_path: str, task: BinPackingTask) -> dict[str, Any]:
    """Pack the training instances with the candidate's ``priority``; score = -mean(bins used)."""
    # Candidate errors other than bad replies (it raised, crashed, hung) propagate: the engine records them.
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        if not candidate.defines("priority"):
            return _invalid("the program defines no callable priority(item, bins)")

        def priority(item: int, bins: np.ndarray) -> Any:
            return candidate.call("priority", item, bins)

        train = train_instances(task)
        try:
            counts = [count_bins(items, cap, priority) for items, cap in train]
        except CandidateViolation as exc:
            return _invalid(str(exc))

    used = [u for u, _ in counts]
    full = [f for _, f in counts]
    mean_bins = _fsum(used) / _len(used)
    lbs = [lower_bound(items, cap) for items, cap in train]
    mean_lb = _fsum(lbs) / _len(lbs)
    total_size = _fsum(_fsum(items) for items, _ in train)
    mean_fill = total_size / (_fsum(used) * task.capacity)  # mean fill fraction of the used bins
    full_fraction = _fsum(full) / _fsum(used)               # share of used bins filled exactly

    features = {
        "full_bin_fraction": full_fraction,                 # in [0, 1] by construction
    }
    metrics: dict[str, float] = {
        "train_mean_bins": mean_bins,
        "train_mean_lower_bound": mean_lb,
        "train_excess_pct": 100.0 * (mean_bins - mean_lb) / mean_lb,
        "mean_fill": mean_fill,
        "full_bin_fraction": full_fraction,
    }
    summary = (f"valid; training ({task.train_instances} x {task.train_items} items, {task.distribution}): mean "
               f"{mean_bins:.3f} bins vs lower bound {mean_lb:.3f} (excess {metrics['train_excess_pct']:.3f}%); mean "
               f"fill of used bins {mean_fill:.4f}; {100.0 * full_fraction:.1f}% of used bins exactly full")
    return {"score": -mean_bins, "features": features, "metrics": metrics, "artifacts": {"summary": summary}}


def probe_instances(task: BinPackingTask) -> Instances:
    rng = np.random.default_rng(PROBE_SEED)
    return [(task.generate_items(rng, n), task.capacity) for n in PROBE_ITEMS]


def probe_priority(program_path: str, task: BinPackingTask) -> dict[str, Any]:
    """The scores ``priority`` gives, as floats, at every step of packing two small fixed instances of the
    task's distribution (20 and 40 items): the functional fingerprint (docs/architecture.md, "The task
    contract"). The raw scores, not only the bins chosen: a function of continuous constants gives other
    scores for other constants even where it chooses the same bins, so equal fingerprints mean the same
    function written another way (``-(bins - item)`` and ``item - bins``), not a nearby one that chooses alike
    on a few items but packs differently on the training set (the chosen bins alone merged such children in
    an offline run; tasks/bin_packing_or/README.md). A candidate that raises or returns unusable scores
    makes this raise: no fingerprint, and the evaluation reports what went wrong."""
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        def priority(item: int, bins: np.ndarray) -> Any:
            return candidate.call("priority", item, bins)

        traces = []
        for items, cap in probe_instances(task):
            trace: list[list[float]] = []
            online_binpack(items, cap, priority, trace)
            traces.append(trace)
    return {"scores": traces}


def evaluate_heldout_priority(program_path: str, task: BinPackingTask) -> dict[str, Any]:
    """The excess bins of the candidate's ``priority`` on each held-out set (``heldout_excess_pct_<set>``):
    private, run only when it matters (docs/architecture.md, "The task contract")."""
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        if not candidate.defines("priority"):
            return _invalid("the program defines no callable priority(item, bins)")

        def priority(item: int, bins: np.ndarray) -> Any:
            return candidate.call("priority", item, bins)

        try:
            heldout = {name: _excess(load_dataset(task, name), priority) for name in task.heldout_sets}
        except CandidateViolation as exc:
            return _invalid(str(exc))
    held = ", ".join(f"{name.upper()} {100.0 * v:.2f}%" for name, v in heldout.items())
    return {"metrics": {f"heldout_excess_pct_{name}": 100.0 * value for name, value in heldout.items()},
            "artifacts": {"heldout": f"held-out excess bins: {held}"}}
