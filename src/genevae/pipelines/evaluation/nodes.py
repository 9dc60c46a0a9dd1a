"""Evaluation nodes for trained models: latent quality, reconstruction, gene-module activity.

Every model input arrives through an :class:`OptionalDataset` as a ``Loaded`` record or
``None`` (the model has not run); nodes then return ``None`` parts and the section says what
to run. Each node returns a partial :class:`ReportSection`; ``assemble_section`` merges them
with the provenance of the inputs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from genevae.analysis.baselines import (
    PCABaseline,
    differential_module_scores,
    module_scores,
    pca_baseline,
)
from genevae.analysis.gsea import compare_gsea_with_bayes_factors, run_prerank, wilcoxon_ranking
from genevae.analysis.metrics import (
    call_jaccard,
    gene_squared_error,
    latent_scores,
    reconstruction_scores,
    spearman,
)
from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation.adapters import (
    current_run,
    gene_sets_of,
    producing_run,
    reconstruct,
    tag_input_version,
)
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.parts import (
    absent_part,
    figure_block,
    metric_rows,
    section_part,
)
from genevae.plotting.modules import gsea_vs_bayes_factor
from genevae.reporting import figures
from genevae.reporting.sections import ReportSection, TableBlock

GENE_MEAN = "gene_mean"


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=float)


# --- latent quality and reconstruction (every model with a latent space) --------------------


def latent_and_reconstruction(
    model: Loaded | None, encoded: Loaded | None, params: dict[str, Any]
) -> tuple[ReportSection, ReportSection, pd.DataFrame]:
    """Latent quality and reconstruction of a model beside one PCA of the same cells."""
    if encoded is None:
        return absent_part(), absent_part(), pd.DataFrame(columns=["gene"])
    settings = params["latent"]
    pca = pca_baseline(encoded.data.X, settings["pca_components"], seed=settings["seed"])
    latent = latent_quality(encoded.data, pca, params)
    if model is None:
        return latent, absent_part(), pd.DataFrame(columns=["gene"])
    return latent, *reconstruction_quality(model.data, encoded.data, pca, params)


def latent_quality(adata: AnnData, pca: PCABaseline, params: dict[str, Any]) -> ReportSection:
    """Silhouette and k-NN accuracy of the model's latent space beside PCA, per label."""
    model, settings = params["model"], params["latent"]
    keys = [key for key in params["label_keys"] if key in adata.obs.columns]
    absent = sorted(set(params["label_keys"]) - set(keys))
    scores = latent_scores(
        {model: np.asarray(adata.obsm[params["latent_key"]]), pca.name: pca.latent},
        adata.obs,
        keys,
        k=settings["knn_k"],
        n_folds=settings["knn_folds"],
        max_cells=settings["max_cells"],
        seed=settings["seed"],
    )
    wide = scores.pivot_table(index=["metric", "subset"], columns="method", values="value")
    fig_silhouette = figures.grouped_bars(
        scores[scores["metric"] == "silhouette"],
        group="subset",
        xlabel="label",
        baselines=[pca.name],
        title=f"{params['section']['title']}: silhouette width per label",
        ylabel="silhouette width (Euclidean)",
    )
    fig_knn = figures.grouped_bars(
        scores[scores["metric"] == "knn_accuracy"],
        group="subset",
        xlabel="label",
        baselines=[pca.name, "chance"],
        title=f"{params['section']['title']}: {settings['knn_k']}-NN label accuracy",
        ylabel="accuracy (5-fold CV)",
    )
    notes = [f"Label column(s) {absent} are not in the data; not scored."] if absent else []
    return section_part(
        notes=notes,
        tables=[
            TableBlock(
                "Latent quality: model beside a PCA baseline",
                wide.reset_index(),
                f"Silhouette (−1…1) and {settings['knn_k']}-NN accuracy of each label in the "
                f"model's latent space and in the first {pca.latent.shape[1]} principal "
                "components of the same cells; 'chance' is the share of the largest label. "
                "High values for cell type are good; for a batch label, values near 0 mean "
                "batches are mixed (good), high values mean a batch effect.",
            )
        ],
        figures=[
            figure_block("Silhouette width per label", fig_silhouette),
            figure_block("k-NN label accuracy", fig_knn),
        ],
        metrics=metric_rows(scores, model, baselines=[pca.name, "chance"], headline=True),
    )


def reconstruction_quality(
    bundle: ModelBundle, adata: AnnData, pca: PCABaseline, params: dict[str, Any]
) -> tuple[ReportSection, pd.DataFrame]:
    """R² of mean profiles per group and per-gene errors of the model and the PCA baseline."""
    name = params["model"]
    genes = adata.var_names.get_indexer(bundle.gene_names)
    if (genes < 0).any():
        raise GenevaeInputError(
            f"The {name} model expects genes missing from its encoded data; re-run its pipeline."
        )
    observed = _dense(adata.X)[:, genes]
    reconstructions = {
        name: reconstruct(bundle, adata),
        pca.name: pca.reconstruction[:, genes],
        GENE_MEAN: np.broadcast_to(observed.mean(axis=0), observed.shape),
    }
    keys = [key for key in params["reconstruction_groupby"] if key in adata.obs.columns]
    scores = reconstruction_scores(
        observed,
        reconstructions,
        {key: adata.obs[key].astype(str).to_numpy() for key in keys},
        kind=params["r2_kind"],
    )
    errors = pd.DataFrame(
        {
            f"{method}_mse": gene_squared_error(observed, values)
            for method, values in reconstructions.items()
        },
        index=pd.Index(bundle.gene_names, name="gene"),
    ).reset_index()
    return _reconstruction_part(scores, errors, params, [pca.name, GENE_MEAN]), errors


def _reconstruction_part(
    scores: pd.DataFrame, errors: pd.DataFrame, params: dict[str, Any], baselines: list[str]
) -> ReportSection:
    name = params["model"]
    per_group = scores[scores["metric"] == "mean_profile_r2"]
    wide = per_group.pivot_table(
        index="subset", columns="method", values="value", sort=False
    ).reset_index()
    groups = per_group[per_group["subset"].str.contains("=")].assign(
        subset=lambda t: t["subset"].str.split("=", n=1).str[1]
    )
    worst = errors.sort_values(f"{name}_mse", ascending=False).head(15)
    figures_out = [
        figure_block(
            "Per-gene reconstruction error",
            figures.error_histograms(
                {method: errors[f"{method}_mse"].to_numpy() for method in (name, *baselines)},
                title=f"{params['section']['title']}: per-gene mean squared error",
            ),
        )
    ]
    if not groups.empty:
        figures_out.insert(
            0,
            figure_block(
                "Mean-profile R² per group",
                figures.grouped_bars(
                    groups,
                    group="subset",
                    xlabel="group",
                    baselines=baselines,
                    title=f"{params['section']['title']}: reconstruction of each group's mean profile",
                    ylabel=f"R² ({params['r2_kind'].replace('_', ' ')})",
                ),
            ),
        )
    headline = scores["subset"].str.startswith("mean over") | scores["metric"].eq("median_gene_mse")
    return section_part(
        tables=[
            TableBlock(
                "Reconstruction of mean expression profiles",
                wide,
                "R² between the mean observed and the mean reconstructed profile over genes "
                "(VEGA Fig. 4 uses the squared Pearson correlation), for all cells and for each "
                f"group. Baselines: {baselines[0]} reconstructs each cell from its principal "
                f"components; {GENE_MEAN} predicts every cell by the mean over all cells, so a "
                "model must beat it to capture anything specific to a group.",
            ),
            TableBlock(
                "Genes reconstructed worst by the model",
                worst,
                "Mean squared error over cells, model beside the PCA baseline; the full table "
                "is saved as parquet.",
                max_rows=15,
            ),
        ],
        figures=figures_out,
        metrics=metric_rows(scores, name, baselines=baselines, headline=headline),
    )


# --- gene-module activity (VEGA) ---------------------------------------------------------------


def _contrast(vega_analysis: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The vega comparison to evaluate: ``settings.comparison`` or vega's GSEA contrast."""
    name = settings.get("comparison") or vega_analysis["gsea"]["comparison"]
    for comparison in vega_analysis["comparisons"]:
        group2 = comparison.get("group2") or "rest"
        default = f"{comparison['groupby']}:{comparison['group1']}_vs_{group2}"
        if (comparison.get("name") or default) == name:
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
    if (
        saved is not None
        and contrast["is_gsea_contrast"]
        and set(saved.data["module"]) >= set(gene_sets)
    ):
        return saved.data, f"GSEA from the vega pipeline ({saved.source} {saved.version})"
    groups = (contrast["groupby"], contrast["group1"], contrast.get("group2"))
    gsea = run_prerank(wilcoxon_ranking(cells, *groups), gene_sets, **settings["gsea"])
    table = compare_gsea_with_bayes_factors(
        gsea, bf_rows, exclude_prefix=settings["exclude_prefix"]
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


# --- perturbation prediction and GRN (GPO-VAE) --------------------------------------------------


def _predictor_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = predictors, whether the index was saved or came back as a column."""
    if "predictor" in table.columns:
        table = table.set_index("predictor")
    return table.rename_axis("predictor")


def gpo_vae_results(comparison: Loaded | None, params: dict[str, Any]) -> ReportSection:
    """The gpo_vae pipeline's comparison table: variants beside baselines and noise ceiling."""
    if comparison is None:
        return absent_part()
    table = _predictor_table(comparison.data)
    predictors = table.index.astype(str)
    baselines = [name for name in predictors if name not in set(params["variants"])]
    long = (
        table.reset_index()
        .rename(columns={"predictor": "method"})
        .melt(id_vars="method", var_name="metric", value_name="value")
        .dropna(subset=["value"])
    )
    is_grn = long["metric"].str.startswith(("grn_", "reference_"))
    long["family"] = np.where(is_grn, "grn", "perturbation")
    long["subset"] = np.where(
        long["metric"].str.endswith("_all"), "all-cells reference", "test cells"
    )
    headline = long["metric"].isin(params["headline_metrics"])
    part_figures = [
        figure_block(
            title,
            figures.grouped_bars(
                rows,
                group="metric",
                xlabel="metric",
                baselines=baselines,
                title=title,
                ylabel="score",
            ),
            caption,
        )
        for title, rows, caption in (
            (
                "Perturbation-effect prediction",
                long[headline & ~is_grn],
                "Pearson r / Jaccard between predicted and observed average treatment effects "
                "on held-out cells; grey: baselines and the split-half noise ceiling.",
            ),
            (
                "GRN inference",
                long[headline & is_grn],
                "μWD (higher is better) and false omission rate (lower is better) of the top "
                "edges, AUPRC against the ChIP-Atlas reference network.",
            ),
        )
        if not rows.empty
    ]
    return section_part(
        tables=[
            TableBlock(
                "Perturbation prediction and GRN inference, all predictors",
                table.reset_index(),
                "Rows: GPO-VAE variants, non-parametric baselines and the split-half noise "
                "ceiling (the best any predictor can do given measurement noise). Columns end "
                "in the reference cells (_test: held out; _all: the original all-cells "
                "reference, which includes training cells).",
                max_rows=None,
            )
        ],
        figures=part_figures,
        metrics=metric_rows(
            long[["method", "family", "metric", "subset", "value"]],
            params["model"],
            baselines=baselines,
            headline=headline.to_numpy(),
        ),
    )


# --- provenance and section assembly ------------------------------------------------------------


def provenance(report_params: dict[str, Any], *loaded: Loaded | None) -> list[dict[str, Any]]:
    """Version, file and producing MLflow run of every input that exists."""
    rows = []
    for item in loaded:
        if item is None:
            continue
        tag_input_version(item.source, item.version)
        run = producing_run(item.source, item.version, report_params["mlflow_ui_url"])
        rows.append(
            {"dataset": item.source, "version": item.version, "filepath": item.filepath} | run
        )
    return rows


def _parameter_table(lineage: list[dict[str, Any]], prefix: str | None) -> TableBlock | None:
    for row in lineage:
        params = row.get("params") or {}
        chosen = {k: v for k, v in params.items() if prefix and k.startswith(prefix)}
        if chosen:
            table = pd.DataFrame(sorted(chosen.items()), columns=["parameter", "value"])
            return TableBlock(
                f"Parameters of the training run ({row['run_name']} {row['run_id']})",
                table,
                "As logged by kedro-mlflow for the run that wrote the model.",
                max_rows=None,
            )
    return None


def assemble_section(
    params: dict[str, Any],
    report_params: dict[str, Any],
    lineage: list[dict[str, Any]],
    *parts: ReportSection,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Merge the parts into one section (JSON-ready) and its long metrics table."""
    present = [part for part in parts if part.available]
    rows = [{k: v for k, v in row.items() if k != "params"} for row in lineage]
    run = current_run(report_params["mlflow_ui_url"])
    section = ReportSection(
        key=params["key"],
        title=params["title"],
        summary=" ".join((params["description"] if present else params["missing_hint"]).split()),
        available=bool(present),
        lineage=rows,
        computed_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        run=run,
    )
    for part in present:
        section.extend(part)
    parameters = _parameter_table(lineage, params.get("params_prefix"))
    if present and parameters is not None:
        section.blocks.append(parameters)
    return section.to_dict(), section.metrics
