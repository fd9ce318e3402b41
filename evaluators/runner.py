"""What runs INSIDE the isolated child: load a task's evaluator and score one candidate.

This module is pre-imported by the fork server, so it stays small and imports only the standard
library and `evoforge.evaluators.types`. It never decides *how* the child is isolated (that is
`evoforge.sandbox.forkserver`); it only turns "evaluator + candidate text" into an `EvaluationResult`,
converting every way the evaluator or the candidate can fail into data.

Cascade convention (docs/architecture.md, "The task contract"): when ``job.cascade_thresholds`` is non-empty
and the evaluator defines ``evaluate_stage1``, ``evaluate_stage2``, ... (contiguous from 1), stage ``k`` runs
and its result is validated; if it is not ``ok``, or ``k <= len(thresholds)`` and its score is below
``thresholds[k-1]``, evaluation stops there with ``stage = k``. Stages beyond the thresholds are gated only by
being ``ok``; thresholds beyond the defined stages are ignored. After every stage passes, ``evaluate`` runs as
the final stage, ``stage = (number of stages) + 1``. Without a cascade (no thresholds, or no stage functions)
only ``evaluate`` runs and ``stage`` is ``None``. An OpenEvolve task (``job.extra["openevolve"]``) follows
OpenEvolve's contract and cascade instead (`evoforge.evaluators.openevolve`). The variables in ``job.env`` (those
the task named) are set before the evaluator is imported; nothing else of the host's environment is there.

Held-out convention: a job whose ``extra["entry"]`` is ``"heldout"`` calls the evaluator's optional
``evaluate_heldout(program_path)`` instead, with no cascade; everything it returns is private (the engine
runs it only for a new best, the final elites, or ``evoforge eval --heldout``, under ``[heldout] timeout_s``).

Functional fingerprint (Unified Functional Hashing, Gillard et al. 2023; `evoforge.evaluators.fingerprint`): when
the job carries ``extra["known_fingerprints"]`` (the engine passes it, even empty, when ``[search] fingerprint`` is on)
and the evaluator defines ``probe(program_path)``, the probe runs first and its outputs become the result's
``fingerprint``; a digest already known makes the result ``rejected`` without the full evaluation
(`behavioural_duplicate`). A probe that raises gives no fingerprint and the evaluation runs as usual.

Compile stage (``[compile]`` in ``task.toml``; `compile_program`): when ``job.compile_command`` is set, it
runs in the work folder after the candidate is written and before the evaluator is imported, under the
same isolation and limits, with ``{program}`` (the candidate's path), ``{binary}`` (that path without its
suffix) and ``{task}`` (the task folder) replaced. A compiler that fails makes the result ``error`` with the
compiler's output as the ``error`` artifact, which goes back to the LLM; one that overruns
``compile_timeout_s`` is killed with its whole process group and the result is ``timeout``. The seconds it
took are the metric ``compile_s``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from evoforge.evaluators.bundle import is_bundle, materialise
from evoforge.evaluators.types import EvaluationResult, Status, TaskError

__all__ = ["run_job", "load_evaluator", "stage_functions", "compile_program", "probe_fingerprint",
           "behavioural_duplicate"]

_TRACEBACK_TAIL_CHARS = 4000
_COMPILER_OUTPUT_CHARS = 3000          # a compiler's messages fed back: the first errors matter most
_module_counter = itertools.count()  # unique module names without randomness


def load_evaluator(path: str | os.PathLike[str]) -> ModuleType:
    """Import ``path`` as a fresh module under a unique name (never a cached earlier copy).

    The evaluator's folder goes first on ``sys.path`` so it can import helpers that sit beside it.
    Raises whatever the evaluator's top-level code raises; `run_job` turns that into data.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise TaskError(f"evaluator file {path} does not exist")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_evoforge_evaluator_{os.getpid()}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"cannot import evaluator file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses/pickle inside the evaluator look themselves up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def stage_functions(module: ModuleType) -> list[Callable[[str], Any]]:
    """``evaluate_stage1``, ``evaluate_stage2``, ... in order, stopping at the first gap."""
    stages = []
    for k in itertools.count(1):
        fn = getattr(module, f"evaluate_stage{k}", None)
        if not callable(fn):
            return stages
        stages.append(fn)
    return stages  # pragma: no cover - itertools.count never ends


def _error_tail(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-_TRACEBACK_TAIL_CHARS:]


def _failure_from_exception(exc: BaseException, stage: int | None, what: str) -> EvaluationResult:
    # MemoryError covers numpy's _ArrayMemoryError too; RLIMIT_AS makes an allocation fail this way.
    from evoforge.evaluators.candidate import CandidateInvalid, CandidateTimeout  # lazily: it imports numpy

    status = (Status.OOM if isinstance(exc, MemoryError) else Status.TIMEOUT if isinstance(exc, CandidateTimeout)
              else Status.INVALID if isinstance(exc, CandidateInvalid) else Status.ERROR)
    return EvaluationResult.failure(status, f"{what} raised {type(exc).__name__}:\n{_error_tail(exc)}",
                                    stage=stage)


def _call(fn: Callable[[str], Any], program_path: str, stage: int | None, what: str) -> EvaluationResult:
    try:
        raw = fn(program_path)
    except BaseException as exc:  # SystemExit/KeyboardInterrupt from the candidate are data too
        return _failure_from_exception(exc, stage, what)
    try:
        result = EvaluationResult.from_evaluator(raw)
    except BaseException as exc:  # e.g. a __float__ that raises something exotic
        return _failure_from_exception(exc, stage, f"validating what {what} returned")
    return result if stage is None else _with_stage(result, stage)


def _with_stage(result: EvaluationResult, stage: int) -> EvaluationResult:
    data = result.to_dict()
    data["stage"] = stage
    return EvaluationResult.from_dict(data)


def compile_program(job: Any, program_path: str, workdir: str) -> tuple[EvaluationResult | None, float]:
    """Run the job's compile stage; ``(None, seconds)`` when it succeeded, else ``(failure, seconds)``."""
    binary = os.path.splitext(program_path)[0]
    argv = [arg.replace("{program}", program_path).replace("{binary}", binary).replace("{task}", job.task_dir)
            for arg in job.compile_command]
    # The compiler's temporary files go to the work folder: the only place the sandbox lets it write.
    env = {**os.environ, "TMPDIR": workdir}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return EvaluationResult.failure(Status.ERROR, f"the compile stage cannot start {argv[0]!r}: {exc} "
                                                      f"(is the compiler installed where the sandbox runs?)"), 0.0
    try:
        output, _ = proc.communicate(timeout=float(job.compile_timeout_s))
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and every pass it started (cc1, as, ld)
        except ProcessLookupError:
            pass
        proc.communicate()
        return EvaluationResult.failure(Status.TIMEOUT, f"the compile stage ({argv[0]}) ran past its limit of "
                                                        f"{job.compile_timeout_s:g} s and was killed"), \
            time.monotonic() - start
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        text = output.decode("utf-8", "replace").replace(workdir + os.sep, "")
        if len(text) > _COMPILER_OUTPUT_CHARS:
            text = text[:_COMPILER_OUTPUT_CHARS] + "\n[... compiler output cut]"
        return EvaluationResult.failure(
            Status.ERROR, f"the compile stage failed (exit {proc.returncode}): {' '.join(job.compile_command)}\n"
                          f"{text}", artifacts={"compiler_output": text}), seconds
    return None, seconds


def run_job(job: Any, workdir: str) -> EvaluationResult:
    """Write the candidate into ``workdir`` and score it with the task's evaluator.

    A program of several files (a bundle, `evoforge.evaluators.bundle`) is written as the folder
    ``workdir/<program_name>``, and the evaluator gets that folder's path.

    ``job`` is a `evoforge.sandbox.job.EvaluationJob` (duck-typed so this module need not import sandbox).
    Never raises for anything the evaluator or candidate does; ``stdout``/``stderr``/``eval_s``
    are left for the supervisor, which sees the real streams and the real clock.
    """
    program_path = os.path.join(workdir, job.program_name)
    try:
        if is_bundle(job.program_text):   # several files: the evaluator gets the folder (evaluators.bundle)
            materialise(job.program_text, program_path)
        else:
            with open(program_path, "w", encoding="utf-8") as fh:
                fh.write(job.program_text)
    except BaseException as exc:
        return _failure_from_exception(exc, None, f"writing {job.program_name}")

    compile_s = None
    if getattr(job, "compile_command", ()):
        failure, compile_s = compile_program(job, program_path, workdir)
        if failure is not None:
            return failure
    result = _evaluate(job, program_path)
    if compile_s is None:
        return result
    data = result.to_dict()
    data["metrics"] = {**result.metrics, "compile_s": compile_s}
    return EvaluationResult.from_dict(data)


def _evaluate(job: Any, program_path: str) -> EvaluationResult:
    # Variables the task named ([sandbox] pass_env, --env), and nothing else (docs/architecture.md).
    os.environ.update({str(k): str(v) for k, v in dict(getattr(job, "env", None) or {}).items()})
    dialect = (getattr(job, "extra", None) or {}).get("openevolve")
    if dialect is not None:  # an OpenEvolve folder: its contract, its cascade, its import of openevolve
        from evoforge.evaluators import openevolve

        openevolve.make_importable()
    evaluator_path = os.path.join(job.task_dir, job.evaluator_file)
    try:
        module = load_evaluator(evaluator_path)
    except BaseException as exc:
        return _failure_from_exception(exc, None, f"importing evaluator {evaluator_path}")

    if (getattr(job, "extra", None) or {}).get("entry") == "heldout":
        heldout = getattr(module, "evaluate_heldout", None)
        if not callable(heldout):
            return EvaluationResult.failure(
                Status.ERROR, f"evaluator {evaluator_path} defines no evaluate_heldout(program_path) function")
        try:
            raw = heldout(program_path)
        except BaseException as exc:
            return _failure_from_exception(exc, None, "evaluate_heldout")
        try:
            return EvaluationResult.from_heldout(raw)
        except BaseException as exc:
            return _failure_from_exception(exc, None, "validating what evaluate_heldout returned")

    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        return EvaluationResult.failure(
            Status.ERROR, f"evaluator {evaluator_path} defines no evaluate(program_path) function")

    known = (getattr(job, "extra", None) or {}).get("known_fingerprints")
    digest = probe_fingerprint(module, program_path) if isinstance(known, (dict, list, tuple)) else None
    if digest is not None and digest in known:
        return behavioural_duplicate(digest, known[digest] if isinstance(known, dict) else None)
    result = _evaluate_fully(job, module, program_path, dialect)
    return result if digest is None else dataclasses.replace(result, fingerprint=digest)


def probe_fingerprint(module: ModuleType, program_path: str) -> str | None:
    """The candidate's functional fingerprint from the evaluator's optional ``probe(program_path)``, or None.

    None when the evaluator defines no probe, or the probe raised (the candidate crashed, hung past the
    probe's own call limit, returned something unusable) or returned data that is not plain: the full
    evaluation then runs and reports the failure itself. A probe never rejects a candidate on its own.
    """
    probe = getattr(module, "probe", None)
    if not callable(probe):
        return None
    from evoforge.evaluators.fingerprint import fingerprint

    try:
        return fingerprint(probe(program_path))
    except BaseException:   # noqa: BLE001 - whatever the candidate did in the probe is the full evaluation's to report
        return None


def behavioural_duplicate(digest: str, twin: Any) -> EvaluationResult:
    """The result of a candidate whose probe outputs match an evaluated program's: ``rejected``, not evaluated.

    The engine passes ``job.extra["known_fingerprints"]`` (digest -> program id, or a list of digests) and the
    digest is computed here from what the candidate returned to the evaluator's probe, so a candidate cannot
    choose the known set or claim another program's score: the worst it can do is behave like a known program
    on the probe inputs, and then it loses its own evaluation (Gillard et al. 2023, Unified Functional Hashing).
    """
    who = f"program #{twin}" if isinstance(twin, int) and not isinstance(twin, bool) else "an evaluated program"
    return EvaluationResult.failure(
        Status.REJECTED, f"behaves like {who} on the evaluator's probe inputs (functional fingerprint {digest}): "
                         f"not evaluated", fingerprint=digest)


def _evaluate_fully(job: Any, module: ModuleType, program_path: str, dialect: Any) -> EvaluationResult:
    evaluate = module.evaluate
    if dialect is not None:
        from evoforge.evaluators import openevolve

        return openevolve.evaluate(module, program_path, thresholds=tuple(job.cascade_thresholds),
                                   cascade=bool(dialect.get("cascade", True)),
                                   features=tuple(dialect.get("features", ())), failure=_failure_from_exception)
    stages = stage_functions(module) if job.cascade_thresholds else []
    thresholds = tuple(job.cascade_thresholds)
    for k, stage_fn in enumerate(stages, start=1):
        result = _call(stage_fn, program_path, k, f"evaluate_stage{k}")
        if not result.ok:
            return result
        if k <= len(thresholds) and result.score is not None and result.score < thresholds[k - 1]:
            # Discarded, never an elite (AlphaEvolve's evaluation cascade, Novikov et al. 2025 §2.4):
            # a stage score is on that stage's scale, so it must not compete with full evaluations.
            # `invalid` keeps it out of the archive; the stage score stays visible as a metric.
            why = f"stopped at stage {k}: score {result.score:g} < threshold {thresholds[k - 1]:g}"
            data = result.to_dict()
            data.update(status=Status.INVALID, score=None,
                        metrics={**result.metrics, f"stage{k}_score": result.score},
                        artifacts={**result.artifacts, "cascade": why, "error": why})
            return EvaluationResult.from_dict(data)
    return _call(evaluate, program_path, len(stages) + 1 if stages else None, "evaluate")
