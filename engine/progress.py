"""The live progress line (rich) for `evoforge run`.

The line is cleaned (`evoforge.prompts.sanitize.one_line`) and its rich markup escaped before it is
drawn: whatever text reaches it, no escape sequence or ``[markup]`` gets to the terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evoforge.engine.loop import Snapshot
from evoforge.prompts.sanitize import one_line

__all__ = ["RichReporter", "describe"]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _tokens(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 10_000 else str(n)


def describe(s: Snapshot) -> str:
    statuses = " ".join(f"{k}={v}" for k, v in sorted(s.statuses.items()) if v)
    money = ""
    if s.tokens or s.max_cost_usd is not None or s.max_tokens is not None:
        cost = f"${s.cost_usd:.4f}" + (f"/${s.max_cost_usd:g}" if s.max_cost_usd is not None else "")
        tokens = _tokens(s.tokens) + (f"/{_tokens(s.max_tokens)}" if s.max_tokens is not None else "")
        money = f" · {cost} · {tokens} tok"
    if s.cached_tokens:
        money += f" · cache {s.cached_tokens / max(s.prompt_tokens, 1):.0%} (saved ${s.saved_usd:.4f})"
    return one_line(f"best {_fmt(s.best_score)} (initial {_fmt(s.initial_score)}) · coverage {s.coverage:.0%} · "
                    f"{s.evals_per_s:.1f} eval/s{money} · {statuses}", max_chars=400)


class RichReporter:
    """A progress bar with best score, coverage, throughput, spend and statuses; a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]evolving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[line]}"), console=self.console, transient=False)
        self._task = self._progress.add_task("run", total=None, line="starting…")

    def __enter__(self) -> "RichReporter":
        from evoforge.sandbox.waits import listen

        self._progress.start()
        # Start-up waits (joining Ray, the Docker daemon, the fork server) show on the line itself.
        self._listening = listen(self.waiting)
        self._listening.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listening.__exit__(None, None, None)
        self._progress.stop()

    def waiting(self, text: str | None) -> None:
        """Show what start-up is waiting for (``None``: the wait is over)."""
        self._progress.update(self._task, line=escape(one_line(text or "starting…", max_chars=400)))

    def update(self, snapshot: Snapshot) -> None:
        self._progress.update(self._task, completed=snapshot.done, total=snapshot.target or None,
                              line=escape(describe(snapshot)))
