"""`evoforge.prompts.sanitize`: candidate text made safe to print, embed or send — and nothing else changed."""

import json

import pytest

from evoforge.prompts.sanitize import clean, clip, code_safe, json_safe, one_line

NASTY = "ok " + chr(0xDCFF) + "\x00\x1b[2J\x1b]52;c;cGF5bG9hZA==\x07\x9b31m\u202eevil\u2028end"


def test_clean_escapes_everything_that_could_act_and_keeps_the_rest():
    text = clean(NASTY + "\ttab\nnext line é ✓ 😀")
    assert text == ("ok \\udcff\\x00\\x1b[2J\\x1b]52;c;cGF5bG9hZA==\\x07\\x9b31m\\u202eevil\\u2028end"
                    "\ttab\nnext line é ✓ 😀")
    text.encode("utf-8")  # no lone surrogate left: this would raise


@pytest.mark.parametrize("raw, shown", [("a\r\nb", "a\nb"), ("50%\r100%", "50%\n100%"), ("\x7f", "\\x7f")])
def test_carriage_returns_become_newlines_and_del_is_escaped(raw, shown):
    assert clean(raw) == shown


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut():
    text = "H" * 600 + "M" * 10_000 + "T" * 600
    clipped = clip(text, 1000)
    assert clipped.startswith("H" * 500) and clipped.endswith("T" * 500)
    assert "(10200 characters cut)" in clipped and "M" not in clipped
    assert clip("short", 1000) == "short"
    assert clean(text, max_chars=1000) == clipped


def test_one_line_is_one_short_line():
    line = one_line("first\nsecond\t\tthird " + chr(0xD800), max_chars=40)
    assert line == "first second third \\ud800"
    assert one_line("x" * 100, max_chars=10) == "x" * 9 + "…"


def test_code_safe_changes_only_lone_surrogates():
    code = "def f():\n\treturn '\x1b' + '" + chr(0xDCFF) + "'  # é\n"
    assert code_safe(code) == code.replace(chr(0xDCFF), "\\udcff")


def test_json_safe_makes_strict_utf8_json():
    data = {"metrics": {"m" + chr(0xDCFF): float("nan"), "inf": float("inf"), "fine": 1.5},
            "artifacts": {"e": NASTY}, "list": (1, "x\x00"), "flag": True, "none": None}
    text = json.dumps(json_safe(data), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    back = json.loads(text)
    assert back["metrics"] == {"m\\udcff": None, "inf": None, "fine": 1.5}
    assert back["list"] == [1, "x\\x00"] and back["flag"] is True and back["none"] is None
    assert "\x1b" not in back["artifacts"]["e"] and "\\x1b[2J" in back["artifacts"]["e"]
