"""The chunked on-disk preprocessing gives exactly what the in-memory path gives."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from genevae.errors import GenevaeInputError
from genevae.preprocessing.scrna import (
    normalize_total_in_place,
    preprocess_scrna,
    preprocess_scrna_backed,
)
from genevae.preprocessing.synthetic import make_module_dataset


@pytest.fixture()
def synthetic() -> ad.AnnData:
    adata = make_module_dataset(n_cells=150, n_genes=160, n_modules=8, seed=2).adata
    adata.X = sparse.csr_matrix(adata.X)
    adata.layers["counts"] = sparse.csr_matrix(adata.layers["counts"])
    return adata


def _thresholds(adata: ad.AnnData) -> dict[str, int]:
    """min_genes / min_cells that really remove some cells and some genes."""
    counts = sparse.csr_matrix(adata.layers["counts"])
    genes_per_cell = np.diff(counts.indptr)
    cells_per_gene = np.bincount(counts.indices, minlength=adata.n_vars)
    return {
        "min_genes": int(np.quantile(genes_per_cell, 0.1)),
        "min_cells": int(np.quantile(cells_per_gene, 0.1)),
    }


def _assert_same(backed: tuple, in_memory: tuple) -> None:
    (result, report), (expected, expected_report) = backed, in_memory
    pd.testing.assert_frame_equal(report, expected_report)
    pd.testing.assert_frame_equal(result.obs, expected.obs)
    pd.testing.assert_frame_equal(result.var, expected.var)
    assert (result.X != expected.X).nnz == 0
    assert (result.layers["counts"] != expected.layers["counts"]).nnz == 0
    assert result.X.dtype == expected.X.dtype == np.float32
    assert result.uns["preprocessing"] == expected.uns["preprocessing"]


@pytest.mark.parametrize("source", ["layer", "integral X", "log1p X"])
def test_backed_matches_in_memory_for_every_counts_source(synthetic, tmp_path, source):
    settings = _thresholds(synthetic)
    if source == "integral X":
        synthetic.X = synthetic.layers.pop("counts")
    elif source == "log1p X":
        del synthetic.layers["counts"]
    path = tmp_path / "cells.h5ad"
    synthetic.write_h5ad(path)
    backed = preprocess_scrna_backed(path, chunk_size=32, **settings)
    in_memory = preprocess_scrna(ad.read_h5ad(path), **settings)
    _assert_same(backed, in_memory)
    for result, _ in (backed, in_memory):  # X's values are new, its index arrays the counts'
        assert np.shares_memory(result.X.indices, result.layers["counts"].indices)
        assert not np.shares_memory(result.X.data, result.layers["counts"].data)
    report = backed[1]
    assert report["cells_after"].iloc[1] < report["cells_before"].iloc[1]
    assert report["genes_after"].iloc[2] < report["genes_before"].iloc[2]


def test_backed_highly_variable_genes_and_dense_x_match_in_memory(synthetic, tmp_path):
    synthetic.X = synthetic.X.toarray()
    synthetic.layers["counts"] = synthetic.layers["counts"].toarray()
    path = tmp_path / "dense.h5ad"
    synthetic.write_h5ad(path)
    kwargs = {"min_genes": 10, "n_top_genes": 50, "chunk_size": 40}
    backed = preprocess_scrna_backed(path, **kwargs)
    kwargs.pop("chunk_size")
    _assert_same(backed, preprocess_scrna(ad.read_h5ad(path), **kwargs))
    assert backed[0].n_vars == 50


def test_backed_refuses_bad_input_before_reading_the_matrix(synthetic, tmp_path):
    negative = synthetic.copy()
    negative.layers["counts"].data[0] = -1.0
    negative.write_h5ad(tmp_path / "negative.h5ad")
    with pytest.raises(GenevaeInputError, match=r"layers\['counts'\] contains negative values"):
        preprocess_scrna_backed(tmp_path / "negative.h5ad")
    synthetic.write_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(GenevaeInputError, match=r"no column 'batch' \(parameter batch_key\)"):
        preprocess_scrna_backed(tmp_path / "cells.h5ad", batch_key="batch")
    with pytest.raises(GenevaeInputError, match="no cells or genes left after QC"):
        preprocess_scrna_backed(tmp_path / "cells.h5ad", min_genes=10_000)


@pytest.mark.parametrize("integral", [True, False])
def test_normalize_total_in_place_equals_scanpy_bit_for_bit(integral):
    import scanpy as sc

    x = sparse.random(500, 80, density=0.1, format="csr", dtype=np.float32, random_state=3)
    x.data = np.ceil(x.data * 20) if integral else x.data * np.float32(37.3)
    x = sparse.csr_matrix(sparse.vstack([x, sparse.csr_matrix((2, 80), dtype=np.float32)]))
    expected = ad.AnnData(X=x.copy())
    sc.pp.normalize_total(expected, target_sum=1e4)
    normalize_total_in_place(x, 1e4, chunk_rows=64)
    np.testing.assert_array_equal(x.data, expected.X.data)
    assert x.data.dtype == np.float32


def test_the_pipeline_node_takes_the_chunked_path_when_the_catalog_opens_the_file_backed(
    synthetic, tmp_path, monkeypatch
):
    from genevae.datasets.anndata_dataset import AnnDataDataset
    from genevae.pipelines.data_processing import nodes
    from genevae.preprocessing import scrna

    path = tmp_path / "cells.h5ad"
    synthetic.write_h5ad(path)
    params = _thresholds(synthetic)
    chunked_calls = []

    def recording_backed(*args, **kwargs):
        chunked_calls.append(args)
        return preprocess_scrna_backed(*args, **kwargs)

    monkeypatch.setattr(scrna, "preprocess_scrna_backed", recording_backed)
    backed = AnnDataDataset(filepath=str(path), load_args={"backed": "r"}).load()
    result = nodes.preprocess_single_cell(backed, params)
    assert [str(args[0]) for args in chunked_calls] == [str(path)]
    _assert_same(result, nodes.preprocess_single_cell(ad.read_h5ad(path), params))
    assert len(chunked_calls) == 1  # the in-memory input took the in-memory path


def test_backed_reads_a_legacy_h5ad_and_matches_in_memory_on_kang(tmp_path):
    """Kang's file predates anndata 0.7 (record-array obs/var, h5sparse X): same result."""
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "scrna" / "kang2018_pbmc_ifnb_scgen_valid.h5ad"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    in_memory = preprocess_scrna(ad.read_h5ad(path))
    _assert_same(preprocess_scrna_backed(path), in_memory)
    result = in_memory[0]
    assert result.shape == (1943, 5883)
    # like AnnData subsetting: categories of the 1,115 dropped genes are gone
    assert set(result.var["gene_symbol"].cat.categories) == set(result.var["gene_symbol"])
