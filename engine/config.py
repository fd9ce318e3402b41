"""The resolved configuration of a run: CLI flags + task, frozen, stored in ``run.db``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from evaluators.types import ConfigError

__all__ = ["RunConfig", "EXECUTORS", "SANDBOXES"]

EXECUTORS = ("local", "ray")
SANDBOXES = ("process", "docker")


@dataclass(frozen=True)
class RunConfig:
    task: str                                  # resolved task folder
    iterations: int = 100                      # proposals to make (rejected ones count)
    llm: tuple[str, ...] = ("offline",)        # spec strings, see engine.llm
    executor: str = "local"
    ray_address: str | None = None
    sandbox: str = "process"
    concurrency: int = 4                       # candidates in flight (LLM call through evaluation)
    eval_slots: int | None = None              # evaluations at once; default: cores
    seed: int = 0
    max_cost_usd: float | None = None
    max_time_s: float | None = None
    reply_format: str = "diff"                 # "diff" | "rewrite"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ConfigError(f"--iterations: expected a number >= 0 but got {self.iterations}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency: expected a number >= 1 but got {self.concurrency}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor: unknown {self.executor!r} (known: {', '.join(EXECUTORS)})")
        if self.sandbox not in SANDBOXES:
            raise ConfigError(f"--sandbox: unknown {self.sandbox!r} (known: {', '.join(SANDBOXES)})")
        if self.reply_format not in ("diff", "rewrite"):
            raise ConfigError(f"reply_format: expected 'diff' or 'rewrite' but got {self.reply_format!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["llm"] = list(self.llm)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["llm"] = tuple(values.get("llm", ("offline",)))
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        data = self.to_dict()
        data.update(changes)
        return RunConfig.from_dict(data)
