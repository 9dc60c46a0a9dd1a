"""Generalisation experiments with a cheap stand-in model (PCA fitted on the training cells)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from genevae.analysis.generalisation import (
    PAPER_MEAN_TOP50_OVERLAP,
    Posterior,
    _mean_of_rows,
    biological_generalisation,
    compare_models_on_group,
    held_out_rows,
    module_priority,
    posterior_sampler,
    split_into_studies,
    standard_normal_draws,
    summarise_resamples,
    technical_generalisation,
)
from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic import make_module_dataset

N_COMPONENTS = 6
COMPARISON = {
    "n_resamples": 3,
    "n_cells": 100,
    "top_k": 3,
    "bayes_factor": {"n_samples": 200, "n_pairs": 400},
}


class PCATrainer:
    """Trainer stand-in: a PCA of the training cells is the 'model'; records every fit."""

    def __init__(self) -> None:
        self.fits: list[tuple[str, int]] = []

    def __call__(self, adata: ad.AnnData, seed: int, label: str):
        self.fits.append((label, adata.n_obs))
        x = np.asarray(adata.X)
        centre = x.mean(axis=0)
        components = np.linalg.svd(x - centre, full_matrices=False)[2][:N_COMPONENTS]

        def encode(cells: ad.AnnData) -> Posterior:
            values = np.asarray(cells.X)
            mean = (values - centre) @ components.T
            return Posterior(
                mean=mean,
                logvar=np.full(mean.shape, -4.0),
                reconstruction=mean @ components + centre,
                module_names=[f"pc{i}" for i in range(N_COMPONENTS)],
            )

        return encode


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Tiny matrices: BLAS threads only add contention on a 2-core machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def cells() -> ad.AnnData:
    return make_module_dataset(
        n_cells=400, n_genes=120, n_modules=8, n_differential=2, genes_per_module=(8, 20), seed=0
    ).adata


def _posterior(mean: np.ndarray) -> Posterior:
    return Posterior(
        mean=mean,
        logvar=np.full(mean.shape, -2.0),
        reconstruction=np.ones((len(mean), 3)),
        module_names=[f"m{i}" for i in range(mean.shape[1])],
    )


def test_posterior_checks_its_arrays_agree():
    with pytest.raises(GenevaeInputError, match="disagree"):
        Posterior(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros((3, 4)), ["a", "b"])
    with pytest.raises(GenevaeInputError, match="module names"):
        Posterior(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 4)), ["a"])


def test_posterior_sampler_draws_around_the_mean_reproducibly():
    posterior = _posterior(np.array([[0.0, 10.0], [5.0, -5.0]]))
    sample = posterior_sampler(posterior, np.array([1, 0]), seed=3)
    draws = sample(np.zeros(5000, dtype=int))  # local 0 → cell 1
    np.testing.assert_allclose(draws.mean(axis=0), [5.0, -5.0], atol=0.02)
    np.testing.assert_allclose(draws.std(axis=0), np.exp(-1.0), rtol=0.05)
    np.testing.assert_array_equal(sample(np.array([0, 1])), sample(np.array([0, 1])))


def test_module_priority_breaks_saturated_bayes_factor_ties_by_mean_difference():
    table = pd.DataFrame(
        {
            "module": ["a", "b", "c", "UNANNOTATED_0"],
            "ln_bf": [27.6, -27.6, 3.0, 30.0],
            "mean_diff": [1.0, -4.0, 9.0, 9.0],
        }
    )
    priority = module_priority(table, exclude_prefix="UNANNOTATED")
    assert priority.sort_values(ascending=False).index.tolist() == ["b", "a", "c"]


def test_identical_models_agree_perfectly_on_every_resample():
    rng = np.random.default_rng(0)
    mean = np.vstack([rng.normal(0, 1, (40, 5)), rng.normal(0, 1, (40, 5)) + [3, 0, 0, -2, 0]])
    posterior = _posterior(mean)
    observed = np.ones((80, 3)) + rng.normal(0, 0.1, (80, 3))
    table = compare_models_on_group(
        posterior, posterior, observed, np.arange(40, 80), np.arange(40), seed=1, **COMPARISON
    )
    assert table["resample"].tolist() == [0, 1, 2]
    assert (table["top_k_overlap"] == 1.0).all()
    np.testing.assert_allclose(table["r2_reference"], table["r2_generalised"])


def test_sparse_observed_gives_the_dense_results():
    rng = np.random.default_rng(2)
    mean = rng.normal(0, 1, (60, 4))
    reference, generalised = (
        Posterior(mean + shift, np.full((60, 4), -2.0), rng.gamma(1.0, 1.0, (60, 3)), list("abcd"))
        for shift in (0.0, rng.normal(0, 0.5, (60, 4)))
    )
    observed = rng.poisson(0.3, (60, 3)).astype(np.float32)
    args = (np.arange(30, 60), np.arange(30))
    dense = compare_models_on_group(reference, generalised, observed, *args, seed=3, **COMPARISON)
    sparse = compare_models_on_group(
        reference, generalised, sp.csr_matrix(observed), *args, seed=3, **COMPARISON
    )
    pd.testing.assert_frame_equal(dense, sparse)
    assert dense[["r2_reference", "r2_generalised"]].notna().all().all()


def test_shared_draws_are_the_seeded_generator_draws_drawn_once():
    draws = standard_normal_draws(7)
    first = draws((5, 3))
    assert draws((5, 3)) is first
    np.testing.assert_array_equal(first, np.random.default_rng(7).standard_normal((5, 3)))
    posterior = _posterior(np.zeros((4, 3)))
    shared = posterior_sampler(posterior, np.arange(4), 7, draws)(np.array([0, 1, 2, 3, 0]))
    alone = posterior_sampler(posterior, np.arange(4), 7)(np.array([0, 1, 2, 3, 0]))
    np.testing.assert_array_equal(shared, alone)


def test_mean_of_drawn_rows_counts_repeats_for_dense_and_sparse():
    rng = np.random.default_rng(4)
    matrix = rng.poisson(0.5, (30, 6)).astype(np.float32)
    rows = rng.choice(np.arange(5, 20), size=50, replace=True)
    expected = matrix[rows].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(_mean_of_rows(matrix, rows), expected, rtol=1e-12)
    np.testing.assert_allclose(_mean_of_rows(sp.csr_matrix(matrix), rows), expected, rtol=1e-12)


def test_compare_refuses_models_with_different_modules():
    first, second = _posterior(np.zeros((4, 2))), _posterior(np.zeros((4, 3)))
    with pytest.raises(GenevaeInputError, match="different modules"):
        compare_models_on_group(first, second, np.ones((4, 3)), np.arange(2), np.arange(2, 4))


def test_held_out_rows_are_the_stimulated_cells_of_one_type(cells):
    hidden = held_out_rows(cells.obs, "cell_type", "type_1", "condition", "stimulated")
    expected = (cells.obs["cell_type"] == "type_1") & (cells.obs["condition"] == "stimulated")
    np.testing.assert_array_equal(hidden, expected.to_numpy())
    with pytest.raises(GenevaeInputError, match="'type_9' is not a level of obs\\['cell_type'\\]"):
        held_out_rows(cells.obs, "cell_type", "type_9", "condition", "stimulated")


def test_biological_generalisation_trains_one_model_per_held_out_type(cells):
    trainer = PCATrainer()
    table = biological_generalisation(cells, trainer, ["type_0", "type_2"], seed=0, **COMPARISON)
    hidden = {
        t: int(held_out_rows(cells.obs, "cell_type", t, "condition", "stimulated").sum())
        for t in ("type_0", "type_2")
    }
    assert trainer.fits == [
        ("full", 400),
        ("held_out_type_0", 400 - hidden["type_0"]),
        ("held_out_type_2", 400 - hidden["type_2"]),
    ]
    assert list(table.columns) == [
        "cell_type", "n_stimulated", "n_control", "resample", "r2_full", "r2_held_out",
        "top_k_overlap",
    ]  # fmt: skip
    assert len(table) == 2 * COMPARISON["n_resamples"]
    assert table["top_k_overlap"].between(0, 1).all()
    # PCA of all cells sees the planted stimulation; both PCAs reconstruct the means well
    assert (table[["r2_full", "r2_held_out"]] > 0.9).all().all()


def test_biological_generalisation_reuses_a_given_full_model(cells):
    trainer = PCATrainer()
    full = PCATrainer()(cells, 0, "catalog")
    biological_generalisation(cells, trainer, ["type_1"], full_model=full, **COMPARISON)
    assert [label for label, _ in trainer.fits] == ["held_out_type_1"]


def test_biological_generalisation_refuses_a_type_without_controls(cells):
    obs = cells.obs.copy()
    only_stimulated = cells[~((obs["cell_type"] == "type_0") & (obs["condition"] == "control"))]
    with pytest.raises(GenevaeInputError, match="has no 'control' cells"):
        biological_generalisation(only_stimulated, PCATrainer(), ["type_0"], **COMPARISON)
    with pytest.raises(GenevaeInputError, match="cell_types is empty"):
        biological_generalisation(cells, PCATrainer(), [], **COMPARISON)


def test_study_halves_are_disjoint_complete_and_keep_the_composition(cells):
    first, second = split_into_studies(cells.obs, ["cell_type", "condition"], seed=0)
    assert len(np.intersect1d(first, second)) == 0
    assert len(first) + len(second) == cells.n_obs
    counts = cells.obs.groupby(["cell_type", "condition"], observed=True).size()
    counts_a = cells.obs.iloc[first].groupby(["cell_type", "condition"], observed=True).size()
    assert ((counts_a - counts / 2).abs() <= 0.5).all()
    again = split_into_studies(cells.obs, ["cell_type", "condition"], seed=0)
    np.testing.assert_array_equal(first, again[0])


def test_technical_generalisation_trains_on_each_study_and_scores_every_type(cells):
    trainer = PCATrainer()
    table = technical_generalisation(cells, trainer, min_cells=10, seed=0, **COMPARISON)
    assert [label for label, _ in trainer.fits] == ["study_b", "study_a"]
    assert sorted(table["cell_type"].unique()) == ["type_0", "type_1", "type_2"]
    assert table["top_k_overlap"].between(0, 1).all()
    assert {"r2_in_sample", "r2_out_of_sample", "n_cells"} <= set(table.columns)


def test_technical_generalisation_with_named_studies_and_its_refusals(cells):
    obs = cells.obs.assign(study=np.where(np.arange(cells.n_obs) % 2, "s1", "s2"))
    adata = ad.AnnData(cells.X, obs=obs, var=cells.var)
    table = technical_generalisation(
        adata, PCATrainer(), study_key="study", studies=("s1", "s2"), min_cells=10, **COMPARISON
    )
    assert not table.empty
    with pytest.raises(GenevaeInputError, match="both be levels"):
        technical_generalisation(adata, PCATrainer(), study_key="study", studies=("s1", "s9"))
    with pytest.raises(GenevaeInputError, match="min_cells=1000"):
        technical_generalisation(cells, PCATrainer(), min_cells=1000, **COMPARISON)


def test_summarise_resamples_gives_mean_sd_and_count():
    results = pd.DataFrame({"cell_type": ["a", "a", "b"], "top_k_overlap": [0.6, 0.8, 0.5]})
    summary = summarise_resamples(results, "cell_type", ["top_k_overlap"]).set_index("cell_type")
    assert summary.loc["a", "top_k_overlap_mean"] == pytest.approx(0.7)
    assert summary.loc["a", "top_k_overlap_std"] == pytest.approx(np.sqrt(0.02))
    assert summary.loc["b", "top_k_overlap_count"] == 1
    assert PAPER_MEAN_TOP50_OVERLAP == 0.715
    with pytest.raises(GenevaeInputError, match="lacks columns"):
        summarise_resamples(results, "cell_type", ["r2"])
