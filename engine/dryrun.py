"""`evoforge run --dry-run`: the resolved configuration and what an iteration will cost, with no LLM
call and no run directory.

The estimate renders a real prompt: the initial program as the parent and ``num_inspirations``
inspirations of the same size (a full archive's prompt; early prompts are smaller), shrunk to each
model's context window exactly as a run would. The completion is estimated from the evolvable code:
a diff reply as half of it plus ~150 tokens of explanation, a full rewrite as all of it plus ~100,
each capped at the model's ``max_tokens``. Deliberately rough — it is for choosing budgets, not for
accounting (run.db records the provider's real counts).

Prompt caching: the system text (rules, reply format, task) is the stable prefix of every prompt.
Once it reaches the provider's minimum (1024 tokens; more for some Anthropic models — see
`evoforge.engine.llm.capabilities`) every call after the first reads it from the cache, so the
estimate gives the cost with it cached (OpenAI counts cached tokens in 128-token steps; Anthropic's
occasional cache writes, at 1.25x, are left out) beside the cost without.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from evoforge.engine.config import RunConfig
from evoforge.engine.edits import evolvable_text
from evoforge.engine.llm import as_spec, missing_api_key
from evoforge.engine.llm.models import LLMSpec
from evoforge.engine.llm.capabilities import capabilities
from evoforge.engine.llm.prices import call_cost, price_per_mtok
from evoforge.engine.task import Task
from evoforge.prompts import ProgramView, PromptContext, estimate_tokens, fit_prompt, render_prompt

__all__ = ["ModelEstimate", "estimate_iteration", "dry_run_report"]


@dataclass(frozen=True)
class ModelEstimate:
    spec: LLMSpec
    share: float                  # of proposals (weights; a bandit starts uniform, then adapts)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float               # per proposal, one call (a retry of a failed edit adds one more)
    price: tuple[float, float] | None
    shrunk: tuple[str, ...]       # what fitting the window cut
    stable_tokens: int = 0        # the system text: the prefix a provider can cache
    cached_tokens: int = 0        # of the prompt, read from the cache once it is warm (0: below the minimum)
    cached_cost_usd: float = 0.0  # per proposal with the cache warm


def _cached_tokens(spec: LLMSpec, stable_tokens: int) -> int:
    """Prompt tokens a warm cache serves: the stable prefix, if the provider caches one that size."""
    if spec.provider == "anthropic" and not spec.prompt_cache:
        return 0
    minimum = capabilities(spec.model).cache_min_tokens if spec.provider == "anthropic" else 1024
    if stable_tokens < minimum:
        return 0
    # OpenAI caches in 128-token steps past the first 1024; Anthropic caches up to the breakpoint.
    return stable_tokens if spec.provider == "anthropic" else 1024 + (stable_tokens - 1024) // 128 * 128


def _review_calls(config: RunConfig, task: Task) -> str:
    """The calls that are not proposals (engine.review): written lessons and the novelty judge, if on."""
    from evoforge.engine.reflection import judge_enabled, lessons_mode

    search, calls = task.search, []
    if search.lessons_every and lessons_mode(search.lessons, config.llm) == "llm" and config.baseline is None:
        calls.append(f"one short lessons call every {search.lessons_every} evaluated children")
    if search.novelty_threshold > 0 and judge_enabled(search.novelty_judge, config.llm):
        calls.append("one short novelty-judge call per too-similar child")
    return "; ".join(calls)


def estimate_iteration(config: RunConfig, task: Task) -> list[ModelEstimate]:
    specs = [as_spec(s) for s in config.llm]
    uniform = config.setting("ensemble") == "bandit"
    total_weight = sum(s.weight for s in specs)
    parent = ProgramView(code=task.initial_program)
    context = PromptContext(task_name=task.name, task_description=task.description, parent=parent,
                            inspirations=[parent] * task.archive.num_inspirations,
                            reply_format=config.reply_format, objective=task.objective)
    evolvable = estimate_tokens("".join(evolvable_text(task.initial_program)))
    rewrite_share = 1.0 if config.reply_format == "rewrite" else config.setting("full_rewrite_share")
    out = []
    for spec in specs:
        share = 1.0 / len(specs) if uniform else spec.weight / total_weight
        if spec.provider == "offline":
            out.append(ModelEstimate(spec, share, 0, 0, 0.0, None, ()))
            continue
        budget = spec.context_window - spec.max_tokens if spec.context_window else None
        fitted = fit_prompt(context, lambda ctx: render_prompt(ctx, task_dir=task.path), budget)
        diff = min(spec.max_tokens, 150 + evolvable // 2)
        rewrite = min(spec.max_tokens, 100 + evolvable)
        completion = round((1 - rewrite_share) * diff + rewrite_share * rewrite)
        price = price_per_mtok(spec.model, None if spec.prices is None else {spec.model: spec.prices})
        stable = estimate_tokens(fitted.system)
        cached = _cached_tokens(spec, stable)
        cost, _ = call_cost(price, prompt_tokens=fitted.tokens, completion_tokens=completion)
        cached_cost, _ = call_cost(price, prompt_tokens=fitted.tokens, completion_tokens=completion,
                                   cached_tokens=cached)
        out.append(ModelEstimate(spec, share, fitted.tokens, completion, cost, price, fitted.steps,
                                 stable, cached, cached_cost))
    return out


def _opt(value, unit: str = "") -> str:
    return "none" if value is None else f"{value:g}{unit}"


def dry_run_report(config: RunConfig, task: Task, *, out: str | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    a = task.archive
    lines = [
        "evoforge run --dry-run: nothing is called, no run directory is created",
        f"task: {task.name} ({task.path}) · {task.objective} · initial program "
        f"{len(task.initial_program.splitlines())} lines",
        f"archive: {a.kind} · {a.islands} island(s) · {a.num_inspirations} inspirations per prompt · descriptors "
        + ", ".join(f"{d.name} [{d.low:g}, {d.high:g}] x{d.bins}" for d in task.descriptors),
        f"evaluation: executor {config.executor}"
        + (f" ({config.ray_address})" if config.ray_address else "")
        + f" · sandbox {config.sandbox} · timeout {task.limits.timeout_s:g} s · memory {task.limits.memory_mb} MB"
        f" · eval slots {config.eval_slots or 'cores'} · concurrency {config.concurrency}",
        f"budgets: iterations {config.iterations} · max cost "
        f"{'none' if config.max_cost_usd is None else f'${config.max_cost_usd:g}'} · "
        f"max tokens {_opt(config.max_total_tokens)} · max time {_opt(config.max_time_s, ' s')} · seed {config.seed}",
        f"prompts: {config.reply_format} edits · full rewrites {config.setting('full_rewrite_share'):.0%} · "
        f"crossover {config.setting('crossover_share'):.0%} · retry failed edit "
        f"{'once' if config.setting('retry_failed_edit') else 'no'} · ensemble {config.setting('ensemble')}",
        f"run directory: {out or 'runs/<task>-<timestamp>'} (not created)",
        "models:",
    ]
    estimates = estimate_iteration(config, task)
    for e in estimates:
        s = e.spec
        if s.provider == "offline":
            lines.append(f"  offline · share {e.share:.0%} · no tokens, no cost")
            continue
        key = missing_api_key(s, env)
        price = (f"${e.price[0]:g}/${e.price[1]:g} per 1M in/out" if e.price and s.prices is None else
                 f"${e.price[0]:g}/${e.price[1]:g} per 1M in/out (from config)" if e.price else "price unknown: $0")
        lines.append(
            f"  {s.label}{' @ ' + s.base_url if s.base_url else ''} · share {e.share:.0%} · temperature "
            f"{'default' if s.temperature is None else f'{s.temperature:g}'} · max_tokens {s.max_tokens} · "
            f"context {s.context_window} · {price}"
            + (f" · WARNING: {key.split(': ', 1)[1]}" if key else ""))
        lines.append(f"    per iteration: ~{e.prompt_tokens} prompt + ~{e.completion_tokens} completion tokens, "
                     f"~${e.cost_usd:.4f}" + (f" (shrunk to fit: {', '.join(e.shrunk)})" if e.shrunk else ""))
        if e.cached_tokens:
            lines.append(f"    with prompt caching: ~${e.cached_cost_usd:.4f} per iteration "
                         f"(the {e.stable_tokens}-token "
                         f"stable prefix is read from the cache after the first call: {e.cached_tokens} tokens)")
        else:
            lines.append(f"    prompt caching: the stable prefix (system text and task, ~{e.stable_tokens} tokens) is "
                         + ("not marked (prompt_cache = false)" if s.provider == "anthropic" and not s.prompt_cache
                            else "below the provider's caching minimum, so only repeated parents may be cached"))
        if s.is_reasoning or s.thinking_budget_tokens:
            lines.append("    plus hidden reasoning tokens, billed as completion ("
                         + (f"reasoning_effort {s.reasoning_effort}" if s.reasoning_effort else
                            f"thinking budget {s.thinking_budget_tokens}" if s.thinking_budget_tokens else
                            "the model's default effort") + f"; max_tokens {s.max_tokens} bounds both)")
    tokens = sum(e.share * (e.prompt_tokens + e.completion_tokens) for e in estimates)
    cost = sum(e.share * e.cost_usd for e in estimates)
    cached_cost = sum(e.share * (e.cached_cost_usd if e.cached_tokens else e.cost_usd) for e in estimates)
    lines.append(f"estimate per iteration: ~{tokens:.0f} tokens, ~${cost:.4f}; for {config.iterations} iterations: "
                 f"~{tokens * config.iterations:.0f} tokens, ~${cost * config.iterations:.2f} "
                 f"(a retried edit adds one call)")
    reviews = _review_calls(config, task)
    if reviews:
        lines.append(f"not in the estimate: {reviews}")
    if cached_cost < cost:
        lines.append(f"with prompt caching: ~${cached_cost:.4f} per iteration, ~${cached_cost * config.iterations:.2f} "
                     f"for {config.iterations} iterations")
    stops = []
    if config.max_cost_usd is not None and cost > 0:
        stops.append((config.max_cost_usd / cost, "the cost budget"))
    if config.max_total_tokens is not None and tokens > 0:
        stops.append((config.max_total_tokens / tokens, "the token budget"))
    if stops:
        n, what = min(stops)
        if n < config.iterations:
            lines.append(f"{what} would stop the run after about {n:.0f} iterations")
    return "\n".join(lines)
