"""Figures of latent spaces: 2-D sample maps coloured by label and per-node activation histograms.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so nothing is shown or kept
in global state and any backend works; callers save them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from genevae.errors import GenevaeInputError
from genevae.plotting.labels import natural_sorted


def embedding_scatter(
    coords: pd.DataFrame,
    labels: pd.Series | Sequence,
    palette: Mapping[str, str] | None = None,
    title: str = "",
) -> Figure:
    """Scatter of the first two columns of ``coords`` coloured by label, with a legend.

    Axis labels are the column names (e.g. ``tsne_1``, or two latent nodes to compare).
    ``palette`` maps label → colour (e.g. the TCGA table from
    ``genevae.preprocessing.tcga.read_cancer_type_colors``); labels missing from it get
    colours from matplotlib's tab20 cycle. A named label Series titles the legend.
    """
    if not isinstance(coords, pd.DataFrame) or coords.shape[1] < 2 or coords.empty:
        raise GenevaeInputError("coords must be a DataFrame with at least two columns and one row.")
    label_values = _aligned_label_strings(coords, labels)
    colours = _label_colours(natural_sorted(label_values), palette or {})
    x_name, y_name = coords.columns[:2]
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    for label, colour in colours.items():
        members = label_values == label
        ax.scatter(
            coords[x_name].to_numpy()[members],
            coords[y_name].to_numpy()[members],
            s=8,
            color=colour,
            label=f"{label} (n={members.sum()})",
            linewidths=0,
            rasterized=True,  # vector outputs stay small at 200k points
        )
    ax.set_xlabel(str(x_name))
    ax.set_ylabel(str(y_name))
    ax.set_title(title)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        markerscale=2,
        ncols=1 + len(colours) // 18,
        frameon=False,
        title=getattr(labels, "name", None),
    )
    return fig


def _aligned_label_strings(coords: pd.DataFrame, labels: pd.Series | Sequence) -> np.ndarray:
    """Labels as strings in the row order of ``coords`` (by index when a Series is given)."""
    if isinstance(labels, pd.Series):
        if not coords.index.isin(labels.index).all():
            raise GenevaeInputError(
                "labels (a Series) must be indexed by the same sample IDs as coords."
            )
        return labels.reindex(coords.index).astype(str).to_numpy()
    if len(labels) != len(coords):
        raise GenevaeInputError(
            f"labels has {len(labels)} entries but coords has {len(coords)} rows."
        )
    return np.asarray(labels).astype(str)


def _label_colours(labels: list[str], palette: Mapping[str, str]) -> dict[str, str]:
    cycle = colormaps["tab20"].colors
    unknown = [label for label in labels if label not in palette]
    fallback = {label: cycle[i % len(cycle)] for i, label in enumerate(unknown)}
    return {label: palette.get(label, fallback.get(label)) for label in labels}


def activation_distributions(
    latent: pd.DataFrame, nodes: int | Sequence = 10, bins: int = 30
) -> Figure:
    """Histograms of sample activations, one panel per node.

    ``nodes`` is either a list of node (column) names or a count: the ``nodes`` most variable
    nodes, which are the informative ones to inspect first.
    """
    if not isinstance(latent, pd.DataFrame) or latent.empty:
        raise GenevaeInputError("latent must be a non-empty samples × nodes DataFrame.")
    chosen = _chosen_nodes(latent, nodes)
    n_cols = min(5, len(chosen))
    n_rows = -(-len(chosen) // n_cols)
    fig = Figure(figsize=(2.6 * n_cols, 2.2 * n_rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
    for ax, node in zip(axes, chosen, strict=False):
        ax.hist(latent[node].to_numpy(), bins=bins, color="#4c72b0")
        ax.set_title(f"node {node}", fontsize="medium")
        ax.set_xlabel("activation")
        ax.set_ylabel("samples")
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    return fig


def _chosen_nodes(latent: pd.DataFrame, nodes: int | Sequence) -> list:
    if isinstance(nodes, int):
        if nodes < 1:
            raise GenevaeInputError(f"nodes must be >= 1; got {nodes}.")
        return latent.var().sort_values(ascending=False).index[:nodes].tolist()
    if not len(nodes):
        raise GenevaeInputError("nodes is an empty list; pass node names or a count.")
    unknown = [node for node in nodes if node not in latent.columns]
    if unknown:
        raise GenevaeInputError(
            f"nodes {unknown} are not latent columns; the columns are {list(latent.columns)}."
        )
    return list(nodes)
