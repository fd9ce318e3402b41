"""Evaluator for online bin packing (FunSearch, Romera-Paredes et al., Nature 2023), Weibull distribution.

The packing loop, the checks of what ``priority(item, bins)`` returns, the score (``-mean(bins used)`` over
training instances generated with a fixed seed) and the held-out metrics are the harness
`evoforge.evaluators.harnesses.bin_packing` (read its docstring for the rules); the candidate runs in a
nested process, so it cannot patch this evaluator or misreport the number of bins.

Training and held-out items come from the same distribution (Weibull scale 45, shape 3, clipped to
1..100, rounded, capacity 100). Held-out metric: excess bins in percent on FunSearch's Weibull 5k set
(5 instances x 5000 items, ``data/funsearch_weibull5k.json``); it never enters the score.

``tasks/bin_packing_or`` and ``tasks/bin_packing_weibull`` differ only in the configuration block below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoforge.evaluators.harnesses import bin_packing as _harness
from evoforge.evaluators.harnesses.bin_packing import BinPackingTask, count_bins, lower_bound, online_binpack

__all__ = ["evaluate", "evaluate_heldout", "probe", "online_binpack", "count_bins", "lower_bound", "heldout_excess",
           "load_dataset", "train_instances", "HELDOUT_SETS", "CAPACITY", "SPEC"]

# ---- task configuration -------------------------------------------------------------------------------
DISTRIBUTION = "Weibull(scale 45, shape 3) item sizes, clipped to 1..100 and rounded, capacity 100"
CAPACITY = 100
TRAIN_SEED = 20231214           # fixed: every candidate sees the same training instances
TRAIN_INSTANCES = 5
TRAIN_ITEMS = 2000
HELDOUT_SETS = {                # metric suffix -> data file (relative to this file)
    "weibull5k": "data/funsearch_weibull5k.json",
}


def _generate_items(rng: np.random.Generator, n: int) -> list[int]:
    # FunSearch's Weibull generator: sizes ~ 45 * Weibull(3), clipped to [1, capacity], rounded to integers.
    return np.round(np.clip(45.0 * rng.weibull(3.0, size=n), 1, CAPACITY)).astype(np.int64).tolist()
# -------------------------------------------------------------------------------------------------------


SPEC = BinPackingTask(distribution=DISTRIBUTION, capacity=CAPACITY, train_seed=TRAIN_SEED,
                      train_instances=TRAIN_INSTANCES, train_items=TRAIN_ITEMS, generate_items=_generate_items,
                      heldout_sets=HELDOUT_SETS, data_dir=Path(__file__).resolve().parent)


def load_dataset(name: str) -> list[tuple[list[int], int]]:
    """A held-out set (key of ``HELDOUT_SETS``) as a list of ``(items, capacity)``."""
    return _harness.load_dataset(SPEC, name)


def train_instances() -> list[tuple[list[int], int]]:
    return _harness.train_instances(SPEC)


def heldout_excess(priority_fn: Callable[..., Any], dataset: str) -> float:
    """Fraction of excess bins (mean_bins - mean_LB) / mean_LB of ``priority_fn`` on a held-out set."""
    return _harness.heldout_excess(SPEC, priority_fn, dataset)


def evaluate(program_path: str) -> dict[str, Any]:
    """Pack the training instances with the candidate's ``priority``; score = -mean(bins used)."""
    return _harness.evaluate_priority(program_path, SPEC)


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """Excess bins on the held-out sets (private: run for a new best, the final elites, ``eval --heldout``)."""
    return _harness.evaluate_heldout_priority(program_path, SPEC)


def probe(program_path: str) -> dict[str, Any]:
    """The bins the candidate chooses on two small fixed instances: its functional fingerprint (a child that
    chooses like an evaluated program is not evaluated again; docs/architecture.md, "The task contract")."""
    return _harness.probe_priority(program_path, SPEC)
