"""Mount-namespace views: what a sandboxed process can see of the filesystem (as root).

Two views, both built in a private mount namespace so nothing changes for anyone else:

- The evaluator (W) keeps the host's tree, because a task's evaluator may need the host's
  libraries, devices (GPUs) and the task folder, but `mask` replaces the engine user's home and the
  source checkout (its ``.git`` holds every task's history) with an empty read-only tmpfs into which
  only what W needs is bound back (the interpreter, evoforge's code, the task folder); /dev/shm and
  the workdir are fresh tmpfs mounts of its own. Landlock (`evoforge.evaluators.confine`) then limits
  its writes.
- A candidate process (C, `evoforge.sandbox.zygote`) gets a root built from nothing (`build_root`):
  a read-only tmpfs holding read-only binds of the interpreter and its libraries and of evoforge's
  code, a few device nodes, a fresh /proc of its own PID namespace, and fresh private /candidate, /tmp and
  /dev/shm; then ``pivot_root`` and the old root is detached. What is not listed does not exist.

Why not bubblewrap: it would be one exec per candidate, and an exec means a fresh interpreter that
imports numpy again (~230 ms); candidates are forked from a warm zygote instead, which must build
its view in-process -- a handful of mount(2) calls, well under a millisecond each.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["unshare", "mount", "bind", "tmpfs", "make_private", "mask", "build_root", "pivot_into",
           "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWIPC", "CLONE_NEWUTS", "CLONE_NEWPID", "CLONE_NEWUSER",
           "CLONE_NEWCGROUP"]

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.syscall.restype = ctypes.c_long


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def make_private() -> None:
    """Mount events stop propagating between this namespace and the host's (after unshare(NEWNS))."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def tmpfs(target: str, *, size_mb: float, mode: int = 0o755, flags: int = MS_NOSUID | MS_NODEV) -> None:
    mount("tmpfs", target, "tmpfs", flags, f"size={max(1, int(size_mb))}m,mode={mode:o}")


def bind(source: str, target: str, *, read_only: bool = True, flags: int = MS_NOSUID | MS_NODEV) -> None:
    """Bind ``source`` on ``target``; read-only needs a second, remounting call (the kernel ignores
    MS_RDONLY on the first)."""
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    """Drop every path that lies beneath another one of the list."""
    kept: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(_under(p, k) for k in kept):
            kept.append(p)
    return kept


def _make_target(target: str, source: str) -> None:
    """A mount point of the source's kind: a directory for a directory, an empty file for a file."""
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))


def mask(hidden: list[str], keep: list[str]) -> list[str]:
    """Replace each ``hidden`` directory by an empty read-only tmpfs (mode 0755, so parents that were
    0700 no longer stand in the way) and bind back the ``keep`` paths beneath it, read-only. Must run
    in a private mount namespace. Returns the hidden paths that were masked."""
    hidden = _outermost([os.path.realpath(h) for h in hidden if h and os.path.isdir(h)
                         and os.path.realpath(h) != "/"])
    keep = _outermost([os.path.realpath(k) for k in keep if k and os.path.exists(k) and os.path.realpath(k) != "/"])
    masked = []
    for h in hidden:
        inner = [k for k in keep if _under(k, h)]
        if any(_under(h, k) for k in keep):
            continue                     # the whole hidden folder is needed (e.g. a venv inside home)
        # Open what we keep before the tmpfs covers it; bind from the open descriptors afterwards.
        fds = [(k, os.open(k, os.O_PATH | os.O_CLOEXEC)) for k in inner]
        try:
            tmpfs(h, size_mb=1, mode=0o755)
            for k, fd in fds:
                _make_target(k, f"/proc/self/fd/{fd}")
                bind(f"/proc/self/fd/{fd}", k)
            mount(None, h, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        finally:
            for _k, fd in fds:
                os.close(fd)
        masked.append(h)
    return masked


def build_root(root: str, *, read_only: list[str], devices: list[str], tmp_mb: float,
               work_mb: float) -> None:
    """Fill the empty directory ``root`` (in a private mount namespace) with the candidate's view:
    ``read_only`` host paths at their own paths, ``devices`` (e.g. /dev/null) bound read-write, the
    host's top-level symlinks (/lib -> usr/lib ...) recreated, and empty tmpfs mounts at /candidate, /tmp
    and /dev/shm. /proc is mounted later, from inside the new PID namespace (`pivot_into`)."""
    tmpfs(root, size_mb=4, mode=0o755)
    # The fresh /tmp, /dev/shm and /candidate first, the read-only binds after: an interpreter or a
    # checkout that lives under /tmp (a CI clone, a venv in /tmp) must stay visible, not be covered.
    for path, size_mb in (("dev/shm", tmp_mb), ("tmp", tmp_mb), ("candidate", work_mb)):
        target = os.path.join(root, path)
        os.makedirs(target, mode=0o755, exist_ok=True)
        tmpfs(target, size_mb=size_mb, mode=0o1777 if path != "candidate" else 0o755)
    for name in sorted(os.listdir("/")):
        host = "/" + name
        if os.path.islink(host) and any(_under(os.path.realpath(host), p) for p in read_only):
            os.symlink(os.readlink(host), os.path.join(root, name))
    for path in _outermost([os.path.realpath(p) for p in read_only if os.path.exists(p)]):
        if os.path.islink(os.path.join(root, path.lstrip("/"))):
            continue
        target = os.path.join(root, path.lstrip("/"))
        _make_target(target, path)
        bind(path, target)
    os.makedirs(os.path.join(root, "dev"), mode=0o755, exist_ok=True)
    for dev in devices:
        if os.path.exists(dev):
            target = os.path.join(root, dev.lstrip("/"))
            _make_target(target, dev)
            bind(dev, target, read_only=False, flags=MS_NOSUID)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(root, "dev", name))
    os.makedirs(os.path.join(root, "proc"), mode=0o555, exist_ok=True)
    os.makedirs(os.path.join(root, ".old"), mode=0o700, exist_ok=True)


def pivot_into(root: str) -> None:
    """Make ``root`` the filesystem root, detach the old one, mount /proc (of the current PID
    namespace), and turn the root tmpfs read-only."""
    if _PIVOT_ROOT is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
    os.chdir(root)
    _check(_libc.syscall(_PIVOT_ROOT, b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount /.old")
    os.rmdir("/.old")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
