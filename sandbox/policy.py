"""The fork server's policy: which protections this machine allows, decided once at start.

As root, the probe (`_probe`) checks that a job's worker can mask the home and the checkout in a
private mount namespace and still start this interpreter as an unprivileged uid; then candidates get
views built for them by the zygote (`evoforge.sandbox.zygote`). What cannot be applied is kept in
``Policy.notes`` and reported by `evoforge.sandbox.protections`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

from evoforge.evaluators.confine import needed_paths
from evoforge.evaluators.location import code_dirs, evaluators_dir
from evoforge.sandbox import mounts
from evoforge.sandbox.cgroups import CgroupSupport
from evoforge.sandbox.privileges import NOBODY_UID, become

__all__ = ["Policy", "make_policy", "w_keep", "HIDE_ENV"]

HIDE_ENV = "EVOFORGE_HIDE_PATHS"       # set by the client: os.pathsep-separated paths W must not read


@dataclass(frozen=True)
class Policy:
    """Per-server decisions, made once at startup (`make_policy`); ``drop_uid`` is per job."""

    drop_uid: int | None   # uid W switches to, or None to keep the current one
    read_cap: bool = False # keep CAP_DAC_READ_SEARCH after the switch (the interpreter is not readable otherwise)
    hidden: tuple[str, ...] = ()   # paths W may not read: the engine user's home, the source checkout
    masked: bool = False   # root with mount namespaces: W's home/checkout replaced by allow-listed views
    zygote_root: str | None = None  # empty folder the candidate zygote builds each candidate's root on
    cgroups: CgroupSupport | None = None
    notes: tuple[str, ...] = ()    # protections that could not be applied (see sandbox.protections)


def _checkout_root() -> str | None:
    """The source checkout evoforge runs from (editable install), if any: its .git holds every
    task's history, so the sandbox hides it all except the code and the task folder."""
    here = os.path.dirname(evaluators_dir())
    for folder in (here, os.path.dirname(here)):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def w_keep(task_dir: str | None = None) -> list[str]:
    """What W must still read beneath the hidden folders."""
    return needed_paths() + code_dirs() + [os.path.dirname(os.path.abspath(__file__))] + \
        ([os.path.abspath(task_dir)] if task_dir else [])


def _probe(hidden: tuple[str, ...], read_cap: bool) -> bool:
    """Fork a probe that masks ``hidden`` as W will, becomes nobody and starts this interpreter."""
    def mask() -> None:
        mounts.unshare(mounts.CLONE_NEWNS)
        mounts.make_private()
        mounts.mask(list(hidden), w_keep())
    return _nobody_starts_python(read_cap, before=mask)


def _candidate_view_works(root: str) -> bool:
    """Whether a candidate's view can be built here: new namespaces, a root from nothing, pivot_root
    and a /proc of its own (what `evoforge.sandbox.zygote` does for every candidate)."""
    from evoforge.sandbox.zygote import DEVICES, candidate_read_only_paths

    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            mounts.unshare(mounts.CLONE_NEWNS | mounts.CLONE_NEWPID | mounts.CLONE_NEWNET | mounts.CLONE_NEWIPC
                           | mounts.CLONE_NEWUTS | mounts.CLONE_NEWCGROUP)
            inner = os.fork()
            if inner == 0:
                try:
                    mounts.make_private()
                    mounts.build_root(root, read_only=candidate_read_only_paths(), devices=list(DEVICES),
                                      tmp_mb=1, work_mb=1)
                    mounts.pivot_into(root)
                    os._exit(0 if os.path.isdir("/proc/self") else 1)
                except BaseException:
                    os._exit(1)
            ok = os.waitpid(inner, 0)[1] == 0
        except BaseException:
            ok = False
        finally:
            os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0


def make_policy() -> Policy:
    """As root, each job's W runs as a uid of its own in a private mount namespace where the home
    and the checkout are masked (`mounts.mask`), so it needs no capability at all to read this
    interpreter even under a 0700 /root; candidates come from a zygote in views built for them.
    CAP_DAC_READ_SEARCH is kept only where masking is impossible and nobody cannot read Python."""
    hidden = tuple(p for p in os.environ.pop(HIDE_ENV, "").split(os.pathsep) if p)
    checkout = _checkout_root()
    if checkout:
        hidden += (checkout,)
    notes: list[str] = []
    cgroups, why = CgroupSupport.detect()
    if cgroups is None:
        notes.append(f"cgroups ({why})")
    else:
        cgroups.sweep()                      # left by fork servers that were killed
    if os.geteuid() != 0:
        return Policy(drop_uid=None, hidden=hidden, cgroups=None, notes=tuple(notes) + ("root",))
    masked = _probe(hidden, read_cap=False)
    if masked:
        root = tempfile.mkdtemp(prefix="evoforge-root-")
        if not _candidate_view_works(root):      # e.g. a container that may not mount /proc
            os.rmdir(root)
            root = None
            notes.append("mount namespaces")
        return Policy(drop_uid=NOBODY_UID, hidden=hidden, masked=True, zygote_root=root, cgroups=cgroups,
                      notes=tuple(notes))
    notes.append("mount namespaces")
    for read_cap in (False, True):
        if _nobody_can_import(read_cap):
            return Policy(drop_uid=NOBODY_UID, read_cap=read_cap, hidden=hidden, cgroups=cgroups,
                          notes=tuple(notes))
    return Policy(drop_uid=None, hidden=hidden, cgroups=cgroups, notes=tuple(notes) + ("a user to drop to",))


def _nobody_can_import(read_cap: bool = False) -> bool:
    """Without masking: can nobody (keeping CAP_DAC_READ_SEARCH if ``read_cap``) start Python?"""
    return _nobody_starts_python(read_cap)


def _nobody_starts_python(read_cap: bool, before: Callable[[], None] | None = None) -> bool:
    """In a forked child: run ``before`` (as root), become nobody, list every import path and start
    this interpreter; whether all of it worked. The import paths are listed after ``before``, as W
    sees them."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            if before is not None:
                before()
            paths = [p for p in sys.path if p and os.path.isdir(p)] + [os.path.dirname(os.__file__)]
            become(NOBODY_UID, read_cap)
            for p in paths:
                os.listdir(p)
            ok = os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", "import json, numbers"]) == 0
        except BaseException:
            ok = False
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
