"""Wilcoxon ranking + GSEA pre-rank find planted modules; the comparison table follows the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.analysis.gsea import (
    break_ties,
    compare_gsea_with_bayes_factors,
    run_prerank,
    wilcoxon_ranking,
)
from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic import make_module_dataset


@pytest.fixture(scope="module")
def synthetic():
    return make_module_dataset(n_cells=300, n_genes=200, n_modules=10, n_differential=2, seed=1)


def test_wilcoxon_ranking_puts_planted_genes_first_without_touching_adata(synthetic):
    adata = synthetic.adata
    before = set(adata.uns)
    ranking = wilcoxon_ranking(adata, "condition", "stimulated", "control")
    assert set(adata.uns) == before
    assert len(ranking) == adata.n_vars and ranking.is_monotonic_decreasing
    planted = {g for m in synthetic.differential_modules for g in synthetic.gene_sets[m]}
    top = set(ranking.index[: len(planted) // 2])
    assert len(top & planted) >= 0.9 * len(top)
    rest = wilcoxon_ranking(adata, "condition", "stimulated")
    assert np.corrcoef(rest.loc[ranking.index], ranking)[0, 1] > 0.999


def test_wilcoxon_ranking_errors_name_the_column_and_levels(synthetic):
    with pytest.raises(GenevaeInputError, match=r"no column 'batch'.*condition"):
        wilcoxon_ranking(synthetic.adata, "batch", "a")
    with pytest.raises(GenevaeInputError, match=r"group2='ctrl'.*\['control', 'stimulated'\]"):
        wilcoxon_ranking(synthetic.adata, "condition", "stimulated", "ctrl")


def test_prerank_finds_a_planted_enriched_set():
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(400)]
    ranking = pd.Series(rng.normal(size=400), index=genes)
    ranking.iloc[:25] += 3.0
    gene_sets = {
        "PLANTED": genes[:25],
        "NULL_A": genes[100:130],
        "NULL_B": genes[200:220],
        "TOO_SMALL": genes[300:303],
    }
    table = run_prerank(ranking, gene_sets, permutation_num=100, seed=0)
    assert list(table.columns) == ["module", "es", "nes", "pval", "fdr", "set_size", "lead_genes"]
    assert "TOO_SMALL" not in set(table["module"])
    best = table.iloc[0]
    assert best["module"] == "PLANTED" and best["nes"] > 0 and best["fdr"] < 0.05
    assert best["set_size"] == 25
    assert (table.loc[table["module"] != "PLANTED", "fdr"] > 0.25).all()
    pd.testing.assert_frame_equal(table, run_prerank(ranking, gene_sets, permutation_num=100))


def test_prerank_refuses_duplicates_and_empty_input():
    duplicated = pd.Series([1.0, 2.0], index=["A", "A"])
    with pytest.raises(GenevaeInputError, match="duplicate gene names"):
        run_prerank(duplicated, {"S": ["A"]})
    with pytest.raises(GenevaeInputError, match="empty"):
        run_prerank(pd.Series([np.nan], index=["A"]), {"S": ["A"]})


def test_comparison_maps_missing_fdr_to_one_and_zero_fdr_to_five():
    gsea = pd.DataFrame({"module": ["IFN", "TCR"], "fdr": [0.0, 0.2]})
    bf = pd.DataFrame(
        {
            "module": ["IFN", "TCR", "UNTESTED", "UNANNOTATED_0"],
            "ln_bf": [9.0, -1.0, 4.0, 12.0],
            "n_genes": [25, 40, 3, 5000],
        }
    )
    table = compare_gsea_with_bayes_factors(gsea, bf).set_index("module")
    assert "UNANNOTATED_0" not in table.index
    assert table.loc["IFN", "neg_log10_fdr"] == 5.0
    assert table.loc["UNTESTED", "fdr"] == 1.0 and table.loc["UNTESTED", "neg_log10_fdr"] == 0
    assert table.loc["TCR", "neg_log10_fdr"] == pytest.approx(-np.log10(0.2))
    assert table.loc["TCR", "abs_ln_bf"] == 1.0 and table.loc["IFN", "set_size"] == 25
    with pytest.raises(GenevaeInputError, match=r"bf_table lacks columns \['n_genes'\]"):
        compare_gsea_with_bayes_factors(gsea, bf.drop(columns="n_genes"))


def test_break_ties_orders_tied_genes_by_the_second_statistic_and_moves_nothing_else():
    scores = pd.Series([2.0, 1.0, 1.0, 1.0, 0.0, 0.0], index=list("abcdef"))
    logfc = pd.Series([0.1, 0.5, 3.0, -1.0, 0.0, 0.0], index=list("abcdef"))
    broken = break_ties(scores, logfc)
    assert list(broken.index) == ["a", "c", "b", "d", "e", "f"]  # ties: logFC, then name
    assert broken.is_unique and broken.is_monotonic_decreasing
    assert np.abs(broken.reindex(scores.index) - scores).max() < 1e-3  # spread < 1e-3 × gap


def test_sparse_ranking_reaches_prerank_without_duplicated_values(synthetic):
    """Genes seen in a few cells share Wilcoxon scores; the ranking fed to GSEA has none."""
    adata = synthetic.adata.copy()
    x = np.asarray(adata.X)
    x[:, 100:] = 0.0
    x[np.random.default_rng(0).integers(0, adata.n_obs, 100), np.arange(100, 200)] = 1.0
    adata.X = x
    raw = wilcoxon_ranking(adata, "condition", "stimulated", "control", tie_break=None)
    assert raw.duplicated().mean() > 0.3
    ranking = wilcoxon_ranking(adata, "condition", "stimulated", "control")
    assert ranking.is_unique and ranking.is_monotonic_decreasing
    assert set(ranking.index) == set(raw.index)


@pytest.mark.parametrize("group2", ["control", None])
def test_sparse_wilcoxon_matches_scanpy_without_densifying(synthetic, group2):
    import scipy.sparse as sp

    dense = synthetic.adata.copy()
    dense.X = np.asarray(dense.X)
    dense.X[:5, :3] = -0.5  # negative values rank below the zeros, as in scaled data
    sparse = dense.copy()
    sparse.X = sp.csr_matrix(dense.X)
    from_scanpy = wilcoxon_ranking(dense, "condition", "stimulated", group2, tie_break=None)
    from_sparse = wilcoxon_ranking(sparse, "condition", "stimulated", group2, tie_break=None)
    np.testing.assert_allclose(
        from_sparse.reindex(from_scanpy.index).to_numpy(), from_scanpy.to_numpy(), rtol=1e-5
    )
    broken = wilcoxon_ranking(sparse, "condition", "stimulated", group2)
    assert list(broken.index) == list(
        wilcoxon_ranking(dense, "condition", "stimulated", group2).index
    )
