"""The unit of work an isolation backend runs: one candidate program against one task's evaluator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EvaluationJob"]


@dataclass(frozen=True)
class EvaluationJob:
    """Everything an isolated child needs to evaluate one candidate; plain data, so it pickles
    and serialises to JSON for the fork server, a container or a Ray task.

    ``task_dir`` holds ``evaluator.py`` (and any data files it reads relative to itself).
    ``cascade_thresholds[k]`` gates stage ``k+1``: a candidate whose stage-``k+1`` score is below it
    stops there (docs/architecture.md, "The task contract"). Limits carry their units in their names.
    """

    program_text: str
    task_dir: str
    evaluator_file: str = "evaluator.py"
    timeout_s: float = 60.0
    memory_mb: int = 2048
    cpu_s: float | None = None           # RLIMIT_CPU; default: a little above timeout_s
    max_output_bytes: int = 64 * 1024    # stdout/stderr tail kept per stream
    max_file_mb: int = 256               # RLIMIT_FSIZE
    max_open_files: int = 256            # RLIMIT_NOFILE
    max_processes: int = 64              # RLIMIT_NPROC (enforced where the child runs unprivileged)
    cascade_thresholds: tuple[float, ...] = ()
    program_name: str = "program.py"
    # Environment variables the task named ([sandbox] pass_env, --env), with their values; nothing
    # else of the host's environment reaches the evaluator (sandbox.process.ENV_ALLOWLIST).
    env: dict[str, str] = field(default_factory=dict)
    # The evaluator's working directory: "workdir" (private, writable, empty) or "task" (a read-only
    # view of the task folder, for evaluators that open data files by relative path).
    cwd: str = "workdir"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cascade_thresholds"] = list(self.cascade_thresholds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvaluationJob":
        data = dict(data)
        data["cascade_thresholds"] = tuple(data.get("cascade_thresholds", ()))
        return cls(**data)
