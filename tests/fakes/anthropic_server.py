"""A fake Anthropic Messages API server on 127.0.0.1, speaking the real wire format.

``reply(request_json)`` scripts each answer and returns one of

* ``str``: a successful reply with that text (``POST /v1/messages`` → a ``message`` object);
* ``(status, body_dict)``: an error (or any raw JSON body), e.g.
  ``(429, error_body("rate_limit_error", "slow down"))``;
* ``(status, body_dict, headers_dict)``: the same with extra response headers
  (``{"Retry-After": "0"}``).

Every request is kept in ``requests`` for assertions. `ScriptedJSONServer` is the shared machinery
and `FakeOpenAIServerWithHeaders` gives the OpenAI fake the same three-tuple form (headers), which
``tests/fakes/openai_server.py`` does not have.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from fakes.openai_server import _completion

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
                answer = server.reply(body)
                headers: dict[str, str] = {}
                if isinstance(answer, tuple):
                    status, payload, *rest = answer
                    if rest:
                        headers = dict(rest[0])
                else:
                    status, payload = 200, server.render(body, answer)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
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


class FakeAnthropicServer(ScriptedJSONServer):
    """``base_url`` is the origin: the SDK appends ``/v1/messages`` itself."""

    def render(self, request: dict, text: str) -> dict:
        return _message(request, text)


class FakeOpenAIServerWithHeaders(ScriptedJSONServer):
    """The OpenAI chat-completions fake, also accepting ``(status, body, headers)`` answers."""

    base_path = "/v1"

    def render(self, request: dict, text: str) -> dict:
        return _completion(request, text)


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
