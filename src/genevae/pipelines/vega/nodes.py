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

from genevae.analysis.comparisons import as_label, comparison_name
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
from genevae.preprocessing.genesets import EXTRA_NODE_PREFIX, gene_sets_from_mask

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
    bundle, history = _fit_vega(adata, mask, params)
    return bundle, history, final_metrics(history)


def _fit_vega(
    adata: AnnData, mask: pd.DataFrame, params: dict[str, Any], *, log_to_mlflow: bool = True
) -> tuple[ModelBundle, pd.DataFrame]:
    """The one VEGA training path: the real model and every control model take it."""
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
    return fit_model(
        model,
        data,
        params["training"],
        validation_fraction=params["validation_fraction"],
        gene_names=list(adata.var_names),
        metadata={"module_names": list(mask.columns), "covariate_keys": covariate_keys},
        log_to_mlflow=log_to_mlflow,
    )


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


def _bayes_factor_settings(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The Bayes-factor options (checked) and the number of seeds for the stability check."""
    from genevae.analysis.bayes_factor import differential_activity

    settings = dict(params["bayes_factor"])
    n_seeds = settings.pop("n_seeds", 1)
    check_parameters("vega.analysis.bayes_factor", settings, differential_activity)
    return settings, n_seeds


def _comparisons(adata: AnnData, params: dict[str, Any]):
    """(name, comparison, its cells, their group labels) for every configured comparison."""
    from genevae.analysis.bayes_factor import obs_labels

    for comparison in params["comparisons"]:
        cells = _restrict_cells(adata, comparison, params["cell_type_key"])
        yield (
            comparison_name(comparison),
            comparison,
            cells,
            obs_labels(cells.obs, comparison["groupby"]),
        )


def _vega_bayes_factors(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any], seed: int, *, log: bool = False
) -> pd.DataFrame:
    """VEGA's Bayes-factor table of every comparison for one seed, stacked by ``comparison``."""
    from genevae.analysis.bayes_factor import differential_activity, latent_sampler

    settings, _ = _bayes_factor_settings(params)
    n_genes = bundle.model.gene_module_mask.detach().cpu().numpy().sum(axis=0).astype(int)
    tables = []
    for name, comparison, cells, labels in _comparisons(adata, params):
        started = time.perf_counter()
        data = _bundle_data(bundle, cells)
        sampler = latent_sampler(
            bundle.model, data.arrays["x"], data.arrays.get("covariates"), seed=seed
        )
        table = differential_activity(
            sampler,
            labels,
            comparison["group1"],
            comparison.get("group2"),
            module_names=bundle.metadata["module_names"],
            n_genes_per_module=n_genes,
            **(settings | {"seed": seed}),
        )
        table.insert(0, "comparison", name)
        if log:
            _log_comparison(table, cells.n_obs, time.perf_counter() - started)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _module_score_bayes_factors(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """The same Bayes factor (cells, estimator, pairs, seed) on each module's mean log-expression.

    Vanilla mode and significance by |ln BF| alone: the change mode's δ and the mean-difference
    threshold are in latent units, which log-expression means do not share. The scores are
    exact per cell, so the analytic estimator counts the fraction of cell pairs (σ = 0).
    """
    from genevae.analysis.baselines import module_scores
    from genevae.analysis.bayes_factor import differential_activity

    settings, _ = _bayes_factor_settings(params)
    gene_sets = gene_sets_from_mask(
        bundle.model.gene_module_mask.detach().cpu().numpy(),
        bundle.gene_names,
        bundle.metadata["module_names"],
    )
    scores = module_scores(align_genes(adata, bundle.gene_names), gene_sets, method="mean")
    sampling = {
        key: settings[key]
        for key in ("estimator", "n_samples", "n_pairs", "max_pairs")
        if key in settings
    }
    tables = []
    for name, comparison, cells, labels in _comparisons(adata, params):
        values = scores.loc[cells.obs_names].to_numpy()
        table = differential_activity(
            lambda index, values=values: values[index],
            labels,
            comparison["group1"],
            comparison.get("group2"),
            module_names=list(scores.columns),
            seed=params["seed"],
            ln_bf_threshold=settings.get("ln_bf_threshold", 3.0),
            mean_diff_threshold=0.0,
            **sampling,
        )
        table.insert(0, "comparison", name)
        tables.append(table)
    stacked = pd.concat(tables, ignore_index=True)
    return stacked[["comparison", "module", "ln_bf", "mean_diff", "is_significant"]].rename(
        columns={
            "ln_bf": "module_score_ln_bf",
            "mean_diff": "module_score_mean_diff",
            "is_significant": "module_score_significant",
        }
    )


def differential_activity_tables(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """Bayes-factor tables for every configured comparison, stacked with a ``comparison`` column.

    Each module's row also carries the module-score result: its mean log-expression put
    through the same Bayes factor (same cells, pairs and seed); ``module_score_*`` columns,
    NaN for the fully connected extra nodes.
    """
    table = _vega_bayes_factors(bundle, adata, params, params["seed"], log=True)
    scores = _module_score_bayes_factors(bundle, adata, params)
    table = table.merge(scores, on=["comparison", "module"], how="left")
    table["module_score_significant"] = table["module_score_significant"].eq(True)
    return table


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
    """UMAP of the module activities coloured by each configured obs column.

    Above ``embedding.max_cells`` cells the map is fitted on a seeded subsample and the other
    cells are placed by UMAP's transform (:func:`~genevae.analysis.latent.embed_2d`).
    """
    from genevae.analysis.bayes_factor import obs_labels
    from genevae.analysis.latent import embed_2d
    from genevae.plotting.latent import embedding_scatter

    latent = pd.DataFrame(activities.obsm["X_vega"], index=activities.obs_names)
    coords = embed_2d(
        latent, method="umap", seed=params["seed"], max_cells=params["embedding"]["max_cells"]
    )
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
    from genevae.analysis.gsea import gsea_for_contrast
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
    table = gsea_for_contrast(
        cells,
        contrast["groupby"],
        contrast["group1"],
        contrast.get("group2"),
        gene_sets,
        bf_table[bf_table["comparison"] == comparison_name(contrast)],
        prerank=params["gsea"]["prerank"],
    )
    table.insert(0, "comparison", comparison_name(contrast))
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
    evidence: pd.DataFrame,
    stability: pd.DataFrame,
    heldout: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[str, list[str]]:
    """The Bayes-factor report (HTML) and its headline lines, from this pipeline's outputs
    (the evidence table, its stability and the held-out reconstruction included)."""
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
        bf_table,
        top_genes,
        gsea_table,
        figures,
        ln_bf_cap=LN_BF_CAP,
        evidence=(evidence, stability, heldout),
        parameters=params,
        ln_bf_threshold=params["bayes_factor"].get("ln_bf_threshold", 3.0),
    )


def bayes_factor_replicates(
    bundle: ModelBundle, adata: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """VEGA's ln BF under the extra seeds seed + 1, …, seed + ``bayes_factor.n_seeds`` − 1.

    Long format: comparison, kind (``bayes_factor_seed``), replicate (the seed), module,
    n_genes, ln_bf; empty for one seed. The reported table is the seed-``seed`` replicate.
    Only the cells, pairs and posterior noise change between replicates.
    """
    _, n_seeds = _bayes_factor_settings(params)
    seeds = range(params["seed"] + 1, params["seed"] + int(n_seeds))
    tables = [
        _replicate_rows(_vega_bayes_factors(bundle, adata, params, seed), "bayes_factor_seed", seed)
        for seed in seeds
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=_REPLICATE)


_REPLICATE = ["comparison", "kind", "replicate", "module", "n_genes", "ln_bf"]


def _replicate_rows(table: pd.DataFrame, kind: str, replicate: int) -> pd.DataFrame:
    rows = table[["comparison", "module", "n_genes", "ln_bf"]].copy()
    rows.insert(1, "kind", kind)
    rows.insert(2, "replicate", replicate)
    return rows


def random_mask_control(
    adata: AnnData, mask: pd.DataFrame, bundle: ModelBundle, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Control models trained exactly as the real one: on shuffled masks, and on other seeds.

    ``vega.control.n_random_masks`` masks keep every module's size and shuffle its genes
    (:func:`~genevae.preprocessing.genesets.shuffled_gene_module_masks`);
    ``vega.control.n_training_seeds`` > 1 also retrains the real mask with seeds seed + 1, ...
    Every control model takes the real model's training path and Bayes factor, off MLflow.

    Returns:
        Long ln BF table (comparison, kind = random_mask | training_seed, replicate, module,
        n_genes, ln_bf; annotated modules only) and the held-out reconstruction of the real
        and random-mask models on the real model's validation cells (model, kind, replicate,
        validation_reconstruction; empty with ``validation_fraction`` 0).
    """
    analysis = params["analysis"]
    validation = _validation_cells(adata, params)
    rows, heldout = [], []
    if validation is not None:
        heldout.append(("real", "real", 0, _heldout_reconstruction(bundle, validation)))
    for kind, replicate, run_mask, run_params in _control_runs(mask, params):
        model, _ = _fit_vega(adata, run_mask, run_params, log_to_mlflow=False)
        table = _vega_bayes_factors(model, adata, analysis, analysis["seed"])
        rows.append(_replicate_rows(table, kind, replicate))
        if kind == "random_mask" and validation is not None:
            error = _heldout_reconstruction(model, validation)
            heldout.append((f"{kind}_{replicate}", kind, replicate, error))
    replicates = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=_REPLICATE)
    replicates = replicates[~replicates["module"].astype(str).str.startswith(EXTRA_NODE_PREFIX)]
    heldout_table = pd.DataFrame(
        heldout, columns=["model", "kind", "replicate", "validation_reconstruction"]
    )
    return replicates.reset_index(drop=True), heldout_table


def _control_runs(
    mask: pd.DataFrame, params: dict[str, Any]
) -> list[tuple[str, int, pd.DataFrame, dict[str, Any]]]:
    """(kind, replicate, mask, parameters) of every control model, checkpoints off."""
    from genevae.preprocessing.genesets import shuffled_gene_module_masks

    control = params["control"]
    training = params["training"] | {"checkpoint_dir": None, "resume": False}
    shuffled = shuffled_gene_module_masks(mask, int(control["n_random_masks"]), control["seed"])
    runs = [
        ("random_mask", index, random_mask, params | {"training": training})
        for index, random_mask in enumerate(shuffled)
    ]
    first_seed = _training_seed(params)
    for seed in range(first_seed + 1, first_seed + int(control["n_training_seeds"])):
        runs.append(("training_seed", seed, mask, params | {"training": training | {"seed": seed}}))
    return runs


def _validation_cells(adata: AnnData, params: dict[str, Any]) -> AnnData | None:
    """The real model's validation cells (same seeded split as training); None without any."""
    from genevae.pipelines.common import train_validation_split

    _, validation = train_validation_split(
        adata.n_obs, params["validation_fraction"], _training_seed(params)
    )
    return adata[validation] if len(validation) else None


def _heldout_reconstruction(bundle: ModelBundle, cells: AnnData) -> float:
    """Mean per-gene reconstruction loss of ``cells`` from their posterior means."""
    from genevae.training import map_batches

    model = bundle.model
    errors = map_batches(model, _bundle_data(bundle, cells), model.reconstruction_error)
    return float(errors.mean() / len(bundle.gene_names))


def differential_evidence(
    bf_table: pd.DataFrame,
    bf_replicates: pd.DataFrame,
    control_replicates: pd.DataFrame,
    heldout: pd.DataFrame,
    gsea_table: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Every comparison's Bayes-factor table with its baselines, control and stability.

    Returns the evidence table (:func:`~genevae.analysis.evidence.annotate_evidence` columns
    plus ln BF mean ± SD over Bayes-factor seeds and, when trained, training seeds), the
    top-k overlap per comparison and replicate kind, and MLflow metrics.
    """
    from genevae.analysis.evidence import annotate_evidence, replicate_summary

    analysis, control = params["analysis"], params["control"]
    thresholds = analysis["bayes_factor"]
    random_rows = control_replicates[control_replicates["kind"] == "random_mask"]
    tables = []
    for name, rows in bf_table.groupby("comparison", sort=False):
        tables.append(
            annotate_evidence(
                rows,
                gsea=_rows_of(gsea_table, name),
                random_modules=random_rows[random_rows["comparison"] == name],
                ln_bf_threshold=thresholds.get("ln_bf_threshold", 3.0),
                fdr_threshold=control["gsea_fdr_threshold"],
                size_tolerance=control["size_tolerance"],
                alpha=control["alpha"],
            )
        )
    evidence = pd.concat(tables, ignore_index=True)
    overlaps = [pd.DataFrame(columns=["comparison", "n_replicates", "k", "top_k_overlap", "kind"])]
    own_seeds = {"bayes_factor_seed": analysis["seed"], "training_seed": _training_seed(params)}
    for kind, own_seed in own_seeds.items():
        extra = pd.concat([bf_replicates, control_replicates], ignore_index=True)
        replicates = _with_reported_table(extra[extra["kind"] == kind], bf_table, own_seed)
        if replicates.empty:
            continue
        per_module, overlap = replicate_summary(
            replicates, control["top_k"], prefix=f"ln_bf_{kind}"
        )
        evidence = evidence.merge(per_module, on=["comparison", "module"], how="left")
        overlaps.append(overlap.assign(kind=kind))
    stability = pd.concat(overlaps[1:], ignore_index=True) if len(overlaps) > 1 else overlaps[0]
    return evidence, stability, _evidence_metrics(evidence, stability, heldout)


def _rows_of(gsea_table: pd.DataFrame, comparison: str) -> pd.DataFrame | None:
    """GSEA's rows for ``comparison``; None where GSEA did not run on it (or was off)."""
    if "comparison" not in gsea_table.columns:
        return None
    return gsea_table[gsea_table["comparison"] == comparison]


def _training_seed(params: dict[str, Any]) -> int:
    from genevae.training import TrainingSettings

    return TrainingSettings.from_params(params["training"]).seed


def _with_reported_table(
    replicates: pd.DataFrame, bf_table: pd.DataFrame, own_seed: int
) -> pd.DataFrame:
    """Extra replicates plus the reported table as the ``own_seed`` one (empty without extras)."""
    if replicates.empty:
        return replicates
    kind = replicates["kind"].iloc[0]
    reported = _replicate_rows(bf_table, kind, own_seed)
    reported = reported[reported["module"].isin(replicates["module"])]
    return pd.concat([reported, replicates], ignore_index=True)


def _evidence_metrics(
    evidence: pd.DataFrame, stability: pd.DataFrame, heldout: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """MLflow metrics: calls passing the control and agreeing, stability, reconstruction."""
    metrics = {}
    for name, rows in evidence.groupby("comparison", sort=False):
        key = _file_name(str(name))
        significant = rows["is_significant"].astype(bool)
        metrics[f"{key}.n_significant"] = int(significant.sum())
        metrics[f"{key}.n_significant_passing_control"] = int(rows["control_pass"].sum())
        metrics[f"{key}.n_significant_agreeing"] = int((significant & rows["calls_agree"]).sum())
    for row in stability.itertuples():
        metrics[f"{_file_name(str(row.comparison))}.top{row.k}_overlap_{row.kind}"] = (
            row.top_k_overlap
        )
    by_kind = heldout.groupby("kind")["validation_reconstruction"].mean()
    for kind, value in by_kind.items():
        metrics[f"heldout_reconstruction_{kind}"] = value
    return {
        key: {"value": float(value), "step": 0}
        for key, value in metrics.items()
        if np.isfinite(value)
    }
