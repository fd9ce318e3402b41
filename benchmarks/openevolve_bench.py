"""Benchmark 2: the same workload in OpenEvolve, side by side with evoforge.

OpenEvolve (``pip install openevolve``) is installed into its own virtual environment under
``benchmarks/.work/`` (never into ours) and driven by ``benchmarks/openevolve_driver.py`` against the
same fake server and the same task folder (its evaluator contract — ``evaluate(path)`` returning
``combined_score`` — is one our task folders already meet). Its throughput is timed exactly as
evoforge's: children stored per second between the first and the last child stored (steady state),
and, in the JSON, also from the fake server's first request.

"Its best configuration for this machine": OpenEvolve runs the LLM call *and* the evaluation of an
iteration inside one worker process, so ``parallel_evaluations`` is also its LLM concurrency. Both
natural settings are run — one worker per core (its documented advice for CPU-bound evaluators) and
one per concurrent LLM call (the same in-flight budget evoforge gets) — and the better one is the
baseline. Cascade evaluation is off (the task has one stage) and checkpoints are deferred to the end.

Nothing here may crash the whole bench: a failed install or run is reported with its reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO_ROOT, cores, fake_llm

__all__ = ["ensure_openevolve", "run_openevolve", "openevolve_comparison"]

DRIVER = REPO_ROOT / "benchmarks" / "openevolve_driver.py"
INSTALL_TIMEOUT_S = 600


def ensure_openevolve(work: Path) -> tuple[Path | None, str]:
    """The OpenEvolve interpreter (installing it on first use), or None and why not."""
    venv = work / "openevolve-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and python.exists():
        return python, marker.read_text().strip()
    try:
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True,
                       timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "openevolve"], check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        version = subprocess.run([str(python), "-c", "import openevolve; print(openevolve.__version__)"],
                                 check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()
        return None, f"installing openevolve failed: {tail[-1] if tail else exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"installing openevolve failed: {exc}"
    marker.write_text(version)
    return python, version


def run_openevolve(python: Path, task_dir: Path, llm, out: Path, *, iterations: int, workers: int,
                   timeout_s: float) -> dict:
    """One OpenEvolve run; its children per second from the server's first request to its last child."""
    if out.exists():
        shutil.rmtree(out)
    try:
        proc = subprocess.run([str(python), str(DRIVER), str(task_dir), llm.base_url, str(out),
                               "--iterations", str(iterations), "--workers", str(workers)],
                              cwd=out.parent, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"workers": workers, "error": f"OpenEvolve did not finish {iterations} iterations in {timeout_s:.0f} s"}
    except OSError as exc:
        return {"workers": workers, "error": f"cannot start OpenEvolve's interpreter {python}: {exc}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"workers": workers, "error": f"OpenEvolve exited {proc.returncode}: {tail[-1][:300] if tail else ''}"}
    data = json.loads(lines[-1])
    first = llm.stats()["first_request_at"]
    wall = (data["last_child_at"] or first) - first
    steady = (data["last_child_at"] or 0) - (data["first_child_at"] or 0)
    return {"workers": workers, "iterations": iterations, "children": data["children"], "wall_s": wall,
            "evals_per_s_with_fill": data["children"] / wall if wall > 0 else 0.0,
            "evals_per_s": (data["children"] - 1) / steady if steady > 0 else 0.0}


def _iterations_for(latency_s: float, workers: int, iterations: int, seconds: float) -> int:
    """Enough iterations for about ``seconds`` of steady state when the LLM bounds the rate."""
    if latency_s <= 0:
        return iterations
    return max(2 * workers + 8, min(iterations, int(seconds * workers / latency_s)))


def openevolve_comparison(work: Path, task_dir: Path, evoforge_runs: list[dict], *, iterations: int,
                          concurrency: int, seconds: float) -> dict:
    python, version = ensure_openevolve(work)
    if python is None:
        return {"unavailable": version}
    settings = sorted({cores(), concurrency})
    rows = []
    for run in evoforge_runs:
        latency = run["latency_s"]
        tried = []
        for workers in settings:
            with fake_llm(latency) as llm:
                tried.append(run_openevolve(python, task_dir, llm, work / f"openevolve-{latency:g}s-{workers}w",
                                            iterations=_iterations_for(latency, workers, iterations, seconds),
                                            workers=workers, timeout_s=max(120.0, 6 * seconds)))
        ok = [t for t in tried if "evals_per_s" in t and t["evals_per_s"] > 0]
        best = max(ok, key=lambda t: t["evals_per_s"]) if ok else None
        rows.append({"latency_s": latency, "tried": tried, "best_workers": best["workers"] if best else None,
                     "openevolve_evals_per_s": best["evals_per_s"] if best else None,
                     "evoforge_evals_per_s": run["evals_per_s"],
                     "speedup": run["evals_per_s"] / best["evals_per_s"] if best else None,
                     "error": None if best else "; ".join(t.get("error", "no children") for t in tried)})
    return {"version": version, "runs": rows}
