"""Shrinking a prompt to a context window (pure: contexts and strings, no model)."""

from __future__ import annotations

import pytest

from evoforge.prompts import ProgramView, PromptContext, estimate_tokens, fit_prompt, render_prompt

PARENT = ProgramView(code="# EVOLVE-BLOCK-START\ndef f(x):\n    return 2 * x\n# EVOLVE-BLOCK-END\n", score=1.0,
                     artifacts={"trace": "step failed\n" * 400})
INSPIRATIONS = [ProgramView(code=f"def f(x):\n    return {k} * x  # {'pad ' * 200}\n", score=float(k))
                for k in (3, 4, 5)]


def ctx(**changes) -> PromptContext:
    values = dict(task_name="t", task_description="Triple x.", parent=PARENT, inspirations=INSPIRATIONS,
                  feedback=["rejected edit: " + "no match " * 60, "error: ZeroDivisionError"])
    values.update(changes)
    return PromptContext(**values)


def size(context: PromptContext) -> int:
    system, user = render_prompt(context)
    return estimate_tokens(system) + estimate_tokens(user)


def test_estimate_is_about_four_characters_a_token():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) in range(25, 101)  # chars/4 = 100, or a real tokenizer's fewer


def test_no_limit_or_a_prompt_that_fits_is_untouched():
    full = size(ctx())
    for limit in (None, full, full + 1000):
        fitted = fit_prompt(ctx(), render_prompt, limit)
        assert fitted.fits and fitted.steps == () and fitted.context == ctx() and fitted.tokens == full
        assert (fitted.system, fitted.user) == render_prompt(ctx())


def test_inspirations_go_first_the_last_one_first():
    full, one_fewer = size(ctx()), size(ctx(inspirations=INSPIRATIONS[:2]))
    fitted = fit_prompt(ctx(), render_prompt, one_fewer)
    assert fitted.fits and fitted.steps == ("dropped inspiration 3",)
    assert list(fitted.context.inspirations) == INSPIRATIONS[:2] and fitted.tokens <= one_fewer < full
    assert "return 5 * x" not in fitted.user and "return 4 * x" in fitted.user


def test_then_the_second_parent_then_artifacts_then_feedback():
    crossover = ctx(second_parent=INSPIRATIONS[0], inspirations=INSPIRATIONS[1:])
    bare = ctx(inspirations=[], feedback=[], parent=ProgramView(code=PARENT.code, score=1.0))
    fitted = fit_prompt(crossover, render_prompt, size(bare))
    assert fitted.fits
    assert fitted.steps[:3] == ("dropped inspiration 2", "dropped inspiration 1", "dropped the second parent")
    assert "artifacts dropped" in fitted.steps and fitted.steps[-1] == "feedback dropped"
    assert fitted.context.second_parent is None and dict(fitted.context.parent.artifacts) == {}
    assert fitted.context.parent.code == PARENT.code  # the parent is never cut


def test_artifacts_are_truncated_before_they_are_dropped():
    no_inspirations = ctx(inspirations=[], feedback=[])
    capped = size(ctx(inspirations=[], feedback=[],
                      parent=ProgramView(code=PARENT.code, score=1.0, artifacts={"trace": "x" * 600})))
    fitted = fit_prompt(no_inspirations, render_prompt, capped)
    assert fitted.fits and fitted.steps[-1] == "artifacts cut to 500 characters"
    trace = fitted.context.parent.artifacts["trace"]
    assert trace.startswith("step failed\n") and "more characters cut to fit the context window" in trace


def test_a_parent_too_large_for_the_window_does_not_fit():
    fitted = fit_prompt(ctx(), render_prompt, 10)
    assert not fitted.fits and fitted.tokens > 10
    assert fitted.steps[-1] == "feedback dropped" and fitted.context.inspirations == []


@pytest.mark.parametrize("limit_share", [0.5, 0.7, 0.9])
def test_the_result_always_respects_the_limit_when_it_fits(limit_share):
    limit = int(size(ctx()) * limit_share)
    fitted = fit_prompt(ctx(), render_prompt, limit)
    assert fitted.fits and fitted.tokens <= limit
    assert size(fitted.context) == fitted.tokens
