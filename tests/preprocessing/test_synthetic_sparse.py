"""The chunked scRNA generator: sparse on disk, NB counts, planted modules, never dense."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic import (
    _negative_binomial_sparse,
    write_module_dataset_h5ad,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("sparse") / "cells.h5ad"
    result = write_module_dataset_h5ad(
        path, 1_200, 2_000, 60, n_differential=4, genes_per_module=(5, 200), chunk_cells=250
    )
    return result, ad.read_h5ad(path)


def test_counts_are_sparse_integer_and_near_the_requested_density(written):
    result, adata = written
    assert sp.issparse(adata.X) and adata.X.format == "csr"
    assert adata.shape == (1_200, 2_000) and adata.X.nnz == result.nnz
    assert 0.05 < result.density < 0.09  # asked for 0.07
    assert adata.X.data.min() >= 1 and np.all(adata.X.data == np.round(adata.X.data))
    assert adata.obs_names.is_unique and set(adata.obs["condition"]) == {"control", "stimulated"}


def test_planted_modules_are_recorded_and_recoverable(written):
    result, adata = written
    assert list(adata.uns["planted"]["differential_modules"]) == result.differential_modules
    genes_in_differential = {g for m in result.differential_modules for g in result.gene_sets[m]}
    assert set(adata.var_names[adata.var["planted_differential"]]) == genes_in_differential
    library = np.asarray(adata.X.sum(axis=1))
    normalised = sp.csr_matrix(adata.X.multiply(1e4 / library)).log1p()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    shift = np.asarray(normalised[stimulated].mean(0) - normalised[~stimulated].mean(0)).ravel()
    index = {gene: i for i, gene in enumerate(adata.var_names)}
    module_shift = {
        m: shift[[index[g] for g in genes]].mean() for m, genes in result.gene_sets.items()
    }
    ranked = sorted(module_shift, key=module_shift.get, reverse=True)
    assert set(ranked[: len(result.differential_modules)]) == set(result.differential_modules)
    sizes = [len(genes) for genes in result.gene_sets.values()]
    assert min(sizes) >= 5 and max(sizes) <= 200 and np.median(sizes) < np.mean(sizes)  # skewed


def test_nb_draws_have_the_negative_binomial_mean_and_variance():
    mean = np.full((400, 500), 2.0, dtype=np.float32)
    counts = _negative_binomial_sparse(np.random.default_rng(1), mean, dispersion=5.0)
    values = counts.toarray()
    assert values.mean() == pytest.approx(2.0, rel=0.02)
    assert values.var() == pytest.approx(2.0 + 2.0**2 / 5.0, rel=0.04)
    assert (values == 0).mean() == pytest.approx((5 / 7) ** 5, abs=0.005)


def test_peak_memory_stays_far_below_the_dense_matrix(tmp_path):
    n_cells, n_genes = 4_000, 3_000
    tracemalloc.start()
    write_module_dataset_h5ad(tmp_path / "big.h5ad", n_cells, n_genes, 40, chunk_cells=200)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.25 * n_cells * n_genes * 4  # float32 dense would be 48 MB


def test_density_outside_zero_one_is_refused(tmp_path):
    with pytest.raises(GenevaeInputError, match="density"):
        write_module_dataset_h5ad(tmp_path / "x.h5ad", 10, 200, 4, n_differential=1, density=1.5)
