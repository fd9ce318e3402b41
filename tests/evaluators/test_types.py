"""The evaluator's return contract: statuses an evaluator may set, and what each carries."""

import pytest

from evoforge.evaluators.types import EvaluationResult, Status


@pytest.mark.parametrize("status", [Status.INVALID, Status.ERROR])
def test_an_evaluator_may_set_invalid_or_error_with_its_own_message(status):
    result = EvaluationResult.from_evaluator({"status": status, "error": "needs a GPU", "metrics": {"n": 3}})
    assert result.status == status
    assert result.artifacts["error"] == "needs a GPU"
    assert result.metrics == {"n": 3.0}
    assert result.score is None


def test_a_status_without_a_message_says_so():
    result = EvaluationResult.from_evaluator({"status": "error"})
    assert result.status == Status.ERROR
    assert "without an 'error' message" in result.artifacts["error"]


@pytest.mark.parametrize("status", ["timeout", "rejected", "great", 1])
def test_other_statuses_are_an_error_naming_the_allowed_ones(status):
    result = EvaluationResult.from_evaluator({"status": status, "score": 1.0})
    assert result.status == Status.ERROR
    assert "expected 'ok', 'invalid' or 'error'" in result.artifacts["error"]
