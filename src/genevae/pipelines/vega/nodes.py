"""VEGA nodes: thin adapters from catalog data and parameters to the library.

Library modules that load torch, scanpy, gseapy or matplotlib are imported inside the node
that uses them, so that building the pipeline (``kedro run`` start-up) does not load them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.analysis.comparisons import comparison_name
from genevae.analysis.labels import as_label
from genevae.analysis.modules import top_module_genes
from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.pipelines.common import (
    align_genes,
    check_parameters,
    expression_data,
    final_metrics,
    fit_model,
    seed_model_init,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def select_collection(collection: str, **options: Any) -> Any:
    """Pick the chosen gene-set collection's artifact (mask or gene sets) among ``options``."""
    if collection not in options:
        raise GenevaeInputError(
            f"vega.gene_module_collection={collection!r} is unknown; choose one of {sorted(options)}."
        )
    return options[collection]


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
    from genevae.models.vega import VEGA

    mask = _aligned_mask(adata, mask)
    model_params = check_parameters("vega.model", dict(params["model"]), VEGA)
    seed_model_init(params["training"])
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


def encode_module_activities(
    bundle: ModelBundle, adata: AnnData, missing_genes: str = "error"
) -> AnnData:
    """Cells × modules posterior means in ``obsm["X_vega"]``, module names in ``uns``.

    Works out of sample: genes are matched by name; absent genes raise an error naming them,
    or are zero-filled with ``missing_genes="zero"``.
    """
    from genevae.training import encode

    data = _bundle_data(bundle, adata, missing_genes)
    latent = encode(bundle.model, data)
    result = adata.copy()
    result.obsm["X_vega"] = latent.astype(np.float32)
    result.uns["vega_module_names"] = list(bundle.metadata["module_names"])
    return result


def _bundle_data(bundle: ModelBundle, adata: AnnData, missing_genes: str = "error"):
    model_config = bundle.model.config
    counts_layer = "counts" if model_config.get("likelihood") == "nb" else None
    return expression_data(
        align_genes(adata, bundle.gene_names, missing_genes),
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


def _restrict_cells(adata: AnnData, comparison: dict[str, Any], cell_type_key: str) -> AnnData:
    """The cells a comparison is about (all, or only the listed cell types)."""
    from genevae.analysis.bayes_factor import obs_labels

    cell_types = [as_label(cell_type) for cell_type in comparison.get("cell_types") or []]
    if not cell_types:
        return adata
    labels = obs_labels(adata.obs, cell_type_key)
    unknown = sorted(set(cell_types) - set(labels))
    if unknown:
        raise GenevaeInputError(
            f"cell_types {unknown} of comparison {comparison_name(comparison)!r} are not in "
            f"obs[{cell_type_key!r}] (available: {sorted(set(labels))})."
        )
    return adata[labels.isin(cell_types).to_numpy()]


def differential_activity_tables(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """Bayes-factor tables for every configured comparison, stacked with a ``comparison`` column."""
    from genevae.analysis.bayes_factor import differential_activity, latent_sampler, obs_labels

    check_parameters("vega.analysis.bayes_factor", params["bayes_factor"], differential_activity)
    n_genes = bundle.model.gene_module_mask.detach().cpu().numpy().sum(axis=0).astype(int)
    tables = []
    for comparison in params["comparisons"]:
        started = time.perf_counter()
        cells = _restrict_cells(adata, comparison, params["cell_type_key"])
        labels = obs_labels(cells.obs, comparison["groupby"])
        data = _bundle_data(bundle, cells)
        sampler = latent_sampler(
            bundle.model, data.arrays["x"], data.arrays.get("covariates"), seed=params["seed"]
        )
        table = differential_activity(
            sampler,
            labels,
            comparison["group1"],
            comparison.get("group2"),
            module_names=bundle.metadata["module_names"],
            n_genes_per_module=n_genes,
            **params["bayes_factor"],
        )
        table.insert(0, "comparison", comparison_name(comparison))
        _log_comparison(table, cells.n_obs, time.perf_counter() - started)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _log_comparison(table: pd.DataFrame, n_cells: int, seconds: float) -> None:
    """One line per comparison: its size, how many modules pass, and the strongest one."""
    top = table.iloc[0]  # tables are ranked: |ln BF| (vanilla) or p_da (change)
    logger.info(
        "Bayes factors %s: %d cells, %d of %d modules significant; strongest %s "
        "(ln BF %.2f) [%.1f s]",
        top["comparison"],
        n_cells,
        int(table["is_significant"].sum()),
        len(table),
        top["module"],
        top["ln_bf"],
        seconds,
    )


def latent_maps(activities: AnnData, params: dict[str, Any]) -> dict[str, Figure]:
    """UMAP of the module activities coloured by each configured obs column."""
    from genevae.analysis.bayes_factor import obs_labels
    from genevae.analysis.latent import embed_2d
    from genevae.plotting.latent import embedding_scatter

    latent = pd.DataFrame(activities.obsm["X_vega"], index=activities.obs_names)
    coords = embed_2d(latent, method="umap", seed=params["seed"])
    return {
        f"umap_by_{key}.png": embedding_scatter(
            coords, obs_labels(activities.obs, key), title=f"VEGA module activities by {key}"
        )
        for key in params["color_by"]
    }


def training_curve_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch train/validation curves of every loss term."""
    from genevae.plotting.training import training_curves

    return training_curves(history, title="VEGA training")


def top_genes_table(weights: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The highest-weight genes of every module (what a module means in this data)."""
    return top_module_genes(weights, n=params["n_top_genes"])


def volcano_figures(bf_table: pd.DataFrame, params: dict[str, Any]) -> dict[str, Figure]:
    """One ln BF vs mean-difference volcano per comparison (saturated modules marked)."""
    from genevae.analysis.bayes_factor import LN_BF_CAP
    from genevae.plotting.modules import volcano

    thresholds = params["bayes_factor"]
    return {
        f"volcano_{_file_name(name)}.png": volcano(
            table,
            thresholds["ln_bf_threshold"],
            thresholds["mean_diff_threshold"],
            title=f"VEGA differential activity, {name}",
            ln_bf_cap=LN_BF_CAP,
        )
        for name, table in bf_table.groupby("comparison", sort=False)
    }


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _activities_frame(activities: AnnData) -> pd.DataFrame:
    latent = pd.DataFrame(
        activities.obsm["X_vega"],
        index=activities.obs_names,
        columns=activities.uns["vega_module_names"],
    )
    return pd.concat([latent, activities.obs], axis=1)


def activity_figures(activities: AnnData, params: dict[str, Any]) -> dict[str, Figure]:
    """Violins of chosen modules per group, and a bivariate module scatter."""
    from genevae.plotting.modules import module_scatter, module_violins

    frame = _activities_frame(activities)
    named = [m for m in params["plot_modules"] if m in frame.columns]
    modules = named or _most_variable(frame[list(activities.uns["vega_module_names"])])
    figures = {
        f"violins_by_{key}.png": module_violins(frame, modules, key) for key in params["color_by"]
    }
    if len(modules) >= 2:
        figures["module_scatter.png"] = module_scatter(
            frame, modules[0], modules[1], params["color_by"][-1]
        )
    return figures


def _most_variable(frame: pd.DataFrame, n: int = 4) -> list[str]:
    """Modules to plot when none are named: the ``n`` gene sets whose activity varies most."""
    annotated = [column for column in frame.columns if not column.startswith("UNANNOTATED")]
    return list(frame[annotated].var().nlargest(n).index)


def gsea_comparison(
    adata: AnnData,
    gene_sets: dict[str, list[str]],
    bf_table: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, Figure]:
    """GSEA prerank on Wilcoxon scores of the same contrast, joined with VEGA's ln BF."""
    from genevae.analysis.gsea import (
        compare_gsea_with_bayes_factors,
        run_prerank,
        wilcoxon_ranking,
    )
    from genevae.plotting.modules import gsea_vs_bayes_factor, message_figure

    if params["gsea"]["comparison"] is None:
        logger.info("GSEA is off for this dataset (vega analysis gsea.comparison is null).")
        return pd.DataFrame(), message_figure("GSEA is off (gsea_comparison: null)")
    contrast = next(
        (c for c in params["comparisons"] if comparison_name(c) == params["gsea"]["comparison"]),
        None,
    )
    if contrast is None:
        raise GenevaeInputError(
            f"vega.analysis.gsea.comparison={params['gsea']['comparison']!r} names no entry of "
            "vega.analysis.comparisons; give that comparison a matching `name`."
        )
    cells = _restrict_cells(adata, contrast, params["cell_type_key"])
    ranking = wilcoxon_ranking(
        cells, contrast["groupby"], contrast["group1"], contrast.get("group2")
    )
    gsea = run_prerank(ranking, gene_sets, **params["gsea"]["prerank"])
    bf = bf_table[bf_table["comparison"] == comparison_name(contrast)]
    table = compare_gsea_with_bayes_factors(gsea, bf)
    return table, gsea_vs_bayes_factor(table)


def bayes_factor_report(
    bf_table: pd.DataFrame,
    top_genes: pd.DataFrame,
    gsea_table: pd.DataFrame,
    volcano: dict[str, bytes],
    gsea_scatter: bytes,
    latent_maps: dict[str, bytes],
    activity: dict[str, bytes],
    training: bytes,
    params: dict[str, Any],
) -> tuple[str, list[str]]:
    """The Bayes-factor report (HTML) and its headline lines, from this pipeline's outputs."""
    from genevae.analysis.bayes_factor import LN_BF_CAP
    from genevae.reporting.model_reports import vega_report

    figures = {
        "volcano": volcano,
        "gsea": gsea_scatter,
        "umap": latent_maps,
        "activity": activity,
        "training": training,
    }
    return vega_report(
        bf_table, top_genes, gsea_table, figures, ln_bf_cap=LN_BF_CAP, parameters=params
    )
