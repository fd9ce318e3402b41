"""Reward hacking against every built-in task evaluator, through the process sandbox as `evoforge eval` runs it.

Each trick would score (or score better) if the candidate ran in the evaluator's interpreter: patching the
evaluator module, ``numpy``, ``math`` or ``builtins`` so a check passes, then returning something the check
should refuse (NaN, a float subclass with odd comparisons, the wrong shape, overlapping circles). Because
the built-in evaluators call the candidate through `evoforge.evaluators.candidate`, the patches land in the
candidate's own process and the refused value is ``invalid``. Reading the answer key (the caller's frames
or the task's data files) finds nothing and the candidate's error is an ``error``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoforge.engine.task import load_task
from evoforge.evaluators.types import Status
from evoforge.sandbox.job import EvaluationJob
from evoforge.sandbox.process import ProcessSandbox

REPO = Path(__file__).resolve().parents[2]

PATCH_EVERYTHING = """
import builtins, gc, math, sys, types
import numpy as np

def _patch_everything():
    # What an in-process candidate would do: neuter every check of the evaluator it can find.
    def attempt(fn):
        try:
            fn()
        except Exception:
            pass
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType):
            continue
        for name in ("_check_scores", "_as_node", "_check", "verify_packing", "_invalid", "_excess"):
            if name in vars(module):
                attempt(lambda: setattr(module, name, lambda *a, **k: a[0] if a else None))
        for name in ("_isfinite", "_all"):
            if name in vars(module):
                attempt(lambda: setattr(module, name, lambda *a, **k: True))
    np.isfinite = lambda a, *k, **kw: np.ones(np.shape(a), dtype=bool)
    np.all = lambda *a, **k: True
    math.isfinite = lambda x: True
    math.fsum = lambda xs: 0.0
    real_isinstance = isinstance
    builtins.isinstance = lambda obj, kinds: True if kinds in (int, float) else real_isinstance(obj, kinds)
    for obj in gc.get_objects():
        if real_isinstance(obj, types.FunctionType) and obj.__name__ in ("_check_scores", "_as_node", "_check"):
            attempt(lambda: setattr(obj, "__code__", (lambda *a, **k: a[0]).__code__))
"""

LYING_FLOAT = """
class Lying(float):
    def __lt__(self, other): return False
    def __le__(self, other): return False
    def __gt__(self, other): return True
    def __ge__(self, other): return True
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
"""

FRAME_THIEF = """
import sys

def _steal(name):
    frame = sys._getframe(1)
    while frame is not None:
        if name in frame.f_locals:
            return frame.f_locals[name]
        frame = frame.f_back
    raise LookupError(f"no {name!r} in any caller frame: the evaluator is not in this process")
"""

BIN_PACKING = {
    "nan": "def priority(item, bins):\n    return np.full(len(bins), np.nan)",
    "float_subclass": LYING_FLOAT + "def priority(item, bins):\n    return [Lying(1.0)] * len(bins)",
    "wrong_shape": "def priority(item, bins):\n    return np.zeros(len(bins) + 3)",
    "scalar": "def priority(item, bins):\n    return 1.0",
    "patch_then_nan": PATCH_EVERYTHING + "def priority(item, bins):\n    _patch_everything()\n    return np.full(len(bins), np.nan)",
    "patch_then_wrong_shape": PATCH_EVERYTHING + "def priority(item, bins):\n    _patch_everything()\n    return np.zeros(1)",
    "object_array": "def priority(item, bins):\n    return np.array([object()] * len(bins))",
    "structured_array": "def priority(item, bins):\n    return np.zeros(len(bins), dtype=[('a', 'f8')])",
}
TSP = {
    "nan": "def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):\n    return float('nan')",
    "int_subclass": "class Sly(int):\n    def __eq__(self, o): return True\n    def __hash__(self): return 0\n\n"
                    "def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):\n"
                    "    return Sly(current_node)",
    "wrong_shape": "def select_next_node(current_node, destination_node, unvisited_nodes, distance_matrix):\n"
                   "    return np.array(sorted(unvisited_nodes))",
    "patch_then_revisit": PATCH_EVERYTHING + "def select_next_node(current_node, destination_node, unvisited_nodes, "
                          "distance_matrix):\n    _patch_everything()\n    return current_node",
}
CIRCLES = {
    "nan": "def run_packing():\n    return np.full((26, 2), 0.5), np.full(26, np.nan)",
    "float_subclass": LYING_FLOAT + "def run_packing():\n    return [[0.5, 0.5]] * 26, [Lying(0.1)] * 26",
    "wrong_shape": "def run_packing():\n    return np.full((25, 2), 0.5), np.full(25, 0.01)",
    "patch_then_overlap": PATCH_EVERYTHING + "def run_packing():\n    _patch_everything()\n"
                          "    return np.full((26, 2), 0.5), np.full(26, 0.5), 13.0",
    "reported_sum": "def run_packing():\n    return np.full((26, 2), 0.5), np.full(26, 0.3), 99.0",
}
ANSWER_KEYS = {   # reading what the evaluator knows: nothing there (frames) or unreadable (task folder)
    ("bin_packing_or", "frames"): FRAME_THIEF + "def priority(item, bins):\n    items = _steal('items')\n    return np.zeros(len(bins))",
    ("bin_packing_or", "data_file"): "import json, os\n\ndef priority(item, bins):\n"
        "    json.load(open(os.path.join(TASK_DIR, 'data', 'orlib_binpack1.json')))\n    return np.zeros(len(bins))",
    ("tsp_construct", "data_file"): "import json, os\n\ndef select_next_node(current_node, destination_node, "
        "unvisited_nodes, distance_matrix):\n    json.load(open(os.path.join(TASK_DIR, 'data', 'optimal_lengths.json')))\n"
        "    return min(unvisited_nodes)",
    ("circle_packing", "data_file"): "import json, os\n\ndef run_packing():\n"
        "    rows = np.array(json.load(open(os.path.join(TASK_DIR, 'data', 'alphaevolve_n26.json')))['circles'])\n"
        "    return rows[:, :2], rows[:, 2]",
    ("circle_packing", "frames"): FRAME_THIEF + "def run_packing():\n    _steal('BEST_KNOWN')\n"
        "    return np.full((26, 2), 0.5), np.zeros(26)",
}

CASES = ([("bin_packing_or", name, code) for name, code in BIN_PACKING.items()]
         + [("bin_packing_weibull", name, BIN_PACKING[name]) for name in ("nan", "patch_then_wrong_shape")]
         + [("tsp_construct", name, code) for name, code in TSP.items()]
         + [("circle_packing", name, code) for name, code in CIRCLES.items()])


@pytest.fixture(scope="module")
def sandbox():
    with ProcessSandbox() as box:
        yield box


def _evaluate(sandbox: ProcessSandbox, task_name: str, code: str):
    """One evaluation exactly as `evoforge eval` builds it (engine.session.evaluate_file)."""
    task = load_task(task_name)
    # The evaluator's probe runs first where there is one (functional fingerprint), as in a run with [search]
    # fingerprint on: a trick played in the probe gives no fingerprint, and the evaluation still finds it out.
    job = EvaluationJob(program_text="import numpy as np\n" + code + "\n", task_dir=str(task.path),
                        evaluator_file=task.evaluator_file, timeout_s=task.limits.timeout_s,
                        memory_mb=task.limits.memory_mb, cascade_thresholds=task.cascade_thresholds,
                        extra={"known_fingerprints": {}} if task.has_probe else {})
    return sandbox.run(job)


@pytest.mark.parametrize("task_name, trick, code", CASES, ids=[f"{t}-{n}" for t, n, _ in CASES])
def test_tricks_are_invalid(sandbox, task_name, trick, code):
    result = _evaluate(sandbox, task_name, code)
    assert result.status == Status.INVALID, (result.status, result.artifacts, result.stderr[-1500:])
    assert result.score is None


@pytest.mark.parametrize("task_name, trick", list(ANSWER_KEYS), ids=[f"{t}-{n}" for t, n in ANSWER_KEYS])
def test_reading_the_answer_key_fails(sandbox, task_name, trick):
    task_dir = str(load_task(task_name).path)
    result = _evaluate(sandbox, task_name, ANSWER_KEYS[task_name, trick].replace("TASK_DIR", repr(task_dir)))
    assert result.status == Status.ERROR, (result.status, result.artifacts)
    error = result.artifacts["error"]
    # The task folder is not in the candidate's filesystem at all (FileNotFoundError); where the
    # candidate shares the host's view (no mount namespaces), Landlock refuses it (PermissionError).
    assert ("LookupError" in error) if trick == "frames" else (
        "PermissionError" in error or "FileNotFoundError" in error), error


def test_honest_candidate_that_patches_its_own_process_scores_honestly(sandbox):
    """Patching is harmless to the score: best fit that first patches everything scores exactly best fit."""
    code = PATCH_EVERYTHING + "_patch_everything()\n\ndef priority(item, bins):\n    return -(bins - item)"
    result = _evaluate(sandbox, "bin_packing_or", code)
    assert result.status == Status.OK, result.artifacts
    assert result.score == pytest.approx(-213.625)


def test_through_the_cli(tmp_path):
    program = tmp_path / "cheat.py"
    program.write_text("import numpy as np\n" + CIRCLES["patch_then_overlap"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "evoforge", "eval", "circle_packing", str(program), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "invalid" and result["score"] is None, result
    assert "overlap" in textwrap.shorten(json.dumps(result["artifacts"]), 4000).lower()
