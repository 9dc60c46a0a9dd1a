"""The latent and reconstruction section works on a seeded subsample above max_scored_cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.nodes import latent_and_reconstruction, scored_cells

PARAMS = {
    "model": "tybalt",
    "latent_key": "X_tybalt",
    "label_keys": ["cancer_type"],
    "reconstruction_groupby": ["cancer_type"],
    "r2_kind": "pearson_squared",
    "latent": {"pca_components": 5, "knn_k": 5, "knn_folds": 3, "max_cells": None, "seed": 0},
    "section": {"title": "Tybalt"},
}


@pytest.fixture(scope="module")
def encoded() -> ad.AnnData:
    rng = np.random.default_rng(0)
    labels = np.repeat(["BRCA", "LUAD"], 60)
    latent = rng.normal(0, 1, (120, 4)) + (labels == "LUAD")[:, None] * 3.0
    adata = ad.AnnData(
        X=rng.uniform(0, 1, (120, 30)).astype(np.float32),
        obs=pd.DataFrame({"cancer_type": labels}, index=[f"s{i}" for i in range(120)]),
    )
    adata.obsm["X_tybalt"] = latent.astype(np.float32)
    return adata


def test_every_cell_is_scored_up_to_the_limit(encoded):
    assert scored_cells(encoded, None, 0) is encoded
    assert scored_cells(encoded, 120, 0) is encoded


def test_above_the_limit_a_seeded_subsample_in_the_original_order(encoded):
    subsample = scored_cells(encoded, 50, seed=1)
    assert subsample.n_obs == 50
    positions = encoded.obs_names.get_indexer(subsample.obs_names)
    assert (positions >= 0).all() and (np.diff(positions) > 0).all()
    np.testing.assert_array_equal(subsample.obsm["X_tybalt"], encoded.obsm["X_tybalt"][positions])
    assert scored_cells(encoded, 50, seed=1).obs_names.equals(subsample.obs_names)
    assert not scored_cells(encoded, 50, seed=2).obs_names.equals(subsample.obs_names)
    with pytest.raises(GenevaeInputError, match="max_scored_cells"):
        scored_cells(encoded, 1, 0)


def test_the_section_scores_the_subsample_it_names(encoded):
    limited = PARAMS | {"latent": PARAMS["latent"] | {"max_scored_cells": 50}}
    everything = PARAMS | {"latent": PARAMS["latent"] | {"max_scored_cells": None}}
    part, _, _ = latent_and_reconstruction(None, Loaded(encoded, "e", None, None), limited)
    subsample = scored_cells(encoded, 50, 0)
    same, _, _ = latent_and_reconstruction(None, Loaded(subsample, "e", None, None), everything)
    full, _, _ = latent_and_reconstruction(None, Loaded(encoded, "e", None, None), everything)
    pd.testing.assert_frame_equal(part.metrics, same.metrics)
    assert not part.metrics["value"].equals(full.metrics["value"])
    knn = full.metrics.query("metric == 'knn_accuracy' and method == 'tybalt'")["value"]
    assert knn.iloc[0] > 0.9  # the planted label separation is found on every cell
