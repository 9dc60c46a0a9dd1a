"""Training-free baselines: PCA latent/reconstruction and module-score tests on planted data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from genevae.analysis.baselines import (
    benjamini_hochberg,
    differential_module_scores,
    linear_perturbation_model,
    module_scores,
    pca_baseline,
)
from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic import make_module_dataset


def test_pca_reconstruction_is_exact_for_low_rank_data_and_accepts_sparse():
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 12)) + 5.0
    result = pca_baseline(sp.csr_matrix(low_rank), n_components=3)
    assert result.name == "pca3"
    assert result.latent.shape == (40, 3)
    np.testing.assert_allclose(result.reconstruction, low_rank, atol=1e-8)
    assert result.explained_variance_ratio.sum() == pytest.approx(1.0)


def test_pca_caps_components_at_the_data_rank_and_refuses_bad_shapes():
    assert pca_baseline(np.random.default_rng(0).normal(size=(5, 8)), 50).latent.shape == (5, 4)
    with pytest.raises(GenevaeInputError, match="cells × genes"):
        pca_baseline(np.zeros((1, 5)))


def test_benjamini_hochberg_matches_the_hand_computation_and_keeps_nan():
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, np.nan])
    # sorted p 0.01, 0.03, 0.04 with m = 3: 0.03, 0.045, 0.04 → monotone 0.03, 0.04, 0.04
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.04, 0.04])
    assert np.isnan(adjusted[3])


def test_welch_test_matches_scipy_and_reports_mean_differences():
    scores = pd.DataFrame({"up": [3.0, 3.5, 4.0, 0.0, 0.5, 1.0], "flat": [1, 2, 3, 1, 2, 3.0]})
    labels = ["s", "s", "s", "c", "c", "c"]
    table = differential_module_scores(scores, labels, "s", "c").set_index("module")
    expected = stats.ttest_ind([3.0, 3.5, 4.0], [0.0, 0.5, 1.0], equal_var=False)
    assert table.loc["up", "pval"] == pytest.approx(expected.pvalue)
    assert table.loc["up", "mean_diff"] == pytest.approx(3.0)
    assert table.loc["flat", "pval"] == pytest.approx(1.0)
    assert table.index[0] == "up"  # sorted by p-value
    rank_sum = differential_module_scores(scores, labels, "s", test="mannwhitney")
    assert set(rank_sum.columns) >= {"module", "statistic", "pval", "fdr", "neg_log10_fdr"}


def test_group_test_refuses_tiny_groups_and_unknown_tests():
    scores = pd.DataFrame({"m": [1.0, 2.0, 3.0]})
    with pytest.raises(GenevaeInputError, match="group1 has 1 cells"):
        differential_module_scores(scores, ["a", "b", "b"], "a", "b")
    with pytest.raises(GenevaeInputError, match="test='ttest'"):
        differential_module_scores(scores, ["a", "a", "b"], "a", test="ttest")


def test_module_scores_find_the_planted_stimulated_modules():
    data = make_module_dataset(
        n_cells=300, n_genes=200, n_modules=10, n_differential=2, genes_per_module=(8, 20), seed=0
    )
    scores = module_scores(data.adata, data.gene_sets, ctrl_size=20)
    assert list(scores.columns) == list(data.gene_sets)
    assert scores.index.equals(data.adata.obs_names)
    table = differential_module_scores(scores, data.adata.obs["condition"], "stimulated", "control")
    top = table.sort_values("statistic", ascending=False)["module"].head(2)
    assert set(top) == set(data.differential_modules)
    assert (table.set_index("module").loc[data.differential_modules, "fdr"] < 1e-10).all()


def test_module_scores_skip_absent_genes_and_refuse_disjoint_sets():
    adata = ad.AnnData(
        X=np.random.default_rng(0).poisson(2, (30, 60)).astype(np.float32),
        var=pd.DataFrame(index=[f"g{i}" for i in range(60)]),
    )
    scores = module_scores(adata, {"kept": ["g1", "g2", "absent"], "gone": ["x", "y"]})
    assert list(scores.columns) == ["kept"]
    with pytest.raises(GenevaeInputError, match="shares a gene"):
        module_scores(adata, {"gone": ["x", "y"]})


# --- linear perturbation model (Ahlmann-Eltze et al. 2025) -----------------------------------
def _pseudobulk(n_genes: int = 50, seed: int = 0) -> pd.DataFrame:
    """Control and five perturbations (of genes g0..g4), log-scale means over ``n_genes``."""
    rng = np.random.default_rng(seed)
    control = rng.normal(2.0, 1.0, n_genes)
    rows = [control] + [control + rng.normal(0.0, 1.0, n_genes) for _ in range(5)]
    return pd.DataFrame(
        np.vstack(rows),
        index=["ctrl", "g0", "g1", "g2", "g3", "g4"],
        columns=[f"g{i}" for i in range(n_genes)],
    )


def test_linear_model_fits_training_perturbations_and_embeds_by_gene():
    pseudobulk = _pseudobulk()
    pseudobulk["g10"] = pseudobulk["g0"]  # g10's profile over the conditions is g0's
    predicted = linear_perturbation_model(pseudobulk, "ctrl", ["g0", "g1", "g10"], ridge=1e-6)
    change = pseudobulk.loc[["g0", "g1"]] - pseudobulk.loc["ctrl"]
    for gene in ("g0", "g1"):  # d = 6 conditions: a near-exact fit of the training changes
        assert np.corrcoef(predicted.loc[gene], change.loc[gene])[0, 1] > 0.999
    # an unseen perturbation is predicted from its target's embedding: g10 is embedded as g0
    np.testing.assert_allclose(predicted.loc["g10"], predicted.loc["g0"], atol=1e-10)


def test_linear_model_predicts_the_mean_change_for_a_gene_with_zero_embedding():
    pseudobulk = _pseudobulk()
    pseudobulk["flat"] = pseudobulk.mean(axis=1)  # centred over genes: a zero row of G
    predicted = linear_perturbation_model(pseudobulk, "ctrl", ["flat"])
    mean_change = (pseudobulk - pseudobulk.loc["ctrl"]).mean(axis=0)  # b, control column 0
    np.testing.assert_allclose(predicted.loc["flat"], mean_change, atol=1e-10)


def test_linear_model_input_errors():
    pseudobulk = _pseudobulk()
    with pytest.raises(GenevaeInputError, match=r"\['NOPE'\] are not measured genes"):
        linear_perturbation_model(pseudobulk, "ctrl", ["NOPE"])
    with pytest.raises(GenevaeInputError, match="control_label 'nt'"):
        linear_perturbation_model(pseudobulk, "nt", ["g0"])
    with pytest.raises(GenevaeInputError, match="n_components=0"):
        linear_perturbation_model(pseudobulk, "ctrl", ["g0"], n_components=0)


def test_mean_module_scores_are_the_mean_log_expression_of_the_module_genes():
    x = np.array([[0.0, 1.0, 2.0, 4.0], [3.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(x), var=pd.DataFrame(index=["a", "b", "c", "d"]))
    sets = {"ab": ["a", "b", "b"], "bcd": ["b", "c", "d", "absent"]}
    scores = module_scores(adata, sets, method="mean")
    np.testing.assert_allclose(scores["ab"], [0.5, 1.5])  # duplicates count once
    np.testing.assert_allclose(scores["bcd"], [7 / 3, 1 / 3], rtol=1e-6)
    dense = module_scores(ad.AnnData(X=x, var=adata.var), sets, method="mean")
    np.testing.assert_allclose(dense.to_numpy(), scores.to_numpy(), rtol=1e-6)
    with pytest.raises(GenevaeInputError, match="method='median'"):
        module_scores(adata, sets, method="median")


def test_mean_module_score_bayes_factor_recovers_the_planted_modules():
    from genevae.analysis.bayes_factor import differential_activity

    data = make_module_dataset(
        n_cells=300, n_genes=200, n_modules=10, n_differential=2, genes_per_module=(8, 20), seed=0
    )
    scores = module_scores(data.adata, data.gene_sets, method="mean").to_numpy()
    table = differential_activity(
        lambda index: scores[index],
        data.adata.obs["condition"],
        "stimulated",
        "control",
        module_names=list(data.gene_sets),
        n_samples=1000,
        n_pairs=4000,
        mean_diff_threshold=0.0,
    )
    assert set(table["module"].head(2)) == set(data.differential_modules)
    assert (table.set_index("module").loc[data.differential_modules, "ln_bf"] > 3).all()
