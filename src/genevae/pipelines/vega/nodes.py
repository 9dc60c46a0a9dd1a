"""VEGA nodes: thin adapters from catalog data and parameters to the library."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from genevae.analysis.bayes_factor import differential_activity, latent_sampler, obs_labels
from genevae.analysis.latent import embed_2d
from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.models.vega import VEGA
from genevae.pipelines.common import expression_data, final_metrics, fit_model
from genevae.plotting.latent import embedding_scatter
from genevae.plotting.training import training_curves
from genevae.training import encode


def select_gene_module_mask(collection: str, **masks: pd.DataFrame) -> pd.DataFrame:
    """Pick the genes × modules mask of the chosen gene-set collection."""
    if collection not in masks:
        raise GenevaeInputError(
            f"vega.gene_module_collection={collection!r} is unknown; choose one of {sorted(masks)}."
        )
    return masks[collection]


def _aligned_mask(adata: AnnData, mask: pd.DataFrame) -> pd.DataFrame:
    missing = adata.var_names.difference(mask.index)
    if len(missing):
        raise GenevaeInputError(
            f"The gene-module mask lacks {len(missing)} data genes (e.g. {list(missing[:5])}); "
            "rebuild it with data_processing on the same processed AnnData."
        )
    return mask.loc[adata.var_names]


def train_vega(
    adata: AnnData, mask: pd.DataFrame, params: dict[str, Any]
) -> tuple[ModelBundle, pd.DataFrame, dict]:
    """Build VEGA on the mask's modules and train it on a seeded 80/20 split."""
    mask = _aligned_mask(adata, mask)
    model_params = dict(params["model"])
    counts_layer = "counts" if model_params.get("likelihood") == "nb" else None
    covariate_keys = list(params.get("covariate_keys") or [])
    data = expression_data(adata, counts_layer=counts_layer, covariate_keys=covariate_keys)
    n_covariates = data.arrays["covariates"].shape[1] if covariate_keys else 0
    model = VEGA(
        n_genes=adata.n_vars,
        n_modules=mask.shape[1],
        n_covariates=n_covariates,
        mask=mask.to_numpy(dtype=np.float32),
        **model_params,
    )
    bundle, history = fit_model(
        model,
        data,
        params["training"],
        validation_fraction=params["validation_fraction"],
        gene_names=list(adata.var_names),
        metadata={"module_names": list(mask.columns), "covariate_keys": covariate_keys},
    )
    return bundle, history, final_metrics(history)


def encode_module_activities(bundle: ModelBundle, adata: AnnData) -> AnnData:
    """Cells × modules posterior means in ``obsm["X_vega"]``, module names in ``uns``."""
    data = _bundle_data(bundle, adata)
    latent = encode(bundle.model, data)
    result = adata.copy()
    result.obsm["X_vega"] = latent.astype(np.float32)
    result.uns["vega_module_names"] = list(bundle.metadata["module_names"])
    return result


def _bundle_data(bundle: ModelBundle, adata: AnnData):
    model_config = bundle.model.config
    counts_layer = "counts" if model_config.get("likelihood") == "nb" else None
    return expression_data(
        adata[:, bundle.gene_names],
        counts_layer=counts_layer,
        covariate_keys=bundle.metadata.get("covariate_keys", []),
    )


def decoder_weight_table(bundle: ModelBundle) -> pd.DataFrame:
    """Genes × modules decoder weights (the interpretable part of VEGA)."""
    return pd.DataFrame(
        bundle.model.decoder_weights(),
        index=pd.Index(bundle.gene_names, name="gene"),
        columns=bundle.metadata["module_names"],
    )


def differential_activity_tables(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """Bayes-factor tables for every configured comparison, stacked with a ``comparison`` column."""
    data = _bundle_data(bundle, adata)
    sampler = latent_sampler(
        bundle.model,
        data.arrays["x"],
        data.arrays.get("covariates"),
        seed=params["seed"],
    )
    mask = bundle.model.gene_module_mask.detach().cpu().numpy()
    tables = []
    for comparison in params["comparisons"]:
        labels = obs_labels(adata.obs, comparison["groupby"])
        table = differential_activity(
            sampler,
            labels,
            comparison["group1"],
            comparison.get("group2"),
            module_names=bundle.metadata["module_names"],
            n_genes_per_module=mask.sum(axis=0).astype(int),
            **params["bayes_factor"],
        )
        table.insert(0, "comparison", _comparison_name(comparison))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _comparison_name(comparison: dict[str, Any]) -> str:
    group2 = comparison.get("group2") or "rest"
    return f"{comparison['groupby']}:{comparison['group1']}_vs_{group2}"


def latent_maps(activities: AnnData, params: dict[str, Any]) -> dict[str, Figure]:
    """UMAP of the module activities coloured by each configured obs column."""
    latent = pd.DataFrame(activities.obsm["X_vega"], index=activities.obs_names)
    coords = embed_2d(latent, method="umap", seed=params["seed"])
    return {
        f"umap_by_{key}": embedding_scatter(
            coords, obs_labels(activities.obs, key), title=f"VEGA module activities by {key}"
        )
        for key in params["color_by"]
    }


def training_curve_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch train/validation curves of every loss term."""
    return training_curves(history, title="VEGA training")
