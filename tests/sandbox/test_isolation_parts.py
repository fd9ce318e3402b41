"""The small parts of the process sandbox's isolation, one at a time: the exit classifier shared with
docker, host-wide uid leases, the seccomp filter, per-job cgroups and the protections notice."""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from evoforge.evaluators.types import Status
from evoforge.sandbox.outcome import classify_exit
from evoforge.sandbox.protections import missing_line

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_the_exit_classifier_names_timeouts_oom_and_errors():
    assert classify_exit(signal_number=signal.SIGXCPU, exit_code=None, cpu_limit_s=5).status == Status.TIMEOUT
    hard = classify_exit(signal_number=signal.SIGKILL, exit_code=None, cpu_used_s=5.8, cpu_limit_s=6)
    assert hard.status == Status.TIMEOUT
    oom = classify_exit(signal_number=signal.SIGKILL, exit_code=None, cpu_used_s=5.8, cpu_limit_s=6, oom_killed=True)
    assert oom.status == Status.OOM
    killed = classify_exit(signal_number=signal.SIGSEGV, exit_code=None, cpu_limit_s=6, stderr_text="boom")
    assert killed.status == Status.ERROR
    assert "SIGSEGV" in killed.artifacts["error"] and "boom" in killed.artifacts["error"]
    exited = classify_exit(signal_number=None, exit_code=3, stderr_text="MemoryError")
    assert exited.status == Status.OOM and "code 3" in exited.artifacts["error"]


def test_missing_protections_make_one_line_naming_what_stays_open():
    held = {"root": True, "uid per job": True, "cgroups": True, "mount namespaces": True, "landlock": True,
            "seccomp": True}
    assert missing_line(held) is None
    line = missing_line({**held, "root": False, "cgroups": False})
    assert line is not None and "\n" not in line
    assert "no root" in line and "no cgroups" in line and "per process" in line

    only_cpu = missing_line({**held, "cpu quota": False})
    assert only_cpu is not None and "no cpu quota" in only_cpu and "every core" in only_cpu
    both = missing_line({**held, "cgroups": False, "cpu quota": False})
    assert "no cgroups" in both and "cpu quota" not in both          # said once, with its parent


def test_a_cpu_quota_is_num_cpus_periods_within_the_kernel_and_parent_bounds():
    from evoforge.sandbox.cgroups import cpu_quota_us

    assert cpu_quota_us(1, 100_000) == 100_000
    assert cpu_quota_us(2.5, 100_000) == 250_000
    assert cpu_quota_us(0.001, 100_000) == 1_000                      # the kernel's 1 ms minimum
    assert cpu_quota_us(4, 100_000, parent_quota_us=50_000, parent_period_us=50_000) == 100_000
    assert cpu_quota_us(4, 100_000, parent_quota_us=-1) == 400_000    # an unlimited parent


@ROOT_ONLY
def test_a_job_cgroup_holds_num_cpus_as_a_cpu_quota_and_is_removed():
    from evoforge.sandbox.cgroups import CgroupSupport

    support, why = CgroupSupport.detect()
    if support is None or support.cpu_parent is None:
        pytest.skip(f"no usable cpu controller here: {why or 'no cpu hierarchy'}")
    group = support.create(f"evoforge-test-{os.getpid()}", memory_mb=256, max_processes=4, cpus=1.5)
    try:
        cpu_dir = os.path.join(support.cpu_parent, f"evoforge-test-{os.getpid()}")
        assert cpu_dir in group.dirs
        if support.version == 2:
            quota, period = open(os.path.join(cpu_dir, "cpu.max")).read().split()
        else:
            quota = open(os.path.join(cpu_dir, "cpu.cfs_quota_us")).read()
            period = open(os.path.join(cpu_dir, "cpu.cfs_period_us")).read()
        assert int(quota) / int(period) == 1.5
        unlimited = support.create(f"evoforge-test-{os.getpid()}-free", memory_mb=64, max_processes=4)
        assert unlimited.remove() and len(unlimited.dirs) == (1 if support.version == 2 else 2)
    finally:
        group.kill()
        assert group.remove()
    assert not any(os.path.exists(d) for d in group.dirs)


@ROOT_ONLY
def test_uid_leases_are_unique_across_allocators_and_freed_with_the_holder():
    from evoforge.sandbox.privileges import UidLeases

    first, second = UidLeases(), UidLeases()
    second._next = first._next               # the worst case: two servers probing the same uids
    a_uid, a_fd = first.acquire()
    b_uid, b_fd = second.acquire()
    assert a_uid != b_uid
    UidLeases.release(a_fd)
    second._next = a_uid - 0x3F000000
    c_uid, c_fd = second.acquire()
    assert c_uid == a_uid                     # released with its holder's descriptor
    UidLeases.release(b_fd)
    UidLeases.release(c_fd)


def test_the_seccomp_filter_refuses_namespaces_and_mounts_but_not_fork_or_exec():
    from evoforge.sandbox.seccomp import install_filter, seccomp_supported

    if not seccomp_supported():
        pytest.skip("no seccomp table for this architecture")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = install_filter()
            unshare = libc.unshare(0x10000000), ctypes.get_errno()
            mount = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno()
            child = os.fork()
            if child == 0:
                os.execv("/bin/true", ["/bin/true"])
            forked = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            os.write(w, repr((ok, unshare, mount, forked)).encode())
        finally:
            os._exit(0)
    os.close(w)
    ok, unshare, mount, forked = eval(os.read(r, 200).decode())
    os.waitpid(pid, 0)
    assert ok and unshare == (-1, 1) and mount == (-1, 1) and forked == 0


@ROOT_ONLY
def test_a_job_cgroup_limits_processes_together_and_is_removed():
    from evoforge.sandbox.cgroups import CgroupSupport

    support, why = CgroupSupport.detect()
    if support is None:
        pytest.skip(f"no usable cgroups here: {why}")
    group = support.create(f"evoforge-test-{os.getpid()}", memory_mb=256, max_processes=4)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        group.join()
        started = 0
        for _ in range(10):
            try:
                if os.fork() == 0:
                    import time
                    time.sleep(5)
                    os._exit(0)
                started += 1
            except OSError:
                break
        os.write(w, str(started).encode())
        os._exit(0)
    os.close(w)
    started = int(os.read(r, 20))
    os.waitpid(pid, 0)
    assert started == 3                       # 4 processes in all: the joined one and three children
    group.kill()
    group.remove()
    assert not any(os.path.exists(d) for d in group.dirs)


@ROOT_ONLY
def test_the_sweep_removes_job_cgroups_of_dead_supervisors_only():
    from evoforge.sandbox.cgroups import CgroupSupport

    support, why = CgroupSupport.detect()
    if support is None:
        pytest.skip(f"no usable cgroups here: {why}")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)                       # a pid that is surely dead now
    dead = support.create(f"evoforge-{pid}", memory_mb=64, max_processes=4)
    live = support.create(f"evoforge-{os.getpid()}", memory_mb=64, max_processes=4)
    try:
        support.sweep()
        assert not any(os.path.exists(d) for d in dead.dirs)
        assert all(os.path.exists(d) for d in live.dirs)
    finally:
        live.remove()
        dead.remove()


@ROOT_ONLY
def test_without_a_cpu_controller_jobs_keep_memory_and_pids_and_the_notice_says_so(monkeypatch):
    from evoforge.sandbox import cgroups
    from evoforge.sandbox.policy import Policy
    from evoforge.sandbox.protections import protection_report

    mounts = cgroups._mounts()
    # A machine whose cgroup mounts carry no cpu controller (v1 hierarchy and v2 alike).
    monkeypatch.setattr(cgroups, "_mounts", lambda: [m for m in mounts if "cpu" not in m[2]])
    monkeypatch.setattr(cgroups, "_enable_v2_cpu", lambda *args: False)
    support, why = cgroups.CgroupSupport.detect()
    if support is None:
        pytest.skip(f"no usable cgroups here: {why}")
    assert support.cpu_parent is None
    group = support.create(f"evoforge-test-{os.getpid()}", memory_mb=64, max_processes=4, cpus=1)
    try:
        assert len(group.dirs) == (1 if support.version == 2 else 2)      # memory and pids still
    finally:
        assert group.remove()
    report = protection_report(Policy(drop_uid=None, hidden=(), cgroups=support))
    assert report["cgroups"] and not report["cpu quota"]
    assert "no cpu quota" in missing_line(report)
