"""Isolation backends and executors by short name (``--sandbox``, ``--executor``)."""

from __future__ import annotations

from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.local import Executor, Isolation, LocalExecutor

__all__ = ["ISOLATIONS", "EXECUTORS", "make_isolation", "make_executor"]

ISOLATIONS = ("process", "docker")
EXECUTORS = ("local", "ray")


def make_isolation(name: str, **options) -> Isolation:
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


def make_executor(name: str, isolation_name: str, *, slots: int | None = None,
                  ray_address: str | None = None, resources=None) -> Executor:
    if name == "local":
        return LocalExecutor(make_isolation(isolation_name), slots=slots)
    if name == "ray":
        try:
            from evoforge.sandbox.ray_executor import RayExecutor
        except ImportError as exc:
            raise ConfigError(f"--executor ray is not available in this installation: {exc}") from exc
        return RayExecutor(isolation_name, address=ray_address, slots=slots, resources=resources)
    raise ConfigError(f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
