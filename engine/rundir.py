"""The run directory (docs/architecture.md, "The run directory"): ``run.db``, ``best_program.py``, ``events.jsonl``.

A run directory is locked (``flock`` on ``.lock``) while an engine works in it, so a second
``evoforge run``/``resume`` on it refuses instead of corrupting it; the lock dies with the process,
so a SIGKILLed run can be resumed at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from evoforge.archive.store import CandidateRecord, Store
from evoforge.evaluators.types import StoreError
from evoforge.prompts.sanitize import json_safe

__all__ = ["RunDir", "default_run_dir"]


def default_run_dir(task_name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{task_name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{task_name}-{stamp}-{suffix}"
    return path


class RunDir:
    def __init__(self, path: Path, store: Store, lock_fd: int) -> None:
        self.path = path
        self.store = store
        self._lock_fd = lock_fd
        self._events = open(path / "events.jsonl", "a", buffering=1)

    @staticmethod
    def _lock(path: Path) -> int:
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{path}: another evoforge process is working in this run directory "
                             f"(wait for it to finish or stop it first)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    @classmethod
    def create(cls, path: Path, config: Mapping[str, Any]) -> "RunDir":
        path = Path(path)
        if (path / "run.db").exists():
            raise StoreError(f"{path}: a run already exists here; continue it with `evoforge resume {path}`")
        path.mkdir(parents=True, exist_ok=True)
        fd = cls._lock(path)
        return cls(path, Store.create(path / "run.db", config), fd)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        path = Path(path)
        if not (path / "run.db").is_file():
            raise StoreError(f"{path}: not a run directory (no run.db); start one with `evoforge run TASK`")
        fd = cls._lock(path)
        return cls(path, Store.open(path / "run.db"), fd)

    def write_best(self, code: str) -> None:
        """Rewrite ``best_program.py`` atomically (write a temp file, then rename over)."""
        tmp = self.path / ".best_program.py.tmp"
        tmp.write_text(code)
        os.replace(tmp, self.path / "best_program.py")

    def append_event(self, program_id: int, record: CandidateRecord) -> None:
        line = {
            "id": program_id, "iteration": record.iteration, "island": record.island,
            "parent_id": record.parent_id, "status": record.status, "score": record.score,
            "features": dict(record.features), "metrics": dict(record.metrics), "eval_s": record.eval_s,
            "model": record.model, "cost_usd": record.cost_usd, "time": time.time(),
        }
        # Metric names and the like may be candidate text: strict, clean JSON (prompts.sanitize).
        self._events.write(json.dumps(json_safe(line), allow_nan=False) + "\n")

    def close(self) -> None:
        self._events.close()
        self.store.close()
        os.close(self._lock_fd)
