"""Which protections the process sandbox holds on this machine, and what a missing one leaves open.

The fork server decides once at start (`evoforge.sandbox.forkserver.make_policy`) and reports the
result in its hello; `ProcessSandbox.protections()` hands it to the CLI, which prints the missing
ones in one line on stderr (`missing_line`), so a protection that cannot be applied is said out loud,
never silently dropped.
"""

from __future__ import annotations

from evoforge.evaluators.confine import landlock_abi
from evoforge.sandbox.seccomp import seccomp_supported

__all__ = ["protection_report", "probe_protections", "missing_line", "OPEN_WITHOUT"]

# What stays open when a protection is missing, in a few words each.
OPEN_WITHOUT = {
    "root": "candidates keep the engine's uid (no uid per job, no per-job filesystem views or private /dev/shm)",
    "uid per job": "jobs share one uid, so one job's processes count against another's RLIMIT_NPROC",
    "cgroups": "memory and process limits are per process/uid (RLIMIT), not per job",
    "cpu quota": "a job can take every core for its whole timeout_s, starving concurrent jobs (num_cpus not held)",
    "mount namespaces": "candidates see the host filesystem (Landlock-hidden paths aside) and share /dev/shm",
    "landlock": "without root, candidates can read the home and checkout and write where the user can",
    "seccomp": "candidates may call unshare, mount, ptrace, keyctl, bpf, io_uring",
    "a user to drop to": "evaluations run as root",
}


def protection_report(policy) -> dict[str, bool]:
    """Protection name -> held, for the fork server's ``policy``."""
    missing = set(policy.notes)
    return {
        "root": "root" not in missing,
        "uid per job": policy.drop_uid is not None and "uid leases" not in missing,
        "cgroups": policy.cgroups is not None,
        "cpu quota": policy.cgroups is not None and policy.cgroups.cpu_parent is not None,
        "mount namespaces": policy.zygote_root is not None,
        "landlock": landlock_abi() > 0,
        "seccomp": seccomp_supported(),
    }


def missing_line(report: dict[str, bool]) -> str | None:
    """One line naming each missing protection and what that leaves open; None when all hold."""
    implied = {"uid per job": "root", "cpu quota": "cgroups"}    # missing with its parent: said once
    gaps = [f"no {name} ({OPEN_WITHOUT[name]})" for name, held in report.items()
            if not held and name in OPEN_WITHOUT and report.get(implied.get(name, ""), True)]
    if not gaps:
        return None
    return "process sandbox: " + "; ".join(gaps)


def probe_protections() -> dict[str, bool]:
    """The same report, found without starting a fork server (for the CLI's one-line notice before a
    run): root, cgroups, a candidate view (namespaces, pivot_root, /proc), Landlock, seccomp."""
    import os

    from evoforge.sandbox.cgroups import CgroupSupport

    root = os.geteuid() == 0
    mount_ns = False
    if root:
        import tempfile

        from evoforge.sandbox.policy import _candidate_view_works
        folder = tempfile.mkdtemp(prefix="evoforge-probe-")
        try:
            mount_ns = _candidate_view_works(folder)
        finally:
            os.rmdir(folder)
    cgroups = CgroupSupport.detect()[0]
    return {"root": root, "uid per job": root, "cgroups": cgroups is not None,
            "cpu quota": cgroups is not None and cgroups.cpu_parent is not None,
            "mount namespaces": mount_ns, "landlock": landlock_abi() > 0, "seccomp": seccomp_supported()}
