"""The built-in triton_softmax task (GPU): structure checks on any machine, a clear one-line verdict
without a GPU, and -- where torch, triton and a CUDA GPU exist -- a real evaluation.

torch and triton are not installed in CI; the GPU tests skip with the reason `gpu_problem()` gives.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "triton_softmax"
INITIAL = (TASK / "initial_program.py").read_text()
START, END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def _load_evaluator():
    spec = importlib.util.spec_from_file_location("triton_evaluator_under_test", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ev = _load_evaluator()
NO_GPU = ev.gpu_problem()


def _with_block(block: str) -> str:
    head, rest = INITIAL.split(START + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    return head + START + "\n" + textwrap.dedent(block).strip("\n") + "\n" + END + "\n" + tail


def _evoforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evoforge", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_task_declares_one_gpu_and_loads():
    from evoforge.engine.task import load_task

    raw = tomllib.loads((TASK / "task.toml").read_text())
    assert raw["resources"]["num_gpus"] == 1
    task = load_task("triton_softmax")
    assert task.resources.num_gpus == 1.0 and task.files == ("reference_softmax.py",)
    listed = _evoforge("tasks").stdout                     # `evoforge tasks` lists this helper's five tasks
    for name in ("optimizer_update_rule", "matmul_decomposition", "fast_exp2", "speedup_kernel", "triton_softmax"):
        assert f"\n{name} " in "\n" + listed, name


def test_initial_program_has_the_required_structure():
    assert ev.check_structure(INITIAL) == {"kernels": ["softmax_kernel"]}
    reference = (TASK / "reference_softmax.py").read_text()
    assert "def benchmark(n_rows, n_cols, seed, iterations)" in reference   # the same harness is timed


@pytest.mark.parametrize("block, needle", [
    ("def softmax(x):\n    return x", "no @triton.jit kernel"),
    ("@triton.jit\ndef k(a):\n    pass\n", "no top-level softmax(x) wrapper"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x, dim):\n    k[(1,)](x)\n", "exactly one argument"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    return x\n", "launches no jit kernel"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    k[(1,)](x)\n    return torch.softmax(x, -1)\n",
     "calling a library softmax() is not allowed"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    k[(1,)](x)\n    return x.log_softmax(-1).exp()\n",
     "library log_softmax()"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    k[(1,)](x)\n    return x\n"
     "torch.cuda.synchronize = lambda: None\n", "assigning to torch.cuda.synchronize"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    k[(1,)](x)\n    return x\n"
     "setattr(torch.Tensor, 'item', lambda self: 1.0)\n", "setattr() is not allowed"),
    ("@triton.jit\ndef k(a):\n    pass\ndef softmax(x):\n    k[(1,)](x\n", "does not parse"),
])
def test_structure_violations_are_invalid(tmp_path, block, needle):
    path = tmp_path / "candidate.py"
    path.write_text(_with_block(block))
    with pytest.raises(ev.StructureError, match=None) as caught:
        ev.check_structure(path.read_text())
    assert needle in str(caught.value), str(caught.value)
    result = ev.evaluate(str(path))
    assert result["status"] == "invalid" and needle in result["error"]


def test_changing_the_frozen_timing_harness_is_invalid(tmp_path):
    path = tmp_path / "candidate.py"
    path.write_text(INITIAL.replace("for _ in range(iterations):", "for _ in range(1):"))
    result = ev.evaluate(str(path))
    assert result["status"] == "invalid" and "frozen helper(s) benchmark differ" in result["error"]


def test_numpy_reference_softmax():
    x = np.array([[0.0, 0.0], [1000.0, 1000.0 + np.log(3.0)]])         # no overflow: the max is subtracted
    assert np.allclose(ev.numpy_softmax(x), [[0.5, 0.5], [0.25, 0.75]], atol=1e-6)


@pytest.mark.skipif(NO_GPU is None, reason="this machine has torch, triton and a GPU")
def test_without_a_gpu_eval_and_run_say_so_in_one_line(tmp_path):
    result = ev.evaluate(str(TASK / "initial_program.py"))
    assert result == {"status": "error", "error": f"triton_softmax needs an NVIDIA GPU with torch and triton: {NO_GPU}"}
    done = _evoforge("eval", "triton_softmax", str(TASK / "initial_program.py"), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "error" and data["artifacts"]["error"].count("\n") == 0
    assert "needs an NVIDIA GPU" in data["artifacts"]["error"] and "Traceback" not in done.stdout + done.stderr
    run = _evoforge("run", "triton_softmax", "--iterations", "5", "--quiet", "--out", str(tmp_path / "run"))
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("evoforge: error: ") and "needs an NVIDIA GPU with torch and triton" in last
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(NO_GPU is not None, reason=f"needs torch, triton and a CUDA GPU: {NO_GPU}")
def test_on_a_gpu_the_initial_kernel_is_correct_and_timed(tmp_path):  # pragma: no cover - GPU machines only
    result = ev.evaluate(str(TASK / "initial_program.py"))
    assert result.get("status", "ok") == "ok", result
    assert result["score"] > 0 and result["metrics"]["max_abs_error"] < 1e-4
    wrong = tmp_path / "wrong.py"
    wrong.write_text(INITIAL.replace("y = numerator / tl.sum(numerator, axis=0)", "y = numerator"))
    assert ev.evaluate(str(wrong))["status"] == "invalid"
    run = _evoforge("run", "triton_softmax", "--iterations", "5", "--quiet", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
