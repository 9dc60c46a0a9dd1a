"""Bayes-factor differential activity on hand-made latents with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from genevae.analysis.bayes_factor import (
    bayes_factor_from_latents,
    differential_activity,
    fdr_controlled_calls,
    latent_sampler,
    obs_labels,
    one_vs_rest_all,
)
from genevae.errors import GenevaeInputError

N_CELLS, N_MODULES = 400, 5


def _latents(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell latent draws: group "stim" is shifted by +5 on module 0 and −5 on module 1."""
    rng = np.random.default_rng(seed)
    labels = np.array(["ctrl", "stim"] * (N_CELLS // 2))
    latent = rng.normal(size=(N_CELLS, N_MODULES))
    latent[labels == "stim", 0] += 5.0
    latent[labels == "stim", 1] -= 5.0
    return latent, labels


def _lookup(latent: np.ndarray):
    calls = []

    def encode_sample(indices: np.ndarray) -> np.ndarray:
        calls.append(len(indices))
        return latent[indices]

    encode_sample.calls = calls
    return encode_sample


@pytest.mark.parametrize(("estimator", "encoded"), [("analytic", 400), ("sampling", 4000)])
def test_shifted_modules_get_large_bayes_factors_with_the_right_sign(estimator, encoded):
    latent, labels = _latents()
    encode = _lookup(latent)
    table = differential_activity(
        encode, labels, "stim", "ctrl", estimator=estimator, n_samples=2000, n_pairs=5000
    )
    # one vectorised encoder call: every cell of both groups, or the drawn cells
    assert encode.calls == [encoded]
    by_module = table.set_index("module")
    assert by_module.loc["module_0", "ln_bf"] > 5 and by_module.loc["module_1", "ln_bf"] < -5
    assert by_module.loc["module_0", "mean_diff"] == pytest.approx(5.0, abs=0.3)
    assert by_module.loc["module_1", "mean_diff"] == pytest.approx(-5.0, abs=0.3)
    nulls = by_module.loc[["module_2", "module_3", "module_4"]]
    assert (nulls["ln_bf"].abs() < 0.5).all()
    assert by_module["is_significant"].tolist() == [True, True, False, False, False]
    assert list(table.columns) == [
        "module", "p_h1", "p_h2", "ln_bf", "mean_diff", "effect_size", "n_genes",
        "is_significant",
    ]  # fmt: skip
    assert table["ln_bf"].abs().is_monotonic_decreasing


@pytest.mark.parametrize("mode", ["vanilla", "change"])
def test_probabilities_match_the_normal_difference_of_the_groups(mode):
    """z1 ~ N(μ, 1), z2 ~ N(0, 1): z1 − z2 ~ N(μ, 2), so every probability is known exactly."""
    shifts = np.array([0.0, 0.5, 1.0, 2.0, -1.0, 3.5])
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(50_000, len(shifts))) + shifts
    z2 = rng.normal(size=(50_000, len(shifts)))
    stats = bayes_factor_from_latents(z1, z2, 200_000, rng, mode=mode, delta=2.0)
    spread = np.sqrt(2.0)
    p_h1 = norm.cdf(shifts / spread)
    np.testing.assert_allclose(stats["p_h1"], p_h1, atol=0.006)
    np.testing.assert_allclose(stats["p_h2"], norm.cdf(-shifts / spread), atol=0.006)
    np.testing.assert_allclose(stats["mean_diff"], shifts, atol=0.02)
    if mode == "vanilla":
        expected = np.log(p_h1) - np.log1p(-p_h1)
    else:
        p_da = norm.sf((2.0 - shifts) / spread) + norm.cdf((-2.0 - shifts) / spread)
        np.testing.assert_allclose(stats["p_da"], p_da, atol=0.006)
        expected = np.log(p_da) - np.log1p(-p_da)
    np.testing.assert_allclose(stats["ln_bf"], expected, atol=0.05)


def test_change_mode_significance_is_the_fdr_call_not_the_volcano_thresholds():
    """A sure change of 2.5 > δ is called although |mean diff| < 3; a sure non-change is not."""
    rng = np.random.default_rng(1)
    labels = np.array(["ctrl", "stim"] * 200)
    latent = rng.normal(scale=0.05, size=(400, 4))
    latent[labels == "stim", 0] += 2.5  # |z1 − z2| ≈ 2.5 > δ = 2 in every pair
    latent[labels == "stim", 1] += 1.0  # |z1 − z2| ≈ 1 < δ in every pair: |ln BF| is large
    latent[labels == "stim", 2] += 8.0  # large on every criterion
    table = differential_activity(
        _lookup(latent), labels, "stim", "ctrl", mode="change", delta=2.0, fdr_target=0.05
    )
    by_module = table.set_index("module")
    assert by_module.loc["module_0", "mean_diff"] < 3 and by_module.loc["module_1", "ln_bf"] < -3
    assert by_module["is_significant"].to_dict() == {
        "module_0": True, "module_1": False, "module_2": True, "module_3": False
    }  # fmt: skip
    assert table["is_significant"].equals(table["is_da_fdr"])
    assert table["p_da"].is_monotonic_decreasing
    vanilla = differential_activity(_lookup(latent), labels, "stim", "ctrl").set_index("module")
    assert not vanilla.loc["module_0", "is_significant"]  # the volcano rule: |mean diff| < 3


def test_same_seed_gives_identical_tables_and_other_seeds_differ():
    latent, labels = _latents()
    run = lambda seed, **kw: differential_activity(_lookup(latent), labels, "stim", seed=seed, **kw)  # noqa: E731
    pd.testing.assert_frame_equal(run(7, estimator="sampling"), run(7, estimator="sampling"))
    assert not run(7, estimator="sampling")["p_h1"].equals(run(8, estimator="sampling")["p_h1"])
    # analytic over all 200 × 200 pairs: no sampling, so the seed does not enter
    pd.testing.assert_frame_equal(run(7), run(8))
    # above max_pairs it averages random pairs, which the seed draws
    assert not run(7, max_pairs=1000)["p_h1"].equals(run(8, max_pairs=1000)["p_h1"])


def test_group_versus_rest_matches_the_two_group_case_when_there_are_two_groups():
    latent, labels = _latents()
    against_rest = differential_activity(_lookup(latent), labels, "stim", None, seed=3)
    against_ctrl = differential_activity(_lookup(latent), labels, "stim", "ctrl", seed=3)
    pd.testing.assert_frame_equal(against_rest, against_ctrl)


def test_change_mode_calls_only_the_shifted_modules_at_the_target_fdr():
    latent, labels = _latents()
    table = differential_activity(
        _lookup(latent), labels, "stim", "ctrl", mode="change", delta=2.0, fdr_target=0.05
    )
    by_module = table.set_index("module")
    assert {"p_da", "is_da_fdr"} <= set(table.columns)
    assert by_module.loc[["module_0", "module_1"], "p_da"].min() > 0.95
    assert by_module.loc[["module_0", "module_1"], "is_da_fdr"].all()
    assert not by_module.loc[["module_2", "module_3", "module_4"], "is_da_fdr"].any()


def test_fdr_calls_keep_the_largest_set_within_the_target():
    p_da = np.array([0.99, 0.2, 0.97, 0.9, 0.5])
    # ranked: 0.99, 0.97, 0.9, 0.5 → running mean of 1 − p: 0.01, 0.02, 0.0467, 0.16
    np.testing.assert_array_equal(
        fdr_controlled_calls(p_da, 0.05), [True, False, True, True, False]
    )
    assert not fdr_controlled_calls(np.array([0.5, 0.4]), 0.05).any()


def test_core_function_on_identical_groups_is_near_zero():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3000, 4))
    stats = bayes_factor_from_latents(z, z.copy(), 20000, rng)
    assert np.abs(stats["ln_bf"]).max() < 0.1
    assert set(stats) == {"p_h1", "p_h2", "ln_bf", "mean_diff", "effect_size"}


def test_one_vs_rest_all_covers_every_label():
    latent, labels = _latents()
    table = one_vs_rest_all(_lookup(latent), labels, n_samples=500, n_pairs=1000)
    assert sorted(table["group"].unique()) == ["ctrl", "stim"]
    stim = table[table["group"] == "stim"].set_index("module")
    ctrl = table[table["group"] == "ctrl"].set_index("module")
    assert stim.loc["module_0", "ln_bf"] > 3 and ctrl.loc["module_0", "ln_bf"] < -3


def test_module_names_and_gene_counts_are_reported():
    latent, labels = _latents()
    names = [f"SET_{k}" for k in range(N_MODULES)]
    table = differential_activity(
        _lookup(latent), labels, "stim", module_names=names, n_genes_per_module=[3, 4, 5, 6, 7]
    )
    assert table.set_index("module").loc["SET_0", "n_genes"] == 3
    with pytest.raises(GenevaeInputError, match="module_names has 2 entries"):
        differential_activity(_lookup(latent), labels, "stim", module_names=["a", "b"])


@pytest.mark.parametrize(
    ("group1", "group2", "message"),
    [
        ("stimulated", None, r"group1='stimulated' is not a label.*\['ctrl', 'stim'\]"),
        ("stim", "control", r"group2='control' is not a label"),
        ("stim", "stim", "both 'stim'"),
    ],
)
def test_unknown_or_repeated_labels_are_refused(group1, group2, message):
    latent, labels = _latents()
    with pytest.raises(GenevaeInputError, match=message):
        differential_activity(_lookup(latent), labels, group1, group2)


def test_empty_rest_and_bad_encoder_output_and_mode_are_refused():
    latent, _ = _latents()
    with pytest.raises(GenevaeInputError, match="no cells"):
        differential_activity(_lookup(latent), np.array(["a"] * N_CELLS), "a")
    labels = np.array(["a", "b"] * (N_CELLS // 2))
    for estimator in ("analytic", "sampling"):
        with pytest.raises(GenevaeInputError, match="returned shape"):
            differential_activity(
                lambda idx: latent[idx[:10]], labels, "a", n_samples=50, estimator=estimator
            )
    with pytest.raises(GenevaeInputError, match="mode='median'"):
        differential_activity(_lookup(latent), labels, "a", mode="median")
    with pytest.raises(GenevaeInputError, match="estimator='exact'"):
        differential_activity(_lookup(latent), labels, "a", estimator="exact")
    with pytest.raises(GenevaeInputError, match="max_pairs=0"):
        differential_activity(_lookup(latent), labels, "a", max_pairs=0)


def test_obs_labels_names_the_missing_column():
    obs = pd.DataFrame({"condition": pd.Categorical(["a", "b"])})
    assert obs_labels(obs, "condition").tolist() == ["a", "b"]
    with pytest.raises(GenevaeInputError, match=r"no column 'cell_type'.*\['condition'\]"):
        obs_labels(obs, "cell_type")


class _ShiftModel(torch.nn.Module):
    """Stands in for VEGA: posterior N(x, 0.01²) per cell."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def sample_latent(self, batch, generator=None):
        noise = torch.randn(batch["x"].shape, generator=generator)
        return batch["x"] * self.scale + 0.01 * noise


def test_latent_sampler_encodes_requested_rows_in_chunks_reproducibly():
    import scipy.sparse as sp

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    model = _ShiftModel().train()
    encode = latent_sampler(model, sp.csr_matrix(x), chunk_size=2, seed=4)
    draws = encode(np.array([5, 0, 5, 3, 1]))
    assert not model.training
    np.testing.assert_allclose(draws, x[[5, 0, 5, 3, 1]], atol=0.05)
    np.testing.assert_array_equal(draws, encode(np.array([5, 0, 5, 3, 1])))
    with pytest.raises(GenevaeInputError, match=r"\[0, 6\)"):
        encode(np.array([6]))


def test_ties_count_half_to_each_hypothesis():
    """Discrete scores (a module mean over zero counts) tie; a tie is no evidence either way."""
    z1 = np.array([[0.0, 1.0], [0.0, 1.0]])
    z2 = np.array([[0.0, 0.0], [0.0, 0.0]])
    result = bayes_factor_from_latents(z1, z2, n_pairs=50, rng=np.random.default_rng(0))
    np.testing.assert_allclose(result["p_h1"], [0.5, 1.0])
    assert result["ln_bf"][0] == pytest.approx(0.0)
