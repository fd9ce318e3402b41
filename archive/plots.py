"""Plots of a run (docs/notebook_api.md): pure functions over the DataFrames :class:`evoforge.archive.run.Run` gives.

Every function draws into ``ax`` (or a new figure's axes when ``ax`` is None) and returns the
Axes; none calls ``plt.show()``. matplotlib is imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["bin_index", "heatmap", "grid_heatmap", "cvt_heatmap", "progress", "spend", "statuses"]


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


def _best_per_cell(elites: Any, value: str) -> tuple[np.ndarray, np.ndarray]:
    """(cells, values): per archive cell, ``value`` of the elite with the highest fitness."""
    if not len(elites):
        return np.empty(0, dtype=int), np.empty(0)
    top = elites.sort_values(["fitness", "id"], ascending=[False, True]).drop_duplicates("cell")
    return top["cell"].to_numpy(dtype=int), top[value].to_numpy(dtype=float)


def _pyribs_frame(cells: np.ndarray, values: np.ndarray) -> Any:
    from ribs.archives import ArchiveDataFrame

    return ArchiveDataFrame({"index": cells.astype(np.int64), "objective": values.astype(np.float64)})


def _finish(ax: Any, labels: Sequence[str], transpose: bool, title: str) -> Any:
    x, y = (labels[1], labels[0]) if transpose else (labels[0], labels[-1] if len(labels) > 1 else "")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    return ax


def grid_heatmap(elites: Any, *, dims: Sequence[int], ranges: Sequence[tuple[float, float]], labels: Sequence[str],
                 value: str = "score", transpose: bool = False, ax: Any = None, title: str | None = None,
                 cmap: str = "viridis") -> Any:
    """The run's grid archive (one or two descriptors) through pyribs' ``grid_archive_heatmap``.

    ``elites`` carries the pyribs ``cell`` index of each elite (as stored by the engine, whose
    archives are pyribs ``GridArchive`` with these ``dims`` and ``ranges``); per cell the elite of
    highest fitness across islands is shown. ``transpose`` puts the second descriptor on x.
    """
    from ribs.archives import GridArchive
    from ribs.visualize import grid_archive_heatmap

    ax = _axes(ax)
    archive = GridArchive(solution_dim=1, dims=list(dims), ranges=list(ranges))
    cells, values = _best_per_cell(elites, value)
    grid_archive_heatmap(archive, ax=ax, df=_pyribs_frame(cells, values), transpose_measures=transpose,
                         cmap=cmap, cbar_kwargs={"label": value})
    return _finish(ax, labels, transpose, title or f"elites' {value}")


def cvt_heatmap(elites: Any, *, centroids: Any, ranges: Sequence[tuple[float, float]], labels: Sequence[str],
                value: str = "score", transpose: bool = False, ax: Any = None, title: str | None = None,
                cmap: str = "viridis") -> Any:
    """A 2-D CVT archive through pyribs' ``cvt_archive_heatmap`` (Voronoi cells of the stored centroids)."""
    from ribs.archives import CVTArchive
    from ribs.visualize import cvt_archive_heatmap

    ax = _axes(ax)
    archive = CVTArchive(solution_dim=1, centroids=np.asarray(centroids, dtype=float), ranges=list(ranges))
    cells, values = _best_per_cell(elites, value)
    cvt_archive_heatmap(archive, ax=ax, df=_pyribs_frame(cells, values), transpose_measures=transpose,
                        cmap=cmap, cbar_kwargs={"label": value})
    return _finish(ax, labels, transpose, title or f"elites' {value}")


def spend(frame: Any, *, ax: Any = None, title: str | None = None) -> Any:
    """Cumulative LLM cost in dollars (left axis) and tokens (right axis) against LLM calls
    (``frame`` is :meth:`evoforge.archive.run.Run.spend`)."""
    ax = _axes(ax)
    x = np.arange(1, len(frame) + 1)
    (cost_line,) = ax.plot(x, frame["cum_cost_usd"].to_numpy(dtype=float), color="tab:green", label="cost (USD)")
    ax.set_xlabel("LLM calls")
    ax.set_ylabel("cumulative cost (USD)", color="tab:green")
    twin = ax.twinx()
    (token_line,) = twin.plot(x, frame["cum_tokens"].to_numpy(dtype=float), color="tab:purple", linestyle="--",
                              label="tokens")
    twin.set_ylabel("cumulative tokens", color="tab:purple")
    ax.legend(handles=[cost_line, token_line], loc="upper left")
    ax.set_title(title or "LLM spend")
    return ax


_STATUS_ORDER = ("ok", "invalid", "error", "timeout", "oom", "rejected")


def statuses(counts: dict, *, ax: Any = None, title: str | None = None) -> Any:
    """A bar per candidate status (``ok`` first, then the failures), labelled with its count."""
    ax = _axes(ax)
    names = [s for s in _STATUS_ORDER if s in counts] + sorted(set(counts) - set(_STATUS_ORDER))
    heights = [int(counts[s]) for s in names]
    colors = ["tab:green" if s == "ok" else "tab:red" for s in names]
    bars = ax.bar(names, heights, color=colors)
    ax.bar_label(bars)
    ax.set_ylabel("candidates")
    ax.set_title(title or "candidates by status")
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
