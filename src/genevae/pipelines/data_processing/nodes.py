"""data_processing nodes: raw TCGA, scRNA-seq, Perturb-seq and gene sets → clean artifacts.

anndata and scanpy are imported inside the nodes that use them, so that building the
pipeline (``kedro run`` start-up) does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError
from genevae.preprocessing import genesets, tcga

if TYPE_CHECKING:
    from anndata import AnnData


# --- TCGA bulk RNA-seq (Tybalt's input) ---------------------------------------------------
def combine_tcga_cohorts(**cohorts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack per-cohort matrices (keyword = cancer type) and label samples from barcodes."""
    expression, cancer_type = tcga.combine_cohorts(cohorts)
    samples = tcga.parse_tcga_barcodes(expression.index)
    samples["cancer_type"] = cancer_type
    return expression, samples


def select_tcga_genes(
    expression: pd.DataFrame, params: dict[str, Any], reference_genes: list[str] | None = None
) -> pd.DataFrame:
    """Top-k genes by median (paper) or mean (original code) absolute deviation, or a fixed list."""
    method = params["gene_selection"]
    if method == "reference_list":
        if reference_genes is None:
            raise GenevaeInputError(
                "gene_selection=reference_list needs a gene list: add `reference_genes: <file>` "
                "to the dataset's entry in datasets.yml."
            )
        present = [gene for gene in reference_genes if gene in expression.columns]
        if not present:
            raise GenevaeInputError(
                "gene_selection=reference_list but none of the reference genes is in the matrix."
            )
        return expression.loc[:, present[: params["n_genes"]]]
    k = min(params["n_genes"], expression.shape[1])
    return tcga.select_genes_by_deviation(expression, k=k, method=method)


def scale_tcga(
    expression: pd.DataFrame, samples: pd.DataFrame, params: dict[str, Any]
) -> tuple[AnnData, pd.DataFrame]:
    """Seeded (stratified) split, zero-one scaler fitted on training samples only."""
    from anndata import AnnData

    split = tcga.split_samples(
        samples["cancer_type"],
        val_fraction=params["validation_fraction"],
        seed=params["seed"],
        stratify=params["stratify"],
    )
    scaler = tcga.fit_minmax_scaler(expression.loc[split == "train"])
    scaled = tcga.apply_minmax_scaler(expression, scaler)
    obs = samples.assign(split=split).astype({"cancer_type": "category", "split": "category"})
    obs["is_tumour"] = obs["is_tumour"].astype(bool)
    adata = AnnData(
        X=scaled.to_numpy(dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=scaled.columns.astype(str)),
    )
    adata.uns["scaling"] = "zero-one per gene, fitted on training samples"
    return adata, scaler


# --- single-cell RNA-seq (VEGA's input) ------------------------------------------------------
def preprocess_single_cell(adata: AnnData, params: dict[str, Any]) -> tuple[AnnData, pd.DataFrame]:
    """QC, counts kept in ``layers["counts"]``, normalise, log1p, highly variable genes.

    When the catalog opens the input backed (``load_args: {backed: r}``) the matrix is read
    from the file in row chunks (``preprocess_scrna_backed``, same result, about 2/3 of the
    in-memory path's peak memory), so files near the machine's RAM need only a catalog change.
    """
    from genevae.preprocessing import scrna

    if adata.isbacked:
        return scrna.preprocess_scrna_backed(adata.filename, **params)
    return scrna.preprocess_scrna(adata, **params)


# --- gene sets and GRNs → gene-module masks -------------------------------------------------
def build_module_mask(
    adata: AnnData, gene_sets: dict[str, list[str]], params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Genes × modules 0/1 mask against the data genes, plus the per-module overlap report."""
    result = genesets.build_gene_module_mask(list(adata.var_names), gene_sets, **params)
    mask = pd.DataFrame(
        result.mask, index=pd.Index(adata.var_names, name="gene"), columns=result.module_names
    )
    return mask, result.overlap


# --- Perturb-seq (GPO-VAE's input) -----------------------------------------------------------
def preprocess_perturbseq(
    adata: AnnData, params: dict[str, Any], summary_stats: pd.DataFrame | None = None
) -> tuple[AnnData, pd.DataFrame]:
    """Clean target labels, GPO-VAE's cell filters, log-normalise, HVGs plus every perturbed
    gene, top DE, splits.

    ``obs["gene"]`` holds the target symbol (controls: ``non-targeting``) and ``obs["split"]``
    the seeded train/validation/test assignment; listed ``held_out_perturbations`` go to test.
    The strong-perturbation filter needs ``summary_stats`` (Replogle Table S2 columns), the
    table the dataset's registry entry names in ``summary_stats:``; without one it is skipped
    with a warning.
    """
    from genevae.preprocessing import perturbseq
    from genevae.preprocessing.perturbseq_sources import (
        CONTROL_LABEL,
        apply_cell_filters,
        standardise_perturbation_labels,
    )

    labelled = standardise_perturbation_labels(
        adata, params["perturbation_key"], params["target_gene_key"], params["control_label"]
    )
    labelled = apply_cell_filters(
        labelled,
        params["cell_filters"],
        summary_stats,
        layer="counts" if "counts" in labelled.layers else None,
    )
    normalised = perturbseq.log_normalise(labelled)
    targets = perturbseq.perturbation_targets(normalised.obs, "gene", CONTROL_LABEL)
    selected = perturbseq.select_genes(normalised, params["n_top_genes"], targets)
    de_genes = perturbseq.top_de_genes(selected, "gene", CONTROL_LABEL, params["n_de_genes"])
    split = perturbseq.split_cells(selected.obs, tuple(params["split_fractions"]), params["seed"])
    if params.get("held_out_perturbations"):
        split = perturbseq.hold_out_perturbations(
            selected.obs, params["held_out_perturbations"], "gene", split
        )
    selected.obs["split"] = pd.Categorical(split)
    return selected, de_genes
