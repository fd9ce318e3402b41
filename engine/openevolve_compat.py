"""OpenEvolve task folders run unchanged: ``initial_program.py`` + ``evaluator.py`` (+ ``config.yaml``).

A folder with no ``task.toml`` but those two files is read as an OpenEvolve task
(github.com/codelion/openevolve). `task_table` turns its ``config.yaml`` into the table a
``task.toml`` would hold, and `run_defaults` gives the run settings (``max_iterations``,
``random_seed``) that the command line uses when its own flags are not given. Keys that map onto
nothing of ours are named in one notice line on stderr.

OpenEvolve's evaluator contract differs from ours in three ways, bridged by a small adapter module
written next to the evaluator (``.evoforge_openevolve.py``, regenerated when stale; the sandbox
only sees the task folder, so the adapter has to live there):

* the score is ``combined_score``, or — as OpenEvolve does when it is absent — the mean of the
  numeric metrics;
* MAP-Elites features (``database.feature_dimensions``) are top-level metrics of the returned
  dict, not a ``features`` table; the built-in ``complexity`` is our ``code_length``, ``score``
  the score itself. OpenEvolve scales features to the range it has seen so far; our grid needs
  declared, fixed ranges, so custom features get ``[0, 1]`` (a ``task.toml`` can declare others);
* stages are ``evaluate_stage1..3`` gated by ``evaluator.cascade_thresholds`` — the same
  convention as ours, so they pass straight through.

The EVOLVE-BLOCK markers (``# EVOLVE-BLOCK-START`` / ``# EVOLVE-BLOCK-END``) are the same as ours.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from evoforge.evaluators.types import ConfigError, TaskError

__all__ = ["is_openevolve_folder", "task_table", "run_defaults", "ADAPTER_NAME"]

ADAPTER_NAME = ".evoforge_openevolve.py"
_CUSTOM_FEATURE_RANGE = [0.0, 1.0]
_COMPLEXITY_RANGE = [0.0, 200.0]     # code_length is in lines
_noticed: set[str] = set()

# config.yaml keys read here, by their dotted path; everything else is named as ignored.
_MAPPED = {
    "max_iterations", "random_seed", "diff_based_evolution", "language",
    "llm.models", "llm.api_base", "llm.temperature", "llm.max_tokens", "llm.timeout", "llm.primary_model",
    "llm.primary_model_weight", "llm.secondary_model", "llm.secondary_model_weight",
    "database.num_islands", "database.migration_interval", "database.feature_dimensions",
    "database.feature_bins", "database.random_seed",
    "evaluator.timeout", "evaluator.cascade_evaluation", "evaluator.cascade_thresholds", "prompt.system_message",
}
_ADAPTER = '''"""Written by evoforge (engine/openevolve_compat.py): OpenEvolve's evaluator contract -> evoforge's.
Regenerated when stale; safe to delete."""
import importlib.util as _util
import math as _math
from pathlib import Path as _Path

_FEATURES = {features!r}
_spec = _util.spec_from_file_location("_openevolve_evaluator", _Path(__file__).with_name({evaluator!r}))
_user = _util.module_from_spec(_spec)
_spec.loader.exec_module(_user)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _convert(raw):
    if hasattr(raw, "metrics"):                     # openevolve.evaluation_result.EvaluationResult
        raw = dict(raw.metrics, artifacts=dict(getattr(raw, "artifacts", {{}}) or {{}}))
    if not isinstance(raw, dict):
        return raw                                  # evoforge reports the wrong type
    raw = dict(raw)
    artifacts = {{str(k): str(v) for k, v in dict(raw.pop("artifacts", {{}}) or {{}}).items()}}
    if "error" in raw:
        artifacts.setdefault("error", str(raw.pop("error")))
    numbers = {{k: float(v) for k, v in raw.items() if _number(v)}}
    if "combined_score" in numbers:
        score = numbers["combined_score"]
    else:                                           # OpenEvolve: the mean of the numeric metrics
        values = [v for v in numbers.values() if _math.isfinite(v)]
        score = sum(values) / len(values) if values else None
    if score is None:
        return {{"status": "invalid", "error": "the evaluator returned no numeric metric", "artifacts": artifacts}}
    features = {{name: (score if name == "score" else numbers[name])
                for name in _FEATURES if name == "score" or name in numbers}}
    metrics = {{k: v for k, v in numbers.items() if k not in features and k != "combined_score"}}
    return {{"score": score, "features": features, "metrics": metrics, "artifacts": artifacts}}


def evaluate(program_path):
    return _convert(_user.evaluate(program_path))


for _k in range(1, 10):
    if callable(getattr(_user, f"evaluate_stage{{_k}}", None)):
        globals()[f"evaluate_stage{{_k}}"] = (lambda f: lambda program_path: _convert(f(program_path)))(
            getattr(_user, f"evaluate_stage{{_k}}"))
    else:
        break
'''


def is_openevolve_folder(path: Path) -> bool:
    path = Path(path)
    return (not (path / "task.toml").is_file() and (path / "initial_program.py").is_file()
            and (path / "evaluator.py").is_file())


def _read_yaml(path: Path) -> dict[str, Any]:
    file = path / "config.yaml"
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


def task_table(path: Path) -> dict[str, Any]:
    """The ``task.toml`` table equivalent to an OpenEvolve folder's ``config.yaml``; writes the adapter."""
    path = Path(path)
    where = str(path / "config.yaml")
    data = _read_yaml(path)
    flat = _flatten(data)
    ignored = sorted(k for k in flat if k not in _MAPPED)
    database = dict(data.get("database") or {})
    evaluator = dict(data.get("evaluator") or {})
    table: dict[str, Any] = {"name": path.name, "evaluator": ADAPTER_NAME,
                             "description": _description(path, data)}
    archive: dict[str, Any] = {}
    if "num_islands" in database:
        archive["islands"] = int(database["num_islands"])
    if "migration_interval" in database:  # OpenEvolve counts generations; we count proposals
        archive["migration_interval"] = int(database["migration_interval"])
    if archive:
        table["archive"] = archive
    features = [str(f) for f in database.get("feature_dimensions") or []]
    bins = database.get("feature_bins", 10)
    descriptors = []
    for name in features:
        if name == "diversity":
            ignored.append("database.feature_dimensions: diversity")
            continue
        n_bins = int(bins.get(name, 10) if isinstance(bins, Mapping) else bins)
        if name == "complexity":
            descriptors.append({"name": "code_length", "range": _COMPLEXITY_RANGE, "bins": n_bins})
        else:
            descriptors.append({"name": name, "range": _CUSTOM_FEATURE_RANGE, "bins": n_bins})
    if descriptors:
        table["descriptors"] = descriptors
    if "timeout" in evaluator:
        table["limits"] = {"timeout_s": float(evaluator["timeout"])}
    if evaluator.get("cascade_evaluation", False) and evaluator.get("cascade_thresholds"):
        table["cascade"] = {"thresholds": [float(t) for t in evaluator["cascade_thresholds"]]}
    models = _models(dict(data.get("llm") or {}), where)
    if models:
        table["llm"] = {"models": models}
    _write_adapter(path, [d["name"] if d["name"] != "code_length" else "complexity" for d in descriptors])
    if str(path) not in _noticed:
        _noticed.add(str(path))
        note = f"; ignored config.yaml keys: {', '.join(ignored)}" if ignored else ""
        print(f"evoforge: {path} is an OpenEvolve task folder (no task.toml){note}", file=sys.stderr)
    return table


def run_defaults(path: Path) -> dict[str, Any]:
    """Run settings from ``config.yaml`` for flags the user did not give: iterations, seed, reply format."""
    data = _read_yaml(Path(path))
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


def _write_adapter(path: Path, features: list[str]) -> None:
    text = _ADAPTER.format(features=features, evaluator="evaluator.py")
    target = path / ADAPTER_NAME
    try:
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    except OSError as exc:
        raise TaskError(f"{path}: cannot write {ADAPTER_NAME} (the OpenEvolve adapter) there: {exc}; "
                        f"make the folder writable or add a task.toml") from exc
