"""Which models a run uses: spec strings (``--llm``) and ``[[llm.models]]`` tables, parsed in one place.

Two ways to say the same thing::

    --llm openai:gpt-4o-mini*3 --llm openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1

    [llm]                                   # in task.toml, or a run config file passed as --llm FILE.toml
    ensemble = "bandit"                     # weighted (default) | bandit
    full_rewrite_share = 0.1                # share of prompts asking for a full rewrite instead of diffs
    crossover_share = 0.1                   # share of prompts showing two parents
    retry_failed_edit = true                # an edit that does not apply is sent back once with the error

    [[llm.models]]
    provider = "openai"                     # openai | anthropic | openai-compatible | offline
    model = "gpt-4o-mini"
    weight = 3
    temperature = 0.8
    max_tokens = 4096                       # completion tokens per call
    context_tokens = 128000                 # the model's context window (default: a table, else 32k)
    input_usd_per_mtok = 0.15               # override the price table (USD per million tokens)
    output_usd_per_mtok = 0.60
    api_key_env = "OPENAI_API_KEY"          # where the key is read from (default: the provider's)
    cached_input_usd_per_mtok = 0.075       # cached prompt tokens (default: the table, else input price)
    cache_write_usd_per_mtok = 0.1875       # tokens written to Anthropic's cache (default: table)

    # reasoning models (OpenAI o-series, gpt-5; see evoforge.engine.llm.capabilities)
    reasoning = true                        # default: the capability table; say it for a new model name
    reasoning_effort = "medium"             # minimal | low | medium | high (default: the model's)

    # Anthropic
    thinking_budget_tokens = 8000           # extended thinking: >= 1024 and < max_tokens; temperature unset
    prompt_cache = true                     # mark the stable prefix with a cache breakpoint (default)

Every key has a default; an unknown key, a wrong type or an unknown provider is a one-line
`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from evoforge.evaluators.types import ConfigError
from evoforge.engine.llm.capabilities import REASONING_EFFORTS, capabilities
from evoforge.engine.llm.prices import Price

__all__ = ["LLMSpec", "LLMSettings", "PROVIDERS", "ENSEMBLE_MODES", "API_KEY_ENVS", "parse_llm_spec",
           "parse_llm_table", "load_llm_file", "spec_from_dict", "default_context_tokens"]

PROVIDERS = ("offline", "openai", "anthropic", "openai-compatible")
ENSEMBLE_MODES = ("weighted", "bandit")
API_KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

# Context windows (tokens) of common models, from the providers' model pages (late 2025).
# Unknown models (local servers) get a conservative 32k: shrinking a prompt that would have fit
# costs a little quality; sending one that does not fit costs a failed call.
CONTEXT_TOKENS: dict[str, int] = {
    "gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4.1": 1_047_576, "gpt-4.1-mini": 1_047_576,
    "gpt-5": 400_000, "o1": 200_000, "o3": 200_000, "o4-mini": 200_000,
    "claude-sonnet-4-5": 200_000, "claude-opus-4-1": 200_000, "claude-haiku-4-5": 200_000, "claude": 200_000,
}
DEFAULT_CONTEXT_TOKENS = 32_768


def default_context_tokens(model: str) -> int:
    """The context window of ``model``: exact id, else the longest matching family prefix, else 32k."""
    if model in CONTEXT_TOKENS:
        return CONTEXT_TOKENS[model]
    matches = [k for k in CONTEXT_TOKENS if model.startswith(k)]
    return CONTEXT_TOKENS[max(matches, key=len)] if matches else DEFAULT_CONTEXT_TOKENS


@dataclass(frozen=True)
class LLMSpec:
    """One model of a run. ``str(spec)`` is the short spec string; `to_dict` is what run.db keeps."""

    provider: str
    model: str = ""
    base_url: str | None = None
    weight: float = 1.0
    temperature: float | None = None        # None: the client's default
    max_tokens: int = 4096                  # completion tokens per call
    context_tokens: int | None = None       # None: default_context_tokens(model)
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    api_key_env: str | None = None          # None: the provider's usual variable
    name: str | None = None                 # what the run records; default provider:model
    timeout_s: float = 120.0                # per attempt, between reply bytes (the SDK's read timeout)
    max_retries: int = 3
    connect_timeout_s: float = 10.0         # per attempt, the TCP/TLS connect
    deadline_s: float | None = None         # the whole call across retries; None: every attempt + back-off
    cached_input_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: float | None = None
    reasoning: bool | None = None           # None: the capability table decides
    reasoning_effort: str | None = None     # None: not sent (the model's default)
    thinking_budget_tokens: int | None = None  # Anthropic extended thinking; None: off
    prompt_cache: bool = True               # Anthropic: a cache breakpoint on the stable prefix

    def __str__(self) -> str:
        text = self.provider if self.provider == "offline" else f"{self.provider}:{self.model}"
        if self.base_url and self.provider == "openai-compatible":
            text += f"@{self.base_url}"
        return text + (f"*{self.weight:g}" if self.weight != 1.0 else "")

    @property
    def label(self) -> str:
        """The name recorded with each candidate and call (an ensemble's arm)."""
        if self.name:
            return self.name
        return "offline" if self.provider == "offline" else f"{self.provider}:{self.model}"

    @property
    def prices(self) -> Price | None:
        """The config's price, overriding the table; None when the config gives none."""
        if self.input_usd_per_mtok is None and self.output_usd_per_mtok is None:
            return None
        return Price(self.input_usd_per_mtok or 0.0, self.output_usd_per_mtok or 0.0,
                     self.cached_input_usd_per_mtok, self.cache_write_usd_per_mtok)

    @property
    def is_reasoning(self) -> bool:
        """An OpenAI-style reasoning model (max_completion_tokens, default temperature only)."""
        return self.provider in ("openai", "openai-compatible") and \
            capabilities(self.model, reasoning=self.reasoning).reasoning

    @property
    def context_window(self) -> int | None:
        if self.provider == "offline":
            return None
        return self.context_tokens or default_context_tokens(self.model)

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, so stored configs stay short and readable."""
        defaults = LLMSpec(self.provider)
        return {k: v for k, v in asdict(self).items() if k == "provider" or v != getattr(defaults, k)}


_SPEC_FIELDS = {f.name: f for f in fields(LLMSpec)}
_NUMBER_KEYS = {"weight", "temperature", "input_usd_per_mtok", "output_usd_per_mtok", "timeout_s",
                "connect_timeout_s", "deadline_s",
                "cached_input_usd_per_mtok", "cache_write_usd_per_mtok"}
_INT_KEYS = {"max_tokens", "context_tokens", "max_retries", "thinking_budget_tokens"}
_STR_KEYS = {"provider", "model", "base_url", "api_key_env", "name", "reasoning_effort"}
_BOOL_KEYS = {"reasoning", "prompt_cache"}


def parse_llm_spec(spec: str) -> LLMSpec:
    """``offline`` · ``openai:MODEL`` · ``anthropic:MODEL`` · ``openai-compatible:MODEL@BASE_URL``, ``*WEIGHT``."""
    text, weight = spec.strip(), 1.0
    if "*" in text:
        text, _, w = text.rpartition("*")
        try:
            weight = float(w)
        except ValueError:
            raise ConfigError(f"--llm {spec!r}: expected a number after '*' but got {w!r}") from None
        if not weight > 0 or not math.isfinite(weight):
            raise ConfigError(f"--llm {spec!r}: the weight must be positive")
    if text == "offline":
        return LLMSpec("offline", weight=weight)
    provider, sep, model = text.partition(":")
    if not sep or provider not in PROVIDERS or not model:
        raise ConfigError(f"--llm {spec!r}: expected one of offline, openai:MODEL, anthropic:MODEL, "
                          f"openai-compatible:MODEL@BASE_URL (or a .toml file with [[llm.models]])")
    base_url = None
    if provider == "openai-compatible":
        model, at, base_url = model.partition("@")
        if not at or not model or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--llm {spec!r}: openai-compatible needs MODEL@BASE_URL, "
                              f"e.g. openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1")
    return LLMSpec(provider, model, base_url, weight)


def spec_from_dict(raw: Mapping[str, Any], where: str = "[[llm.models]]") -> LLMSpec:
    """One ``[[llm.models]]`` table (or a stored spec dict) → `LLMSpec`, validated key by key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table with provider, model, ... but got {raw!r}")
    unknown = sorted(set(raw) - set(_SPEC_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(_SPEC_FIELDS))})")
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise ConfigError(f"{where} provider: unknown provider {provider!r} (known: {', '.join(PROVIDERS)})")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _STR_KEYS and not isinstance(value, str):
            raise ConfigError(f"{where} {key}: expected a string but got {value!r}")
        if key in _NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value) or value < 0):
            raise ConfigError(f"{where} {key}: expected a number >= 0 but got {value!r}")
        if key in _INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{where} {key}: expected a whole number >= 0 but got {value!r}")
        if key in _BOOL_KEYS and not isinstance(value, bool):
            raise ConfigError(f"{where} {key}: expected true or false but got {value!r}")
        values[key] = float(value) if key in _NUMBER_KEYS else value
    spec = LLMSpec(**values)
    if spec.provider != "offline" and not spec.model:
        raise ConfigError(f"{where}: provider {spec.provider!r} needs a model (model = \"...\")")
    if spec.provider == "openai-compatible" and not (spec.base_url or "").startswith(("http://", "https://")):
        raise ConfigError(f"{where} base_url: openai-compatible needs an http(s) base_url, "
                          f"e.g. base_url = \"http://127.0.0.1:8000/v1\"")
    if spec.weight <= 0:
        raise ConfigError(f"{where} weight: expected a positive number but got {spec.weight:g}")
    if spec.max_tokens < 1:
        raise ConfigError(f"{where} max_tokens: expected a positive number but got {spec.max_tokens}")
    if spec.context_tokens is not None and spec.context_tokens <= spec.max_tokens:
        raise ConfigError(f"{where} context_tokens: expected more than max_tokens ({spec.max_tokens}) "
                          f"but got {spec.context_tokens}")
    _check_reasoning(spec, where)
    return spec


def _check_reasoning(spec: LLMSpec, where: str) -> None:
    """Refuse, before any call, what the service would answer with a 400 (the rules of the fakes)."""
    if spec.reasoning_effort is not None:
        if spec.provider not in ("openai", "openai-compatible"):
            raise ConfigError(f"{where} reasoning_effort: only OpenAI-style models take it "
                              f"(for anthropic use thinking_budget_tokens)")
        if spec.reasoning_effort not in REASONING_EFFORTS:
            raise ConfigError(f"{where} reasoning_effort: expected one of {', '.join(REASONING_EFFORTS)} "
                              f"but got {spec.reasoning_effort!r}")
        if not spec.is_reasoning:
            raise ConfigError(f"{where} reasoning_effort: {spec.model!r} is not a reasoning model in the "
                              f"capability table; add reasoning = true if it is one")
    if spec.is_reasoning and spec.temperature is not None and spec.temperature != 1.0:
        raise ConfigError(f"{where} temperature: {spec.model!r} is a reasoning model, which accepts only the "
                          f"default temperature (1); remove temperature (or set reasoning = false if it is not one)")
    if spec.thinking_budget_tokens is not None:
        if spec.provider != "anthropic":
            raise ConfigError(f"{where} thinking_budget_tokens: only anthropic models take it "
                              f"(for OpenAI reasoning models use reasoning_effort)")
        if spec.thinking_budget_tokens < 1024:
            raise ConfigError(f"{where} thinking_budget_tokens: expected at least 1024 (Anthropic's minimum) "
                              f"but got {spec.thinking_budget_tokens}")
        if spec.thinking_budget_tokens >= spec.max_tokens:
            raise ConfigError(f"{where} thinking_budget_tokens: expected less than max_tokens ({spec.max_tokens}), "
                              f"which bounds thinking and answer together, but got {spec.thinking_budget_tokens}; "
                              f"raise max_tokens")
        if spec.temperature is not None and spec.temperature != 1.0:
            raise ConfigError(f"{where} temperature: extended thinking accepts only temperature 1; "
                              f"remove temperature or thinking_budget_tokens")


@dataclass(frozen=True)
class LLMSettings:
    """The ``[llm]`` table: the models and how prompts use them. ``given`` lists the keys set explicitly."""

    models: tuple[LLMSpec, ...] = ()
    ensemble: str = "weighted"
    full_rewrite_share: float = 0.1
    crossover_share: float = 0.1
    retry_failed_edit: bool = True
    given: frozenset[str] = field(default_factory=frozenset)


_SETTINGS_KEYS = {"models", "ensemble", "full_rewrite_share", "crossover_share", "retry_failed_edit"}


def parse_llm_table(raw: Any, where: str) -> LLMSettings:
    """Validate an ``[llm]`` table; ``where`` names the file for messages (``task.toml: [llm]``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table but got {raw!r}")
    unknown = sorted(set(raw) - _SETTINGS_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(_SETTINGS_KEYS))})")
    models = raw.get("models", [])
    if not isinstance(models, list):
        raise ConfigError(f"{where} models: expected [[llm.models]] tables but got {models!r}")
    specs = tuple(spec_from_dict(m, f"{where.replace('[llm]', '')}[[llm.models]] #{i + 1}".strip())
                  for i, m in enumerate(models))
    labels = [s.label for s in specs]
    for label in labels:
        if labels.count(label) > 1:
            raise ConfigError(f"{where} models: two models are named {label!r}; give each a distinct "
                              f"name = \"...\" (e.g. for the same model at two temperatures)")
    ensemble = raw.get("ensemble", "weighted")
    if ensemble not in ENSEMBLE_MODES:
        raise ConfigError(f"{where} ensemble: expected one of {', '.join(ENSEMBLE_MODES)} but got {ensemble!r}")
    shares = {}
    for key in ("full_rewrite_share", "crossover_share"):
        value = raw.get(key, getattr(LLMSettings, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where} {key}: expected a number in [0, 1] but got {value!r}")
        shares[key] = float(value)
    if shares["full_rewrite_share"] + shares["crossover_share"] > 1.0:
        raise ConfigError(f"{where}: full_rewrite_share + crossover_share must be at most 1 "
                          f"but got {shares['full_rewrite_share'] + shares['crossover_share']:g}")
    retry = raw.get("retry_failed_edit", True)
    if not isinstance(retry, bool):
        raise ConfigError(f"{where} retry_failed_edit: expected true or false but got {retry!r}")
    return LLMSettings(models=specs, ensemble=ensemble, retry_failed_edit=retry,
                       given=frozenset(raw) - {"models"}, **shares)


def load_llm_file(path: Path) -> LLMSettings:
    """A run config file (``--llm models.toml``): its ``[llm]`` table, models required."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--llm {path}: cannot read the file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - {"llm"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (a run config file holds one [llm] table)")
    settings = parse_llm_table(raw.get("llm", {}), f"{path}: [llm]")
    if not settings.models:
        raise ConfigError(f"{path}: no [[llm.models]] tables (add at least one model)")
    return settings
