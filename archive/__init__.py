"""The archive: island MAP-Elites over program ids (``archive.islands``)."""

from archive.islands import (
    ArchiveConfig,
    DescriptorSpec,
    Elite,
    Insertion,
    IslandArchives,
    Migration,
    QDStats,
)

__all__ = [
    "ArchiveConfig",
    "DescriptorSpec",
    "Elite",
    "Insertion",
    "IslandArchives",
    "Migration",
    "QDStats",
]
