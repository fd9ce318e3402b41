"""`evoforge init NAME`: a working task folder to start from."""

from __future__ import annotations

from pathlib import Path

from evoforge.evaluators.types import ConfigError

__all__ = ["scaffold_task"]

_PROGRAM = '''"""Initial program for the {name} task. Only the EVOLVE-BLOCK changes during a run."""

import math

# EVOLVE-BLOCK-START
def solve(x: float) -> float:
    """Approximate sin(x) on [0, pi] (a toy problem: replace with yours)."""
    return x - x ** 3 / 6.0
# EVOLVE-BLOCK-END


def run(xs):
    return [solve(x) for x in xs]
'''

_EVALUATOR = '''"""Evaluator for the {name} task: evaluate(program_path) -> dict.

What it may return: "The task contract" in evoforge's docs/architecture.md.

It runs inside evoforge's sandbox with a temporary working directory; read data files relative to
this file (Path(__file__).parent), not the working directory.

The candidate is never imported here. `run_candidate` imports it in a nested process, calls its
run() there and hands back plain data (numbers, lists, dicts), so nothing the candidate does can
change this evaluator: a candidate that sets `math.sin = lambda x: 0.0` patches only its own copy
of `math`, and is scored against the real sine like any other.
"""

import math

from evoforge.evaluators import run_candidate

XS = [math.pi * i / 100 for i in range(101)]


def evaluate(program_path):
    # A candidate that raises, crashes, hangs past timeout_s or returns something that is not plain
    # data raises a CandidateError here; evoforge records it as error / timeout / invalid.
    ys = run_candidate(program_path, "run", XS, timeout_s=5)
    if not isinstance(ys, (list, tuple)) or len(ys) != len(XS):
        return {{"status": "invalid", "error": f"run() must return {{len(XS)}} numbers"}}
    if not all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in ys):
        return {{"status": "invalid", "error": "run() must return plain numbers"}}
    errors = [abs(float(y) - math.sin(x)) for x, y in zip(XS, ys)]
    if not all(math.isfinite(e) for e in errors):
        return {{"status": "invalid", "error": "non-finite output"}}
    max_error = max(errors)
    worst = XS[errors.index(max_error)]
    return {{
        "score": -max_error,                       # higher is better
        "features": {{"mean_error": sum(errors) / len(errors)}},
        "metrics": {{"max_error": max_error}},
        "artifacts": {{"worst_case": f"largest error {{max_error:.3g}} at x = {{worst:.3f}}"}},
    }}
'''

_README = '''# {name}

A task folder for evoforge, made by `evoforge init {name}`:

- `initial_program.py` -- the starting program; only the region between `# EVOLVE-BLOCK-START` and
  `# EVOLVE-BLOCK-END` changes during a run.
- `evaluator.py` -- `evaluate(program_path) -> dict` scores one candidate (`score`, higher is better,
  plus `features`, `metrics`, `artifacts`).
- `task.toml` -- the description the LLM sees, the archive's behaviour descriptors, limits.

Try it:

    evoforge eval {name} {name}/initial_program.py
    evoforge run {name} --iterations 50

## Why the evaluator never imports the candidate

Candidates are written by an LLM, and an LLM that is rewarded for a score finds the cheapest way to
the score. An evaluator that imports the candidate shares one interpreter with it, so the candidate
can patch what the evaluator uses: a candidate that runs `math.sin = lambda x: 0.0` makes an
in-process evaluator compare 0 with 0 and score a perfect `-0.0` (the initial program honestly
scores about -2.03). So `evaluator.py` calls the candidate through
`evoforge.evaluators.run_candidate(program_path, "run", ...)`: the candidate runs in its own nested
process, isolated like the evaluator itself, and only plain data comes back. Keep it that way when
you change the evaluator; for many calls to one candidate, `evoforge.evaluators.CandidateSession`
keeps one process alive.
'''

_TOML = '''# Task folder for evoforge (see README: "The task contract"). Every key has a default.
name = "{name}"
# The description goes into every prompt: say what evolves, the signature, the rules and the score.
description = """
Evolve solve(x) so that it approximates sin(x) on [0, pi] as closely as possible.
Score: minus the largest absolute error over 101 points (higher is better).
"""
objective = "maximize"                 # maximize | minimize (of score)
initial_program = "initial_program.py"  # the starting program (EVOLVE-BLOCKs evolve)
evaluator = "evaluator.py"             # defines evaluate(program_path) -> dict
files = []                             # extra files the evaluator reads, relative to this folder
language = "python"                    # from the program's suffix; set it when the suffix says nothing
private = ["heldout_*"]                # metric/artifact names stored and shown but never put into a prompt

[archive]
kind = "grid"                          # grid | cvt
islands = 2                            # independent sub-populations, ring migration between them
migration_interval = 20                # proposals between migrations
cvt_cells = 64                         # only for kind = "cvt"
qd_offset = 10.0                       # added to each elite's score in the QD-score (make scores > 0)
exploit_ratio = 0.9                    # chance a parent comes from the island's top elites (else any elite)
top_fraction = 0.2                     # the "top elites": this best fraction of the island's elites
num_inspirations = 3                   # other elites shown to the LLM next to the parent
parent_selection = "exploit"           # exploit | power_law | weighted | uniform
power_law_alpha = 1.0                  # power_law: P(rank r) ~ r^-alpha
weighted_lambda = 10.0                 # weighted: sharpness of the preference for fit parents
reset_interval = 0                     # every N proposals reset the weaker half of the islands (0: never)

# Behaviour descriptors: archive coordinates. A feature the evaluator returns, or a built-in
# ("code_length" in lines, "ast_nodes"). Ranges are fixed: values outside land in the edge cells.
[[descriptors]]
name = "mean_error"                    # the evaluator's features["mean_error"]
range = [0.0, 1.0]                     # [low, high]: the grid spans this
bins = 10                              # cells along this axis

[[descriptors]]
name = "code_length"                   # built in: lines of the program
range = [0.0, 40.0]                    # programs longer than 40 lines share the last column
bins = 10                              # cells along this axis

[limits]
timeout_s = 10                         # wall clock per evaluation
memory_mb = 1024                       # address-space limit per evaluation
cpu_s = 12                             # CPU seconds (RLIMIT_CPU); left out: a little above timeout_s
startup_timeout_s = 60                 # how long the sandbox may take to start before the run says why

[resources]
num_cpus = 1                           # per evaluation (Ray placement)
num_gpus = 0                           # GPUs per evaluation
custom = {{}}                            # custom Ray resources, e.g. {{ tpu = 1 }}

[cascade]
thresholds = []                        # gates for evaluate_stage1, evaluate_stage2, ...

[sandbox]
image = "evoforge-sandbox:latest"      # the container image `--sandbox docker` evaluates in
pass_env = []                          # host environment variables the evaluator may see, e.g. ["DATA_ROOT"]

[heldout]                              # when evaluate_heldout(program_path) runs, if evaluator.py defines it
timeout_s = 60                         # its own wall-clock limit
on_new_best = true                     # for the initial program and every new best
final_elites = 3                       # for the run's best programs when it ends

[stop]
target_score = 0.0                     # stop once the best score reaches this (0: sin is exact)
patience = 0                           # stop after N proposals without a new best (0: never)

[search]
lessons_every = 10                     # refresh the prompts' lessons every N evaluated children (0: none)
novelty_threshold = 0.0                # reject a child this similar (cosine) to an elite of its island (0: off)
novelty_attempts = 3                   # proposals an iteration may make when its children are too similar
novelty_judge = false                  # ask a model whether a too-similar child is new anyway
lessons = "auto"                       # "llm": a model writes them; "computed": tallies; "auto": llm with a model
fingerprint = true                     # skip a child that behaves like an evaluated one on evaluator.py's probe()

# A compile stage, run in the sandbox before the evaluator (for C, Rust, ...; its errors go to the LLM).
# [compile]
# command = "cc -O2 -o {{binary}} {{program}}"   # {{program}}, {{binary}} (no suffix), {{task}} are replaced
# timeout_s = 60

# Several objectives: a Pareto front per island beside the grid, parents drawn from it (two or more).
# [[objectives]]
# name = "mean_error"                  # a metric or feature of the evaluator
# direction = "min"                    # min | max

[pareto]
parent_share = 0.5                     # with [[objectives]]: share of parents drawn from the island's front

# Which LLMs propose edits (default: --llm flags, else a key in the environment, else offline).
# Uncomment to pin them in the task; see `evoforge run --help` for the spec strings.
# [llm]
# ensemble = "weighted"                # weighted | bandit
# [[llm.models]]
# provider = "openai"                  # openai | anthropic | openai-compatible | offline
# model = "gpt-4o-mini"
# weight = 1
'''


def scaffold_task(name: str, parent: Path = Path(".")) -> Path:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"evoforge init: expected a name of letters, digits, '_' or '-' but got {name!r}")
    path = Path(parent) / name
    if path.exists():
        raise ConfigError(f"evoforge init: {path} already exists; choose another name")
    path.mkdir(parents=True)
    (path / "initial_program.py").write_text(_PROGRAM.format(name=name))
    (path / "evaluator.py").write_text(_EVALUATOR.format(name=name))
    (path / "task.toml").write_text(_TOML.format(name=name))
    (path / "README.md").write_text(_README.format(name=name))
    return path
