"""ATE evaluation: exact values on hand-made matrices, baselines, noise ceiling, model side."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from genevae.analysis.perturbation import (
    ate_metrics,
    centroid_accuracy,
    control_mean_baseline,
    evaluate_perturbation_prediction,
    observed_ate,
    perturbed_centroid_ate,
    predicted_ate,
    score_ate_predictions,
    split_half_noise_ceiling,
    training_mean_baseline,
)
from genevae.errors import GenevaeInputError
from genevae.models.gpo_vae import GPOVAE
from tests.conftest import requires_shared_data

GENES = ["g0", "g1", "g2", "g3"]
OBSERVED = pd.DataFrame(
    [[1.0, -2.0, 3.0, 0.0], [0.5, 0.0, -1.0, 2.0]], index=["A", "B"], columns=GENES
)
PREDICTED = pd.DataFrame(
    [[0.0, 1.0, 5.0, 4.0], [1.0, 2.0, 0.1, 3.0]], index=["A", "B"], columns=GENES
)


def test_observed_ate_by_hand_dense_and_sparse():
    counts = np.array([[1.0, 3.0], [2.0, 2.0], [4.0, 0.0], [0.0, 4.0]])
    labels = ["ctrl", "ctrl", "A", "A"]
    # every cell already totals 4, so target_sum=4 leaves counts unchanged before log2(1 + x)
    control = np.array([(1 + math.log2(3)) / 2, (2 + math.log2(3)) / 2])
    expected = np.array([[math.log2(5) / 2, math.log2(5) / 2]]) - control
    for matrix in (counts, sp.csr_matrix(counts)):
        effects = observed_ate(matrix, labels, "ctrl", target_sum=4, gene_names=["x", "y"])
        assert list(effects.index) == ["A"] and list(effects.columns) == ["x", "y"]
        np.testing.assert_allclose(effects.to_numpy(), expected)


def test_ate_metrics_exact_values():
    metrics = ate_metrics(OBSERVED, PREDICTED, top_k=(2,))
    obs, pred = OBSERVED.to_numpy().ravel(), PREDICTED.to_numpy().ravel()
    assert metrics["pearson_delta_vs_control_allgenes_pooled"] == pytest.approx(
        pearsonr(obs, pred)[0]
    )
    assert metrics["r2_delta_vs_control_allgenes_pooled"] == pytest.approx(r2_score(obs, pred))
    # top-2 |observed| genes: A → g2, g1; B → g3, g2
    obs_top, pred_top = np.array([3.0, -2.0, 2.0, -1.0]), np.array([5.0, 1.0, 3.0, 0.1])
    assert metrics["pearson_delta_vs_control_top2de_pooled"] == pytest.approx(
        pearsonr(obs_top, pred_top)[0]
    )
    assert metrics["r2_delta_vs_control_top2de_pooled"] == pytest.approx(
        r2_score(obs_top, pred_top)
    )
    # predicted top-2: A → {g2, g3} vs {g1, g2}: 1/3; B → {g3, g1} vs {g3, g2}: 1/3
    assert metrics["jaccard_top2de"] == pytest.approx(1 / 3)
    per_row = [pearsonr(OBSERVED.loc[p], PREDICTED.loc[p])[0] for p in "AB"]
    assert metrics["pearson_delta_vs_control_allgenes"] == pytest.approx(np.mean(per_row))
    top_rows = [pearsonr([3.0, -2.0], [5.0, 1.0])[0], pearsonr([2.0, -1.0], [3.0, 0.1])[0]]
    assert metrics["pearson_delta_vs_control_top2de"] == pytest.approx(np.mean(top_rows))
    # A's prediction is 5.5 from A's truth and 6.4 from B's; B's 2.5 from B's and 5.8 from A's
    assert metrics["centroid_accuracy"] == 1.0


def test_ate_metrics_perfect_prediction_and_alignment_by_label():
    shuffled = OBSERVED.loc[["B", "A"], ["g3", "g1", "g0", "g2"]]
    metrics = ate_metrics(OBSERVED, shuffled, top_k=(1, 2))
    for name in (
        "pearson_delta_vs_control_allgenes_pooled",
        "r2_delta_vs_control_allgenes_pooled",
        "pearson_delta_vs_control_top2de_pooled",
        "jaccard_top1de",
        "jaccard_top2de",
    ):
        assert metrics[name] == pytest.approx(1.0), name
    assert set(metrics) == {
        "pearson_delta_vs_control_allgenes_pooled",
        "r2_delta_vs_control_allgenes_pooled",
        "pearson_delta_vs_control_allgenes",
        "pearson_delta_vs_control_top1de_pooled",
        "r2_delta_vs_control_top1de_pooled",
        "pearson_delta_vs_control_top1de",
        "jaccard_top1de",
        "pearson_delta_vs_control_top2de_pooled",
        "r2_delta_vs_control_top2de_pooled",
        "pearson_delta_vs_control_top2de",
        "jaccard_top2de",
        "centroid_accuracy",
    }
    assert metrics["centroid_accuracy"] == 1.0


def test_centroid_accuracy_is_the_share_of_other_truths_farther_than_its_own():
    truth = pd.DataFrame([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], index=list("ABC"))
    assert centroid_accuracy(truth, truth) == 1.0
    # A predicted at B's truth: B is nearer (0 < 2), C farther (2.8 > 2): 1/2; B and C exact
    swapped = truth.copy()
    swapped.loc["A"] = [2.0, 0.0]
    assert centroid_accuracy(truth, swapped) == pytest.approx((0.5 + 1 + 1) / 3)
    # one prediction for all: only its nearest truth's perturbation scores (here A: 2/2)
    constant = pd.DataFrame(np.zeros((3, 2)), index=list("ABC"))
    assert centroid_accuracy(truth, constant) == pytest.approx((1 + 0 + 0) / 3)
    with pytest.raises(GenevaeInputError, match="at least 2 perturbations"):
        centroid_accuracy(truth.iloc[:1], truth.iloc[:1])


def _shifted_screen(n_perturbations: int = 200, n_genes: int = 300, seed: int = 0):
    """Observed ATEs = a strong shift shared by all perturbations + a weaker specific effect;
    training ATEs are the same plus measurement noise. Returns (truth, training, shift)."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(0.0, 2.0, n_genes)
    specific = rng.normal(0.0, 0.5, (n_perturbations, n_genes))
    index = pd.Index([f"P{i}" for i in range(n_perturbations)])
    truth = pd.DataFrame(shift + specific, index=index)
    training = truth + rng.normal(0.0, 0.1, truth.shape)
    return truth, training, shift


def test_systema_metrics_see_through_the_systematic_shift():
    truth, training, shift = _shifted_screen()
    centroid = perturbed_centroid_ate(training)
    shift_only = pd.DataFrame(np.tile(shift, (len(truth), 1)), index=truth.index)
    scores = ate_metrics(truth, shift_only, top_k=(20,), perturbed_centroid=centroid)
    assert scores["pearson_delta_vs_control_allgenes"] > 0.9  # the shift dominates Δ
    assert abs(scores["pearson_delta_vs_perturbed_centroid_allgenes"]) < 0.15
    assert abs(scores["pearson_delta_vs_perturbed_centroid_top20de"]) < 0.15
    perfect = ate_metrics(truth, truth, top_k=(20,), perturbed_centroid=centroid)
    for name in (
        "pearson_delta_vs_control_allgenes",
        "pearson_delta_vs_perturbed_centroid_allgenes",
        "pearson_delta_vs_perturbed_centroid_top20de",
        "centroid_accuracy",
    ):
        assert perfect[name] == pytest.approx(1.0), name
    # Systema's perturbed-mean baseline is the centroid itself: undefined against it
    mean_baseline = pd.DataFrame(np.tile(centroid, (len(truth), 1)), index=truth.index)
    pooled = ate_metrics(truth, mean_baseline, top_k=(20,), perturbed_centroid=centroid)
    assert math.isnan(pooled["pearson_delta_vs_perturbed_centroid_allgenes"])
    assert pooled["pearson_delta_vs_control_allgenes_pooled"] > 0.9


def test_control_mean_baseline_scores_nan_where_undefined():
    zero = control_mean_baseline(OBSERVED)
    assert (zero.to_numpy() == 0).all()
    metrics = ate_metrics(OBSERVED, zero, top_k=(2,))
    assert math.isnan(metrics["pearson_delta_vs_control_allgenes_pooled"]) and math.isnan(
        metrics["jaccard_top2de"]
    )
    obs = OBSERVED.to_numpy().ravel()
    assert metrics["r2_delta_vs_control_allgenes_pooled"] == pytest.approx(
        1 - (obs**2).sum() / ((obs - obs.mean()) ** 2).sum()
    )


def test_metrics_reject_mismatched_tables_and_large_k():
    with pytest.raises(GenevaeInputError, match="different perturbations"):
        ate_metrics(OBSERVED, PREDICTED.rename(index={"B": "C"}))
    with pytest.raises(GenevaeInputError, match="top_k value 20"):
        ate_metrics(OBSERVED, PREDICTED)


def _duplicated_screen(n_copies: int = 10, n_genes: int = 60, seed: int = 0):
    """Each group's cells are identical copies of one random count profile (no noise)."""
    rng = np.random.default_rng(seed)
    profiles = rng.poisson(20, size=(4, n_genes)).astype(float)
    labels = np.repeat(["ctrl", "A", "B", "C"], n_copies)
    return np.repeat(profiles, n_copies, axis=0), labels


def test_noise_ceiling_is_one_on_noiseless_duplicated_data():
    counts, labels = _duplicated_screen()
    metrics = split_half_noise_ceiling(counts, labels, "ctrl", seed=3)
    for name in (
        "pearson_delta_vs_control_allgenes_pooled",
        "r2_delta_vs_control_allgenes_pooled",
        "pearson_delta_vs_control_top20de_pooled",
        "jaccard_top20de",
        "jaccard_top50de",
    ):
        assert metrics[name] == pytest.approx(1.0), name


def test_noise_ceiling_drops_with_noise_and_needs_two_cells():
    rng = np.random.default_rng(0)
    counts, labels = _duplicated_screen(n_copies=40)
    noisy = rng.poisson(counts)
    assert (
        split_half_noise_ceiling(noisy, labels, "ctrl")["pearson_delta_vs_control_allgenes_pooled"]
        < 0.99
    )
    with pytest.raises(GenevaeInputError, match="at least 2 cells"):
        split_half_noise_ceiling(counts[:41], labels[:41], "ctrl")


def test_centroid_accuracy_equals_the_broadcast_distances_on_random_profiles():
    rng = np.random.default_rng(1)
    observed = pd.DataFrame(rng.normal(size=(30, 12)), index=[f"p{i}" for i in range(30)])
    predicted = observed + rng.normal(scale=0.8, size=observed.shape)
    obs, pred = observed.to_numpy(), predicted.to_numpy()
    distances = np.sqrt(((pred[:, None, :] - obs[None, :, :]) ** 2).sum(axis=-1))
    expected = np.mean((distances > np.diag(distances)[:, None]).sum(axis=1) / 29)
    assert 0.5 < expected < 1.0
    assert centroid_accuracy(observed, predicted) == pytest.approx(expected)


def test_noise_ceiling_halves_are_the_per_label_permutations_in_sorted_label_order():
    rng = np.random.default_rng(2)
    labels = rng.choice(["ctrl", "B", "A", "C"], size=60)
    counts = rng.poisson(3.0, size=(60, 5)).astype(float)
    draw = np.random.default_rng(7)
    halves = ([], [])
    for label in np.unique(labels):
        members = draw.permutation(np.flatnonzero(labels == label))
        halves[0].append(members[: len(members) // 2])
        halves[1].append(members[len(members) // 2 :])
    rows = [np.sort(np.concatenate(half)) for half in halves]
    effects = [observed_ate(counts[r], labels[r], "ctrl") for r in rows]
    expected = ate_metrics(effects[0], effects[1], (2, 3))
    assert split_half_noise_ceiling(counts, labels, "ctrl", seed=7, top_k=(2, 3)) == expected


def test_training_mean_baselines():
    counts, labels = _duplicated_screen()
    per_perturbation = training_mean_baseline(counts, labels, "ctrl")
    pd.testing.assert_frame_equal(per_perturbation, observed_ate(counts, labels, "ctrl"))
    pooled = training_mean_baseline(counts, labels, "ctrl", pooled=True)
    np.testing.assert_allclose(pooled.to_numpy(), np.tile(per_perturbation.mean(0), (3, 1)))


class ShiftSampler:
    """Deterministic 'model': base counts plus dosage @ effects, identical across particles."""

    def __init__(self, base: np.ndarray, effects: np.ndarray) -> None:
        self.base, self.effects = torch.tensor(base), torch.tensor(effects)
        self.calls: list[int] = []

    def sample_counts(self, dosage, n_particles, library_size, generator):
        self.calls.append(n_particles)
        counts = self.base + dosage.double() @ self.effects
        return counts.expand(n_particles, -1, -1)


def test_predicted_ate_applies_the_perturbseq_transform_to_samples():
    base = np.array([10.0, 30.0, 60.0])
    effects = np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 100.0]])
    sampler = ShiftSampler(base, effects)
    dosage = pd.DataFrame(np.eye(2), index=["P0", "P1"], columns=["n0", "n1"])
    result = predicted_ate(
        sampler, dosage, ["a", "b", "c"], n_particles=250, particles_per_batch=100
    )
    assert sampler.calls == [100, 100, 50]

    def transform(row):
        return np.log2(1 + 1e4 * row / row.sum())

    expected = np.stack([transform(base + e) - transform(base) for e in effects])
    np.testing.assert_allclose(result.to_numpy(), expected)
    assert list(result.index) == ["P0", "P1"]
    with pytest.raises(GenevaeInputError, match="all zero"):
        predicted_ate(sampler, pd.DataFrame([[0.0, 0.0]], index=["ctrl"]), ["a", "b", "c"])


def test_predicted_ate_from_a_gpo_vae_is_reproducible():
    torch.manual_seed(0)
    model = GPOVAE(
        n_genes=12,
        n_nodes=3,
        n_latent=4,
        decoder_hidden=16,
        basal_encoder_hidden=16,
        embedding_encoder_hidden=16,
        embedding_encoder_layers=1,
    )
    dosage = pd.DataFrame(np.eye(3), index=["X", "Y", "Z"])
    genes = [f"g{i}" for i in range(12)]
    first = predicted_ate(model, dosage, genes, n_particles=20, seed=4)
    second = predicted_ate(model, dosage, genes, n_particles=20, seed=4)
    assert first.shape == (3, 12) and np.isfinite(first.to_numpy()).all()
    pd.testing.assert_frame_equal(first, second)


def test_evaluate_perturbation_prediction_reports_model_and_baselines():
    rng = np.random.default_rng(1)
    profiles = rng.poisson(20, size=(3, 40)).astype(float)
    labels = np.repeat(["ctrl", "A", "B"], 40)
    counts = rng.poisson(np.repeat(profiles, 40, axis=0))
    split = np.where(np.arange(len(labels)) % 5 == 0, "test", "train")
    dosage = pd.DataFrame(np.eye(2), index=["A", "B"], columns=["A", "B"])
    oracle = ShiftSampler(profiles[0], profiles[1:] - profiles[0])
    report = evaluate_perturbation_prediction(
        oracle, counts, labels, "ctrl", split, dosage, top_k=(5,), n_particles=2
    )
    assert list(report.index) == [
        "model",
        "control_mean",
        "pooled_training_mean",
        "training_mean",
        "split_half_ceiling",
    ]
    assert report.loc["model", "pearson_delta_vs_control_allgenes_pooled"] > 0.9
    assert math.isnan(report.loc["control_mean", "pearson_delta_vs_control_allgenes_pooled"])
    leaky = evaluate_perturbation_prediction(
        oracle, counts, labels, "ctrl", split, dosage, top_k=(5,), n_particles=2, reference="all"
    )
    assert (
        leaky.loc["training_mean", "pearson_delta_vs_control_allgenes_pooled"]
        > report.loc["training_mean", "pearson_delta_vs_control_allgenes_pooled"]
    )
    with pytest.raises(GenevaeInputError, match=r"\['B'\] have cells but no row"):
        evaluate_perturbation_prediction(oracle, counts, labels, "ctrl", split, dosage.loc[["A"]])


def test_observed_ate_input_errors():
    counts, labels = _duplicated_screen()
    with pytest.raises(GenevaeInputError, match="control_label 'nt'"):
        observed_ate(counts, labels, "nt")
    with pytest.raises(GenevaeInputError, match="perturbation_labels has 3 entries"):
        observed_ate(counts, labels[:3], "ctrl")


@requires_shared_data
def test_adamson_knockdowns_lower_their_own_gene(shared_data):
    """Real CRISPRi cells: the strongest guides knock their own target down (negative ATE)."""
    import anndata as ad

    adata = ad.read_h5ad(shared_data / "perturbseq" / "adamson2016_pilot_upr_360x1000.h5ad")
    labels = adata.obs["guide_gene"].astype(str).to_numpy()
    effects = observed_ate(adata.X, labels, "non-targeting", gene_names=list(adata.var_names))
    assert list(effects.index) == ["BHLHE40", "EP300", "SNAI1", "SPI1", "ZNF326"]
    for gene in ("BHLHE40", "SPI1", "ZNF326"):
        assert effects.loc[gene, gene] < -0.25, gene
    assert effects.loc["ZNF326"].abs().rank(ascending=False)["ZNF326"] <= 5
    ceiling = split_half_noise_ceiling(adata.X, labels, "non-targeting", seed=0)
    # the reproducible signal sits in each perturbation's top genes, not in all 1,000
    assert (
        ceiling["pearson_delta_vs_control_top20de_pooled"]
        > ceiling["pearson_delta_vs_control_allgenes_pooled"] + 0.2
    )


def test_score_ate_predictions_fills_unseen_perturbations_with_the_pooled_mean():
    rng = np.random.default_rng(2)
    profiles = rng.poisson(20, size=(3, 30)).astype(float)
    labels = np.repeat(["ctrl", "A", "B"], 40)
    counts = rng.poisson(np.repeat(profiles, 40, axis=0))
    split = np.where(np.arange(len(labels)) % 4 == 0, "test", "train")
    split[labels == "B"] = "test"  # B is held out: no training cells
    observed = observed_ate(counts[split == "test"], labels[split == "test"], "ctrl")
    extra = observed.iloc[:1].rename(index={"A": "C"})  # rows outside the reference are dropped
    predictions = {"oracle": pd.concat([observed, extra])}
    with pytest.raises(GenevaeInputError, match=r"\['B'\] have no training cells"):
        score_ate_predictions(predictions, counts, labels, "ctrl", split, top_k=(5,))
    table = score_ate_predictions(
        predictions, counts, labels, "ctrl", split, top_k=(5,), unseen="pooled"
    )
    assert table.loc["oracle", "pearson_delta_vs_control_allgenes_pooled"] == pytest.approx(1.0)
    # with one seen perturbation the pooled mean is A's training mean, used for B too
    pooled = table.loc["pooled_training_mean"].drop("jaccard_top5de")
    per_perturbation = table.loc["training_mean"].drop("jaccard_top5de")
    pd.testing.assert_series_equal(pooled, per_perturbation, check_names=False)
    assert "split_half_ceiling" in table.index
    bare = score_ate_predictions(
        predictions, counts, labels, "ctrl", split, top_k=(5,), baselines=False
    )
    assert list(bare.index) == ["oracle"]
