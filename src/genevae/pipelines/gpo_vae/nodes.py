"""GPO-VAE nodes: thin adapters from catalog data and parameters to the library.

Library modules that load torch, POT, scanpy, scikit-learn or matplotlib (and
`genevae.pipelines.gpo_vae.evaluation`, which loads several) are imported inside the node that
uses them, so that building the pipeline (``kedro run`` start-up) does not load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.pipelines.gpo_vae.model_input import (
    info,
    perturbation_dosage,
    tensor_data,
    to_anndata,
)

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from matplotlib.figure import Figure

    from genevae.models.gpo_vae import GPOVAE

_INPUT_KEYS = (
    "lfc_threshold",
    "padj_threshold",
    "filter_mode",
    "match_on",
    "ot_reg",
    "ot_cost_scale",
    "qc_n_mads",
    "cf_max_cells",
    "seed",
    "fit_on",
    "train_split",
)


def build_model_input(adata: AnnData, params: dict[str, Any]) -> AnnData:
    """GRN nodes, dosage, OT-matched ΔX, QC flags, counterfactuals and weights in one AnnData."""
    from genevae.preprocessing.gpo_inputs import build_gpo_inputs

    inputs = build_gpo_inputs(
        adata,
        params["perturbation_key"],
        params["control_label"],
        split_key=params["split_key"],
        counts_layer=params["counts_layer"],
        **{key: params[key] for key in _INPUT_KEYS},
    )
    return to_anndata(adata, inputs, params["counts_layer"], params["control_label"])


def train_gpo_vae(
    model_input: AnnData,
    model_params: dict[str, Any],
    training_params: dict[str, Any],
    variant: dict[str, Any],
) -> tuple[ModelBundle, pd.DataFrame, dict[str, list[dict[str, float]]]]:
    """Train one variant (model params + the variant's overrides) on train, stop on validation.

    Returns the bundle, the per-epoch history and the same history as MLflow metrics (logged
    under the variant's prefix, so the three variants of one run do not mix).
    """
    import torch

    from genevae.models.gpo_vae import GPOVAE, log_standardization
    from genevae.training import TrainingSettings, train_model

    meta = info(model_input)
    train, validation = tensor_data(model_input, "train"), tensor_data(model_input, "validation")
    settings = TrainingSettings.from_params(_variant_training(training_params, variant["name"]))
    torch.manual_seed(settings.seed)  # the initial weights, too, follow the training seed
    model = GPOVAE(
        n_genes=model_input.n_vars,
        n_nodes=len(meta["node_names"]),
        **(model_params | variant.get("model_overrides", {})),
    )
    model.set_standardization(*log_standardization(train.arrays["counts"]))
    result = train_model(model, train, validation, settings, log_to_mlflow=False)
    bundle = ModelBundle(
        model=result.model.cpu(),
        gene_names=list(model_input.var_names),
        metadata={
            **meta,
            "variant": variant["name"],
            "device": result.device,
            "device_name": result.device_name,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "weights_epoch": result.weights_epoch,
            "training": training_params,
        },
    )
    return bundle, result.history, _epoch_metrics(result.history)


def _variant_training(training_params: dict[str, Any], name: str) -> dict[str, Any]:
    """Training parameters with a per-variant checkpoint folder (variants never share one)."""
    if training_params.get("checkpoint_dir") is None:
        return dict(training_params)
    return training_params | {"checkpoint_dir": str(Path(training_params["checkpoint_dir"]) / name)}


def _epoch_metrics(history: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    """``{"<split>_<term>": [{"value", "step": epoch}, ...]}`` for MlflowMetricsHistoryDataset.

    ``best_epoch`` (one value) is the epoch whose weights the bundle holds with
    ``restore_best_weights``.
    """
    metrics = {
        f"{split}_{term}": [
            {"value": float(row.value), "step": int(row.epoch)} for row in part.itertuples()
        ]
        for (split, term), part in history.groupby(["split", "term"], sort=False)
    }
    best = history.loc[history["best"], "epoch"] if "best" in history.columns else []
    if len(best):
        metrics["best_epoch"] = [{"value": float(best.iloc[0]), "step": 0}]
    return metrics


def _device_model(bundle: ModelBundle) -> GPOVAE:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return bundle.model.to(device).eval()


def predict_ate(bundle: ModelBundle, model_input: AnnData, params: dict[str, Any]) -> pd.DataFrame:
    """Model ATE per perturbation (perturbation × gene), perturbseq scale, 1e4 library size."""
    from genevae.analysis.perturbation import predicted_ate

    ate = predicted_ate(
        _device_model(bundle),
        perturbation_dosage(model_input),
        bundle.gene_names,
        n_particles=params["n_particles"],
        particles_per_batch=params["particles_per_batch"],
        seed=params["seed"],
    )
    bundle.model.cpu()
    return ate


def iwelbo_on_test_cells(
    bundle: ModelBundle, model_input: AnnData, params: dict[str, Any]
) -> float:
    """Mean test-cell IWELBO (globals drawn once from the guide and shared by all cells)."""
    import torch

    from genevae.training import map_batches

    model = _device_model(bundle)
    generator = torch.Generator().manual_seed(params["seed"])
    with torch.no_grad():
        latents = model.sample_global_latents(params["iwelbo_particles"], generator)
    values = map_batches(
        model,
        tensor_data(model_input, "test"),
        lambda batch: model.iwelbo(_to(batch, model), global_latents=latents, generator=generator),
        batch_size=params["iwelbo_batch_size"],
    )
    bundle.model.cpu()
    return float(np.mean(values))


def _to(batch: dict[str, torch.Tensor], model: GPOVAE) -> dict[str, torch.Tensor]:
    device = model.mask_logits.device
    return {key: value.to(device) for key, value in batch.items()}


def grn_edges(bundle: ModelBundle) -> pd.DataFrame:
    """The learned GRN, σ(q(M) logits), as (regulator, target, probability, in_perturbed_block)."""
    from genevae.analysis.grn import grn_edge_table

    meta = bundle.metadata
    probabilities = bundle.model.grn_probabilities().cpu().numpy()
    return grn_edge_table(probabilities, meta["node_names"], meta["n_perturbed"])


def grn_heatmap_figure(edges: pd.DataFrame, bundle: ModelBundle) -> Figure:
    """Heat map of the perturbed block G° (the block GPO-VAE's GRN is evaluated on)."""
    from genevae.plotting.grn import grn_heatmap

    meta = bundle.metadata
    perturbed = meta["node_names"][: meta["n_perturbed"]]
    title = f"GPO-VAE ({meta['variant']}): perturbed-gene GRN"
    return grn_heatmap(edges, perturbed, perturbed, title=title)


def top_edges(edges: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Each regulator's most probable targets (all GRN nodes)."""
    from genevae.analysis.grn import top_edges_per_regulator

    return top_edges_per_regulator(edges, params["top_edges_per_regulator"])


def top_edges_figure(table: pd.DataFrame, bundle: ModelBundle) -> Figure:
    """Bar panels of each regulator's top targets."""
    from genevae.plotting.grn import top_edges_plot

    return top_edges_plot(table, title=f"GPO-VAE ({bundle.metadata['variant']}): top targets")


def training_curve_figure(history: pd.DataFrame, variant: dict[str, Any]) -> Figure:
    """Per-epoch train/validation curves of every loss term."""
    from genevae.plotting.training import training_curves

    return training_curves(history, title=f"GPO-VAE ({variant['name']}) training")


def compare_predictors(
    model_input: AnnData,
    params: dict[str, Any],
    reference_edges: pd.DataFrame | None = None,
    **variant_outputs: Any,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One table (rows: GPO-VAE variants and baselines) of ATE, IWELBO and GRN metrics.

    Without a reference network (no ``grn_reference`` in the dataset's registry entry) the
    reference-network metrics are NaN.

    ``variant_outputs`` holds ``<predictor>__ate``, ``<predictor>__iwelbo`` and
    ``<predictor>__edges`` for every trained variant. Also returns the table's finite
    entries as MLflow metrics.
    """
    from genevae.pipelines.gpo_vae import evaluation

    parts: dict[str, dict[str, Any]] = {}
    for key, value in variant_outputs.items():
        predictor, _, kind = key.rpartition("__")
        parts.setdefault(predictor, {})[kind] = value
    incomplete = [name for name, got in parts.items() if set(got) != {"ate", "iwelbo", "edges"}]
    if incomplete:
        raise GenevaeInputError(f"Variant(s) {incomplete} lack an ate, iwelbo or edges input.")
    ate = evaluation.ate_table({n: p["ate"] for n, p in parts.items()}, model_input, params)
    grn = evaluation.grn_table(
        {n: p["edges"] for n, p in parts.items()}, model_input, _reference(reference_edges), params
    )
    iwelbo = pd.Series({n: p["iwelbo"] for n, p in parts.items()}, name="test_iwelbo")
    order = list(ate.index) + [name for name in grn.index if name not in ate.index]
    table = ate.join(iwelbo, how="outer").join(grn, how="outer").loc[order]
    return table.rename_axis("predictor"), evaluation.mlflow_metrics(table)


def _reference(table: pd.DataFrame | None) -> pd.DataFrame:
    """Reference edges with columns regulator, target from a source/target table."""
    if table is None:
        return pd.DataFrame(columns=["regulator", "target"], dtype=str)
    renamed = table.rename(columns={"source": "regulator"})
    missing = [c for c in ("regulator", "target") if c not in renamed.columns]
    if missing:
        raise GenevaeInputError(
            f"The reference edge table lacks {missing} (columns: {list(table.columns)}); it needs "
            "source (or regulator) and target columns."
        )
    return renamed[["regulator", "target"]].astype(str).drop_duplicates()


def grn_report(
    comparison: pd.DataFrame,
    top_edges: pd.DataFrame,
    heatmap: bytes,
    edges_plot: bytes,
    training: bytes,
    params: dict[str, Any],
) -> tuple[str, list[str]]:
    """The GRN report (HTML) and its headline lines, from the full model's outputs."""
    from genevae.reporting.model_reports import gpo_vae_report

    figures = {"heatmap": heatmap, "edges": edges_plot, "training": training}
    return gpo_vae_report(comparison, top_edges, figures, parameters=params)
