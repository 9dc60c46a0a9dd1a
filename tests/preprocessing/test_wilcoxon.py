"""The linear-time Wilcoxon test against a reference gives scanpy's rank_genes_groups result."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic import make_perturbseq_from_grn
from genevae.preprocessing.wilcoxon import rank_genes_vs_reference

CONTROL = "non-targeting"


@pytest.fixture(scope="module")
def screen() -> ad.AnnData:
    counts = make_perturbseq_from_grn(
        n_cells_per_group=40,
        n_genes=150,
        n_regulators=7,
        n_targets_per_regulator=3,
        n_control_cells=90,
        library_scale=0.3,
        chunk_cells=64,
        seed=1,
    ).adata
    adata = ad.AnnData(sp.csr_matrix(counts.X), obs=counts.obs, var=counts.var)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _scanpy(adata: ad.AnnData, n_genes: int, rank_by_abs: bool) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(
            adata,
            "perturbation",
            reference=CONTROL,
            method="wilcoxon",
            n_genes=n_genes,
            rankby_abs=rank_by_abs,
        )
    return sc.get.rank_genes_groups_df(adata, group=None)


@pytest.mark.parametrize(("n_genes", "rank_by_abs"), [(150, False), (20, True)])
def test_rank_genes_vs_reference_equals_scanpy(screen, n_genes, rank_by_abs):
    expected = _scanpy(screen, n_genes, rank_by_abs)
    labels = screen.obs["perturbation"].astype(str).to_numpy()
    got = rank_genes_vs_reference(screen.X, labels, CONTROL, screen.var_names, n_genes, rank_by_abs)
    assert list(got["group"]) == list(expected["group"].astype(str))
    merged = expected.merge(got, on=["group", "names"], suffixes=("_scanpy", ""))
    assert len(merged) == len(expected) == len(got)  # the same top genes per group
    for column in ("scores", "logfoldchanges"):  # scanpy stores float32
        np.testing.assert_allclose(merged[column], merged[f"{column}_scanpy"], rtol=1e-5, atol=1e-5)
    for column in ("pvals", "pvals_adj"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_scanpy"], rtol=1e-6)
    if rank_by_abs:  # the planted signal: each regulator's own gene changes most
        first = got.groupby("group").head(1).set_index("group")["names"]
        assert (first.index == first.to_numpy()).mean() >= 6 / 7


def test_dense_input_and_unknown_reference():
    rng = np.random.default_rng(0)
    matrix = rng.poisson(1.0, size=(40, 5)).astype(float)
    labels = np.repeat(["a", "ctrl"], 20)
    sparse = rank_genes_vs_reference(sp.csr_matrix(matrix), labels, "ctrl", list("vwxyz"), None)
    dense = rank_genes_vs_reference(matrix, labels, "ctrl", list("vwxyz"), None)
    pd.testing.assert_frame_equal(sparse, dense)
    with pytest.raises(GenevaeInputError, match="reference='b'"):
        rank_genes_vs_reference(matrix, labels, "b", list("vwxyz"))
