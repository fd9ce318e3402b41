"""A seccomp filter against the system calls a candidate or an evaluator never needs.

Namespace games (``unshare``, ``setns``, ``clone`` with a CLONE_NEW* flag), mounts and
``pivot_root``/``chroot``, ``ptrace`` and cross-process memory access, the kernel keyring, eBPF,
``perf_event_open``, ``userfaultfd``, io_uring (its operations bypass seccomp), module and kexec
loading, handle-based opens (the classic container escape), clock and host-name changes: each fails
with EPERM. ``clone3`` fails with ENOSYS, because its flags sit in memory a filter cannot read; the C
library then falls back to ``clone``, whose flags it can. Another architecture's or the x32 ABI's
calls kill the process (they would dodge the numbers below). Sockets are an allow-list of families
(`SOCKET_FAMILIES`); any other fails with EAFNOSUPPORT, above all AF_VSOCK, which a network
namespace does not confine.

Written as a 60-odd-instruction classic BPF program rather than through libseccomp: libseccomp's
Python bindings come only with a distribution's own Python (Debian ``python3-seccomp``), not the
interpreter evoforge runs on, and this list is small and fixed. Needs ``no_new_privs`` (set here).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

__all__ = ["install_filter", "seccomp_supported", "DENIED", "SOCKET_FAMILIES"]

DENIED = ("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
          "process_vm_writev", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
          "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
          "name_to_handle_at", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
          "mount_setattr", "swapon", "swapoff", "reboot", "acct", "settimeofday", "clock_settime",
          "clock_adjtime", "adjtimex", "quotactl", "syslog", "vhangup", "pidfd_getfd", "io_uring_setup",
          "io_uring_enter", "io_uring_register", "sethostname", "setdomainname", "fanotify_init")

_X86_64 = dict(unshare=272, setns=308, mount=165, umount2=166, pivot_root=155, chroot=161, ptrace=101,
               process_vm_readv=310, process_vm_writev=311, keyctl=250, add_key=248, request_key=249, bpf=321,
               perf_event_open=298, userfaultfd=323, kexec_load=246, kexec_file_load=320, init_module=175,
               finit_module=313, delete_module=176, open_by_handle_at=304, name_to_handle_at=303,
               open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
               mount_setattr=442, swapon=167, swapoff=168, reboot=169, acct=163, settimeofday=164,
               clock_settime=227, clock_adjtime=305, adjtimex=159, quotactl=179, syslog=103, vhangup=153,
               pidfd_getfd=438, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
               sethostname=170, setdomainname=171, fanotify_init=300, iopl=172, ioperm=173, clone=56, clone3=435,
               socket=41, socketpair=53)
_AARCH64 = dict(unshare=97, setns=268, mount=40, umount2=39, pivot_root=41, chroot=51, ptrace=117,
                process_vm_readv=270, process_vm_writev=271, keyctl=219, add_key=217, request_key=218, bpf=280,
                perf_event_open=241, userfaultfd=282, kexec_load=104, kexec_file_load=294, init_module=105,
                finit_module=273, delete_module=106, open_by_handle_at=265, name_to_handle_at=264,
                open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
                mount_setattr=442, swapon=224, swapoff=225, reboot=142, acct=89, settimeofday=170,
                clock_settime=112, clock_adjtime=266, adjtimex=171, quotactl=60, syslog=116, vhangup=58,
                pidfd_getfd=438, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
                sethostname=161, setdomainname=162, fanotify_init=262, clone=220, clone3=435,
                socket=198, socketpair=199)
_ARCH = {"x86_64": (0xC000003E, _X86_64, ("iopl", "ioperm")), "aarch64": (0xC00000B7, _AARCH64, ())}

# Socket families allowed (an allow-list): UNIX, IPv4, IPv6 and netlink, which the empty network
# namespace confines. Every other family fails with EAFNOSUPPORT: AF_VSOCK above all, which no
# network namespace confines (on a virtual machine it reaches the hypervisor and its services), and
# the rarely used families (AF_ALG, AF_PACKET, AF_TIPC, AF_RDS...) whose kernel code is attack surface.
SOCKET_FAMILIES = (1, 2, 10, 16)      # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
_CLONE_NEW_FLAGS = 0x7E020080   # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS, _EAFNOSUPPORT = 1, 38, 97
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

_libc = ctypes.CDLL(None, use_errno=True)


def seccomp_supported() -> bool:
    """Whether the filter can be installed here: an architecture with a table above, and a kernel
    that accepts it (tried once, in a child that exits at once), so a kernel without seccomp
    filters is reported as a missing protection instead of being assumed."""
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = platform.machine() in _ARCH and _probe()
    return _SUPPORTED


_SUPPORTED: bool | None = None


def _probe() -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if _install() else 1)
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def _program() -> list[tuple[int, int, int, int]]:
    audit_arch, numbers, extra = _ARCH[platform.machine()]
    denied = [numbers[name] for name in DENIED + extra]
    d = len(denied)
    # Instruction indices of the five returns at the end (a jump's offset counts from the next one).
    allow = 11 + d + len(SOCKET_FAMILIES)
    eperm, enosys, kill, eafnosupport = allow + 1, allow + 2, allow + 3, allow + 4

    def to(label: int, at: int) -> int:
        return label - (at + 1)

    insns = [(_LD_W_ABS, 0, 0, 4),                                   # 0: A = arch
             (_JEQ_K, 0, to(kill, 1), audit_arch),                   # 1: another arch -> kill
             (_LD_W_ABS, 0, 0, 0),                                   # 2: A = nr
             (_JGE_K, to(kill, 3), 0, 0x40000000)]                   # 3: x32 ABI (bit 30) -> kill
    for i, nr in enumerate(denied):                                  # 4 .. 3+d
        insns.append((_JEQ_K, to(eperm, 4 + i), 0, nr))
    s = 8 + d                                                        # the socket family checks
    insns += [(_JEQ_K, 0, to(7 + d, 4 + d), numbers["clone"]),       # 4+d: clone? look at its flags
              (_LD_W_ABS, 0, 0, 16),                                 # 5+d: A = low word of args[0]
              (_JSET_K, to(eperm, 6 + d), to(allow, 6 + d), _CLONE_NEW_FLAGS),   # 6+d
              (_JEQ_K, to(enosys, 7 + d), 0, numbers["clone3"]),     # 7+d
              (_JEQ_K, to(s + 2, s), 0, numbers["socket"]),          # s: socket/socketpair? check the family
              (_JEQ_K, 0, to(allow, s + 1), numbers["socketpair"]),  # s+1
              (_LD_W_ABS, 0, 0, 16)]                                 # s+2: A = family (args[0])
    for i, family in enumerate(SOCKET_FAMILIES):                     # s+3 ..: allowed -> allow
        last = i == len(SOCKET_FAMILIES) - 1
        insns.append((_JEQ_K, to(allow, s + 3 + i), to(eafnosupport, s + 3 + i) if last else 0, family))
    insns += [(_RET_K, 0, 0, _RET_ALLOW),
              (_RET_K, 0, 0, _RET_ERRNO | _EPERM),
              (_RET_K, 0, 0, _RET_ERRNO | _ENOSYS),
              (_RET_K, 0, 0, _RET_KILL_PROCESS),
              (_RET_K, 0, 0, _RET_ERRNO | _EAFNOSUPPORT)]
    return insns


def install_filter() -> bool:
    """Install the filter on this thread and every process it starts, for good. Returns whether it
    is in force (False on an architecture without a table here, or a kernel without seccomp)."""
    return platform.machine() in _ARCH and _install()


def _install() -> bool:
    insns = _program()
    raw = b"".join(struct.pack("<HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = struct.pack("<HxxxxxxQ", len(insns), ctypes.addressof(buf))
    prog_buf = ctypes.create_string_buffer(prog, len(prog))
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, prog_buf, 0, 0) == 0
