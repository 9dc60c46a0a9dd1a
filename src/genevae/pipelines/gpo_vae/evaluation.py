"""Scoring every GPO-VAE variant and baseline the same way, for one comparison table.

Perturbation prediction (ATE metrics per reference: held-out test cells and, optionally, the
original all-cells reference) goes through ``score_ate_predictions``, which adds the
Ahlmann-Eltze et al. 2025 baselines (no change, mean of the training perturbations, linear
model), each perturbation's training mean and the split-half noise ceiling, and scores all of
them with the Systema metrics beside GPO-VAE's own. GRNs
(the variants' and the model-free effect-size baseline's) go through the CausalBench-style
statistical evaluation at a matched top-K and a reference network (K562 ChIP-Atlas).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from genevae.analysis.grn import (
    causalbench_statistical_eval,
    effect_size_grn,
    reference_network_metrics,
)
from genevae.analysis.perturbation import observed_ate, score_ate_predictions
from genevae.pipelines.gpo_vae.model_input import info, split_rows

EFFECT_SIZE_BASELINE = "training_mean"


def ate_table(
    predictions: Mapping[str, pd.DataFrame], model_input: ad.AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """ATE metrics of ``predictions`` and the baselines, one column block per reference.

    Columns are ``<metric>_<reference>cells`` (e.g.
    ``pearson_delta_vs_perturbed_centroid_top20de_testcells``).
    """
    meta = info(model_input)
    blocks = []
    for reference in params["references"]:
        table = score_ate_predictions(
            predictions,
            model_input.layers["counts"],
            model_input.obs["perturbation"],
            meta["control_label"],
            model_input.obs["split"],
            gene_names=list(model_input.var_names),
            reference=reference,
            top_k=tuple(params["top_k_genes"]),
            seed=params["seed"],
            unseen="pooled",
            linear_model=params["linear_model"],
        )
        blocks.append(table.add_suffix(f"_{reference}cells"))
    return pd.concat(blocks, axis=1)


def effect_size_edges(model_input: ad.AnnData) -> pd.DataFrame:
    """The model-free GRN baseline: |training-cell ATE| of each node under each perturbation."""
    meta = info(model_input)
    train = split_rows(model_input, "train")
    ate = observed_ate(
        model_input.layers["counts"][train],
        model_input.obs["perturbation"].iloc[train],
        meta["control_label"],
        gene_names=list(model_input.var_names),
    )
    return effect_size_grn(ate, meta["node_names"], meta["n_perturbed"])


def grn_metrics(
    edges: pd.DataFrame,
    model_input: ad.AnnData,
    reference_edges: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, float]:
    """Edge count, CausalBench TP/FP/μWD/FOR at top-K and reference-network agreement.

    Statistical tests use the ``grn_eval_split`` cells (log-normalised X). Reference metrics
    score the perturbed block (or all nodes, ``reference_targets: nodes``) for regulators the
    reference has; they are NaN when no perturbed gene is a reference regulator. The number of
    scored pairs and of reference positives among them are reported with them: AUROC/AUPRC are
    undefined (NaN) when every candidate pair is, or none is, a reference edge.
    """
    meta = info(model_input)
    perturbed = meta["node_names"][: meta["n_perturbed"]]
    cells = model_input[split_rows(model_input, params["grn_eval_split"])]
    k = params["grn_top_k"]
    statistics = causalbench_statistical_eval(
        edges,
        cells,  # sparse X, read one tested target column at a time
        cells.obs["perturbation"].astype(str).to_numpy(),
        meta["control_label"],
        top_k=k,
        n_negative=params["n_negative"],
        seed=params["seed"],
    )
    block = edges[edges["regulator"].isin(perturbed) & edges["target"].isin(perturbed)]
    metrics = {
        "grn_edges_above_threshold": float((block["probability"] > params["edge_threshold"]).sum()),
        f"grn_true_positives_top{k}": statistics["true_positives"],
        f"grn_false_positives_top{k}": statistics["false_positives"],
        f"grn_mean_wasserstein_top{k}": statistics["mean_wasserstein"],
        f"grn_false_omission_rate_top{k}": statistics["false_omission_rate"],
    }
    return metrics | _reference_metrics(edges, reference_edges, perturbed, meta, params)


def _reference_metrics(
    edges: pd.DataFrame,
    reference_edges: pd.DataFrame,
    perturbed: list[str],
    meta: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, float]:
    regulators = sorted(set(perturbed) & set(reference_edges["regulator"].astype(str)))
    names = ("n_pairs", "n_positive", "precision", "recall", "auroc", "auprc", "random_baseline")
    if not regulators:
        return {f"reference_{name}": float("nan") for name in names}
    targets = perturbed if params["reference_targets"] == "perturbed" else meta["node_names"]
    scores = reference_network_metrics(
        edges, reference_edges, regulators, targets, threshold=params["edge_threshold"]
    )
    return {f"reference_{name}": float(scores[name]) for name in names}


def grn_table(
    edge_tables: Mapping[str, pd.DataFrame],
    model_input: ad.AnnData,
    reference_edges: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """GRN metrics of every edge table plus the effect-size baseline (rows: predictor)."""
    tables = dict(edge_tables) | {EFFECT_SIZE_BASELINE: effect_size_edges(model_input)}
    rows = {
        name: grn_metrics(edges, model_input, reference_edges, params)
        for name, edges in tables.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("predictor")


def mlflow_metrics(comparison: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Finite entries as ``{"<predictor>.<metric>": {"value", "step"}}`` for kedro-mlflow."""
    return {
        f"{predictor}.{metric}": {"value": float(value), "step": 0}
        for predictor, row in comparison.iterrows()
        for metric, value in row.items()
        if np.isfinite(value)
    }
