"""Where evoforge's own code lives on disk, for the sandboxes that must let a process read it.

``evoforge.evaluators`` is installed under ``evoforge/`` in site-packages from a wheel, but stays in the
repository's top-level ``evaluators/`` folder in an editable install (the package-dir mapping in
pyproject.toml), so no path is ever derived from the repository layout.
"""

from __future__ import annotations

import os

__all__ = ["evaluators_dir", "import_root", "code_dirs"]


def evaluators_dir() -> str:
    """The folder of the ``evoforge.evaluators`` package."""
    return os.path.dirname(os.path.abspath(__file__))


def import_root() -> str:
    """The folder to put on ``sys.path`` so that a fresh interpreter finds ``evoforge``: the one that
    holds the ``evoforge`` package (site-packages, the repository, or the docker image's mount)."""
    import evoforge

    package = getattr(evoforge, "__file__", None) or next(iter(evoforge.__path__))
    folder = os.path.dirname(package) if package.endswith(".py") else package
    return os.path.dirname(os.path.abspath(folder))


def code_dirs() -> list[str]:
    """Every folder of evoforge's code that a sandboxed evaluator must read."""
    import evoforge

    package = getattr(evoforge, "__file__", None)
    dirs = {evaluators_dir()}
    if package:
        dirs.add(os.path.dirname(os.path.abspath(package)))
    return sorted(dirs)
