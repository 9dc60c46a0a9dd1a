"""gpo_vae model input and node adapters on a tiny synthetic screen (no Kedro session)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from genevae.errors import GenevaeInputError
from genevae.pipelines.gpo_vae import evaluation, nodes
from genevae.pipelines.gpo_vae.evaluation import mlflow_metrics
from genevae.pipelines.gpo_vae.model_input import info, perturbation_dosage, tensor_data
from genevae.preprocessing.gpo_inputs import log_normalise_counts
from genevae.preprocessing.perturbseq import hold_out_perturbations, split_cells
from genevae.preprocessing.synthetic import make_perturbseq_from_grn

INPUTS = {
    "perturbation_key": "perturbation",
    "control_label": "non-targeting",
    "split_key": "split",
    "counts_layer": "counts",
    "lfc_threshold": 1.0,
    "padj_threshold": 0.01,
    "filter_mode": "paper",
    "match_on": "perturbed_genes",
    "ot_reg": 1.0,
    "ot_cost_scale": 100.0,
    "qc_n_mads": 3.0,
    "cf_max_cells": 50,
    "seed": 0,
    "fit_on": "training_cells",
    "train_split": "train",
}


@pytest.fixture(scope="module")
def model_input() -> ad.AnnData:
    screen = make_perturbseq_from_grn(
        n_cells_per_group=30, n_genes=40, n_regulators=3, n_targets_per_regulator=2, seed=1
    )
    adata = screen.adata
    adata.X = log_normalise_counts(adata.layers["counts"])
    adata.obs["split"] = split_cells(adata.obs, seed=0)
    return nodes.build_model_input(adata, INPUTS)


def test_model_input_layout(model_input):
    meta = info(model_input)
    assert meta["node_names"][:3] == ["REG0", "REG1", "REG2"] and meta["n_perturbed"] == 3
    dosage = model_input.obsm["dosage"]
    assert list(dosage.columns) == meta["node_names"]
    labels = model_input.obs["perturbation"].astype(str)
    assert (dosage.loc[labels == "REG1", "REG1"] == 1).all()
    assert (dosage[labels == "non-targeting"].to_numpy() == 0).all()
    matched = model_input.obs["matched_control"]
    perturbed = labels != "non-targeting"
    assert (matched[~perturbed] == "").all()
    partners = model_input.obs.loc[matched[perturbed]]
    assert (partners["perturbation"] == "non-targeting").all()
    assert (partners["split"].to_numpy() == model_input.obs["split"][perturbed].to_numpy()).all()
    for _, obs in model_input.obs.groupby("split", observed=True):
        if obs["total_qc"].any():
            assert obs["qc_weight"].sum() == pytest.approx(1.0)


def test_tensor_data_has_every_batch_key_for_one_split(model_input):
    data = tensor_data(model_input, "validation")
    n_val = int((model_input.obs["split"] == "validation").sum())
    n_nodes = len(info(model_input)["node_names"])
    shapes = {key: value.shape for key, value in data.arrays.items()}
    assert shapes["counts"] == shapes["cf_x"] == (n_val, model_input.n_vars)
    assert shapes["dosage"] == shapes["delta_x"] == (n_val, n_nodes)
    for key in ("library", "perturbation_weight", "qc", "qc_weight", "has_cf"):
        assert shapes[key] == (n_val, 1)
    with pytest.raises(GenevaeInputError, match=r"No cells in split 'holdout'"):
        tensor_data(model_input, "holdout")


def test_perturbation_dosage_is_one_row_per_perturbed_node(model_input):
    dosage = perturbation_dosage(model_input)
    assert list(dosage.index) == ["REG0", "REG1", "REG2"]
    np.testing.assert_array_equal(dosage.to_numpy()[:, :3], np.eye(3))
    assert (dosage.to_numpy()[:, 3:] == 0).all()


def test_plain_anndata_is_refused_as_model_input():
    with pytest.raises(GenevaeInputError, match="not a GPO-VAE model input"):
        info(ad.AnnData(np.zeros((2, 2), np.float32)))


def test_epoch_metrics_and_mlflow_metrics_formats():
    history = pd.DataFrame(
        {
            "epoch": [0, 0, 1],
            "split": ["train", "val", "train"],
            "term": ["loss"] * 3,
            "value": [3.0, 4.0, 2.0],
            "best": [False, False, True],
        }
    )
    metrics = nodes._epoch_metrics(history)
    assert metrics["train_loss"] == [{"value": 3.0, "step": 0}, {"value": 2.0, "step": 1}]
    assert metrics["best_epoch"] == [{"value": 1.0, "step": 0}]
    assert "best_epoch" not in nodes._epoch_metrics(history.assign(best=False))
    table = pd.DataFrame({"a": [1.0, np.nan]}, index=["gpo_vae", "control_mean"])
    assert mlflow_metrics(table) == {"gpo_vae.a": {"value": 1.0, "step": 0}}


def test_compare_predictors_names_incomplete_variants_and_bad_reference(model_input):
    with pytest.raises(GenevaeInputError, match=r"\['gpo_vae'\] lack"):
        nodes.compare_predictors(model_input, pd.DataFrame(), {}, gpo_vae__ate=pd.DataFrame())
    with pytest.raises(GenevaeInputError, match=r"lacks \['regulator'\]"):
        nodes._reference(pd.DataFrame({"tf": ["A"], "target": ["B"]}))


def test_training_is_reproducible_from_the_seed_alone(model_input):
    model = {
        "n_latent": 4,
        "decoder_hidden": 16,
        "basal_encoder_hidden": 16,
        "embedding_encoder_hidden": 16,
        "embedding_encoder_layers": 1,
        "n_particles": 2,
    }
    training = {"max_epochs": 2, "batch_size": 32, "progress_bar": False, "seed": 3}
    variant = {"name": "full", "model_overrides": {}}
    first, history, metrics = nodes.train_gpo_vae(model_input, model, training, variant)
    torch.manual_seed(123)  # a different global RNG state must not change the result
    second, _, _ = nodes.train_gpo_vae(model_input, model, training, variant)
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(value, second.model.state_dict()[key])
    assert first.metadata["variant"] == "full" and first.metadata["epochs_run"] == 2
    val_loss = history.query("split == 'val' and term == 'loss'").set_index("epoch")["value"]
    assert first.metadata["best_epoch"] == first.metadata["weights_epoch"] == val_loss.idxmin()
    assert [m["step"] for m in metrics["val_loss"]] == [0, 1]
    assert set(history["split"]) == {"train", "val"}


def test_a_held_out_perturbation_is_scored_with_pooled_baselines():
    screen = make_perturbseq_from_grn(
        n_cells_per_group=30, n_genes=40, n_regulators=3, n_targets_per_regulator=2, seed=2
    )
    adata = screen.adata
    adata.X = log_normalise_counts(adata.layers["counts"])
    split = split_cells(adata.obs, seed=0)
    adata.obs["split"] = hold_out_perturbations(adata.obs, ["REG2"], "perturbation", split)
    model_input = nodes.build_model_input(adata, INPUTS)
    assert model_input.obsm["dosage"]["REG2"][model_input.obs["split"] == "train"].sum() == 0
    zero = pd.DataFrame(0.0, index=["REG0", "REG1", "REG2"], columns=model_input.var_names)
    params = {"references": ["test"], "top_k_genes": [5], "seed": 0, "linear_model": {}}
    table = evaluation.ate_table({"model": zero}, model_input, params)
    column = "pearson_delta_vs_control_allgenes_pooled_testcells"
    assert np.isfinite(table.loc[["training_mean", "linear_model"], column]).all()
    edges = evaluation.effect_size_edges(model_input)
    assert (edges.loc[edges["regulator"] == "REG2", "probability"] == 0).all()
    assert edges.loc[edges["regulator"] == "REG0", "probability"].max() > 0
