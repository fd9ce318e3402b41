"""Programs of several files: the bundle format, task folders, edits that name their file, the offline
operator, the sandbox's folder, every version stored, Run.diff per file, and the knapsack_files task."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evoforge.archive import Run
from evoforge.engine.config import RunConfig
from evoforge.engine.edits import SearchReplace, apply_reply, format_search_replace, parse_search_replace
from evoforge.engine.llm.base import Prompt
from evoforge.engine.llm.offline import OfflineMutator
from evoforge.engine.session import start_run
from evoforge.engine.task import load_task
from evoforge.evaluators.bundle import check_path, is_bundle, join_bundle, materialise, split_bundle
from evoforge.evaluators.types import TaskError
from evoforge.prompts import ProgramView, PromptContext, render_prompt

REPO = Path(__file__).resolve().parents[2]
KNAPSACK = REPO / "tasks" / "knapsack_files"
BUNDLE = load_task("knapsack_files").initial_program


def test_bundles_round_trip_and_refuse_paths_that_leave_the_folder(tmp_path):
    files = [("a.py", "x = 1\n"), ("sub/b.c", "int b;\n")]
    text = join_bundle(files)
    assert is_bundle(text) and split_bundle(text) == files and not is_bundle("x = 1\n")
    written = materialise(text, str(tmp_path / "prog"))
    assert (tmp_path / "prog" / "sub" / "b.c").read_text() == "int b;\n" and len(written) == 2
    for bad in ("../evil.py", "/etc/passwd", "a/../../b.py", "a//b.py"):
        with pytest.raises(ValueError, match="must be relative"):
            materialise(f"=== FILE: {bad} ===\nx = 1\n", str(tmp_path / "p2"))
    with pytest.raises(ValueError, match="must be relative"):
        check_path("")
    assert not (tmp_path / "evil.py").exists()
    with pytest.raises(ValueError, match="twice"):
        split_bundle("=== FILE: a.py ===\n=== FILE: a.py ===\n")


def test_a_task_folder_program_loads_as_a_bundle_with_frozen_files(tmp_path):
    task = load_task("knapsack_files")
    assert task.multi_file and task.program_name == "program" and task.language == "python"
    assert [p for p, _ in split_bundle(task.initial_program)] == ["main.py", "packing.py", "scoring.py"]
    folder = tmp_path / "t"
    (folder / "prog").mkdir(parents=True)
    (folder / "prog" / "a.py").write_text("x = 1\n")
    (folder / "evaluator.py").write_text("def evaluate(p):\n    return {'score': 1}\n")
    (folder / "task.toml").write_text('initial_program = "prog"\n')
    with pytest.raises(TaskError, match="no file of the program folder has an EVOLVE-BLOCK"):
        load_task(folder)


def test_an_edit_names_its_file_and_matches_only_there():
    edit = format_search_replace([SearchReplace("    return value / weight\n", "    return value / weight ** 0.9\n",
                                                "scoring.py")])
    assert edit.startswith("scoring.py\n<<<<<<< SEARCH")
    assert parse_search_replace("Here is the change.\n\n`scoring.py`\n" + edit.split("\n", 1)[1])[0].path == \
        "scoring.py"
    result = apply_reply(BUNDLE, edit)
    assert result.ok and dict(split_bundle(result.code))["scoring.py"].count("weight ** 0.9") == 1
    wrong_file = apply_reply(BUNDLE, edit.replace("scoring.py", "packing.py", 1))
    assert not wrong_file.ok and "SEARCH matched" in wrong_file.reason
    missing = apply_reply(BUNDLE, edit.replace("scoring.py", "ranking.py", 1))
    assert not missing.ok and "no file 'ranking.py'" in missing.reason and "main.py" in missing.reason
    frozen = format_search_replace([SearchReplace("    return sorted(pack(order, values, weights, capacity))\n",
                                                  "    return []\n", "main.py")])
    assert not apply_reply(BUNDLE, frozen).ok                      # main.py has no EVOLVE-BLOCK
    broken = edit.replace("weight ** 0.9\n", "weight ** (0.9\n")
    result = apply_reply(BUNDLE, broken)
    assert not result.ok and result.reason.startswith("scoring.py: the edited program does not parse")


def test_rewrites_of_one_file_name_it_and_never_touch_a_frozen_one():
    body = "def pack(order, values, weights, capacity):\n    return []\n"
    ok = apply_reply(BUNDLE, f"packing.py\n```python\n{body}```\n")
    assert ok.ok and ok.kind == "rewrite" and "return []" in dict(split_bundle(ok.code))["packing.py"]
    assert dict(split_bundle(ok.code))["main.py"] == dict(split_bundle(BUNDLE))["main.py"]
    unnamed = apply_reply(BUNDLE, f"```python\n{body}```\n")
    assert not unnamed.ok and "must name its file" in unnamed.reason
    frozen = apply_reply(BUNDLE, "main.py\n```python\ndef solve(values, weights, capacity):\n    return []\n```\n")
    assert not frozen.ok and "main.py is frozen" in frozen.reason


def test_the_prompt_explains_the_files_and_shows_them():
    context = PromptContext(task_name="k", task_description="d", parent=ProgramView(code=BUNDLE, score=0.9),
                            multi_file=True)
    system, user = render_prompt(context)
    assert "several files" in system and "line before each" in system
    assert "=== FILE: scoring.py ===" in user and "=== FILE: main.py ===" in user
    plain_system, _ = render_prompt(PromptContext(task_name="k", task_description="d",
                                                  parent=ProgramView(code="x = 1\n", score=1.0)))
    assert "several files" not in plain_system


def test_the_offline_operator_mutates_one_evolvable_file_and_names_it():
    mutator = OfflineMutator()
    named = set()
    for seed in range(12):
        reply = asyncio.run(mutator.generate(Prompt(system="", user="", parent_code=BUNDLE, seed=seed)))
        edits = parse_search_replace(reply.text)
        assert edits and len({e.path for e in edits}) == 1 and edits[0].path in ("packing.py", "scoring.py")
        named.add(edits[0].path)
        child = apply_reply(BUNDLE, reply.text)
        assert child.ok and dict(split_bundle(child.code))["main.py"] == dict(split_bundle(BUNDLE))["main.py"]
    assert named == {"packing.py", "scoring.py"}


def _eval(tmp_path: Path, folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "evoforge", "eval", "knapsack_files", str(folder), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.stdout, out.stderr[-2000:]
    return json.loads(out.stdout)


def _variant(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "variant"
    materialise(BUNDLE, str(folder))
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def test_the_sandbox_gets_the_folder_and_both_files_matter(tmp_path):
    initial = _eval(tmp_path, KNAPSACK / "program")
    assert initial["status"] == "ok" and 0.9 < initial["score"] < 0.99
    packing = (KNAPSACK / "program" / "packing.py").read_text().replace("break", "continue")
    better_packing = _eval(tmp_path, _variant(tmp_path, packing=packing))
    assert better_packing["score"] > initial["score"]
    cheat = packing.replace("return chosen", "return list(range(len(order)))")
    invalid = _eval(tmp_path, _variant(tmp_path, packing=cheat))
    assert invalid["status"] == "invalid" and "over the capacity" in invalid["artifacts"]["error"]


@pytest.mark.slow
def test_an_offline_run_stores_every_version_and_diffs_per_file(tmp_path):
    config = RunConfig(task="knapsack_files", iterations=8, llm=("offline",), concurrency=1, seed=2)
    start_run(config, out=tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run" / "best_program")) == ["main.py", "packing.py", "scoring.py"]
    with Run.open(tmp_path / "run") as run:
        programs = run.programs(code=True)
        evaluated = programs[programs["status"] != "rejected"]
        assert all([p for p, _ in split_bundle(code)] == ["main.py", "packing.py", "scoring.py"]
                   for code in evaluated["code"])
        child = evaluated[evaluated["iteration"] > 0].iloc[0]
        diff = run.diff(1, int(child["id"]))
        assert diff.count("--- program 1/") == 1 and ("packing.py" in diff or "scoring.py" in diff)
        assert "main.py" not in diff
    assert np.isfinite(float(programs.iloc[0]["score"]))
    report = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "evoforge", "report", str(tmp_path / "run"), "-o", str(report)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "=== FILE: packing.py ===" in report.read_text()          # the best program, every file of it
