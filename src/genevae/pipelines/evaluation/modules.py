"""Gene-module activity of VEGA beside two model-free methods, with the size-bias check.

VEGA's Bayes factors (from the vega pipeline) are compared with GSEA pre-rank on a Wilcoxon
gene ranking and with a Welch test of scanpy module scores, on the same modules, cells and
contrast (by default the vega pipeline's GSEA contrast: the paper's innate cells).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.analysis.comparisons import comparison_name
from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation.adapters import gene_sets_of
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.parts import (
    absent_part,
    figure_block,
    metric_rows,
    section_part,
)
from genevae.reporting.sections import ReportSection, TableBlock

if TYPE_CHECKING:
    from anndata import AnnData


def _contrast(vega_analysis: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The vega comparison to evaluate: ``settings.comparison`` or vega's GSEA contrast."""
    name = settings.get("comparison") or vega_analysis["gsea"]["comparison"]
    for comparison in vega_analysis["comparisons"]:
        if comparison_name(comparison) == name:
            gsea_contrast = name == vega_analysis["gsea"]["comparison"]
            return comparison | {"name": name, "is_gsea_contrast": gsea_contrast}
    raise GenevaeInputError(
        f"evaluation.vega.module_activity.comparison={name!r} is not one of "
        "vega.analysis.comparisons; name one of them."
    )


def _contrast_cells(adata: AnnData, contrast: dict[str, Any], cell_type_key: str) -> AnnData:
    if not contrast.get("cell_types"):
        return adata
    return adata[adata.obs[cell_type_key].astype(str).isin(contrast["cell_types"]).to_numpy()]


def _gsea_table(
    saved: Loaded | None,
    cells: AnnData,
    contrast: dict[str, Any],
    gene_sets: dict[str, list[str]],
    bf_rows: pd.DataFrame,
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, str]:
    """The vega pipeline's GSEA comparison when it is of this contrast, else a fresh prerank."""
    from genevae.analysis.gsea import gsea_for_contrast

    if (
        saved is not None
        and contrast["is_gsea_contrast"]
        and set(saved.data["module"]) >= set(gene_sets)
    ):
        return saved.data, f"GSEA from the vega pipeline ({saved.source} {saved.version})"
    groups = (contrast["groupby"], contrast["group1"], contrast.get("group2"))
    table = gsea_for_contrast(
        cells,
        *groups,
        gene_sets,
        bf_rows,
        prerank=settings["gsea"],
        exclude_prefix=settings["exclude_prefix"],
    )
    return table, "GSEA pre-rank computed here on the model's gene modules"


def module_activity(
    differential: Loaded | None,
    gsea: Loaded | None,
    model: Loaded | None,
    encoded: Loaded | None,
    vega_analysis: dict[str, Any],
    params: dict[str, Any],
) -> tuple[ReportSection, pd.DataFrame]:
    """VEGA's Bayes factors against GSEA pre-rank and a module-score test, with size bias.

    All three score the model's modules on the same cells and contrast (by default the
    vega pipeline's GSEA contrast, the paper's innate cells stimulated vs control).
    """
    from genevae.analysis.baselines import differential_module_scores, module_scores

    if differential is None or model is None or encoded is None:
        return absent_part(), pd.DataFrame(columns=["module"])
    settings = params["module_activity"]
    contrast = _contrast(vega_analysis, settings)
    cells = _contrast_cells(encoded.data, contrast, vega_analysis["cell_type_key"])
    gene_sets = gene_sets_of(model.data, settings["exclude_prefix"])
    bf_rows = differential.data[differential.data["comparison"] == contrast["name"]]
    if bf_rows.empty:
        return section_part(
            notes=[
                f"Module activity not scored: {differential.source} {differential.version} has "
                f"no comparison {contrast['name']!r} (it has "
                f"{sorted(differential.data['comparison'].unique())}); re-run the vega pipeline."
            ]
        ), pd.DataFrame(columns=["module"])
    table, gsea_origin = _gsea_table(gsea, cells, contrast, gene_sets, bf_rows, settings)
    table = table[table["module"].isin(gene_sets)]
    score_settings = dict(settings["module_score"])
    test = score_settings.pop("test")
    tested = differential_module_scores(
        module_scores(cells, gene_sets, **score_settings),
        cells.obs[contrast["groupby"]].astype(str),
        contrast["group1"],
        contrast.get("group2"),
        test=test,
    )
    table = table.merge(
        tested[["module", "mean_diff", "fdr", "neg_log10_fdr"]].rename(
            columns=lambda c: c if c == "module" else f"score_{c}"
        ),
        on="module",
        how="left",
    )
    part = _module_part(table, params, contrast)
    part.notes.append(f"{gsea_origin}; contrast {contrast['name']} on {cells.n_obs} cells.")
    return part, table


def _module_calls(table: pd.DataFrame, settings: dict[str, Any], model: str) -> pd.DataFrame:
    """Per method: the score it ranks modules by and its significance call."""
    return pd.DataFrame(
        {
            "method": [model, "gsea", "module_score"],
            "score": ["abs_ln_bf", "neg_log10_fdr", "score_neg_log10_fdr"],
            "call": [
                table["abs_ln_bf"] > settings["ln_bf_threshold"],
                table["fdr"] < settings["fdr_threshold"],
                table["score_fdr"] < settings["fdr_threshold"],
            ],
        }
    ).set_index("method")


def _module_metrics(table: pd.DataFrame, calls: pd.DataFrame, model: str) -> pd.DataFrame:
    """Agreement (pairs), size bias and number of significant modules, in the long format."""
    from genevae.analysis.metrics import call_jaccard, spearman

    rows = []
    for first, second in ((model, "gsea"), (model, "module_score"), ("gsea", "module_score")):
        pair = f"{first} ~ {second}"
        scores = (table[calls.loc[first, "score"]], table[calls.loc[second, "score"]])
        rows.append((first, "agreement", "spearman", pair, spearman(*scores)))
        call_pair = (calls.loc[first, "call"], calls.loc[second, "call"])
        rows.append((first, "agreement", "call_jaccard", pair, call_jaccard(*call_pair)))
    for method, row in calls.iterrows():
        size_rho = spearman(table["set_size"], table[row["score"]])
        rows.append((method, "size_bias", "spearman_with_module_size", "modules", size_rho))
        rows.append((method, "modules", "n_significant", "modules", float(row["call"].sum())))
    frame = pd.DataFrame(rows, columns=["method", "family", "metric", "subset", "value"])
    return metric_rows(
        frame,
        model,
        baselines=["gsea", "module_score"],
        headline=frame["metric"].isin(["spearman", "spearman_with_module_size"]).to_numpy(),
    )


def _module_tables(metrics: pd.DataFrame, settings: dict[str, Any]) -> list[TableBlock]:
    pairs = metrics[metrics["family"] == "agreement"].pivot_table(
        index="subset", columns="metric", values="value", sort=False
    )
    per_method = metrics[metrics["family"] != "agreement"].pivot_table(
        index="method", columns="metric", values="value", sort=False
    )
    return [
        TableBlock(
            "Agreement between methods",
            pairs.reset_index().rename(
                columns={"subset": "methods", "spearman": "Spearman ρ", "call_jaccard": "Jaccard"}
            ),
            "Spearman ρ between the methods' module scores (|ln BF| for the model, −log10 FDR "
            "for GSEA pre-rank on a Wilcoxon ranking and for a Welch test of scanpy module "
            "scores) and the Jaccard index of their significant modules (|ln BF| > "
            f"{settings['ln_bf_threshold']}, FDR < {settings['fdr_threshold']}).",
        ),
        TableBlock(
            "Significant modules and size bias per method",
            per_method.reset_index().rename(
                columns={
                    "n_significant": "significant modules",
                    "spearman_with_module_size": "Spearman ρ with module size",
                }
            ),
            "Size bias: Spearman ρ between a method's score and the number of the module's "
            "genes in the data (0 = no bias; GSEA and module scores gain power with size).",
        ),
    ]


def _module_part(
    table: pd.DataFrame, params: dict[str, Any], contrast: dict[str, Any]
) -> ReportSection:
    from genevae.plotting.modules import gsea_vs_bayes_factor
    from genevae.reporting import figures

    settings, model = params["module_activity"], params["model"]
    comparison = contrast["name"]
    metrics = _module_metrics(table, _module_calls(table, settings, model), model)
    top = table.sort_values(["abs_ln_bf", "neg_log10_fdr"], ascending=False).head(20)
    size_scores = {
        f"{model} |ln BF|": "abs_ln_bf",
        "GSEA −log10 FDR": "neg_log10_fdr",
        "module score −log10 FDR": "score_neg_log10_fdr",
    }
    return section_part(
        tables=[
            *_module_tables(metrics, settings),
            TableBlock(
                f"Top modules by |ln Bayes factor|, {comparison}",
                top[["module", "ln_bf", "fdr", "score_fdr", "score_mean_diff", "set_size"]],
                "ln_bf > 0: more active in group 1. fdr: GSEA; score_fdr / score_mean_diff: "
                "module-score test (group 1 − group 2).",
                max_rows=20,
            ),
        ],
        figures=[
            figure_block(
                "VEGA Bayes factors against GSEA",
                gsea_vs_bayes_factor(table, settings["fdr_threshold"], settings["ln_bf_threshold"]),
                "As the paper's Fig. 1: point size = module size; dashed lines: thresholds.",
            ),
            figure_block(
                "VEGA Bayes factors against the module-score baseline",
                figures.agreement_scatter(
                    table,
                    "abs_ln_bf",
                    "score_neg_log10_fdr",
                    x_label=f"{model} |ln Bayes factor|",
                    y_label="module-score test −log10 FDR",
                    x_threshold=settings["ln_bf_threshold"],
                    y_threshold=-np.log10(settings["fdr_threshold"]),
                    title=comparison,
                    log_y=True,
                ),
                "The y axis is linear up to 1 and logarithmic above (p-values reach 1e-300).",
            ),
            figure_block(
                "Size bias: score against module size",
                figures.size_bias(table, size_scores),
                "A method without size bias shows no trend with the number of genes.",
            ),
        ],
        metrics=metrics,
    )


def evidence_part(
    evidence: Loaded | None,
    stability: Loaded | None,
    heldout: Loaded | None,
    params: dict[str, Any],
) -> ReportSection:
    """The vega pipeline's evidence behind its top calls: verdict table, stability, control.

    Metrics: per comparison the significant modules, those beating the random-mask control
    and those also backed by every baseline, the top-k overlap over replicates; the held-out
    reconstruction of the real mask beside the random masks (a baseline).
    """
    from genevae.reporting.evidence import evidence_report

    if evidence is None:
        return section_part(notes=["No evidence table yet: re-run the vega pipeline to write it."])
    empty_stability = pd.DataFrame(columns=["comparison", "n_replicates", "k", "top_k_overlap"])
    empty_heldout = pd.DataFrame(columns=["kind", "validation_reconstruction"])
    tables = (
        evidence.data,
        empty_stability if stability is None else stability.data,
        empty_heldout if heldout is None else heldout.data,
    )
    settings = params["evidence"]
    summary, blocks = evidence_report(
        *tables,
        n_top=settings["n_top"],
        ln_bf_threshold=params["module_activity"]["ln_bf_threshold"],
    )
    return section_part(
        summary=summary,
        tables=blocks,
        metrics=_evidence_metrics(*tables, model=params["model"]),
        notes=[f"Evidence from {evidence.source} {evidence.version}."],
    )


def _evidence_metrics(
    evidence: pd.DataFrame, stability: pd.DataFrame, heldout: pd.DataFrame, model: str
) -> pd.DataFrame:
    """Counts of backed calls and top-k overlaps per comparison; held-out reconstruction."""
    from genevae.reporting.evidence import call_counts

    rows = []
    for name, table in evidence.groupby("comparison", sort=False):
        called, passing, backed = call_counts(table)
        counts = {"n_significant": called.sum(), "n_beating_control": passing, "n_backed": backed}
        rows += [(model, "evidence", m, name, float(v)) for m, v in counts.items()]
    for row in stability.itertuples():
        metric = f"top{row.k}_overlap_{row.kind}"
        rows.append((model, "evidence", metric, row.comparison, row.top_k_overlap))
    by_kind = heldout.groupby("kind")["validation_reconstruction"].mean()
    names = {"real": model, "random_mask": "random_mask"}
    for kind, value in by_kind.items():
        rows.append((names.get(kind, kind), "reconstruction", "heldout_loss", "validation", value))
    frame = pd.DataFrame(rows, columns=["method", "family", "metric", "subset", "value"])
    return metric_rows(
        frame,
        model,
        baselines=["random_mask"],
        headline=(frame["metric"] == "heldout_loss").to_numpy(),
    )
