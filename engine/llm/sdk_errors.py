"""One translation of the provider SDKs' errors into `LLMError` (httpx style: at the I/O seam, once).

The ``openai`` and ``anthropic`` SDKs share one error design (``APIStatusError``, ``APITimeoutError``
subclassing ``APIConnectionError``, and a root error), so both clients use this one translator.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from types import ModuleType
from typing import Awaitable, Iterator, TypeVar

from evoforge.evaluators.types import LLMError

T = TypeVar("T")

__all__ = ["translated_sdk_errors", "sdk_timeout", "call_deadline_s", "within_deadline",
           "CONNECT_TIMEOUT_S", "BACKOFF_ALLOWANCE_S"]

CONNECT_TIMEOUT_S = 10.0     # a TCP (and TLS) connect; a server that takes longer is not there
BACKOFF_ALLOWANCE_S = 30.0   # the SDKs' sleeps between attempts (at most 8 s each, Retry-After aside)


def sdk_timeout(sdk: ModuleType, timeout_s: float, connect_timeout_s: float):
    """The SDK's per-attempt limits as an explicit ``Timeout`` of its HTTP client (both SDKs export
    the one of the httpx they are built on as ``sdk.Timeout``): ``timeout_s`` between bytes of the
    reply (read, write, pool) and ``connect_timeout_s`` for the connection. A bare float would give
    the connect the read's two minutes, and an address that accepts nothing would hold the call
    that long on each attempt."""
    connect = min(connect_timeout_s, timeout_s) if timeout_s else connect_timeout_s
    return sdk.Timeout(timeout_s, connect=connect)


def call_deadline_s(timeout_s: float, max_retries: int, deadline_s: float | None) -> float:
    """The whole call's limit, across the SDK's retries: ``deadline_s`` when set, else every
    attempt's read timeout plus the back-off between them. A server that trickles a byte now and
    then never trips a read timeout; this does."""
    if deadline_s:
        return float(deadline_s)
    return timeout_s * (max_retries + 1) + BACKOFF_ALLOWANCE_S


async def within_deadline(call: Awaitable[T], *, name: str, base_url: object, deadline_s: float,
                          timeout_s: float, max_retries: int) -> T:
    """Await ``call`` (the SDK request, its retries included) for at most ``deadline_s``; past it,
    one `LLMError` line naming the server, the limit and what to check."""
    try:
        return await asyncio.wait_for(call, deadline_s)
    except asyncio.TimeoutError:
        raise LLMError(f"{name}: {base_url} did not finish answering within the call's deadline of "
                       f"{deadline_s:g} s (read timeout {timeout_s:g} s, up to {max_retries + 1} attempt(s)); "
                       "check that the server is up and not overloaded, or raise deadline_s in "
                       "[[llm.models]]") from None


@contextmanager
def translated_sdk_errors(sdk: ModuleType, root_error: type[BaseException], *, name: str, base_url: object,
                          timeout_s: float, max_retries: int,
                          connect_timeout_s: float | None = None) -> Iterator[None]:
    """Run the body; re-raise any SDK error as an `LLMError` naming the model, the URL and the cause."""
    try:
        yield
    except sdk.APIStatusError as exc:
        raise LLMError(f"{name}: HTTP {exc.status_code} from {base_url}"
                       f"{_attempts(exc.status_code, max_retries)}: {_detail(exc)}") from exc
    # APITimeoutError subclasses APIConnectionError, so it must be caught first.
    except sdk.APITimeoutError as exc:
        limits = f"read {timeout_s:g} s" + (f", connect {connect_timeout_s:g} s" if connect_timeout_s else "")
        raise LLMError(f"{name}: the request to {base_url} timed out ({limits}; "
                       f"{max_retries + 1} attempt(s)); check that the server is up and answering, or raise "
                       "timeout_s in [[llm.models]]") from exc
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
