"""LLM clients behind one seam, chosen by spec strings or ``[[llm.models]]`` tables (docs/architecture.md, "The CLI"):

``offline`` · ``openai:MODEL`` · ``anthropic:MODEL`` · ``openai-compatible:MODEL@BASE_URL``,
each optionally followed by ``*WEIGHT`` (``--llm openai:gpt-4o*3 --llm offline``); repeated specs
form an ensemble, weighted or adaptive (``ensemble = "bandit"``). See `evoforge.engine.llm.models`.
What each model accepts (reasoning models, thinking, cache minimums): `evoforge.engine.llm.capabilities`;
embeddings for a novelty filter: `evoforge.engine.llm.embeddings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from evoforge.evaluators.types import ConfigError
from evoforge.engine.llm.base import LLMClient, Prompt, Reply
from evoforge.engine.llm.ensemble import Ensemble
from evoforge.engine.llm.models import (API_KEY_ENVS, PROVIDERS, LLMSettings, LLMSpec, load_llm_file, parse_llm_spec,
                               parse_llm_table, spec_from_dict)

__all__ = ["LLMClient", "Prompt", "Reply", "LLMSpec", "LLMSettings", "Ensemble", "parse_llm_spec",
           "parse_llm_table", "load_llm_file", "spec_from_dict", "as_spec", "make_llm", "make_client",
           "default_llm_specs", "missing_api_key", "check_llm_specs", "llm_from_flags", "PROVIDERS"]


def as_spec(value: str | Mapping[str, Any] | LLMSpec) -> LLMSpec:
    """A spec string, a stored spec dict (run.db) or an `LLMSpec` → `LLMSpec`."""
    if isinstance(value, LLMSpec):
        return value
    if isinstance(value, str):
        return parse_llm_spec(value)
    return spec_from_dict(value, "llm model")


def llm_from_flags(values: Sequence[str]) -> tuple[tuple[str | dict, ...], dict[str, Any]]:
    """``--llm`` values → the run config's model list and any ``[llm]`` settings a ``FILE.toml`` sets.

    Each value is a spec string or a run config file (``--llm models.toml``, holding ``[llm]`` and
    ``[[llm.models]]`` tables exactly as task.toml would).
    """
    specs: list[str | dict] = []
    settings: dict[str, Any] = {}
    for value in values:
        if value.strip().endswith(".toml"):
            table = load_llm_file(Path(value.strip()))
            specs.extend(spec.to_dict() for spec in table.models)
            settings.update({key: getattr(table, key) for key in table.given})
        else:
            specs.append(str(parse_llm_spec(value)))
    return tuple(specs), settings


def default_llm_specs(environ: Mapping[str, str] | None = None) -> list[LLMSpec]:
    """With no ``--llm``: a key in the environment picks its provider; with none, offline."""
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY"):
        return [LLMSpec("openai", env.get("EVOFORGE_OPENAI_MODEL", "gpt-4o-mini"))]
    if env.get("ANTHROPIC_API_KEY"):
        return [LLMSpec("anthropic", env.get("EVOFORGE_ANTHROPIC_MODEL", "claude-sonnet-4-5"))]
    return [LLMSpec("offline")]


def missing_api_key(spec: LLMSpec, environ: Mapping[str, str]) -> str | None:
    """The one-line reason ``spec`` cannot be called with this environment, or None."""
    var = spec.api_key_env or API_KEY_ENVS.get(spec.provider)
    if spec.provider == "openai-compatible" and not spec.api_key_env:
        return None  # local servers usually need no key; OPENAI_API_KEY is sent when set
    if var and not environ.get(var):
        how = "set api_key_env in [[llm.models]] to read it from another variable" if not spec.api_key_env \
            else "or change api_key_env"
        return f"--llm {spec}: {var} is not set in the environment (export {var}=..., {how})"
    return None


def make_client(spec: LLMSpec, environ: Mapping[str, str] | None = None) -> LLMClient:
    """One client for ``spec``; a missing key is a `ConfigError` before any request."""
    env = os.environ if environ is None else environ
    if spec.provider == "offline":
        from evoforge.engine.llm.offline import OfflineMutator
        return OfflineMutator()
    problem = missing_api_key(spec, env)
    if problem:
        raise ConfigError(problem)
    common = dict(model=spec.model, max_tokens=spec.max_tokens, timeout_s=spec.timeout_s,
                  max_retries=spec.max_retries, connect_timeout_s=spec.connect_timeout_s,
                  deadline_s=spec.deadline_s, name=spec.label, context_tokens=spec.context_window,
                  prices=spec.prices, temperature=spec.temperature)
    if spec.provider in ("openai", "openai-compatible"):
        from evoforge.engine.llm.openai_compat import OpenAIChatClient
        common.update(reasoning=spec.reasoning, reasoning_effort=spec.reasoning_effort)
        if spec.provider == "openai":
            key, base_url = env[spec.api_key_env or "OPENAI_API_KEY"], spec.base_url or env.get("OPENAI_BASE_URL")
        else:
            key, base_url = env.get(spec.api_key_env or "OPENAI_API_KEY", "EMPTY"), spec.base_url
        return OpenAIChatClient(api_key=key, base_url=base_url, provider=spec.provider, **common)
    if spec.provider == "anthropic":
        from evoforge.engine.llm.anthropic_client import AnthropicClient
        common.update(thinking_budget_tokens=spec.thinking_budget_tokens, prompt_cache=spec.prompt_cache)
        return AnthropicClient(api_key=env[spec.api_key_env or "ANTHROPIC_API_KEY"],
                               base_url=spec.base_url or env.get("ANTHROPIC_BASE_URL"), **common)
    raise ConfigError(f"unknown LLM provider {spec.provider!r} (known: {', '.join(PROVIDERS)})")


def check_llm_specs(specs: Sequence[LLMSpec | str | Mapping[str, Any]],
                    environ: Mapping[str, str] | None = None) -> list[LLMSpec]:
    """Validate the models of a run without building clients: one `ConfigError` for the first problem."""
    env = os.environ if environ is None else environ
    specs = [as_spec(s) for s in specs]
    if not specs:
        raise ConfigError("no LLM configured: give --llm SPEC or [[llm.models]] in task.toml")
    labels = [s.label for s in specs]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate:
        raise ConfigError(f"--llm: the model {duplicate!r} is given twice; give one of them a distinct "
                          f"name = \"...\" in [[llm.models]] (or merge them with *WEIGHT)")
    for spec in specs:
        problem = missing_api_key(spec, env)
        if problem:
            raise ConfigError(problem)
    return specs


def make_llm(specs: Sequence[LLMSpec | str | Mapping[str, Any]], environ: Mapping[str, str] | None = None, *,
             ensemble: str = "weighted") -> LLMClient:
    """The run's LLM: one client, or an `Ensemble` (``weighted`` | ``bandit``) of several."""
    specs = check_llm_specs(specs, environ)
    clients = [make_client(spec, environ) for spec in specs]
    if len(clients) == 1:
        return clients[0]
    return Ensemble(clients, [spec.weight for spec in specs], mode=ensemble)
