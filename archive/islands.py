"""Island MAP-Elites archives over program ids (pure logic, no I/O).

Each island is a MAP-Elites archive with pyribs' semantics (a uniform grid as
:class:`ribs.archives.GridArchive` maps it, or a CVT as :class:`ribs.archives.CVTArchive` does)
keyed by the task's behaviour descriptors, kept in plain numpy arrays so that a grid run never
imports pyribs (start-up: see ``_Cells``). The archive holds
only program *ids* and numbers -- program texts live in the store. A passive *result archive*
with the same geometry receives every :meth:`IslandArchives.add` of every island and gives the
QD statistics of the run as a whole (the islands themselves are what parents are drawn from).

Conventions (as in pyribs):

* fitness is higher-is-better (the engine negates minimisation objectives);
* an incoming candidate replaces a cell's elite only if its fitness is *strictly* greater, so an
  equal-fitness candidate never displaces the incumbent and replays are deterministic;
* features outside a descriptor's declared ``[low, high]`` are clipped to it, so they land in the
  edge cells (never an error);
* nothing here draws from an internal RNG: selection uses the ``rng`` the caller passes,
  over data ordered by ``(island, cell)``, and CVT centroids are computed once from ``seed``.

Two :class:`IslandArchives` built with the same arguments and fed the same sequence of
:meth:`~IslandArchives.add` / :meth:`~IslandArchives.migrate` calls are identical: same
:meth:`~IslandArchives.elites`, :meth:`~IslandArchives.stats`, and the same samples for the same
rng state. Replaying a migration as :meth:`~IslandArchives.add` of the migrant into its
destination island is equivalent to the migration itself (which is how the engine rebuilds).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DescriptorSpec",
    "validate_archive",
    "ArchiveConfig",
    "Insertion",
    "Elite",
    "Migration",
    "QDStats",
    "IslandArchives",
    "PARENT_SELECTIONS",
]

_KINDS = ("grid", "cvt")
#: Parent-selection policies (``[archive] parent_selection``); see `IslandArchives.sample_parent`.
PARENT_SELECTIONS = ("exploit", "power_law", "weighted", "uniform")
_STATUS = {0: "not_added", 1: "improved", 2: "new"}
_MAX_ID = 2**53  # program ids are stored as float64 solutions; exact below this


@dataclass(frozen=True)
class DescriptorSpec:
    """One behaviour descriptor: a named feature with a declared range.

    Attributes:
        name: Feature name (the key in the evaluator's metrics).
        low: Lower bound of the declared range (inclusive); values below are clipped to it.
        high: Upper bound of the declared range (inclusive); values above are clipped to it.
        bins: Number of uniform grid cells along this dimension (``kind="grid"`` only; a CVT
            archive uses ``ArchiveConfig.cvt_cells`` instead).
    """

    name: str
    low: float
    high: float
    bins: int


@dataclass(frozen=True)
class ArchiveConfig:
    """Archive settings of a task (``[archive]`` in task.toml).

    Attributes:
        kind: ``"grid"`` (MAP-Elites grid, ``prod(bins)`` cells) or ``"cvt"`` (``cvt_cells``
            centroids from k-means over the declared ranges).
        islands: Number of islands (>= 1).
        migration_interval: Proposals between migrations; stored for the engine, which calls
            :meth:`IslandArchives.migrate`. 0 disables migration.
        cvt_cells: Number of CVT cells (``kind="cvt"`` only).
        qd_offset: Added to every fitness in the QD score: ``qd_score = sum(fitness + qd_offset)``.
        exploit_ratio: Probability in [0, 1] that a parent is drawn among the island's top
            elites rather than uniformly among all of its elites.
        top_fraction: The "top elites" are the best ``ceil(top_fraction * n_elites)`` (at least
            one) of the island; in (0, 1].
        num_inspirations: Inspirations shown with each parent (the engine passes it as ``k``).
        parent_selection: How a parent is drawn from an island (`PARENT_SELECTIONS`): ``"exploit"``
            (the exploit/explore mix above), ``"power_law"`` (rank-based, ``P(rank r) ~ r**-alpha``),
            ``"weighted"`` (fitness-weighted with a penalty for parents with many children) or
            ``"uniform"`` (every elite alike, as classic MAP-Elites draws a random occupied cell).
        power_law_alpha: The exponent of ``"power_law"`` (>= 0; 0 is uniform).
        weighted_lambda: The sharpness of ``"weighted"``'s sigmoid over standardised fitness (>= 0).
        reset_interval: Every this many proposals the weaker half of the islands is emptied and each
            reseeded with the best program of a surviving island (FunSearch); 0 disables it.
    """

    kind: str = "grid"
    islands: int = 4
    migration_interval: int = 25
    cvt_cells: int = 64
    qd_offset: float = 0.0
    exploit_ratio: float = 0.9
    top_fraction: float = 0.2
    num_inspirations: int = 3
    parent_selection: str = "exploit"
    power_law_alpha: float = 1.0
    weighted_lambda: float = 10.0
    reset_interval: int = 0


@dataclass(frozen=True)
class Insertion:
    """Outcome of inserting one program into one island.

    Attributes:
        status: ``"new"`` (the cell was empty), ``"improved"`` (strictly better than the cell's
            elite, which it replaced) or ``"not_added"``.
        improvement: pyribs' add value: for ``"new"`` the fitness itself; for ``"improved"``
            fitness minus the replaced elite's fitness (> 0); for ``"not_added"`` fitness minus
            the incumbent's fitness (<= 0).
        cell: Cell index in ``[0, cells)``.
        island: Island index.
    """

    status: str
    improvement: float
    cell: int
    island: int

    @property
    def added(self) -> bool:
        """True when the program became the cell's elite (``"new"`` or ``"improved"``)."""
        return self.status != "not_added"


@dataclass(frozen=True)
class Elite:
    """The program holding one cell of one island.

    Attributes:
        program_id: Id of the program in the store.
        island: Island index (for the result archive: the island it was first added to).
        fitness: Higher-is-better fitness.
        features: Feature values as they were given to :meth:`IslandArchives.add` (unclipped),
            one per descriptor, in descriptor order.
        cell: Cell index in ``[0, cells)``.
    """

    program_id: int
    island: int
    fitness: float
    features: tuple[float, ...]
    cell: int


@dataclass(frozen=True)
class Migration:
    """One ring-migration step: the best elite of ``from_island`` inserted into ``to_island``."""

    program_id: int
    from_island: int
    to_island: int
    insertion: Insertion


@dataclass(frozen=True)
class QDStats:
    """Quality-diversity statistics of one island or of the result archive.

    Attributes:
        num_elites: Number of occupied cells.
        coverage: ``num_elites / cells`` in [0, 1].
        qd_score: ``sum(fitness + qd_offset)`` over the elites (0.0 when empty).
        best_fitness: Highest fitness, or None when empty.
        best_program_id: Program with the highest fitness (lowest cell on ties), or None.
    """

    num_elites: int
    coverage: float
    qd_score: float
    best_fitness: float | None
    best_program_id: int | None


class _View:
    """Elites of one archive as arrays sorted by cell (a cached snapshot)."""

    __slots__ = ("cells", "ids", "fitness", "features", "islands", "order")

    def __init__(self, cells: np.ndarray, ids: np.ndarray, fitness: np.ndarray, features: np.ndarray,
                 islands: np.ndarray) -> None:
        self.cells = cells  # (n,) int64, ascending
        self.ids = ids  # (n,) int64
        self.fitness = fitness  # (n,) float64
        self.features = features  # (n, measure_dim) float64, as given (unclipped)
        self.islands = islands  # (n,) int64
        # Positions sorted by fitness descending, lowest cell first on ties.
        self.order = np.lexsort((cells, -fitness)) if len(cells) else np.empty(0, dtype=np.int64)


class _Cells:
    """One archive's cells as plain arrays: the elite of each cell and its threshold.

    The insertion rule is pyribs' MAP-Elites rule with its defaults (``learning_rate=1``,
    ``threshold_min=-inf``): a cell's threshold is exactly the objective of its elite, a candidate
    enters only when strictly better, and the returned value is the improvement over the old
    threshold (over 0.0 for an empty cell, as pyribs computes it). The arrays are ours rather than a
    pyribs archive's so that a grid run never imports pyribs (3-4 s of scikit-learn and numba at
    start-up); the cell mapping is pyribs' own formula (`_GridIndex`, `_CVTIndex`), and
    tests/archive/test_islands.py checks both against pyribs.
    """

    def __init__(self, n_cells: int, dim: int) -> None:
        self.threshold = np.full(n_cells, -np.inf)
        self.ids = np.zeros(n_cells, dtype=np.int64)
        self.raw = np.zeros((n_cells, dim), dtype=np.float64)
        self.island = np.zeros(n_cells, dtype=np.int64)
        self.version = 0
        self._view: _View | None = None
        self._view_version = -1

    def insert(self, cell: int, program_id: int, fitness: float, raw: np.ndarray,
               island: int) -> tuple[int, float]:
        """Returns (status: 0 not added, 1 improved, 2 new; improvement value)."""
        incumbent = self.threshold[cell]
        if not fitness > incumbent:
            return 0, fitness - float(incumbent)
        new = incumbent == -np.inf
        value = fitness if new else fitness - float(incumbent)
        self.threshold[cell] = fitness
        self.ids[cell] = program_id
        self.raw[cell] = raw
        self.island[cell] = island
        self.version += 1
        return (2 if new else 1), value

    def view(self) -> _View:
        if self._view is None or self._view_version != self.version:
            cells = np.flatnonzero(self.threshold != -np.inf).astype(np.int64)
            self._view = _View(cells=cells, ids=self.ids[cells].copy(), fitness=self.threshold[cells].copy(),
                               features=self.raw[cells].copy(), islands=self.island[cells].copy())
            self._view_version = self.version
        return self._view


class _GridIndex:
    """Cell of a point in a uniform grid: pyribs' ``GridArchive.index_of`` formula (epsilon 1e-6
    against floating-point error at cell boundaries; int32 cast; clipped; row-major)."""

    _EPSILON = 1e-6

    def __init__(self, descriptors: Sequence[DescriptorSpec]) -> None:
        self._dims = np.array([d.bins for d in descriptors], dtype=np.int32)
        self._low = np.array([d.low for d in descriptors], dtype=np.float64)
        self._size = np.array([d.high for d in descriptors], dtype=np.float64) - self._low
        self._epsilon = np.asarray(self._EPSILON, dtype=np.float64)

    def __call__(self, point: np.ndarray) -> int:
        index = ((self._dims * (point - self._low) + self._epsilon) / self._size).astype(np.int32)
        index = np.clip(index, 0, self._dims - 1)
        return int(np.ravel_multi_index(index, self._dims))


class _CVTIndex:
    """Cell of a point in a CVT: the nearest centroid by a SciPy k-d tree, as pyribs'
    ``CVTArchive`` (its default ``nearest_neighbors="scipy_kd_tree"``) finds it."""

    def __init__(self, centroids: np.ndarray) -> None:
        from scipy.spatial import KDTree  # only CVT tasks pay for it

        self._tree = KDTree(centroids)

    def __call__(self, point: np.ndarray) -> int:
        _, index = self._tree.query(point[None])
        return int(index[0])


class IslandArchives:
    """Per-island MAP-Elites archives of program ids, plus a result archive over all islands.

    Args:
        descriptors: The behaviour descriptors, in feature order (at least one; unique names).
        config: Archive settings.
        seed: Seeds the CVT centroids (when not given). Selection never
            uses it: sampling methods take the caller's ``rng``.
        centroids: ``(cvt_cells, len(descriptors))`` CVT centroids from a previous run (see
            :attr:`centroids`); None computes them. Must be None for ``kind="grid"``.

    Raises:
        ValueError: Invalid descriptors, config values or centroids.
    """

    def __init__(
        self,
        *,
        descriptors: Sequence[DescriptorSpec],
        config: ArchiveConfig,
        seed: int,
        centroids: np.ndarray | None = None,
    ) -> None:
        self._descriptors = tuple(descriptors)
        self._config = config
        self._seed = seed
        validate_archive(self._descriptors, config)
        self._names = tuple(d.name for d in self._descriptors)
        dim = len(self._descriptors)
        self._low = np.array([d.low for d in self._descriptors], dtype=np.float64)
        self._high = np.array([d.high for d in self._descriptors], dtype=np.float64)

        self._index_of: Callable[[np.ndarray], int]
        if config.kind == "grid":
            if centroids is not None:
                raise ValueError("expected centroids=None for kind='grid' but got an array of "
                                 f"shape {np.shape(centroids)}")
            self._centroids = None
            self._n_cells = int(np.prod([d.bins for d in self._descriptors]))
            self._index_of = _GridIndex(self._descriptors)
        else:
            if centroids is None:
                # k-means over uniform samples of the declared ranges (pyribs' helper, so the same
                # seed gives the same centroids as before); scikit-learn loads only here, once per run.
                from ribs.archives import k_means_centroids

                samples = min(100_000, max(20_000, 200 * config.cvt_cells))
                centroids, _ = k_means_centroids(centroids=config.cvt_cells,
                                                 ranges=[(d.low, d.high) for d in self._descriptors],
                                                 samples=samples, seed=seed)
            centroids = np.array(centroids, dtype=np.float64)
            if centroids.shape != (config.cvt_cells, dim):
                raise ValueError(f"expected centroids of shape ({config.cvt_cells}, {dim}) but got "
                                 f"{centroids.shape}")
            if not np.all(np.isfinite(centroids)):
                raise ValueError("expected finite centroids but got non-finite values")
            centroids.setflags(write=False)
            self._centroids = centroids
            self._n_cells = config.cvt_cells
            self._index_of = _CVTIndex(centroids)

        # Nothing here is random (selection takes the caller's rng), so ``seed`` only seeds the
        # CVT centroids.
        self._islands = [_Cells(self._n_cells, dim) for _ in range(config.islands)]
        self._result = _Cells(self._n_cells, dim)

    # -- properties ------------------------------------------------------------------------------

    @property
    def centroids(self) -> np.ndarray | None:
        """``(cvt_cells, len(descriptors))`` read-only CVT centroids to persist; None for grid."""
        return self._centroids

    @property
    def descriptors(self) -> tuple[DescriptorSpec, ...]:
        return self._descriptors

    @property
    def config(self) -> ArchiveConfig:
        return self._config

    @property
    def num_islands(self) -> int:
        return len(self._islands)

    @property
    def cells(self) -> int:
        """Number of cells of each island (and of the result archive)."""
        return self._n_cells

    # -- writing ---------------------------------------------------------------------------------

    def add(self, island: int, program_id: int, fitness: float, features: Sequence[float]) -> Insertion:
        """Offers a program to one island (and to the result archive).

        Args:
            island: Island index in ``[0, islands)``.
            program_id: Store id of the program; an int with ``abs(id) < 2**53``.
            fitness: Finite, higher-is-better fitness.
            features: One finite value per descriptor, in descriptor order (or a mapping from
                descriptor name to value). Out-of-range values land in the edge cells.

        Returns:
            The island's :class:`Insertion` (the result archive's outcome is not reported).

        Raises:
            ValueError: Bad island, id, fitness, or features (wrong count or non-finite).
        """
        island = self._check_island(island)
        program_id = _check_id(program_id)
        fitness = _check_fitness(fitness)
        raw = self._features(features)
        clipped = np.clip(raw, self._low, self._high)
        cell = int(self._index_of(clipped))
        status, value = self._islands[island].insert(cell, program_id, fitness, raw, island)
        self._result.insert(cell, program_id, fitness, raw, island)
        return Insertion(status=_STATUS[status], improvement=value, cell=cell, island=island)

    def migrate(self) -> list[Migration]:
        """Ring migration: the best elite of island ``i`` is inserted into ``(i + 1) % islands``.

        All migrants are chosen before any insertion, so a migrant moves one step only. Empty
        islands send nothing; with a single island nothing happens. The result archive is left
        alone (it already holds every migrant or something at least as good in its cell).

        Returns:
            One :class:`Migration` per non-empty source island, in source order; an insertion
            may be ``"not_added"`` (e.g. the destination already holds that program).
        """
        n = len(self._islands)
        if n < 2:
            return []
        sources = []
        for i in range(n):
            view = self._islands[i].view()
            if len(view.cells):
                top = view.order[0]
                sources.append((i, int(view.ids[top]), float(view.fitness[top]),
                                view.features[top].copy(), int(view.cells[top])))
        migrations = []
        for i, program_id, fitness, raw, cell in sources:
            to = (i + 1) % n
            status, value = self._islands[to].insert(cell, program_id, fitness, raw, to)
            insertion = Insertion(status=_STATUS[status], improvement=value, cell=cell, island=to)
            migrations.append(Migration(program_id=program_id, from_island=i, to_island=to,
                                        insertion=insertion))
        return migrations

    def reset_weakest(self, rng: np.random.Generator) -> list[tuple[int, int, Insertion]]:
        """FunSearch's island reset (Romera-Paredes et al. 2023): the weaker half of the islands (by best
        fitness, ties to the higher index) is emptied and each is reseeded with the best program of a
        surviving island drawn with ``rng``. Returns ``(island, program_id, insertion)`` per reset island; the caller
        records each as a reset of the island followed by an insertion (so a replay rebuilds it).
        """
        n = len(self._islands)
        if n < 2:
            return []
        best = []
        for i in range(n):
            v = self._islands[i].view()
            best.append(float(v.fitness[v.order[0]]) if len(v.cells) else -np.inf)
        ranked = sorted(range(n), key=lambda i: (best[i], -i))
        weak, keep = ranked[: n // 2], [i for i in ranked[n // 2:] if np.isfinite(best[i])]
        if not keep:
            return []
        donors = [keep[int(rng.integers(len(keep)))] for _ in weak]
        seeds = []
        for island, donor in zip(weak, donors):
            v = self._islands[donor].view()
            top = v.order[0]
            seeds.append((island, int(v.ids[top]), float(v.fitness[top]), v.features[top].copy()))
        out = []
        for island, program_id, fitness, raw in seeds:
            self.clear(island)
            out.append((island, program_id, self.add(island, program_id, fitness, raw)))
        return out

    def clear(self, island: int) -> None:
        """Empties one island (the result archive keeps everything it saw)."""
        cells = self._islands[self._check_island(island)]
        cells.threshold[:] = -np.inf
        cells.ids[:] = 0
        cells.version += 1

    # -- sampling --------------------------------------------------------------------------------

    def sample_parent(self, island: int, rng: np.random.Generator, *,
                      children: Mapping[int, int] | None = None) -> int | None:
        """Draws a parent program id from one island, by the configured ``parent_selection``.

        * ``"exploit"``: with probability ``exploit_ratio`` uniform among the island's top
          ``ceil(top_fraction * n_elites)`` elites (by fitness, lowest cell first on ties), otherwise
          uniform among all its elites. Consumes exactly two draws (one ``random()``, one ``integers()``).
        * ``"power_law"``: elite of fitness rank ``r`` (1 = best) with probability ``~ r**-alpha``
          (the rank-based selection of AlphaEvolve-style samplers; scale-free in fitness).
        * ``"weighted"``: ``~ sigmoid(lambda * z) / (1 + children)`` where ``z`` is the elite's fitness
          standardised over the island (minus the median, over the standard deviation) and ``children``
          its count of proposals so far (ShinkaEvolve's weighted sampling, Lange et al. 2025): good
          parents are preferred, but not drawn forever.
        * ``"uniform"``: every elite alike (classic MAP-Elites, Mouret & Clune 2015).

        The last three consume exactly one ``random()``. Nothing is drawn from an empty island.

        Returns:
            A program id, or None if the island has no elites.
        """
        view = self._islands[self._check_island(island)].view()
        n = len(view.cells)
        if n == 0:
            return None
        policy = self._config.parent_selection
        if policy == "exploit":
            if rng.random() < self._config.exploit_ratio:
                top = self._top_count(n)
                return int(view.ids[view.order[int(rng.integers(top))]])
            return int(view.ids[int(rng.integers(n))])
        weights = self.parent_weights(island, children=children)
        u = rng.random() * float(weights.sum())
        position = min(int(np.searchsorted(np.cumsum(weights), u, side="right")), n - 1)
        return int(view.ids[view.order[position]])

    def parent_weights(self, island: int, *, children: Mapping[int, int] | None = None) -> np.ndarray:
        """The unnormalised selection weight of each elite of ``island``, best first (fitness order, lowest
        cell first on ties), under a ``power_law``, ``weighted`` or ``uniform`` policy."""
        view = self._islands[self._check_island(island)].view()
        n = len(view.cells)
        policy = self._config.parent_selection
        if policy == "power_law":
            return np.arange(1, n + 1, dtype=np.float64) ** -self._config.power_law_alpha
        if policy == "weighted":
            fitness = view.fitness[view.order]
            spread = float(np.std(fitness))
            z = (fitness - float(np.median(fitness))) / spread if spread > 0 else np.zeros(n)
            quality = 1.0 / (1.0 + np.exp(-np.clip(self._config.weighted_lambda * z, -50.0, 50.0)))
            kids = np.array([(children or {}).get(int(p), 0) for p in view.ids[view.order]], dtype=np.float64)
            return quality / (1.0 + kids)
        return np.ones(n, dtype=np.float64)

    def sample_inspirations(self, island: int, k: int, rng: np.random.Generator, *,
                            exclude: Collection[int] = ()) -> list[int]:
        """Draws up to ``k`` distinct program ids to show next to a parent.

        The island's best elite comes first (unless excluded); the rest are drawn uniformly
        without replacement among the island's other elites -- each elite holds its own cell, so
        these are spread over behaviour space. If the island has too few, the remainder is drawn
        the same way from the other islands' elites (distinct program ids). Ids in ``exclude``
        (typically the parent) never appear.

        Returns:
            At most ``k`` distinct program ids (fewer only when not enough elites exist).

        Raises:
            ValueError: ``k`` is negative.
        """
        island = self._check_island(island)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"expected k to be a non-negative int but got {k!r}")
        k = int(k)
        if k == 0:
            return []
        taken = {int(i) for i in exclude}
        chosen: list[int] = []
        view = self._islands[island].view()
        if len(view.cells):
            best = int(view.ids[view.order[0]])
            if best not in taken:
                chosen.append(best)
                taken.add(best)
        chosen += _draw_distinct(view.ids, taken, k - len(chosen), rng)
        if len(chosen) < k:
            others = [self._islands[j].view().ids for j in range(len(self._islands)) if j != island]
            if others:
                chosen += _draw_distinct(np.concatenate(others), taken, k - len(chosen), rng)
        return chosen

    # -- reading ---------------------------------------------------------------------------------

    def elites(self, island: int | None = None) -> list[Elite]:
        """Elites of one island, or of all islands when None, sorted by ``(island, cell)``."""
        islands = range(len(self._islands)) if island is None else [self._check_island(island)]
        out = []
        for i in islands:
            v = self._islands[i].view()
            out += [Elite(program_id=int(p), island=i, fitness=float(f),
                          features=tuple(float(x) for x in feats), cell=int(c))
                    for p, f, feats, c in zip(v.ids, v.fitness, v.features, v.cells)]
        return out

    def result_elites(self) -> list[Elite]:
        """Elites of the result archive (over all islands), sorted by cell.

        ``Elite.island`` is the island the program was added to when it took the cell.
        """
        v = self._result.view()
        return [Elite(program_id=int(p), island=int(i), fitness=float(f),
                      features=tuple(float(x) for x in feats), cell=int(c))
                for p, i, f, feats, c in zip(v.ids, v.islands, v.fitness, v.features, v.cells)]

    def best(self) -> Elite | None:
        """The fittest elite over all islands (lowest ``(island, cell)`` on ties), or None."""
        best = None
        for i, cells in enumerate(self._islands):
            v = cells.view()
            if len(v.cells):
                top = v.order[0]
                if best is None or v.fitness[top] > best.fitness:
                    best = Elite(program_id=int(v.ids[top]), island=i, fitness=float(v.fitness[top]),
                                 features=tuple(float(x) for x in v.features[top]),
                                 cell=int(v.cells[top]))
        return best

    def stats(self, island: int | None = None) -> QDStats:
        """QD statistics of one island, or of the result archive over all islands when None."""
        cells = self._result if island is None else self._islands[self._check_island(island)]
        v = cells.view()
        n = len(v.cells)
        if n == 0:
            return QDStats(num_elites=0, coverage=0.0, qd_score=0.0, best_fitness=None,
                           best_program_id=None)
        top = v.order[0]
        return QDStats(
            num_elites=n,
            coverage=n / self._n_cells,
            qd_score=float(np.sum(v.fitness + self._config.qd_offset)),
            best_fitness=float(v.fitness[top]),
            best_program_id=int(v.ids[top]),
        )

    def cell_of(self, features: Sequence[float]) -> int:
        """Cell index in ``[0, cells)`` that ``features`` map to (after clipping to the ranges).

        Raises:
            ValueError: Wrong number of features or non-finite values.
        """
        clipped = np.clip(self._features(features), self._low, self._high)
        return int(self._index_of(clipped))

    def __repr__(self) -> str:
        return (f"IslandArchives(kind={self._config.kind!r}, islands={len(self._islands)}, "
                f"cells={self._n_cells}, descriptors={list(self._names)})")

    # -- helpers ---------------------------------------------------------------------------------

    def _top_count(self, n: int) -> int:
        return min(n, max(1, math.ceil(self._config.top_fraction * n)))

    def _check_island(self, island: int) -> int:
        n = len(self._islands)
        if isinstance(island, bool) or not isinstance(island, numbers.Integral) or not 0 <= island < n:
            raise ValueError(f"expected island to be an int in [0, {n}) but got {island!r}")
        return int(island)

    def _features(self, features: Sequence[float] | Mapping[str, float] | np.ndarray) -> np.ndarray:
        names = self._names
        if isinstance(features, Mapping):
            if set(features) != set(names):
                raise ValueError(f"expected features {sorted(names)} but got {sorted(features)}")
            features = [features[name] for name in names]
        try:
            arr = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected {len(names)} numeric features ({', '.join(names)}) but got "
                             f"{features!r}") from exc
        if arr.ndim != 1 or arr.shape[0] != len(names):
            got = arr.shape[0] if arr.ndim == 1 else f"an array of shape {arr.shape}"
            raise ValueError(f"expected {len(names)} features ({', '.join(names)}) but got {got}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"expected finite features ({', '.join(names)}) but got {arr.tolist()}")
        return arr


def _draw_distinct(ids: np.ndarray, taken: set[int], k: int, rng: np.random.Generator) -> list[int]:
    """Up to ``k`` distinct ids from ``ids`` not in ``taken``, uniformly without replacement.

    Candidates are de-duplicated in order of first appearance (deterministic); ``taken`` is
    updated with the ids drawn. Consumes one ``rng.choice`` when there is anything to draw.
    """
    if k <= 0 or len(ids) == 0:
        return []
    _, first = np.unique(ids, return_index=True)
    pool = ids[np.sort(first)]
    if taken:
        pool = pool[~np.isin(pool, np.fromiter(taken, dtype=np.int64, count=len(taken)))]
    if len(pool) == 0:
        return []
    picks = pool[rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
    drawn = [int(p) for p in picks]
    taken.update(drawn)
    return drawn


def _check_id(program_id: object) -> int:
    if isinstance(program_id, bool) or not isinstance(program_id, numbers.Integral) \
            or not -_MAX_ID < int(program_id) < _MAX_ID:
        raise ValueError(f"expected program_id to be an int with abs(id) < 2**53 but got {program_id!r}")
    return int(program_id)


def _check_fitness(fitness: object) -> float:
    if isinstance(fitness, bool) or not isinstance(fitness, numbers.Real) or not math.isfinite(fitness):
        raise ValueError(f"expected a finite float fitness but got {fitness!r}")
    return float(fitness)


def validate_archive(descriptors: tuple[DescriptorSpec, ...], config: ArchiveConfig) -> None:
    if not descriptors:
        raise ValueError("expected at least one descriptor but got none")
    names = [d.name for d in descriptors]
    if len(set(names)) != len(names):
        raise ValueError(f"expected unique descriptor names but got {names}")
    for d in descriptors:
        if not isinstance(d, DescriptorSpec):
            raise ValueError(f"expected DescriptorSpec descriptors but got {d!r}")
        if not (math.isfinite(d.low) and math.isfinite(d.high) and d.low < d.high):
            raise ValueError(f"expected descriptor {d.name!r} to have finite low < high but got "
                             f"[{d.low}, {d.high}]")
        if config.kind == "grid" and (isinstance(d.bins, bool) or not isinstance(d.bins, numbers.Integral)
                                      or d.bins < 1):
            raise ValueError(f"expected descriptor {d.name!r} to have bins >= 1 but got {d.bins!r}")
    if config.kind not in _KINDS:
        raise ValueError(f"expected kind 'grid' or 'cvt' but got {config.kind!r}")
    for name in ("islands", "cvt_cells"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"expected {name} to be a positive int but got {value!r}")
    for name in ("migration_interval", "num_inspirations"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"expected {name} to be a non-negative int but got {value!r}")
    if not math.isfinite(config.qd_offset):
        raise ValueError(f"expected a finite qd_offset but got {config.qd_offset!r}")
    if not 0.0 <= config.exploit_ratio <= 1.0:
        raise ValueError(f"expected exploit_ratio in [0, 1] but got {config.exploit_ratio!r}")
    if not 0.0 < config.top_fraction <= 1.0:
        raise ValueError(f"expected top_fraction in (0, 1] but got {config.top_fraction!r}")
    if config.parent_selection not in PARENT_SELECTIONS:
        raise ValueError(f"unknown parent_selection {config.parent_selection!r} (known: "
                         f"{', '.join(PARENT_SELECTIONS)})")
    for name in ("power_law_alpha", "weighted_lambda"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < math.inf:
            raise ValueError(f"expected {name} to be a finite number >= 0 but got {value!r}")
    if isinstance(config.reset_interval, bool) or not isinstance(config.reset_interval, numbers.Integral) \
            or config.reset_interval < 0:
        raise ValueError(f"expected reset_interval to be a non-negative int but got {config.reset_interval!r}")
