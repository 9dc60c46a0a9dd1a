"""Figures of the evaluation report: models beside baselines, agreement, size bias, transfer.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot (safe under
any backend); axes are labelled and legends name the methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from genevae.analysis.metrics import spearman
from genevae.errors import GenevaeInputError
from genevae.plotting.labels import natural_sorted

_MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_BASELINE_COLOUR = "#9e9e9e"


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise GenevaeInputError(f"{name} lacks columns {missing}; has {list(table.columns)}.")


def _method_colours(methods: Sequence[str], baselines: set[str]) -> dict[str, str]:
    """Models in distinct colours, baselines in distinct greys (dark to light)."""
    grey = colormaps["Greys"]
    baseline_names = [m for m in methods if m in baselines]
    shades = np.linspace(0.75, 0.35, max(len(baseline_names), 1))
    colours = {name: grey(shade) for name, shade in zip(baseline_names, shades, strict=False)}
    models = [m for m in methods if m not in baselines]
    colours |= {m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(models)}
    return colours


def grouped_bars(
    table: pd.DataFrame,
    *,
    group: str,
    method: str = "method",
    value: str = "value",
    baselines: Sequence[str] = (),
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """Bars of ``value`` per ``group`` (x axis), one bar per method; baselines in grey.

    ``reference`` draws labelled horizontal lines (e.g. ``{"chance": 0.33}``).
    """
    _require(table, [group, method, value], "table")
    if table.empty:
        raise GenevaeInputError("grouped_bars: the table is empty.")
    groups = list(dict.fromkeys(table[group].astype(str)))
    methods = list(dict.fromkeys(table[method].astype(str)))
    colours = _method_colours(methods, set(baselines))
    bar_width = 0.8 / len(methods)
    width = min(11.0, max(5.5, 0.9 * len(groups) * max(1.0, len(methods) / 2) + 2.5))
    figure = Figure(figsize=(width, 4.0))
    ax = figure.subplots()
    positions = np.arange(len(groups))
    heights = (
        table.assign(_group=table[group].astype(str), _method=table[method].astype(str))
        .pivot_table(index="_group", columns="_method", values=value, aggfunc="mean")
        .reindex(index=groups, columns=methods)
    )
    for i, name in enumerate(methods):
        ax.bar(
            positions + (i - (len(methods) - 1) / 2) * bar_width,
            heights[name].to_numpy(dtype=float),
            bar_width,
            color=colours[name],
            label=name,
            edgecolor="white",
        )
    for label, level in (reference or {}).items():
        ax.axhline(level, ls="--", lw=1, c="k")
        ax.annotate(label, (len(groups) - 0.5, level), ha="right", va="bottom", fontsize=8)
    rotate = len(groups) > 4 or max(len(g) for g in groups) > 18
    ax.set_xticks(
        positions, groups, rotation=30 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_xlabel(xlabel or group.replace("_", " "))
    ax.set_ylabel(ylabel or value)
    ax.set_title(title, fontsize=10)
    ax.legend(title=method, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    return figure


def size_bias(
    comparison: pd.DataFrame,
    scores: Mapping[str, str],
    *,
    size_column: str = "set_size",
) -> Figure:
    """One panel per method: its module score against module size (log axis), with Spearman ρ.

    ``scores`` maps a panel label (e.g. "VEGA |ln BF|") to a column of ``comparison``. A
    method free of size bias shows no trend; GSEA's FDR typically improves with size.
    """
    _require(comparison, [size_column, *scores.values()], "comparison")
    figure = Figure(figsize=(4.2 * len(scores), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(scores)))
    sizes = comparison[size_column].to_numpy(dtype=float)
    for ax, (label, column) in zip(axes, scores.items(), strict=True):
        values = comparison[column].to_numpy(dtype=float)
        rho = spearman(sizes, values)
        ax.scatter(sizes, values, s=10, alpha=0.6, color="#34495e", linewidths=0)
        ax.set_xscale("log")
        if np.nanmax(values) > 20:  # −log10 p-values up to 300: linear below 1, log above
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0)
        ax.set_xlabel("module size (genes in the data)")
        ax.set_ylabel(label)
        ax.set_title(f"{label}\nSpearman ρ = {rho:.2f}", fontsize=10)
    figure.tight_layout()
    return figure


def agreement_scatter(
    comparison: pd.DataFrame,
    x: str,
    y: str,
    *,
    x_label: str,
    y_label: str,
    x_threshold: float | None = None,
    y_threshold: float | None = None,
    n_labels: int = 4,
    title: str = "",
    log_y: bool = False,
) -> Figure:
    """Two methods' module scores against each other, thresholds dashed, Spearman ρ in title.

    The ``n_labels`` modules with the highest ``x`` are named; ``log_y`` makes the y axis
    linear below 1 and logarithmic above (for −log10 p-values that reach the hundreds).
    """
    _require(comparison, ["module", x, y], "comparison")
    figure = Figure(figsize=(6.4, 4.8))
    ax = figure.subplots()
    ax.scatter(comparison[x], comparison[y], s=12, alpha=0.6, color="#34495e", linewidths=0)
    if x_threshold is not None:
        ax.axvline(x_threshold, ls="--", lw=0.8, c="k")
    if y_threshold is not None:
        ax.axhline(y_threshold, ls="--", lw=0.8, c="k")
    if log_y:
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0)
    for i, row in enumerate(comparison.nlargest(n_labels, x).itertuples()):
        name = str(row.module).removeprefix("REACTOME_").removeprefix("HALLMARK_")
        ax.annotate(
            name[:38],
            (getattr(row, x), getattr(row, y)),
            fontsize=7,
            xytext=(-4, -10 - 9 * i),
            textcoords="offset points",
            ha="right",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#777777"},
        )
    rho = spearman(comparison[x], comparison[y])
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(f"{title}{chr(10) if title else ''}Spearman ρ = {rho:.2f}", fontsize=10)
    figure.tight_layout()
    return figure


def generalisation_overview(
    results: pd.DataFrame,
    *,
    group: str = "cell_type",
    overlap: str = "top_k_overlap",
    r2_pair: tuple[str, str] = ("r2_full", "r2_held_out"),
    r2_labels: tuple[str, str] = ("full model", "held-out model"),
    paper_overlap: float | None = None,
    top_k: int = 50,
    title: str = "",
) -> Figure:
    """Left: top-k module overlap per group over resamples; right: R² of both models.

    Boxes show the resample distribution; the dashed line is the paper's value if given.
    """
    _require(results, [group, overlap, *r2_pair], "results")
    groups = natural_sorted(results[group])
    figure = Figure(figsize=(min(12.0, max(9.0, 1.2 * len(groups) + 4)), 4.4))
    left, right = figure.subplots(1, 2, width_ratios=[1.2, 1.0])
    data = [results.loc[results[group].astype(str) == g, overlap].to_numpy() for g in groups]
    left.boxplot(data, tick_labels=groups, widths=0.5)
    for i, values in enumerate(data, start=1):
        jitter = np.random.default_rng(i).uniform(-0.12, 0.12, size=len(values))
        left.scatter(np.full(len(values), i) + jitter, values, s=8, alpha=0.5, color="#1f77b4")
    if paper_overlap is not None:
        left.axhline(paper_overlap, ls="--", c="#d62728", lw=1, label=f"paper mean {paper_overlap}")
        left.legend(fontsize=8, loc="lower left")
    left.set_ylim(-0.02, 1.02)
    left.set_ylabel(f"fraction of top-{top_k} modules shared")
    left.set_xlabel(group.replace("_", " "))
    left.tick_params(axis="x", rotation=30)
    left.set_title("Differential modules: overlap between models", fontsize=10)
    summary = results.groupby(results[group].astype(str))[list(r2_pair)].agg(["mean", "std"])
    positions = np.arange(len(groups))
    for offset, column, label, colour in (
        (-0.15, r2_pair[0], r2_labels[0], "#1f77b4"),
        (0.15, r2_pair[1], r2_labels[1], "#d62728"),
    ):
        right.errorbar(
            positions + offset,
            summary.loc[groups, (column, "mean")],
            yerr=summary.loc[groups, (column, "std")].fillna(0.0),
            fmt="o",
            color=colour,
            label=label,
            capsize=3,
        )
    right.set_xticks(positions, groups, rotation=30, ha="right")
    right.set_xlabel(group.replace("_", " "))
    right.set_ylabel("R² mean reconstructed vs observed")
    right.set_title("Reconstruction of the mean profile (mean ± SD)", fontsize=10)
    right.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def benchmark_curves(
    results: pd.DataFrame,
    *,
    size: str = "n_cells",
    method: str = "method",
    metrics: Sequence[str] = ("auroc", "auprc"),
    chance: Mapping[str, float] | None = None,
    size_label: str = "",
    title: str = "",
) -> Figure:
    """One panel per metric: score against data-set size, one line per method."""
    _require(results, [size, method, *metrics], "results")
    figure = Figure(figsize=(4.6 * len(metrics) + 1.5, 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    methods = list(dict.fromkeys(results[method].astype(str)))
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    sizes = sorted(results[size].unique())
    for ax, metric in zip(axes, metrics, strict=True):
        for i, name in enumerate(methods):
            rows = results[results[method].astype(str) == name].groupby(size)[metric]
            mean, sd = rows.mean(), rows.std().fillna(0.0)
            marker, line = styles[i % len(styles)]
            ax.errorbar(
                mean.index * (1 + 0.03 * (i - (len(methods) - 1) / 2)),
                mean,
                yerr=sd,
                marker=marker,
                ls=line,
                capsize=3,
                label=name,
                color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)],
            )
        if chance and metric in chance:
            ax.axhline(chance[metric], ls=":", c="k", lw=1)
            ax.annotate("chance", (sizes[0], chance[metric]), fontsize=8, va="bottom")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.set_xlabel(size_label or size.replace("_", " "))
        ax.set_ylabel(metric.upper())
        ax.set_ylim(0, 1.05)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def error_histograms(errors: Mapping[str, np.ndarray], *, title: str = "") -> Figure:
    """Overlaid histograms of per-gene reconstruction error (log x, floored at 1e-6)."""
    if not errors:
        raise GenevaeInputError("error_histograms needs at least one method.")
    figure = Figure(figsize=(6.0, 3.8))
    ax = figure.subplots()
    floor = 1e-6  # exact fits (e.g. PCA of a handful of samples) are drawn at the floor
    values_all = np.concatenate([np.asarray(v, dtype=float) for v in errors.values()])
    low = max(floor, float(values_all[values_all > 0].min(initial=floor)))
    bins = np.logspace(np.log10(low), np.log10(max(values_all.max(), low * 10)), 40)
    for i, (name, values) in enumerate(errors.items()):
        ax.hist(
            np.clip(values, bins[0], None),
            bins=bins,
            histtype="step",
            lw=1.6,
            label=f"{name} (median {np.median(values):.3g})",
            color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)],
        )
    ax.set_xscale("log")
    ax.set_xlabel("per-gene mean squared reconstruction error")
    ax.set_ylabel("genes")
    ax.set_title(title)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
