"""A stochastic surrogate LLM: an OpenAI-compatible chat server on 127.0.0.1 with a fixed, seeded proposal
distribution, for measuring *search* (which parents, which context) without a real model.

Each reply edits the program under "# Current program" in the prompt with one SEARCH/REPLACE block:

* a local perturbation of one numeric literal of the evolvable region (floats ``x * exp(N(0, 0.25))`` or
  ``x + N(0, 0.05 + 0.1 |x|)``; ints by ±1, kept >= 1 when they were; integer literals are picked a
  sixth as often as floats, tiny floats a tenth), or
* a small structural edit: one operator or comparison of one line swapped (``+ -``, ``* /``, ``< <=``,
  ``min max``), which usually hurts and sometimes helps — as a model's guesses do.

The mix is 75/25, except that the surrogate *reads the prompt's lessons* ("constant tweaks: 12 tried,
4 improved ...") when there are any and shifts its mix towards the kind that has paid off, with Laplace
smoothing: the one way a prompt's content can change what it proposes, so "with/without lessons" measures
whether the lessons carry signal. Every reply starts with one line of prose (the change's explanation).

It also answers the engine's two review requests, recognised by their templates' fixed headings: a novelty
check (prompts/novelty_judge.j2, "# Novelty check") gets NOVEL with probability `NOVEL_SHARE`, else NOT NOVEL,
each with a one-line reason; a lessons request (prompts/lessons.j2, "# Lessons from recent changes") gets back
the tally lines it was given, as a faithful summariser would — so written lessons carry exactly the signal the
computed ones do, and "llm" lessons measure the mechanism, not a model's judgement.

Deterministic: one ``random.Random(seed)`` consumed in request order, so with one request in flight a run
is exactly repeatable. Standard library only.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import threading
import time
import tokenize
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["SurrogateServer", "answer", "propose"]

# The parent is the first ```python block after the heading (evaluator feedback before it is fenced as text).
_CURRENT = re.compile(r"^# Current program[^\n]*\n.*?^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_BLOCK = re.compile(r"# EVOLVE-BLOCK-START\n(?P<body>.*?)# EVOLVE-BLOCK-END", re.DOTALL)
_LESSON = re.compile(r"^- (?P<label>[^:]+): (?P<tried>\d+) tried, (?P<improved>\d+) improved", re.MULTILINE)
_LESSON_LINE = re.compile(r"^- [^:\n]+: \d+ tried, \d+ improved[^\n]*$", re.MULTILINE)
_SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", "<": "<=", "<=": "<", ">": ">=", ">=": ">",
          "min": "max", "max": "min"}
CONSTANT_SHARE = 0.75
NOVEL_SHARE = 0.3
_JUDGE_HEADING = "# Novelty check"
_LESSONS_HEADING = "# Lessons from recent changes"
# The lessons prompt's tallies: its "- " lines before the recent changes (whose quoted text is not read).
_TALLIES = re.compile(r"^# Lessons from recent changes\n(?P<body>.*?)(?:^The most recent changes|^Write )",
                      re.MULTILINE | re.DOTALL)


def _tokens(body: str) -> list[tokenize.TokenInfo]:
    try:
        return list(tokenize.generate_tokens(io.StringIO(body).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []


def _constant_share(prompt: str) -> float:
    """75 % constants, or the lessons' evidence (Beta(1, 1) smoothed improvement rates) when the prompt has it."""
    rates = {}
    for m in _LESSON.finditer(prompt):
        rates[m["label"]] = (int(m["improved"]) + 1) / (int(m["tried"]) + 2)
    if "constant tweaks" not in rates or "operator or comparison swaps" not in rates:
        return CONSTANT_SHARE
    c, o = rates["constant tweaks"] * CONSTANT_SHARE, rates["operator or comparison swaps"] * (1 - CONSTANT_SHARE)
    return min(0.95, max(0.05, c / (c + o)))


def _perturb(text: str, rng: random.Random) -> str:
    try:
        value = int(text)
    except ValueError:
        x = float(text)
        new = x * math.exp(rng.gauss(0.0, 0.25)) if rng.random() < 0.5 else x + rng.gauss(0.0, 0.05 + 0.1 * abs(x))
        text = repr(round(new, 6))
        return text if float(text) != x else repr(round(x + 0.01, 6))
    step = rng.choice((-1, 1))
    new_int = max(value + step, 1) if value >= 1 else value + step
    return str(new_int if new_int != value else value + 1)


def propose(prompt: str, rng: random.Random) -> str:
    """One reply to ``prompt``: prose, then a SEARCH/REPLACE block (or a refusal when there is nothing to edit)."""
    match = _CURRENT.search(prompt)
    if match is None:
        return "I could not find the current program in the prompt."
    block = _BLOCK.search(match["code"])
    body = block["body"] if block else match["code"]
    lines = body.splitlines()
    toks = _tokens(body)
    numbers = [t for t in toks if t.type == tokenize.NUMBER and not t.string.lower().startswith(("0x", "0o", "0b"))
               and "j" not in t.string.lower()]
    operators = [t for t in toks if t.string in _SWAPS and t.type in (tokenize.OP, tokenize.NAME)]
    constant = rng.random() < _constant_share(prompt)
    pool = numbers if (constant and numbers) or not operators else operators
    if not pool:
        return "The current program has nothing I can tune."
    # A model tunes parameters, not indices: integer literals get a sixth of a float's odds, tiny ones
    # (safety margins) a tenth.
    weights = [1.0 if t.type != tokenize.NUMBER else 0.15 if "." not in t.string and "e" not in t.string.lower()
               else 0.1 if 0 < abs(float(t.string)) < 1e-6 else 1.0 for t in pool]
    tok = rng.choices(pool, weights=weights)[0]
    row, (c0, c1) = tok.start[0] - 1, (tok.start[1], tok.end[1])
    line = lines[row]
    new = _perturb(tok.string, rng) if tok.type == tokenize.NUMBER else _SWAPS[tok.string]
    what = "Tune a constant" if tok.type == tokenize.NUMBER else "Swap an operator"
    replaced = line[:c0] + new + line[c1:]
    # Widen the SEARCH with following lines until it is unique in the program (apply_reply takes the first).
    end = row + 1
    while "\n".join(lines[row:end]) and match["code"].count("\n".join(lines[row:end])) > 1 and end < len(lines):
        end += 1
    search = "\n".join(lines[row:end])
    replace = "\n".join([replaced, *lines[row + 1:end]])
    return f"{what}: {tok.string} -> {new}.\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def answer(prompt: str, rng: random.Random) -> str:
    """The reply to any request the engine sends: a review (novelty check, lessons) or a proposal."""
    if prompt.startswith(_JUDGE_HEADING):
        if rng.random() < NOVEL_SHARE:
            return "NOVEL\nThe change alters the program's structure, not only a constant."
        return "NOT NOVEL\nOnly a constant or an operator differs."
    if prompt.startswith(_LESSONS_HEADING):
        match = _TALLIES.search(prompt)
        lines = [m.group(0) for m in _LESSON_LINE.finditer(match["body"])] if match else []
        return "\n".join(lines) if lines else "No lessons yet."
    return propose(prompt, rng)


class SurrogateServer:
    """``POST /v1/chat/completions`` answered by `answer` with one seeded RNG; start with `start`, stop with
    `close` (or use it as a context manager)."""

    def __init__(self, *, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
                with server._lock:
                    server.requests += 1
                    reply = answer(text, server._rng)
                data = json.dumps({
                    "id": "chatcmpl-surrogate", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "surrogate"),
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": reply}}],
                    "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(reply) // 4,
                              "total_tokens": (len(text) + len(reply)) // 4}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "SurrogateServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SurrogateServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
