"""Full-size Perturb-seq sources of GPO-VAE and the CausalBench-style cell filters.

Nothing here downloads: the URLs are constants for the project's fetch dataset, and the
functions read files already on disk or filter AnnData objects in memory. The filters follow
GPO-VAE's raw-data path (models.md §3.5): strong perturbations from Replogle et al. 2022
Table S2, then cells by knockdown, then perturbations by cell count.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.errors import GenevaeInputError

CONTROL_LABEL = "non-targeting"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerturbseqSource:
    """Where a full data set lives and how its cells are labelled.

    ``perturbation_key``/``control_label`` describe obs as published; ``summary_stats_sheet``
    names its sheet in ``REPLOGLE_SUMMARY_STATS_URL`` (Table S2) when there is one.
    """

    name: str
    url: str
    filename: str
    perturbation_key: str
    control_label: str
    summary_stats_sheet: str | None = None


# CausalBench's copies of the Replogle 2022 essential screens (figshare+ article 20029387).
REPLOGLE_K562_ESSENTIAL = PerturbseqSource(
    name="replogle2022_k562_essential_day6",
    url="https://plus.figshare.com/ndownloader/files/35773219",
    filename="K562_essential_raw_singlecell_01.h5ad",
    perturbation_key="gene",
    control_label=CONTROL_LABEL,
    summary_stats_sheet="TabB_K562_day6_summary_stat",
)
REPLOGLE_RPE1 = PerturbseqSource(
    name="replogle2022_rpe1_essential",
    url="https://plus.figshare.com/ndownloader/files/35775606",
    filename="rpe1_raw_singlecell_01.h5ad",
    perturbation_key="gene",
    control_label=CONTROL_LABEL,
    summary_stats_sheet="TabC_RPE1_summary_statistic",
)
# Replogle et al. 2022 Cell, Table S2 (per-perturbation summary statistics).
REPLOGLE_SUMMARY_STATS_URL = (
    "https://ars.els-cdn.com/content/image/1-s2.0-S0092867422005979-mmc2.xlsx"
)
# Adamson et al. 2016 (GEO GSE90546) as scPerturb h5ad; labels are guide-plasmid names, so
# run standardise_perturbation_labels. 10X010 is the UPR Perturb-seq GPO-VAE used; 10X001 is
# the pilot the shared test subset comes from (md5 232f7e3756d41602bbe434b50662a76f).
ADAMSON_UPR_PERTURBSEQ_URL = (
    "https://zenodo.org/records/13350497/files/"
    "AdamsonWeissman2016_GSM2406681_10X010.h5ad?download=1"
)
ADAMSON_PILOT_URL = (
    "https://zenodo.org/records/13350497/files/"
    "AdamsonWeissman2016_GSM2406675_10X001.h5ad?download=1"
)

SUMMARY_COLUMNS = (
    "genetic perturbation",
    "Number of DEGs (anderson-darling)",
    "percent knockdown",
    "number of cells (filtered)",
)


def _require_obs(adata: ad.AnnData, key: str, parameter: str) -> None:
    if key not in adata.obs.columns:
        raise GenevaeInputError(
            f"{parameter}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
        )


def read_replogle_singlecell(path: str | Path) -> ad.AnnData:
    """Read a Replogle/CausalBench single-cell h5ad with gene symbols as var_names.

    The published files index var by Ensembl id with symbols in ``var["gene_name"]``; the
    id moves to ``var["ensembl_id"]`` and duplicate symbols get scanpy's ``-1`` suffixes.
    """
    adata = ad.read_h5ad(path)
    _require_obs(adata, "gene", "obs column 'gene' of the Replogle file")
    if "gene_name" in adata.var.columns:
        adata.var["ensembl_id"] = adata.var_names.astype(str)
        adata.var_names = adata.var["gene_name"].astype(str).to_numpy()
        adata.var_names_make_unique()
    return adata


def read_replogle_summary_stats(path: str | Path, sheet: str) -> pd.DataFrame:
    """One sheet of Replogle Table S2 (needs ``openpyxl``), checked for the filter columns."""
    table = pd.read_excel(path, sheet_name=sheet)
    missing = [c for c in SUMMARY_COLUMNS if c not in table.columns]
    if missing:
        raise GenevaeInputError(
            f"sheet {sheet!r} of {path} lacks column(s) {missing}; is it Replogle Table S2?"
        )
    return table


def strong_perturbations(
    summary_stats: pd.DataFrame,
    min_degs: int = 50,
    max_knockdown: float = -0.3,
    min_cells: int = 25,
) -> list[str]:
    """Genes whose knockdown is strong, per CausalBench/GPO-VAE (§3.5 step 2).

    Keeps rows with more than ``min_degs`` Anderson–Darling DEGs, ``percent knockdown`` at or
    below ``max_knockdown`` (a fraction, −0.3 = 30 % down) and more than ``min_cells`` cells;
    the gene is the second ``_`` field of ``genetic perturbation`` (``<id>_<GENE>_...``).
    """
    missing = [c for c in SUMMARY_COLUMNS if c not in summary_stats.columns]
    if missing:
        raise GenevaeInputError(
            f"summary_stats lacks column(s) {missing}; expected Replogle Table S2 columns "
            f"{list(SUMMARY_COLUMNS)}."
        )
    keep = (
        (summary_stats["Number of DEGs (anderson-darling)"] > min_degs)
        & (summary_stats["percent knockdown"] <= max_knockdown)
        & (summary_stats["number of cells (filtered)"] > min_cells)
    )
    if not keep.any():
        raise GenevaeInputError(
            f"no perturbation passes the strong-perturbation filter (> {min_degs} DEGs, "
            f"knockdown <= {max_knockdown}, > {min_cells} cells); check the summary statistics."
        )
    names = summary_stats.loc[keep, "genetic perturbation"].astype(str)
    malformed = names[names.str.count("_") < 1]
    if len(malformed):
        raise GenevaeInputError(
            f"'genetic perturbation' values {malformed.tolist()[:5]} lack the '<id>_<GENE>' form."
        )
    return sorted(set(names.str.split("_").str[1]))


def standardise_perturbation_labels(
    adata: ad.AnnData,
    perturbation_key: str,
    target_gene_key: str | None,
    control_label: str,
    output_key: str = "gene",
    output_control_label: str = CONTROL_LABEL,
) -> ad.AnnData:
    """Copy of ``adata`` with clean target-gene labels in ``obs[output_key]``.

    Cells whose ``perturbation_key`` equals ``control_label`` become ``output_control_label``;
    the others take ``obs[target_gene_key]``, or, when it is None, the part of the guide name
    before the first ``_`` (Adamson: ``SPI1_pDS255`` → ``SPI1``).
    """
    _require_obs(adata, perturbation_key, "perturbation_key")
    guides = adata.obs[perturbation_key].astype(str)
    is_control = (guides == control_label).to_numpy()
    if not is_control.any():
        raise GenevaeInputError(
            f"control_label={control_label!r} never occurs in adata.obs[{perturbation_key!r}]; "
            f"values include {sorted(guides.unique())[:5]}."
        )
    if target_gene_key is None:
        targets = guides.str.split("_").str[0]
    else:
        _require_obs(adata, target_gene_key, "target_gene_key")
        targets = adata.obs[target_gene_key].astype("object")
    blank = ~is_control & (targets.isna() | (targets.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        raise GenevaeInputError(
            f"{int(blank.sum())} perturbed cells have no target gene in "
            f"{target_gene_key or perturbation_key!r}; fill or drop them first."
        )
    labels = np.where(is_control, output_control_label, targets.astype(str).to_numpy())
    out = adata.copy()
    out.obs[output_key] = pd.Categorical(labels)
    return out


def subset_perturbations(
    adata: ad.AnnData,
    perturbations: Sequence[str],
    perturbation_key: str = "gene",
    control_label: str = CONTROL_LABEL,
) -> ad.AnnData:
    """Cells of the given perturbations plus all controls (e.g. after strong_perturbations)."""
    _require_obs(adata, perturbation_key, "perturbation_key")
    keep = adata.obs[perturbation_key].astype(str).isin({*perturbations, control_label})
    return adata[keep.to_numpy()].copy()


def _target_columns(adata: ad.AnnData, genes: Sequence[str], layer: str | None) -> sp.csc_matrix:
    """The ``genes`` columns as one CSC block: a CSR column slice costs O(nnz) per gene."""
    matrix = adata.X if layer is None else adata.layers[layer]
    return sp.csc_matrix(matrix[:, adata.var_names.get_indexer(genes)])


def _column_values(block: sp.csc_matrix, column: int, rows: np.ndarray) -> np.ndarray:
    """Dense values of one CSC column at ``rows``."""
    values = np.zeros(block.shape[0], dtype=block.dtype)
    start, stop = block.indptr[column], block.indptr[column + 1]
    values[block.indices[start:stop]] = block.data[start:stop]
    return values[rows]


def filter_cells_by_knockdown(
    adata: ad.AnnData,
    perturbation_key: str = "gene",
    control_label: str = CONTROL_LABEL,
    percentile: float = 10.0,
    layer: str | None = None,
) -> ad.AnnData:
    """Keep perturbed cells whose target is at or below the control ``percentile`` of it.

    As in GPO-VAE, the comparison uses the matrix as given (raw counts in the original), and
    controls and cells whose target gene is not measured are kept unchanged.
    """
    _require_obs(adata, perturbation_key, "perturbation_key")
    if not 0.0 <= percentile <= 100.0:
        raise GenevaeInputError(f"percentile={percentile} must be between 0 and 100.")
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    controls = labels == control_label
    if not controls.any():
        raise GenevaeInputError(
            f"control_label={control_label!r} never occurs in adata.obs[{perturbation_key!r}]."
        )
    keep = np.ones(adata.n_obs, dtype=bool)
    cells_of = pd.Series(labels).groupby(labels, sort=False).indices
    measured = [gene for gene in cells_of if gene != control_label and gene in adata.var_names]
    block = _target_columns(adata, measured, layer)
    control_rows = np.flatnonzero(controls)
    for column, gene in enumerate(measured):
        cells = cells_of[gene]
        cut = np.percentile(_column_values(block, column, control_rows), percentile)
        keep[cells] = _column_values(block, column, cells) <= cut
    if not keep[~controls].any():
        raise GenevaeInputError(
            f"no perturbed cell has its target at or below the {percentile}th percentile of "
            "the controls; raise percentile (or switch the knockdown filter off)."
        )
    return adata[keep].copy()


def filter_perturbations_by_cell_count(
    adata: ad.AnnData,
    perturbation_key: str = "gene",
    control_label: str = CONTROL_LABEL,
    min_cells: int = 100,
    require_measured_target: bool = True,
) -> ad.AnnData:
    """Keep perturbations with more than ``min_cells`` cells, and all controls.

    With ``require_measured_target`` (the original's behaviour) perturbations whose target
    gene is not in ``var_names`` are dropped too, since GPO-VAE needs every node measured.
    """
    _require_obs(adata, perturbation_key, "perturbation_key")
    labels = adata.obs[perturbation_key].astype(str)
    sizes = labels[labels != control_label].value_counts()
    kept = set(sizes.index[sizes > min_cells])
    if require_measured_target:
        kept &= set(adata.var_names)
    if not kept:
        largest = sizes.head(3).to_dict()
        raise GenevaeInputError(
            f"no perturbation has more than min_cells={min_cells} cells with a measured target "
            f"(largest: {largest}); lower min_cells for a small data set."
        )
    keep = labels.isin(kept | {control_label}).to_numpy()
    return adata[keep].copy()


def _strong_perturbation_filter(
    adata: ad.AnnData,
    thresholds: Mapping[str, Any] | None,
    summary_stats: pd.DataFrame | None,
    perturbation_key: str,
    control_label: str,
) -> ad.AnnData:
    """Keep the strong perturbations when both thresholds and the summary table are given;
    say in the log which perturbations it dropped, or why it did not run."""
    if thresholds is None:
        logger.info("Strong-perturbation filter: off (cell_filters.strong_perturbations: null).")
        return adata
    if summary_stats is None:
        logger.warning(
            "Strong-perturbation filter NOT applied: the dataset has no summary statistics "
            "(Replogle Table S2 columns; set `summary_stats: {file: ...}` in its "
            "datasets.yml entry). All perturbations go on to the knockdown filter."
        )
        return adata
    strong = set(strong_perturbations(summary_stats, **thresholds))
    labels = adata.obs[perturbation_key].astype(str)
    present = set(labels[labels != control_label])
    kept = present & strong
    if not kept:
        raise GenevaeInputError(
            f"no perturbation of the data passes the strong-perturbation filter "
            f"({thresholds}); {len(strong)} pass in the summary statistics, none of them among "
            f"the data's {sorted(present)[:5]}…; check that the table is this screen's."
        )
    dropped = sorted(present - strong)
    logger.info(
        "Strong-perturbation filter (%s): kept %d of %d perturbations; dropped %s",
        dict(thresholds),
        len(kept),
        len(present),
        ", ".join(dropped[:20]) + (f" … ({len(dropped)} in all)" if len(dropped) > 20 else ""),
    )
    return subset_perturbations(adata, sorted(kept), perturbation_key, control_label)


def apply_cell_filters(
    adata: ad.AnnData,
    filters: Mapping[str, Any],
    summary_stats: pd.DataFrame | None = None,
    perturbation_key: str = "gene",
    control_label: str = CONTROL_LABEL,
    layer: str | None = None,
) -> ad.AnnData:
    """GPO-VAE's raw-data filters in the authors' order (models.md §3.5 steps 2–4).

    ``filters`` holds ``strong_perturbations`` (keyword arguments of
    :func:`strong_perturbations`; applied when ``summary_stats``, Replogle Table S2, is given,
    and logged as not applied when it is not),
    ``knockdown_percentile`` (:func:`filter_cells_by_knockdown`) and
    ``min_cells_per_perturbation`` (:func:`filter_perturbations_by_cell_count`); a null value
    switches a filter off. Counts must be raw (X or ``layer``), as in the original.
    """
    adata = _strong_perturbation_filter(
        adata, filters.get("strong_perturbations"), summary_stats, perturbation_key, control_label
    )
    if filters.get("knockdown_percentile") is not None:
        adata = filter_cells_by_knockdown(
            adata, perturbation_key, control_label, filters["knockdown_percentile"], layer
        )
    if filters.get("min_cells_per_perturbation") is not None:
        adata = filter_perturbations_by_cell_count(
            adata, perturbation_key, control_label, filters["min_cells_per_perturbation"]
        )
    return adata
