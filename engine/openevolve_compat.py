"""OpenEvolve task folders run unchanged: ``initial_program.py`` + ``evaluator.py`` (+ ``config.yaml``).

A folder with no ``task.toml`` but those two files is read as an OpenEvolve task
(github.com/codelion/openevolve); so is ``evoforge run PROGRAM EVALUATOR [--config FILE]``, OpenEvolve's
own command line (any program and evaluator path, any config file). `task_table` turns the config
into the table a ``task.toml`` would hold, and `run_defaults` gives the run settings
(``max_iterations``, ``random_seed``) that the command line uses when its own flags are not given.
One notice line on stderr names the keys that were mapped and those that map onto nothing of ours
(sections OpenEvolve does not know, such as an evaluator's own ``algotune:``, are not listed).

Nothing is written into the task folder: the evaluator is imported as it is inside the sandbox,
and `evoforge.evaluators.openevolve` applies OpenEvolve's contract there (the score is
``combined_score`` or the mean of the other metrics; feature dimensions are top-level metrics;
``openevolve.evaluation_result`` importable without the package; OpenEvolve's cascade). The job
says so through ``Task.openevolve`` (`evoforge.engine.startup.job_for`).

Differences from a ``task.toml`` task (docs/architecture.md, "OpenEvolve folders"):

* the cascade is OpenEvolve's: on by default (``evaluator.cascade_evaluation``), thresholds
  ``[0.5, 0.75, 0.9]`` unless given; a stage below its threshold is the program's result (kept and
  scored, not ``invalid``) and ``evaluate`` is not called after the stages;
* the evaluator's working directory is a read-only view of the task folder (relative data files);
* no CPU-time limit by default (multi-threaded evaluators such as JAX use more CPU seconds than
  wall-clock seconds): the wall clock (``evaluator.timeout``) ends an evaluation;
* feature dimensions: ``complexity`` (characters) and ``diversity`` (`evoforge.engine.features`) are
  computed by evoforge -- also the default, as in OpenEvolve; ``score`` is the score; any other is a
  metric the evaluator returns, on a fixed ``[0, 1]`` range (OpenEvolve rescales to the range seen
  so far; our grid needs fixed ranges).

Our own keys, in an ``evoforge:`` section of config.yaml: ``pass_env`` (environment variables the
evaluator may see, e.g. ``[DATA_ROOT]``; nothing else of the host's environment reaches it),
``memory_mb``, ``cpu_s`` (0: no CPU-time limit) and ``timeout_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from evoforge.evaluators.types import ConfigError

__all__ = ["is_openevolve_folder", "task_table", "run_defaults", "SUPPORTED_LANGUAGES"]

SUPPORTED_LANGUAGES = ("python",)
_CUSTOM_FEATURE_RANGE = [0.0, 1.0]
_DEFAULT_FEATURES = ["complexity", "diversity"]       # OpenEvolve's default feature_dimensions
_DEFAULT_THRESHOLDS = [0.5, 0.75, 0.9]                 # OpenEvolve's default cascade_thresholds
_noticed: set[str] = set()

# config.yaml keys read here, by their dotted path; other keys of OpenEvolve's sections are named as
# ignored; top-level sections OpenEvolve does not have belong to the evaluator and are not named.
_MAPPED = {
    "max_iterations", "random_seed", "diff_based_evolution", "language",
    "llm.models", "llm.api_base", "llm.temperature", "llm.max_tokens", "llm.timeout", "llm.primary_model",
    "llm.primary_model_weight", "llm.secondary_model", "llm.secondary_model_weight",
    "database.num_islands", "database.migration_interval", "database.feature_dimensions",
    "database.feature_bins", "database.random_seed",
    "evaluator.timeout", "evaluator.cascade_evaluation", "evaluator.cascade_thresholds",
    "evaluator.memory_limit_mb", "prompt.system_message",
    "evoforge.pass_env", "evoforge.memory_mb", "evoforge.cpu_s", "evoforge.timeout_s",
}
_OPENEVOLVE_SECTIONS = {"llm", "prompt", "database", "evaluator", "evolution_trace", "evoforge"}


def is_openevolve_folder(path: Path) -> bool:
    path = Path(path)
    return (not (path / "task.toml").is_file() and (path / "initial_program.py").is_file()
            and (path / "evaluator.py").is_file())


def config_file(path: Path, config: str | Path | None = None) -> Path:
    """The config a run of this folder reads: ``--config FILE`` if given, else ``config.yaml`` beside
    the evaluator (which may not exist: every key has a default)."""
    if config is None:
        return Path(path) / "config.yaml"
    file = Path(config).resolve()
    if not file.is_file():
        raise ConfigError(f"--config {config}: no such file (give OpenEvolve's config.yaml or another YAML config)")
    return file


def _read_yaml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level but got {type(data).__name__}")
    return data


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"llm": {"api_base": ...}}`` -> ``{"llm.api_base": ...}`` (one level: the sections)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            if key in _OPENEVOLVE_SECTIONS:     # any other section is the evaluator's own
                out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[str(key)] = value
    return out


def _models(llm: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """OpenEvolve's ``llm.models`` (or primary/secondary model) as ``[[llm.models]]`` tables."""
    entries = list(llm.get("models") or [])
    if not entries and llm.get("primary_model"):
        entries = [{"name": llm["primary_model"], "weight": llm.get("primary_model_weight", 1.0)}]
        if llm.get("secondary_model"):
            entries.append({"name": llm["secondary_model"], "weight": llm.get("secondary_model_weight", 1.0)})
    base = str(llm.get("api_base") or "https://api.openai.com/v1").rstrip("/")
    tables = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise ConfigError(f"{where}: llm.models #{i + 1}: expected a mapping with a name but got {entry!r}")
        entry_base = str(entry.get("api_base") or base).rstrip("/")
        table: dict[str, Any] = {"model": str(entry["name"]), "weight": float(entry.get("weight", 1.0))}
        if entry_base == "https://api.openai.com/v1":
            table["provider"] = "openai"
        else:  # OpenEvolve reads OPENAI_API_KEY whatever the server
            table.update(provider="openai-compatible", base_url=entry_base, api_key_env="OPENAI_API_KEY")
        for ours, theirs in (("temperature", "temperature"), ("max_tokens", "max_tokens"), ("timeout_s", "timeout")):
            value = entry.get(theirs, llm.get(theirs))
            if value is not None:
                table[ours] = value
        tables.append(table)
    return tables


def _check_language(data: Mapping[str, Any], file: Path, program: Path) -> None:
    language = str(data.get("language") or ("python" if program.suffix in (".py", "") else program.suffix[1:]))
    if language.lower() not in SUPPORTED_LANGUAGES:
        raise ConfigError(f"{file if data.get('language') else program}: language {language!r} is not supported "
                          f"(supported: {', '.join(SUPPORTED_LANGUAGES)}); evolve a Python program or port the task")


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of environment variable names but got {value!r}")
    return list(value)


def task_table(path: Path, *, program: str | Path | None = None, evaluator: str | Path | None = None,
               config: str | Path | None = None) -> dict[str, Any]:
    """The ``task.toml`` table equivalent to an OpenEvolve folder's config, plus ``openevolve``: what
    the sandbox needs to apply OpenEvolve's contract (`evoforge.evaluators.openevolve`).

    ``path`` is the evaluator's folder; ``program``/``evaluator`` any paths (default the folder's
    ``initial_program.py`` / ``evaluator.py``); ``config`` any YAML file (default ``config.yaml``)."""
    path = Path(path)
    file = config_file(path, config)
    where = str(file)
    data = _read_yaml(file)
    program_path = Path(program).resolve() if program else path / "initial_program.py"
    _check_language(data, file, program_path)
    flat = _flatten(data)
    mapped = sorted(k for k in flat if k in _MAPPED)
    ignored = sorted(k for k in flat if k not in _MAPPED)
    database = dict(data.get("database") or {})
    evaluator_cfg = dict(data.get("evaluator") or {})
    ours = dict(data.get("evoforge") or {})
    table: dict[str, Any] = {"name": path.name, "description": _description(path, data),
                             "initial_program": str(program_path),
                             "evaluator": Path(evaluator).name if evaluator else "evaluator.py"}
    archive: dict[str, Any] = {}
    if "num_islands" in database:
        archive["islands"] = int(database["num_islands"])
    if "migration_interval" in database:  # OpenEvolve counts generations; we count proposals
        archive["migration_interval"] = int(database["migration_interval"])
    if archive:
        table["archive"] = archive
    features = [str(f) for f in database.get("feature_dimensions") or _DEFAULT_FEATURES]
    bins = database.get("feature_bins", 10)
    descriptors = []
    initial_chars = len(program_path.read_text()) if program_path.is_file() else 1000
    for name in features:
        n_bins = int(bins.get(name, 10) if isinstance(bins, Mapping) else bins)
        if name == "complexity":   # characters; fixed range from the initial program (room to double)
            high = float(max(1000, -(-2 * initial_chars // 1000) * 1000))
            descriptors.append({"name": name, "range": [0.0, high], "bins": n_bins})
        else:
            descriptors.append({"name": name, "range": _CUSTOM_FEATURE_RANGE, "bins": n_bins})
    table["descriptors"] = descriptors
    limits: dict[str, Any] = {"cpu_s": 0.0}   # no CPU-time limit: the wall clock rules (module docstring)
    if "timeout" in evaluator_cfg:
        limits["timeout_s"] = float(evaluator_cfg["timeout"])
    if evaluator_cfg.get("memory_limit_mb"):
        limits["memory_mb"] = int(evaluator_cfg["memory_limit_mb"])
    for key in ("timeout_s", "memory_mb", "cpu_s"):
        if key in ours:
            limits[key] = ours[key]
    table["limits"] = limits
    cascade = bool(evaluator_cfg.get("cascade_evaluation", True))
    if cascade:
        table["cascade"] = {"thresholds": [float(t) for t in evaluator_cfg.get("cascade_thresholds")
                                           or _DEFAULT_THRESHOLDS]}
    if "pass_env" in ours:
        table["sandbox"] = {"pass_env": _names(ours["pass_env"], f"{where}: evoforge.pass_env")}
    models = _models(dict(data.get("llm") or {}), where)
    if models:
        table["llm"] = {"models": models}
    # Computed by the engine (complexity, diversity) or the score itself: not looked up in the metrics.
    table["openevolve"] = {"cascade": cascade, "cwd": "task",
                           "features": [n for n in features if n not in ("complexity", "diversity")]}
    key = f"{path}|{program_path}|{file}"
    if key not in _noticed:
        _noticed.add(key)
        note = f"; mapped {file.name} keys: {', '.join(mapped)}" if mapped else ""
        note += f"; ignored {file.name} keys: {', '.join(ignored)}" if ignored else ""
        print(f"evoforge: {path} is an OpenEvolve task (no task.toml){note}", file=sys.stderr)
    return table


def run_defaults(path: Path, config: str | Path | None = None) -> dict[str, Any]:
    """Run settings from the config for flags the user did not give: iterations, seed, reply format."""
    data = _read_yaml(config_file(Path(path), config))
    out: dict[str, Any] = {}
    if data.get("max_iterations") is not None:
        out["iterations"] = int(data["max_iterations"])
    seed = data.get("random_seed", (data.get("database") or {}).get("random_seed"))
    if seed is not None:
        out["seed"] = int(seed)
    if data.get("diff_based_evolution") is False:
        out["reply_format"] = "rewrite"
    return out


def _description(path: Path, data: Mapping[str, Any]) -> str:
    prompt = data.get("prompt") or {}
    text = prompt.get("system_message") if isinstance(prompt, Mapping) else None
    return str(text).strip() if text else (
        f"Improve the program of the OpenEvolve task {path.name!r}; its evaluator's combined_score is the score "
        f"(higher is better).")
