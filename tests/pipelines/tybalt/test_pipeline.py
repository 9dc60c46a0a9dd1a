"""tybalt end to end (tiny settings) on the real TCGA subset, with its MLflow run."""

from __future__ import annotations

import json

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genevae.datasets.model_bundle import load_model_bundle
from tests.conftest import PROJECT_ROOT
from tests.project import latest_version, mlflow_run

TEST_PARAMS = yaml.safe_load((PROJECT_ROOT / "conf/test/parameters_tybalt.yml").read_text())
LATENT = TEST_PARAMS["tybalt"]["model"]["latent_dim"]
EPOCHS = TEST_PARAMS["tybalt"]["training"]["max_epochs"]


@pytest.fixture(scope="module")
def tybalt_run(processed_project, run_pipeline):
    run_pipeline("tybalt")
    data = processed_project / "data"
    processed = ad.read_h5ad(latest_version(data / "03_primary" / "tcga" / "processed.h5ad"))
    return processed_project, data, processed


def _table(data, layer: str, name: str) -> pd.DataFrame:
    return pd.read_parquet(latest_version(data / layer / "tcga" / f"{name}.parquet"))


def test_encodings_weights_and_high_weight_genes(tybalt_run):
    _, data, processed = tybalt_run
    latent = _table(data, "07_model_output", "tybalt_latent_means")
    assert latent.shape == (processed.n_obs, LATENT)
    assert list(latent.index) == list(processed.obs_names)
    encoded = ad.read_h5ad(
        latest_version(data / "07_model_output" / "tcga" / "tybalt_encoded_samples.h5ad")
    )
    np.testing.assert_allclose(encoded.obsm["X_tybalt"], latent.to_numpy(), rtol=1e-6)
    assert (encoded.obs["cancer_type"] == processed.obs["cancer_type"]).all()

    weights = _table(data, "07_model_output", "tybalt_decoder_weights")
    assert weights.shape == (processed.n_vars, LATENT)
    assert list(weights.index) == list(processed.var_names)
    high = _table(data, "08_reporting", "tybalt_high_weight_genes")
    for row in high.itertuples():
        node = weights[row.node]
        limit = node.mean() + (2.5 if row.tail == "positive" else -2.5) * node.std()
        assert (row.weight > limit) if row.tail == "positive" else (row.weight < limit)
    activity = _table(data, "08_reporting", "tybalt_node_activity")
    assert len(activity) == LATENT


def test_generated_profiles_are_zero_one_with_the_right_shapes(tybalt_run):
    _, data, processed = tybalt_run
    generation = TEST_PARAMS["tybalt"]["generation"]
    shapes = {
        "tybalt_prior_samples": generation["n_prior_samples"],
        "tybalt_latent_arithmetic": 1,
        "tybalt_interpolation": generation["interpolation"]["n_steps"],
    }
    for name, n_rows in shapes.items():
        table = _table(data, "07_model_output", name)
        assert table.shape == (n_rows, processed.n_vars), name
        assert ((table.to_numpy() >= 0) & (table.to_numpy() <= 1)).all(), name
        assert list(table.columns) == list(processed.var_names), name

    # The interpolation starts at the decoded encoding of the first normal sample.
    path = _table(data, "07_model_output", "tybalt_interpolation")
    start = processed.obs_names[processed.obs["sample_type"] == "Solid Tissue Normal"][0]
    assert path.index.get_level_values("start")[0] == start
    bundle = load_model_bundle(latest_version(data / "06_models" / "tcga" / "tybalt_model"))
    latent = _table(data, "07_model_output", "tybalt_latent_means")
    with torch.no_grad():
        decoded = bundle.model.decode(torch.tensor(latent.loc[[start]].to_numpy()))
    np.testing.assert_allclose(path.iloc[0].to_numpy(), decoded[0].numpy(), rtol=1e-5)


def test_figures_and_mlflow_run(tybalt_run):
    project, data, _ = tybalt_run
    maps = latest_version(data / "08_reporting" / "tcga" / "tybalt_latent_maps")
    assert sorted(p.name for p in maps.iterdir()) == [
        f"{method}_by_{key}.png"
        for method in ("tsne", "umap")
        for key in ("cancer_type", "sample_type")
    ]
    run_id = mlflow_run(project, "tybalt.tcga")
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(run_id, "train_loss")) == EPOCHS
    assert len(client.get_metric_history(run_id, "val_loss")) == EPOCHS
    run = client.get_run(run_id)
    assert "tybalt.tcga.final_val_loss" in run.data.metrics
    assert run.data.tags["genevae.n_validation"] == "1"  # the data's own split
    # epoch 0 is the KL warm-up (β = 0), so of two epochs the best one can only be epoch 1
    assert run.data.metrics["tybalt.tcga.best_epoch"] == 1
    assert run.data.tags["genevae.best_epoch"] == run.data.tags["genevae.weights_epoch"] == "1"
    bundle = json.loads(
        (latest_version(data / "06_models" / "tcga" / "tybalt_model") / "config.json").read_text()
    )
    assert bundle["metadata"]["best_epoch"] == bundle["metadata"]["weights_epoch"] == 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "tybalt.tcga.model" not in artifacts  # stored once, in data/06_models
    assert {
        "tybalt.tcga.report",
        "tybalt.tcga.latent_maps",
        "tybalt.tcga.activation_distributions",
        "tybalt.tcga.training_curves",
        "tybalt.tcga.high_weight_genes",
    } <= artifacts
