"""The ``evoforge`` command line (docs/architecture.md, "The CLI").

Exit codes: 0 done, 1 run failed, 2 bad usage/config.

Errors users can cause are one line naming the file or flag and the fix; ``--debug`` shows the traceback.

Whatever goes to the terminal or out as JSON may hold a candidate's text (its stderr, exception messages,
artifacts, metric names): `_out` and `_json` pass it through `evoforge.prompts.sanitize` first, so no
escape sequence reaches the terminal and the JSON is strict and valid UTF-8.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Sequence

from evoforge.evaluators.types import ConfigError, EvoforgeError, StoreError, TaskError
from evoforge.prompts.sanitize import clean, json_safe, one_line

__all__ = ["main", "build_parser"]


def _out(text: object = "", *, file=None) -> None:
    """print() for anything that may carry candidate text: control characters shown as escapes."""
    print(clean(text), file=file or sys.stdout)


def _json(data: object) -> str:
    return json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number but got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 but got {value}")
    return value


def _task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="an OpenEvolve config (YAML) instead of the folder's config.yaml")
    parser.add_argument("--env", action="append", default=[], metavar="NAME", help=(
        "pass the host environment variable NAME to the evaluator (repeatable); no other variable "
        "of this environment reaches it, beside the task's [sandbox] pass_env"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evoforge", description=(
        "LLM-driven evolutionary algorithm discovery: evolve the EVOLVE-BLOCKs of a task's program "
        "with an LLM (or the offline mutation operator), keeping a MAP-Elites archive of elites."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a discovery run on a task", description=(
        "Start a discovery run. TASK is a task folder or a built-in task name; or, as OpenEvolve's command "
        "line takes them, an initial program and its evaluator: evoforge run PROGRAM EVALUATOR --config FILE."))
    run.add_argument("task", metavar="TASK")
    run.add_argument("evaluator", metavar="EVALUATOR", nargs="?", default=None,
                     help="with TASK an initial program file: the OpenEvolve evaluator that scores it")
    _task_options(run)
    run.add_argument("--iterations", type=_positive_int, default=None,
                     help="proposals to make (default 100, or an OpenEvolve config.yaml's max_iterations)")
    run.add_argument("--llm", action="append", metavar="SPEC", help=(
        "offline | openai:MODEL | anthropic:MODEL | openai-compatible:MODEL@BASE_URL, optional *WEIGHT; "
        "repeat for a weighted ensemble (default: a key in the environment picks its provider, else offline)"))
    run.add_argument("--executor", default="local", help="local | ray (default local)")
    run.add_argument("--ray-address", default=None, help="Ray cluster address (auto, ray://…); default: local Ray")
    run.add_argument("--sandbox", default="process", help="process | docker (default process)")
    run.add_argument("--concurrency", type=_positive_int, default=None,
                     help="candidates in flight, LLM call through evaluation "
                          "(default: 2 × cores offline, 8 with an LLM)")
    run.add_argument("--eval-slots", type=_positive_int, default=None, help="evaluations at once (default: cores)")
    run.add_argument("--seed", type=int, default=None, help="random seed (default 0, or config.yaml's random_seed)")
    run.add_argument("--out", type=Path, default=None, help="run directory (default runs/<task>-<timestamp>)")
    run.add_argument("--max-cost-usd", type=float, default=None, help="stop when LLM spend reaches this")
    run.add_argument("--max-time", type=float, default=None, metavar="SECONDS", help="stop after this long")
    run.add_argument("--max-tokens", type=_positive_int, default=None, metavar="N",
                     help="stop when the LLM calls' prompt + completion tokens reach N")
    run.add_argument("--dry-run", action="store_true", help=(
        "print the resolved config and an estimate of tokens and cost per iteration; call nothing, "
        "create no run directory"))
    run.add_argument("--quiet", action="store_true", help="no live progress display")
    run.add_argument("--baseline", default=None, metavar="KIND", help=(
        "a control run at the same budget: best-of-n (every proposal from the initial program, no archive "
        "context) or random-parent (parents uniform over every valid program)"))

    resume = sub.add_parser("resume", help="continue a stopped or killed run",
                            description="Continue a run from its run.db, to its original target, "
                                        "or N iterations past what it has with --iterations N.")
    resume.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    resume.add_argument("--iterations", type=_positive_int, default=None, help="proposals to add")
    resume.add_argument("--executor", default=None, help="local | ray (default: the run's own)")
    resume.add_argument("--ray-address", default=None, help="Ray cluster address (default: the run's own)")
    resume.add_argument("--quiet", action="store_true")

    ev = sub.add_parser("eval", help="evaluate one program file exactly as a run does",
                        description="Evaluate PROGRAM_FILE with TASK's evaluator, in the sandbox a run uses.")
    ev.add_argument("task", metavar="TASK", help="a task folder, a built-in task, or an OpenEvolve evaluator file")
    ev.add_argument("program", metavar="PROGRAM_FILE", type=Path)
    _task_options(ev)
    ev.add_argument("--sandbox", default="process", help="process | docker")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--heldout", action="store_true",
                    help="also run the evaluator's evaluate_heldout (private held-out data; [heldout] timeout_s)")

    show = sub.add_parser("show", help="summarise a run: best, QD stats, islands, costs")
    show.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    show.add_argument("--top", type=_positive_int, default=5, help="show the K best programs")
    show.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="write a self-contained HTML report of a run",
                            description="Render RUN_DIR as one HTML page (plots embedded): best program, "
                                        "progress, archive heatmap, lineage of the best, costs, failures.")
    report.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    report.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default RUN_DIR/report.html)")

    replay = sub.add_parser("replay", help="re-run a run from its stored replies, calling no model",
                            description="Re-run RUN_DIR's proposals from the replies stored in its run.db, into a "
                                        "new run directory: the same edits against a changed evaluator, sandbox "
                                        "or engine. No model is called; says where the stored replies run out.")
    replay.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    replay.add_argument("--out", type=Path, required=True, help="the new run directory")
    replay.add_argument("--iterations", type=_positive_int, default=None,
                        help="proposals to replay (default: as many as the original made)")
    replay.add_argument("--task", default=None, help="task folder to evaluate with (default: the original's)")
    replay.add_argument("--sandbox", default=None, help="process | docker (default: the original's)")
    replay.add_argument("--executor", default=None, help="local | ray (default: the original's)")
    replay.add_argument("--concurrency", type=_positive_int, default=None,
                        help="candidates in flight (default: the original's; 1 replays exactly)")
    replay.add_argument("--quiet", action="store_true")

    export = sub.add_parser("export", help="write a run's proposals as JSONL for fine-tuning the proposer",
                            description="Write RUN_DIR's proposals as JSONL (prompt, completion, score, parent "
                                        "score, improvement): sft (improving proposals), dpo (preference pairs of "
                                        "siblings of the same parent) or rewards (every proposal). See README.")
    export.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    export.add_argument("--format", required=True, choices=("sft", "dpo", "rewards"))
    export.add_argument("-o", "--output", type=Path, default=None,
                        help="JSONL file (default RUN_DIR/export-FORMAT.jsonl)")

    sub.add_parser("tasks", help="list the built-in tasks")

    init = sub.add_parser("init", help="scaffold a custom task folder")
    init.add_argument("name", metavar="NAME")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from evoforge.engine.session import plan_run, start_run

    # The options' defaults live in plan_run, shared with the Python API (evoforge.run).
    plan = plan_run(args.task, iterations=args.iterations, llm=args.llm, seed=args.seed,
                    concurrency=args.concurrency, eval_slots=args.eval_slots, executor=args.executor,
                    ray_address=args.ray_address, sandbox=args.sandbox, max_cost_usd=args.max_cost_usd,
                    max_time_s=args.max_time, max_tokens=args.max_tokens, baseline=args.baseline,
                    evaluator=args.evaluator, config_file=args.config, pass_env=args.env)
    config, task = plan.config, plan.task
    if plan.note:
        print(f"evoforge: {plan.note}", file=sys.stderr)
    for line in plan.notices:
        print(f"evoforge: {line}", file=sys.stderr)
    _say_missing_protections(args.sandbox)
    if args.dry_run:
        from evoforge.engine.dryrun import dry_run_report
        print(dry_run_report(config, task, out=str(args.out) if args.out else None))
        return 0
    outcome = _with_reporter(args.quiet, lambda reporter: start_run(config, out=args.out, reporter=reporter))
    return _report(outcome)


def _cmd_resume(args: argparse.Namespace) -> int:
    from evoforge.engine.session import resume_run

    outcome = _with_reporter(args.quiet, lambda reporter: resume_run(
        args.run_dir, more_iterations=args.iterations, reporter=reporter,
        executor=args.executor, ray_address=args.ray_address))
    return _report(outcome)


def _with_reporter(quiet: bool, body):
    if quiet:
        return body(None)
    from evoforge.engine.progress import RichReporter
    with RichReporter() as reporter:
        return body(reporter)


def _report(outcome) -> int:
    from evoforge.engine.progress import describe

    s = outcome.snapshot
    _out(f"run directory: {outcome.run_dir}")
    _out(f"stopped: {one_line(s.stop_reason, max_chars=2000)}")
    _out(f"iterations: {s.done}")
    _out(f"best score: {s.best_score if s.best_score is not None else 'n/a'} "
         f"(initial program: {s.initial_score if s.initial_score is not None else 'n/a'})")
    _out(describe(s))
    best = sorted(Path(outcome.run_dir).glob("best_program*"))   # best_program.py, .c, or a folder
    _out(f"best program: {best[0] if best else Path(outcome.run_dir) / 'best_program.py'}")
    return 0


def _say_missing_protections(sandbox: str) -> None:
    """A protection the process sandbox cannot apply here is said out loud, in one line."""
    if sandbox != "process":
        return
    from evoforge.sandbox.protections import missing_line, probe_protections

    line = missing_line(probe_protections())
    if line:
        print(f"evoforge: {line}", file=sys.stderr)


def _cmd_replay(args: argparse.Namespace) -> int:
    from evoforge.engine.replay import replay_run

    outcome = _with_reporter(args.quiet, lambda reporter: replay_run(
        args.run_dir, out=args.out, iterations=args.iterations, task=args.task, sandbox=args.sandbox,
        executor=args.executor, concurrency=args.concurrency, reporter=reporter))
    _report(outcome)
    print(outcome.describe())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from evoforge.engine.export import export_run

    path, count = export_run(args.run_dir, args.format, args.output)
    print(f"wrote {count} {args.format} record(s) to {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from evoforge.engine.session import evaluate_file

    _say_missing_protections(args.sandbox)
    result = evaluate_file(args.task, args.program, sandbox=args.sandbox, heldout=args.heldout, pass_env=args.env,
                           config_file=args.config)
    if args.json:
        print(_json(result.to_dict()))
    else:
        _out(f"status: {result.status}")
        _out(f"score: {result.score}")
        for title, values in (("features", result.features), ("metrics", result.metrics)):
            for name, value in sorted(values.items()):
                _out(f"{title[:-1]} {one_line(name, max_chars=120)}: {value:.6g}")
        for name, text in sorted(result.artifacts.items()):
            _out(f"{one_line(name, max_chars=120)}: {text}")
        for name, value in sorted(result.private.items()):   # held-out: for the user, never for a prompt
            shown = f"{value:.6g}" if isinstance(value, float) else one_line(str(value), max_chars=400)
            _out(f"private {one_line(name, max_chars=120)}: {shown}")
        if result.fingerprint:   # the evaluator's probe ran (evaluators.fingerprint)
            _out(f"functional fingerprint: {result.fingerprint}")
        if result.status != "ok" and result.stderr.strip():
            _out("stderr (tail):\n" + result.stderr[-2000:])
        _out(f"evaluation took {result.eval_s:.3f} s")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from evoforge.engine.summary import summarize, format_summary

    summary = summarize(args.run_dir, top=args.top)
    if args.json:
        print(_json(summary))
    else:
        _out(format_summary(summary))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from evoforge.engine.report import write_report

    print(f"wrote {write_report(args.run_dir, args.output)}")
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from evoforge.engine.task import builtin_tasks, load_task

    for name, path in builtin_tasks().items():
        try:
            first = load_task(path).description.strip().splitlines()[0] if load_task(path).description else ""
        except EvoforgeError as exc:
            first = f"(broken: {exc})"
        print(f"{name:28s} {first}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from evoforge.engine.scaffold import scaffold_task

    path = scaffold_task(args.name)
    print(f"created {path}/ (initial_program.py, evaluator.py, task.toml, README.md)")
    print(f"try it: evoforge eval {path} {path}/initial_program.py && evoforge run {path} --iterations 50")
    return 0


_COMMANDS = {"run": _cmd_run, "resume": _cmd_resume, "eval": _cmd_eval, "show": _cmd_show,
             "tasks": _cmd_tasks, "report": _cmd_report, "init": _cmd_init, "replay": _cmd_replay,
             "export": _cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, TaskError, StoreError) as exc:
        if args.debug:
            traceback.print_exc()
        _out(f"evoforge: error: {exc}", file=sys.stderr)
        return 2
    except EvoforgeError as exc:
        if args.debug:
            traceback.print_exc()
        _out(f"evoforge: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("evoforge: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
