"""Plots of a run (DESIGN.md §8): pure functions over the DataFrames :class:`archive.run.Run` gives.

Every function draws into ``ax`` (or a new figure's axes when ``ax`` is None) and returns the
Axes; none calls ``plt.show()``. matplotlib is imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["bin_index", "heatmap", "progress"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 4.5))
    return ax


def bin_index(values: Sequence[float], low: float, high: float, bins: int) -> np.ndarray:
    """Uniform bin of each value in ``[low, high]``; values outside are clipped to the edge bins."""
    values = np.asarray(values, dtype=float)
    if bins <= 1 or high <= low:
        return np.zeros(len(values), dtype=int)
    idx = np.floor((values - low) / (high - low) * bins).astype(int)
    return np.clip(idx, 0, bins - 1)


def heatmap(elites: Any, *, x: str, y: str | None, x_range: tuple[float, float, int],
            y_range: tuple[float, float, int] | None, value: str = "score", rank: str = "fitness",
            ax: Any = None, title: str | None = None, cmap: str = "viridis") -> Any:
    """Heatmap of ``elites[value]`` over the columns ``x`` and ``y`` (``y`` None: a single row).

    ``x_range``/``y_range`` are ``(low, high, bins)``. When several elites fall into one plotted
    bin (more than two descriptors, or a coarser grid), the one with the highest ``rank`` column
    is shown. Empty bins stay blank.
    """
    ax = _axes(ax)
    x_low, x_high, x_bins = x_range
    y_low, y_high, y_bins = y_range if y_range is not None else (0.0, 1.0, 1)
    grid = np.full((y_bins, x_bins), np.nan)
    best = np.full((y_bins, x_bins), -np.inf)
    if len(elites):
        xi = bin_index(elites[x].to_numpy(dtype=float), x_low, x_high, x_bins)
        yi = (bin_index(elites[y].to_numpy(dtype=float), y_low, y_high, y_bins) if y is not None
              else np.zeros(len(elites), dtype=int))
        ranks = elites[rank].to_numpy(dtype=float)
        values = elites[value].to_numpy(dtype=float)
        for cx, cy, r, v in zip(xi, yi, ranks, values):
            if np.isnan(r):
                continue
            if r > best[cy, cx]:
                best[cy, cx] = r
                grid[cy, cx] = v
    mesh = ax.pcolormesh(np.linspace(x_low, x_high, x_bins + 1), np.linspace(y_low, y_high, y_bins + 1),
                         np.ma.masked_invalid(grid), cmap=cmap, shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label=value)
    ax.set_xlabel(x.removeprefix("feature_"))
    ax.set_ylabel(y.removeprefix("feature_") if y is not None else "")
    if y is None:
        ax.set_yticks([])
    ax.set_title(title or f"elites' {value}")
    return ax


def progress(frame: Any, *, ax: Any = None, title: str | None = None) -> Any:
    """Best score (left axis) and QD-score (right axis) against the evaluation index."""
    ax = _axes(ax)
    x = frame["evaluation"].to_numpy()
    (best_line,) = ax.plot(x, frame["best_score"].to_numpy(dtype=float), color="tab:blue", label="best score")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best score", color="tab:blue")
    twin = ax.twinx()
    (qd_line,) = twin.plot(x, frame["qd_score"].to_numpy(dtype=float), color="tab:orange", label="QD-score")
    twin.set_ylabel("QD-score", color="tab:orange")
    ax.legend(handles=[best_line, qd_line], loc="lower right")
    ax.set_title(title or "progress")
    return ax
