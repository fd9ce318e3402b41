"""The built-in sort_c task: a C kernel compiled in the sandbox, checked against numpy, timed by the evaluator.

Every evaluation goes through `evoforge eval` (the process sandbox, the compile stage of task.toml), so
the compiler, the harness and the confined runs are the real ones. No wall-clock assertions: timings are
checked for structure only (finite, positive, the score being their ratio).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.evaluators.confine import landlock_abi

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "sort_c"
INITIAL = (TASK / "initial_program.c").read_text()
pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                reason="no C compiler (cc or gcc); `make test-deps` installs gcc")

RADIX = """
void sort_u32(uint32_t *keys, size_t n) {
    uint32_t *buf = malloc(n * sizeof *buf + 1);
    size_t count[4][256] = {{0}};
    for (size_t i = 0; i < n; i++) {
        for (int d = 0; d < 4; d++) {
            count[d][(keys[i] >> (8 * d)) & 255]++;
        }
    }
    uint32_t *src = keys, *dst = buf;
    for (int d = 0; d < 4; d++) {
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[d][b];
            count[d][b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            dst[count[d][(src[i] >> (8 * d)) & 255]++] = src[i];
        }
        uint32_t *t = src; src = dst; dst = t;
    }
    free(buf);
}
"""


def _with_block(body: str) -> str:
    head, rest = INITIAL.split("// EVOLVE-BLOCK-START\n")
    _, tail = rest.split("// EVOLVE-BLOCK-END\n")
    return f"{head}// EVOLVE-BLOCK-START\n{body.strip()}\n// EVOLVE-BLOCK-END\n{tail}"


def _eval(tmp_path: Path, code: str) -> dict:
    program = tmp_path / "candidate.c"
    program.write_text(code)
    out = subprocess.run([sys.executable, "-m", "evoforge", "eval", "sort_c", str(program), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.stdout, out.stderr[-2000:]
    return json.loads(out.stdout)


def _check_ok(result: dict) -> None:
    assert result["status"] == "ok", result["artifacts"]
    m = result["metrics"]
    assert all(math.isfinite(m[k]) and m[k] > 0 for k in ("candidate_s", "reference_s", "compile_s"))
    assert result["score"] == pytest.approx(m["reference_s"] / m["candidate_s"])
    assert 10 < result["features"]["binary_kb"] < 100
    assert "x qsort" in result["artifacts"]["timing"]


def test_the_initial_merge_sort_and_a_radix_sort_are_correct_and_timed(tmp_path):
    _check_ok(_eval(tmp_path, INITIAL))
    _check_ok(_eval(tmp_path, _with_block(RADIX)))


def test_a_sort_that_misplaces_keys_is_invalid_with_the_first_wrong_position(tmp_path):
    two_digits = "for (int d = 0; d < 2; d++) {\n        size_t sum"
    wrong = _with_block(RADIX.replace("for (int d = 0; d < 4; d++) {\n        size_t sum", two_digits))
    assert wrong != _with_block(RADIX)
    result = _eval(tmp_path, wrong)
    assert result["status"] == "invalid", result
    assert "sorted the uniform keys wrongly" in result["artifacts"]["error"]


def test_a_program_that_does_not_compile_gets_the_compilers_message_back(tmp_path):
    result = _eval(tmp_path, _with_block(RADIX.replace("size_t sum = 0;", "size_t sum = 0")))
    assert result["status"] == "error"
    assert "the compile stage failed" in result["artifacts"]["error"]
    assert "expected" in result["artifacts"]["compiler_output"]       # the compiler's own words


def test_a_crashing_or_silent_program_is_invalid(tmp_path):
    crash = _with_block("void sort_u32(uint32_t *keys, size_t n) { (void)n; keys[-100000000] = 1; }")
    result = _eval(tmp_path, crash)
    assert result["status"] == "invalid" and "exited with status -11" in result["artifacts"]["error"], result
    silent = _with_block("#include <unistd.h>\n"
                         "void sort_u32(uint32_t *keys, size_t n) { (void)keys; (void)n; _exit(0); }")
    result = _eval(tmp_path, silent)
    assert result["status"] == "invalid" and "wrote 0 bytes" in result["artifacts"]["error"], result


def test_a_candidate_cannot_overwrite_the_reference_it_is_timed_against(tmp_path):
    # It knows the reference lives beside it in the work folder and tries to replace it with a slow one, then
    # sorts correctly. Its runs may write only in their own scratch folder (Landlock), so the write fails; where
    # Landlock is missing, the reference's digest, checked before each of its runs, catches the change.
    attack = _with_block(r'''
#include <dirent.h>
#include <stdio.h>
static int tampered = 0;
void sort_u32(uint32_t *keys, size_t n) {
    DIR *d = opendir("..");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "reference-", 10) == 0) {
            char path[512];
            snprintf(path, sizeof path, "../%s/reference", e->d_name);
            FILE *f = fopen(path, "w");
            if (f) { fputs("#!/bin/sh\nsleep 5\n", f); fclose(f); tampered = 1; }
        }
    }
    if (d) closedir(d);
''' + RADIX.split("{", 1)[1])
    result = _eval(tmp_path, attack)
    if landlock_abi() >= 1:
        _check_ok(result)
    else:
        assert result["status"] == "invalid" and "reference binary changed" in result["artifacts"]["error"]


@pytest.mark.slow
def test_an_offline_run_of_the_c_task_through_the_cli(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", "sort_c", "--iterations", "4", "--llm", "offline",
                           "--seed", "1", "--concurrency", "1", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (out / "best_program.c").read_text().count("// EVOLVE-BLOCK-START") == 1
    rows = sqlite3.connect(out / "run.db").execute("SELECT iteration, status, edit FROM programs").fetchall()
    assert len(rows) == 5 and rows[0][1] == "ok"
    children = [r for r in rows if r[0] > 0]
    assert all(r[1] != "rejected" for r in children), children         # the token operator's edits apply
    assert all("<<<<<<< SEARCH" in r[2] for r in children)
