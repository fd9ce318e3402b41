"""``EvaluationResult`` as OpenEvolve evaluators build it: numeric ``metrics`` plus side-channel
``artifacts`` (text or bytes fed back to the LLM). evoforge's own code, written from the behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Union

__all__ = ["EvaluationResult"]


@dataclass
class EvaluationResult:
    metrics: Dict[str, float]
    artifacts: Dict[str, Union[str, bytes]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, metrics: Dict[str, float]) -> "EvaluationResult":
        """A plain metrics dict (the older evaluator contract) with no artifacts."""
        return cls(metrics=dict(metrics))

    def to_dict(self) -> Dict[str, float]:
        """The metrics alone, as the older contract returned them."""
        return dict(self.metrics)

    def has_artifacts(self) -> bool:
        return bool(self.artifacts)

    def get_artifact_keys(self) -> List[str]:
        return list(self.artifacts)

    def get_artifact_size(self, key: str) -> int:
        """Size of one artifact: bytes for bytes, encoded UTF-8 length for text, 0 when absent."""
        value: Any = self.artifacts.get(key)
        if value is None:
            return 0
        if isinstance(value, bytes):
            return len(value)
        return len(str(value).encode("utf-8"))

    def get_total_artifact_size(self) -> int:
        return sum(self.get_artifact_size(key) for key in self.artifacts)
