"""Edit parsing and application: diffs, rewrites, frozen code, malformed replies."""

import pytest

from evoforge.engine.edits import (
    SearchReplace, apply_reply, code_hash, evolve_blocks, evolvable_text, format_search_replace,
    normalize_code, parse_search_replace,
)

PROGRAM = '''import math

# EVOLVE-BLOCK-START
def f(x):
    y = x * 2
    return y + 1
# EVOLVE-BLOCK-END

def frozen(x):
    y = x * 2
    return f(x)

# EVOLVE-BLOCK-START
SCALE = 3.0
# EVOLVE-BLOCK-END
'''


def reply(search, replace):
    return format_search_replace([SearchReplace(search, replace)])


def test_evolve_blocks_are_the_lines_between_markers():
    assert evolvable_text(PROGRAM) == ["def f(x):\n    y = x * 2\n    return y + 1\n", "SCALE = 3.0\n"]


def test_no_markers_means_the_whole_file_evolves():
    assert evolve_blocks("x = 1\n") == [(0, 6)]


@pytest.mark.parametrize("bad", ["# EVOLVE-BLOCK-START\nx = 1\n", "x = 1\n# EVOLVE-BLOCK-END\n",
                                 "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n"])
def test_unbalanced_markers_raise(bad):
    with pytest.raises(ValueError, match="expected"):
        evolve_blocks(bad)


def test_diff_applies_inside_the_block_not_to_the_frozen_twin():
    result = apply_reply(PROGRAM, reply("    y = x * 2\n", "    y = x * 3\n"))
    assert result.ok and result.kind == "diff"
    assert "def f(x):\n    y = x * 3\n" in result.code
    assert "def frozen(x):\n    y = x * 2\n" in result.code  # frozen copy untouched


def test_several_edits_apply_in_order_and_across_blocks():
    text = reply("    y = x * 2\n", "    y = x * 4\n") + "\nsome prose\n" + reply("SCALE = 3.0\n", "SCALE = 5.0\n")
    result = apply_reply(PROGRAM, text)
    assert result.ok and result.n_edits == 2
    assert "y = x * 4" in result.code and "SCALE = 5.0" in result.code


def test_edit_touching_frozen_code_is_rejected_with_reason():
    result = apply_reply(PROGRAM, reply("    return f(x)\n", "    return 0\n"))
    assert not result.ok
    assert "frozen code" in result.reason


def test_search_not_found_is_rejected_naming_the_line():
    result = apply_reply(PROGRAM, reply("    z = 7\n", "    z = 8\n"))
    assert not result.ok and "matched nothing" in result.reason and "z = 7" in result.reason


def test_trailing_whitespace_differences_still_match():
    result = apply_reply(PROGRAM, reply("    y = x * 2   \n    return y + 1\n", "    return x\n"))
    assert result.ok and "def f(x):\n    return x\n" in result.code


def test_edit_that_breaks_syntax_is_rejected():
    result = apply_reply(PROGRAM, reply("    return y + 1\n", "    return y +\n"))
    assert not result.ok and "does not parse" in result.reason


def test_replace_may_not_add_markers():
    result = apply_reply(PROGRAM, reply("SCALE = 3.0\n", "SCALE = 1\n# EVOLVE-BLOCK-END\nx = 1\n"))
    assert not result.ok and "markers" in result.reason


def test_empty_replace_deletes_lines():
    program = "# EVOLVE-BLOCK-START\nx = 1\ny = 2\n# EVOLVE-BLOCK-END\n"
    result = apply_reply(program, "<<<<<<< SEARCH\ny = 2\n=======\n>>>>>>> REPLACE\n")
    assert result.ok and result.code == "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"


@pytest.mark.parametrize("text, fragment", [
    ("", "no SEARCH/REPLACE block"),
    ("I think we should use a better algorithm.", "no SEARCH/REPLACE block"),
    ("<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n", "malformed"),
    ("<<<<<<< SEARCH\n=======\nx = 2\n>>>>>>> REPLACE\n", "empty"),
])
def test_malformed_replies_are_rejected(text, fragment):
    result = apply_reply(PROGRAM, text)
    assert not result.ok and fragment in result.reason


def test_full_rewrite_of_a_single_block():
    program = "import os\n# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\nprint(x)\n"
    result = apply_reply(program, "Here it is:\n```python\nx = 2\nz = 3\n```\n")
    assert result.ok and result.kind == "rewrite"
    assert result.code == "import os\n# EVOLVE-BLOCK-START\nx = 2\nz = 3\n# EVOLVE-BLOCK-END\nprint(x)\n"


def test_full_rewrite_of_the_whole_program_must_keep_frozen_code():
    changed = PROGRAM.replace("SCALE = 3.0", "SCALE = 4.0")
    ok = apply_reply(PROGRAM, f"```python\n{changed}```\n")
    assert ok.ok and "SCALE = 4.0" in ok.code
    cheating = changed.replace("return f(x)", "return 99")
    bad = apply_reply(PROGRAM, f"```python\n{cheating}```\n")
    assert not bad.ok and "frozen" in bad.reason


def test_rewrite_without_markers_needs_a_single_block():
    result = apply_reply(PROGRAM, "```python\nx = 1\n```\n")
    assert not result.ok and "several EVOLVE-BLOCKs" in result.reason


def test_parse_and_format_are_inverse():
    edits = [SearchReplace("a = 1\n", "a = 2\n"), SearchReplace("b\n", "")]
    assert parse_search_replace(format_search_replace(edits)) == edits


def test_hash_ignores_comments_and_formatting_but_not_code():
    a = "x = 1  # one\n\n\ny = [1,2]\n"
    b = "x = 1\ny = [1, 2]\n"
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash("x = 2\ny = [1, 2]\n")
    assert normalize_code("x = (\n") == "x = ("  # unparsable code still hashes
