"""OpenEvolve-style evaluator: evaluate(program_path) returns a dict of metrics with combined_score,
and evaluate_stage1/evaluate_stage2 form a cascade (OpenEvolve's cascade_evaluation)."""
import importlib.util
import math

GLOBAL_MIN = (-1.704, 0.678, -1.519)   # x, y, value (as in OpenEvolve's example)


def _load(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(results):
    values = [v for _, _, v in results]
    distances = [math.hypot(x - GLOBAL_MIN[0], y - GLOBAL_MIN[1]) for x, y, _ in results]
    value_score = sum(1.0 / (1.0 + abs(v - GLOBAL_MIN[2])) for v in values) / len(values)
    distance_score = sum(1.0 / (1.0 + d) for d in distances) / len(distances)
    spread = max(values) - min(values)
    reliability_score = 1.0 / (1.0 + spread)
    return {
        "value_score": value_score,
        "distance_score": distance_score,
        "reliability_score": reliability_score,
        "combined_score": 0.6 * value_score + 0.2 * distance_score + 0.2 * reliability_score,
    }


def evaluate_stage1(program_path):
    try:
        x, y, value = _load(program_path).run_search(seed=0)
    except Exception as exc:  # noqa: BLE001 - a candidate that fails scores 0, with the reason
        return {"combined_score": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    if not all(map(math.isfinite, (x, y, value))):
        return {"combined_score": 0.0, "error": "non-finite result"}
    return {"runs_successfully": 1.0, "value_score": 1.0 / (1.0 + abs(value - GLOBAL_MIN[2]))}


def evaluate_stage2(program_path):
    return evaluate(program_path)


def evaluate(program_path):
    program = _load(program_path)
    results = [program.run_search(seed=seed) for seed in range(5)]
    if not all(math.isfinite(v) for r in results for v in r):
        return {"combined_score": 0.0, "error": "non-finite result"}
    return _scores(results)
