"""Call a candidate's function in a nested process and get plain data back (anti reward hacking).

An evaluator that imports the candidate shares its interpreter, so the candidate can patch the
evaluator, ``math``, ``numpy`` or ``builtins``, walk the caller's frames to read what the evaluator
holds (future items, the answer), or return objects that lie (a ``float`` subclass whose comparisons
always succeed, an array view that changes later). Here the candidate runs in a fresh interpreter,
a child of the evaluator; what crosses back is bytes in a fixed binary format that the trusted side
decodes into plain values only -- ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``list``, ``tuple``, ``set``, ``frozenset``, ``dict`` (plain hashable keys) and numeric
``numpy.ndarray`` (bool/int/uint/float/complex; no objects, strings, structs or sub-arrays).
Nothing is ever unpickled, and every value is a fresh object of exactly its builtin type.

    from evoforge.evaluators.candidate import run_candidate, CandidateSession

    centers, radii = run_candidate(program_path, "run_packing", timeout_s=30)    # one call
    with CandidateSession(program_path, timeout_s=60) as candidate:               # many calls
        matrix = candidate.put("distance_matrix", dist)   # sent once, kept in the child
        for item in items:
            scores = candidate.call("priority", item, bins)
            nxt = candidate.call("select_next_node", 0, 0, {1, 2}, matrix)

Errors (``CandidateError`` and below) -- an evaluator may catch them and report ``invalid`` with
its own message, or let them propagate; the runner maps an uncaught one to a status::

    CandidateError
    ├── CandidateRaised    the function (or importing the program) raised      -> error
    ├── CandidateCrashed   the child died: os._exit, a signal, a segfault       -> error
    ├── CandidateTimeout   no reply within timeout_s; the child was killed      -> timeout
    └── CandidateInvalid   the reply is not plain data / malformed / too large  -> invalid

Isolation of the child: its own session (killed as a group on timeout or close), a small
allow-listed environment, its stdout sent to stderr so a ``print`` cannot corrupt the replies, and
whatever limits the sandbox set on the evaluator (memory, CPU, no network, writes only in the work
directory, no capabilities), plus its own Landlock layer (`evoforge.evaluators.confine`) that hides the task
folder and stops it signalling the evaluator. Before starting it the evaluator makes itself
non-dumpable, so the candidate cannot read or write the evaluator's memory via ``/proc/<pid>/mem``.

Wire format (both directions): frames of an 8-byte little-endian length and a body. A request body
is ``encode([function, args, kwargs])``, ``encode(["\\0put", key, value])`` or
``encode(["\\0has", name, None])``; a reply body is one
kind byte (``o`` ok, ``r`` raised, ``x`` not plain data, ``y`` ready) and ``encode(value)``.
`encode` is a tagged, length-prefixed binary tree (see `_encode`); an array travels as its dtype
string, shape and raw bytes. Binary rather than JSON because bin packing makes ~41k calls per
evaluation and the JSON tree cost ~40 us of the round trip.
"""

from __future__ import annotations

import array
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evoforge.evaluators.confine import make_undumpable
from evoforge.evaluators.location import import_root

__all__ = ["run_candidate", "CandidateSession", "Ref", "CandidateError", "CandidateRaised", "CandidateCrashed",
           "CandidateTimeout", "CandidateInvalid", "encode", "decode", "MAX_REPLY_MB", "MAX_DEPTH"]

MAX_REPLY_MB = 256                     # a reply larger than this is a hostile or broken candidate
MAX_DEPTH = 100                        # nesting of lists/dicts in one value
_NUMERIC_KINDS = "biufc"               # bool, int, uint, float, complex: no objects, no structs
_SIZE = struct.Struct("<Q")            # frame length
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")
_U32 = struct.Struct("<I")
_READ_CHUNK = 1 << 16
_MAX_PROGRAM_BYTES = 64 * 1024 * 1024
_STATUS = struct.Struct("<cq")          # the zygote's launcher: (b"p", pid), then (b"s", wait status)
STARTUP_WAIT_S = 30.0                  # for the zygote to fork the candidate
_CLOSE_WAIT_S = 5.0                    # for the zygote's launcher to report the candidate's death
_PUT = "\0put"                         # request tags for `put` and `defines`: not valid Python identifiers
_HAS = "\0has"


class CandidateError(Exception):
    """Base of everything `CandidateSession` raises about the candidate."""


class CandidateRaised(CandidateError):
    """The candidate's function (or its module import) raised; the message holds its traceback."""


class CandidateCrashed(CandidateError):
    """The candidate's process died (``os._exit``, a signal, a segfault) before replying."""


class CandidateTimeout(CandidateError):
    """The call did not reply within ``timeout_s``; the candidate's process was killed."""


class CandidateInvalid(CandidateError):
    """The reply is not plain data (an unsupported type, a non-numeric array, too large, malformed)."""


class Ref:
    """A value kept in the candidate's process by `CandidateSession.put`; pass it as an argument."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"


# ---- wire format ------------------------------------------------------------------------------------
# Tags: N None, T/F bool, i int64, I big int (decimal), f float64, c complex, s str (utf-8), l list,
# t tuple, S set, Z frozenset, d dict (key, value pairs), a array, r Ref (requests only).

_SEQUENCE_TAGS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


def encode(value: Any) -> bytes:
    """Encode plain data; raises `TypeError` naming the first value that is not plain data."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(x: Any, out: bytearray, depth: int) -> None:
    kind = type(x)
    if kind is int:
        if -0x8000000000000000 <= x <= 0x7FFFFFFFFFFFFFFF:
            out += b"i"
            out += _I64.pack(x)
        else:
            text = str(x).encode()
            out += b"I" + _U32.pack(len(text)) + text
    elif kind is float:
        out += b"f"
        out += _F64.pack(x)
    elif kind is np.ndarray:
        if x.dtype.kind not in _NUMERIC_KINDS or x.dtype.fields is not None or x.dtype.subdtype is not None:
            raise TypeError(f"numpy.ndarray of dtype {x.dtype} is not plain data (only bool, int, uint, float "
                            f"and complex arrays cross back)")
        dtype = x.dtype.str.encode()
        out += b"a" + bytes((len(dtype),)) + dtype + bytes((x.ndim,))
        for n in x.shape:
            out += _I64.pack(n)
        out += x.tobytes()
    elif x is None:
        out += b"N"
    elif kind is bool:
        out += b"T" if x else b"F"
    elif kind is str:
        data = x.encode("utf-8", "surrogatepass")
        out += b"s" + _U32.pack(len(data)) + data
    elif kind in _SEQUENCE_TAGS or kind is dict:
        if depth >= MAX_DEPTH:
            raise TypeError(f"the value is nested deeper than {MAX_DEPTH} levels")
        out += (b"d" if kind is dict else _SEQUENCE_TAGS[kind]) + _U32.pack(len(x))
        if kind is dict:
            for k, v in x.items():
                _encode(k, out, depth + 1)
                _encode(v, out, depth + 1)
        else:
            for v in x:
                _encode(v, out, depth + 1)
    elif kind is complex:
        out += b"c"
        out += _C128.pack(x.real, x.imag)
    elif isinstance(x, np.generic) and x.dtype.kind in _NUMERIC_KINDS + "U":
        _encode(x.item(), out, depth)          # numpy scalars become the matching builtin
    elif kind is Ref:
        data = x.key.encode()
        out += b"r" + _U32.pack(len(data)) + data
    else:
        what = f"{kind.__module__}.{kind.__qualname__}"
        if isinstance(x, (int, float, str, list, tuple, dict, set, np.ndarray)):
            what = f"{what} (a subclass of {kind.__mro__[1].__qualname__})"
        raise TypeError(f"{what} is not plain data (use None, bool, int, float, complex, str, list, tuple, "
                        f"set, dict, or a numeric numpy array)")


_DTYPES: dict[bytes, tuple[np.dtype, np.dtype]] = {}   # validated wire dtype -> (dtype, native order)
_CONTAINER_TAGS = {0x6C: list, 0x74: tuple, 0x53: set, 0x5A: frozenset, 0x64: dict}   # l t S Z d


class _Decoder:
    """Decodes one `encode` output; every malformed input raises `CandidateInvalid`."""

    def __init__(self, data: bytes, refs: dict[str, Any] | None = None) -> None:
        self.data = data
        self.pos = 0
        self.refs = refs

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise CandidateInvalid(f"malformed reply: truncated at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def value(self, depth: int = 0) -> Any:
        # Hot path (tens of thousands of calls per evaluation): integer tags, unpack_from, no slicing.
        data, pos = self.data, self.pos
        tag = data[pos]                       # IndexError past the end -> malformed
        self.pos = pos + 1
        if tag == 0x69:                       # i
            self.pos = pos + 9
            return _I64.unpack_from(data, pos + 1)[0]
        if tag == 0x66:                       # f
            self.pos = pos + 9
            return _F64.unpack_from(data, pos + 1)[0]
        if tag == 0x61:                       # a
            return self.array()
        if tag == 0x4E:                       # N
            return None
        if tag == 0x54:                       # T
            return True
        if tag == 0x46:                       # F
            return False
        if tag == 0x73:                       # s
            (n,) = _U32.unpack_from(data, pos + 1)
            self.pos = pos + 5
            return self.take(n).decode("utf-8", "surrogatepass")
        if tag in _CONTAINER_TAGS:
            if depth >= MAX_DEPTH:
                raise CandidateInvalid(f"malformed reply: nested deeper than {MAX_DEPTH} levels")
            (n,) = _U32.unpack_from(data, pos + 1)
            self.pos = pos + 5
            if n > len(data) - self.pos:      # every element takes at least one byte
                raise CandidateInvalid(f"malformed reply: claims {n} elements in {len(data) - self.pos} bytes")
            if tag == 0x64:                   # d
                return {self.value(depth + 1): self.value(depth + 1) for _ in range(n)}
            items = [self.value(depth + 1) for _ in range(n)]
            return _CONTAINER_TAGS[tag](items)
        if tag == 0x63:                       # c
            real, imag = _C128.unpack_from(data, pos + 1)
            self.pos = pos + 17
            return complex(real, imag)
        if tag == 0x49:                       # I
            (n,) = _U32.unpack_from(data, pos + 1)
            self.pos = pos + 5
            if n > 5000:
                raise CandidateInvalid(f"malformed reply: an integer of {n} digits")
            return int(self.take(n).decode("ascii"))
        if tag == 0x72 and self.refs is not None:   # r
            (n,) = _U32.unpack_from(data, pos + 1)
            self.pos = pos + 5
            return self.refs[self.take(n).decode()]
        raise CandidateInvalid(f"malformed reply: unknown tag {bytes((tag,))!r} at byte {pos}")

    def array(self) -> np.ndarray:
        raw = self.take(self.take(1)[0])
        dtypes = _DTYPES.get(raw)
        if dtypes is None:
            try:
                dtype = np.dtype(raw.decode("ascii"))
            except Exception:
                raise CandidateInvalid(f"malformed reply: bad array dtype {raw[:40]!r}") from None
            if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None \
                    or dtype.hasobject:
                raise CandidateInvalid(f"array of dtype {dtype} is not numeric")
            dtypes = (dtype, dtype.newbyteorder("="))
            if len(_DTYPES) < 256:              # only validated dtypes, and few of them
                _DTYPES[raw] = dtypes
        dtype, native = dtypes
        ndim = self.take(1)[0]
        if ndim > 32:
            raise CandidateInvalid(f"malformed reply: array with {ndim} dimensions")
        shape = struct.unpack_from(f"<{ndim}q", self.take(8 * ndim))
        size = 1
        for n in shape:
            if n < 0:
                raise CandidateInvalid(f"malformed reply: array shape {shape}")
            size *= n
        nbytes = size * dtype.itemsize
        if nbytes > len(self.data) - self.pos:
            raise CandidateInvalid(f"malformed reply: array of shape {shape} needs {nbytes} bytes, "
                                   f"{len(self.data) - self.pos} left")
        array = np.frombuffer(self.data, dtype=dtype, count=size, offset=self.pos).reshape(shape)
        self.pos += nbytes
        # A fresh, writable, native-order array that the candidate never saw.
        return array.astype(native, copy=True)


def decode(data: bytes, *, _refs: dict[str, Any] | None = None) -> Any:
    """Decode `encode`'s output into fresh plain objects; anything else raises `CandidateInvalid`."""
    decoder = _Decoder(bytes(data), _refs)
    try:
        value = decoder.value()
    except CandidateInvalid:
        raise
    except Exception as exc:  # struct/unicode/hash errors on malformed bytes
        raise CandidateInvalid(f"malformed reply: {type(exc).__name__}: {exc}") from None
    if decoder.pos != len(decoder.data):
        raise CandidateInvalid(f"malformed reply: {len(decoder.data) - decoder.pos} trailing bytes")
    return value


def _frame(payload: bytes) -> bytes:
    return _SIZE.pack(len(payload)) + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---- the child ------------------------------------------------------------------------------------

_CHILD = r"""
import os, sys
reply_fd, request_fd = int(sys.argv[2]), int(sys.argv[3])
os.dup2(2, 1)                                   # candidate prints go to stderr, never into the reply
sys.stdout = sys.stderr
sys.path.insert(0, sys.argv[4])
from evoforge.evaluators.candidate import _serve
_serve(sys.argv[1], reply_fd, request_fd, [p for p in sys.argv[5].split(os.pathsep) if p])
"""


def _describe(exc: BaseException, traceback: Any) -> str:
    """The traceback's tail; the candidate may have patched what formatting needs (isinstance...)."""
    try:
        return str(traceback.format_exc())[-4000:]
    except BaseException:
        try:
            return f"{type(exc).__name__}: {exc}"[-4000:]
        except BaseException:
            return "an exception that cannot be described"


def _read_program(request_fd: int, workdir: str) -> str:
    """The zygote's candidate reads its program as the first frame on the request pipe
    (``encode([file name, text])``) and writes it into its own fresh ``workdir``; returns the path."""
    buf = b""
    while len(buf) < _SIZE.size or len(buf) < _SIZE.size + _SIZE.unpack_from(buf)[0]:
        if len(buf) >= _SIZE.size and _SIZE.unpack_from(buf)[0] > _MAX_PROGRAM_BYTES:
            raise ValueError("the program is larger than the limit")
        chunk = os.read(request_fd, _READ_CHUNK)
        if not chunk:
            raise EOFError("the evaluator closed the session before sending the program")
        buf += chunk
    name, text = decode(buf[_SIZE.size:_SIZE.size + _SIZE.unpack_from(buf)[0]])
    path = os.path.join(workdir, os.path.basename(str(name)) or "program.py")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(str(text))
    return path


def _serve(program_path: str, reply_fd: int, request_fd: int, hidden: list[str] | None) -> None:  # in the child
    import importlib.util
    import traceback

    os.set_inheritable(reply_fd, False)
    os.set_inheritable(request_fd, False)
    if hidden is not None:
        # Not in a view built for us (no zygote): before any candidate code, the task folder (answer
        # keys, held-out data) becomes unreadable, writes go only to our own fresh directory, no signals
        # to or ptrace of the evaluator; no capabilities.
        from evoforge.evaluators.confine import CAP_DAC_READ_SEARCH, confine, drop_capabilities
        confine(writable=[os.getcwd()], hidden=hidden, keep=[os.path.dirname(program_path)])
        drop_capabilities(keep=(CAP_DAC_READ_SEARCH,) if os.getuid() != 0 else ())   # kept only by a sandbox
        # worker that runs as nobody with a Python under /root; dropping it would break later imports

    def reply(kind: bytes, value: Any) -> None:
        try:
            body = encode(value)
        except Exception as exc:  # TypeError, or RecursionError/MemoryError from a hostile value
            kind, body = b"x", encode(f"the function returned {exc}")
        _write_all(reply_fd, _frame(kind + body))

    sys.path.insert(0, os.path.dirname(program_path))   # helpers beside the program import as usual
    try:
        spec = importlib.util.spec_from_file_location("candidate_program", program_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate_program"] = module
        spec.loader.exec_module(module)
    except BaseException as exc:
        reply(b"r", "importing the program raised:\n" + _describe(exc, traceback))
        return
    reply(b"y", None)
    refs: dict[str, Any] = {}
    buf = b""
    while True:
        while len(buf) < _SIZE.size or len(buf) < _SIZE.size + _SIZE.unpack_from(buf)[0]:
            chunk = os.read(request_fd, _READ_CHUNK)
            if not chunk:
                return                           # the evaluator closed the session
            buf += chunk
        end = _SIZE.size + _SIZE.unpack_from(buf)[0]
        request, buf = decode(buf[_SIZE.size:end], _refs=refs), buf[end:]
        function, args, kwargs = request
        if function == _PUT:
            refs[args] = kwargs
            reply(b"o", None)
            continue
        if function == _HAS:
            reply(b"o", callable(getattr(module, args, None)))
            continue
        fn = getattr(module, function, None)
        if not callable(fn):
            reply(b"r", f"the program defines no callable {function}()")
            continue
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            reply(b"r", f"{function}() raised:\n" + _describe(exc, traceback))
            continue
        reply(b"o", value)


# ---- the trusted side -----------------------------------------------------------------------------

# Copied into the child when set in the evaluator's environment (the sandbox already cleaned it).
_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
             "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_DEFAULTS = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                 "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _child_environment(home: str) -> dict[str, str]:
    env = dict(_ENV_DEFAULTS)
    env.update({k: os.environ[k] for k in _ENV_KEYS if k in os.environ})
    env.setdefault("PATH", os.defpath)
    env.update(HOME=home, TMPDIR=home)
    return env


def _zygote_socket() -> int | None:
    """The zygote's socket when the sandbox gave us one (`evoforge.sandbox.zygote`), else None."""
    value = os.environ.get("EVOFORGE_ZYGOTE_FD", "")
    if not value.isdigit():
        return None
    try:
        os.fstat(int(value))
    except OSError:
        return None
    return int(value)


class _ZygoteCandidate:
    """A candidate forked by the job's zygote, in a filesystem and namespaces built for it."""

    def __init__(self, zygote_fd: int, reply_w: int, request_r: int, program_path: str) -> None:
        import socket

        self.returncode: int | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control = ours
        try:
            err = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
        except (OSError, ValueError):
            err = 2
        try:
            zygote = socket.socket(fileno=os.dup(zygote_fd))
            try:
                zygote.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         array.array("i", [theirs.fileno(), reply_w, request_r, err]))])
            finally:
                zygote.close()
        finally:
            theirs.close()
        kind, self.pid = self._status(STARTUP_WAIT_S)
        if kind != b"p":
            ours.close()
            raise CandidateCrashed(f"the sandbox's candidate zygote did not start the program ({program_path})")

    def _status(self, timeout_s: float) -> tuple[bytes, int]:
        self._control.settimeout(timeout_s)
        data = b""
        try:
            while len(data) < _STATUS.size:
                chunk = self._control.recv(_STATUS.size - len(data))
                if not chunk:
                    return b"", 0
                data += chunk
        except OSError:
            return b"", 0
        return _STATUS.unpack(data)

    def kill(self) -> None:
        """Let go of the candidate (its launcher kills it and its whole PID namespace) and wait for
        the report of its end."""
        import socket

        try:
            self._control.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        kind, status = self._status(_CLOSE_WAIT_S)
        if kind == b"s":
            self.returncode = os.waitstatus_to_exitcode(status)
        self._control.close()


class _SpawnedCandidate:
    """Fallback without a zygote: a fresh interpreter in isolated mode (``-I``: no user site, no
    PYTHON* variables, no script folder on ``sys.path``) started in an empty private directory, so no
    file a candidate wrote runs before `_serve` confines the child."""

    def __init__(self, program_path: str, reply_w: int, request_r: int, hidden: str) -> None:
        import shutil
        import tempfile

        # In the workdir under the sandbox; only the child writes it.
        self._home = tempfile.mkdtemp(prefix="candidate-")
        self._rmtree = shutil.rmtree
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-I", "-c", _CHILD, program_path, str(reply_w), str(request_r), import_root(),
                 hidden], stdin=subprocess.DEVNULL, pass_fds=(reply_w, request_r), start_new_session=True,
                cwd=self._home, env=_child_environment(self._home))
        except BaseException:
            shutil.rmtree(self._home, ignore_errors=True)
            raise
        self.pid = self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def kill(self) -> None:
        try:
            os.killpg(self._popen.pid, signal.SIGKILL)   # its group: whatever it started goes too
        except (ProcessLookupError, PermissionError):
            pass
        self._popen.wait()
        self._rmtree(self._home, ignore_errors=True)    # nothing it wrote is left for the next session


class CandidateSession:
    """A child process holding the imported candidate; `call` runs one of its functions there.

    ``timeout_s`` bounds each call (and the import, unless ``import_timeout_s`` is given); on a
    timeout the child is killed and every later call raises `CandidateCrashed`. ``hidden_paths``
    become unreadable to the candidate where Landlock is available (default: the task folder when
    running in the sandbox, so it cannot read answer keys or held-out data; pass data as arguments).
    Use it as a context manager, or call `close`.
    """

    def __init__(self, program_path: str | os.PathLike[str], *, timeout_s: float = 60.0,
                 import_timeout_s: float | None = None, max_reply_mb: float = MAX_REPLY_MB,
                 hidden_paths: Sequence[str | os.PathLike[str]] | None = None) -> None:
        self.program_path = str(Path(program_path).resolve())
        if hidden_paths is None:   # in the sandbox: the task folder (set by sandbox.forkserver)
            hidden_paths = [p for p in os.environ.get("EVOFORGE_TASK_DIR", "").split(os.pathsep) if p]
        hidden = os.pathsep.join(str(Path(p).resolve()) for p in hidden_paths)
        self.timeout_s = float(timeout_s)
        self.max_reply_bytes = int(max_reply_mb * 1024 * 1024)
        self._closed = True
        make_undumpable()
        reply_r, reply_w = os.pipe()
        request_r, request_w = os.pipe()
        zygote = _zygote_socket()
        try:
            if zygote is not None:
                self._process: _ZygoteCandidate | _SpawnedCandidate = _ZygoteCandidate(
                    zygote, reply_w, request_r, self.program_path)
            else:
                self._process = _SpawnedCandidate(self.program_path, reply_w, request_r, hidden)
        except BaseException:
            for fd in (reply_r, reply_w, request_r, request_w):
                os.close(fd)
            raise
        os.close(reply_w)
        os.close(request_r)
        os.set_inheritable(reply_r, False)
        os.set_inheritable(request_w, False)
        if zygote is not None:    # the program travels as the first frame: the candidate's folder is its own
            try:
                _write_all(request_w, _frame(encode([os.path.basename(self.program_path),
                                                     Path(self.program_path).read_text(errors="surrogateescape")])))
            except BaseException:
                self._process.kill()
                os.close(reply_r)
                os.close(request_w)
                raise
        self._reply_fd, self._request_fd = reply_r, request_w
        self._poll = select.poll()
        self._poll.register(reply_r, select.POLLIN)
        # Requests are written without blocking, under the call's deadline: a candidate that forges
        # its own replies and stops reading its request pipe must not hold a large write forever.
        os.set_blocking(request_w, False)
        self._write_poll = select.poll()
        self._write_poll.register(request_w, select.POLLOUT)
        self._buf = b""
        self._closed = False
        self._receive("importing the program", self.timeout_s if import_timeout_s is None else import_timeout_s)

    @property
    def pid(self) -> int:
        """The candidate's process id (as seen from the evaluator)."""
        return self._process.pid

    def call(self, function: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the candidate's process and return its plain-data value.

        Arguments must be plain data too (or `Ref` from `put`); the child gets its own copies.
        """
        return self._request([function, args, kwargs], f"{function}()", timeout_s)

    def put(self, key: str, value: Any, *, timeout_s: float | None = None) -> Ref:
        """Send ``value`` once and keep it in the child; pass the returned `Ref` to `call` instead of
        resending it (e.g. a distance matrix used by every step of a tour). The child owns that copy:
        if the candidate mutates it, later calls see the mutation (as with one copy per instance)."""
        self._request([_PUT, str(key), value], f"storing {key!r}", timeout_s)
        return Ref(str(key))

    def defines(self, function: str, *, timeout_s: float | None = None) -> bool:
        """Whether the program defines a callable ``function`` (checked in the child)."""
        answer = self._request([_HAS, str(function), None], f"looking up {function}()", timeout_s)
        if type(answer) is not bool:
            self._fail(CandidateInvalid, f"looking up {function}()", f"expected True or False, got {answer!r:.80}")
        return answer

    def _request(self, message: list, what: str, timeout_s: float | None) -> Any:
        if self._closed:
            raise CandidateCrashed(f"{what}: the candidate's process is gone (an earlier call failed)")
        try:
            payload = encode(message)
        except TypeError as exc:
            raise TypeError(f"{what}: an argument is not plain data: {exc}") from None
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        deadline = time.monotonic() + timeout_s
        view = memoryview(_frame(payload))
        while view:
            try:
                view = view[os.write(self._request_fd, view):]
                continue
            except BlockingIOError:
                pass
            except OSError:  # BrokenPipeError: it exited between calls
                self._fail(CandidateCrashed, what, "the candidate's process exited")
            wait_s = deadline - time.monotonic()
            if wait_s <= 0 or not self._write_poll.poll(wait_s * 1000.0):
                self._fail(CandidateTimeout, what, f"the candidate did not take the request within {timeout_s:g} s "
                                                   f"(the candidate was killed)")
        return self._receive(what, timeout_s, deadline)

    def _receive(self, what: str, timeout_s: float, deadline: float | None = None) -> Any:
        if deadline is None:
            deadline = time.monotonic() + timeout_s
        buf = self._buf
        while len(buf) < _SIZE.size:
            buf += self._read_some(deadline, what, timeout_s)
        size = _SIZE.unpack_from(buf)[0]
        if size > self.max_reply_bytes:
            self._fail(CandidateInvalid, what, f"the reply claims {size} bytes, over the "
                                               f"{self.max_reply_bytes}-byte limit")
        end = _SIZE.size + size
        while len(buf) < end:
            buf += self._read_some(deadline, what, timeout_s)
        body, self._buf = buf[_SIZE.size:end], buf[end:]
        kind = body[:1]
        try:
            value = decode(body[1:])
        except CandidateInvalid as exc:
            self._fail(CandidateInvalid, what, str(exc))
        if kind == b"o" or kind == b"y":
            return value
        if kind == b"r" and type(value) is str:
            raise CandidateRaised(value)
        if kind == b"x" and type(value) is str:
            raise CandidateInvalid(f"{what}: {value}")
        self._fail(CandidateInvalid, what, f"malformed reply: unknown reply kind {kind!r}")

    def _read_some(self, deadline: float, what: str, timeout_s: float) -> bytes:
        wait_s = deadline - time.monotonic()
        if wait_s <= 0 or not self._poll.poll(wait_s * 1000.0):
            self._fail(CandidateTimeout, what, f"no reply within {timeout_s:g} s (the candidate was killed)")
        chunk = os.read(self._reply_fd, _READ_CHUNK)
        if not chunk:
            self._fail(CandidateCrashed, what, "the candidate's process exited before replying")
        return chunk

    def _fail(self, error: type[CandidateError], what: str, reason: str) -> None:
        self.close()
        code = self._process.returncode
        how = ""
        if error is CandidateCrashed and code is not None and code < 0:
            try:
                how = f"; it was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"; it was killed by signal {-code}"
        elif error is CandidateCrashed and code:
            how = f"; exit code {code}"
        raise error(f"{what}: {reason}{how}")

    def close(self) -> None:
        """Kill the candidate's process group and reap it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._request_fd, self._reply_fd):
            os.close(fd)
        self._process.kill()

    def __enter__(self) -> "CandidateSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


def run_candidate(program_path: str | os.PathLike[str], function: str, *args: Any, timeout_s: float = 60.0,
                  **kwargs: Any) -> Any:
    """Import the program in a fresh child process, call ``function(*args, **kwargs)``, return plain data.

    ``timeout_s`` bounds the import and the call together.
    """
    deadline = time.monotonic() + timeout_s
    with CandidateSession(program_path, timeout_s=timeout_s) as session:
        return session.call(function, *args, timeout_s=max(0.001, deadline - time.monotonic()), **kwargs)
