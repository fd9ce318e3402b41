"""evoforge: LLM-driven evolutionary algorithm discovery (AlphaEvolve / MAP-Elites).

The repository keeps the user's folder layout (``engine/ evaluators/ prompts/ archive/ sandbox/
tasks/`` at its top); they install and import as ``evoforge.engine``, ``evoforge.evaluators``, ... so
that nothing but ``evoforge`` lands at the top of site-packages (docs/architecture.md).

The public API, for notebooks and scripts::

    import evoforge
    run = evoforge.run("circle_packing", iterations=200)      # -> evoforge.Run (same options as the CLI)
    run.best().score
    evoforge.resume(run.path, iterations=100)                  # 100 proposals more
    evoforge.evaluate("circle_packing", "my_program.py")       # one evaluation, as a run does it
    evoforge.evolve_function(initial_fn, score_fn, iterations=50)   # no task folder to write
    evoforge.Run.open("runs/circle_packing-...")               # inspect any run, live or finished

`evoforge.engine.api` documents the launching functions, `evoforge.archive.run` the `Run`.

Names load on first use (PEP 562), so ``import evoforge`` stays cheap and the sandbox, which imports
only ``evoforge.evaluators``, never pulls in the engine, the LLM SDKs or pyribs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "run": "evoforge.engine.api",
    "resume": "evoforge.engine.api",
    "evaluate": "evoforge.engine.api",
    "evolve_function": "evoforge.engine.api",
    "Run": "evoforge.archive.run",
    "Program": "evoforge.archive.run",
    "EvaluationResult": "evoforge.evaluators.types",
    "EvoforgeError": "evoforge.evaluators.errors",
    "ConfigError": "evoforge.evaluators.errors",
    "TaskError": "evoforge.evaluators.errors",
    "LLMError": "evoforge.evaluators.errors",
    "SandboxError": "evoforge.evaluators.errors",
    "StoreError": "evoforge.evaluators.errors",
    "run_candidate": "evoforge.evaluators.candidate",
    "CandidateSession": "evoforge.evaluators.candidate",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evoforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
