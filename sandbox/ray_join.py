"""Joining a Ray cluster within a limit (``--executor ray --ray-address ...``).

``ray.init(address=...)`` can wait for ever: a head started with ``--node-ip-address 127.0.0.1``
listens on loopback only, the TCP probe of ``127.0.0.1:PORT`` passes, and Ray then replaces the
loopback address with this machine's node IP address (``resolve_ip_for_localhost`` in Ray 2.x, so
that the address it records is reachable by other nodes) and retries a GCS that is not there,
silently. A blocked ``ray.init`` cannot be interrupted inside the driver's process, so the join is
tried first in a child process (its own session, killed with everything it started when the limit
passes); only a cluster that accepted the child is joined in-process. The price is one extra Ray
import and connect (a second or two) per run on an explicit cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from evoforge.evaluators.types import ConfigError
from evoforge.sandbox.waits import waiting

__all__ = ["check_join", "JOIN_TIMEOUT_S"]

JOIN_TIMEOUT_S = 60.0   # [limits] startup_timeout_s; a healthy cluster accepts a driver in seconds

# Runs in the child: say which address Ray will really dial, then join and leave.
_CHILD = r"""
import sys
address = sys.argv[1]
try:
    from ray._private.services import canonicalize_bootstrap_address
    tried = canonicalize_bootstrap_address(address)
except Exception:
    tried = None
print("TRIED", tried or address, flush=True)
import logging, ray
ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
print("JOINED", flush=True)
ray.shutdown()
"""


def check_join(address: str, *, timeout_s: float = JOIN_TIMEOUT_S) -> None:
    """Return once a driver could join ``address`` (a child process tried); raise a one-line
    `ConfigError` naming the address Ray dialled and what to check when none could within
    ``timeout_s``. A child that failed quickly (a refused token, a version mismatch) is not judged
    here: the in-process ``ray.init`` that follows fails the same way with its own message."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, address], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True, text=True)
    started = time.monotonic()
    try:
        with waiting(f"the Ray cluster at {address} to accept this driver", limit_s=timeout_s):
            out, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(child)
        out = child.communicate()[0] or ""
        tried = _tried(out) or address
        raise ConfigError(_hang_message(address, tried, time.monotonic() - started)) from None
    except BaseException:
        _kill(child)
        raise


def _tried(out: str) -> str | None:
    for line in out.splitlines():
        if line.startswith("TRIED "):
            return line[len("TRIED "):].strip()
    return None


def _hang_message(address: str, tried: str, waited_s: float) -> str:
    if tried != address.removeprefix("ray://"):
        where = (f"Ray replaced {address} with this machine's node IP address and dialled {tried}, where "
                 "nothing answered")
    else:
        where = f"Ray dialled {tried}; something accepted the connection there but never answered as a Ray GCS"
    return (f"--ray-address {address}: could not join the Ray cluster within {waited_s:.0f} s: {where}; "
            "the head's node IP address must be reachable from this machine (start the head with "
            "`ray start --head --node-ip-address ADDRESS` using an address this machine can reach, and pass "
            "that address), or raise [limits] startup_timeout_s in task.toml")


def _kill(child: subprocess.Popen) -> None:
    """The child and anything it started (its own session), then reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass
