"""A fake OpenAI-compatible chat-completions server on 127.0.0.1 with a fixed reply latency.

It stands in for a slow remote model so that the benchmarks measure the *pipeline*, not a model:
every reply is a valid SEARCH/REPLACE edit of the program under "# Current program" in the prompt
(evoforge's and OpenEvolve's templates both use that heading), changing one numeric constant of
the evolvable region to a value never used before — so every child is new (no duplicate rejections)
and every child parses and evaluates.

Run it as its own process (``python -m benchmarks.fake_llm --latency-s 0.5``) so that serving
requests never competes with the engine under test for the GIL; it prints ``PORT <n>`` when ready.
It imports only the standard library, so OpenEvolve's separate virtual environment needs nothing
from ours.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["make_edit", "serve", "FakeLLMServer"]

# The heading before the parent program: "# Current program (score 1.2)" (evoforge) or
# "# Current Program" (OpenEvolve; its "# Current Program Information" section comes first).
# The program's own fence (```python); the evaluator feedback above it is fenced as ```text.
_CURRENT = re.compile(r"^#+ *Current program(?! information)[^\n]*\n.*?^```python\n(?P<code>.*?)^```",
                      re.IGNORECASE | re.MULTILINE | re.DOTALL)
_ASSIGN = re.compile(r"^(?P<lhs>[ \t]*[A-Za-z_]\w*[ \t]*=[ \t]*)(?P<value>-?\d+(?:\.\d+)?(?:e-?\d+)?)[ \t]*$",
                     re.MULTILINE)
_BLOCK = re.compile(r"# EVOLVE-BLOCK-START\n(?P<body>.*?)# EVOLVE-BLOCK-END", re.DOTALL)


def make_edit(prompt_text: str, serial: int, rng: random.Random) -> str:
    """A SEARCH/REPLACE reply changing one constant of the current program's evolvable region.

    ``serial`` is appended to the new value's digits, so no two replies produce the same child.
    With no recognisable program or constant the reply says so (the engine rejects it, as it would
    a confused model).
    """
    match = _CURRENT.search(prompt_text)
    if match is None:
        return "I could not find the current program in the prompt."
    code = match.group("code")
    block = _BLOCK.search(code)
    region = block.group("body") if block else code
    lines = [m for m in _ASSIGN.finditer(region)]
    if not lines:
        return "The current program has no numeric constant to tune."
    line = rng.choice(lines)
    # Values stay in a sane range (a perturbation of the old one) and end in the serial's digits.
    old = float(line.group("value"))
    new = f"{old + rng.uniform(-0.5, 0.5):.3f}{serial:07d}"
    search = line.group(0)
    replace = f"{line.group('lhs')}{new}"
    return (f"Tune a constant ({line.group('lhs').strip()} {old:g} -> {float(new):g}).\n\n"
            f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n")


def _completion(request: dict, content: str) -> dict:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    return {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
        "model": request.get("model", "bench"),
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4,
                  "total_tokens": prompt_chars // 4 + len(content) // 4},
    }


class FakeLLMServer:
    """The server object; ``serve_forever`` in a thread, or use :func:`serve` from the command line."""

    def __init__(self, *, latency_s: float = 0.0, seed: int = 0, port: int = 0) -> None:
        self.latency_s = latency_s
        self.requests = 0
        self.first_request_at: float | None = None
        self._serial = itertools.count(1)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server: clients reuse connections
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms) and the "instant" server would add 40 ms to every reply.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                """``GET /stats``: how many requests, and the wall-clock (epoch) time of the first."""
                with server._lock:
                    data = json.dumps({"requests": server.requests,
                                       "first_request_at": server.first_request_at}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                started = time.monotonic()
                text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
                with server._lock:
                    server.requests += 1
                    if server.first_request_at is None:
                        server.first_request_at = time.time()
                    reply = make_edit(text, next(server._serial), server._rng)
                # The latency is the time a model takes; the edit's own cost counts towards it.
                remaining = server.latency_s - (time.monotonic() - started)
                if remaining > 0:
                    time.sleep(remaining)
                data = json.dumps(_completion(body, reply)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # 16+ clients connecting at once must not be refused

        self._httpd = Server(("127.0.0.1", port), Handler)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_llm", description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.0, help="seconds per reply")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = FakeLLMServer(latency_s=args.latency_s, seed=args.seed, port=args.port)
    print(f"PORT {server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    serve(sys.argv[1:])
