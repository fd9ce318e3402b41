"""One translation of the provider SDKs' errors into `LLMError` (httpx style: at the I/O seam, once).

The ``openai`` and ``anthropic`` SDKs share one error design (``APIStatusError``, ``APITimeoutError``
subclassing ``APIConnectionError``, and a root error), so both clients use this one translator.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

from evoforge.evaluators.types import LLMError

__all__ = ["translated_sdk_errors"]


@contextmanager
def translated_sdk_errors(sdk: ModuleType, root_error: type[BaseException], *, name: str, base_url: object,
                          timeout_s: float, max_retries: int) -> Iterator[None]:
    """Run the body; re-raise any SDK error as an `LLMError` naming the model, the URL and the cause."""
    try:
        yield
    except sdk.APIStatusError as exc:
        raise LLMError(f"{name}: HTTP {exc.status_code} from {base_url}"
                       f"{_attempts(exc.status_code, max_retries)}: {_detail(exc)}") from exc
    # APITimeoutError subclasses APIConnectionError, so it must be caught first.
    except sdk.APITimeoutError as exc:
        raise LLMError(f"{name}: the request to {base_url} timed out after "
                       f"{timeout_s:g} s ({max_retries + 1} attempt(s))") from exc
    except sdk.APIConnectionError as exc:
        raise LLMError(f"{name}: cannot reach {base_url} ({max_retries + 1} attempt(s)): {_cause(exc)}") from exc
    except root_error as exc:
        raise LLMError(f"{name}: {exc}") from exc


def _attempts(status: int, max_retries: int) -> str:
    """The SDKs retry 408, 409, 429 and 5xx (unless the server says not to); others fail at once."""
    retried = status in (408, 409, 429) or status >= 500
    return f" after up to {max_retries + 1} attempts" if retried and max_retries else ""


def _detail(exc: BaseException) -> str:
    """The provider's own error type and message when the body has them, else the SDK's text."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        kind = error.get("type") or error.get("code")
        return f"{kind}: {error['message']}" if kind else str(error["message"])
    return str(getattr(exc, "message", exc))


def _cause(exc: BaseException) -> str:
    """The SDK's "Connection error." says little; the transport error underneath names the cause."""
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else str(exc)
