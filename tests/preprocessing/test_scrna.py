"""Single-cell preprocessing: exact count recovery, QC report, validation of bad input."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from genevae.errors import GenevaeInputError
from genevae.preprocessing.scrna import preprocess_scrna, recover_counts_from_log1p
from genevae.preprocessing.synthetic import make_module_dataset
from tests.conftest import requires_shared_data

KANG = "scrna/kang2018_pbmc_ifnb_scgen_valid.h5ad"


@pytest.fixture(scope="module")
def kang(shared_data) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 2018 file triggers anndata format warnings
        return ad.read_h5ad(shared_data / KANG)


def _assert_one_factor_per_cell(log1p_x, counts) -> None:
    """expm1(X) equals the counts times a single factor per cell (same sparsity pattern)."""
    x, counts = sparse.csr_matrix(log1p_x), sparse.csr_matrix(counts)
    np.testing.assert_array_equal(x.indptr, counts.indptr)
    ratio = np.expm1(x.data.astype(np.float64)) / counts.data
    first = np.repeat(ratio[np.minimum(x.indptr[:-1], len(ratio) - 1)], np.diff(x.indptr))
    np.testing.assert_allclose(ratio, first, rtol=1e-4)


@pytest.fixture()
def synthetic() -> ad.AnnData:
    return make_module_dataset(n_cells=120, n_genes=150, n_modules=8, seed=1).adata


def test_recovers_synthetic_counts_exactly(synthetic):
    counts = synthetic.layers["counts"]
    recovered = recover_counts_from_log1p(synthetic.X).toarray()
    has_singleton = (counts == 1).any(axis=1)
    assert has_singleton.mean() > 0.9
    np.testing.assert_array_equal(recovered[has_singleton], counts[has_singleton])
    # cells without a singleton come back divided by their smallest count, still integral
    assert np.all(recovered == np.round(recovered))


def test_recovery_rejects_non_log1p_data(synthetic):
    scaled = synthetic.X / synthetic.X.std(axis=0, keepdims=True).clip(1e-3)
    with pytest.raises(
        GenevaeInputError, match=r"cannot recover integer counts.*layers\['counts'\]"
    ):
        recover_counts_from_log1p(scaled)
    with pytest.raises(GenevaeInputError, match="negative"):
        recover_counts_from_log1p(scaled - 1.0)


@requires_shared_data
def test_kang_counts_are_recovered_exactly(kang):
    counts = recover_counts_from_log1p(kang.X)
    library = np.asarray(counts.sum(axis=1)).ravel()
    assert library.min() == 345 and library.max() == 4987
    _assert_one_factor_per_cell(kang.X, counts)


@requires_shared_data
def test_preprocess_kang_recovers_counts_and_reports_qc(kang):
    result, report = preprocess_scrna(kang, n_top_genes=1000)
    assert result is not kang and kang.shape == (1975, 6998)
    assert result.uns["preprocessing"]["counts_source"] == "recovered from log1p X"
    assert list(report.columns) == [
        "step",
        "cells_before",
        "cells_after",
        "genes_before",
        "genes_after",
    ]
    assert report["step"].tolist()[0] == "input"
    assert report.iloc[0][["cells_after", "genes_after"]].tolist() == [1975, 6998]
    assert (report["cells_after"] <= report["cells_before"]).all()
    assert report.iloc[-1][["cells_after", "genes_after"]].tolist() == list(result.shape)
    assert result.n_vars == 1000
    counts = result.layers["counts"]
    assert np.all(counts.data == np.round(counts.data))
    assert (result.obs["n_genes"] >= 200).all()
    # normalised on all QC-passing genes before the HVG subset: one size factor per cell
    _assert_one_factor_per_cell(result.X, counts)
    assert {"condition", "cell_type"} <= set(result.obs.columns)


def test_preprocess_uses_counts_layer_and_is_pure(synthetic):
    original = synthetic.copy()
    result, report = preprocess_scrna(synthetic, min_genes=10, min_cells=1)
    assert result.uns["preprocessing"]["counts_source"] == "layers['counts']"
    np.testing.assert_array_equal(synthetic.X, original.X)  # input untouched
    counts = result.layers["counts"].toarray()
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(result.X.toarray(), expected, rtol=1e-4, atol=1e-4)
    assert len(report) == 3  # no HVG step when n_top_genes is None


def test_preprocess_accepts_integer_x_and_selects_hvg_per_batch(synthetic):
    raw = ad.AnnData(X=sparse.csr_matrix(synthetic.layers["counts"]), obs=synthetic.obs.copy())
    raw.var_names = synthetic.var_names
    raw.obs["batch"] = np.where(np.arange(raw.n_obs) % 2, "b1", "b2")
    result, report = preprocess_scrna(
        raw, min_genes=10, min_cells=1, n_top_genes=50, batch_key="batch"
    )
    assert result.uns["preprocessing"]["counts_source"] == "X"
    assert result.n_vars == 50
    assert report.iloc[-1]["step"] == "highly_variable_genes(n_top_genes=50)"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("condition_key", "stim", "no column 'stim' \\(parameter condition_key\\)"),
        ("cell_type_key", "celltype", "no column 'celltype' \\(parameter cell_type_key\\)"),
        ("batch_key", "batch", "no column 'batch' \\(parameter batch_key\\)"),
    ],
)
def test_missing_obs_columns_are_named(synthetic, key, value, message):
    with pytest.raises(GenevaeInputError, match=message):
        preprocess_scrna(synthetic, **{key: value})


def test_missing_labels_duplicate_genes_nan_and_negative_values(synthetic):
    unlabelled = synthetic.copy()
    unlabelled.obs.loc[unlabelled.obs_names[0], "condition"] = np.nan
    with pytest.raises(GenevaeInputError, match="'condition'.*1 missing values"):
        preprocess_scrna(unlabelled)

    duplicated = synthetic.copy()
    duplicated.var_names = ["GENE_0000"] + list(duplicated.var_names[1:-1]) + ["GENE_0000"]
    with pytest.raises(GenevaeInputError, match="duplicate gene names.*GENE_0000"):
        preprocess_scrna(duplicated)

    with_nan = synthetic.copy()
    with_nan.layers["counts"][0, 0] = np.nan
    with pytest.raises(GenevaeInputError, match=r"layers\['counts'\] contains NaN"):
        preprocess_scrna(with_nan)

    negative = ad.AnnData(X=synthetic.X - 1.0, obs=synthetic.obs.copy())
    with pytest.raises(GenevaeInputError, match="X contains negative values"):
        preprocess_scrna(negative)


def test_rejects_thresholds_that_remove_everything(synthetic):
    with pytest.raises(GenevaeInputError, match="min_genes=100000"):
        preprocess_scrna(synthetic, min_genes=100_000)
    with pytest.raises(GenevaeInputError, match="n_top_genes=0"):
        preprocess_scrna(synthetic, n_top_genes=0)


def _scanpy_reference(counts: sparse.csr_matrix, obs, var, min_genes: int, min_cells: int):
    """The steps done with scanpy directly (what preprocess_scrna did before its own filters)."""
    import scanpy as sc

    reference = ad.AnnData(X=counts.copy(), obs=obs.copy(), var=var.copy())
    sc.pp.filter_cells(reference, min_genes=min_genes)
    sc.pp.filter_genes(reference, min_cells=min_cells)
    reference.layers["counts"] = reference.X.copy()
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    return reference


def test_filters_match_scanpy_share_index_arrays_and_leave_the_input_alone(synthetic):
    counts = sparse.csr_matrix(synthetic.layers["counts"], dtype=np.float32)
    counts.data[::7] = 0  # explicit zeros are kept, as scanpy keeps them
    adata = ad.AnnData(X=counts, obs=synthetic.obs.copy(), var=synthetic.var.copy())
    before = counts.copy()
    thresholds = {"min_genes": int(np.quantile(np.diff(counts.indptr), 0.3)), "min_cells": 40}
    result, report = preprocess_scrna(adata, **thresholds)
    assert report["cells_after"].iloc[1] < report["cells_before"].iloc[1]
    assert report["genes_after"].iloc[2] < report["genes_before"].iloc[2]

    reference = _scanpy_reference(before, synthetic.obs, synthetic.var, **thresholds)
    pairs = [(result.X, reference.X), (result.layers["counts"], reference.layers["counts"])]
    for mine, theirs in pairs:  # bit for bit, stored entries and their order included
        for part in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(mine, part), getattr(theirs, part))
    pd.testing.assert_frame_equal(result.obs, reference.obs)
    pd.testing.assert_frame_equal(result.var, reference.var)

    # normalisation changes values only: X shares the counts layer's index arrays
    normalised, kept_counts = result.X, result.layers["counts"]
    assert np.shares_memory(normalised.indices, kept_counts.indices)
    assert np.shares_memory(normalised.indptr, kept_counts.indptr)
    assert not np.shares_memory(normalised.data, kept_counts.data)

    # the input is untouched and shares nothing with the result
    assert adata.X is counts
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(counts, part), getattr(before, part))
        assert not np.shares_memory(getattr(counts, part), getattr(kept_counts, part))


def test_integer_check_in_blocks_sees_every_value():
    from genevae.preprocessing.scrna import _is_integral

    values = np.arange(1, 11, dtype=np.float32)
    assert _is_integral(sparse.csr_matrix(values.reshape(2, 5)), block=3)
    values[-1] += 0.5  # in the last, partial block
    assert not _is_integral(sparse.csr_matrix(values.reshape(2, 5)), block=3)
