"""Isolation backends by short name (``--sandbox``): the bottom of the sandbox's dependency graph.

Both placements build their backend here — `evoforge.sandbox.registry` for local slots, and each Ray
worker (`evoforge.sandbox.ray_executor`) for its own node — so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.local import Isolation

__all__ = ["ISOLATIONS", "make_isolation"]

ISOLATIONS = ("process", "docker")


def make_isolation(name: str, **options: Any) -> Isolation:
    """A new backend named ``name``; an unknown name lists the known ones (ConfigError)."""
    if name == "process":
        from evoforge.sandbox.process import ProcessSandbox
        return ProcessSandbox(**options)
    if name == "docker":
        try:
            from evoforge.sandbox.docker import DockerSandbox
        except ImportError as exc:
            raise ConfigError(f"--sandbox docker is not available in this installation: {exc}") from exc
        return DockerSandbox(**options)
    raise ConfigError(f"--sandbox: unknown isolation {name!r} (known: {', '.join(ISOLATIONS)})")
