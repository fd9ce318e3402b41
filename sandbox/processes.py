"""Process-tree utilities for the fork server: subreaping, finding and killing every descendant,
and removing a directory a hostile process may have tampered with."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal

__all__ = ["set_subreaper", "children_of", "kill", "killpg", "kill_descendants", "close_fds_except",
           "redirect_std_to_devnull", "rmtree"]

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def set_subreaper() -> bool:
    """Make orphaned descendants reparent to us (not init), so we can find and kill them."""
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (zombies included), from /proc."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(p) for p in fh.read().split())
        return kids
    except (FileNotFoundError, PermissionError):
        pass  # kernel without CONFIG_PROC_CHILDREN: scan every process's parent
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_descendants(keep: frozenset[int] = frozenset(), max_rounds: int = 1000) -> None:
    """SIGKILL and reap our children until none are left (except ``keep``).

    Repeated because killing a child reparents *its* children to us (we are a subreaper), and a
    child may have forked between our scan and our kill.
    """
    me = os.getpid()
    for _ in range(max_rounds):
        kids = [p for p in children_of(me) if p not in keep]
        if not kids:
            return
        for pid in kids:
            kill(pid)
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the fd of the listdir itself, already gone


def redirect_std_to_devnull() -> None:
    """Stop holding the server's stdin/stdout, so the client sees EOF when the server dies."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def rmtree(path: str) -> None:
    """Remove a workdir even if the candidate chmod-ed parts of it to 000 (matters when not root).

    Only directories inside ``path`` are touched, never through a symlink (a candidate could
    plant one pointing anywhere), and a missing ``path`` is a no-op.
    """
    if not os.path.isdir(path) or os.path.islink(path):
        return
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            sub = os.path.join(root, name)
            if not os.path.islink(sub):
                try:
                    os.chmod(sub, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)
