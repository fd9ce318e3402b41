"""Functional fingerprints: what a candidate *does* on a few fixed inputs, as a short digest.

Unified Functional Hashing (Gillard et al. 2023, "Unified functional hashing in automatic machine learning"):
two programs that give the same outputs on the same probe inputs almost surely behave the same, so the
second need not be evaluated. An evaluator opts in with ``probe(program_path)`` (docs/architecture.md,
"The task contract"): it runs the candidate on a few cheap, fixed inputs through the same safe path its
``evaluate`` uses and returns plain data (numbers, strings, lists, dicts). `fingerprint` turns that data
into 16 hex characters:

* the data is made canonical — floats rounded to `SIGNIFICANT_DIGITS` significant digits (so bit-level
  noise, e.g. a sum taken in another order, does not split twins), ``-0.0`` made ``0.0``, NaN and
  infinities spelled out, every string and float tagged with its type so ``1``, ``1.0`` and ``"1"``
  differ, dict keys sorted, tuples as lists, sets sorted;
* the canonical JSON is hashed with SHA-256 and cut to 16 hex characters (64 bits: a chance collision
  between two different behaviours of one run is negligible).

Rounding is relative: a value that should be zero but carries noise (``5.5e-17`` against ``0.0``) still
differs; a probe that can produce such values rounds them itself. Data that is not plain (an object, a
structure deeper than `MAX_DEPTH` or with more than `MAX_ITEMS` values) raises `ValueError`: the runner
then records no fingerprint, never a duplicate.

Standard library only (runs in the sandbox); numpy values are read through their ``tolist()``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

__all__ = ["fingerprint", "canonical", "SIGNIFICANT_DIGITS", "DIGEST_CHARS"]

SIGNIFICANT_DIGITS = 10
DIGEST_CHARS = 16
MAX_DEPTH = 32
MAX_ITEMS = 100_000


def fingerprint(outputs: Any) -> str:
    """The digest of a probe's outputs (raises `ValueError` for data that is not plain)."""
    counter = [0]
    text = json.dumps(canonical(outputs, counter=counter), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:DIGEST_CHARS]


def _float(value: float) -> str:
    if math.isnan(value):
        return "f:nan"
    if math.isinf(value):
        return "f:inf" if value > 0 else "f:-inf"
    if value == 0.0:
        return "f:0"                                  # 0.0 and -0.0 alike
    return "f:" + format(value, f".{SIGNIFICANT_DIGITS - 1}e")


def canonical(value: Any, *, counter: list[int] | None = None, depth: int = 0) -> Any:
    """``value`` as JSON-able data with every float rounded and tagged (see the module docstring)."""
    counter = [0] if counter is None else counter
    counter[0] += 1
    if counter[0] > MAX_ITEMS or depth > MAX_DEPTH:
        raise ValueError(f"probe outputs larger than {MAX_ITEMS} values or deeper than {MAX_DEPTH} levels")
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":   # arrays and numpy scalars
        value = value.tolist()
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return _float(value)
    if type(value) is str:
        return "s:" + value
    if type(value) in (list, tuple):
        return [canonical(v, counter=counter, depth=depth + 1) for v in value]
    if type(value) in (set, frozenset):
        items = [canonical(v, counter=counter, depth=depth + 1) for v in value]
        return {"set": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            name = canonical(key, counter=counter, depth=depth + 1)
            out[json.dumps(name, sort_keys=True)] = canonical(item, counter=counter, depth=depth + 1)
        return {"dict": out}
    raise ValueError(f"probe outputs must be plain data (numbers, strings, lists, dicts), not {type(value).__name__}")
