"""Harnesses that several built-in tasks share: the packing loop, checks and scores a task's ``evaluator.py``
hands its configuration to.

* `evoforge.evaluators.harnesses.bin_packing` — online bin packing (``tasks/bin_packing_*``);
* `evoforge.evaluators.harnesses.circle_packing` — circles in the unit square (``tasks/circle_packing*``);
* `evoforge.evaluators.harnesses.pde` — PDE solvers (``tasks/pde_*``).

They live under `evoforge.evaluators` because that package is what every isolation backend provides to an
evaluator (the process sandbox's read rules, the docker image's mount, a Ray worker), while a task folder
travels alone; like the rest of the package they import only the standard library and numpy.
"""

__all__: list[str] = []
