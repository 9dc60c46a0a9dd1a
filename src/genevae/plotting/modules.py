"""Figures for gene-module analyses: volcano, GSEA comparison, activities and top genes.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it is
safe under any backend and never touches global figure state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from genevae.analysis.modules import top_module_genes
from genevae.errors import GenevaeInputError

_SIGNIFICANT, _OTHER = "#c0392b", "#9e9e9e"


def _require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise GenevaeInputError(
            f"{name} lacks columns {missing}; available columns include {list(table.columns)[:20]}"
        )


def _panel_grid(n_panels: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure with ``n_panels`` axes, three per row; unused axes are hidden."""
    n_cols = min(n_panels, 3)
    n_rows = -(-n_panels // n_cols)
    figure = Figure(figsize=(width * n_cols, height * n_rows))
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]


def _short(name: str, limit: int = 36) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _label_points(ax, table: pd.DataFrame, x: str, y: str, n_labels: int, by: str) -> None:
    """Name the ``n_labels`` points with the largest |by|, text pointing inwards.

    Labels of points that (nearly) coincide are stacked downwards so they stay readable;
    labels are kept out of the layout so long names never squeeze the axes.
    """
    top = table.reindex(table[by].abs().sort_values(ascending=False).index).head(n_labels)
    x_span = float(np.ptp(table[x])) or 1.0
    y_span = float(np.ptp(table[y])) or 1.0
    x_mid = float(table[x].min()) + x_span / 2
    placed: list[tuple[float, float]] = []
    for _, row in top.iterrows():
        point = (float(row[x]) / x_span, float(row[y]) / y_span)
        crowd = sum(abs(point[0] - px) < 0.4 and abs(point[1] - py) < 0.04 for px, py in placed)
        placed.append(point)
        inward = row[x] > x_mid
        label = ax.annotate(
            _short(str(row["module"])),
            (row[x], row[y]),
            fontsize=7,
            xytext=(-4 if inward else 4, 3 - 9 * crowd),
            textcoords="offset points",
            ha="right" if inward else "left",
        )
        label.set_in_layout(False)


def _volcano_groups(
    bf_table: pd.DataFrame, significant: pd.Series
) -> list[tuple[pd.Series, str, str, bool, str]]:
    """(rows, colour, marker, filled, label) per point group of the volcano.

    With the evidence columns (``control_pass``, ``calls_agree``) significant modules are
    split: filled = passes the random-mask control, hollow = does not; circle = the module
    score (and GSEA, where it ran) make the same call, triangle = they do not.
    """
    if not {"control_pass", "calls_agree"} <= set(bf_table.columns):
        return [
            (~significant, _OTHER, "o", True, "not significant"),
            (significant, _SIGNIFICANT, "o", True, "significant"),
        ]
    passes = bf_table["control_pass"].astype(bool)
    agrees = bf_table["calls_agree"].astype(bool)
    groups = [(~significant, _OTHER, "o", True, "not significant")]
    for passed, control in ((True, "passes control"), (False, "fails control")):
        for agreed, marker, agreement in ((True, "o", "methods agree"), (False, "^", "disagree")):
            rows = significant & (passes == passed) & (agrees == agreed)
            groups.append((rows, _SIGNIFICANT, marker, passed, f"{control}, {agreement}"))
    return [group for group in groups if group[0].any() or group[4] == "not significant"]


def volcano(
    bf_table: pd.DataFrame,
    ln_bf_threshold: float = 3.0,
    mean_diff_threshold: float = 3.0,
    *,
    n_labels: int = 10,
    title: str | None = None,
) -> Figure:
    """ln Bayes factor against mean activity difference, one point per module (VEGA Fig. 1).

    Points beyond both thresholds (|ln BF| and |mean diff|) are highlighted; the ``n_labels``
    modules with the largest |ln BF| are named. An evidence table (``control_pass``,
    ``calls_agree`` columns) also encodes the control and the agreement in the markers.
    """
    _require_columns(bf_table, ["module", "ln_bf", "mean_diff"], "bf_table")
    significant = (bf_table["ln_bf"].abs() > ln_bf_threshold) & (
        bf_table["mean_diff"].abs() > mean_diff_threshold
    )
    figure = Figure(figsize=(6, 5))
    ax = figure.subplots()
    for selected, colour, marker, filled, label in _volcano_groups(bf_table, significant):
        part = bf_table[selected]
        ax.scatter(
            part["mean_diff"],
            part["ln_bf"],
            s=12 if marker == "o" else 18,
            marker=marker,
            c=colour if filled else "none",
            edgecolors=colour,
            alpha=0.8,
            label=f"{label} ({len(part)})",
        )
    for sign in (-1, 1):
        ax.axhline(sign * ln_bf_threshold, ls="--", lw=0.8, c="k")
        ax.axvline(sign * mean_diff_threshold, ls=":", lw=0.8, c="k")
    _label_points(ax, bf_table, "mean_diff", "ln_bf", n_labels, "ln_bf")
    ax.set_xlabel("mean activity difference (group 1 − group 2)")
    ax.set_ylabel("ln Bayes factor")
    ax.set_title(title or "Differential module activity")
    ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


def gsea_vs_bayes_factor(
    comparison: pd.DataFrame,
    fdr_threshold: float = 0.05,
    ln_bf_threshold: float = 3.0,
    *,
    n_labels: int = 5,
) -> Figure:
    """GSEA −log10 FDR against VEGA |ln BF| per module, sized by gene-set size (Fig. 1)."""
    _require_columns(
        comparison, ["module", "neg_log10_fdr", "abs_ln_bf", "set_size", "fdr"], "comparison"
    )
    by_gsea = comparison["fdr"] < fdr_threshold
    by_vega = comparison["abs_ln_bf"] > ln_bf_threshold
    groups = {
        "both": (by_gsea & by_vega, "#8e44ad"),
        "VEGA only": (~by_gsea & by_vega, "#c0392b"),
        "GSEA only": (by_gsea & ~by_vega, "#2980b9"),
        "neither": (~by_gsea & ~by_vega, _OTHER),
    }
    sizes = comparison["set_size"].to_numpy(dtype=float)
    scale = 80.0 / max(float(np.nanmax(sizes)) if len(sizes) else 1.0, 1.0)
    figure = Figure(figsize=(6, 5))
    ax = figure.subplots()
    for label, (selected, colour) in groups.items():
        part = comparison[selected]
        ax.scatter(
            part["abs_ln_bf"],
            part["neg_log10_fdr"],
            s=5 + part["set_size"] * scale,
            c=colour,
            alpha=0.7,
            label=f"{label} ({len(part)})",
        )
    ax.axhline(-np.log10(fdr_threshold), ls="--", lw=0.8, c="k")
    ax.axvline(ln_bf_threshold, ls="--", lw=0.8, c="k")
    _label_points(ax, comparison, "abs_ln_bf", "neg_log10_fdr", n_labels, "abs_ln_bf")
    ax.set_xlabel("VEGA |ln Bayes factor|")
    ax.set_ylabel("GSEA −log10 FDR")
    ax.set_title("GSEA pre-rank vs VEGA differential activity")
    ax.legend(loc="best", fontsize=8, title="significant in")
    figure.tight_layout()
    return figure


def module_violins(activities: pd.DataFrame, modules: Sequence[str], groupby: str) -> Figure:
    """Violin plot of each module's activity per level of the ``groupby`` column."""
    if not modules:
        raise GenevaeInputError("modules is empty; name at least one module column to plot.")
    _require_columns(activities, [*modules, groupby], "activities")
    levels = sorted(activities[groupby].astype(str).unique())
    labels = activities[groupby].astype(str)
    figure, axes = _panel_grid(len(modules), max(4.0, 1.2 * len(levels)), 3.5)
    for ax, module in zip(axes, modules, strict=True):
        data = [activities.loc[labels == level, module].to_numpy(dtype=float) for level in levels]
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(range(1, len(levels) + 1), levels, rotation=45, ha="right")
        ax.set_xlabel(groupby)
        ax.set_ylabel("module activity")
        ax.set_title(module, fontsize=9)
    figure.tight_layout()
    return figure


def module_scatter(activities: pd.DataFrame, module_x: str, module_y: str, color_by: str) -> Figure:
    """Activity of one module against another, coloured by a categorical or numeric column."""
    _require_columns(activities, [module_x, module_y, color_by], "activities")
    figure = Figure(figsize=(6, 5))
    ax = figure.subplots()
    colour = activities[color_by]
    if pd.api.types.is_numeric_dtype(colour) and not isinstance(colour.dtype, pd.CategoricalDtype):
        points = ax.scatter(activities[module_x], activities[module_y], c=colour, s=6)
        figure.colorbar(points, ax=ax, label=color_by)
    else:
        for level in sorted(colour.astype(str).unique()):
            part = activities[colour.astype(str) == level]
            ax.scatter(part[module_x], part[module_y], s=6, alpha=0.7, label=level)
        ax.legend(title=color_by, fontsize=8, markerscale=2)
    ax.set_xlabel(f"{module_x} activity")
    ax.set_ylabel(f"{module_y} activity")
    figure.tight_layout()
    return figure


def top_genes_per_module(weights: pd.DataFrame, modules: Sequence[str], n: int = 10) -> Figure:
    """Horizontal bars of the ``n`` highest-weight genes of each module (decoder weights)."""
    if not modules:
        raise GenevaeInputError("modules is empty; name at least one module column to plot.")
    _require_columns(weights, modules, "weights")
    table = top_module_genes(weights[list(modules)], n)
    figure, axes = _panel_grid(len(modules), 3.5, 0.3 * n + 1.5)
    for ax, module in zip(axes, modules, strict=True):
        part = table[table["module"] == module].iloc[::-1]
        ax.barh(part["gene"], part["weight"], color="#34495e")
        ax.set_xlabel("decoder weight")
        ax.set_title(module, fontsize=9)
    figure.tight_layout()
    return figure


def message_figure(text: str) -> Figure:
    """A small figure that says why a plot is absent (e.g. GSEA switched off)."""
    figure = Figure(figsize=(5, 1))
    figure.text(0.5, 0.5, text, ha="center", va="center")
    return figure
