"""Wiring a run together: task + config → run directory, LLM, executor, engine; and tearing down.

Ctrl-C once: no new proposals, the candidates in flight finish and are stored. Twice: the ones in
flight are abandoned (their isolated processes killed). Either way the run directory is resumable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from evoforge.engine.config import RunConfig
from evoforge.engine.llm import as_spec, check_llm_specs, default_llm_specs, llm_from_flags, make_llm
from evoforge.engine.reflection import notices
from evoforge.engine.rundir import RunDir, default_run_dir
from evoforge.engine.startup import job_for, prefetch_initial
from evoforge.engine.task import Task, load_task, program_text
from evoforge.evaluators.types import ConfigError, EvaluationResult, TaskError
from evoforge.sandbox.registry import make_executor

if TYPE_CHECKING:  # the loop (prompts, Jinja2) loads when a run starts, not for `evoforge eval`
    from evoforge.engine.loop import Engine, Reporter, Snapshot

__all__ = ["RunOutcome", "RunPlan", "plan_run", "start_run", "resume_run", "evaluate_file", "resolve_config",
           "task_of", "openevolve_task", "size_concurrency"]

_LLM_SETTINGS = ("ensemble", "full_rewrite_share", "crossover_share", "retry_failed_edit")


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    snapshot: Snapshot


def _preflight_isolation(sandbox: str) -> None:
    """Docker selected but not running is a configuration mistake (exit 2), found before any run
    directory or LLM call exists; the cheap check (no probe container)."""
    if sandbox != "docker":
        return
    try:
        from evoforge.sandbox.docker import docker_available
    except ImportError as exc:
        raise ConfigError(f"--sandbox docker is not available in this installation: {exc}") from exc
    available, why = docker_available(probe=False)
    if not available:
        raise ConfigError(f"--sandbox docker: {why}; start Docker (`systemctl start docker`, or as root "
                          f"`sandbox/ci_docker.sh start`) or use --sandbox process")


def openevolve_task(task: str | Path, evaluator: str | Path | None = None,
                    config: str | Path | None = None) -> tuple[str, dict]:
    """OpenEvolve's command line (``PROGRAM EVALUATOR [--config FILE]``, or ``FOLDER --config FILE``)
    as the task folder and the `load_task` keywords a run stores (``RunConfig.extra["task_args"]``)."""
    args: dict = {}
    if evaluator is not None:
        program, evaluator = Path(task).resolve(), Path(evaluator).resolve()
        for what, path in (("PROGRAM", program), ("EVALUATOR", evaluator)):
            if not path.is_file():
                raise ConfigError(f"{path}: no such {what.lower()} file (evoforge run PROGRAM EVALUATOR --config FILE)")
        task, args = str(evaluator.parent), {"program": str(program), "evaluator": str(evaluator)}
    if config is not None:
        args["config"] = str(Path(config).resolve())
    return str(task), args


def task_of(config: RunConfig, environ=None) -> Task:
    """The run's task, as its config names it, with the variables ``--env`` named passed on
    (`evoforge.engine.startup.job_for`); a ``--env`` variable that is not set is a `ConfigError`."""
    task = load_task(config.task, **dict((config.extra or {}).get("task_args") or {}))
    return with_env(task, config.pass_env, environ)


def with_env(task: Task, names: Sequence[str], environ=None) -> Task:
    environ = os.environ if environ is None else environ
    for name in names:
        if not name or "=" in name:
            raise ConfigError(f"--env {name!r}: expected an environment variable name like DATA_ROOT")
        if name not in environ:
            raise ConfigError(f"--env {name}: not set in this environment (set it, or drop --env {name})")
    return replace(task, pass_env=tuple(dict.fromkeys([*task.pass_env, *names])))


def _with_hint(exc: TaskError, task: Task) -> TaskError:
    """What to do when the initial program fails its own evaluation (the engine says what failed)."""
    message = str(exc)
    if "initial program fails its own evaluation" not in message:
        return exc
    if "(timeout)" in message:
        hint = (f"raise [limits] timeout_s in {task.path / 'task.toml'} (now {task.limits.timeout_s:g} s) "
                f"or make evaluate() faster")
    else:
        hint = (f"see the whole error with `evoforge eval {task.path} "
                f"{task.path / 'initial_program.py'}` and fix {task.evaluator_file} or the initial program")
    return TaskError(f"{message} -- {hint}")


def _executor(config: RunConfig, task: Task):
    return make_executor(config.executor, config.sandbox, slots=config.eval_slots,
                         ray_address=config.ray_address, resources=task.resources,
                         startup_timeout_s=task.limits.startup_timeout_s)


async def _drive(engine: Engine, iterations: int) -> Snapshot:
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            engine.request_stop("interrupted (Ctrl-C); resume with `evoforge resume`")
        else:
            engine.cancel_in_flight()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        return await engine.run(iterations)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def resolve_config(config: RunConfig, task: Task, environ=None) -> tuple[RunConfig, str]:
    """Fill in what the flags left open: the models (``--llm``, else the task's ``[[llm.models]]``,
    else a key in the environment, else offline) and the ``[llm]`` settings (the task's, else the
    defaults). Returns the concrete config — what run.db keeps — and a line saying where the models
    came from."""
    changes: dict = {"task": str(task.path)}
    if config.llm:
        note = ""
    elif task.llm.models:
        changes["llm"] = [spec.to_dict() for spec in task.llm.models]
        note = f"using the [[llm.models]] of {task.path / 'task.toml'}: " + ", ".join(s.label for s in task.llm.models)
    else:
        specs = default_llm_specs(environ)
        changes["llm"] = [str(s) for s in specs]
        note = ("using the offline mutation operator (no LLM configured)" if specs[0].provider == "offline"
                else f"using {specs[0]} (its API key is set in the environment)")
    for name in _LLM_SETTINGS:
        if getattr(config, name) is None:
            changes[name] = getattr(task.llm, name)
    return config.replace(**changes), note


@dataclass(frozen=True)
class RunPlan:
    """What `plan_run` resolved: the concrete config, the loaded task, and a line saying where the
    models came from (empty when ``llm`` was given)."""

    config: RunConfig
    task: Task
    note: str
    notices: tuple[str, ...] = ()   # [search] settings these models cannot honour, one line each (engine.reflection)


def plan_run(task: str | Path, *, iterations: int | None = None, llm: str | Sequence[str] | None = None,
             seed: int | None = None, concurrency: int | None = None, eval_slots: int | None = None,
             executor: str = "local", ray_address: str | None = None, sandbox: str = "process",
             max_cost_usd: float | None = None, max_time_s: float | None = None,
             max_tokens: int | None = None, baseline: str | None = None, environ=None,
             evaluator: str | Path | None = None, config_file: str | Path | None = None,
             pass_env: Sequence[str] = ()) -> RunPlan:
    """The options of ``evoforge run`` (CLI flags or `evoforge.run` keywords) → a `RunPlan`.

    The one place their defaults live, so the command line and the Python API cannot drift: None
    means "the default", which is 100 iterations and seed 0 (or an OpenEvolve folder's config.yaml
    values), the models of `resolve_config`, and ``concurrency`` 2 × the evaluation slots with the
    offline operator, 8 with an LLM (with Ray, from the cluster's slots once connected: `size_concurrency`).
    ``llm`` holds spec strings or ``FILE.toml`` paths, as ``--llm``.
    ``baseline``: None (evolution), ``"best-of-n"`` or ``"random-parent"`` (engine.evolution.BASELINES).
    ``evaluator`` makes ``task`` a program file (OpenEvolve's ``PROGRAM EVALUATOR``), ``config_file``
    is OpenEvolve's ``--config``; ``pass_env`` names host variables the evaluator may see (``--env``).
    """
    from evoforge.engine.openevolve_compat import run_defaults
    from evoforge.sandbox.local import default_slots

    specs, settings = llm_from_flags([llm] if isinstance(llm, str) else list(llm or ()))
    task, task_args = openevolve_task(task, evaluator, config_file)
    extra = {"task_args": task_args} if task_args else {}
    loaded = with_env(load_task(task, **task_args), pass_env, environ)
    # An OpenEvolve folder's config.yaml supplies what the options leave open (engine.openevolve_compat).
    defaults = run_defaults(loaded.path, task_args.get("config")) if loaded.openevolve is not None else {}
    config = RunConfig(task=str(task), pass_env=tuple(pass_env), extra=extra,
                       iterations=defaults.get("iterations", 100) if iterations is None else iterations,
                       llm=specs, executor=executor, ray_address=ray_address, sandbox=sandbox,
                       concurrency=concurrency or 1, eval_slots=eval_slots,
                       seed=defaults.get("seed", 0) if seed is None else seed,
                       max_cost_usd=max_cost_usd, max_time_s=max_time_s, max_total_tokens=max_tokens,
                       baseline=baseline, **settings, **{k: v for k, v in defaults.items() if k == "reply_format"})
    config, note = resolve_config(config, loaded, environ)
    if not concurrency:
        offline = all(as_spec(s).provider == "offline" for s in config.llm)
        config = config.replace(concurrency=2 * (eval_slots or default_slots()) if offline else 8)
        if config.executor == "ray" and not eval_slots:
            # Sized from the cluster once connected (`size_concurrency`), not from this machine.
            config = config.replace(extra={**config.extra, "auto_concurrency": "offline" if offline else "llm"})
    search = loaded.search
    said = notices(novelty_judge=search.novelty_judge, novelty_threshold=search.novelty_threshold,
                   lessons=search.lessons, lessons_every=search.lessons_every, specs=config.llm)
    return RunPlan(config, loaded, note, tuple(said))


def size_concurrency(config: RunConfig, executor) -> RunConfig:
    """With Ray and no ``--concurrency``, candidates in flight come from the cluster's slots (the CLI
    marks such a config ``auto_concurrency``): twice the slots offline, as for local slots, and at least
    8 LLM calls otherwise. The engine re-reads the slots before each launch, so the bound follows the
    cluster as it grows or shrinks."""
    auto = config.extra.get("auto_concurrency")
    if not auto or config.executor != "ray":
        return config
    slots = int(getattr(executor, "slots", 1))
    return config.replace(concurrency=2 * slots if auto == "offline" else max(8, slots))


def _run(run_dir: RunDir, config: RunConfig, task: Task, iterations: int, reporter: Reporter | None,
         executor=None) -> Snapshot:
    try:
        llm = make_llm([as_spec(s) for s in config.llm], ensemble=config.setting("ensemble"))
        executor = executor or _executor(config, task)
        config = size_concurrency(config, executor)
    except BaseException:
        run_dir.close()
        if executor is not None:
            asyncio.run(executor.close())
        raise

    from evoforge.engine.loop import Engine

    async def main() -> Snapshot:
        engine = Engine(config=config, task=task, run_dir=run_dir, llm=llm, executor=executor, reporter=reporter)
        try:
            return await _drive(engine, iterations)
        finally:
            await llm.close()
            await executor.close()

    try:
        snapshot = asyncio.run(main())
        run_dir.store.set_meta("state", "finished" if snapshot.stop_reason == "iterations reached" else "stopped")
        return snapshot
    finally:
        run_dir.close()


def llm_prices(specs) -> dict:
    """USD per 1M tokens (input, output, cached input, cache write) of each model, as this run prices
    its calls — kept in run.db, so a run's costs stay what they were when the table changes."""
    from evoforge.engine.llm.prices import price_per_mtok

    out = {}
    for spec in (as_spec(s) for s in specs):
        if spec.provider != "offline":
            price = price_per_mtok(spec.model, None if spec.prices is None else {spec.model: spec.prices})
            out[spec.label] = None if price is None else price.as_dict()
    return out


def start_run(config: RunConfig, *, out: Path | None = None, reporter: Reporter | None = None) -> RunOutcome:
    task = task_of(config)
    config, _ = resolve_config(config, task)
    check_llm_specs(config.llm)  # a missing key or a bad spec fails before the run directory exists
    _preflight_isolation(config.sandbox)
    path = Path(out) if out else default_run_dir(task.name)
    executor = _executor(config, task)  # an unreachable --ray-address fails before the run directory exists
    # The fork server starts and evaluates the initial program on another core while this process
    # imports the LLM SDK and builds the engine (engine.startup).
    executor = prefetch_initial(executor, task)
    try:
        run_dir = RunDir.create(path, config.to_dict())
    except BaseException:
        asyncio.run(executor.close())
        raise
    run_dir.store.set_meta("task_name", task.name)
    # What the notebook API needs to read a run without importing the engine or the task folder.
    run_dir.store.set_meta("objective", task.objective)
    if task.objectives:
        run_dir.store.set_meta("objectives", [{"name": o.name, "direction": o.direction} for o in task.objectives])
    run_dir.store.set_meta("descriptors", [
        {"name": d.name, "low": d.low, "high": d.high, "bins": d.bins} for d in task.descriptors])
    run_dir.store.set_meta("archive", {"kind": task.archive.kind, "islands": task.archive.islands,
                                       "qd_offset": task.archive.qd_offset})
    run_dir.store.set_meta("llm_prices", llm_prices(config.llm))
    run_dir.store.set_meta("state", "running")
    try:
        return RunOutcome(path, _run(run_dir, config, task, config.iterations, reporter, executor))
    except TaskError as exc:
        raise _with_hint(exc, task) from exc


def resume_run(path: Path, *, more_iterations: int | None = None, reporter: Reporter | None = None,
               executor: str | None = None, ray_address: str | None = None) -> RunOutcome:
    """Continue a stopped or killed run to its target, or ``more_iterations`` past what it has.

    The run continues on the executor it was started with (stored in run.db) unless ``executor`` /
    ``ray_address`` say otherwise — e.g. the cluster's head moved; the choice is stored again.
    Placement never changes results (same programs, same scores), so switching is safe."""
    run_dir = RunDir.open(Path(path))
    try:
        config = RunConfig.from_dict(run_dir.store.get_meta("config"))
        if (config.extra or {}).get("replay_of"):
            raise ConfigError(f"{path} is a replay of {config.extra['replay_of']}: resuming it would call the real "
                              f"models; replay the original again with `evoforge replay ... --iterations N`")
        placement = {k: v for k, v in (("executor", executor), ("ray_address", ray_address)) if v is not None}
        if placement:
            config = config.replace(**placement)
            run_dir.store.set_meta("config", config.to_dict())
        task = task_of(config)
        _preflight_isolation(config.sandbox)
        done = run_dir.store.count("iteration > 0")
        target = done + more_iterations if more_iterations is not None else config.iterations
        run_dir.store.set_meta("state", "running")
    except BaseException:
        run_dir.close()
        raise
    return RunOutcome(Path(path), _run(run_dir, config, task, target, reporter))


def evaluate_file(task_spec: str, program: Path, *, sandbox: str = "process", heldout: bool = False,
                  pass_env: Sequence[str] = (), config_file: str | Path | None = None,
                  environ=None) -> EvaluationResult:
    """One evaluation, exactly as a run does it (same job, same isolation). ``heldout``: then the evaluator's
    ``evaluate_heldout`` too, under ``[heldout] timeout_s``; its results join ``private`` (as do the names
    task.toml marks private), and a task without one is a `ConfigError`. ``task_spec`` may be an
    evaluator file (OpenEvolve's command line); ``pass_env`` as ``--env``, ``config_file`` as ``--config``."""
    evaluator = task_spec if Path(task_spec).is_file() else None
    folder, task_args = openevolve_task(program if evaluator else task_spec, evaluator, config_file)
    task = with_env(load_task(folder, **task_args), pass_env, environ)
    program = Path(program)
    if not program.exists():
        raise ConfigError(f"{program}: no such program file (or folder, for a task of several files)")
    _preflight_isolation(sandbox)
    executor = make_executor("local", sandbox, slots=1)
    try:
        text = program_text(program)
    except TaskError as exc:
        raise ConfigError(str(exc)) from exc
    job = job_for(task, text, environ)

    if heldout and not task.has_heldout:
        raise ConfigError(f"{task.path / task.evaluator_file}: --heldout: the evaluator defines no "
                          f"evaluate_heldout(program_path) (define one to score held-out data apart)")

    async def main() -> EvaluationResult:
        try:
            result = await executor.evaluate(job)
            if heldout:
                held = await executor.evaluate(dataclasses.replace(
                    job, timeout_s=task.heldout.timeout_s, extra={**job.extra, "entry": "heldout"}))
                extra = dict(held.private, heldout_eval_s=held.eval_s)
                if not held.ok:
                    extra.update(heldout_status=held.status,
                                 heldout_error=(held.artifacts.get("error") or held.stderr)[-2000:])
                result = dataclasses.replace(result, private={**result.private, **extra})
            return result
        finally:
            await executor.close()

    result = asyncio.run(main())
    names = [n for n in [*result.metrics, *result.artifacts] if n != "error" and task.is_private(n)]
    if not names:
        return result
    private = {**{n: result.metrics[n] for n in names if n in result.metrics},
               **{n: result.artifacts[n] for n in names if n in result.artifacts}, **result.private}
    return dataclasses.replace(result, private=private,
                               metrics={k: v for k, v in result.metrics.items() if k not in names},
                               artifacts={k: v for k, v in result.artifacts.items() if k not in names})
