"""Novelty rejection before evaluation (ShinkaEvolve, Lange et al. 2025): a proposed child too close to a program
already in its island is not evaluated.

Closeness is the cosine similarity of embeddings of the evolvable text. The embedder is a one-method interface
(`Embedder.embed`), so a provider's embeddings client can be injected; the default, `HashedNgramEmbedder`,
needs no download and no key: token n-grams hashed into a fixed-size signed vector (the hashing trick,
Weinberger et al. 2009), which is near 1 for programs that differ in a constant or two and falls as the
structure changes. Pure: no I/O, deterministic (``zlib.crc32``, never ``hash()``).
"""

from __future__ import annotations

import re
import zlib
from typing import Callable, Iterable, Protocol

import numpy as np

from evoforge.engine.edits import evolvable_text

__all__ = ["Embedder", "HashedNgramEmbedder", "NoveltyFilter", "compared_text"]

_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\S")
_COMMENT = re.compile(r"#[^\n]*")


class Embedder(Protocol):
    """Anything that turns a program's text into a vector (cosine similarity is taken between them)."""

    def embed(self, text: str) -> np.ndarray: ...


class HashedNgramEmbedder:
    """Token ``n``-grams (1..n) hashed into ``dim`` signed buckets, L2-normalised; comments are dropped."""

    def __init__(self, dim: int = 1024, n: int = 3) -> None:
        self.dim, self.n = int(dim), int(n)

    def embed(self, text: str) -> np.ndarray:
        tokens = _TOKEN.findall(_COMMENT.sub("", text))
        vector = np.zeros(self.dim)
        for size in range(1, self.n + 1):
            for i in range(len(tokens) - size + 1):
                h = zlib.crc32("\x1f".join(tokens[i:i + size]).encode())
                vector[h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector


def compared_text(code: str) -> str:
    """What novelty compares of a program (the embedder, and the judge's prompt): its evolvable regions, or the
    whole text when it has no markers or broken ones."""
    try:
        return "".join(evolvable_text(code)) or code
    except ValueError:
        return code


class NoveltyFilter:
    """Whether a child is too close (cosine >= ``threshold``) to a program of its island.

    ``code_of(program_id)`` gives a stored program's text; embeddings are cached by id. ``threshold`` 0 turns
    the filter off.
    """

    def __init__(self, threshold: float, embedder: Embedder | None = None,
                 code_of: Callable[[int], str] | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"expected a novelty threshold in [0, 1] (0: off) but got {threshold!r}")
        self.threshold = float(threshold)
        self.embedder = embedder or HashedNgramEmbedder()
        self._code_of = code_of
        self._cache: dict[int, np.ndarray] = {}

    def _embed(self, code: str) -> np.ndarray:
        return np.asarray(self.embedder.embed(compared_text(code)), dtype=np.float64)

    def closest(self, code: str, program_ids: Iterable[int]) -> tuple[int, float] | None:
        """The most similar program among ``program_ids`` and its cosine, if it reaches the threshold."""
        if self.threshold <= 0 or self._code_of is None:
            return None
        child = self._embed(code)
        best: tuple[int, float] | None = None
        for pid in sorted(set(program_ids)):
            if pid not in self._cache:
                self._cache[pid] = self._embed(self._code_of(pid))
            other = self._cache[pid]
            denom = float(np.linalg.norm(child) * np.linalg.norm(other))
            cosine = float(child @ other) / denom if denom > 0 else 0.0
            if best is None or cosine > best[1]:
                best = (pid, cosine)
        return best if best is not None and best[1] >= self.threshold else None
