"""The analytic Bayes-factor estimator: exact where it can be checked by hand, the sampling
estimator's expectation on planted Gaussians, and free of its Monte-Carlo noise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from genevae.analysis.bayes_factor import (
    GaussianEncoder,
    analytic_bayes_factor,
    differential_activity,
    latent_sampler,
)
from genevae.errors import GenevaeInputError
from tests.analysis.test_bayes_factor_sampler import _GaussianModel


def test_two_pairs_by_hand():
    """σa = 0.6, σb = 0.8: each difference has SD 1, so every probability is a Φ of d."""
    group1 = (np.array([[1.0], [2.0]]), np.array([[0.6], [0.6]]))
    group2 = (np.array([[0.0]]), np.array([[0.8]]))
    p_h1 = (norm.cdf(1.0) + norm.cdf(2.0)) / 2
    vanilla = analytic_bayes_factor(group1, group2)
    np.testing.assert_allclose(vanilla["p_h1"], [p_h1])
    np.testing.assert_allclose(vanilla["p_h2"], [1 - p_h1])
    np.testing.assert_allclose(vanilla["ln_bf"], [np.log(p_h1 / (1 - p_h1))], rtol=1e-9)
    np.testing.assert_allclose(vanilla["mean_diff"], [1.5])
    # pooled SD of one draw per cell: Var μ + E σ² = 0.25 + 0.36 and 0 + 0.64
    np.testing.assert_allclose(vanilla["effect_size"], [1.5 / np.sqrt((0.61 + 0.64) / 2)])
    # P(|N(1, 1)| > 1) = ½ + Φ(−2); P(|N(2, 1)| > 1) = Φ(1) + Φ(−3)
    p_da = (0.5 + norm.cdf(-2.0) + norm.cdf(1.0) + norm.cdf(-3.0)) / 2
    change = analytic_bayes_factor(group1, group2, mode="change", delta=1.0)
    np.testing.assert_allclose(change["p_da"], [p_da])
    np.testing.assert_allclose(change["ln_bf"], [np.log(p_da / (1 - p_da))], rtol=1e-9)
    np.testing.assert_allclose(change["p_h1"], [p_h1])


def test_point_values_give_the_exact_fraction_of_pairs_ties_half():
    """σ = 0: 0 < 1 (against), 1 = 1 (a tie, half), 2 > 1 and 3 > 1 (for): p = 2.5 / 4."""
    values1 = np.array([[0.0], [1.0], [2.0], [3.0]])
    stats = analytic_bayes_factor(
        (values1, np.zeros_like(values1)), (np.ones((1, 1)), np.zeros((1, 1)))
    )
    np.testing.assert_allclose(stats["p_h1"], [0.625])
    np.testing.assert_allclose(stats["p_h2"], [0.375])


def test_far_tail_is_computed_not_lost_to_one_minus_p():
    """d = 6 SD: p(H2) = Φ(−6) ≈ 1e-9, which 1 − Φ(6) would round; ln BF is exact to 1e-6."""
    stats = analytic_bayes_factor(
        (np.array([[6.0]]), np.ones((1, 1))), (np.zeros((1, 1)), np.zeros((1, 1)))
    )
    assert stats["p_h2"][0] == pytest.approx(norm.cdf(-6.0), rel=1e-9)
    assert stats["ln_bf"][0] == pytest.approx(-np.log(norm.cdf(-6.0) + 1e-12), rel=1e-6)


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 + 200 cells, posterior SD 0.4–1.2; module 0 up by 1.5 in "stim", 1 down by 0.3."""
    rng = np.random.default_rng(seed)
    labels = np.array(["stim", "ctrl"] * 200)
    mean = rng.normal(size=(400, 4))
    mean[labels == "stim", 0] += 1.5
    mean[labels == "stim", 1] -= 0.3
    return mean, rng.uniform(0.4, 1.2, size=(400, 4)), labels


def _encoder(mean: np.ndarray, sd: np.ndarray, seed: int = 0) -> GaussianEncoder:
    def sample(indices):
        noise = np.random.default_rng(seed).standard_normal((len(indices), mean.shape[1]))
        return mean[indices] + sd[indices] * noise

    return GaussianEncoder(sample, lambda indices: (mean[indices], sd[indices]))


def test_sampling_estimator_averages_to_the_analytic_value_with_more_spread():
    mean, sd, labels = _planted()
    analytic = differential_activity(_encoder(mean, sd), labels, "stim", "ctrl")
    runs = [
        differential_activity(
            _encoder(mean, sd, seed), labels, "stim", "ctrl", estimator="sampling", seed=seed
        ).set_index("module")
        for seed in range(30)
    ]
    sampled = np.stack([run.loc[analytic["module"], "p_h1"].to_numpy() for run in runs])
    # the sampling estimate is unbiased: its mean over 30 seeds sits within 4 standard errors
    standard_error = sampled.std(axis=0, ddof=1) / np.sqrt(len(runs))
    np.testing.assert_array_less(
        np.abs(sampled.mean(axis=0) - analytic["p_h1"]), 4 * standard_error
    )
    assert sampled.std(axis=0).min() > 1e-3  # it does move between seeds
    # the analytic one over random pairs (above max_pairs) moves less; over all pairs, not at all
    subsampled = np.stack(
        [
            differential_activity(
                _encoder(mean, sd), labels, "stim", "ctrl", max_pairs=10_000, seed=seed
            )
            .set_index("module")
            .loc[analytic["module"], "p_h1"]
            for seed in range(30)
        ]
    )
    assert (subsampled.std(axis=0) < 0.5 * sampled.std(axis=0)).all()
    np.testing.assert_allclose(subsampled.mean(axis=0), analytic["p_h1"], atol=4e-3)
    assert analytic.iloc[0]["module"] == "module_0" and analytic.iloc[0]["ln_bf"] > 1


def test_latent_sampler_gives_the_model_posterior_moments():
    x = sp.csr_matrix(np.random.default_rng(0).random((6, 5), dtype=np.float32))
    model = _GaussianModel()
    encoder = latent_sampler(model, x, chunk_size=4)
    assert isinstance(encoder, GaussianEncoder)
    mean, sd = encoder.moments(np.array([4, 1, 4]))
    dense = x.toarray()
    np.testing.assert_allclose(mean, dense[[4, 1, 4]] @ model.mean.detach().numpy(), rtol=1e-5)
    expected_sd = np.exp(0.5 * dense[[4, 1, 4]] @ model.logvar.detach().numpy())
    np.testing.assert_allclose(sd, expected_sd, rtol=1e-5)
    assert model.rows_encoded == 2  # each distinct cell once


@pytest.mark.parametrize(
    ("posterior1", "posterior2", "message"),
    [
        ((np.zeros((2, 3)), np.ones((2, 2))), (np.zeros((1, 3)), np.ones((1, 3))), "equal shape"),
        ((np.zeros((0, 3)), np.ones((0, 3))), (np.zeros((1, 3)), np.ones((1, 3))), "at least one"),
        ((np.zeros((2, 3)), -np.ones((2, 3))), (np.zeros((1, 3)), np.ones((1, 3))), "negative SD"),
        (
            (np.full((2, 3), np.nan), np.ones((2, 3))),
            (np.zeros((1, 3)), np.ones((1, 3))),
            "non-finite",
        ),
        (
            (np.zeros((2, 3)), np.ones((2, 3))),
            (np.zeros((1, 2)), np.ones((1, 2))),
            "3 and 2 modules",
        ),
    ],
)
def test_bad_posteriors_are_refused(posterior1, posterior2, message):
    with pytest.raises(GenevaeInputError, match=message):
        analytic_bayes_factor(posterior1, posterior2)


def test_random_pairs_need_a_generator_and_bad_settings_are_refused():
    posterior = (np.zeros((20, 2)), np.ones((20, 2)))
    with pytest.raises(GenevaeInputError, match="pass rng"):
        analytic_bayes_factor(posterior, posterior, max_pairs=100)
    with pytest.raises(GenevaeInputError, match="max_pairs=1.5"):
        analytic_bayes_factor(posterior, posterior, max_pairs=1.5)
    with pytest.raises(GenevaeInputError, match="mode='median'"):
        analytic_bayes_factor(posterior, posterior, mode="median")


def test_saturated_modules_are_ordered_by_standardised_effect_not_latent_units():
    """Both modules separate every pair (ln BF at the cap); module_0 moves 50 units at SD 0.1
    (d = 500), module_1 moves 100 units at SD 5 (d = 20): module_0 comes first."""
    rng = np.random.default_rng(0)
    labels = np.array(["stim", "ctrl"] * 100)
    mean = np.column_stack([rng.normal(scale=0.1, size=200), rng.normal(scale=5.0, size=200)])
    mean[labels == "stim"] += [50.0, 100.0]
    table = differential_activity(_encoder(mean, np.zeros_like(mean)), labels, "stim", "ctrl")
    assert table["ln_bf"].nunique() == 1  # both saturated
    assert table["module"].tolist() == ["module_0", "module_1"]
    assert table["mean_diff"].iloc[0] < table["mean_diff"].iloc[1]
    assert table["effect_size"].iloc[0] > 100 > table["effect_size"].iloc[1] > 10


def test_analytic_estimator_encodes_at_most_n_samples_cells_per_group():
    mean, sd, labels = _planted()
    encoded: list[np.ndarray] = []

    def moments(indices):
        encoded.append(np.asarray(indices))
        return mean[indices], sd[indices]

    encoder = GaussianEncoder(lambda indices: mean[indices], moments)
    bounded = differential_activity(encoder, labels, "stim", "ctrl", n_samples=50, seed=3)
    (cells,) = encoded
    assert len(cells) == 100 and len(np.unique(cells)) == 100  # 50 per group, no repeats
    assert (labels[cells[:50]] == "stim").all() and (labels[cells[50:]] == "ctrl").all()
    # the subsample estimates the same probabilities as all 200 + 200 cells
    full = differential_activity(_encoder(mean, sd), labels, "stim", "ctrl").set_index("module")
    np.testing.assert_allclose(
        bounded.set_index("module").loc[full.index, "p_h1"], full["p_h1"], atol=0.12
    )
    assert bounded.iloc[0]["module"] == "module_0"
