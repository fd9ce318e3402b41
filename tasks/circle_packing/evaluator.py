"""Evaluator for circle packing in the unit square (n = N_CIRCLES): maximise the sum of radii.

The check and the score are `evoforge.evaluators.harnesses.circle_packing` (read its docstring for the rules):
every disc inside [0, 1]^2, no two overlapping, checked with zero tolerance in exact rational arithmetic on values
recomputed here; the score is the sum of the returned radii. The candidate's ``run_packing()`` runs in
a nested process (`evoforge.evaluators.candidate`), so it cannot patch this evaluator or lie about its values.

``tasks/circle_packing`` and ``tasks/circle_packing_32`` differ only in the configuration block below
(``tests/tasks/test_circle_packing_32.py`` checks that).
"""

from __future__ import annotations

from typing import Any

from evoforge.evaluators.harnesses.circle_packing import BORDER_TOUCH, evaluate_packing
from evoforge.evaluators.harnesses.circle_packing import verify_packing as _verify_packing

__all__ = ["evaluate", "verify_packing", "N_CIRCLES", "BEST_KNOWN", "BORDER_TOUCH"]

# ---- task configuration: the only lines that differ between circle_packing and circle_packing_32 ----
N_CIRCLES = 26
BEST_KNOWN = 2.6358627564    # AlphaEvolve (2025), n = 26; previous best (human) 2.634
# ----------------------------------------------------------------------------------------------------


def verify_packing(centers: Any, radii: Any, n: int = N_CIRCLES) -> tuple[bool, str]:
    """Zero-tolerance validity check. Returns ``(True, summary)`` or ``(False, first violation)``."""
    return _verify_packing(centers, radii, n)


def evaluate(program_path: str) -> dict[str, Any]:
    """Run the candidate's ``run_packing()`` and score it (sum of radii; higher is better)."""
    return evaluate_packing(program_path, n=N_CIRCLES, best_known=BEST_KNOWN)
