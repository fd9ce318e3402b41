"""Who a sandboxed job runs as: a uid of its own, unique across every fork server on the host.

RLIMIT_NPROC counts processes per uid, and signals and /proc access follow uids, so two live jobs
must never share one: a candidate holding processes would starve the other job's forks, and the
two could signal each other. Each fork server used to count from the same base, so two runs on one
host handed out the same uids. `UidLeases` allocates from a host-wide pool instead: uid ``n`` is
taken by holding an exclusive ``flock`` on the file ``n`` in a root-owned directory (under /run, or
/tmp without it) for the job's lifetime; the kernel drops the lock when the holder dies, so a
crashed server never leaks its uids.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat

from evoforge.evaluators.confine import CAP_DAC_READ_SEARCH, drop_bounding_set, drop_capabilities

__all__ = ["NOBODY_UID", "JOB_UID_BASE", "JOB_UID_POOL", "UidLeases", "become"]

NOBODY_UID = 65534
# Far from any account's uid, and a pool far larger than the number of jobs alive at once.
JOB_UID_BASE = 0x3F000000
JOB_UID_POOL = 1 << 16
LEASE_DIRS = ("/run/evoforge-uids", "/tmp/evoforge-uids")
PR_SET_KEEPCAPS = 8

_libc = ctypes.CDLL(None, use_errno=True)


def _lease_dir() -> str:
    """A directory only root can write (a link or another owner there would let someone else
    hold our uids' locks)."""
    for path in LEASE_DIRS:
        if not os.path.isdir(os.path.dirname(path)):
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022:
            return path
    raise OSError(errno.EACCES, f"no root-owned directory for uid leases among {', '.join(LEASE_DIRS)}")


class UidLeases:
    """Host-wide allocation of job uids (as root). `acquire` returns ``(uid, fd)``; the lease holds
    while ``fd`` is open; `release` closes it."""

    def __init__(self) -> None:
        self.dir = _lease_dir()
        self._next = os.getpid() % JOB_UID_POOL   # servers start apart, so they rarely probe the same files

    def acquire(self) -> tuple[int, int]:
        for _ in range(JOB_UID_POOL):
            n = self._next
            self._next = (self._next + 1) % JOB_UID_POOL
            fd = os.open(os.path.join(self.dir, str(n)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return JOB_UID_BASE + n, fd
        raise OSError(errno.EAGAIN, f"all {JOB_UID_POOL} job uids are in use")

    @staticmethod
    def release(fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass


def become(uid: int, read_cap: bool = False) -> None:
    """setuid to ``uid`` (and gid ``uid``, no groups) with an empty capability bounding set; with
    ``read_cap``, keep only CAP_DAC_READ_SEARCH (in the bounding set, and ambient, so a nested
    interpreter keeps it too)."""
    # The bounding set goes first, while we still hold CAP_SETPCAP: after setuid every later
    # PR_CAPBSET_DROP fails with EPERM, and a full bounding set is what an exec (of a file with
    # capabilities, were no_new_privs ever off) could regain.
    drop_bounding_set(keep=(CAP_DAC_READ_SEARCH,) if read_cap else ())
    if read_cap:
        _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError(f"could not drop privileges to uid {uid}")
    if read_cap:
        drop_capabilities(keep=(CAP_DAC_READ_SEARCH,))
