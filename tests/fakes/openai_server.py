"""A fake OpenAI-compatible server on 127.0.0.1, speaking the real wire format and enforcing the
rules the real service enforces, so a regression fails a test rather than a user's run:

* reasoning models (ids starting ``o1``, ``o3``, ``o4``, ``gpt-5`` — not ``gpt-5-chat``) answer
  ``max_tokens`` and any temperature but 1 with the real 400 bodies (``unsupported_parameter`` /
  ``unsupported_value``); other models answer ``reasoning_effort`` with ``unsupported_parameter``.
  Reasoning models spend hidden reasoning tokens (by ``reasoning_effort``) inside
  ``max_completion_tokens``, reported as ``completion_tokens_details.reasoning_tokens``;
* prompt caching as OpenAI does it: a prompt sharing a prefix of at least 1024 tokens with an
  earlier prompt to the same model reports that prefix, in 128-token steps, as
  ``prompt_tokens_details.cached_tokens`` (the fake counts a token as 4 characters);
* ``POST /v1/embeddings``: deterministic unit vectors from the text, with usage.

``reply(request_json) -> str | (status, body_dict)`` scripts each chat answer; every request is
kept in ``requests`` for assertions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = ["FakeOpenAIServer", "OpenAIRules", "is_reasoning_model"]

_REASONING_TOKENS = {"minimal": 0, "low": 64, "medium": 256, "high": 1024}


def is_reasoning_model(model: str) -> bool:
    """The fake's own list (deliberately not the engine's table, so the two check each other)."""
    return model.startswith(("o1", "o3", "o4", "gpt-5")) and not model.startswith("gpt-5-chat")


def _error(message: str, param: str, code: str) -> tuple[int, dict]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


class OpenAIRules:
    """The service's rules and its prefix cache, shared by both OpenAI fakes."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def check(self, request: dict) -> tuple[int, dict] | None:
        """The 400 the real service answers ``request`` with, or None."""
        model = str(request.get("model", ""))
        if not is_reasoning_model(model):
            if "reasoning_effort" in request:
                return _error("Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                              "reasoning_effort", "unsupported_parameter")
            return None
        if "max_tokens" in request:
            return _error("Unsupported parameter: 'max_tokens' is not supported with this model. "
                          "Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
        temperature = request.get("temperature")
        if temperature is not None and temperature != 1:
            return _error(f"Unsupported value: 'temperature' does not support {temperature} with this model. "
                          f"Only the default (1) value is supported.", "temperature", "unsupported_value")
        effort = request.get("reasoning_effort")
        if effort is not None and effort not in _REASONING_TOKENS:
            return _error(f"Invalid value: '{effort}'. Supported values are: 'minimal', 'low', 'medium', "
                          f"and 'high'.", "reasoning_effort", "invalid_value")
        return None

    def cached_tokens(self, request: dict) -> int:
        """Tokens of the longest prefix shared with an earlier prompt, if >= 1024, in 128-token steps."""
        text = "\x00".join(str(m.get("content", "")) for m in request.get("messages", []))
        with self._lock:
            seen = self._seen.setdefault(str(request.get("model", "")), [])
            shared = max((len(os.path.commonprefix([text, earlier])) for earlier in seen), default=0)
            seen.append(text)
        tokens = shared // 4
        return 0 if tokens < 1024 else 1024 + (tokens - 1024) // 128 * 128

    def completion(self, request: dict, content: str) -> dict:
        return _completion(request, content, self)

    def embeddings(self, request: dict) -> tuple[int, dict]:
        texts = request.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return _error("'input' : input must be a non-empty string or array of strings", "input", "invalid_value")
        dims = int(request.get("dimensions") or 8)
        data = [{"object": "embedding", "index": i, "embedding": _vector(t, dims)} for i, t in enumerate(texts)]
        tokens = sum(len(t) // 4 for t in texts)
        return 200, {"object": "list", "data": data, "model": request.get("model", "fake"),
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector: equal texts embed equally, different ones differently."""
    raw = [int.from_bytes(hashlib.sha256(f"{i}:{text}".encode()).digest()[:4], "big") / 2**31 - 1.0
           for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class FakeOpenAIServer:
    def __init__(self, reply: Callable[[dict], Any], *, latency_s: float = 0.0) -> None:
        self.reply = reply
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.rules = OpenAIRules()
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
                                            "authorization": self.headers.get("Authorization")})
                if server.latency_s:
                    time.sleep(server.latency_s)
                if self.path.endswith("/embeddings"):
                    status, payload = server.rules.embeddings(body)
                else:
                    refused = server.rules.check(body)
                    if refused is not None:
                        status, payload = refused
                    else:
                        answer = server.reply(body)
                        status, payload = (answer if isinstance(answer, tuple)
                                           else (200, server.rules.completion(body, answer)))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _completion(request: dict, content: str, rules: OpenAIRules | None = None) -> dict:
    prompt_chars = sum(len(m.get("content", "")) for m in request.get("messages", []))
    prompt_tokens = prompt_chars // 4
    completion_tokens = len(content) // 4
    finish = "stop"
    reasoning = 0
    if is_reasoning_model(str(request.get("model", ""))):
        reasoning = _REASONING_TOKENS[request.get("reasoning_effort") or "medium"]
        limit = request.get("max_completion_tokens")
        if limit is not None and reasoning + completion_tokens > limit:
            # The budget ran out: reasoning first, so the visible answer is what is left (maybe nothing).
            reasoning = min(reasoning, limit)
            visible = max(limit - reasoning, 0) * 4
            content, finish = content[:visible], "length"
            completion_tokens = len(content) // 4
        completion_tokens += reasoning
    cached = min(rules.cached_tokens(request), prompt_tokens) if rules is not None else 0
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": request.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
    }
