"""The resolved configuration of a run: CLI flags + task, frozen, stored in ``run.db``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from evoforge.evaluators.types import ConfigError

__all__ = ["RunConfig", "EXECUTORS", "SANDBOXES"]

EXECUTORS = ("local", "ray")
SANDBOXES = ("process", "docker")


@dataclass(frozen=True)
class RunConfig:
    task: str                                  # resolved task folder
    iterations: int = 100                      # proposals to make (rejected ones count)
    # Spec strings or [[llm.models]] dicts (engine.llm.models); empty: resolved when the run starts,
    # from the task's [llm] table, else a key in the environment, else offline.
    llm: tuple[str | Mapping[str, Any], ...] = ()
    executor: str = "local"
    ray_address: str | None = None
    sandbox: str = "process"
    concurrency: int = 4                       # candidates in flight (LLM call through evaluation)
    eval_slots: int | None = None              # evaluations at once; default: cores
    seed: int = 0
    max_cost_usd: float | None = None
    max_time_s: float | None = None
    reply_format: str = "diff"                 # "diff" | "rewrite"
    max_total_tokens: int | None = None        # --max-tokens: prompt + completion tokens of all calls
    # How models are used ([llm] in task.toml); None: from the task, else the defaults of
    # engine.llm.models.LLMSettings (weighted, 0.1, 0.1, true).
    ensemble: str | None = None                # "weighted" | "bandit"
    full_rewrite_share: float | None = None    # share of prompts asking for a full rewrite
    crossover_share: float | None = None       # share of prompts showing two parents
    retry_failed_edit: bool | None = None      # send an edit that did not apply back once, with the error
    # None: evolution. "best-of-n": every proposal from the initial program without archive context;
    # "random-parent": parents drawn uniformly among all valid programs (engine.evolution.BASELINES).
    baseline: str | None = None
    # --env NAME: host environment variables the evaluator may see, beside the task's [sandbox] pass_env.
    pass_env: tuple[str, ...] = ()
    # Holds "task_args" ({"program", "evaluator", "config"}) for `evoforge run PROGRAM EVALUATOR
    # --config FILE` (engine.openevolve_compat), so a resumed run loads the same task.
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
        for name in ("max_cost_usd", "max_time_s", "max_total_tokens"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                flag = {"max_time_s": "--max-time", "max_total_tokens": "--max-tokens"}.get(name, "--max-cost-usd")
                raise ConfigError(f"{flag}: expected a positive number but got {value}")
        if self.baseline not in (None, "best-of-n", "random-parent"):
            raise ConfigError(f"--baseline: unknown {self.baseline!r} (known: best-of-n, random-parent)")
        if self.ensemble not in (None, "weighted", "bandit"):
            raise ConfigError(f"ensemble: expected 'weighted' or 'bandit' but got {self.ensemble!r}")

    def setting(self, name: str) -> Any:
        """An [llm] setting with its default filled in (``ensemble``, ``full_rewrite_share``, ...)."""
        from evoforge.engine.llm.models import LLMSettings

        value = getattr(self, name)
        return getattr(LLMSettings, name) if value is None else value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["llm"] = [v if isinstance(v, str) else dict(v) for v in self.llm]
        data["extra"] = dict(self.extra)
        data["pass_env"] = list(self.pass_env)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["llm"] = tuple(values.get("llm", ()))
        values["pass_env"] = tuple(values.get("pass_env", ()))
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        data = self.to_dict()
        data.update(changes)
        return RunConfig.from_dict(data)
