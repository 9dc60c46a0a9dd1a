"""Perturb-seq preprocessing for GPO-VAE: controls, gene selection, DE genes, cell splits.

Re-expresses the data module of GPO-VAE (models.md §3.5) as pure functions on CPU scanpy
(the original needed GPU ``rapids_singlecell``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse
from sklearn.model_selection import train_test_split

from genevae.errors import GenevaeInputError
from genevae.preprocessing.wilcoxon import rank_genes_vs_reference

SPLIT_NAMES = ("train", "validation", "test")


def _check_column(obs: pd.DataFrame, key: str, parameter: str) -> None:
    if key not in obs.columns:
        raise GenevaeInputError(
            f"obs has no column {key!r} (parameter {parameter}); available columns: "
            f"{list(obs.columns)}."
        )


def _available_labels(values: pd.Series, limit: int = 20) -> list[str]:
    return [str(v) for v in pd.unique(values.dropna())][:limit]


def find_control_cells(
    obs: pd.DataFrame, perturbation_key: str = "perturbation", control_label: str = "non-targeting"
) -> np.ndarray:
    """Boolean mask of control cells (``obs[perturbation_key] == control_label``).

    Raises, listing the labels present, when no cell carries the control label (e.g. Adamson's
    control is the guide plasmid ``62(mod)_pBA581``, not ``non-targeting``).
    """
    _check_column(obs, perturbation_key, "perturbation_key")
    is_control = (obs[perturbation_key].astype(str) == control_label).to_numpy()
    if not is_control.any():
        raise GenevaeInputError(
            f"no cell has {perturbation_key}={control_label!r} (parameter control_label); "
            f"available labels: {_available_labels(obs[perturbation_key])}."
        )
    return is_control


def perturbation_targets(
    obs: pd.DataFrame, target_key: str = "guide_gene", control_label: str = "non-targeting"
) -> list[str]:
    """Sorted target gene symbols of the perturbations, without the control label."""
    _check_column(obs, target_key, "target_key")
    targets = {str(t) for t in obs[target_key].dropna().unique()} - {control_label}
    return sorted(targets)


def log_normalise(
    adata: ad.AnnData, target_sum: float = 1e4, counts_layer: str = "counts"
) -> ad.AnnData:
    """New AnnData with raw counts in ``layers["counts"]`` and X = log1p(normalize_total(counts)).

    Counts come from ``layers[counts_layer]`` when present, else from X, which must then hold
    non-negative integers.
    """
    counts = adata.layers.get(counts_layer, adata.X)
    values = counts.data if sparse.issparse(counts) else np.asarray(counts)
    if not np.isfinite(values).all() or values.min(initial=0) < 0:
        raise GenevaeInputError("counts contain NaN, infinite or negative values; fix the input.")
    if not np.array_equal(values, np.round(values)):
        raise GenevaeInputError(
            f"X is not integer counts and there is no layers[{counts_layer!r}]; pass raw counts "
            "(Perturb-seq UMI counts) or set counts_layer."
        )
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    result = ad.AnnData(
        X=counts.copy(), obs=adata.obs.copy(), var=adata.var.copy(), layers={"counts": counts}
    )
    sc.pp.normalize_total(result, target_sum=target_sum)
    sc.pp.log1p(result)
    return result


def _require_log_normalised(adata: ad.AnnData, function: str) -> None:
    values = adata.X.data if sparse.issparse(adata.X) else np.asarray(adata.X)
    if values.size and np.array_equal(values, np.round(values)) and values.max() > 1:
        raise GenevaeInputError(
            f"{function} needs log-normalised X but X holds integer counts; call "
            "log_normalise(adata) first."
        )


def select_genes(
    adata: ad.AnnData,
    n_top_genes: int,
    perturbed_genes: Sequence[str],
    batch_key: str | None = None,
) -> ad.AnnData:
    """Keep the ``n_top_genes`` highly variable genes plus every measured perturbed gene.

    X must be log-normalised (scanpy ``seurat`` flavour HVG, per batch if ``batch_key``).
    Gene order is preserved; ``var["highly_variable"]`` and ``var["perturbed_gene"]`` say why
    each gene was kept. Perturbed genes that are not measured are reported in a warning.
    """
    _require_log_normalised(adata, "select_genes")
    if n_top_genes < 1:
        raise GenevaeInputError(f"n_top_genes={n_top_genes} must be a positive integer.")
    unmeasured = sorted(set(perturbed_genes) - set(adata.var_names))
    if unmeasured:
        warnings.warn(
            f"{len(unmeasured)} perturbed genes are not measured and cannot be kept: "
            f"{unmeasured[:10]}",
            stacklevel=2,
        )
    hvg = sc.pp.highly_variable_genes(
        adata, n_top_genes=min(n_top_genes, adata.n_vars), batch_key=batch_key, inplace=False
    )
    highly_variable = hvg["highly_variable"].to_numpy()
    perturbed = adata.var_names.isin(list(perturbed_genes))
    result = adata[:, highly_variable | perturbed].copy()
    result.var["highly_variable"] = highly_variable[highly_variable | perturbed]
    result.var["perturbed_gene"] = perturbed[highly_variable | perturbed]
    return result


def top_de_genes(
    adata: ad.AnnData,
    perturbation_key: str = "perturbation",
    control_label: str = "non-targeting",
    n_genes: int | None = 20,
    rank_by_abs: bool = True,
) -> pd.DataFrame:
    """Top ``n_genes`` (None: all) differentially expressed genes of each perturbation vs control.

    Wilcoxon rank-sum test (scanpy ``rank_genes_groups``' statistics, Benjamini-Hochberg
    adjusted, computed by :func:`~genevae.preprocessing.wilcoxon.rank_genes_vs_reference` in
    time linear in cells) on log-normalised X. Genes are ranked by |score| so knocked-down genes rank too; GPO-VAE's
    code used scanpy's default signed ranking (up-regulated first): ``rank_by_abs=False``
    (for its extra GRN nodes see :func:`genevae.preprocessing.gpo_inputs.extra_node_genes`).
    Columns: perturbation, rank (0 = strongest), gene, score, logfoldchange, pval, pval_adj.
    """
    _require_log_normalised(adata, "top_de_genes")
    find_control_cells(adata.obs, perturbation_key, control_label)
    sizes = adata.obs[perturbation_key].astype(str).value_counts()
    too_small = sizes[sizes < 2].index.tolist()
    if too_small:
        raise GenevaeInputError(
            f"perturbations {too_small[:10]} have fewer than 2 cells; drop them before the DE test."
        )
    table = rank_genes_vs_reference(
        adata.X,
        adata.obs[perturbation_key].astype(str).to_numpy(),
        control_label,
        adata.var_names,
        n_genes=None if n_genes is None else min(n_genes, adata.n_vars),
        rank_by_abs=rank_by_abs,
    )
    table = table.rename(
        columns={
            "group": "perturbation",
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
        }
    )
    table["perturbation"] = table["perturbation"].astype(str)
    table["rank"] = table.groupby("perturbation").cumcount()
    columns = ["perturbation", "rank", "gene", "score", "logfoldchange", "pval", "pval_adj"]
    return table[columns].reset_index(drop=True)


def split_cells(
    obs: pd.DataFrame, fractions: tuple[float, float, float] = (0.64, 0.16, 0.20), seed: int = 0
) -> pd.Series:
    """Random train/validation/test split of cells (a Series of split names indexed like obs).

    Two-step as in GPO-VAE: hold out the test fraction, then split the rest into train and
    validation (the defaults are its 80/20 then 80/20). Every perturbation appears in every
    split; use :func:`hold_out_perturbations` for unseen-perturbation evaluation.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise GenevaeInputError(
            f"fractions={fractions!r} must be three positive numbers (train, validation, test) "
            "summing to 1."
        )
    train_frac, val_frac, test_frac = fractions
    cells = np.arange(len(obs))
    rest, test = train_test_split(cells, test_size=test_frac, random_state=seed)
    train, validation = train_test_split(
        rest, test_size=val_frac / (train_frac + val_frac), random_state=seed
    )
    split = np.empty(len(obs), dtype=object)
    split[train], split[validation], split[test] = SPLIT_NAMES
    return pd.Series(split, index=obs.index, name="split")


def hold_out_perturbations(
    obs: pd.DataFrame,
    perturbations: Sequence[str],
    perturbation_key: str = "perturbation",
    split: pd.Series | None = None,
) -> pd.Series:
    """Move every cell of the given perturbations to ``"test"`` (unseen-perturbation split).

    Other cells keep their label from ``split`` (default: all ``"train"``).
    """
    _check_column(obs, perturbation_key, "perturbation_key")
    labels = obs[perturbation_key].astype(str)
    absent = sorted(set(perturbations) - set(labels))
    if absent:
        raise GenevaeInputError(
            f"perturbations {absent} are not in obs[{perturbation_key!r}]; available labels: "
            f"{_available_labels(obs[perturbation_key])}."
        )
    result = pd.Series("train", index=obs.index, name="split") if split is None else split.copy()
    if not result.index.equals(obs.index):
        raise GenevaeInputError("split must be indexed like obs (one entry per cell).")
    result[labels.isin(list(perturbations)).to_numpy()] = "test"
    return result
