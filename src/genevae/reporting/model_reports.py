"""One HTML report per model pipeline, from that pipeline's own tables and figures.

The figures arrive as the PNG bytes the pipeline saved (``genevae.datasets.figures``), so a
report takes seconds: nothing is recomputed. Each builder returns the page and its headline
lines (the same lines end the console output of ``kedro run``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from genevae.analysis.metrics import spearman
from genevae.reporting.evidence import evidence_headline, evidence_report
from genevae.reporting.html import render_report
from genevae.reporting.sections import FigureBlock, ReportSection, TableBlock
from genevae.reporting.summary import rank_modules, top_modules_headline

Figures = bytes | Mapping[str, bytes]
Evidence = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
"""The vega pipeline's differential_evidence, evidence_stability and heldout_reconstruction."""


def figure_blocks(figures: Figures, title: str, caption: str = "") -> list[FigureBlock]:
    """Saved PNG bytes (one figure, or ``{file name: bytes}``) as report figures."""
    if isinstance(figures, bytes):
        return [FigureBlock(title, base64.b64encode(figures).decode("ascii"), caption)]
    return [
        FigureBlock(
            f"{title}: {name.removesuffix('.png')}", base64.b64encode(png).decode(), caption
        )
        for name, png in figures.items()
    ]


def _page(title: str, sections: list[ReportSection], headline: list[str], **kwargs: Any) -> str:
    return render_report(
        title,
        sections,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        headline=headline,
        run_label="pipeline run",
        **kwargs,
    )


def vega_report(
    bf_table: pd.DataFrame,
    top_genes: pd.DataFrame,
    gsea_table: pd.DataFrame | None,
    figures: Mapping[str, Figures],
    *,
    ln_bf_cap: float,
    evidence: Evidence | None = None,
    parameters: Mapping[str, Any] | None = None,
    n_top: int = 15,
    ln_bf_threshold: float = 3.0,
) -> tuple[str, list[str]]:
    """The Bayes-factor report: top modules per comparison, volcanoes, the evidence behind the
    top calls, agreement with GSEA (and module scores when the GSEA table has
    ``module_score*`` columns), UMAPs, training.

    ``figures`` holds the saved PNGs under ``volcano``, ``gsea``, ``umap``, ``activity`` and
    ``training`` (missing keys are left out). ``evidence`` is the vega pipeline's
    ``(differential_evidence, evidence_stability, heldout_reconstruction)``.
    """
    headline = top_modules_headline(bf_table, cap=ln_bf_cap)
    if evidence is not None:
        headline += evidence_headline(evidence[0])
    sections = [
        _modules_section(bf_table, top_genes, figures, ln_bf_cap, n_top),
        _evidence_section(evidence, ln_bf_threshold),
        _agreement_section(gsea_table, figures),
        _figure_section("latent", "Module activities", figures, ("umap", "activity")),
        _figure_section("training", "Training", figures, ("training",)),
    ]
    page = _page("VEGA: differential module activity", sections, headline, parameters=parameters)
    return page, headline


def _modules_section(
    bf_table: pd.DataFrame,
    top_genes: pd.DataFrame,
    figures: Mapping[str, Figures],
    ln_bf_cap: float,
    n_top: int,
) -> ReportSection:
    blocks: list[Any] = []
    summary = []
    for comparison, table in bf_table.groupby("comparison", sort=False):
        top = rank_modules(table)
        n_saturated = int((table["ln_bf"].abs() >= ln_bf_cap - 1e-6).sum())
        summary.append(
            f"{comparison}: {int(table['is_significant'].sum())} of {len(table)} modules "
            f"significant; {n_saturated} at the ln BF cap (±{ln_bf_cap:.1f}: every sampled "
            "pair agreed, so they cannot be ranked among themselves)."
        )
        columns = [
            c for c in ("module", "ln_bf", "mean_diff", "n_genes", "is_significant") if c in top
        ]
        blocks.append(TableBlock(f"Top {n_top} modules, {comparison}", top[columns].head(n_top)))
    blocks += figure_blocks(figures.get("volcano", {}), "Volcano", "ln BF against mean difference.")
    modules = list(rank_modules(bf_table)["module"])
    genes = top_genes[top_genes["module"].isin(modules[:5])]
    blocks.append(TableBlock("Highest-weight genes of the top modules", genes, collapsed=True))
    return ReportSection("modules", "Differential modules", "\n\n".join(summary), blocks=blocks)


def _evidence_section(evidence: Evidence | None, ln_bf_threshold: float) -> ReportSection:
    title = "Evidence behind the calls"
    if evidence is None:
        return ReportSection("evidence", title, "No evidence table.", available=False)
    summary, blocks = evidence_report(*evidence, ln_bf_threshold=ln_bf_threshold)
    return ReportSection("evidence", title, summary, blocks=list(blocks))


def _agreement_section(
    gsea_table: pd.DataFrame | None, figures: Mapping[str, Figures]
) -> ReportSection:
    title = "Agreement with GSEA"
    if gsea_table is None or gsea_table.empty:
        return ReportSection("agreement", title, "GSEA was not run.", available=False)
    rho = spearman(gsea_table["abs_ln_bf"], gsea_table["neg_log10_fdr"])
    summary = (
        f"Spearman ρ between VEGA |ln BF| and GSEA −log10 FDR over {len(gsea_table)} modules: "
        f"{rho:.2f}."
    )
    for column in (c for c in gsea_table.columns if c.startswith("module_score")):
        rho_score = spearman(gsea_table["abs_ln_bf"], np.abs(gsea_table[column]))
        summary += f" Against |{column}|: ρ = {rho_score:.2f}."
    blocks: list[Any] = figure_blocks(figures.get("gsea", {}), "GSEA against VEGA")
    table = gsea_table.sort_values("abs_ln_bf", ascending=False)
    blocks.append(TableBlock("Modules by |ln BF| with their GSEA FDR", table, max_rows=20))
    return ReportSection("agreement", title, summary, blocks=blocks)


def _figure_section(
    key: str, title: str, figures: Mapping[str, Figures], names: Sequence[str]
) -> ReportSection:
    blocks = [b for name in names if name in figures for b in figure_blocks(figures[name], title)]
    return ReportSection(
        key, title, available=bool(blocks), summary="" if blocks else "No figures.", blocks=blocks
    )


def tybalt_report(
    node_activity: pd.DataFrame,
    high_weight_genes: pd.DataFrame,
    figures: Mapping[str, Figures],
    *,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """The latent report: maps of the samples, node activations, genes behind each node."""
    top = node_activity.head(3)
    headline = [
        f"Tybalt: {len(node_activity)} latent nodes; most variable: "
        + ", ".join(str(v) for v in top.iloc[:, 0])
    ]
    nodes = ReportSection(
        "nodes",
        "Latent nodes",
        "Node activity summary (one row per node) and the genes with the largest decoder weights.",
        blocks=[
            TableBlock("Node activity", node_activity, max_rows=20),
            TableBlock("High-weight genes", high_weight_genes, max_rows=30, collapsed=True),
            *figure_blocks(figures.get("activations", {}), "Activation distributions"),
        ],
    )
    sections = [
        _figure_section("maps", "Sample maps", figures, ("maps",)),
        nodes,
        _figure_section("training", "Training", figures, ("training",)),
    ]
    return _page(
        "Tybalt: latent space of TCGA samples", sections, headline, parameters=parameters
    ), headline


SYSTEMA_METRICS = (
    "pearson_delta_vs_control_top20de_pooled_testcells",
    "pearson_delta_vs_perturbed_centroid_allgenes_testcells",
    "pearson_delta_vs_perturbed_centroid_top20de_testcells",
    "centroid_accuracy_testcells",
)
"""Columns of the headline table: the paper's ATE r (top-20 DE, pooled) and the Systema
metrics (Pearson Δ against the perturbed centroid, centroid accuracy), on held-out cells."""


def gpo_vae_report(
    comparison: pd.DataFrame,
    top_edges: pd.DataFrame,
    figures: Mapping[str, Figures],
    *,
    parameters: Mapping[str, Any] | None = None,
    variants: Sequence[str] = ("gpo_vae", "gpo_vae_no_grn", "gpo_vae_no_artifact"),
) -> tuple[str, list[str]]:
    """The GRN report: GPO-VAE and its ablations beside every baseline on the paper's and the
    Systema metrics, the full table, top edges, heat map."""
    table = comparison.reset_index() if comparison.index.name else comparison
    headline = [f"GPO-VAE: {len(top_edges)} top regulatory edges; " + _best_line(table)]
    headline += _systema_lines(table, variants)
    columns = [c for c in SYSTEMA_METRICS if c in table.columns]
    metrics = ReportSection(
        "metrics",
        "Metrics beside baselines",
        "Rows: GPO-VAE, its ablations and the baselines (no change, the mean of the training "
        "perturbations, each perturbation's training mean, the linear model of Ahlmann-Eltze "
        "et al. 2025) and the split-half noise ceiling. Systema (Viñas Torné et al. 2025) "
        "scores against the perturbed centroid, which removes the shift all perturbations "
        "share.",
        blocks=[
            TableBlock(
                "Paper and Systema metrics, held-out cells",
                table[[table.columns[0], *columns]],
                max_rows=None,
            ),
            TableBlock("All metrics", table, max_rows=None, collapsed=bool(columns)),
        ],
    )
    edges = ReportSection(
        "edges",
        "Regulatory network",
        "The strongest edges of the learned GRN (GPO-VAE, full model).",
        blocks=[
            TableBlock("Top edges", top_edges, max_rows=30),
            *figure_blocks(figures.get("heatmap", {}), "GRN heat map"),
            *figure_blocks(figures.get("edges", {}), "Top edges"),
        ],
    )
    sections = [metrics, edges, _figure_section("training", "Training", figures, ("training",))]
    return _page(
        "GPO-VAE: gene regulatory network", sections, headline, parameters=parameters
    ), headline


def _systema_lines(table: pd.DataFrame, variants: Sequence[str]) -> list[str]:
    """Per headline metric: GPO-VAE's value against the best baseline's (ceiling excluded)."""
    by_name = table.set_index(table.columns[0])
    model = next((v for v in variants if v in by_name.index), None)
    baselines = [n for n in by_name.index if n not in variants and "ceiling" not in str(n)]
    lines = []
    for column in (c for c in SYSTEMA_METRICS if c in by_name.columns and model is not None):
        scores = by_name.loc[baselines, column].dropna()
        if scores.empty:
            continue
        best = scores.idxmax()
        lines.append(
            f"{column}: {model} {by_name.loc[model, column]:.3f}, "
            f"best baseline {best} {scores[best]:.3f}"
        )
    return lines


def _best_line(table: pd.DataFrame) -> str:
    """The first numeric metric column, and which predictor scores highest on it."""
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    if not numeric or table.empty:
        return "no metrics"
    column = numeric[0]
    best = table.loc[table[column].idxmax()]
    return f"best {column}: {best.iloc[0]} ({best[column]:.3g})"
