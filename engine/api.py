"""The Python API: launch, continue and evaluate runs from a notebook or a script.

    import evoforge

    run = evoforge.run("circle_packing", iterations=200)          # same options as `evoforge run`
    run.best().score
    run = evoforge.resume(run.path, iterations=100)                # 100 more proposals
    result = evoforge.evaluate("circle_packing", "my_packing.py")  # one evaluation, as a run does it

    def solve(x):
        return x - x ** 3 / 6.0

    def score(solve):                    # the candidate arrives as a callable proxy
        import math
        return -max(abs(solve(i / 10) - math.sin(i / 10)) for i in range(32))

    run = evoforge.evolve_function(solve, score, iterations=50)

`run` and `resume` take the options of the command line, with the same defaults: both go through
`evoforge.engine.session.plan_run`, so they cannot drift apart. They return an
`evoforge.archive.Run` opened read-only on the run directory (close it, or use ``with``).

`evolve_function` writes a task folder (``task/`` inside the run directory, so ``resume`` finds it)
from a plain callable evaluator, as OpenEvolve's ``evolve_function`` does, and runs it with exactly
the isolation of the command line. The generated evaluator never imports the candidate: it calls
the candidate's function through `evoforge.evaluators.CandidateSession` (the many-call form of
`run_candidate`), so the candidate runs in its own nested process and can neither patch ``math``,
the evaluator or its score, nor hand back an object that lies. Both functions are written out as
source (``inspect.getsource``), so each must stand alone: a top-level ``def`` whose global names are
modules (re-imported in the generated file) or builtins. A lambda, a closure or a function that
uses other globals is a `ConfigError` saying what to do.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import json
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from evoforge.evaluators.types import ConfigError, EvaluationResult

__all__ = ["run", "resume", "evaluate", "evolve_function"]


def run(task: str | Path, *, iterations: int | None = None, llm: str | Sequence[str] | None = None,
        seed: int | None = None, concurrency: int | None = None, eval_slots: int | None = None,
        sandbox: str = "process", executor: str = "local", ray_address: str | None = None,
        out: str | Path | None = None, max_cost_usd: float | None = None, max_time_s: float | None = None,
        max_tokens: int | None = None, quiet: bool = True, evaluator: str | Path | None = None,
        config_file: str | Path | None = None, pass_env: Sequence[str] = ()) -> Any:
    """Start a discovery run on ``task`` (a task folder or a built-in task name) and wait for it.

    The keywords are ``evoforge run``'s flags with its defaults (None: 100 iterations, seed 0, the
    models from ``--llm`` / the task's ``[[llm.models]]`` / a key in the environment / offline,
    concurrency 2 × cores offline and 8 with an LLM; ``max_time_s`` is ``--max-time``,
    ``max_tokens`` is ``--max-tokens``). ``quiet=False`` shows the live progress display.
    ``evaluator`` makes ``task`` an initial program (OpenEvolve's ``PROGRAM EVALUATOR``),
    ``config_file`` is ``--config`` and ``pass_env`` the names of ``--env``.
    Where the models came from, when not given, is printed to stderr as the command line does.

    Returns:
        The finished run, an `evoforge.archive.Run` (read-only; close it or use ``with``).

    Raises:
        ConfigError, TaskError: bad options or task (before any run directory exists, where possible).
        EvoforgeError: the run failed (every LLM call failing, a broken sandbox...).
    """
    from evoforge.engine.session import plan_run, start_run

    plan = plan_run(task, iterations=iterations, llm=llm, seed=seed, concurrency=concurrency,
                    eval_slots=eval_slots, executor=executor, ray_address=ray_address, sandbox=sandbox,
                    max_cost_usd=max_cost_usd, max_time_s=max_time_s, max_tokens=max_tokens,
                    evaluator=evaluator, config_file=config_file, pass_env=pass_env)
    if plan.note:
        print(f"evoforge: {plan.note}", file=sys.stderr)
    outcome = _with_reporter(quiet, lambda reporter: start_run(
        plan.config, out=Path(out) if out is not None else None, reporter=reporter))
    return _open(outcome.run_dir)


def resume(run_dir: str | Path, *, iterations: int | None = None, executor: str | None = None,
           ray_address: str | None = None, quiet: bool = True) -> Any:
    """Continue a stopped or killed run (``evoforge resume``): to its original target, or
    ``iterations`` proposals past what it has. Returns the `evoforge.archive.Run`."""
    from evoforge.engine.session import resume_run

    outcome = _with_reporter(quiet, lambda reporter: resume_run(
        Path(run_dir), more_iterations=iterations, reporter=reporter, executor=executor, ray_address=ray_address))
    return _open(outcome.run_dir)


def evaluate(task: str | Path, program_file: str | Path, *, sandbox: str = "process",
             pass_env: Sequence[str] = (), config_file: str | Path | None = None) -> EvaluationResult:
    """Evaluate one program file with ``task``'s evaluator (a task folder, a built-in task or an
    OpenEvolve evaluator file), exactly as a run does (``evoforge eval``, with ``--env``/``--config``)."""
    from evoforge.engine.session import evaluate_file

    return evaluate_file(str(task), Path(program_file), sandbox=sandbox, pass_env=pass_env,
                         config_file=config_file)


def evolve_function(initial: Callable[..., Any] | str, evaluator: Callable[[Callable[..., Any]], Any] | str, *,
                    name: str | None = None, description: str | None = None, objective: str = "maximize",
                    descriptors: Sequence[Mapping[str, Any]] | None = None, timeout_s: float = 60.0,
                    memory_mb: int = 2048, islands: int = 2, out: str | Path | None = None,
                    **run_options: Any) -> Any:
    """Evolve a function with a plain Python callable as the evaluator; no task folder to write.

    Args:
        initial: The function to evolve -- a top-level function, or its source text (one or more
            ``def``; the first is the one scored unless ``name`` says otherwise). It is the
            EVOLVE-BLOCK of the generated ``initial_program.py``.
        evaluator: ``score(candidate) -> float | dict``, called with a proxy of the candidate's
            function: calling the proxy runs the candidate in its own nested process
            (`evoforge.evaluators.CandidateSession`) and returns plain data (numbers, strings,
            lists, dicts, numeric arrays). Return the score (higher is better with the default
            ``objective``), or a dict as an ``evaluate`` of the task contract returns (``score``,
            ``features``, ``metrics``, ``artifacts``). If the candidate raises, crashes or times out,
            the call raises and the candidate is recorded as ``error`` or ``timeout``. Source text
            works too (its imports included): the function named ``score``, or its only ``def``.
        name: The function's name (default: ``initial.__name__``, or the first ``def`` of the source).
        description: What the prompt says about the task (default: the evaluator's docstring, else
            a sentence naming the function).
        objective: ``"maximize"`` or ``"minimize"`` the score.
        descriptors: Archive coordinates, as ``[[descriptors]]`` tables in task.toml
            (``{"name": ..., "range": [low, high], "bins": n}``); default: the built-in
            ``code_length`` and ``ast_nodes``.
        timeout_s: Wall-clock limit of one evaluation, ``memory_mb`` its memory limit.
        islands: Islands of the archive.
        out: The run directory (default ``runs/<name>-<timestamp>``); the generated task folder is
            its ``task/`` sub-folder, so ``evoforge resume`` and ``evoforge show`` work as for any run.
        **run_options: Everything `run` takes (``iterations``, ``llm``, ``seed``, ``concurrency``,
            ``sandbox``, ``executor``, ``max_cost_usd``, ``quiet``...).

    Returns:
        The finished run, an `evoforge.archive.Run`.

    Raises:
        ConfigError: a function whose source cannot stand alone (a lambda, a closure, one that uses
            globals other than modules), or a bad option.
    """
    unknown = sorted(set(run_options) - _RUN_OPTIONS)
    if unknown:
        raise ConfigError(f"evolve_function: unknown option {unknown[0]!r} (known: "
                          f"{', '.join(sorted(_RUN_OPTIONS | _OWN_OPTIONS))})")
    if objective not in ("maximize", "minimize"):
        raise ConfigError(f"evolve_function: objective: expected 'maximize' or 'minimize' but got {objective!r}")
    program, function = _program_source(initial, name)
    if isinstance(evaluator, str):
        score_source, score_name, score_imports = _evaluator_text(evaluator), _score_name(evaluator), []
    else:
        score_source, score_name, score_imports = _standalone(evaluator, "evaluator")
    task_name = _task_name(function)
    from evoforge.engine.rundir import default_run_dir

    doc = inspect.getdoc(evaluator) if callable(evaluator) else None
    text = description or doc or (f"Evolve the function {function}() so that the evaluator's score is as "
                                  f"{'high' if objective == 'maximize' else 'low'} as possible.")
    files = {"initial_program.py": program,
             "evaluator.py": _evaluator_file(score_source, score_name, score_imports, function, timeout_s),
             "task.toml": _task_toml(task_name, text, objective, descriptors, timeout_s, memory_mb, islands)}
    run_dir = Path(out) if out is not None else default_run_dir(task_name)
    if (run_dir / "run.db").exists():
        raise ConfigError(f"{run_dir}: a run already exists here; continue it with evoforge.resume({str(run_dir)!r})")
    folder = run_dir / "task"
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        (folder / file_name).write_text(content)
    return run(folder, out=run_dir, **run_options)


# ---- helpers ----------------------------------------------------------------------------------------

_RUN_OPTIONS = {"iterations", "llm", "seed", "concurrency", "eval_slots", "sandbox", "executor", "ray_address",
                "max_cost_usd", "max_time_s", "max_tokens", "quiet"}
_OWN_OPTIONS = {"name", "description", "objective", "descriptors", "timeout_s", "memory_mb", "islands", "out"}


def _with_reporter(quiet: bool, body: Callable[[Any], Any]) -> Any:
    if quiet:
        return body(None)
    from evoforge.engine.progress import RichReporter

    with RichReporter() as reporter:
        return body(reporter)


def _open(path: Path) -> Any:
    from evoforge.archive.run import Run

    return Run.open(path)


def _task_name(function: str) -> str:
    return function.strip("_") or "function"


def _global_names(code: types.CodeType) -> set[str]:
    """Global names the code (and the functions, classes and comprehensions nested in it) reads or writes."""
    names = {ins.argval for ins in dis.get_instructions(code)
             if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return {str(n) for n in names}


def _standalone(fn: Any, role: str) -> tuple[str, str, list[str]]:
    """``fn``'s source, name and the import lines its module globals need; a ConfigError if it cannot stand alone."""
    what = f"evolve_function: the {role} {getattr(fn, '__qualname__', fn)!r}"
    if not isinstance(fn, types.FunctionType):
        raise ConfigError(f"{what} is not a plain Python function; define it with `def` at the top level")
    if fn.__name__ == "<lambda>":
        raise ConfigError(f"{what} is a lambda, whose source cannot be written out on its own; define it with "
                          f"`def` at the top level of a module or notebook cell")
    if fn.__code__.co_freevars:
        raise ConfigError(f"{what} is a closure over {', '.join(fn.__code__.co_freevars)}; define it at the top "
                          f"level and pass constants as default arguments or literals in its body")
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ConfigError(f"{what}: its source is not available ({exc}); define it in a file or notebook "
                          f"cell, or pass its source text instead") from exc
    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef) or tree.body[0].decorator_list:
        raise ConfigError(f"{what}: expected a plain `def` without decorators; define it at the top level")
    imports = []
    for name in sorted(_global_names(fn.__code__)):
        if name == fn.__name__ or hasattr(builtins, name):
            continue
        value = fn.__globals__.get(name, _MISSING)
        if isinstance(value, types.ModuleType):
            module = value.__name__
            imports.append(f"import {module}" if module == name else f"import {module} as {name}")
        elif value is _MISSING:
            raise ConfigError(f"{what} uses {name!r}, which is not defined; import or define it inside the function")
        else:
            raise ConfigError(f"{what} uses the global {name!r}, which is not a module; move it into the "
                              f"function, or pass the source text of everything it needs instead")
    return source, fn.__name__, imports


_MISSING = object()


def _evaluator_text(text: str) -> str:
    source = textwrap.dedent(text).strip() + "\n"
    try:
        ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"evolve_function: the evaluator source does not parse: {exc}") from exc
    return source


def _score_name(text: str) -> str:
    """The scoring function of evaluator source text: ``score``, or its only top-level ``def``."""
    defs = [node.name for node in ast.parse(textwrap.dedent(text)).body if isinstance(node, ast.FunctionDef)]
    if "score" in defs:
        return "score"
    if len(defs) == 1:
        return defs[0]
    raise ConfigError(f"evolve_function: the evaluator source defines {', '.join(defs) or 'no function'}; "
                      f"name the scoring function `score`")


def _program_source(initial: Callable[..., Any] | str, name: str | None) -> tuple[str, str]:
    """``initial_program.py``: the function (with the imports it needs) as the EVOLVE-BLOCK."""
    if isinstance(initial, str):
        body = textwrap.dedent(initial).strip() + "\n"
        try:
            tree = ast.parse(body)
        except SyntaxError as exc:
            raise ConfigError(f"evolve_function: the initial source does not parse: {exc}") from exc
        defs = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
        if not defs:
            raise ConfigError("evolve_function: the initial source defines no function (expected a `def`)")
        function = name or defs[0]
        if function not in defs:
            raise ConfigError(f"evolve_function: name={function!r} but the initial source defines "
                              f"{', '.join(defs)}")
        imports: list[str] = []
    else:
        body, function, imports = _standalone(initial, "initial function")
        if name is not None and name != function:
            raise ConfigError(f"evolve_function: name={name!r} but the initial function is {function}()")
    if "EVOLVE-BLOCK" in body:
        raise ConfigError("evolve_function: the initial source already has EVOLVE-BLOCK markers; pass the "
                          "function alone (or write a task folder and use evoforge.run)")
    header = (f'"""{function}(), evolved by evoforge.evolve_function. Only the EVOLVE-BLOCK changes."""\n\n'
              "from __future__ import annotations\n\n")
    lines = "".join(f"{line}\n" for line in imports)
    return (header + lines + ("\n" if lines else "") + "# EVOLVE-BLOCK-START\n" + body.rstrip() + "\n"
            + "# EVOLVE-BLOCK-END\n"), function


_EVALUATOR = '''"""Evaluator generated by evoforge.evolve_function from {score}().

The candidate is never imported here: `CandidateSession` imports it in a nested process and each call
of the proxy handed to {score}() runs {function}() there and brings back plain data only, so the
candidate cannot patch this evaluator, `math`, or the score, nor return an object that lies.
"""

from __future__ import annotations   # annotations name things this file need not import

from evoforge.evaluators import CandidateSession
{imports}


{source}


_SCORE = {score}     # kept under its own name: the user's function may itself be called `evaluate`
_FUNCTION = {function!r}
_TIMEOUT_S = {timeout_s!r}


class _Candidate:
    """Calls the candidate's function in its own process (`CandidateSession.call`)."""

    def __init__(self, session):
        self._session = session
        self.__name__ = _FUNCTION

    def __call__(self, *args, **kwargs):
        return self._session.call(_FUNCTION, *args, **kwargs)

    def __repr__(self):
        return f"<candidate {{_FUNCTION}}() in pid {{self._session.pid}}>"


def evaluate(program_path):
    with CandidateSession(program_path, timeout_s=_TIMEOUT_S) as session:
        if not session.defines(_FUNCTION):
            return {{"status": "invalid", "error": f"the program defines no function {{_FUNCTION}}()"}}
        value = _SCORE(_Candidate(session))
    if isinstance(value, dict):
        return value
    return {{"score": float(value)}}
'''


def _evaluator_file(source: str, score: str, imports: list[str], function: str, timeout_s: float) -> str:
    return _EVALUATOR.format(score=score, function=function, imports="\n".join(imports), source=source.rstrip(),
                             timeout_s=float(timeout_s))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, without surrogate pairs (non-ASCII stays
    literal) and with DEL escaped, which TOML forbids raw."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _task_toml(name: str, description: str, objective: str, descriptors: Sequence[Mapping[str, Any]] | None,
               timeout_s: float, memory_mb: int, islands: int) -> str:
    lines = ["# Generated by evoforge.evolve_function.",
             f"name = {_toml_string(name)}",
             f"description = {_toml_string(description)}",
             f"objective = {_toml_string(objective)}",
             "",
             "[archive]",
             f"islands = {int(islands)}",
             "",
             "[limits]",
             f"timeout_s = {float(timeout_s)!r}",
             f"memory_mb = {int(memory_mb)}"]
    for d in descriptors or ():
        if not isinstance(d, Mapping) or set(d) - {"name", "range", "bins"} or "name" not in d or "range" not in d:
            raise ConfigError(f"evolve_function: descriptors: expected tables like "
                              f"{{'name': 'x', 'range': [0, 1], 'bins': 10}} but got {d!r}")
        low, high = d["range"]
        lines += ["", "[[descriptors]]", f"name = {_toml_string(str(d['name']))}",
                  f"range = [{float(low)!r}, {float(high)!r}]", f"bins = {int(d.get('bins', 10))}"]
    return "\n".join(lines) + "\n"
