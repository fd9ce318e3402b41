"""`evoforge.evaluators.candidate`: a candidate's function in a nested process, plain data back, lies rejected."""

from __future__ import annotations

import builtins
import math
import os
import struct
import textwrap

import numpy as np
import pytest

from evoforge.evaluators.candidate import (
    CandidateCrashed, CandidateError, CandidateInvalid, CandidateRaised, CandidateSession, CandidateTimeout,
    Ref, decode, encode, run_candidate,
)


def _program(tmp_path, source: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


ECHO = """
import numpy as np

def echo(*args, **kwargs):
    return args[0] if len(args) == 1 and not kwargs else (args, kwargs)
"""

PLAIN_VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -2**63, 2**200, -3**90, 0.0, -0.0, 1.5, 1e308, 5e-324,
    float("inf"), float("-inf"), 2 + 3j, "", "text ünïcode ✓", "lone surrogate \udc80",
    [], [1, [2, [3]]], (), (1, "a", None), {1, 2, 3}, frozenset({"x"}), {},
    {"k": [1.0], 7: (2,), (1, 2): None, None: {"nested": {"deep": [True]}}},
    np.arange(12, dtype=np.int64).reshape(3, 4), np.zeros((0, 5)), np.array(3.5),
    np.array([True, False]), np.arange(4, dtype=np.uint8), np.linspace(0, 1, 7, dtype=np.float32),
    np.array([1 + 1j, -2j], dtype=np.complex128), np.arange(6, dtype=">i4").reshape(2, 3),
    np.arange(10.0)[::3],                               # a strided view
]


def _same(a, b) -> bool:
    """Equal and of exactly the same type, all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


# ---- the wire format, in this process -------------------------------------------------------------------

@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: type(v).__name__)
def test_encode_decode_round_trip(value):
    back = decode(encode(value))
    assert _same(value, back), (value, back)
    if isinstance(back, np.ndarray):
        assert back.flags.writeable and back.flags.owndata and back.dtype.isnative


def test_numpy_scalars_become_builtins():
    assert _same(decode(encode([np.float64(1.5), np.int32(-2), np.bool_(True), np.complex64(1j), np.str_("s")])),
                 [1.5, -2, True, 1j, "s"])


class LyingFloat(float):
    def __lt__(self, other):
        return False

    def __gt__(self, other):
        return True


class Weird(np.ndarray):
    pass


@pytest.mark.parametrize("value, fragment", [
    (LyingFloat(1.0), "subclass of float"),
    (np.array([object()]), "dtype object"),
    (np.array(["a"]), "dtype <U1"),
    (np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]), "not plain data"),
    (np.zeros(2, dtype="datetime64[s]"), "not plain data"),
    (np.zeros(3).view(Weird), "subclass of ndarray"),
    (object(), "builtins.object"),
    (b"bytes", "builtins.bytes"),
    (lambda: 0, "function"),
])
def test_encode_rejects_what_is_not_plain_data(value, fragment):
    with pytest.raises(TypeError, match="not plain data") as info:
        encode(value)
    assert fragment in str(info.value)


def test_encode_rejects_deep_nesting():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(TypeError, match="nested deeper"):
        encode(deep)


def _array_bytes(dtype: str, shape: tuple[int, ...], payload: bytes) -> bytes:
    raw = dtype.encode()
    return (b"a" + bytes((len(raw),)) + raw + bytes((len(shape),)) + struct.pack(f"<{len(shape)}q", *shape)
            + payload)


@pytest.mark.parametrize("data, fragment", [
    (b"", "IndexError"),
    (b"Q", "unknown tag"),
    (b"i\x01\x02", "error"),                                      # truncated int64
    (encode(1) + b"junk", "trailing bytes"),
    (b"s" + struct.pack("<I", 1000) + b"short", "truncated"),
    (b"l" + struct.pack("<I", 2**31) + b"N", "claims"),            # a list claiming 2**31 elements
    ((b"l" + struct.pack("<I", 1)) * 150 + b"N", "nested deeper"),  # 150 nested lists
    (b"S" + struct.pack("<I", 1) + b"l" + struct.pack("<I", 0), "unhashable"),   # a set holding a list
    (b"s" + struct.pack("<I", 1) + b"\xff", "UnicodeDecodeError"),
    (b"I" + struct.pack("<I", 9000) + b"9" * 9000, "digits"),
    (b"r" + struct.pack("<I", 1) + b"k", "unknown tag"),           # references only in requests
    (_array_bytes("|O", (1,), b"\0" * 8), "not numeric"),
    (_array_bytes("|V8", (1,), b"\0" * 8), "not numeric"),
    (_array_bytes("[('a', '<i4')]", (1,), b"\0" * 4), "dtype"),
    (_array_bytes("(2,)<i4", (1,), b"\0" * 8), "not numeric"),
    (_array_bytes("<U1", (1,), b"\0" * 4), "not numeric"),
    (_array_bytes("<M8[s]", (1,), b"\0" * 8), "not numeric"),
    (_array_bytes("nonsense", (1,), b""), "bad array dtype"),
    (_array_bytes("<f8", (10**9,), b"\0" * 8), "needs"),           # shape far beyond the bytes sent
    (_array_bytes("<f8", (-1,), b"\0" * 8), "shape"),
    (_array_bytes("<f8", (2**62, 2**62), b""), "needs"),
])
def test_decode_rejects_malformed_bytes(data, fragment):
    with pytest.raises(CandidateInvalid) as info:
        decode(data)
    assert fragment in str(info.value), str(info.value)


def test_decode_never_raises_anything_but_candidate_invalid_on_random_bytes():
    rng = np.random.default_rng(7)
    good = encode(PLAIN_VALUES)
    for trial in range(2000):
        data = bytearray(good)
        for _ in range(1 + trial % 4):   # flip a few bytes of a valid message
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        cut = len(data) if trial % 3 else int(rng.integers(len(data)))
        try:
            decode(bytes(data[:cut]))
        except CandidateInvalid:
            pass


# ---- through a real child process ---------------------------------------------------------------------

def test_every_plain_type_round_trips_through_the_child(tmp_path):
    with CandidateSession(_program(tmp_path, ECHO), timeout_s=30) as session:
        for value in PLAIN_VALUES:
            assert _same(session.call("echo", value), value), value
        assert _same(session.call("echo", 1, 2, key="v"), ((1, 2), {"key": "v"}))
        assert _same(session.call("echo", PLAIN_VALUES), PLAIN_VALUES)


def test_run_candidate_one_call(tmp_path):
    path = _program(tmp_path, "import numpy as np\ndef pack(n, scale=1.0):\n    return np.ones((n, 2)) * scale, n\n")
    centers, n = run_candidate(path, "pack", 3, scale=2.0, timeout_s=30)
    assert n == 3 and np.array_equal(centers, np.full((3, 2), 2.0))


@pytest.mark.parametrize("body, fragment", [
    ("class F(float):\n    def __lt__(self, o): return False\n\ndef f():\n    return F(1.0)", "subclass of float"),
    ("def f():\n    return [1.0, float.__new__(type('G', (float,), {}), 2.0)]", "subclass of float"),
    ("def f():\n    return np.array([None, 1])", "dtype object"),
    ("def f():\n    return np.zeros(2, dtype=[('a', 'i4')])", "not plain data"),
    ("def f():\n    return {'a': object()}", "builtins.object"),
    ("def f():\n    return np.ma.masked_array([1.0, 2.0])", "subclass of ndarray"),
    ("def f():\n    x = []\n    for _ in range(10000): x = [x]\n    return x", "nested deeper"),
])
def test_lies_returned_by_the_candidate_are_invalid(tmp_path, body, fragment):
    path = _program(tmp_path, "import numpy as np\n" + body + "\n")
    with pytest.raises(CandidateInvalid) as info:
        run_candidate(path, "f", timeout_s=30)
    assert fragment in str(info.value)


FORGED_REPLY = """
import os, struct, sys

def forge(payload):
    fd = int(sys.argv[2])                     # the reply pipe: a hostile candidate can write anything
    os.write(fd, payload.encode("latin-1"))
    import time
    time.sleep(60)
"""


@pytest.mark.parametrize("payload, fragment", [
    (struct.pack("<Q", 2**40), "over the"),                                          # claims a terabyte
    (struct.pack("<Q", 3) + b"oQQ", "unknown tag"),                                   # malformed body
    (struct.pack("<Q", 2) + b"zN", "unknown reply kind"),
    (struct.pack("<Q", 2) + b"rN", "unknown reply kind"),                              # "raised" without a text
])
def test_forged_replies_are_invalid_and_kill_the_child(tmp_path, payload, fragment):
    with CandidateSession(_program(tmp_path, FORGED_REPLY), timeout_s=30) as session:
        with pytest.raises(CandidateInvalid) as info:
            session.call("forge", payload.decode("latin-1"))
        assert fragment in str(info.value)
        assert not _alive(session.pid)
        with pytest.raises(CandidateCrashed, match="gone"):
            session.call("forge", "")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_child_and_its_group(tmp_path):
    path = _program(tmp_path, """
        import subprocess, sys
        def spin():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            while True:
                pass
        def marker():
            return 1
    """)
    with CandidateSession(path, timeout_s=30) as session:
        child = session.pid
        with pytest.raises(CandidateTimeout, match="no reply within 0.5 s"):
            session.call("spin", timeout_s=0.5)
        assert not _alive(child)
        with pytest.raises(CandidateCrashed):
            session.call("marker")
    assert _gone(lambda: _group_members(child)), "the grandchild outlived the session"


def _gone(members, wait_s: float = 10.0) -> bool:
    """SIGKILL is asynchronous for processes we cannot wait for: allow them a moment to die."""
    import time

    deadline = time.monotonic() + wait_s
    while members():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_import_timeout(tmp_path):
    path = _program(tmp_path, "while True:\n    pass\n")
    with pytest.raises(CandidateTimeout, match="importing the program"):
        CandidateSession(path, timeout_s=0.5)


@pytest.mark.parametrize("body, fragment", [
    ("import os\n    os._exit(3)", "exit code 3"),
    ("import sys\n    sys.stdout.flush(); import os; os.kill(os.getpid(), 9)", "SIGKILL"),
    ("import ctypes\n    ctypes.string_at(0)", "SIGSEGV"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGTERM)", "SIGTERM"),
])
def test_crashes_are_candidate_crashed(tmp_path, body, fragment):
    path = _program(tmp_path, f"def f():\n    {body}\n")
    with pytest.raises(CandidateCrashed, match=fragment):
        run_candidate(path, "f", timeout_s=30)


def test_sys_exit_and_exceptions_are_raised_and_the_session_goes_on(tmp_path):
    path = _program(tmp_path, """
        import sys
        def bad(kind):
            if kind == "exit":
                sys.exit(4)
            raise ValueError("boom " + kind)
        def good():
            return "fine"
    """)
    with CandidateSession(path, timeout_s=30) as session:
        with pytest.raises(CandidateRaised, match="SystemExit: 4"):
            session.call("bad", "exit")
        with pytest.raises(CandidateRaised, match="ValueError: boom x"):
            session.call("bad", "x")
        with pytest.raises(CandidateRaised, match="defines no callable missing"):
            session.call("missing")
        assert session.call("good") == "fine"


def test_import_errors_are_raised(tmp_path):
    with pytest.raises(CandidateRaised, match="(?s)importing the program raised.*ZeroDivisionError"):
        CandidateSession(_program(tmp_path, "1 / 0\n"), timeout_s=30)
    with pytest.raises(CandidateRaised, match="SyntaxError"):
        run_candidate(_program(tmp_path, "def f(:\n", "syntax.py"), "f", timeout_s=30)


def test_prints_do_not_corrupt_the_channel(tmp_path, capfd):
    path = _program(tmp_path, """
        import os, sys
        def noisy(n):
            print("x" * 100000)
            sys.stdout.write("\\x00\\x01" * 1000)
            os.write(1, b"raw bytes on fd 1\\n" * 1000)
            print("to stderr", file=sys.stderr)
            return list(range(n))
    """)
    with CandidateSession(path, timeout_s=30) as session:
        for n in (0, 5, 1000):
            assert session.call("noisy", n) == list(range(n))
    assert "raw bytes on fd 1" in capfd.readouterr().err


def test_monkeypatching_in_the_candidate_cannot_reach_the_evaluator(tmp_path):
    path = _program(tmp_path, """
        import builtins, math, sys
        import numpy as np
        def patch():
            np.argmax = lambda *a, **k: 0
            np.ndarray = None
            math.fsum = lambda xs: -1.0
            builtins.sum = lambda xs: 0
            builtins.abs = lambda x: -1
            sys.modules["numpy"].isfinite = lambda x: True
            return "patched"
        def check():
            return np.argmax([1, 5]), math.fsum([1.0]), sum([1, 2]), abs(3)
    """)
    saved = (np.argmax, np.ndarray, math.fsum, builtins.sum, builtins.abs, np.isfinite)
    with CandidateSession(path, timeout_s=30) as session:
        assert session.call("patch") == "patched"
        assert session.call("check") == (0, -1.0, 0, -1)      # its own interpreter is patched...
    assert (np.argmax, np.ndarray, math.fsum, builtins.sum, builtins.abs, np.isfinite) == saved   # ...ours not
    assert np.argmax([1, 5]) == 1 and math.fsum([1.0]) == 1.0 and sum([1, 2]) == 3 and abs(3) == 3


def test_the_candidate_cannot_see_the_evaluators_frames_or_memory(tmp_path):
    path = _program(tmp_path, """
        import gc, inspect, sys
        def peek():
            names = set()
            frame = inspect.currentframe().f_back
            while frame is not None:
                names.update(frame.f_locals)
                frame = frame.f_back
            found = any(isinstance(o, str) and "answer-key-7f3a" in o for o in gc.get_objects())
            return sorted(n for n in names if n.startswith("secret")), found
    """)
    secret_answer = "answer-key-7f3a" * 2  # noqa: F841 - what a candidate in this interpreter could read
    assert run_candidate(path, "peek", timeout_s=30) == ([], False)


def test_put_keeps_a_value_in_the_child(tmp_path):
    path = _program(tmp_path, """
        def total(matrix, zero=False):
            value = float(matrix.sum())
            if zero:
                matrix[:] = 0.0                   # its copy: later calls see it, the evaluator's does not change
            return value
    """)
    matrix = np.arange(9.0).reshape(3, 3)
    with CandidateSession(path, timeout_s=30) as session:
        ref = session.put("m", matrix)
        assert isinstance(ref, Ref)
        assert session.call("total", ref) == 36.0
        assert session.call("total", ref, zero=True) == 36.0
        assert session.call("total", ref) == 0.0
        assert session.call("total", matrix) == 36.0
    assert matrix.sum() == 36.0


def test_arguments_must_be_plain_data(tmp_path):
    with CandidateSession(_program(tmp_path, ECHO), timeout_s=30) as session:
        with pytest.raises(TypeError, match="not plain data"):
            session.call("echo", object())
        assert session.call("echo", 1) == 1          # the session is still usable


def test_errors_share_a_base_and_close_is_idempotent(tmp_path):
    assert all(issubclass(e, CandidateError) for e in
               (CandidateRaised, CandidateCrashed, CandidateTimeout, CandidateInvalid))
    session = CandidateSession(_program(tmp_path, ECHO), timeout_s=30)
    pid = session.pid
    session.close()
    session.close()
    assert not _alive(pid)


def test_the_child_gets_an_allow_listed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    path = _program(tmp_path, "import os\ndef env():\n    return dict(os.environ)\n")
    env = run_candidate(path, "env", timeout_s=30)
    assert "OPENAI_API_KEY" not in env and env["PYTHONHASHSEED"] == "0"


def test_a_module_planted_beside_the_caller_or_the_program_never_runs_before_confinement(tmp_path, monkeypatch):
    """Without the sandbox's zygote the candidate is a fresh interpreter: started with ``-I`` in an
    empty folder of its own, it never imports a ``subprocess.py`` (or a start-up hook) a candidate
    left in the working directory or beside the program."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    marker = tmp_path / "ran-before-confinement"
    plant = f"open({str(marker)!r}, 'w').write('x')\n"
    for folder in (work, tmp_path):
        for name in ("subprocess.py", "usercustomize.py", "sitecustomize.py"):
            (folder / name).write_text(plant)
    path = _program(tmp_path, "def f():\n    return 1\n")
    with CandidateSession(path, timeout_s=30) as session:
        assert session.call("f") == 1
    assert not marker.exists()
