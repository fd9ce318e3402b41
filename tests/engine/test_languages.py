"""Programs in other languages: markers in the language's comment syntax, no Python parse check, fences
tagged with the language, the language and compile stage from task.toml, and the token-level offline operator."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.engine.edits import apply_reply, evolve_blocks, evolvable_text, format_search_replace, SearchReplace
from evoforge.engine.languages import LANGUAGES, language_named, language_of_file
from evoforge.engine.llm.base import Prompt
from evoforge.engine.llm.offline import OfflineMutator
from evoforge.engine.llm.token_mutations import propose_tokens
from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError
from fakes.tasks import write_tiny_task

C_PROGRAM = """\
#include <stddef.h>
/* frozen header: scale = 2.5 */
static const char *NAME = "kernel 1 + 2";

// EVOLVE-BLOCK-START
float kernel(const float *x, size_t n) {
    float acc = 0.0f;          // running total * 3
    for (size_t i = 0; i < n; i++) {
        acc += x[i] * 2.5f;
        acc = acc - 1;
    }
    return acc / 4;
}
// EVOLVE-BLOCK-END

int frozen(void) { return 7 + 1; }
"""

LUA_PROGRAM = """\
local M = {}
-- EVOLVE-BLOCK-START
function M.f(x)
  return x * 3 + 1 -- comment 5 - 2
end
-- EVOLVE-BLOCK-END
return M
"""


def test_languages_come_from_suffixes_and_names():
    assert language_of_file("kernel.c").name == "c" and language_of_file("k.cu").name == "cuda"
    assert language_of_file("a.rs").name == "rust" and language_of_file("m.lua").comment == "--"
    assert language_of_file("p.py").name == "python" and language_of_file("data.xyz") is None
    assert language_named("C").marker("START") == "// EVOLVE-BLOCK-START"
    with pytest.raises(ValueError, match="unknown language 'cobol'"):
        language_named("cobol")
    assert all(lang.fences and lang.suffixes for lang in LANGUAGES.values())


@pytest.mark.parametrize("program", [C_PROGRAM, LUA_PROGRAM])
def test_markers_in_the_languages_comment_syntax(program):
    (span,) = evolve_blocks(program)
    block = program[span[0]:span[1]]
    assert "EVOLVE-BLOCK" not in block and ("kernel(" in block or "M.f" in block)
    assert "frozen" not in block and "return M\n" not in evolvable_text(program)[0]


def test_c_edits_apply_without_a_python_parse_check_and_frozen_code_stays_frozen():
    edit = format_search_replace([SearchReplace("        acc = acc - 1;\n", "        acc = acc + 1;\n")])
    result = apply_reply(C_PROGRAM, edit, language="c")
    assert result.ok and "acc = acc + 1;" in result.code
    assert not apply_reply(C_PROGRAM, edit).ok          # as Python the child would not parse
    frozen = format_search_replace([SearchReplace("int frozen(void) { return 7 + 1; }\n", "int frozen(void);\n")])
    bad = apply_reply(C_PROGRAM, frozen, language="c")
    assert not bad.ok and "frozen code" in bad.reason
    markers = format_search_replace([SearchReplace("        acc = acc - 1;\n", "// EVOLVE-BLOCK-END\n")])
    assert "markers" in apply_reply(C_PROGRAM, markers, language="c").reason


def test_a_rewrite_fenced_as_c_replaces_the_block():
    body = "float kernel(const float *x, size_t n) {\n    return 0.0f;\n}\n"
    result = apply_reply(C_PROGRAM, f"Simpler:\n```c\n{body}```\n", language="c")
    assert result.ok and result.kind == "rewrite" and "return 0.0f;" in result.code
    assert result.code.endswith("int frozen(void) { return 7 + 1; }\n")
    missing = apply_reply(C_PROGRAM, "no code here", language="c")
    assert not missing.ok and "```c block" in missing.reason


def test_task_language_from_suffix_or_key_and_the_compile_stage(tmp_path):
    path = write_tiny_task(tmp_path / "t")
    (path / "initial_program.py").unlink()
    (path / "kernel.c").write_text(C_PROGRAM)
    toml = (path / "task.toml").read_text()
    (path / "task.toml").write_text('initial_program = "kernel.c"\n' + toml.replace("[limits]", (
        '[compile]\ncommand = "cc -O2 -o {binary} {program}"\ntimeout_s = 5\n\n[limits]')))
    task = load_task(path)
    assert task.language == "c" and task.program_name == "program.c"
    assert task.compile.command == ("cc", "-O2", "-o", "{binary}", "{program}") and task.compile.timeout_s == 5.0
    fields = task.job_fields()
    assert fields["compile_command"] == task.compile.command and fields["program_name"] == "program.c"
    (path / "kernel.txt").write_text(C_PROGRAM)
    (path / "task.toml").write_text('initial_program = "kernel.txt"\n' + toml)
    with pytest.raises(ConfigError, match='kernel.txt names no known language: set language = "c"'):
        load_task(path)
    (path / "task.toml").write_text('initial_program = "kernel.txt"\nlanguage = "c"\n' + toml)
    assert load_task(path).language == "c"


@pytest.mark.parametrize("extra, fragment", [
    ('[compile]\ncommand = ""\n', "got an empty one"),
    ('[compile]\ncommand = 3\n', "expected a command like"),
    ('[compile]\ncommand = "cc"\ntimeout_s = 0\n', "timeout_s: expected seconds > 0"),
    ('[compile]\ncommand = "cc"\nflags = "-O3"\n', "[compile]: unknown key 'flags'"),
    ('language = "cobol"\n', "unknown language 'cobol'"),
])
def test_bad_language_or_compile_settings_are_config_errors(tmp_path, extra, fragment):
    path = write_tiny_task(tmp_path / "t")
    (path / "task.toml").write_text(extra)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert fragment in str(info.value) and "task.toml" in str(info.value)


def _words(text: str) -> list[str]:
    """The identifiers of C code, numbers (with their suffixes and exponents) removed first."""
    import re
    text = re.sub(r"(?<![A-Za-z_0-9])[0-9.][0-9.]*(?:[eE][+-]?[0-9]+)?[uUlLfF]*", " ", text)
    return sorted(re.findall(r"[A-Za-z_]\w*", text))


def test_token_operator_changes_only_numbers_and_operators_in_the_block_never_comments_or_strings():
    language = language_named("c")
    for seed in range(60):
        reply = propose_tokens(C_PROGRAM, language, np.random.default_rng(seed))
        assert reply, seed
        child = apply_reply(C_PROGRAM, reply, language="c")
        assert child.ok and child.code != C_PROGRAM, (seed, child.reason)
        before_block, after_block = evolvable_text(C_PROGRAM)[0], evolvable_text(child.code)[0]
        assert child.code.replace(after_block, before_block) == C_PROGRAM     # frozen parts untouched
        assert "// running total * 3" in after_block                         # comments untouched
        # numbers, operators and the order of statements change; never a name, a line count or a brace
        assert _words(after_block) == _words(before_block), (seed, reply)
        assert len(after_block.splitlines()) == len(before_block.splitlines())
        assert sorted(c for c in after_block if c in "{};()[]") == sorted(c for c in before_block if c in "{};()[]")
        assert "const float /x" not in after_block and "size_t /" not in after_block   # no pointer star swapped
    assert propose_tokens(C_PROGRAM, language, np.random.default_rng(3)) == \
        propose_tokens(C_PROGRAM, language, np.random.default_rng(3))                # seeded: repeatable


def test_token_operator_swaps_statements_and_perturbs_suffixed_numbers():
    language = language_named("c")
    children = [apply_reply(C_PROGRAM, propose_tokens(C_PROGRAM, language, np.random.default_rng(s),
                                                      max_mutations=1), language="c").code for s in range(80)]
    assert any("acc = acc - 1;\n        acc += x[i] * 2.5f;" in c for c in children)        # the swap kind
    assert any("2.5f" not in c and "f;" in evolvable_text(c)[0].split("x[i] * ")[1][:12] for c in children)
    assert any("acc = acc + 1;" in c or "acc / 4" not in c for c in children)                  # operators


def test_lua_comments_with_dashes_are_not_operators():
    language = language_named("lua")
    for seed in range(30):
        reply = propose_tokens(LUA_PROGRAM, language, np.random.default_rng(seed))
        child = apply_reply(LUA_PROGRAM, reply, language="lua")
        assert child.ok and "-- comment 5 - 2" in child.code, (seed, reply)


def test_the_offline_client_uses_the_token_operator_for_c():
    import asyncio
    mutator = OfflineMutator()
    reply = asyncio.run(mutator.generate(Prompt(system="", user="", parent_code=C_PROGRAM, seed=5, language="c")))
    assert reply.text and apply_reply(C_PROGRAM, reply.text, language="c").ok
    python_reply = asyncio.run(mutator.generate(Prompt(system="", user="", parent_code=C_PROGRAM, seed=5)))
    assert python_reply.text == ""      # the Python operator cannot parse C: nothing to offer


def test_a_c_tasks_prompt_fences_c_and_shows_its_markers(tmp_path):
    from evoforge.engine.config import RunConfig
    from evoforge.engine.evolution import Evolution
    from evoforge.archive.islands import IslandArchives
    from evoforge.archive.store import CandidateRecord
    from evoforge.prompts import render_prompt, render_retry

    task = load_task("sort_c")
    islands = IslandArchives(descriptors=task.descriptors, config=task.archive, seed=0)
    record = CandidateRecord(id=1, code=task.initial_program, status="ok", score=2.0, fitness=2.0,
                             features={"code_length": 50.0, "binary_kb": 16.0}, iteration=0)
    core = Evolution(task=task, config=RunConfig(task="sort_c", seed=0), islands=islands,
                     lookup=lambda i: record)
    core.seed(record)
    system, user = render_prompt(core.propose(1).context, task_dir=task.path)
    assert "`// EVOLVE-BLOCK-START`" in system and "`# EVOLVE-BLOCK-START`" not in system
    assert "```c\n" in user and "```python" not in user
    assert "```c fenced block" in render_retry("no match", reply_format="rewrite", code_fence="c")
