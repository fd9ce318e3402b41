"""Waits on things outside the engine (a Ray cluster, the Docker daemon, a fork server starting):
each has a limit, and one that lasts longer than a moment is said out loud while it lasts.

``with waiting("the Ray cluster at 10.0.0.5:6379 to accept this driver", limit_s=60): ...`` —
after `NOTICE_AFTER_S` the notice goes to whoever listens (the progress line registers with
`listen`), or to stderr when no one does (``--quiet``, the Python API); when the wait ends, the
listeners hear ``None``. The limit itself is enforced by the caller, which knows how to abandon
what it waits on; this module only makes the waiting visible.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["waiting", "listen", "NOTICE_AFTER_S"]

NOTICE_AFTER_S = 2.0

Listener = Callable[[str | None], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Send start-up wait notices to ``listener`` (a text, then ``None`` when the wait ends)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def _announce(text: str | None) -> None:
    with _lock:
        listeners = list(_listeners)
    if not listeners:
        if text is not None:
            print(f"evoforge: {text}", file=sys.stderr, flush=True)
        return
    for listener in listeners:
        try:
            listener(text)
        except Exception:  # noqa: BLE001 - a display must never break the wait it describes
            pass


@contextmanager
def waiting(what: str, *, limit_s: float, notice_after_s: float = NOTICE_AFTER_S) -> Iterator[None]:
    """Announce ``waiting for {what}`` if the body takes longer than ``notice_after_s``."""
    announced = threading.Event()

    def announce() -> None:
        announced.set()
        _announce(f"waiting for {what} (gives up after {limit_s:g} s)")

    timer = threading.Timer(notice_after_s, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        if announced.is_set():
            _announce(None)
