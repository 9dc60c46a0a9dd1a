"""Metric registry and metric functions on planted data (exact values where they exist)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.analysis import metrics
from genevae.errors import GenevaeInputError


def test_registry_lists_every_family_and_refuses_unknown_names():
    families = {metric.family for metric in metrics.METRICS.values()}
    assert {"latent", "reconstruction", "ranking", "agreement", "perturbation", "grn"} <= families
    assert metrics.get_metric("silhouette").higher_is_better
    assert not metrics.get_metric("median_gene_mse").higher_is_better
    with pytest.raises(GenevaeInputError, match="Unknown metric 'silhoutte'.*silhouette"):
        metrics.get_metric("silhoutte")


def test_compute_metric_runs_local_metrics_and_refuses_external_ones():
    assert metrics.compute_metric("auroc", [0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(GenevaeInputError, match="computed by its model's pipeline"):
        metrics.compute_metric("centroid_accuracy", [1.0], [1.0])


def test_column_names_map_to_registered_base_names():
    name = metrics.base_metric_name("pearson_delta_vs_control_top20de_pooled_testcells")
    assert name == "pearson_delta_vs_control_topkde_pooled"
    assert (
        metrics.base_metric_name("pearson_delta_vs_perturbed_centroid_allgenes_allcells")
        == "pearson_delta_vs_perturbed_centroid_allgenes"
    )
    assert metrics.base_metric_name("grn_mean_wasserstein_top10") == "grn_mean_wasserstein"
    assert metrics.base_metric_name("jaccard_top50de_allcells") == "jaccard_topkde"
    assert metrics.base_metric_name("centroid_accuracy_testcells") == "centroid_accuracy"
    assert metrics.base_metric_name("made_up") is None
    table = metrics.metric_descriptions(["silhouette", "reference_auprc", "made_up"])
    assert table["metric"].tolist() == ["silhouette", "reference_auprc"]
    assert table["better"].tolist() == ["higher", "higher"]


def test_silhouette_matches_the_hand_computed_value():
    # a(i) = 1 within each pair; b(i) for (0, 0) = (10 + sqrt(101)) / 2, and by symmetry for all.
    latent = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    b = (10.0 + np.sqrt(101.0)) / 2
    assert metrics.silhouette(latent, ["a", "a", "b", "b"]) == pytest.approx(1 - 1 / b)


def test_silhouette_subsamples_large_inputs_reproducibly():
    rng = np.random.default_rng(0)
    latent = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(6, 1, (300, 3))])
    labels = ["a"] * 300 + ["b"] * 300
    full = metrics.silhouette(latent, labels, max_cells=None)
    sub = metrics.silhouette(latent, labels, max_cells=200, seed=1)
    assert sub == metrics.silhouette(latent, labels, max_cells=200, seed=1)
    assert sub == pytest.approx(full, abs=0.05)


def test_knn_accuracy_is_perfect_on_separated_clusters_and_chance_on_noise():
    rng = np.random.default_rng(0)
    clusters = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    labels = np.array(["a"] * 50 + ["b"] * 50)
    assert metrics.knn_accuracy(clusters, labels) == 1.0
    noise = rng.normal(0, 1, (400, 5))
    random_labels = rng.choice(["a", "b"], 400)
    assert metrics.knn_accuracy(noise, random_labels) == pytest.approx(0.5, abs=0.08)
    assert metrics.knn_chance(noise, ["a"] * 300 + ["b"] * 100) == 0.75


def test_knn_accuracy_shrinks_folds_and_k_for_a_handful_of_samples():
    # 12 bulk samples, 2 of one label: 2-fold CV with k = 6 (the training-fold size)
    latent = np.vstack([np.zeros((10, 2)), np.full((2, 2), 9.0)]) + np.arange(12)[:, None] * 0.01
    labels = ["BRCA"] * 10 + ["READ"] * 2
    assert metrics.knn_accuracy(latent, labels, k=15, n_folds=5) == pytest.approx(10 / 12)


def test_latent_scores_are_nan_where_the_data_cannot_support_them():
    obs = pd.DataFrame({"tissue": ["a"] * 6, "type": ["x", "x", "x", "y", "y", "z"]})
    table = metrics.latent_scores({"m": np.random.default_rng(0).normal(size=(6, 2))}, obs,
                                  ["tissue", "type"], k=3)  # fmt: skip
    single = table[table["subset"] == "tissue"]
    assert single["value"].isna().all()
    assert table[table["subset"] == "type"]["value"].notna().all()


def test_knn_accuracy_drops_labels_too_rare_to_stratify():
    rng = np.random.default_rng(1)
    latent = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2)), [[9.0, 9.0]]])
    labels = ["a"] * 20 + ["b"] * 20 + ["rare"]
    assert metrics.knn_accuracy(latent, labels, k=3) == 1.0


def test_latent_metrics_refuse_a_single_label_and_mismatched_lengths():
    with pytest.raises(GenevaeInputError, match="two distinct labels"):
        metrics.silhouette(np.zeros((4, 2)), ["a"] * 4)
    with pytest.raises(GenevaeInputError, match="one label per cell"):
        metrics.knn_accuracy(np.zeros((4, 2)), ["a", "b"])


def test_mean_profile_r2_is_one_for_a_scaled_copy_and_exact_otherwise():
    observed = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])  # mean profile (2, 3, 4)
    assert metrics.mean_profile_r2(observed, 2 * observed + 1) == pytest.approx(1.0)
    reconstructed = np.array([[2.0, 3.0, 3.0], [2.0, 3.0, 5.0]])  # mean (2, 3, 4) exactly
    assert metrics.mean_profile_r2(reconstructed, observed) == pytest.approx(1.0)
    shifted = observed + 1.0  # Pearson² ignores the offset, R² (1 − SSres/SStot) does not
    assert metrics.mean_profile_r2(observed, shifted) == pytest.approx(1.0)
    assert metrics.mean_profile_r2(
        observed, shifted, kind="coefficient_of_determination"
    ) == pytest.approx(1 - 3 / 2)


def test_gene_errors_and_their_median():
    observed = np.zeros((2, 3))
    reconstructed = np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(metrics.gene_squared_error(observed, reconstructed), [1, 0, 2])
    assert metrics.median_gene_mse(observed, reconstructed) == 1.0
    with pytest.raises(GenevaeInputError, match="one shape"):
        metrics.gene_squared_error(observed, reconstructed[:, :2])


def test_auroc_auprc_on_planted_truth():
    truth = [True, True, False, False, False]
    assert metrics.auroc([5, 4, 3, 2, 1], truth) == 1.0
    assert metrics.auroc([1, 2, 3, 4, 5], truth) == 0.0
    assert metrics.auroc([1, 1, 1, 1, 1], truth) == 0.5
    # ranks: positive, negative, positive → precision 1 at recall .5, 2/3 at recall 1
    assert metrics.auprc([3, 2, 1, 0, 0], [True, False, True, False, False]) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    with pytest.raises(GenevaeInputError, match="one positive and one negative"):
        metrics.auroc([1, 2], [True, True])


def test_recovery_scores_fill_items_a_method_did_not_score_with_its_minimum():
    items = ["m1", "m2", "m3", "m4"]
    scores = {
        "perfect": pd.Series([4.0, 3.0, 2.0, 1.0], index=items),
        "partial": pd.Series([5.0, 0.5], index=["m1", "m3"]),  # m2, m4 untested → 0.5
    }
    table = metrics.recovery_scores(scores, ["m1", "m2"], items).set_index("method")
    assert table.loc["perfect", "auroc"] == 1.0
    assert table.loc["partial", "auroc"] == pytest.approx(0.75)
    assert table.loc["perfect", "prevalence"] == 0.5


def test_spearman_jaccard_and_top_k_overlap():
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3, np.nan], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))
    assert metrics.call_jaccard([True, True, False], [True, False, True]) == pytest.approx(1 / 3)
    a = pd.Series([5, 4, 3, 2, 1], index=list("abcde"))
    b = pd.Series([5, 1, 4, 3, 2], index=list("abcde"))  # top-2: a, c
    assert metrics.top_k_overlap(a, b, k=2) == 0.5
    with pytest.raises(GenevaeInputError, match="k=9"):
        metrics.top_k_overlap(a, b, k=9)


def test_latent_scores_table_per_method_and_label():
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"cell_type": ["a"] * 30 + ["b"] * 30})
    latents = {
        "model": np.vstack([rng.normal(0, 0.1, (30, 2)), rng.normal(3, 0.1, (30, 2))]),
        "pca2": rng.normal(0, 1, (60, 2)),
    }
    table = metrics.latent_scores(latents, obs, ["cell_type"], k=5)
    wide = table.pivot_table(index="metric", columns="method", values="value")
    assert wide.loc["knn_accuracy", "model"] == 1.0
    assert wide.loc["knn_accuracy", "chance"] == 0.5
    assert wide.loc["silhouette", "model"] > 0.9 > wide.loc["silhouette", "pca2"]
    with pytest.raises(GenevaeInputError, match="lacks label columns"):
        metrics.latent_scores(latents, obs, ["batch"])


def test_reconstruction_scores_per_group_with_their_mean():
    observed = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    perfect_a_wrong_b = observed.copy()
    perfect_a_wrong_b[2:] = [[1.0, 2.0, 3.0]] * 2
    table = metrics.reconstruction_scores(
        observed, {"m": perfect_a_wrong_b}, {"type": ["a", "a", "b", "b"]}
    ).set_index("subset")
    r2 = table[table["metric"] == "mean_profile_r2"]["value"]
    assert r2["type=a"] == pytest.approx(1.0)
    assert r2["type=b"] == pytest.approx(1.0)  # (1, 2, 3) vs (3, 2, 1): Pearson −1, squared 1
    assert r2["mean over type"] == pytest.approx(1.0)
    assert set(table["family"]) == {"reconstruction"}
