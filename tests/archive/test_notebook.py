"""examples/inspect_run.ipynb executes top to bottom (nbclient) against a run this test creates.

The kernel is this interpreter (the venv's python): a kernelspec written into a temporary
``JUPYTER_PATH`` points at ``sys.executable``, so no ``ipykernel install`` and no user kernelspec
can send the notebook to another Python.
"""

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "inspect_run.ipynb"
KERNEL = "evoforge-test-venv"


def execute_notebook(path: Path, workdir: Path, env: dict[str, str], timeout_s: int = 180):
    """Execute ``path`` with a kernel running ``sys.executable``; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    spec_dir = workdir / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "evoforge venv", "language": "python"}))
    runtime = workdir / "jupyter-runtime"
    runtime.mkdir(exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", *env)}
    os.environ.update({"JUPYTER_PATH": str(workdir / "jupyter"), "JUPYTER_RUNTIME_DIR": str(runtime),
                       "MPLBACKEND": "module://matplotlib_inline.backend_inline", **env})
    try:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, kernel_name=KERNEL, timeout=timeout_s,
                                resources={"metadata": {"path": str(REPO)}})
        client.execute()
        return notebook
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output["text"]
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.slow
def test_inspect_run_notebook_executes_against_a_fresh_run(tmp_path):
    from evoforge.archive import Run
    from evoforge.engine.config import RunConfig
    from evoforge.engine.session import start_run

    run_dir = tmp_path / "run"
    start_run(RunConfig(task="circle_packing", iterations=20, llm=("offline",), concurrency=2, seed=0), out=run_dir)
    executed = execute_notebook(NOTEBOOK, tmp_path, {"EVOFORGE_RUN_DIR": str(run_dir)})

    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells), "a code cell did not run"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    texts = "\n".join(_text(o) for c in code_cells for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in code_cells for o in c.outputs)
    assert images >= 4  # heatmaps, progress, statuses, spend
    with Run.open(run_dir) as run:
        best = run.best()
        assert str(run_dir) in texts                                   # the notebook used our run
        assert f"program #{best.id}, iteration {best.iteration}, score {best.score:.6f}" in texts
        assert "evaluation" in texts and "qd_score" in texts
    assert (run_dir / "report.html").is_file()
