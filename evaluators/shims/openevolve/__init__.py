"""evoforge's stand-in for the ``openevolve`` package, importable only by OpenEvolve-format evaluators.

Written by evoforge from the documented behaviour of ``openevolve.evaluation_result``; it holds no
OpenEvolve code and needs no OpenEvolve installation. `evoforge.evaluators.openevolve` appends this
folder's parent to ``sys.path`` for OpenEvolve folders only, after everything else, so an installed
``openevolve`` package still wins.
"""

from .evaluation_result import EvaluationResult

__all__ = ["EvaluationResult"]
