"""Loading a task folder (docs/architecture.md, "The task contract") into a frozen `Task`.

``task.toml`` is parsed in this one place; every key has a default and an unknown key is a
`ConfigError` naming the file and the key. Built-in tasks live in the ``tasks`` package.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.archive.islands import ArchiveConfig, DescriptorSpec, validate_archive
from evoforge.archive.pareto import Objective
from evoforge.evaluators.types import ConfigError, TaskError
from evoforge.engine.edits import evolve_blocks, has_markers
from evoforge.evaluators.bundle import join_bundle
from evoforge.engine.languages import PYTHON, language_named, language_of_file
from evoforge.engine.openevolve_compat import is_openevolve_folder, task_table as openevolve_task_table
from evoforge.engine.llm.models import LLMSettings, parse_llm_table
from evoforge.engine.reflection import LESSON_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Task", "Limits", "Resources", "CompileStage", "Heldout", "Stop", "Search", "load_task",
           "program_text", "builtin_tasks",
           "BUILTIN_DESCRIPTORS"]

BUILTIN_DESCRIPTORS = ("code_length", "ast_nodes")
TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 60.0
    memory_mb: int = 2048
    cpu_s: float | None = None   # RLIMIT_CPU; None: a little above timeout_s; 0: none (multi-threaded evaluators)
    # Start-up waits on what the engine does not control: joining a Ray cluster, the Docker daemon's
    # first answer, the fork server's hello (evoforge.sandbox.waits); past it the run stops, said in a line.
    startup_timeout_s: float = 60.0


@dataclass(frozen=True)
class Resources:
    """What one evaluation asks of its placement (a Ray task's resource request)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CompileStage:
    """``[compile]``: the command run in the sandbox's work folder before the evaluator (argv, with
    ``{program}``, ``{binary}`` and ``{task}`` replaced there; `evoforge.evaluators.runner.compile_program`)."""

    command: tuple[str, ...] = ()
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Heldout:
    """``[heldout]``: when the evaluator's optional ``evaluate_heldout`` runs, and its own time limit.

    Held-out data is evaluated only when it matters — a new best, the final elites, ``evoforge eval
    --heldout`` — so a slow but good program is scored on training data within ``[limits] timeout_s`` and
    its held-out numbers are computed once (docs/architecture.md, "The task contract").
    """

    timeout_s: float = 600.0
    on_new_best: bool = True
    final_elites: int = 3           # the K best programs of the run get a held-out evaluation at its end


@dataclass(frozen=True)
class Stop:
    """``[stop]``: early stopping. ``target_score`` (in the task's own direction) ends the run when reached;
    ``patience`` ends it after that many proposals without a new best (0: never)."""

    target_score: float | None = None
    patience: int = 0


@dataclass(frozen=True)
class Search:
    """``[search]``: what the search feeds forward and filters. ``lessons_every``: refresh the prompts'
    lessons (which kinds of change helped) every this many evaluated children (0: none).
    ``novelty_threshold``: a child whose embedding has cosine >= this with an elite of its island is
    rejected before evaluation (engine.novelty; 0: off). ``novelty_attempts``: proposals one iteration may
    make in all when its children are too similar — each is a stored row and counts against ``--iterations``
    (ShinkaEvolve's resampling). ``novelty_judge``: ask a model whether a too-similar child is meaningfully
    new anyway, and evaluate it if so. ``lessons``: "computed" tallies, "llm"-written lessons, or "auto": "llm"
    when the run has a real model, else "computed" (engine.reflection). ``fingerprint``: when the evaluator
    defines ``probe``, a child that behaves like an evaluated program on its probe inputs is rejected without
    its full evaluation (functional fingerprint, evoforge.evaluators.fingerprint)."""

    lessons_every: int = 10
    novelty_threshold: float = 0.0
    novelty_attempts: int = 3
    novelty_judge: bool = False
    lessons: str = "auto"
    fingerprint: bool = True


@dataclass(frozen=True)
class Task:
    name: str
    path: Path
    description: str
    objective: str                       # "maximize" | "minimize"
    initial_program: str                 # the program text
    evaluator_file: str
    descriptors: tuple[DescriptorSpec, ...]
    archive: ArchiveConfig
    limits: Limits
    resources: Resources
    cascade_thresholds: tuple[float, ...] = ()
    files: tuple[str, ...] = ()
    sandbox_image: str = "evoforge-sandbox:latest"   # [sandbox] image: what --sandbox docker runs
    llm: LLMSettings = field(default_factory=LLMSettings)   # [llm] and [[llm.models]] (engine.llm.models)
    language: str = "python"             # from the program's suffix or `language = ...` (engine.languages)
    program_name: str = "program.py"     # what the candidate is called in the sandbox: program + the suffix
    compile: CompileStage = field(default_factory=CompileStage)
    # [[objectives]]: named objectives with directions; a Pareto front per island beside the cells (archive.pareto)
    objectives: tuple[Objective, ...] = ()
    pareto_parent_share: float = 0.5     # [pareto] parent_share: parents drawn from the island's front
    multi_file: bool = False             # initial_program is a folder: the program is a bundle (evaluators.bundle)

    def job_fields(self) -> dict[str, Any]:
        """The `EvaluationJob` keywords every evaluation of this task shares (a run's and `evoforge eval`'s)."""
        return dict(task_dir=str(self.path), evaluator_file=self.evaluator_file, timeout_s=self.limits.timeout_s,
                    memory_mb=self.limits.memory_mb, cascade_thresholds=self.cascade_thresholds,
                    program_name=self.program_name, compile_command=self.compile.command,
                    compile_timeout_s=self.compile.timeout_s,
                    extra={"docker_image": self.sandbox_image,   # read by --sandbox docker
                           "num_cpus": self.resources.num_cpus})
    # Metric and artifact names (fnmatch patterns) that are private: stored and shown, never prompted.
    private: tuple[str, ...] = ()
    heldout: Heldout = field(default_factory=Heldout)
    has_heldout: bool = False            # the evaluator defines evaluate_heldout
    has_probe: bool = False              # the evaluator defines probe (functional fingerprints)
    stop: Stop = field(default_factory=Stop)
    search: Search = field(default_factory=Search)
    pass_env: tuple[str, ...] = ()       # [sandbox] pass_env (+ --env): host variables the evaluator sees
    # An OpenEvolve task (engine.openevolve_compat): what the sandbox needs to apply its contract
    # (evaluators.openevolve): {"cascade": bool, "features": [...], "cwd": "task"}; None for ours.
    openevolve: dict[str, Any] | None = None

    def is_private(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.private)

    @property
    def sign(self) -> float:
        """Multiplier from score to fitness (archives always maximise fitness)."""
        return 1.0 if self.objective == "maximize" else -1.0


_TOP_KEYS = {"name", "description", "objective", "initial_program", "evaluator", "files",
             "archive", "descriptors", "limits", "resources", "cascade", "sandbox", "llm", "private",
             "heldout", "stop", "search", "language", "compile",
             "objectives", "pareto"}
_SECTION_KEYS = {
    "archive": {"kind", "islands", "migration_interval", "cvt_cells", "qd_offset", "exploit_ratio",
                "top_fraction", "num_inspirations", "parent_selection", "power_law_alpha", "weighted_lambda",
                "reset_interval"},
    "heldout": {"timeout_s", "on_new_best", "final_elites"},
    "stop": {"target_score", "patience"},
    "search": {"lessons_every", "novelty_threshold", "novelty_attempts", "novelty_judge", "lessons", "fingerprint"},
    "limits": {"timeout_s", "memory_mb", "cpu_s", "startup_timeout_s"},
    "resources": {"num_cpus", "num_gpus", "custom"},
    "cascade": {"thresholds"},
    "sandbox": {"image", "pass_env"},
    "compile": {"command", "timeout_s"},
    "pareto": {"parent_share"},
}
_OBJECTIVE_KEYS = {"name", "direction"}
_DIRECTIONS = {"min": "min", "minimize": "min", "max": "max", "maximize": "max"}
_DESCRIPTOR_KEYS = {"name", "range", "bins"}


def builtin_tasks() -> dict[str, Path]:
    """Built-in task folders by name."""
    return {p.name: p for p in sorted(TASKS_DIR.iterdir()) if (p / "task.toml").is_file()}


def resolve_task_path(spec: str | Path) -> Path:
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    builtins = builtin_tasks()
    if str(spec) in builtins:
        return builtins[str(spec)]
    raise ConfigError(
        f"unknown task {str(spec)!r}: not a folder, and not a built-in task "
        f"(built-in: {', '.join(builtins) or 'none'}; `evoforge tasks` lists them)")


def _expect(value: Any, types: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{where}: expected {what} but got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{where}: expected {what} but got {value!r}")
    return value


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(allowed))})")


def _descriptor(raw: Any, toml: Path, index: int) -> DescriptorSpec:
    where = f"{toml}: [[descriptors]] #{index + 1}"
    _expect(raw, dict, where, "a table with name, range, bins")
    _check_keys(raw, _DESCRIPTOR_KEYS, where)
    name = _expect(raw.get("name"), str, f"{where} name", "a string")
    low_high = _expect(raw.get("range"), list, f"{where} range", "[low, high]")
    if len(low_high) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in low_high) \
            or not low_high[0] < low_high[1]:
        raise ConfigError(f"{where} range: expected [low, high] with low < high but got {low_high!r}")
    bins = _expect(raw.get("bins", 10), int, f"{where} bins", "a positive integer")
    if bins < 1:
        raise ConfigError(f"{where} bins: expected a positive integer but got {bins}")
    return DescriptorSpec(name=name, low=float(low_high[0]), high=float(low_high[1]), bins=bins)


def _sandbox_image(table: dict, toml: Path) -> str:
    """``[sandbox] image``: the container image ``--sandbox docker`` evaluates in."""
    image = _expect(table.get("image", "evoforge-sandbox:latest"), str, f"{toml}: [sandbox] image",
                    "an image name like 'evoforge-sandbox:latest'")
    if not image.strip() or any(c.isspace() for c in image):
        raise ConfigError(f"{toml}: [sandbox] image: expected an image name like "
                          f"'evoforge-sandbox:latest' but got {image!r}")
    return image


def _language(raw: dict, program_file: Path, toml: Path) -> str:
    """``language = ...`` if given, else what the program's suffix says; Python for a suffix-less file."""
    if "language" in raw:
        name = _expect(raw["language"], str, f"{toml}: language", "a language name like 'c'")
        try:
            return language_named(name, f"{toml}: language").name
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    found = language_of_file(program_file.name)
    if found is None and "." in program_file.name:
        raise ConfigError(f"{toml}: the suffix of {program_file.name} names no known language: set "
                          f"language = \"c\" (or another of evoforge.engine.languages.LANGUAGES) in task.toml")
    return (found or PYTHON).name


def _folder_program(folder: Path, raw: dict, toml: Path) -> tuple[str, str]:
    """A folder of files as one bundle (files in path order; hidden files and caches left out) and the
    language of its first evolvable file. Each file's markers must balance; some file must have them."""
    files = []
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if not file.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        try:
            text = file.read_text()
        except UnicodeDecodeError:
            raise TaskError(f"{file}: a program folder holds text files only") from None
        try:
            evolve_blocks(text)
        except ValueError as exc:
            raise TaskError(f"{file}: {exc}") from exc
        files.append((rel.as_posix(), text))
    evolvable = [name for name, text in files if has_markers(text)]
    if not evolvable:
        raise TaskError(f"{folder}: no file of the program folder has an EVOLVE-BLOCK (mark the regions that "
                        f"may change; files without markers are frozen)")
    return join_bundle(files), _language(raw, folder / evolvable[0], toml)


def program_text(path: Path) -> str:
    """A program as the engine holds it: a file's text, or a folder's files as one bundle."""
    return _folder_program(path, {}, path / "task.toml")[0] if path.is_dir() else path.read_text()


def _compile_stage(table: dict, toml: Path) -> CompileStage:
    """``[compile] command`` (a string split like a shell would, or an array) and ``timeout_s``."""
    if not table:
        return CompileStage()
    where = f"{toml}: [compile]"
    command = table.get("command")
    if isinstance(command, str):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise ConfigError(f"{where} command: cannot split {command!r}: {exc}") from None
    elif isinstance(command, list) and all(isinstance(a, str) for a in command):
        argv = tuple(command)
    else:
        raise ConfigError(f"{where} command: expected a command like \"cc -O2 -o {{binary}} {{program}}\" "
                          f"but got {command!r}")
    if not argv:
        raise ConfigError(f"{where} command: expected a command like \"cc -O2 -o {{binary}} {{program}}\" "
                          f"but got an empty one")
    timeout_s = _expect(table.get("timeout_s", 60.0), (int, float), f"{where} timeout_s", "seconds")
    if not timeout_s > 0:
        raise ConfigError(f"{where} timeout_s: expected seconds > 0 but got {timeout_s!r}")
    return CompileStage(command=argv, timeout_s=float(timeout_s))


def _objectives(raw: dict, toml: Path) -> tuple[tuple[Objective, ...], float]:
    """``[[objectives]]`` (name, direction min|max) and ``[pareto] parent_share``."""
    found = []
    for i, item in enumerate(_expect(raw.get("objectives", []), list, f"{toml}: objectives", "an array of tables")):
        where = f"{toml}: [[objectives]] #{i + 1}"
        _expect(item, dict, where, "a table with name and direction")
        _check_keys(item, _OBJECTIVE_KEYS, where)
        name = _expect(item.get("name"), str, f"{where} name", "a metric or feature name")
        direction = item.get("direction", "min")
        if direction not in _DIRECTIONS:
            raise ConfigError(f"{where} direction: expected 'min' or 'max' but got {direction!r}")
        found.append(Objective(name=name, direction=_DIRECTIONS[direction]))
    names = [o.name for o in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"{toml}: objectives: names must be unique but got {names}")
    if len(found) == 1:
        raise ConfigError(f"{toml}: objectives: a Pareto front needs at least two objectives, got {names} "
                          f"(one objective is the score: use objective = 'maximize' | 'minimize')")
    share = _expect(raw.get("pareto", {}).get("parent_share", 0.5), (int, float), f"{toml}: [pareto] parent_share",
                    "a number in [0, 1]")
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{toml}: [pareto] parent_share: expected a number in [0, 1] but got {share!r}")
    return tuple(found), float(share)


def _pass_env(table: dict, toml: Path) -> tuple[str, ...]:
    """``[sandbox] pass_env``: names of host environment variables the evaluator may see."""
    names = _expect(table.get("pass_env", []), list, f"{toml}: [sandbox] pass_env",
                    "a list of environment variable names like ['DATA_ROOT']")
    for name in names:
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"{toml}: [sandbox] pass_env: expected environment variable names but got {name!r}")
    return tuple(names)


def load_task(spec: str | Path, *, program: str | Path | None = None, evaluator: str | Path | None = None,
              config: str | Path | None = None) -> Task:
    """Load and validate a task folder, or a built-in task by name.

    ``program``, ``evaluator`` and ``config`` make it an OpenEvolve task as OpenEvolve's command line
    takes one (``evoforge run PROGRAM EVALUATOR --config FILE``): ``spec`` is then the evaluator's folder."""
    path = resolve_task_path(spec)
    toml = path / "task.toml"
    raw: dict[str, Any] = {}
    dialect = None
    if program is not None or evaluator is not None or config is not None:
        if toml.is_file() and config is not None:
            raise ConfigError(f"--config {config}: {path} has a task.toml, which is the whole configuration "
                              f"(--config is for OpenEvolve task folders)")
        if not toml.is_file():
            raw = openevolve_task_table(path, program=program, evaluator=evaluator, config=config)
            dialect = raw.pop("openevolve")
            toml = Path(config) if config is not None else path / "config.yaml"
    if dialect is not None:
        pass
    elif toml.is_file():
        try:
            raw = tomllib.loads(toml.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml}: not valid TOML: {exc}") from exc
        raw.update({k: str(v) for k, v in (("initial_program", program and Path(program).resolve()),
                                             ("evaluator", evaluator and Path(evaluator).name)) if v})
    elif is_openevolve_folder(path):  # initial_program.py + evaluator.py (+ config.yaml), no task.toml
        raw = openevolve_task_table(path)
        dialect = raw.pop("openevolve")
        toml = path / "config.yaml"
    _check_keys(raw, _TOP_KEYS, str(toml))
    for section, keys in _SECTION_KEYS.items():
        _expect(raw.get(section, {}), dict, f"{toml}: [{section}]", "a table")
        _check_keys(raw.get(section, {}), keys, f"{toml}: [{section}]")

    program_file = path / _expect(raw.get("initial_program", "initial_program.py"), str,
                                  f"{toml}: initial_program", "a file name")
    evaluator_file = _expect(raw.get("evaluator", "evaluator.py"), str, f"{toml}: evaluator", "a file name")
    if not program_file.exists():
        raise TaskError(f"{path}: no initial program {program_file.name} (write the starting program there)")
    if not (path / evaluator_file).is_file():
        raise TaskError(f"{path}: no {evaluator_file} (define evaluate(program_path) -> dict there)")
    if program_file.is_dir():
        program, language = _folder_program(program_file, raw, toml)
    else:
        program = program_file.read_text()
        language = _language(raw, program_file, toml)
    objectives, parent_share = _objectives(raw, toml)
    try:
        evolve_blocks(program)
    except ValueError as exc:
        raise TaskError(f"{program_file}: {exc}") from exc

    objective = raw.get("objective", "maximize")
    if objective not in ("maximize", "minimize"):
        raise ConfigError(f"{toml}: objective: expected 'maximize' or 'minimize' but got {objective!r}")
    descriptors = tuple(_descriptor(d, toml, i) for i, d in enumerate(
        _expect(raw.get("descriptors", []), list, f"{toml}: descriptors", "an array of tables")))
    if not descriptors:  # a task with no declared behaviour still gets a meaningful archive
        descriptors = (DescriptorSpec(name="code_length", low=0.0, high=200.0, bins=10),
                       DescriptorSpec(name="ast_nodes", low=0.0, high=2000.0, bins=10))
    names = [d.name for d in descriptors]
    if len(set(names)) != len(names):
        raise ConfigError(f"{toml}: descriptors: names must be unique but got {names}")

    arch = raw.get("archive", {})
    try:
        archive = ArchiveConfig(**arch)
    except TypeError as exc:
        raise ConfigError(f"{toml}: [archive]: {exc}") from exc
    if archive.kind not in ("grid", "cvt"):
        raise ConfigError(f"{toml}: [archive] kind: expected 'grid' or 'cvt' but got {archive.kind!r}")
    try:
        validate_archive(descriptors, archive)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{toml}: [archive]/[[descriptors]]: {exc}") from exc

    lim = raw.get("limits", {})
    cpu_s = lim.get("cpu_s")
    limits = Limits(
        timeout_s=float(_expect(lim.get("timeout_s", 60.0), (int, float), f"{toml}: [limits] timeout_s", "seconds")),
        memory_mb=int(_expect(lim.get("memory_mb", 2048), int, f"{toml}: [limits] memory_mb", "megabytes")),
        cpu_s=None if cpu_s is None else float(_expect(cpu_s, (int, float), f"{toml}: [limits] cpu_s",
                                                       "CPU seconds (0: no CPU-time limit)")),
        startup_timeout_s=float(_expect(lim.get("startup_timeout_s", 60.0), (int, float),
                                        f"{toml}: [limits] startup_timeout_s", "seconds")),
    )
    if limits.timeout_s <= 0 or limits.memory_mb < 32 or (limits.cpu_s is not None and limits.cpu_s < 0):
        raise ConfigError(f"{toml}: [limits]: expected timeout_s > 0 and memory_mb >= 32 but got {lim}")
    if limits.startup_timeout_s <= 0:
        raise ConfigError(f"{toml}: [limits] startup_timeout_s: expected a number of seconds > 0 but got "
                          f"{limits.startup_timeout_s:g}")
    res = raw.get("resources", {})
    resources = Resources(
        num_cpus=float(_expect(res.get("num_cpus", 1), (int, float), f"{toml}: [resources] num_cpus", "a number")),
        num_gpus=float(_expect(res.get("num_gpus", 0), (int, float), f"{toml}: [resources] num_gpus", "a number")),
        custom=dict(_expect(res.get("custom", {}), dict, f"{toml}: [resources] custom", "a table")),
    )
    thresholds = tuple(float(t) for t in _expect(raw.get("cascade", {}).get("thresholds", []), list,
                                                   f"{toml}: [cascade] thresholds", "an array of numbers"))
    files = tuple(_expect(raw.get("files", []), list, f"{toml}: files", "an array of paths"))
    for name in files:
        if not (path / name).exists():
            raise TaskError(f"{toml}: files: {name!r} does not exist in {path}")
    private = tuple(_expect(raw.get("private", []), list, f"{toml}: private",
                            "an array of name patterns like ['heldout_*']"))
    if not all(isinstance(p, str) and p for p in private):
        raise ConfigError(f"{toml}: private: expected an array of name patterns like ['heldout_*'] but got {private!r}")
    return Task(
        name=_expect(raw.get("name", path.name), str, f"{toml}: name", "a string"),
        path=path,
        description=_expect(raw.get("description", ""), str, f"{toml}: description", "a string").strip(),
        objective=objective, initial_program=program, evaluator_file=evaluator_file,
        descriptors=descriptors, archive=archive, limits=limits, resources=resources,
        cascade_thresholds=thresholds, files=files,
        sandbox_image=_sandbox_image(raw.get("sandbox", {}), toml),
        llm=parse_llm_table(raw.get("llm", {}), f"{toml}: [llm]"),
        language=language, multi_file=program_file.is_dir(),
        program_name="program" if program_file.is_dir() else "program" + (program_file.suffix or ".py"),
        compile=_compile_stage(raw.get("compile", {}), toml),
        objectives=objectives, pareto_parent_share=parent_share,
        private=private, heldout=_heldout(raw.get("heldout", {}), toml),
        has_heldout=_defines(path / evaluator_file, "evaluate_heldout"),
        has_probe=_defines(path / evaluator_file, "probe"), stop=_stop(raw.get("stop", {}), toml),
        search=_search(raw.get("search", {}), toml),
        pass_env=_pass_env(raw.get("sandbox", {}), toml),
        openevolve=dialect,
    )


def _search(table: dict, toml: Path) -> Search:
    every = _expect(table.get("lessons_every", Search.lessons_every), int, f"{toml}: [search] lessons_every",
                    "a count of evaluated children >= 0 (0: no lessons)")
    if every < 0:
        raise ConfigError(f"{toml}: [search] lessons_every: expected a count >= 0 (0: no lessons) but got {every}")
    novelty = float(_expect(table.get("novelty_threshold", Search.novelty_threshold), (int, float),
                            f"{toml}: [search] novelty_threshold", "a cosine in [0, 1] (0: off)"))
    if not 0.0 <= novelty <= 1.0:
        raise ConfigError(f"{toml}: [search] novelty_threshold: expected a cosine in [0, 1] (0: off) but got {novelty}")
    attempts = _expect(table.get("novelty_attempts", Search.novelty_attempts), int,
                       f"{toml}: [search] novelty_attempts", "a count of proposals per iteration >= 1")
    if attempts < 1:
        raise ConfigError(f"{toml}: [search] novelty_attempts: expected a count of proposals per iteration >= 1 "
                          f"(1: no resampling) but got {attempts}")
    judge = _expect(table.get("novelty_judge", Search.novelty_judge), bool, f"{toml}: [search] novelty_judge",
                    "true or false")
    lessons = table.get("lessons", Search.lessons)
    if lessons not in LESSON_MODES:
        raise ConfigError(f"{toml}: [search] lessons: expected \"auto\", \"computed\" or \"llm\" but got {lessons!r}")
    fingerprint = _expect(table.get("fingerprint", Search.fingerprint), bool, f"{toml}: [search] fingerprint",
                          "true or false")
    return Search(lessons_every=every, novelty_threshold=novelty, novelty_attempts=attempts, novelty_judge=judge,
                  lessons=lessons, fingerprint=fingerprint)


def _heldout(table: dict, toml: Path) -> Heldout:
    where = f"{toml}: [heldout]"
    timeout_s = float(_expect(table.get("timeout_s", Heldout.timeout_s), (int, float), f"{where} timeout_s", "seconds"))
    on_new_best = _expect(table.get("on_new_best", True), bool, f"{where} on_new_best", "true or false")
    final = _expect(table.get("final_elites", Heldout.final_elites), int, f"{where} final_elites", "a count >= 0")
    if not timeout_s > 0 or final < 0:
        raise ConfigError(f"{where}: expected timeout_s > 0 and final_elites >= 0 but got {table}")
    return Heldout(timeout_s=timeout_s, on_new_best=on_new_best, final_elites=final)


def _stop(table: dict, toml: Path) -> Stop:
    where = f"{toml}: [stop]"
    target = table.get("target_score")
    if target is not None:
        target = float(_expect(target, (int, float), f"{where} target_score", "a number"))
    patience = _expect(table.get("patience", 0), int, f"{where} patience", "a count of proposals >= 0 (0: off)")
    if patience < 0:
        raise ConfigError(f"{where} patience: expected a count of proposals >= 0 (0: off) but got {patience}")
    return Stop(target_score=target, patience=patience)


def _defines(evaluator: Path, name: str) -> bool:
    """Whether the evaluator binds ``name`` at top level (def, assignment or import), read without running it."""
    try:
        tree = ast.parse(evaluator.read_text())
    except (SyntaxError, ValueError, OSError):
        return False   # the sandbox reports a broken evaluator; here it only has no held-out entry
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False
