"""Lessons (`evoforge.engine.lessons`): how a change is classified, the tallies, and the reply's explanation."""

from __future__ import annotations

import numpy as np

from evoforge.engine.lessons import Lessons, change_kind, explanation_of

PARENT = "def f(x):\n    a = 1.5\n    if x < 2:\n        return a * x\n    return x\n"


def test_change_kinds():
    assert change_kind(PARENT, PARENT.replace("1.5", "1.75")) == "constant"
    assert change_kind(PARENT, PARENT.replace("x < 2", "x <= 2")) == "operator"
    assert change_kind(PARENT, PARENT.replace("a * x", "a / x")) == "operator"
    assert change_kind(PARENT, PARENT.replace("    return x\n", "    x = x + 1\n    return x\n")) == "insertion"
    assert change_kind(PARENT, PARENT.replace("    a = 1.5\n", "")) == "deletion"
    assert change_kind(PARENT, PARENT.replace("return a * x", "return sorted([a, x])[0]")) == "restructure"


def test_lessons_refresh_every_k_and_rank_what_helped():
    lessons = Lessons(every=4)
    const, deleted = PARENT.replace("1.5", "2.5"), PARENT.replace("    a = 1.5\n", "")
    refreshed = [lessons.observe(parent_code=PARENT, child_code=child, parent_fitness=1.0, child_fitness=fit,
                                 ok=fit is not None)
                 for child, fit in ((const, 2.0), (deleted, None), (const, 0.5), (deleted, 0.9))]
    assert refreshed == [False, False, False, True]
    first, second = lessons.lines
    assert first.startswith("constant tweaks: 2 tried, 1 improved on their parent (best gain 1)")
    assert second.startswith("removed statements: 2 tried, 0 improved") and "1 failed" in second
    assert Lessons(every=0).observe(parent_code=PARENT, child_code=const, parent_fitness=0.0, child_fitness=1.0,
                                    ok=True) is False


def test_explanation_is_the_prose_outside_the_edits():
    reply = ("Raise the slope: the error is linear in it.\n<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 3.0\n"
             ">>>>>>> REPLACE\nThat should fit exactly.\n```python\nprint(1)\n```\n")
    assert explanation_of(reply) == "Raise the slope: the error is linear in it. That should fit exactly."
    assert explanation_of("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n") is None


def test_hashed_ngram_embedding_separates_constant_tweaks_from_rewrites():
    from evoforge.engine.novelty import HashedNgramEmbedder, NoveltyFilter

    e = HashedNgramEmbedder()
    a, b = e.embed(PARENT), e.embed(PARENT.replace("1.5", "1.75"))
    c = e.embed("def f(x):\n    total = 0\n    for k in range(3):\n        total += k * x\n    return total\n")
    assert np.allclose(e.embed(PARENT), a) and abs(np.linalg.norm(a) - 1) < 1e-12
    assert a @ b > 0.85 > a @ c
    assert np.allclose(e.embed(PARENT + "# a comment\n"), a)            # comments do not count
    programs = {1: PARENT}
    near = NoveltyFilter(0.85, code_of=programs.__getitem__)
    assert near.closest(PARENT.replace("1.5", "1.75"), [1])[0] == 1
    assert near.closest("def g():\n    return [i * i for i in range(10)]\n", [1]) is None
    assert NoveltyFilter(0.0, code_of=programs.__getitem__).closest(PARENT, [1]) is None
