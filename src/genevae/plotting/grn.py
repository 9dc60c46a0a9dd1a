"""Figures of an inferred gene regulatory network: edge-probability heat map, top targets.

Functions take the long edge tables of :mod:`genevae.analysis.grn` (regulator, target,
probability) and return a :class:`matplotlib.figure.Figure` built without pyplot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from genevae.errors import GenevaeInputError

_EDGE_COLUMNS = ("regulator", "target", "probability")
_MAX_ANNOTATED = 15  # write probabilities into cells only when the matrix is this small


def _require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise GenevaeInputError(
            f"{name} lacks columns {missing}; it needs {list(columns)} "
            "(e.g. from genevae.analysis.grn.grn_edge_table)."
        )


def edge_matrix(
    edges: pd.DataFrame,
    regulators: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Regulators × targets probability matrix (NaN where the table has no edge, e.g. self).

    Without ``regulators``/``targets`` the order of first appearance in ``edges`` is used.
    """
    _require_columns(edges, _EDGE_COLUMNS, "edges")
    regulators = list(pd.unique(edges["regulator"])) if regulators is None else list(regulators)
    targets = list(pd.unique(edges["target"])) if targets is None else list(targets)
    if not regulators or not targets:
        raise GenevaeInputError("The GRN heat map needs at least one regulator and one target.")
    matrix = edges.pivot_table(
        index="regulator", columns="target", values="probability", aggfunc="max"
    )
    return matrix.reindex(index=regulators, columns=targets)


def grn_heatmap(
    edges: pd.DataFrame,
    regulators: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    *,
    title: str = "",
) -> Figure:
    """Heat map of edge probabilities, rows = regulators (perturbed genes), columns = targets.

    Cells without an edge (self-loops) are left blank; small matrices carry their values.
    """
    matrix = edge_matrix(edges, regulators, targets)
    n_rows, n_cols = matrix.shape
    figure = Figure(
        figsize=(min(2.5 + 0.35 * n_cols, 16), min(2.0 + 0.3 * n_rows, 14)), layout="constrained"
    )
    ax = figure.subplots()
    image = ax.imshow(
        np.ma.masked_invalid(matrix.to_numpy(dtype=float)),
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        aspect="auto",
        interpolation="nearest",
    )
    if max(n_rows, n_cols) <= 60:
        ax.set_xticks(range(n_cols), matrix.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(n_rows), matrix.index, fontsize=7)
    if max(n_rows, n_cols) <= _MAX_ANNOTATED:
        for (row, col), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if np.isfinite(value):
                colour = "black" if value > 0.6 else "white"
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, c=colour)
    ax.set_xlabel("target")
    ax.set_ylabel("regulator (perturbed gene)")
    figure.colorbar(image, ax=ax, label="edge probability")
    if title:
        ax.set_title(title)
    return figure


def top_edges_plot(top_edges: pd.DataFrame, *, title: str = "", max_regulators: int = 12) -> Figure:
    """One bar panel per regulator with its most probable targets (from top_edges_per_regulator).

    The first ``max_regulators`` regulators (table order) are drawn.
    """
    _require_columns(top_edges, _EDGE_COLUMNS, "top_edges")
    if top_edges.empty:
        raise GenevaeInputError("top_edges is empty; there are no edges to plot.")
    regulators = list(pd.unique(top_edges["regulator"]))[:max_regulators]
    n_cols = min(len(regulators), 3)
    n_rows = -(-len(regulators) // n_cols)
    n_bars = int(top_edges.groupby("regulator").size().max())
    figure = Figure(figsize=(4.0 * n_cols, (0.8 + 0.22 * n_bars) * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[len(regulators) :]:
        ax.set_visible(False)
    for ax, regulator in zip(axes, regulators, strict=False):
        part = top_edges[top_edges["regulator"] == regulator]
        positions = np.arange(len(part))[::-1]
        ax.barh(positions, part["probability"], color="#3b6ea5")
        ax.set_yticks(positions, part["target"].astype(str), fontsize=7)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="#9e9e9e", lw=0.8, ls="--")
        ax.set_title(str(regulator), fontsize=9)
        ax.set_xlabel("edge probability")
    if title:
        figure.suptitle(title)
    return figure
