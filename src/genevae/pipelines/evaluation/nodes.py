"""Evaluation nodes for trained models: latent quality, reconstruction, GPO-VAE's table,
provenance and section assembly.

Every model input arrives through an :class:`OptionalDataset` as a ``Loaded`` record or
``None`` (the model has not run); nodes then return absent parts and the section says what
to run. Each node returns a partial :class:`ReportSection`; ``assemble_section`` merges them
with the provenance of the inputs.

Libraries that load scikit-learn, scanpy, torch or matplotlib are imported inside the
functions that use them, so that building the pipeline (``kedro run`` start-up) does not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation.adapters import (
    current_run,
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
from genevae.reporting.sections import ReportSection, TableBlock

if TYPE_CHECKING:
    from anndata import AnnData

    from genevae.analysis.baselines import PCABaseline

GENE_MEAN = "gene_mean"


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=float)


# --- latent quality and reconstruction (every model with a latent space) --------------------


def latent_and_reconstruction(
    model: Loaded | None, encoded: Loaded | None, params: dict[str, Any]
) -> tuple[ReportSection, ReportSection, pd.DataFrame]:
    """Latent quality and reconstruction of a model beside one PCA of the same cells."""
    from genevae.analysis.baselines import pca_baseline

    if encoded is None:
        return absent_part(), absent_part(), pd.DataFrame(columns=["gene"])
    settings = params["latent"]
    cells = scored_cells(encoded.data, settings["max_scored_cells"], settings["seed"])
    pca = pca_baseline(cells.X, settings["pca_components"], seed=settings["seed"])
    latent = latent_quality(cells, pca, params)
    if model is None:
        return latent, absent_part(), pd.DataFrame(columns=["gene"])
    return latent, *reconstruction_quality(model.data, cells, pca, params)


def scored_cells(adata: AnnData, max_cells: int | None, seed: int) -> AnnData:
    """All cells, or above ``max_cells`` a seeded uniform subsample (in the original order).

    The section's scores are means over cells (silhouette, k-NN accuracy, mean profiles,
    per-gene errors): a uniform subsample estimates the same quantities, while the PCA
    baseline and the dense cells × genes reconstructions stay the size of the subsample.
    """
    if max_cells is None or adata.n_obs <= max_cells:
        return adata
    if max_cells < 2:
        raise GenevaeInputError(f"latent.max_scored_cells must be >= 2 or null; got {max_cells}.")
    rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, max_cells, replace=False))
    return adata[rows].copy()


def latent_quality(adata: AnnData, pca: PCABaseline, params: dict[str, Any]) -> ReportSection:
    """Silhouette and k-NN accuracy of the model's latent space beside PCA, per label."""
    from genevae.analysis.metrics import latent_scores
    from genevae.reporting import figures

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
        ylabel="accuracy (stratified cross-validation)",
    )
    notes = [f"Label column(s) {absent} are not in the data; not scored."] if absent else []
    if pca.latent.shape[1] >= adata.n_obs - 1:
        notes.append(
            f"Only {adata.n_obs} samples: {pca.name} spans them all and reconstructs them "
            "exactly, so it is no test for the model here; gene_mean is the useful baseline."
        )
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
    from genevae.analysis.metrics import gene_squared_error, reconstruction_scores

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
    from genevae.reporting import figures

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


# --- perturbation prediction and GRN (GPO-VAE) --------------------------------------------------


def _predictor_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = predictors, whether the index was saved or came back as a column."""
    if "predictor" in table.columns:
        table = table.set_index("predictor")
    return table.rename_axis("predictor")


def gpo_vae_results(comparison: Loaded | None, params: dict[str, Any]) -> ReportSection:
    """The gpo_vae pipeline's comparison table: variants beside baselines and noise ceiling."""
    from genevae.reporting import figures

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
        long["metric"].str.endswith("_allcells"), "all-cells reference", "test cells"
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
                "Pearson r of predicted vs observed effects on held-out cells, against the "
                "control mean and against the perturbed centroid (Systema: the shift shared "
                "by all perturbations removed), and centroid accuracy; grey: baselines and "
                "the split-half noise ceiling.",
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
                "Rows: GPO-VAE variants; baselines from the training cells (control_mean: no "
                "change; pooled_training_mean: the mean of the training perturbations, "
                "Systema's perturbed mean; training_mean: each perturbation's own training "
                "cells; linear_model: Ahlmann-Eltze et al. 2025) and the split-half noise "
                "ceiling (the best any predictor can do given measurement noise). Columns end "
                "in the reference cells (_testcells: held out; _allcells: the original "
                "all-cells reference, which includes training cells). _pooled: over "
                "perturbations × genes (GPO-VAE's paper); otherwise per perturbation, averaged.",
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
                collapsed=True,
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
