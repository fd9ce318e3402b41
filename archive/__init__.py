"""The archive: island MAP-Elites over program ids (``evoforge.archive.islands``) and the run's SQLite store
(``evoforge.archive.store``). Heavy imports (pyribs, pandas, matplotlib) happen lazily where needed."""

from evoforge.archive.islands import (
    ArchiveConfig,
    DescriptorSpec,
    Elite,
    Insertion,
    IslandArchives,
    Migration,
    PARENT_SELECTIONS,
    QDStats,
    validate_archive,
)
from evoforge.archive.store import ArchiveEvent, CandidateRecord, Store

__all__ = [
    "ArchiveConfig",
    "ArchiveEvent",
    "CandidateRecord",
    "DescriptorSpec",
    "Elite",
    "Insertion",
    "IslandArchives",
    "Migration",
    "PARENT_SELECTIONS",
    "QDStats",
    "Run",
    "Store",
    "validate_archive",
]


def __getattr__(name: str):
    # Lazy: the notebook API pulls in pandas, which `import evoforge.archive` must not.
    if name in ("Run", "Program"):
        from evoforge.archive import run

        return getattr(run, name)
    raise AttributeError(f"module 'archive' has no attribute {name!r}")
