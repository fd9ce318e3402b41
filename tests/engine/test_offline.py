"""The offline mutation operator: valid, frozen-safe, deterministic, diverse SEARCH/REPLACE replies."""

import ast
import asyncio
import re

import numpy as np
import pytest

from evoforge.engine.edits import apply_reply, code_hash, evolve_blocks, evolvable_text, parse_search_replace
from evoforge.engine.llm.base import Prompt, Reply
from evoforge.engine.llm.offline import KINDS, OfflineMutator

TWO_BLOCKS = '''"""Two evolvable blocks with frozen code around them."""
import math

# EVOLVE-BLOCK-START
def f(x):
    a = 1.5
    b = 0.25  # offset
    if x > 2:
        b = b + 0.5 * x
    return a * x + b
# EVOLVE-BLOCK-END


def helper(y):
    scale = 2.5
    return y * scale + 1  # frozen


# EVOLVE-BLOCK-START
def g(values):
    total = 0.0
    for v in values:
        total += min(v, 3.0)
    return total / max(len(values), 1)
# EVOLVE-BLOCK-END


def run():
    return [f(x) + g([x, helper(x)]) + math.sqrt(x) for x in range(10)]
'''

PACKING = '''"""Constructor-based circle packing for n=26 circles in the unit square."""
import numpy as np

# EVOLVE-BLOCK-START
def construct_packing():
    n = 26
    centers = np.zeros((n, 2))
    ring_radius = 0.3
    inner = 8
    centers[0] = [0.5, 0.5]
    for i in range(inner):
        angle = 2 * np.pi * i / inner
        centers[i + 1] = [0.5 + ring_radius * np.cos(angle), 0.5 + ring_radius * np.sin(angle)]
    for i in range(n - inner - 1):
        angle = 2 * np.pi * i / (n - inner - 1)
        centers[i + inner + 1] = [0.5 + 0.7 * np.cos(angle) / 2, 0.5 + 0.7 * np.sin(angle) / 2]
    centers = np.clip(centers, 0.01, 0.99)
    radii = compute_radii(centers)
    return centers, radii


def compute_radii(centers):
    n = centers.shape[0]
    radii = np.minimum.reduce([centers[:, 0], centers[:, 1], 1 - centers[:, 0], 1 - centers[:, 1]])
    for i in range(n):
        for j in range(i + 1, n):
            d = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > d:
                scale = d / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    return radii
# EVOLVE-BLOCK-END


def run_packing():
    centers, radii = construct_packing()
    return centers, radii, float(np.sum(radii))
'''

NO_MARKERS = '''import math


def area(r):
    k = 3
    return k * math.pi * r ** 2


def perimeter(r):
    return 2.0 * math.pi * r


TOTAL = area(1.0) + perimeter(2.0)
'''


def frozen(program):
    parts, pos = [], 0
    for a, b in evolve_blocks(program):
        parts.append(program[pos:a])
        pos = b
    parts.append(program[pos:])
    return parts


def one(program, kind, seed=0, inspirations=()):
    mutator = OfflineMutator()
    mutations = mutator.propose_mutations(program, list(inspirations), np.random.default_rng(seed),
                                          kinds=(kind,), n_mutations=1)
    assert len(mutations) == 1 and mutations[0].kind == kind
    reply = mutator.propose(program, list(inspirations), np.random.default_rng(seed), kinds=(kind,), n_mutations=1)
    result = apply_reply(program, reply)
    assert result.ok and result.code == mutations[0].code
    return result.code


def changed_lines(parent, child):
    a, b = parent.splitlines(), child.splitlines()
    return [x for x in a if x not in b], [y for y in b if y not in a]


@pytest.mark.parametrize("program", [TWO_BLOCKS, PACKING], ids=["two-blocks", "packing"])
def test_replies_apply_keep_frozen_code_and_are_diverse(program):
    mutator = OfflineMutator()
    ok, hashes = 0, set()
    for seed in range(300):
        reply = mutator.propose(program, [], np.random.default_rng(seed))
        result = apply_reply(program, reply)
        if not result.ok:
            continue
        ok += 1
        assert frozen(result.code) == frozen(program)
        ast.parse(result.code)
        assert code_hash(result.code) != code_hash(program)
        hashes.add(code_hash(result.code))
        assert 1 <= len(parse_search_replace(reply)) <= 3
    assert ok >= 285
    assert len(hashes) >= 100


def test_searches_never_quote_frozen_code_and_lie_in_the_blocks():
    mutator = OfflineMutator()
    for seed in range(100):
        mutations = mutator.propose_mutations(TWO_BLOCKS, [], np.random.default_rng(seed))
        current = TWO_BLOCKS
        for m in mutations:
            blocks = "".join(evolvable_text(current))
            assert m.edit.search in blocks and "EVOLVE-BLOCK" not in m.edit.search + m.edit.replace
            assert "def helper" not in m.edit.search and "def run" not in m.edit.search
            current = m.code


@pytest.mark.parametrize("program", [TWO_BLOCKS, PACKING, NO_MARKERS], ids=["two-blocks", "packing", "no-markers"])
def test_replies_are_deterministic_per_seed(program):
    mutator = OfflineMutator()
    for seed in range(40):
        first = mutator.propose(program, [TWO_BLOCKS], np.random.default_rng(seed))
        again = OfflineMutator().propose(program, [TWO_BLOCKS], np.random.default_rng(seed))
        assert first == again and first


def test_constant_changes_a_number_and_keeps_comments():
    child = one(TWO_BLOCKS, "constant", seed=3)
    old, new = changed_lines(TWO_BLOCKS, child)
    assert len(old) == len(new) == 1
    assert re.sub(r"[0-9.e+-]+", "N", old[0]) == re.sub(r"[0-9.e+-]+", "N", new[0])
    if "offset" in old[0]:
        assert "# offset" in new[0]


def test_constants_cover_floats_and_ints_and_keep_positive_counts_positive():
    values = {}
    for seed in range(200):
        child = one(PACKING, "constant", seed=seed)
        ns = re.search(r"    n = (\S+)\n", child).group(1)
        inner = re.search(r"    inner = (\S+)\n", child).group(1)
        values.setdefault("n", set()).add(ns)
        values.setdefault("inner", set()).add(inner)
        assert int(ns) >= 1 and int(inner) >= 1  # ints stay ints and positive counts stay positive
    assert len(values["n"]) > 1 and len(values["inner"]) > 1
    child = one("# EVOLVE-BLOCK-START\nflag = True\nx = 0.5\n# EVOLVE-BLOCK-END\n", "constant")
    assert "flag = True" in child and "x = 0.5\n" not in child


def test_operator_swaps_one_operator():
    swaps = {("+", "-"), ("-", "+"), ("*", "/"), ("/", "*"), ("<", "<="), ("<=", "<"), (">", ">="),
             (">=", ">"), ("min", "max"), ("max", "min"), ("+=", "-="), ("*=", "/="), ("minimum", "maximum")}
    seen = set()
    for seed in range(60):
        for program in (TWO_BLOCKS, PACKING):
            child = one(program, "operator", seed=seed)
            old, new = changed_lines(program, child)
            assert len(old) == len(new) == 1
            a, b = re.findall(r"[a-z_]+|[^\sa-z_0-9]+|\S", old[0]), re.findall(r"[a-z_]+|[^\sa-z_0-9]+|\S", new[0])
            diff = [(x, y) for x, y in zip(a, b) if x != y]
            assert len(a) == len(b) and len(diff) == 1 and diff[0] in swaps, (old, new)
            seen.add(diff[0])
    assert {("+", "-"), ("*", "/"), (">", ">="), ("min", "max"), ("max", "min"), ("+=", "-="),
            ("*=", "/=")} <= seen
    minimum = "# EVOLVE-BLOCK-START\ny = np.minimum(a, 0.5)\n# EVOLVE-BLOCK-END\n"
    assert "y = np.maximum(a, 0.5)" in one(minimum, "operator")
    assert one("# EVOLVE-BLOCK-START\nok = x < 2 and y\n# EVOLVE-BLOCK-END\n", "operator") == \
        "# EVOLVE-BLOCK-START\nok = x <= 2 and y\n# EVOLVE-BLOCK-END\n"  # and/or are left alone
    assert "**" in one(PACKING, "operator")  # ** is never swapped


def test_duplicate_inserts_a_copy_after_the_statement():
    child = one(TWO_BLOCKS, "duplicate", seed=1)
    parent_lines, child_lines = TWO_BLOCKS.splitlines(), child.splitlines()
    assert len(child_lines) > len(parent_lines)
    extra = len(child_lines) - len(parent_lines)
    at = next(i for i, (x, y) in enumerate(zip(parent_lines, child_lines)) if x != y)
    # the inserted lines repeat the lines right before them
    assert child_lines[at:at + extra] == child_lines[at - extra:at]
    assert child_lines[:at] + child_lines[at + extra:] == parent_lines


def test_delete_removes_a_statement_but_never_a_return_def_or_import():
    for seed in range(60):
        child = one(TWO_BLOCKS, "delete", seed=seed)
        parent_lines, child_lines = TWO_BLOCKS.splitlines(), child.splitlines()
        gone = [x for x in parent_lines if x not in child_lines]
        assert len(child_lines) < len(parent_lines) and gone
        assert not any(x.strip().startswith(("return", "def ", "import")) for x in gone)
        assert frozen(child) == frozen(TWO_BLOCKS)
    only = "# EVOLVE-BLOCK-START\ndef f():\n    return 1\n# EVOLVE-BLOCK-END\n"
    assert OfflineMutator().propose(only, [], np.random.default_rng(0), kinds=("delete",)) == ""


def test_delete_never_unbinds_a_name_read_before_it_is_rebound():
    # `pts` is rebound at the end, but read before that: deleting its first binding would raise; `scale` is
    # rebound by a plain assignment before its only later read, so either binding may go.
    program = ("# EVOLVE-BLOCK-START\ndef f(n):\n    pts = [0.0] * n\n    scale = 2.0\n    scale = 3.0\n"
               "    pts[0] = scale\n    count = 1\n    count += n\n    pts = [p * count for p in pts]\n"
               "    return pts\n# EVOLVE-BLOCK-END\n")
    deleted = set()
    for seed in range(80):
        child = one(program, "delete", seed=seed)
        namespace: dict = {}
        exec(child, namespace)
        namespace["f"](3)   # never a NameError / UnboundLocalError
        deleted.update(x.strip() for x in program.splitlines() if x not in child.splitlines())
    assert {"scale = 2.0", "scale = 3.0", "pts[0] = scale"} <= deleted
    assert not deleted & {"pts = [0.0] * n", "count = 1"}


def test_swap_exchanges_two_adjacent_statements():
    child = one(TWO_BLOCKS, "swap", seed=2)
    assert sorted(child.splitlines()) == sorted(TWO_BLOCKS.splitlines()) and child != TWO_BLOCKS
    old, new = changed_lines(TWO_BLOCKS, child)
    assert not old and not new  # same lines, different order
    parent_lines, child_lines = TWO_BLOCKS.splitlines(), child.splitlines()
    moved = [i for i, (x, y) in enumerate(zip(parent_lines, child_lines)) if x != y]
    assert moved == list(range(moved[0], moved[-1] + 1))


def test_crossover_brings_in_a_statement_from_the_inspiration():
    inspiration = TWO_BLOCKS.replace("    a = 1.5\n", "    a = 2.75 * math.e\n").replace(
        "        total += min(v, 3.0)\n", "        total += min(v, 3.0) ** 0.5\n")
    brought = set()
    for seed in range(20):
        child = one(TWO_BLOCKS, "crossover", seed=seed, inspirations=[inspiration])
        assert frozen(child) == frozen(TWO_BLOCKS)
        old, new = changed_lines(TWO_BLOCKS, child)
        assert len(new) == 1 and new[0] in inspiration.splitlines()  # same line, same indentation
        brought.add(new[0].strip())
    assert brought == {"a = 2.75 * math.e", "total += min(v, 3.0) ** 0.5"}


def test_crossover_never_brings_in_a_read_of_a_name_not_yet_bound():
    # The donor `pts = [p * 3 for p in pts]` assigns the same target as the parent's first binding of `pts`
    # but reads `pts`: in its place it would raise UnboundLocalError, so it may only replace the last one.
    program = ("# EVOLVE-BLOCK-START\ndef f(n):\n    pts = [1.0] * n\n    pts[0] = 2.0\n"
               "    pts = [p * 2 for p in pts]\n    return pts\n# EVOLVE-BLOCK-END\n")
    inspiration = program.replace("p * 2", "p * 3")
    replaced = set()
    for seed in range(30):
        child = one(program, "crossover", seed=seed, inspirations=[inspiration])
        namespace: dict = {}
        exec(child, namespace)
        namespace["f"](3)   # never an UnboundLocalError
        replaced.update(x.strip() for x in program.splitlines() if x not in child.splitlines())
    assert "pts = [p * 2 for p in pts]" in replaced and "pts = [1.0] * n" not in replaced


def test_crossover_happens_at_about_its_rate_and_never_without_inspirations():
    inspiration = TWO_BLOCKS.replace("    a = 1.5\n", "    a = 2.75 * math.e\n")
    mutator = OfflineMutator(crossover_rate=0.5, max_mutations=1)
    kinds = [m.kind for seed in range(100)
             for m in mutator.propose_mutations(TWO_BLOCKS, [inspiration], np.random.default_rng(seed))]
    assert 25 <= kinds.count("crossover") <= 75
    kinds = [m.kind for seed in range(100)
             for m in mutator.propose_mutations(TWO_BLOCKS, [], np.random.default_rng(seed))]
    assert "crossover" not in kinds and set(kinds) == set(KINDS) - {"crossover"}


def test_a_program_without_markers_evolves_across_the_whole_file():
    mutator = OfflineMutator()
    touched = set()
    for seed in range(100):
        result = apply_reply(NO_MARKERS, mutator.propose(NO_MARKERS, [], np.random.default_rng(seed)))
        assert result.ok
        old, _ = changed_lines(NO_MARKERS, result.code)
        touched.update(line.split()[0] for line in old if line.strip())
    assert {"k", "return", "TOTAL"} <= touched


def test_a_search_that_occurs_twice_is_widened_until_unique():
    program = ("# EVOLVE-BLOCK-START\ndef f(x):\n    y = x * 2\n    return y\n\n\n"
               "def g(x):\n    y = x * 2\n    return y + 1\n# EVOLVE-BLOCK-END\n")
    for seed in range(40):
        mutator = OfflineMutator()
        for m in mutator.propose_mutations(program, [], np.random.default_rng(seed)):
            assert m.edit.search.count("\n") >= 1
        child = apply_reply(program, mutator.propose(program, [], np.random.default_rng(seed)))
        assert child.ok
    # the constant in g (second occurrence) can be changed, with context that makes it unique
    gs = [one(program, "constant", seed=s) for s in range(30)]
    assert any("def f(x):\n    y = x * 2\n" in c and "def g(x):\n    y = x * 2\n" not in c for c in gs)


def test_nothing_to_mutate_gives_an_empty_reply():
    mutator = OfflineMutator()
    assert mutator.propose("# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\nx = 1\n", [], np.random.default_rng(0)) == ""
    assert mutator.propose("def broken(:\n", [], np.random.default_rng(0)) == ""


def test_generate_returns_an_offline_reply_drawn_from_the_prompt_seed():
    mutator = OfflineMutator()
    prompt = Prompt(system="s", user="u", parent_code=TWO_BLOCKS, inspirations=(PACKING,), seed=123)
    reply = asyncio.run(mutator.generate(prompt))
    assert isinstance(reply, Reply) and reply.model == "offline" and mutator.name == "offline"
    assert reply.prompt_tokens == reply.completion_tokens == 0 and reply.cost_usd == 0.0
    assert reply.text == mutator.propose(TWO_BLOCKS, (PACKING,), np.random.default_rng(123))
    assert apply_reply(TWO_BLOCKS, reply.text).ok
