"""A fake Anthropic Messages API server on 127.0.0.1, speaking the real wire format.

``reply(request_json)`` scripts each answer and returns one of

* ``str``: a successful reply with that text (``POST /v1/messages`` → a ``message`` object);
* ``(status, body_dict)``: an error (or any raw JSON body), e.g.
  ``(429, error_body("rate_limit_error", "slow down"))``;
* ``(status, body_dict, headers_dict)``: the same with extra response headers
  (``{"Retry-After": "0"}``).

Every request is kept in ``requests`` for assertions. `ScriptedJSONServer` is the shared machinery
and `FakeOpenAIServerWithHeaders` gives the OpenAI fake the same three-tuple form (headers), which
``tests/fakes/openai_server.py`` does not have (both enforce `fakes.openai_server.OpenAIRules`).

The Anthropic fake enforces what the service enforces, with its real 400 bodies:

* extended thinking: ``budget_tokens`` >= 1024 and < ``max_tokens``, and no temperature but 1;
  a thinking reply carries a ``thinking`` block (with a signature) before its text;
* ``"stream": true`` answers with the real server-sent events; a non-streaming request whose
  ``max_tokens`` implies more than 10 minutes (> 21,333 tokens) is refused — a stand-in for the SDK's
  long-request guard, which an explicit client timeout switches off;
* prompt caching at ``cache_control`` breakpoints: a prefix (system blocks, then message blocks, up to
  a breakpoint) of at least the model's minimum (1024 tokens; 4096 for Haiku 4.5 and Opus 4.5, 2048
  for the 3.x Haikus) is written on first sight (``cache_creation_input_tokens``) and read after
  (``cache_read_input_tokens``); ``input_tokens`` counts only the rest, as the service reports it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from fakes.openai_server import OpenAIRules

__all__ = ["ScriptedJSONServer", "FakeAnthropicServer", "FakeOpenAIServerWithHeaders", "error_body",
           "openai_error_body"]


class ScriptedJSONServer:
    """A threaded JSON-over-HTTP server whose answers come from ``reply``; subclasses set `render`."""

    base_path = ""

    def __init__(self, reply: Callable[[dict], Any], *, latency_s: float = 0.0) -> None:
        self.reply = reply
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                if server.latency_s:
                    time.sleep(server.latency_s)
                headers: dict[str, str] = {}
                refused = server.check(self.path, body)
                if refused is not None:
                    status, payload = refused
                else:
                    answer = server.reply(body)
                    if isinstance(answer, tuple):
                        status, payload, *rest = answer
                        if rest:
                            headers = dict(rest[0])
                    else:
                        status, payload = 200, server.render(body, answer)
                if status == 200 and body.get("stream") and isinstance(payload, dict):
                    data, content_type = server.events(payload), "text/event-stream"
                else:
                    data, content_type = json.dumps(payload).encode(), "application/json"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, str(value))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def render(self, request: dict, text: str) -> dict:  # pragma: no cover - subclasses override
        raise NotImplementedError

    def check(self, path: str, request: dict) -> tuple[int, dict] | None:
        """The error the service answers before generating anything (None: go on)."""
        return None

    def events(self, payload: dict) -> bytes:  # pragma: no cover - streaming servers override
        raise NotImplementedError

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path

    def __enter__(self) -> "ScriptedJSONServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_CACHE_MIN_TOKENS = {"claude-haiku-4-5": 4096, "claude-opus-4-5": 4096, "claude-3-5-haiku": 2048,
                     "claude-3-haiku": 2048}
FAKE_THINKING = "Let me look at the program and the evaluator feedback before I edit it. " * 4


class FakeAnthropicServer(ScriptedJSONServer):
    """``base_url`` is the origin: the SDK appends ``/v1/messages`` itself."""

    def __init__(self, reply: Callable[[dict], Any], **kwargs: Any) -> None:
        super().__init__(reply, **kwargs)
        self._cached: set[str] = set()

    def check(self, path: str, request: dict) -> tuple[int, dict] | None:
        thinking = request.get("thinking") or {}
        max_tokens = int(request.get("max_tokens") or 0)
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                return 400, error_body("invalid_request_error", "thinking.enabled.budget_tokens: Input should be "
                                                                "greater than or equal to 1024")
            if max_tokens <= budget:
                return 400, error_body("invalid_request_error", "`max_tokens` must be greater than "
                                       f"`thinking.budget_tokens`. Please consult our documentation at {_DOCS}"
                                       "#max-tokens-and-context-window-size")
            if request.get("temperature") not in (None, 1, 1.0):
                return 400, error_body("invalid_request_error", "`temperature` may only be set to 1 when thinking "
                                       f"is enabled. Please consult our documentation at {_DOCS}"
                                       "#important-considerations-when-using-extended-thinking")
        if not request.get("stream") and max_tokens > 21_333:
            return 400, error_body("invalid_request_error", "Streaming is required for operations that may take "
                                   "longer than 10 minutes.")
        return None

    def render(self, request: dict, text: str) -> dict:
        message = _message(request, text)
        model = str(request.get("model", ""))
        minimum = next((v for k, v in sorted(_CACHE_MIN_TOKENS.items(), key=lambda kv: -len(kv[0]))
                        if model.startswith(k)), 1024)
        read = written = 0
        prefixes = [p for p in _breakpoint_prefixes(request) if len(p) // 4 >= minimum]
        with self._lock:
            keys = [hashlib.sha256(f"{model}\x00{p}".encode()).hexdigest() for p in prefixes]
            read = max((len(p) // 4 for p, k in zip(prefixes, keys) if k in self._cached), default=0)
            if prefixes and keys[-1] not in self._cached:
                written = len(prefixes[-1]) // 4 - read
            self._cached.update(keys)
        usage = message["usage"]
        usage["input_tokens"] -= read + written
        usage.update(cache_creation_input_tokens=written, cache_read_input_tokens=read)
        if (request.get("thinking") or {}).get("type") == "enabled":
            message["content"].insert(0, {"type": "thinking", "thinking": FAKE_THINKING, "signature": "c2lnbmF0dXJl"})
            usage["output_tokens"] += len(FAKE_THINKING) // 4
        return message

    def events(self, message: dict) -> bytes:
        """The message as the service streams it (server-sent events)."""
        def event(kind: str, data: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        usage = dict(message["usage"])
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        out = [event("message_start", {"message": start})]
        for i, block in enumerate(message["content"]):
            if block["type"] == "thinking":
                out.append(event("content_block_start", {"index": i, "content_block":
                                                         {"type": "thinking", "thinking": "", "signature": ""}}))
                half = len(block["thinking"]) // 2
                for piece in (block["thinking"][:half], block["thinking"][half:]):
                    out.append(event("content_block_delta", {"index": i, "delta": {"type": "thinking_delta",
                                                                                   "thinking": piece}}))
                out.append(event("content_block_delta", {"index": i, "delta": {"type": "signature_delta",
                                                                               "signature": block["signature"]}}))
            else:
                out.append(event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}}))
                half = len(block["text"]) // 2
                for piece in (block["text"][:half], block["text"][half:]):
                    out.append(event("content_block_delta", {"index": i, "delta": {"type": "text_delta",
                                                                                   "text": piece}}))
            out.append(event("content_block_stop", {"index": i}))
        out.append(event("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                           "usage": {"output_tokens": usage["output_tokens"]}}))
        out.append(event("message_stop", {}))
        return "".join(out).encode()


def _breakpoint_prefixes(request: dict) -> list[str]:
    """The prompt text up to each ``cache_control`` breakpoint, in order (system, then messages)."""
    texts: list[tuple[str, bool]] = []

    def add(content: Any) -> None:
        if isinstance(content, str):
            texts.append((content, False))
            return
        for block in content or []:
            if isinstance(block, dict):
                texts.append((block.get("text", ""), bool(block.get("cache_control"))))

    add(request.get("system", ""))
    for m in request.get("messages", []):
        add(m.get("content", ""))
    out, so_far = [], ""
    for text, marked in texts:
        so_far += text
        if marked:
            out.append(so_far)
    return out


class FakeOpenAIServerWithHeaders(ScriptedJSONServer):
    """The OpenAI fake (chat completions and embeddings, with `OpenAIRules`), also accepting
    ``(status, body, headers)`` answers."""

    base_path = "/v1"

    def __init__(self, reply: Callable[[dict], Any], **kwargs: Any) -> None:
        super().__init__(reply, **kwargs)
        self.rules = OpenAIRules()

    def check(self, path: str, request: dict) -> tuple[int, dict] | None:
        if path.endswith("/embeddings"):
            # answered here; a scripted error (a (status, body[, headers]) answer) stands in for the service's
            scripted = self.reply(request)
            return scripted[:2] if isinstance(scripted, tuple) else self.rules.embeddings(request)
        return self.rules.check(request)

    def render(self, request: dict, text: str) -> dict:
        return self.rules.completion(request, text)


def error_body(kind: str, message: str) -> dict:
    """An Anthropic error body, e.g. ``error_body("overloaded_error", "Overloaded")``."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error_body(kind: str, message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _message(request: dict, text: str) -> dict:
    def chars(content: Any) -> int:
        if isinstance(content, str):
            return len(content)
        return sum(len(block.get("text", "")) for block in content or [] if isinstance(block, dict))

    system = request.get("system", "")
    prompt_chars = chars(system) + sum(chars(m.get("content", "")) for m in request.get("messages", []))
    return {
        "id": "msg_fake", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": text}] if text is not None else [],
        "model": request.get("model", "fake"), "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": prompt_chars // 4, "output_tokens": len(text or "") // 4},
    }
