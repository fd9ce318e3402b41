"""Every benchmark once at a tiny size (``python -m benchmarks --quick``), so `make bench` cannot rot.

No time is asserted: the figures are noise on a shared machine. What is asserted is that each
benchmark ran and measured something sane, that the fake LLM's edits are valid and distinct (every
proposal evaluated, none rejected), and that a benchmark that cannot run is reported, not raised.
OpenEvolve (a PyPI install) and the docker/Ray isolation backends (their own suites cover them) are left
out; the Ray placement benchmark runs on a two-node cluster where Ray is installed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a folder of the repo, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.fake_llm import make_edit  # noqa: E402
from benchmarks.common import PROGRAM  # noqa: E402
from benchmarks.openevolve_bench import run_openevolve  # noqa: E402
from benchmarks.report import render_table  # noqa: E402
from evoforge.engine.edits import apply_reply  # noqa: E402


def test_benchmarks_resolve_to_the_repo_package():
    import benchmarks

    assert Path(benchmarks.__file__).resolve().parent == REPO_ROOT / "benchmarks"


def _evoforge_prompt() -> str:
    from evoforge.prompts import ProgramView, PromptContext, render_prompt

    context = PromptContext(task_name="t", task_description="d",
                            parent=ProgramView(code=PROGRAM, score=0.5, metrics={"error": 1.0}),
                            inspirations=[ProgramView(code="z = 9\n", score=0.1)])
    return "\n".join(render_prompt(context))


# OpenEvolve's diff template: "# Current Program Information" comes before "# Current Program".
_OPENEVOLVE_PROMPT = (f"# Current Program Information\n- score: 0.5\n\n# Current Program\n```python\n{PROGRAM}```\n"
                      "\n# Top programs\n```python\nz = 9\n```\n")


@pytest.mark.parametrize("prompt", [_evoforge_prompt(), _OPENEVOLVE_PROMPT], ids=["evoforge", "openevolve"])
def test_fake_llm_edits_apply_and_are_distinct(prompt):
    rng = random.Random(0)
    children = set()
    for serial in range(1, 21):
        edit = apply_reply(PROGRAM, make_edit(prompt, serial, rng))
        assert edit.ok, edit.reason
        children.add(edit.code)
    assert len(children) == 20


def test_fake_llm_says_so_when_there_is_no_program():
    assert "could not find" in make_edit("no code here", 1, random.Random(0))


def test_openevolve_failure_is_reported_not_raised(tmp_path):
    from benchmarks.common import FakeLLM

    result = run_openevolve(tmp_path / "no-such-python", tmp_path, FakeLLM("http://127.0.0.1:9/v1"),
                            tmp_path / "out", iterations=2,
                            workers=1, timeout_s=10)
    assert "cannot start" in result["error"]
    table = render_table({"openevolve": {"unavailable": "installing openevolve failed: no network"},
                          "isolation": {"docker sandbox": {"unavailable": "SandboxError: no daemon"}}})
    assert "unavailable: installing openevolve failed: no network" in table
    assert "unavailable: SandboxError: no daemon" in table


@pytest.mark.slow
def test_quick_bench_runs_every_benchmark(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["--quick", "--skip-openevolve", "--isolation", "process,local", "--work", str(tmp_path / "work"),
                 "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    for name in ("throughput", "cpu", "isolation", "scale", "memory", "startup"):
        assert "error" not in results[name] and "unavailable" not in results[name], results[name]

    throughput = results["throughput"]
    assert len(throughput["runs"]) == 1
    for run in throughput["runs"]:
        assert run["capacity"]["capacity_per_s"] > 0
        assert run["proposals"] == 12
        assert run["evaluated"] == 12 and run["rejected"] == 0  # valid, distinct edits
        assert 0 < run["evals_per_s"] and 0 < run["ratio"]

    cpu = results["cpu"]
    assert cpu["evaluated"] == 6 and cpu["eval_cpu_s"] > 0
    assert 0 < cpu["utilisation"] < 1.5  # a fraction of the cores (slack: CPU clocks are coarse)

    for name in ("process sandbox", "local executor + process"):
        iso = results["isolation"][name]
        assert iso["evaluations"] == 8 and 0 < iso["median_ms"] <= iso["p95_ms"]

    scale = results["scale"]
    assert scale["stored"] == scale["programs"] == 400
    assert 0 < scale["elites"] <= 4 * scale["cells_per_island"]
    assert min(scale[k] for k in ("archive_inserts_per_s", "store_writes_per_s", "parent_samples_per_s",
                                  "parent_samples_with_reads_per_s")) > 0

    memory = results["memory"]
    assert memory["candidates_run"] == 24 and memory["rss_mb_at_1000"] > 0
    assert memory["target_measured"] is False and memory["rss_mb_at_target"] > 0

    startup = results["startup"]
    assert "error" not in startup and not startup["errors"], startup
    assert startup["evoforge_first_request_s"] > 0 and startup["evoforge_first_request_cpu_s"] > 0
    assert startup["evoforge_show_s"] > 0 and startup["evoforge_iterations_0_s"] > 0
    assert "unavailable" in startup["openevolve"]   # --skip-openevolve: said, not silently dropped

    placement = results["placement"]  # Ray's multi-node harness: two one-CPU nodes on 127.0.0.1
    if "unavailable" not in placement:
        [run] = placement["runs"]
        assert "error" not in placement and run["nodes"] == run["slots"] == 2, placement
        assert run["nodes_used"] >= 1 and 0 < run["ratio"] and run["trivial_median_ms"] > 0

    printed = capsys.readouterr().out
    assert "| 1 pipeline, LLM latency 0.05 s" in printed and "| 3 CPU-bound" in printed
    assert "| 6 launch → first LLM request" in printed
    assert results["table"] in printed
