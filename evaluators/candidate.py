"""Call a candidate's function in a nested process and get plain data back (anti reward hacking).

An evaluator that imports the candidate shares its interpreter, so the candidate can patch the
evaluator, ``math``, ``numpy`` or ``builtins``, or return objects that lie (a ``float`` subclass whose
comparisons always succeed, an array view that changes later). Here the candidate runs in a child
process of the evaluator; what crosses back is bytes in a fixed wire format that the trusted side
decodes into plain Python/numpy values only (``None``, ``bool``, ``int``, ``float``, ``str``, ``list``,
``tuple``, ``dict`` with ``str`` keys, numeric ``numpy.ndarray``). Nothing is ever unpickled.

    from evaluators.candidate import run_candidate, CandidateSession

    centers, radii = run_candidate(program_path, "run_packing", timeout_s=30)    # one call
    with CandidateSession(program_path, timeout_s=60) as candidate:               # many calls
        for item in items:
            scores = candidate.call("priority", item, bins)

What goes wrong is raised as a `CandidateError` subclass, which the evaluator may catch (and report as
``invalid`` with its own message) or let propagate; the runner maps an uncaught one to a status:
`CandidateRaised`/`CandidateCrashed` -> ``error``, `CandidateTimeout` -> ``timeout``,
`CandidateInvalid` -> ``invalid``. The child inherits the sandbox's limits (memory, processes, no
network); its stdout is redirected to stderr so a print cannot corrupt the reply channel.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_candidate", "CandidateSession", "CandidateError", "CandidateRaised", "CandidateCrashed",
           "CandidateTimeout", "CandidateInvalid", "encode", "decode"]

MAX_REPLY_MB = 256                     # a reply larger than this is a hostile or broken candidate
_NUMERIC_KINDS = "biufc"               # bool, int, uint, float, complex: no objects, no structs
_HEADER = struct.Struct("<Q")


class CandidateError(Exception):
    """Base of everything `CandidateSession.call` raises about the candidate."""


class CandidateRaised(CandidateError):
    """The candidate's function (or its module import) raised; the message holds its traceback."""


class CandidateCrashed(CandidateError):
    """The candidate's process died (``os._exit``, a signal, a segfault) before replying."""


class CandidateTimeout(CandidateError):
    """The call did not reply within ``timeout_s``; the candidate's process was killed."""


class CandidateInvalid(CandidateError):
    """The reply is not plain data (an unsupported type, a non-numeric array, too large, malformed)."""


# ---- wire format: a JSON tree whose arrays point into raw byte blobs --------------------------------

def encode(value: Any) -> bytes:
    """Encode plain data; raises `TypeError` naming the first value that is not plain data."""
    blobs: list[bytes] = []

    def tree(x: Any) -> Any:
        kind = type(x)
        if x is None or kind in (bool, int, str):
            return x
        if kind is float:
            return {"f": repr(x)}          # keeps nan/inf and every bit of the value
        if kind in (list, tuple):
            return {"l" if kind is list else "t": [tree(v) for v in x]}
        if kind is dict:
            if not all(type(k) is str for k in x):
                raise TypeError("dict keys must be str")
            return {"d": {k: tree(v) for k, v in x.items()}}
        if isinstance(x, np.generic) and x.dtype.kind in _NUMERIC_KINDS:
            return tree(x.item())
        if kind is np.ndarray and x.dtype.kind in _NUMERIC_KINDS:
            blobs.append(np.ascontiguousarray(x).tobytes())
            return {"a": [x.dtype.str, list(x.shape), len(blobs) - 1]}
        raise TypeError(f"{kind.__module__}.{kind.__qualname__} is not plain data "
                        f"(use None, bool, int, float, str, list, tuple, dict, or a numeric numpy array)")

    head = json.dumps(tree(value), separators=(",", ":")).encode()
    parts = [_HEADER.pack(len(head)), head, _HEADER.pack(len(blobs))]
    for blob in blobs:
        parts += [_HEADER.pack(len(blob)), blob]
    return b"".join(parts)


def decode(data: bytes) -> Any:
    """Decode `encode`'s output into fresh plain objects; anything else raises `CandidateInvalid`."""
    try:
        view = memoryview(data)
        (size,), pos = _HEADER.unpack_from(view, 0), _HEADER.size
        head = json.loads(bytes(view[pos:pos + size]))
        pos += size
        (count,) = _HEADER.unpack_from(view, pos)
        pos += _HEADER.size
        blobs = []
        for _ in range(count):
            (n,) = _HEADER.unpack_from(view, pos)
            pos += _HEADER.size
            blobs.append(bytes(view[pos:pos + n]))
            pos += n
        return _untree(head, blobs)
    except CandidateInvalid:
        raise
    except Exception as exc:  # struct/json/numpy errors on malformed bytes
        raise CandidateInvalid(f"malformed reply: {type(exc).__name__}: {exc}") from None


def _untree(x: Any, blobs: list[bytes]) -> Any:
    if x is None or type(x) in (bool, int, str):
        return x
    if type(x) is not dict or len(x) != 1:
        raise CandidateInvalid(f"malformed reply node {str(x)[:80]!r}")
    (tag, body), = x.items()
    if tag == "f":
        return float(body)
    if tag in ("l", "t"):
        items = [_untree(v, blobs) for v in body]
        return items if tag == "l" else tuple(items)
    if tag == "d":
        return {str(k): _untree(v, blobs) for k, v in body.items()}
    if tag == "a":
        dtype_str, shape, index = body
        dtype = np.dtype(str(dtype_str))
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise CandidateInvalid(f"array of dtype {dtype} is not numeric")
        shape = tuple(int(n) for n in shape)
        array = np.frombuffer(blobs[int(index)], dtype=dtype)
        return array.reshape(shape).copy()          # a fresh, writable array the candidate never saw
    raise CandidateInvalid(f"unknown reply tag {tag!r}")


# ---- the child ------------------------------------------------------------------------------------

_CHILD = r"""
import importlib.util, os, sys, traceback
reply_fd, request_fd = int(sys.argv[2]), int(sys.argv[3])
os.dup2(2, 1)                                   # candidate prints go to stderr, never into the reply
sys.stdout = sys.stderr
sys.path.insert(0, sys.argv[4])
from evaluators.candidate import _serve
_serve(sys.argv[1], reply_fd, request_fd)
"""


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _serve(program_path: str, reply_fd: int, request_fd: int) -> None:  # runs in the child
    import importlib.util
    import traceback

    def reply(kind: str, value: Any) -> None:
        try:
            body = encode(value)
        except TypeError as exc:
            kind, body = "invalid", encode(f"the function returned {exc}")
        _send(reply_fd, kind.encode().ljust(8) + body)

    try:
        spec = importlib.util.spec_from_file_location("candidate_program", program_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate_program"] = module
        spec.loader.exec_module(module)
    except BaseException:
        reply("raised", "importing the program raised:\n" + traceback.format_exc()[-4000:])
        return
    reply("ready", None)
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exact(request_fd, _HEADER.size))
            function, args, kwargs = decode(_read_exact(request_fd, size))
        except EOFError:
            return
        fn = getattr(module, function, None)
        if not callable(fn):
            reply("raised", f"the program defines no callable {function}()")
            continue
        try:
            value = fn(*args, **kwargs)
        except BaseException:
            reply("raised", f"{function}() raised:\n" + traceback.format_exc()[-4000:])
            continue
        reply("ok", value)


# ---- the trusted side -----------------------------------------------------------------------------

class CandidateSession:
    """A child process holding the imported candidate; `call` runs one of its functions there."""

    def __init__(self, program_path: str | os.PathLike[str], *, timeout_s: float = 60.0,
                 import_timeout_s: float | None = None, max_reply_mb: float = MAX_REPLY_MB) -> None:
        self.program_path = str(Path(program_path).resolve())
        self.timeout_s = timeout_s
        self.max_reply_bytes = int(max_reply_mb * 1024 * 1024)
        reply_r, reply_w = os.pipe()
        request_r, request_w = os.pipe()
        root = str(Path(__file__).resolve().parent.parent)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, self.program_path, str(reply_w), str(request_r), root],
                stdin=subprocess.DEVNULL, pass_fds=(reply_w, request_r), start_new_session=True,
                cwd=os.getcwd(), env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")})
        finally:
            os.close(reply_w)
            os.close(request_r)
        self._reply_fd, self._request_fd = reply_r, request_w
        self._closed = False
        self._receive("importing the program", timeout_s if import_timeout_s is None else import_timeout_s)

    def call(self, function: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the candidate's process and return its plain-data value."""
        if self._closed:
            raise CandidateCrashed(f"the candidate's process is gone; cannot call {function}()")
        try:
            _send(self._request_fd, encode([function, list(args), kwargs]))
        except BrokenPipeError:
            self._fail(CandidateCrashed, f"calling {function}()", "the candidate's process exited")
        return self._receive(f"{function}()", self.timeout_s if timeout_s is None else timeout_s)

    def _receive(self, what: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        try:
            size = _HEADER.unpack(self._read(_HEADER.size, deadline, what))[0]
            if size > self.max_reply_bytes:
                self._fail(CandidateInvalid, what, f"the reply is {size} bytes, over {self.max_reply_bytes}")
            payload = self._read(size, deadline, what)
        except EOFError:
            self._fail(CandidateCrashed, what, "the candidate's process exited before replying")
        kind, value = payload[:8].decode(errors="replace").strip(), decode(payload[8:])
        if kind in ("ok", "ready"):
            return value
        if kind == "raised":
            raise CandidateRaised(str(value))
        if kind == "invalid":
            raise CandidateInvalid(f"{what}: {value}")
        self._fail(CandidateInvalid, what, f"unknown reply kind {kind!r}")

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        chunks, left = [], n
        while left:
            wait_s = deadline - time.monotonic()
            if wait_s <= 0 or not select.select([self._reply_fd], [], [], wait_s)[0]:
                self._fail(CandidateTimeout, what, f"no reply within {self.timeout_s:g} s")
            chunk = os.read(self._reply_fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _fail(self, error: type[CandidateError], what: str, reason: str) -> None:
        self.close()
        code = self._process.returncode
        how = (f"; it was killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               and error is CandidateCrashed else f"; exit code {code}" if code and error is CandidateCrashed
               else "")
        raise error(f"{what}: {reason}{how}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._request_fd, self._reply_fd):
            os.close(fd)
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait()

    def __enter__(self) -> "CandidateSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_candidate(program_path: str | os.PathLike[str], function: str, *args: Any, timeout_s: float = 60.0,
                  **kwargs: Any) -> Any:
    """Import the program in a fresh child process, call ``function(*args, **kwargs)``, return plain data."""
    with CandidateSession(program_path, timeout_s=timeout_s) as session:
        return session.call(function, *args, **kwargs)
