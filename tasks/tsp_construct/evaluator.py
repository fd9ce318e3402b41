"""Evaluator for constructive TSP heuristics (AEL / EoH / ReEvo style): evolve the next-node rule.

The candidate supplies only ``select_next_node(current_node, destination_node, unvisited_nodes,
distance_matrix) -> int``; this evaluator owns the construction loop, so a candidate cannot misreport
the tour or its length::

    tour, unvisited = [0], set(range(1, n))
    while unvisited:
        nxt = select_next_node(tour[-1], 0, set(unvisited), distance_matrix.copy())
        # nxt must be an integer (not bool) that is in unvisited, else the candidate is invalid
        tour.append(nxt); unvisited.remove(nxt)
    length = sum of distance_matrix[tour[i], tour[i+1]] over the closed tour (back to node 0)

The candidate runs in its own process (`evoforge.evaluators.candidate.CandidateSession`, one per evaluation): it
receives copies (of the set per step; of the matrix once per instance, kept in its process with
``CandidateSession.put``), only plain data comes back, and the length is computed here from the
evaluator's own matrix. So it cannot patch this module, ``numpy`` or ``builtins``, or return an object
that lies; a reply that is not plain data is invalid, a candidate that raises or crashes an error.

Functional fingerprint: ``probe`` returns the rule's tours on ten small fixed instances (5 to 30 nodes) and
where its choice flips as one node slides along a line in 16 fixed states (off by default in task.toml).

Score (maximise): ``-(mean tour length)`` over 8 uniform random instances of 50 nodes in [0, 1]^2
generated here with a fixed seed (Euclidean distances).
Held-out metrics (never in the score; private, computed by ``evaluate_heldout`` only when it matters):
  * mean tour length on the public seeded test sets test20, test50, test100, test200 and its gap to
    nearest neighbour's published length (the sets: ``np.random.seed(1234)`` then ``np.random.rand(n, 2)``
    64 times for each of train50, val20, val50, val100, val200, test20, test50, test100, test200,
    test500, test1000, in that order; see ``public_sets``);
  * the gap to the optimal tour length on TSPLIB eil51, kroB100 and rat99 (``data/``), with the
    nint-rounded EUC_2D distances TSPLIB's optima use (construction and length on the rounded matrix).

Standard library + numpy only.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoforge.evaluators.candidate import CandidateInvalid, CandidateSession

__all__ = ["evaluate", "evaluate_heldout", "probe", "probe_instances", "construct_tour", "tour_length",
           "public_sets", "public_set",
           "heldout_mean_length",
           "load_tsplib", "tsplib_gap", "train_instances", "distance_matrix", "PUBLIC_SET_ORDER",
           "NN_PUBLISHED", "TSPLIB_INSTANCES"]

TRAIN_SEED = 20240517           # fixed: every candidate sees the same training instances
TRAIN_INSTANCES = 8
TRAIN_NODES = 50
PUBLIC_SET_ORDER = ("train50", "val20", "val50", "val100", "val200",
                    "test20", "test50", "test100", "test200", "test500", "test1000")
PUBLIC_SET_SIZE = 64
HELDOUT_PUBLIC = ("test20", "test50", "test100", "test200")   # run by evaluate_heldout (about 0.8 s for NN)
NN_PUBLISHED = {"test20": 4.446566634, "test50": 6.891886602, "test100": 9.650788327,
                "test200": 13.42478741, "test500": 20.65273147}   # nearest neighbour, mean tour length
TSPLIB_INSTANCES = ("eil51", "rat99", "kroB100")
DATA_DIR = Path(__file__).resolve().parent / "data"
PROBE_SEED = 7                  # the probe's small instances (functional fingerprint): fixed, never the training ones
PROBE_NODES = (5, 6, 7, 8, 9, 10, 11, 12, 20, 30)
PROBE_STATES = 16               # decision-boundary probes (see probe)
PROBE_STATE_NODES = 12
PROBE_BISECTIONS = 20
CALL_TIMEOUT_S = 10.0           # one select_next_node() call; the evaluation is bounded by task.toml's timeout_s
IMPORT_TIMEOUT_S = 30.0

# Bound at import (defence in depth: the candidate runs in another process anyway).
_asarray = np.asarray
_sqrt = np.sqrt
_float64 = np.float64
_floor = np.floor
_np_integer = np.integer
_np_bool = np.bool_
_Integral = numbers.Integral
_fsum = math.fsum
_isfinite = math.isfinite
_set = set
_len = len
_int = int
_float = float
_isinstance = isinstance
_bool = bool


class CandidateViolation(ValueError):
    """The candidate's ``select_next_node`` returned something unusable."""


def distance_matrix(points: np.ndarray) -> np.ndarray:
    pts = _asarray(points, dtype=_float64)
    diff = pts[:, None, :] - pts[None, :, :]
    return _sqrt((diff * diff).sum(axis=-1))


def _as_node(value: Any, unvisited: set, step: int) -> int:
    if _isinstance(value, (_bool, _np_bool)) or not _isinstance(value, (_Integral, _np_integer)):
        raise CandidateViolation(f"step {step}: select_next_node() must return an int node index, but returned "
                             f"{type(value).__name__} {value!r:.80}")
    node = _int(value)
    if node not in unvisited:
        raise CandidateViolation(f"step {step}: select_next_node() returned node {node}, which is not an unvisited "
                             f"node (already visited, the start node, or out of range)")
    return node


def construct_tour(dist: np.ndarray, select_next_node: Callable, start: int = 0) -> list[int]:
    """Build a tour from ``start`` with the candidate's rule; returns the node order (not closed)."""
    n = dist.shape[0]
    private = dist
    given = private.copy()
    tour = [start]
    unvisited = _set(range(n))
    unvisited.remove(start)
    step = 0
    while unvisited:
        try:
            raw = select_next_node(tour[-1], start, _set(unvisited), given)
        except CandidateInvalid as exc:            # not plain data (a float subclass, an object array...)
            raise CandidateViolation(f"step {step}: {exc}") from None
        node = _as_node(raw, unvisited, step)
        tour.append(node)
        unvisited.remove(node)
        step += 1
    return tour


def tour_length(dist: np.ndarray, tour: list[int]) -> float:
    idx = _asarray(tour + tour[:1])
    return _fsum(dist[idx[:-1], idx[1:]].tolist())


def _nearest_agreement(dist: np.ndarray, tour: list[int]) -> tuple[int, int]:
    """(steps where the chosen node was a nearest unvisited node, steps)."""
    unvisited = np.ones(dist.shape[0], dtype=bool)
    unvisited[tour[0]] = False
    hits = 0
    for a, b in zip(tour[:-1], tour[1:]):
        row = dist[a][unvisited]
        if dist[a, b] <= row.min():
            hits += 1
        unvisited[b] = False
    return hits, _len(tour) - 1


def train_instances() -> list[np.ndarray]:
    rng = np.random.default_rng(TRAIN_SEED)
    return [rng.random((TRAIN_NODES, 2)) for _ in range(TRAIN_INSTANCES)]


def public_sets(names: tuple[str, ...] | None = None) -> dict[str, list[np.ndarray]]:
    """The common public seeded sets (AEL / EoH / ReEvo): ``np.random.seed(1234)``, then
    ``np.random.rand(n, 2)`` 64 times per set in ``PUBLIC_SET_ORDER``. Uses a private legacy
    ``RandomState`` (same stream as the global seed) so the global numpy state is untouched."""
    wanted = _set(PUBLIC_SET_ORDER if names is None else names)
    rs = np.random.RandomState(1234)
    out: dict[str, list[np.ndarray]] = {}
    for name in PUBLIC_SET_ORDER:
        if not wanted - _set(out):
            break
        n = _int(name.lstrip("abcdefghijklmnopqrstuvwxyz"))
        points = [rs.rand(n, 2) for _ in range(PUBLIC_SET_SIZE)]
        if name in wanted:
            out[name] = points
    return out


def public_set(name: str) -> list[np.ndarray]:
    return public_sets((name,))[name]


def heldout_mean_length(select_next_node: Callable, name: str) -> float:
    """Mean tour length of the rule on one public seeded set (e.g. ``"test50"``)."""
    lengths = []
    for pts in public_set(name):
        d = distance_matrix(pts)
        lengths.append(tour_length(d, construct_tour(d, select_next_node)))
    return _fsum(lengths) / _len(lengths)


def load_tsplib(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(coordinates, nint-rounded EUC_2D distance matrix as float64, optimal tour length)."""
    coords = []
    in_section = False
    for line in (DATA_DIR / f"{name}.tsp").read_text().splitlines():
        line = line.strip()
        if line.startswith("NODE_COORD_SECTION"):
            in_section = True
            continue
        if line == "EOF":
            break
        if in_section and line:
            _, x, y = line.split()[:3]
            coords.append((_float(x), _float(y)))
    pts = _asarray(coords, dtype=_float64)
    dist = _floor(distance_matrix(pts) + 0.5)                 # TSPLIB nint(), EUC_2D
    opt = _int(json.loads((DATA_DIR / "optimal_lengths.json").read_text())["opt"][name])
    return pts, dist, opt


def tsplib_gap(select_next_node: Callable, name: str) -> float:
    """Relative gap (length - optimum) / optimum on a TSPLIB instance, rounded distances."""
    _, dist, opt = load_tsplib(name)
    return (tour_length(dist, construct_tour(dist, select_next_node)) - opt) / opt


class _RemoteRule:
    """``select_next_node`` in the candidate's process. The matrix ``construct_tour`` hands over (one
    copy per instance) is sent once per instance and kept there; each step sends only the small args."""

    def __init__(self, session: CandidateSession) -> None:
        self.session = session
        self._given: np.ndarray | None = None
        self._ref = None

    def __call__(self, current: int, destination: int, unvisited: set, matrix: np.ndarray) -> Any:
        if matrix is not self._given:
            self._ref = self.session.put("distance_matrix", matrix)
            self._given = matrix
        return self.session.call("select_next_node", current, destination, unvisited, self._ref)


def _invalid(message: str) -> dict[str, Any]:
    return {"status": "invalid", "error": message, "metrics": {}, "artifacts": {"violation": message[:2000]}}


def evaluate(program_path: str) -> dict[str, Any]:
    """Build tours on the training instances with the candidate's rule; score = -mean tour length."""
    # Candidate errors other than bad replies (it raised, crashed, hung) propagate: the engine records them.
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        if not candidate.defines("select_next_node"):
            return _invalid("the program defines no callable select_next_node(current_node, destination_node, "
                            "unvisited_nodes, distance_matrix)")
        rule = _RemoteRule(candidate)
        try:
            lengths, hits, steps = [], 0, 0
            for pts in train_instances():
                d = distance_matrix(pts)
                tour = construct_tour(d, rule)
                lengths.append(tour_length(d, tour))
                h, s = _nearest_agreement(d, tour)
                hits, steps = hits + h, steps + s
        except CandidateViolation as exc:
            return _invalid(str(exc))

    mean_len = _fsum(lengths) / _len(lengths)
    if not _isfinite(mean_len):
        return _invalid(f"non-finite mean tour length {mean_len!r}")
    agreement = hits / steps
    features = {"nn_agreement": agreement}    # share of steps that picked a nearest unvisited node, [0, 1]
    metrics: dict[str, float] = {"train_mean_length": mean_len, "nn_agreement": agreement}
    summary = (f"valid; training ({TRAIN_INSTANCES} x {TRAIN_NODES} uniform nodes): mean tour length "
               f"{mean_len:.4f}; {100.0 * agreement:.1f}% of steps chose a nearest unvisited node")
    return {"score": -mean_len, "features": features, "metrics": metrics, "artifacts": {"summary": summary}}


def probe_instances() -> list[np.ndarray]:
    rng = np.random.default_rng(PROBE_SEED)
    return [rng.random((n, 2)) for n in PROBE_NODES]


def _probe_states() -> list[tuple[np.ndarray, np.ndarray]]:
    """(points, where node 2 moves to) of each decision-boundary probe: 12 nodes, node 1 current."""
    rng = np.random.default_rng(PROBE_SEED + 1)
    return [(rng.random((PROBE_STATE_NODES, 2)), rng.random(2)) for _ in range(PROBE_STATES)]


def _boundary(rule: Callable, points: np.ndarray, target: np.ndarray) -> list[Any]:
    """Where the rule's choice changes while node 2 slides from the current node to ``target`` (bisection on the
    share ``s`` of the way; ``PROBE_BISECTIONS`` steps), with the choices at both ends; node 0 is the start
    and destination, node 1 the current node, every other node unvisited."""
    start = points[1] + 1e-3             # next to the current node, where most rules take it
    def choice(share: float) -> int:
        moved = points.copy()
        moved[2] = start + share * (target - start)
        unvisited = _set(range(2, _len(points)))
        return _as_node(rule(1, 0, _set(unvisited), distance_matrix(moved)), unvisited, 0)

    first, last = choice(0.0), choice(1.0)
    if first == last:
        return [first, last, None]
    low, high = 0.0, 1.0                 # choice(low) == first, choice(high) != first
    for _ in range(PROBE_BISECTIONS):
        middle = (low + high) / 2.0
        low, high = (middle, high) if choice(middle) == first else (low, middle)
    return [first, last, high]


def probe(program_path: str) -> dict[str, Any]:
    """The functional fingerprint (docs/architecture.md, "The task contract"): the rule's tours on ten small
    fixed instances (5 to 12, 20 and 30 nodes: many end games, where rules special-case the last nodes), and
    where its choice flips as one node slides along a line in 16 fixed 12-node states (found by bisection to
    about 1e-6 of the way; about 500 calls in all, 0.2-0.3 s).

    The flip points are what makes this a fingerprint of a rule that answers with node choices only: two
    rules whose constants differ a little choose alike almost everywhere, so their tours on a few instances
    agree, but the point where a choice flips moves with the constants. Rules that compute the same thing
    (nearest neighbour written with ``min`` or with ``argmin``) flip at the same points. A rule that raises
    or returns an unusable node makes this raise: no fingerprint, and `evaluate` reports what went wrong."""
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        rule = _RemoteRule(candidate)
        tours = [construct_tour(distance_matrix(pts), rule) for pts in probe_instances()]
        try:
            boundaries = [_boundary(rule, points, target) for points, target in _probe_states()]
        except CandidateInvalid as exc:      # not plain data: no fingerprint, evaluate says what was wrong
            raise CandidateViolation(str(exc)) from None
        return {"tours": tours, "boundaries": boundaries}


def evaluate_heldout(program_path: str) -> dict[str, Any]:
    """The held-out sets and TSPLIB gaps (private). Run only for a new best, the final elites and ``evoforge
    eval --heldout``, under ``[heldout] timeout_s``: a slow but good rule (AEL's O(n^3) rule, examples/ael.py,
    needs about 70 s here) is scored on the training instances within ``[limits] timeout_s`` and gets these
    numbers once."""
    with CandidateSession(program_path, timeout_s=CALL_TIMEOUT_S, import_timeout_s=IMPORT_TIMEOUT_S) as candidate:
        if not candidate.defines("select_next_node"):
            return _invalid("the program defines no callable select_next_node(current_node, destination_node, "
                            "unvisited_nodes, distance_matrix)")
        rule = _RemoteRule(candidate)
        try:
            held = {name: heldout_mean_length(rule, name) for name in HELDOUT_PUBLIC}
            gaps = {name: tsplib_gap(rule, name) for name in TSPLIB_INSTANCES}
        except CandidateViolation as exc:
            return _invalid(str(exc))
    metrics: dict[str, float] = {}
    for name, value in held.items():
        metrics[f"heldout_length_{name}"] = value
        metrics[f"heldout_gap_to_nn_pct_{name}"] = 100.0 * (value - NN_PUBLISHED[name]) / NN_PUBLISHED[name]
    for name, value in gaps.items():
        metrics[f"tsplib_gap_pct_{name}"] = 100.0 * value
    metrics["tsplib_gap_pct_mean"] = 100.0 * _fsum(gaps.values()) / _len(gaps)
    text = ("held-out mean lengths " + ", ".join(f"{k} {v:.4f} (nearest neighbour {NN_PUBLISHED[k]:.4f})"
                                                 for k, v in held.items())
            + "; TSPLIB gaps to optimum " + ", ".join(f"{k} {100.0 * v:.2f}%" for k, v in gaps.items()))
    return {"metrics": metrics, "artifacts": {"heldout": text}}
