"""Single-cell RNA-seq preprocessing for VEGA: validation, count recovery, QC, normalisation.

Re-expresses VEGA's ``preprocess_anndata`` (models.md §2.2) as a pure function that returns
a new AnnData (the original mutated its input and, through a rebinding bug, did not apply
the HVG subset), and keeps raw counts so count likelihoods (NB/ZINB) can be used.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

from genevae.errors import GenevaeInputError

Matrix = np.ndarray | sparse.spmatrix | sparse.sparray
QC_COLUMNS = ["step", "cells_before", "cells_after", "genes_before", "genes_after"]


def _stored_values(matrix: Matrix) -> np.ndarray:
    """The explicitly stored values (nonzeros for sparse, everything for dense)."""
    return matrix.data if sparse.issparse(matrix) else np.asarray(matrix).ravel()


def _is_integral(matrix: Matrix, atol: float = 1e-6) -> bool:
    values = _stored_values(matrix)
    return bool(np.all(np.abs(values - np.round(values)) <= atol))


def recover_counts_from_log1p(x: Matrix, atol: float = 1e-2) -> sparse.csr_matrix:
    """Exact raw counts from ``log1p(size-normalised counts)``: per cell, expm1(x) / min nonzero.

    Size normalisation multiplies each cell's counts by one factor, so dividing by the
    smallest nonzero value (a count of 1, in any cell with a singleton gene, which is nearly
    every cell of a UMI data set) undoes it. The result is rounded and returned as CSR
    float32; if any value is further than ``atol`` from a whole number, X was not log1p of
    size-normalised counts (e.g. it was scaled, or HVG-subset before normalising) and a
    GenevaeInputError is raised.
    """
    csr = sparse.csr_matrix(x, dtype=np.float64)
    csr.eliminate_zeros()
    if csr.data.size and (not np.isfinite(csr.data).all() or csr.data.min() < 0):
        raise GenevaeInputError(
            "X has NaN, infinite or negative values, so it is not log1p-normalised counts; "
            "provide raw counts in layers['counts']."
        )
    scaled = np.expm1(csr.data)
    row_nnz = np.diff(csr.indptr)
    filled = row_nnz > 0
    row_min = np.ones(csr.shape[0])
    row_min[filled] = np.minimum.reduceat(scaled, csr.indptr[:-1][filled])
    ratios = scaled / np.repeat(row_min, row_nnz)
    counts = np.round(ratios)
    deviation = np.abs(ratios - counts)
    if deviation.size and deviation.max() > atol:
        worst = int(np.searchsorted(csr.indptr, int(deviation.argmax()), side="right") - 1)
        raise GenevaeInputError(
            f"cannot recover integer counts from X: cell {worst} deviates from whole numbers by "
            f"{deviation.max():.3g} (tolerance atol={atol}). X is not log1p of size-normalised "
            "counts; provide raw counts in layers['counts']."
        )
    return sparse.csr_matrix(
        (counts.astype(np.float32), csr.indices, csr.indptr), shape=csr.shape, dtype=np.float32
    )


def _check_obs_columns(obs: pd.DataFrame, keys: dict[str, str | None]) -> None:
    """Every named obs column exists and has no missing values."""
    for parameter, column in keys.items():
        if column is None:
            continue
        if column not in obs.columns:
            raise GenevaeInputError(
                f"obs has no column {column!r} (parameter {parameter}); available columns: "
                f"{list(obs.columns)}. Set {parameter} to the right column name."
            )
        n_missing = int(obs[column].isna().sum())
        if n_missing:
            raise GenevaeInputError(
                f"obs column {column!r} (parameter {parameter}) has {n_missing} missing values; "
                "label or remove those cells first."
            )


def _check_values(matrix: Matrix, where: str) -> None:
    values = _stored_values(matrix)
    if not (np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.bool_)):
        raise GenevaeInputError(
            f"{where} has dtype {values.dtype}, not numbers; store the counts as integers or "
            "floats (e.g. adata.X = adata.X.astype('float32'))."
        )
    if np.isnan(values).any() or np.isinf(values).any():
        raise GenevaeInputError(f"{where} contains NaN or infinite values; remove or fix them.")
    if values.size and values.min() < 0:
        raise GenevaeInputError(
            f"{where} contains negative values (min {values.min():.3g}), so it is neither counts "
            "nor log-normalised counts; provide raw counts in layers['counts']."
        )


def _raw_counts(adata: ad.AnnData, counts_layer: str) -> tuple[sparse.csr_matrix, str]:
    """Counts from ``layers[counts_layer]``, from integral X, or recovered from log1p X."""
    if counts_layer in adata.layers:
        counts = adata.layers[counts_layer]
        _check_values(counts, f"layers[{counts_layer!r}]")
        source = f"layers[{counts_layer!r}]"
    else:
        _check_values(adata.X, "X")
        if _is_integral(adata.X):
            counts, source = adata.X, "X"
        else:
            counts, source = recover_counts_from_log1p(adata.X), "recovered from log1p X"
    return sparse.csr_matrix(counts, dtype=np.float32), source


def _qc_row(step: str, before: tuple[int, int], after: ad.AnnData) -> dict[str, object]:
    return dict(
        zip(QC_COLUMNS, [step, before[0], after.n_obs, before[1], after.n_vars], strict=True)
    )


def preprocess_scrna(
    adata: ad.AnnData,
    min_genes: int = 200,
    min_cells: int = 3,
    target_sum: float = 1e4,
    n_top_genes: int | None = None,
    condition_key: str | None = "condition",
    cell_type_key: str | None = "cell_type",
    batch_key: str | None = None,
    counts_layer: str = "counts",
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Validate, filter and log-normalise single cells; return a new AnnData and a QC report.

    Steps (VEGA's defaults): drop cells with < ``min_genes`` detected genes, genes detected in
    < ``min_cells`` cells, ``normalize_total(target_sum)``, ``log1p``, and, when
    ``n_top_genes`` is set, keep the scanpy (``seurat`` flavour) highly variable genes,
    per batch when ``batch_key`` is given. Counts come from ``layers[counts_layer]``, or X if
    it holds integers, or are recovered exactly from log1p-normalised X
    (:func:`recover_counts_from_log1p`). The result has counts in ``layers["counts"]``,
    log-normalised X, the input's obs/var columns, and ``uns["preprocessing"]`` recording the
    settings; obsm/obsp/uns of the input (old embeddings) are not carried over.
    """
    _check_obs_columns(
        adata.obs,
        {"condition_key": condition_key, "cell_type_key": cell_type_key, "batch_key": batch_key},
    )
    if adata.var_names.duplicated().any():
        repeated = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise GenevaeInputError(
            f"duplicate gene names in var_names, e.g. {repeated}; call "
            "adata.var_names_make_unique() or aggregate the duplicates first."
        )
    if n_top_genes is not None and n_top_genes < 1:
        raise GenevaeInputError(f"n_top_genes={n_top_genes} must be a positive integer or None.")
    counts, counts_source = _raw_counts(adata, counts_layer)
    result = ad.AnnData(X=counts, obs=adata.obs.copy(), var=adata.var.copy())
    report = [_qc_row("input", result.shape, result)]

    before = result.shape
    sc.pp.filter_cells(result, min_genes=min_genes)
    report.append(_qc_row(f"filter_cells(min_genes={min_genes})", before, result))
    before = result.shape
    sc.pp.filter_genes(result, min_cells=min_cells)
    report.append(_qc_row(f"filter_genes(min_cells={min_cells})", before, result))
    if result.n_obs == 0 or result.n_vars == 0:
        raise GenevaeInputError(
            f"no cells or genes left after QC (min_genes={min_genes}, min_cells={min_cells}); "
            "lower these thresholds."
        )

    result.layers["counts"] = result.X.copy()
    sc.pp.normalize_total(result, target_sum=target_sum)
    sc.pp.log1p(result)
    if n_top_genes is not None and n_top_genes < result.n_vars:
        before = result.shape
        sc.pp.highly_variable_genes(result, n_top_genes=n_top_genes, batch_key=batch_key)
        result = result[:, result.var["highly_variable"].to_numpy()].copy()
        report.append(_qc_row(f"highly_variable_genes(n_top_genes={n_top_genes})", before, result))
    result.uns["preprocessing"] = {
        "counts_source": counts_source,
        "min_genes": min_genes,
        "min_cells": min_cells,
        "target_sum": float(target_sum),
        "n_top_genes": -1 if n_top_genes is None else n_top_genes,
    }
    return result, pd.DataFrame(report, columns=QC_COLUMNS)
