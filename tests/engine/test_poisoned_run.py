"""A run whose candidates write hostile text — a lone surrogate (``chr(0xDCFF)``), NUL, terminal escapes,
bidi overrides — in exception messages, artifacts and metric names, through the real openai SDK talking
HTTP to the fake server on 127.0.0.1 (issue 12).

The text is stored as-is (run.db is evidence) and sanitised wherever it leaves: the next prompts (the
SDK serialises the request as UTF-8, which a lone surrogate cannot be — before the fix the run, and
every resume of it, crashed there), events.jsonl, `evoforge show --json`, the HTML report, and the
terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoforge.archive.store import Store
from evoforge.engine.cli import main
from evoforge.engine.config import RunConfig
from evoforge.engine.session import resume_run, start_run
from fakes.openai_server import FakeOpenAIServer
from fakes.replies import raise_a, user_prompt
from fakes.tasks import TINY_PROGRAM, write_tiny_task

SURROGATE = chr(0xDCFF)

# The tiny program plus an evolvable hook whose output the evaluator passes on as it is, as evaluators
# that report what a candidate says about itself do.
PROGRAM = TINY_PROGRAM.replace("# EVOLVE-BLOCK-END", "def extra():\n    return {}\n# EVOLVE-BLOCK-END")
EVALUATOR = '''import importlib.util


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    extra = module.extra()
    ys = module.run()
    error = sum(abs(float(y) - 3.0 * x) for x, y in enumerate(ys)) / len(ys)
    return {"score": -error, "features": {"slope": (float(ys[-1]) - float(ys[0])) / 9.0},
            "metrics": {"error": error, **extra.get("metrics", {})},
            "artifacts": {"worst": f"f(9) = {float(ys[-1]):.4g}", **extra.get("artifacts", {})}}
'''

# Edits as the LLM sends them: plain ASCII source that builds the hostile text at run time.
NASTY = 'chr(0xDCFF) + chr(0) + chr(27) + "[2J" + chr(27) + "]0;pwned" + chr(7) + chr(0x202E)'
RAISES = ("<<<<<<< SEARCH\n    return {}\n=======\n"
          f"    raise ValueError('poisoned ' + {NASTY})\n>>>>>>> REPLACE\n")
REPORTS = ("<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 3.0\n>>>>>>> REPLACE\n"
           "<<<<<<< SEARCH\n    return {}\n=======\n"
           f"    return {{'metrics': {{'m' + {NASTY}: 2.0}},"
           f" 'artifacts': {{'note' + chr(0xDCFF): 'said ' + {NASTY}}}}}\n"
           ">>>>>>> REPLACE\n")


def _script():
    answers = [RAISES, REPORTS]

    def reply(request):
        return answers.pop(0) if answers else raise_a(request)
    return reply


def _config(task: Path, server: FakeOpenAIServer, iterations: int) -> RunConfig:
    return RunConfig(task=str(task), iterations=iterations, concurrency=1, seed=3, full_rewrite_share=0.0,
                     crossover_share=0.0, llm=({"provider": "openai-compatible", "model": "fake",
                                                "base_url": server.base_url, "max_retries": 0},))


def _assert_clean(text: str) -> None:
    text.encode("utf-8")  # raises on a lone surrogate
    for char in ("\x00", "\x1b", "\x07", "\u202e"):
        assert char not in text


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """The poisoned run, then a resume of it: (run_dir, server requests of the run, of the resume)."""
    root = tmp_path_factory.mktemp("poisoned")
    task = write_tiny_task(root / "tiny", islands=1, program=PROGRAM, evaluator=EVALUATOR)
    run_dir = root / "run"
    with FakeOpenAIServer(_script()) as server:
        outcome = start_run(_config(task, server, 4), out=run_dir)
        first = list(server.requests)
        assert outcome.snapshot.done == 4 and outcome.snapshot.stop_reason == "iterations reached"
        resumed = resume_run(run_dir, more_iterations=3)
        assert resumed.snapshot.done == 7 and resumed.snapshot.stop_reason == "iterations reached"
        second = server.requests[len(first):]
    return run_dir, first, second


def test_hostile_text_is_stored_as_is(poisoned):
    run_dir, _, _ = poisoned
    with Store.open(run_dir / "run.db", readonly=True) as store:
        rows = list(store.candidates(where="iteration > 0"))
    crashed = next(r for r in rows if r.status == "error")
    assert "poisoned " + SURROGATE + "\x00\x1b[2J" in crashed.artifacts["error"]
    reporter = next(r for r in rows if r.status == "ok" and len(r.metrics) > 1)
    assert "m" + SURROGATE + "\x00\x1b[2J\x1b]0;pwned\x07\u202e" in reporter.metrics
    assert reporter.artifacts["note" + SURROGATE].startswith("said " + SURROGATE + "\x00")


def test_later_prompts_and_the_resume_send_it_quoted_and_clean(poisoned):
    _, first, second = poisoned
    assert len(first) == 4 and len(second) == 3   # every iteration reached the server: nothing crashed
    for request in first + second:
        for message in request["body"]["messages"]:
            _assert_clean(message["content"])
    prompts = [user_prompt(r["body"]) for r in first[1:] + second]
    escaped = "poisoned \\udcff\\x00\\x1b[2J\\x1b]0;pwned\\x07\\u202e"
    assert any(escaped in p for p in prompts)                       # the failure note, quoted
    assert any("```text\nerror: " in p and escaped in p.split("```text\nerror: ", 1)[1] for p in prompts)
    # the resume prompts from run.db: the best parent's hostile metric name, and its artifact quoted
    resumed = user_prompt(second[0]["body"])
    assert "m\\udcff\\x00\\x1b[2J\\x1b]0;pwned\\x07\\u202e=2" in resumed
    assert "```text\nsaid \\udcff\\x00" in resumed


def test_events_jsonl_is_strict_clean_json(poisoned):
    run_dir, _, _ = poisoned
    lines = (run_dir / "events.jsonl").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 8  # the initial program and 7 iterations
    events = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) for line in lines]
    names = {name for e in events for name in e["metrics"]}
    assert "m\\udcff\\x00\\x1b[2J\\x1b]0;pwned\\x07\\u202e" in names
    for line in lines:
        _assert_clean(line)
        assert "\\u001b" not in line and "\\udcff" not in line.replace("\\\\udcff", "")


def test_show_json_and_report_are_clean(poisoned, capsys, tmp_path):
    run_dir, _, _ = poisoned
    assert main(["show", str(run_dir), "--json"]) == 0
    out = capsys.readouterr().out
    _assert_clean(out)
    json.loads(out)
    assert main(["report", str(run_dir), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_bytes().decode("utf-8")
    _assert_clean(html)
    assert "m\\udcff\\x00\\x1b[2J\\x1b]0;pwned\\x07\\u202e" in html        # the best program's metric name
    assert "said \\udcff\\x00" in html and "poisoned \\udcff" in html        # its artifact, and the failure


def test_eval_prints_clean_text_and_json(tmp_path, capsys):
    task = write_tiny_task(tmp_path / "tiny", islands=1, program=PROGRAM, evaluator=EVALUATOR)
    program = tmp_path / "candidate.py"
    program.write_text(PROGRAM.replace("    return {}\n", "    raise ValueError('poisoned ' + " + NASTY + ")\n"))
    assert main(["eval", str(task), str(program)]) == 0
    text = capsys.readouterr().out
    _assert_clean(text)
    assert "status: error" in text and "poisoned \\udcff\\x00\\x1b[2J" in text
    assert main(["eval", str(task), str(program), "--json"]) == 0
    out = capsys.readouterr().out
    _assert_clean(out)
    data = json.loads(out)
    assert data["status"] == "error" and "poisoned \\udcff\\x00\\x1b[2J" in data["artifacts"]["error"]


def test_a_reply_holding_a_lone_surrogate_is_escaped_at_the_llm_seam(tmp_path):
    """JSON can carry ``"\\udcff"``; the decoded reply used to crash the run in ast.parse (then SQLite)."""
    task = write_tiny_task(tmp_path / "tiny", islands=1)
    edit = f"<<<<<<< SEARCH\n    a = 1.5\n=======\n    a = 2.0  # {SURROGATE} copied from an error\n>>>>>>> REPLACE\n"
    with FakeOpenAIServer(lambda request: edit) as server:
        outcome = start_run(_config(task, server, 2), out=tmp_path / "run")
    assert outcome.snapshot.done == 2
    with Store.open(tmp_path / "run" / "run.db", readonly=True) as store:
        child = next(iter(store.candidates(where="iteration = 1")))
    assert child.status == "ok" and "a = 2.0  # \\udcff copied from an error" in child.code
    assert "\\udcff" in child.edit and SURROGATE not in child.edit


def test_the_progress_line_shows_text_and_never_acts_on_it():
    """Whatever text reaches the live line is shown as text: no escape sequence, no rich markup."""
    import io

    from rich.console import Console

    from evoforge.engine.loop import Snapshot
    from evoforge.engine.progress import RichReporter, describe

    snapshot = Snapshot(done=1, target=2, statuses={"ok": 1, "[bold red]x\x1b[2J" + SURROGATE: 1})
    line = describe(snapshot)
    assert "\\x1b[2J\\udcff" in line and "\n" not in line
    screen = io.StringIO()
    with RichReporter(Console(file=screen, force_terminal=False, width=300)) as reporter:
        reporter.update(snapshot)
    shown = screen.getvalue()
    _assert_clean(shown)
    assert "[bold red]x\\x1b[2J\\udcff=1" in shown
