"""Run a compiled candidate (or a trusted reference) as a confined child and time it from outside.

A compiled program cannot be called through `evoforge.evaluators.candidate` (that imports Python), so an
evaluator of a C, C++ or Rust task runs the binary the compile stage built as a child process: input on
stdin, output on stdout, both plain bytes the evaluator checks itself. The child:

* starts in its own session, is killed with its whole process group at ``timeout_s``;
* is confined with Landlock before ``exec`` (`evoforge.evaluators.confine`): writes only beneath
  ``scratch`` (a fresh folder, never the one holding the reference binary or the evaluator's files), the
  task folder hidden, no signals to the evaluator where the kernel can scope them;
* cannot read or write the evaluator's memory: the evaluator makes itself non-dumpable first.

The timing is the evaluator's, never the candidate's: ``seconds`` is ``max(wall, cpu)``, with the wall
clock read around the whole run by the evaluator and the CPU time (user + system) from the kernel's
accounting of the reaped child (``RUSAGE_CHILDREN``), so neither extra threads (they add CPU time) nor
work left to an orphaned grandchild (the output must arrive before the wall clock stops) makes a
program look faster than it is. Call it from one thread at a time (the usage counters are per process).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Sequence

from evoforge.evaluators.confine import confine, make_undumpable

__all__ = ["BinaryRun", "run_binary"]


@dataclass(frozen=True)
class BinaryRun:
    """One run: its exit status (negative: killed by that signal), its output, and the evaluator's timing."""

    returncode: int
    stdout: bytes
    stderr: bytes
    wall_s: float
    cpu_s: float
    timed_out: bool = False

    @property
    def seconds(self) -> float:
        """The time the score may use: ``max(wall_s, cpu_s)`` (see the module docstring)."""
        return max(self.wall_s, self.cpu_s)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_binary(argv: Sequence[str], stdin: bytes = b"", *, timeout_s: float, scratch: str,
               hidden: Sequence[str] = (), max_output_mb: float = 512) -> BinaryRun:
    """Run ``argv`` confined (writes only beneath ``scratch``, ``hidden`` unreadable), feeding ``stdin``.

    ``hidden`` defaults to nothing; in the sandbox pass the task folder (``EVOFORGE_TASK_DIR``) when it holds
    anything a candidate must not read. Raises `OSError` only when the binary cannot be started.
    """
    make_undumpable()
    scratch = os.path.realpath(scratch)
    hidden_paths = [os.path.realpath(h) for h in hidden if h]

    def confine_child() -> None:   # after fork, before exec: the child's own Landlock layer
        confine(writable=[scratch], hidden=hidden_paths)

    before = _children_cpu_s()
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=scratch, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=confine_child,
                            env={"PATH": os.environ.get("PATH", os.defpath), "HOME": scratch, "LANG": "C"})
    timed_out = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    wall_s = time.monotonic() - start
    if len(out) > max_output_mb * 1024 * 1024:
        out = out[:int(max_output_mb * 1024 * 1024)]
    return BinaryRun(returncode=proc.returncode, stdout=out, stderr=err[-4000:], wall_s=wall_s,
                     cpu_s=_children_cpu_s() - before, timed_out=timed_out)
