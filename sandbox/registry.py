"""Isolation backends and executors by short name (``--sandbox``, ``--executor``).

The isolation half lives in `evoforge.sandbox.isolation` (re-exported here), so that the Ray executor,
which this module imports lazily, can build backends without importing this module back.
"""

from __future__ import annotations

from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.isolation import ISOLATIONS, make_isolation
from evoforge.sandbox.local import Executor, LocalExecutor

__all__ = ["ISOLATIONS", "EXECUTORS", "make_isolation", "make_executor"]

EXECUTORS = ("local", "ray")


def make_executor(name: str, isolation_name: str, *, slots: int | None = None,
                  ray_address: str | None = None, resources=None,
                  startup_timeout_s: float | None = None) -> Executor:
    """``startup_timeout_s`` bounds the start-up waits: joining a Ray cluster, the Docker daemon's
    first answer, the fork server's hello (None: each module's default)."""
    if name == "local":
        options = {} if startup_timeout_s is None else {"startup_timeout_s": startup_timeout_s}
        return LocalExecutor(make_isolation(isolation_name, **options), slots=slots)
    if name == "ray":
        try:
            from evoforge.sandbox.ray_executor import RayExecutor
        except ImportError as exc:
            raise ConfigError(f"--executor ray is not available in this installation: {exc}") from exc
        return RayExecutor(isolation_name, address=ray_address, slots=slots, resources=resources,
                           startup_timeout_s=startup_timeout_s)
    raise ConfigError(f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
