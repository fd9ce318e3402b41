"""Parent-selection policies and the island reset of `IslandArchives`, on the pure archive with seeded RNGs.

Properties of the distributions (which elites are favoured, by how much), never hard-coded draws.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from evoforge.archive.islands import PARENT_SELECTIONS, ArchiveConfig, DescriptorSpec, IslandArchives

DESCRIPTORS = (DescriptorSpec("x", 0.0, 10.0, 10),)
DRAWS = 20_000


def _archive(policy: str, islands: int = 1, **settings) -> IslandArchives:
    config = ArchiveConfig(kind="grid", islands=islands, parent_selection=policy, **settings)
    archive = IslandArchives(descriptors=DESCRIPTORS, config=config, seed=0)
    for cell in range(10):   # program 100 + c in cell c, fitness c: program 109 is the best
        archive.add(0, 100 + cell, float(cell), [cell + 0.5])
    return archive


def _frequencies(archive: IslandArchives, seed: int = 1, **kwargs) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    counts = collections.Counter(archive.sample_parent(0, rng, **kwargs) for _ in range(DRAWS))
    return {pid: counts[pid] / DRAWS for pid in range(100, 110)}


def test_uniform_draws_every_elite_alike():
    freq = _frequencies(_archive("uniform"))
    assert all(abs(f - 0.1) < 0.015 for f in freq.values()), freq


def test_power_law_follows_the_rank_and_alpha_sharpens_it():
    mild, sharp = _frequencies(_archive("power_law", power_law_alpha=0.5)), _frequencies(
        _archive("power_law", power_law_alpha=2.0))
    for freq, alpha in ((mild, 0.5), (sharp, 2.0)):
        by_rank = [freq[109 - r] for r in range(10)]            # rank 1 is the best
        assert by_rank == sorted(by_rank, reverse=True)
        expected = np.arange(1, 11) ** -alpha / np.sum(np.arange(1, 11) ** -alpha)
        assert np.allclose(by_rank, expected, atol=0.015), (by_rank, expected)
    assert sharp[109] > mild[109] + 0.2


def test_power_law_alpha_zero_is_uniform():
    weights = _archive("power_law", power_law_alpha=0.0).parent_weights(0)
    assert np.all(weights == 1.0)


def test_weighted_prefers_fit_parents_and_penalises_many_children():
    archive = _archive("weighted", weighted_lambda=3.0)
    freq = _frequencies(archive)
    assert freq[109] > freq[105] > freq[100]                     # fitter is likelier
    penalised = _frequencies(archive, children={109: 9})
    assert penalised[109] == pytest.approx(freq[109] / 10, abs=0.02)   # 1 / (1 + children)
    assert penalised[108] > freq[108]                             # the mass moves to the others


def test_weighted_is_scale_free_in_fitness():
    small = _archive("weighted").parent_weights(0)
    config = ArchiveConfig(kind="grid", islands=1, parent_selection="weighted")
    scaled = IslandArchives(descriptors=DESCRIPTORS, config=config, seed=0)
    for cell in range(10):
        scaled.add(0, 100 + cell, 1000.0 * cell - 5e5, [cell + 0.5])
    assert np.allclose(small, scaled.parent_weights(0))


def test_exploit_keeps_its_top_fraction_share():
    freq = _frequencies(_archive("exploit", exploit_ratio=0.8, top_fraction=0.2))
    top = freq[109] + freq[108]                                   # ceil(0.2 * 10) = 2 top elites
    assert top == pytest.approx(0.8 + 0.2 * 0.2, abs=0.02)


@pytest.mark.parametrize("policy", PARENT_SELECTIONS)
def test_every_policy_is_a_function_of_the_rng(policy):
    archive = _archive(policy)
    draws = [[archive.sample_parent(0, np.random.default_rng([7, i])) for i in range(50)] for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0])) > 1


def test_an_empty_island_draws_nothing():
    config = ArchiveConfig(kind="grid", islands=2, parent_selection="power_law")
    archive = IslandArchives(descriptors=DESCRIPTORS, config=config, seed=0)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert archive.sample_parent(1, rng) is None and rng.bit_generator.state == state


def test_unknown_policy_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown parent_selection 'tournament'.*power_law"):
        IslandArchives(descriptors=DESCRIPTORS, config=ArchiveConfig(parent_selection="tournament"), seed=0)


def test_reset_empties_the_weaker_half_and_reseeds_from_a_survivor():
    config = ArchiveConfig(kind="grid", islands=4)
    archive = IslandArchives(descriptors=DESCRIPTORS, config=config, seed=0)
    for island, best in enumerate([3.0, 9.0, 1.0, 7.0]):        # islands 2 and 0 are the weaker half
        archive.add(island, 10 * island + 1, best, [best])
        archive.add(island, 10 * island + 2, best - 0.5, [best - 0.9])
    reset = archive.reset_weakest(np.random.default_rng(0))
    assert sorted(i for i, _, _ in reset) == [0, 2]
    for island, program_id, insertion in reset:
        assert program_id in (11, 31)                              # the best of island 1 or 3
        assert [e.program_id for e in archive.elites(island)] == [program_id] and insertion.status == "new"
    assert {e.program_id for e in archive.elites(1)} == {11, 12}   # survivors untouched
    assert archive.stats().num_elites >= 4                          # the result archive keeps what it saw


def test_reset_donors_are_drawn_from_the_survivors():
    donors = set()
    for seed in range(40):
        config = ArchiveConfig(kind="grid", islands=4)
        archive = IslandArchives(descriptors=DESCRIPTORS, config=config, seed=0)
        for island, best in enumerate([3.0, 9.0, 1.0, 7.0]):
            archive.add(island, 10 * island + 1, best, [best])
        donors |= {pid for _, pid, _ in archive.reset_weakest(np.random.default_rng(seed))}
    assert donors == {11, 31}
