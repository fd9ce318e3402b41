"""Tests for archive.islands: per-island MAP-Elites archives over program ids."""

import math

import numpy as np
import pytest

from evoforge.archive import islands as islands_mod
from evoforge.archive.islands import (
    ArchiveConfig,
    DescriptorSpec,
    Elite,
    Insertion,
    IslandArchives,
    Migration,
    QDStats,
)

DESC = (DescriptorSpec(name="x", low=0.0, high=1.0, bins=10),
        DescriptorSpec(name="y", low=-1.0, high=1.0, bins=5))


def make(**config):
    seed = config.pop("seed", 0)
    centroids = config.pop("centroids", None)
    descriptors = config.pop("descriptors", DESC)
    return IslandArchives(descriptors=descriptors, config=ArchiveConfig(**config), seed=seed,
                          centroids=centroids)


# -- insertion ------------------------------------------------------------------------------------

def test_insert_statuses_and_improvements():
    a = make(islands=2)
    first = a.add(0, 1, 0.5, [0.05, 0.0])
    assert first == Insertion(status="new", improvement=0.5, cell=first.cell, island=0)
    assert first.added
    better = a.add(0, 2, 0.75, [0.06, 0.01])
    assert better.status == "improved" and better.cell == first.cell
    assert better.improvement == pytest.approx(0.25)
    worse = a.add(0, 3, 0.25, [0.07, 0.02])
    assert worse.status == "not_added" and not worse.added
    assert worse.improvement == pytest.approx(-0.5)
    assert [e.program_id for e in a.elites(0)] == [2]
    assert a.elites(1) == []
    # the other island is independent
    assert a.add(1, 3, 0.25, [0.07, 0.02]).status == "new"


def test_new_cell_with_negative_fitness_reports_fitness_as_improvement():
    a = make(islands=1)
    ins = a.add(0, 1, -3.0, [0.5, 0.5])
    assert ins.status == "new" and ins.improvement == -3.0


def test_equal_fitness_does_not_replace():
    a = make(islands=1)
    a.add(0, 1, 1.0, [0.5, 0.5])
    ins = a.add(0, 2, 1.0, [0.5, 0.5])
    assert ins.status == "not_added" and ins.improvement == 0.0
    assert [e.program_id for e in a.elites()] == [1]
    assert a.stats().best_program_id == 1  # the result archive keeps the incumbent too


def test_cells_follow_grid_layout():
    a = make(islands=1)
    # x: 10 bins over [0, 1], y: 5 bins over [-1, 1]; C order -> cell = ix * 5 + iy
    assert a.cells == 50
    assert a.cell_of([0.0, -1.0]) == 0
    assert a.cell_of([0.15, 0.0]) == 1 * 5 + 2
    assert a.cell_of([1.0, 1.0]) == 49  # the upper bound is inclusive


def test_out_of_range_features_land_in_edge_cells():
    a = make(islands=1)
    assert a.cell_of([-5.0, -100.0]) == a.cell_of([0.0, -1.0]) == 0
    assert a.cell_of([7.0, 3.0]) == a.cell_of([1.0, 1.0]) == 49
    assert a.cell_of([2.0, 0.0]) == a.cell_of([0.99, 0.0])
    ins = a.add(0, 1, 1.0, [1e9, -1e9])
    assert ins.status == "new" and ins.cell == a.cell_of([1.0, -1.0])
    # the elite keeps the features it was given
    assert a.elites()[0].features == (1e9, -1e9)


def test_feature_validation():
    a = make(islands=1)
    with pytest.raises(ValueError, match=r"expected 2 features \(x, y\) but got 3"):
        a.add(0, 1, 1.0, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"expected 2 features \(x, y\) but got 1"):
        a.cell_of([0.1])
    with pytest.raises(ValueError, match="finite features"):
        a.add(0, 1, 1.0, [math.nan, 0.2])
    with pytest.raises(ValueError, match="finite features"):
        a.add(0, 1, 1.0, [math.inf, 0.2])
    with pytest.raises(ValueError, match="finite float fitness"):
        a.add(0, 1, math.nan, [0.1, 0.2])
    with pytest.raises(ValueError, match="finite float fitness"):
        a.add(0, 1, -math.inf, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"island to be an int in \[0, 1\) but got 1"):
        a.add(1, 1, 1.0, [0.1, 0.2])
    with pytest.raises(ValueError, match="program_id"):
        a.add(0, 2**53, 1.0, [0.1, 0.2])
    assert a.elites() == []  # nothing half-inserted


def test_features_may_be_a_mapping_or_array():
    a = make(islands=1)
    assert a.cell_of({"y": 0.0, "x": 0.15}) == a.cell_of(np.array([0.15, 0.0]))
    with pytest.raises(ValueError, match=r"expected features \['x', 'y'\] but got \['x', 'z'\]"):
        a.cell_of({"x": 0.1, "z": 0.2})


def test_large_program_ids_round_trip_as_ints():
    a = make(islands=1)
    big = 2**53 - 1
    a.add(0, big, 1.0, [0.5, 0.5])
    (elite,) = a.elites()
    assert elite.program_id == big and type(elite.program_id) is int
    assert a.sample_parent(0, np.random.default_rng(0)) == big


def test_config_validation():
    with pytest.raises(ValueError, match="expected kind 'grid' or 'cvt' but got 'hex'"):
        make(kind="hex")
    with pytest.raises(ValueError, match="islands"):
        make(islands=0)
    with pytest.raises(ValueError, match="exploit_ratio"):
        make(exploit_ratio=1.5)
    with pytest.raises(ValueError, match="top_fraction"):
        make(top_fraction=0.0)
    with pytest.raises(ValueError, match="low < high"):
        make(descriptors=(DescriptorSpec("x", 1.0, 1.0, 3),))
    with pytest.raises(ValueError, match="unique"):
        make(descriptors=(DescriptorSpec("x", 0, 1, 3), DescriptorSpec("x", 0, 1, 3)))
    with pytest.raises(ValueError, match="centroids=None for kind='grid'"):
        make(centroids=np.zeros((4, 2)))


# -- sampling -------------------------------------------------------------------------------------

def filled(islands=2, n=40, seed=1, **config):
    """An archive whose island i holds programs with ids i*1000 + j, distinct cells, fitness j."""
    a = make(islands=islands, **config)
    for i in range(islands):
        for j in range(n):
            x, y = (j // 5) / 10 + 0.05, (j % 5) * 0.4 - 0.8
            assert a.add(i, i * 1000 + j, float(j), [x, y]).status == "new"
    return a


def test_sample_parent_returns_only_island_elites():
    a = filled(islands=3, n=20)
    rng = np.random.default_rng(0)
    for island in range(3):
        ids = {e.program_id for e in a.elites(island)}
        assert {a.sample_parent(island, rng) for _ in range(200)} <= ids
    assert make(islands=2).sample_parent(1, rng) is None


def test_exploit_ratio_one_samples_only_top_elites():
    a = filled(islands=1, n=40, exploit_ratio=1.0, top_fraction=0.2)
    rng = np.random.default_rng(0)
    draws = [a.sample_parent(0, rng) for _ in range(500)]
    top = set(range(32, 40))  # ceil(0.2 * 40) = 8 best: fitness 32..39
    assert set(draws) == top


def test_exploit_ratio_zero_samples_uniformly():
    a = filled(islands=1, n=40, exploit_ratio=0.0)
    rng = np.random.default_rng(0)
    draws = np.array([a.sample_parent(0, rng) for _ in range(4000)])
    assert len(set(draws.tolist())) == 40
    assert abs(np.mean(draws >= 32) - 0.2) < 0.04


def test_exploit_ratio_mixes_statistically():
    # P(top) = r + (1 - r) * top / n = 0.5 + 0.5 * 0.2 = 0.6
    a = filled(islands=1, n=40, exploit_ratio=0.5, top_fraction=0.2)
    rng = np.random.default_rng(1)
    draws = np.array([a.sample_parent(0, rng) for _ in range(4000)])
    assert abs(np.mean(draws >= 32) - 0.6) < 0.04


def test_inspirations_best_first_no_parent_no_duplicates():
    a = filled(islands=2, n=30)
    rng = np.random.default_rng(0)
    for _ in range(50):
        parent = a.sample_parent(0, rng)
        got = a.sample_inspirations(0, 5, rng, exclude=[parent])
        assert len(got) == 5 and len(set(got)) == 5 and parent not in got
        assert all(p < 1000 for p in got)  # island 0 has enough elites
        if parent != 29:
            assert got[0] == 29  # the island's best comes first
    got = a.sample_inspirations(0, 3, rng, exclude=[29])
    assert 29 not in got and len(got) == 3
    assert a.sample_inspirations(0, 0, rng) == []
    with pytest.raises(ValueError, match="k to be a non-negative int"):
        a.sample_inspirations(0, -1, rng)


def test_inspirations_fall_back_to_other_islands_without_duplicates():
    a = make(islands=3)
    for island in range(3):  # the seed program sits in every island (as the engine does)
        a.add(island, 1, 0.0, [0.5, 0.0])
    a.add(0, 2, 1.0, [0.1, 0.0])
    a.add(1, 3, 1.0, [0.1, 0.0])
    a.add(2, 4, 1.0, [0.1, 0.0])
    a.add(2, 5, 1.0, [0.9, 0.0])
    rng = np.random.default_rng(0)
    got = a.sample_inspirations(0, 10, rng, exclude=[2])
    assert got[0] == 1  # best of island 0 once the parent (2) is excluded
    assert sorted(got) == [1, 3, 4, 5]  # 1 appears once although three islands hold it
    assert a.sample_inspirations(1, 2, rng, exclude=[1])[0] == 3
    assert make(islands=1).sample_inspirations(0, 3, rng) == []


# -- migration ------------------------------------------------------------------------------------

def test_ring_migration_moves_best_of_i_into_next_island():
    a = make(islands=3)
    a.add(0, 10, 5.0, [0.05, 0.0])
    a.add(0, 11, 1.0, [0.95, 0.0])
    a.add(1, 20, 7.0, [0.45, 0.0])
    a.add(2, 30, 2.0, [0.05, 0.0])  # same cell as island 0's best, but worse
    before = a.stats()
    migrations = a.migrate()
    assert [(m.program_id, m.from_island, m.to_island) for m in migrations] == [
        (10, 0, 1), (20, 1, 2), (30, 2, 0)]
    assert all(isinstance(m, Migration) for m in migrations)
    assert migrations[0].insertion.status == "new" and migrations[0].insertion.island == 1
    assert migrations[1].insertion.status == "new"
    # 30 lands in 10's cell on island 0 and is worse: sources were chosen before insertion,
    # so island 1 sent 20 (not 10, which it only just received)
    assert migrations[2].insertion.status == "not_added"
    assert migrations[2].insertion.improvement == pytest.approx(-3.0)
    assert {e.program_id for e in a.elites(1)} == {10, 20}
    assert {e.program_id for e in a.elites(2)} == {20, 30}
    assert {e.program_id for e in a.elites(0)} == {10, 11}
    # the result archive is unchanged by migration
    assert a.stats() == before and before.num_elites == 3


def test_migration_single_island_and_empty_islands():
    assert make(islands=1).migrate() == []
    a = make(islands=3)
    a.add(1, 7, 1.0, [0.5, 0.5])
    (m,) = a.migrate()
    assert (m.program_id, m.from_island, m.to_island) == (7, 1, 2)


def test_migration_is_deterministic_and_replayable_as_adds():
    a, b = filled(islands=4, n=25), filled(islands=4, n=25)
    for i in range(4):  # make the islands differ
        a.add(i, 5000 + i, 100.0 + i, [0.95, 0.9 - 0.4 * i])
        b.add(i, 5000 + i, 100.0 + i, [0.95, 0.9 - 0.4 * i])
    ma, mb = a.migrate(), b.migrate()
    assert ma == mb
    # replay (what the engine does on resume): each migration as an add into its destination
    c = filled(islands=4, n=25)
    for i in range(4):
        c.add(i, 5000 + i, 100.0 + i, [0.95, 0.9 - 0.4 * i])
    fit = {e.program_id: (e.fitness, e.features) for e in a.elites()}
    for m in ma:
        f, feats = fit[m.program_id]
        assert c.add(m.to_island, m.program_id, f, feats) == m.insertion
    assert c.elites() == a.elites() and c.stats() == a.stats()


# -- stats ----------------------------------------------------------------------------------------

def test_stats_coverage_and_qd_score_with_offset():
    a = make(islands=2, qd_offset=10.0)
    assert a.stats() == QDStats(0, 0.0, 0.0, None, None)
    a.add(0, 1, 1.0, [0.05, 0.0])
    a.add(0, 2, -2.0, [0.95, 0.0])
    a.add(1, 3, 4.0, [0.05, 0.0])  # same cell as 1 in the result archive, better
    a.add(1, 4, 0.5, [0.55, 0.0])
    s0 = a.stats(0)
    assert s0.num_elites == 2 and s0.coverage == pytest.approx(2 / 50)
    assert s0.qd_score == pytest.approx((1 + 10) + (-2 + 10))
    assert (s0.best_fitness, s0.best_program_id) == (1.0, 1)
    overall = a.stats()
    assert overall.num_elites == 3 and overall.coverage == pytest.approx(3 / 50)
    assert overall.qd_score == pytest.approx((4 + 10) + (-2 + 10) + (0.5 + 10))
    assert (overall.best_fitness, overall.best_program_id) == (4.0, 3)
    assert {e.program_id for e in a.result_elites()} == {2, 3, 4}
    best = a.best()
    assert best == Elite(program_id=3, island=1, fitness=4.0, features=(0.05, 0.0),
                         cell=a.cell_of([0.05, 0.0]))


def test_elites_sorted_by_island_then_cell():
    a = make(islands=2)
    a.add(1, 1, 1.0, [0.9, 0.9])
    a.add(0, 2, 1.0, [0.9, 0.9])
    a.add(1, 3, 1.0, [0.1, 0.1])
    a.add(0, 4, 1.0, [0.5, 0.1])
    keys = [(e.island, e.cell) for e in a.elites()]
    assert keys == sorted(keys) and len(keys) == 4
    assert a.best().program_id == 4  # ties: lowest (island, cell)


# -- CVT ------------------------------------------------------------------------------------------

def test_cvt_seeded_centroids_and_rebuild_with_given_centroids():
    a = make(kind="cvt", cvt_cells=16, islands=2, seed=3)
    b = make(kind="cvt", cvt_cells=16, islands=2, seed=3)
    assert a.centroids.shape == (16, 2) and a.cells == 16
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert np.all(a.centroids[:, 0] >= 0) and np.all(a.centroids[:, 0] <= 1)
    assert make(kind="cvt", cvt_cells=16, seed=4).centroids.tolist() != a.centroids.tolist()

    rng = np.random.default_rng(0)
    ops = [(int(rng.integers(2)), pid, float(rng.normal()), rng.uniform(-0.5, 1.5, 2).tolist())
           for pid in range(200)]
    for op in ops:
        a.add(*op)
    # rebuild from persisted centroids (a different seed must not matter)
    c = make(kind="cvt", cvt_cells=16, islands=2, seed=99, centroids=np.array(a.centroids.tolist()))
    for op in ops:
        c.add(*op)
    assert c.elites() == a.elites() and c.stats() == a.stats()
    assert 0 < a.stats().coverage <= 1
    # out-of-range features go to the centroid nearest the clipped point
    assert a.cell_of([5.0, 5.0]) == a.cell_of([1.0, 1.0])
    with pytest.raises(ValueError, match=r"expected centroids of shape \(16, 2\) but got \(8, 2\)"):
        make(kind="cvt", cvt_cells=16, centroids=np.zeros((8, 2)))


# -- determinism ----------------------------------------------------------------------------------

def _snapshot(a, seed):
    rng = np.random.default_rng(seed)
    samples = []
    for island in range(a.num_islands):
        for _ in range(5):
            parent = a.sample_parent(island, rng)
            samples.append((parent, tuple(a.sample_inspirations(island, 3, rng, exclude=[parent]))))
    return a.elites(), a.result_elites(), [a.stats(i) for i in range(a.num_islands)], a.stats(), \
        a.best(), samples


@pytest.mark.parametrize("kind", ["grid", "cvt"])
def test_replay_gives_identical_archives_and_samples(kind):
    config = dict(kind=kind, islands=4, cvt_cells=32, qd_offset=1.0, seed=7)
    a, b = make(**config), make(**config)
    rng = np.random.default_rng(123)
    log_a, log_b = [], []
    for pid in range(500):
        island = int(rng.integers(4))
        fitness = float(np.round(rng.normal(), 1))  # coarse: plenty of exact ties
        features = rng.uniform(-0.2, 1.2, 2).tolist()
        log_a.append(a.add(island, pid, fitness, features))
        log_b.append(b.add(island, pid, fitness, features))
        if pid % 25 == 24:
            log_a.append(a.migrate())
            log_b.append(b.migrate())
        if pid % 100 == 99:
            assert _snapshot(a, pid) == _snapshot(b, pid)
    assert log_a == log_b
    assert _snapshot(a, 0) == _snapshot(b, 0)
    assert a.stats().num_elites > 0
    # sampling does not disturb the archives
    assert a.elites() == b.elites()


def test_module_exports():
    import evoforge.archive as archive

    for name in islands_mod.__all__:
        assert getattr(archive, name) is getattr(islands_mod, name)


# -- same cells and insertions as pyribs ------------------------------------------------------------

def _points(descriptors, rng, n):
    """Random points around the ranges, plus every cell boundary (where float error bites)."""
    lows = np.array([d.low for d in descriptors])
    highs = np.array([d.high for d in descriptors])
    span = highs - lows
    points = [rng.uniform(lows - 0.2 * span, highs + 0.2 * span) for _ in range(n)]
    for k in range(max(d.bins for d in descriptors) + 1):
        points.append(np.array([d.low + (d.high - d.low) * min(k, d.bins) / d.bins for d in descriptors]))
    return [np.clip(p, lows, highs) for p in points]


@pytest.mark.parametrize("kind", ["grid", "cvt"])
def test_cells_and_insertions_match_pyribs(kind):
    """The archive keeps its own arrays (so a grid run never imports pyribs), but maps points to the
    cells pyribs' GridArchive / CVTArchive would and inserts by pyribs' MAP-Elites rule."""
    from ribs.archives import CVTArchive, GridArchive

    descriptors = (DescriptorSpec(name="a", low=0.0, high=1.0, bins=7),
                   DescriptorSpec(name="b", low=-3.0, high=60.0, bins=13),
                   DescriptorSpec(name="c", low=-1.0, high=1.0, bins=3))
    ours = make(descriptors=descriptors, kind=kind, islands=1, cvt_cells=40, seed=5)
    ranges = [(d.low, d.high) for d in descriptors]
    if kind == "grid":
        theirs = GridArchive(solution_dim=1, dims=[d.bins for d in descriptors], ranges=ranges)
    else:
        theirs = CVTArchive(solution_dim=1, centroids=np.array(ours.centroids), ranges=ranges)
    rng = np.random.default_rng(11)
    for pid, point in enumerate(_points(descriptors, rng, 400)):
        cell = ours.cell_of(point.tolist())
        assert cell == int(theirs.index_of_single(point))
        fitness = float(np.round(rng.normal(), 1))
        mine = ours.add(0, pid, fitness, point.tolist())
        info = theirs.add_single(np.array([pid], dtype=np.float64), fitness, point)
        assert mine.status == {0: "not_added", 1: "improved", 2: "new"}[int(info["status"])]
        assert mine.improvement == pytest.approx(float(info["value"]))
    data = theirs.data(["index", "solution", "objective"])
    order = np.argsort(data["index"])
    assert [(e.cell, e.program_id, e.fitness) for e in ours.elites(0)] == [
        (int(c), int(s), float(f)) for c, s, f in zip(data["index"][order], data["solution"][order, 0],
                                                        data["objective"][order])]


@pytest.mark.parametrize("config, loaded", [
    ("ArchiveConfig()", "[]"),
    # A resumed CVT run has its centroids: a k-d tree (SciPy), no k-means (pyribs, scikit-learn).
    ("ArchiveConfig(kind='cvt', cvt_cells=3), centroids=[[0.1], [0.5], [0.9]]", "['scipy']"),
])
def test_archives_import_no_pyribs_once_they_have_their_cells(config, loaded):
    import subprocess
    import sys

    code = ("import sys; from evoforge.archive.islands import *; "
            f"a = IslandArchives(descriptors=[DescriptorSpec('x', 0.0, 1.0, 4)], config={config}, seed=0); "
            "a.add(0, 1, 1.0, [0.5]); "
            "print(sorted(m for m in ('ribs', 'sklearn', 'pandas', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == loaded
