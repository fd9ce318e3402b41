"""Confine the current process (and everything it starts) with Landlock, no privileges needed.

Landlock (Linux >= 5.13; Salaün, "Landlock: unprivileged access control", 2021) lets any process
restrict itself irrevocably: here, read and execute everywhere except the ``hidden`` paths, write
only beneath ``writable``, and -- where the kernel's ABI has them (>= 6, Linux 6.12) -- no signals
to and no abstract UNIX sockets with processes outside the domain. A Landlock domain also refuses
ptrace-style access (``/proc/<pid>/environ``, ``/proc/<pid>/mem``) to processes outside it, so a
candidate cannot read the engine's API keys even as root. Domains stack: a child confined again
(the candidate's process under `evoforge.evaluators.candidate`) gets the intersection.

Rules are allow-lists over file hierarchies, so "everything but H" is built by granting each sibling
along the path to H (`_grant`); the directories on that path keep only directory listing, so a hidden
folder's *names* stay visible but nothing in it can be opened. Best effort: where Landlock is missing
(old kernel, disabled LSM) `confine` returns ``None`` and the caller relies on its other layers.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from typing import Iterable

__all__ = ["confine", "landlock_abi", "needed_paths", "drop_capabilities", "make_undumpable",
           "drop_bounding_set", "CAP_DAC_READ_SEARCH"]

CAP_DAC_READ_SEARCH = 2   # read any file, search any directory: lets an unprivileged uid run a Python under /root

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446   # same on x86_64 and aarch64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4
_CAPABILITY_VERSION_3 = 0x20080522

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV   # the only rights a file rule may hold
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def _handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1                      # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= 1 << 13                       # REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def needed_paths() -> list[str]:
    """What this interpreter must keep reading: its prefixes and import paths."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    return sorted({os.path.realpath(p) for p in paths})


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Ruleset:
    def __init__(self, abi: int) -> None:
        self.handled = _handled_fs(abi)
        scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
        attr = struct.pack("<QQQ", self.handled, 0, scoped)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        buf = ctypes.create_string_buffer(attr[:size], size)
        self.fd = _libc.syscall(_SYS_CREATE_RULESET, buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
        self.rules = 0

    def allow(self, path: str, rights: int, *, follow: bool = True) -> None:
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(path, flags)
        except OSError:
            return
        try:
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                rights &= _FILE_RIGHTS
            rights &= self.handled
            if not rights:
                return
            attr = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
            if _libc.syscall(_SYS_ADD_RULE, ctypes.c_int(self.fd), ctypes.c_int(_RULE_PATH_BENEATH), attr,
                             ctypes.c_uint32(0)) == 0:
                self.rules += 1
        finally:
            os.close(fd)

    def restrict(self) -> None:
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if _libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(self.fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")

    def close(self) -> None:
        os.close(self.fd)


def _grant(rules: _Ruleset, path: str, hidden: list[str], needed: list[str], rights: int, follow: bool) -> None:
    """Grant ``rights`` beneath ``path`` except beneath the hidden paths (keeping needed ones)."""
    inside = [h for h in hidden if _under(h, path)]
    if not inside:
        rules.allow(path, rights, follow=follow)
        return
    if any(_under(path, h) for h in hidden):          # hidden: only what is needed beneath it
        for entry in _entries(path):
            if any(_under(n, entry) for n in needed):
                if any(_under(entry, n) for n in needed):
                    rules.allow(entry, rights, follow=False)
                else:
                    _grant(rules, entry, hidden, needed, rights, False)
        return
    rules.allow(path, _READ_DIR, follow=follow)       # an ancestor of something hidden: listing only
    for entry in _entries(path):
        _grant(rules, entry, hidden, needed, rights, False)


def _entries(path: str) -> list[str]:
    try:
        return [os.path.join(path, name) for name in sorted(os.listdir(path))]
    except OSError:
        return []


def confine(*, writable: Iterable[str] = (), hidden: Iterable[str] = (), keep: Iterable[str] = ()) -> int | None:
    """Restrict this process for good: read/execute all but ``hidden`` (except what lies under
    ``keep`` or this interpreter's own paths), write only beneath ``writable`` (plus ``/dev`` files
    such as ``/dev/null``). Returns the Landlock ABI used, or ``None`` when Landlock is unavailable."""
    abi = landlock_abi()
    if abi < 1:
        return None
    hidden_real = sorted({os.path.realpath(h) for h in hidden if h and os.path.realpath(h) != "/"})
    needed = needed_paths() + [os.path.realpath(k) for k in keep]
    rules = _Ruleset(abi)
    try:
        read = _EXECUTE | _READ_FILE | _READ_DIR
        _grant(rules, "/", hidden_real, needed, read, True)
        rules.allow("/dev", read | _WRITE_FILE | _IOCTL_DEV | _TRUNCATE)    # /dev/null, /dev/tty, ...
        if os.path.isdir("/dev/shm"):
            rules.allow("/dev/shm", rules.handled)                          # multiprocessing's semaphores
        for path in writable:
            rules.allow(path, rules.handled)
        rules.restrict()
    finally:
        rules.close()
    return abi


def make_undumpable() -> None:
    """Same-uid processes without CAP_SYS_PTRACE can no longer read our ``/proc/<pid>/environ`` or
    ``/proc/<pid>/mem`` (nor ptrace us). The engine and each evaluator call this before starting
    anything that runs candidate code."""
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def drop_bounding_set(keep: Iterable[int] = ()) -> None:
    """Remove all but ``keep`` from the bounding set (needs CAP_SETPCAP: call while still root)."""
    keep = set(keep)
    for cap in range(64):
        if cap in keep:
            continue
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:   # EINVAL: past the last
            break


def drop_capabilities(keep: Iterable[int] = ()) -> bool:
    """Drop every capability but ``keep`` for good: the bounding set (so an exec cannot regain them,
    even as root), then effective/permitted/inheritable, and ``keep`` raised as ambient so it
    survives the exec of a nested interpreter. A root candidate is then root only by uid: no ptrace
    of others, no mounts, no raw sockets, no overriding file permissions. Returns whether the final
    ``capset`` succeeded."""
    keep = sorted(set(keep))
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    drop_bounding_set(keep)
    low = sum(1 << c for c in keep if c < 32)
    high = sum(1 << (c - 32) for c in keep if c >= 32)
    header = ctypes.create_string_buffer(struct.pack("<Ii", _CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(struct.pack("<6I", low, low, low, high, high, high), 24)
    ok = _libc.capset(header, data) == 0
    for cap in keep:
        _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    return ok
