"""Figures for gene-module analyses: volcano, GSEA comparison, activities and top genes.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it is
safe under any backend and never touches global figure state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genevae.analysis.modules import top_module_genes
from genevae.errors import GenevaeInputError
from genevae.plotting.labels import natural_sorted

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


_COLLECTION_PREFIXES = ("REACTOME_", "HALLMARK_")


def _label_text(name: str, width: int = 32) -> str:
    """A module name without its collection prefix, wrapped at underscores (never cut)."""
    for prefix in _COLLECTION_PREFIXES:
        name = name.removeprefix(prefix)
    lines, line = [], ""
    for word in name.split("_"):
        candidate = f"{line}_{word}" if line else word
        if line and len(candidate) > width:
            lines.append(line + "_")
            candidate = word
        line = candidate
    return "\n".join([*lines, line])


_LABEL_SPACINGS = ((1.15, 1.4), (1.25, 1.6), (1.4, 1.9))


def _label_points(
    ax, table: pd.DataFrame, x: str, y: str, start_y: pd.Series | None = None
) -> None:
    """Name each row of ``table`` at its point; labels repel each other and the points
    (adjustText) and point back with a leader line. ``start_y`` moves labels' starting
    height (e.g. off a crowded band). adjustText is a heuristic: wider spacings are tried
    until no two labels overlap. Labels stay out of the layout, so long names never squeeze
    the axes."""
    if table.empty:
        return
    heights = table[y] if start_y is None else start_y.reindex(table.index).fillna(table[y])
    starts = list(zip(table[x].astype(float), heights.astype(float), strict=True))
    texts = []
    for (_, row), (x0, y0) in zip(table.iterrows(), starts, strict=True):
        text = ax.text(x0, y0, _label_text(str(row["module"])), fontsize=6.5)
        text.set_in_layout(False)
        texts.append(text)
    for spacing in _LABEL_SPACINGS:
        for text, start in zip(texts, starts, strict=True):
            text.set_position(start)
        arrows = _adjust(ax, texts, table[x], table[y], spacing)
        if not _overlapping(ax, texts) or spacing == _LABEL_SPACINGS[-1]:
            return
        for arrow in arrows:
            arrow.remove()


def _adjust(ax, texts: list, x: pd.Series, y: pd.Series, spacing: tuple[float, float]) -> list:
    from adjustText import adjust_text

    ax.figure.canvas.draw()  # adjustText measures the drawn labels
    _, arrows = adjust_text(
        texts,
        target_x=x.to_numpy(dtype=float),
        target_y=y.to_numpy(dtype=float),
        ax=ax,
        expand=spacing,
        force_text=(0.3, 0.6),
        iter_lim=500,
        min_arrow_len=0,
        arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.5},
    )
    return list(arrows)


def _overlapping(ax, texts: list) -> bool:
    renderer = ax.figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in texts]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _below_band(labelled: pd.DataFrame, cap: float) -> pd.Series:
    """Starting heights for labels of saturated modules: a staircase inside the cap, in the
    empty space between the band and the bulk of the modules, ordered by mean difference."""
    at_cap = labelled[labelled["ln_bf"].abs() >= cap - 1e-6].sort_values("mean_diff")
    steps = np.arange(len(at_cap)) % 6
    return pd.Series(np.sign(at_cap["ln_bf"]) * cap * (0.85 - 0.1 * steps), index=at_cap.index)


def _label_room(ax, values: pd.Series | None, x_values: pd.Series) -> None:
    """Room above the highest points (unless ``values`` is None) and beside the outermost
    ones, where the labels of the top modules (which sit there) can go."""
    if values is not None:
        span = float(np.ptp(values)) or 1.0
        ax.set_ylim(float(values.min()) - 0.05 * span, float(values.max()) + 0.25 * span)
    x_span = float(np.ptp(x_values)) or 1.0
    ax.set_xlim(float(x_values.min()) - 0.05 * x_span, float(x_values.max()) + 0.15 * x_span)


def _top(table: pd.DataFrame, n: int, by: Sequence[str]) -> pd.DataFrame:
    """The ``n`` rows largest in |by[0]|, ties (e.g. saturated ln BF) broken by |by[1]|."""
    keys = pd.DataFrame({column: table[column].abs() for column in by})
    order = keys.sort_values(list(by), ascending=False, kind="stable").index
    return table.loc[order].head(n)


def _saturation_band(ax, table: pd.DataFrame, cap: float) -> pd.Series:
    """Where saturated modules are drawn: a band beyond ±cap, ordered by |mean difference|.

    Every module at the cap had all sampled pairs agree, so ln BF cannot rank them; spreading
    them over a marked band (by mean difference) keeps them readable instead of one line. The
    axis gets room beyond the band for their labels and one tick, "±cap", at its edge.
    """
    at_cap = table["ln_bf"].abs() >= cap - 1e-6
    y = table["ln_bf"].astype(float).copy()
    band = 0.12 * cap
    below = y[~at_cap].to_numpy()
    low, high = min(below.min(initial=0.0), 0.0), max(below.max(initial=0.0), 0.0)
    for sign in (-1, 1):
        members = at_cap & (np.sign(table["ln_bf"]) == sign)
        if members.any():
            rank = table.loc[members, "mean_diff"].abs().rank(method="first")
            y[members] = sign * (cap + band * rank / (members.sum() + 1))
            ax.axhspan(sign * cap, sign * (cap + band), color="#f6e7c1", zorder=0, lw=0)
            low, high = (low, cap + 1.6 * band) if sign > 0 else (-cap - 1.6 * band, high)
    ax.set_ylim(low - 0.05 * cap, high + 0.05 * cap)
    ticks = [t for t in np.arange(-20, 21, 5.0) if abs(t) < cap - 2]
    ticks += [sign * cap for sign in (-1, 1) if (at_cap & (np.sign(table["ln_bf"]) == sign)).any()]
    ax.set_yticks(ticks, [f"{t:+.1f} (cap)" if abs(t) >= cap - 1e-6 else f"{t:g}" for t in ticks])
    return y


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
    ln_bf_cap: float | None = None,
) -> Figure:
    """ln Bayes factor against mean activity difference, one point per module (VEGA Fig. 1).

    Points beyond both thresholds (|ln BF| and |mean diff|) are highlighted; the ``n_labels``
    modules with the largest |ln BF| (then |mean diff|) are named. An evidence table
    (``control_pass``, ``calls_agree`` columns) also encodes the control and the agreement in
    the markers. With ``ln_bf_cap`` (the largest |ln BF| the pair count allows) modules at the
    cap are drawn as stars in a shaded band beyond it, spread by mean difference, and a note
    says how many there are.
    """
    _require_columns(bf_table, ["module", "ln_bf", "mean_diff"], "bf_table")
    table = bf_table.reset_index(drop=True)
    significant = (table["ln_bf"].abs() > ln_bf_threshold) & (
        table["mean_diff"].abs() > mean_diff_threshold
    )
    saturated = (
        table["ln_bf"].abs() >= ln_bf_cap - 1e-6
        if ln_bf_cap is not None
        else pd.Series(False, index=table.index)
    )
    figure = Figure(figsize=(8.5, 6))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    y = _saturation_band(ax, table, ln_bf_cap) if saturated.any() else table["ln_bf"]
    _label_room(ax, None if saturated.any() else y, table["mean_diff"])
    table = table.assign(_y=y)
    groups = [(rows & ~saturated, *rest) for rows, *rest in _volcano_groups(table, significant)]
    if saturated.any():
        label = f"saturated (|ln BF| = {ln_bf_cap:.1f})"
        groups.append((saturated, _SIGNIFICANT, "*", True, label))
    for selected, colour, marker, filled, label in groups:
        part = table[selected]
        ax.scatter(
            part["mean_diff"],
            part["_y"],
            s=12 if marker == "o" else 24,
            marker=marker,
            c=colour if filled else "none",
            edgecolors=colour,
            alpha=0.8,
            label=f"{label} ({len(part)})",
        )
    for sign in (-1, 1):
        ax.axhline(sign * ln_bf_threshold, ls="--", lw=0.8, c="k")
        ax.axvline(sign * mean_diff_threshold, ls=":", lw=0.8, c="k")
    ax.set_xlabel("mean activity difference (group 1 − group 2)")
    ax.set_ylabel("ln Bayes factor")
    ax.set_title(title or "Differential module activity", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if saturated.any():
        figure.text(
            0.99,
            0.01,
            f"{int(saturated.sum())} modules at the cap ±{ln_bf_cap:.1f} (every sampled pair "
            "agreed): shaded band, ordered by |mean difference|, not by ln BF.",
            ha="right",
            va="bottom",
            fontsize=7,
            color="#7a5c00",
        )
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    labelled = _top(table, n_labels, ("ln_bf", "mean_diff"))
    start = _below_band(labelled, ln_bf_cap) if saturated.any() else None
    _label_points(ax, labelled, "mean_diff", "_y", start)
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
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
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
    _label_room(ax, comparison["neg_log10_fdr"], comparison["abs_ln_bf"])
    ax.set_xlabel("VEGA |ln Bayes factor|")
    ax.set_ylabel("GSEA −log10 FDR")
    ax.set_title("GSEA pre-rank vs VEGA differential activity", fontsize=10)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="significant in",
        frameon=False,
    )
    figure.tight_layout()
    top = _top(comparison, n_labels, ("abs_ln_bf", "neg_log10_fdr"))
    _label_points(ax, top, "abs_ln_bf", "neg_log10_fdr")
    return figure


def module_violins(activities: pd.DataFrame, modules: Sequence[str], groupby: str) -> Figure:
    """Violin plot of each module's activity per level of the ``groupby`` column."""
    if not modules:
        raise GenevaeInputError("modules is empty; name at least one module column to plot.")
    _require_columns(activities, [*modules, groupby], "activities")
    levels = natural_sorted(activities[groupby])
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
        points = ax.scatter(
            activities[module_x], activities[module_y], c=colour, s=6, rasterized=True
        )
        figure.colorbar(points, ax=ax, label=color_by)
    else:
        for level in natural_sorted(colour):
            part = activities[colour.astype(str) == level]
            ax.scatter(part[module_x], part[module_y], s=6, alpha=0.7, label=level, rasterized=True)
        ax.legend(
            title=color_by,
            fontsize=8,
            markerscale=2,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
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
