"""The gpo_vae nodes on a synthetic CRISPRi screen drawn from a known GRN (planted truth).

Model inputs (extra nodes, OT-matched ΔX, QC, counterfactuals), training, the GRN readout and
the ATE scoring all run through the pipeline's own nodes with the base parameters, changing
only sizes and the training budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genevae.analysis.grn import reference_network_metrics
from genevae.pipelines.gpo_vae import evaluation, nodes
from genevae.pipelines.gpo_vae.model_input import info
from genevae.preprocessing.gpo_inputs import log_normalise_counts
from genevae.preprocessing.perturbseq import split_cells
from genevae.preprocessing.synthetic import make_perturbseq_from_grn

BASE = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "conf/base/parameters_gpo_vae.yml").read_text()
)["gpo_vae"]


def _screen(**sizes):
    screen = make_perturbseq_from_grn(seed=0, **sizes)
    adata = screen.adata
    adata.X = log_normalise_counts(adata.layers["counts"])
    adata.obs["split"] = split_cells(adata.obs, seed=0).astype("category")
    return screen, adata


def _fit_and_score(sizes: dict, model: dict, training: dict) -> tuple[dict, dict]:
    screen, adata = _screen(**sizes)
    inputs = BASE["inputs"] | {
        "perturbation_key": "perturbation",
        "control_label": screen.control_label,
        "lfc_threshold": 1.0,  # log2 effects of the planted edges are about 1–2
    }
    model_input = nodes.build_model_input(adata, inputs)
    meta = info(model_input)
    training = BASE["training"] | {"checkpoint_dir": None, "progress_bar": False} | training
    bundle, history, _ = nodes.train_gpo_vae(
        model_input, BASE["model"] | model, training, BASE["full"]["variant"]
    )
    edges = nodes.grn_edges(bundle)
    regulators = meta["node_names"][: meta["n_perturbed"]]
    grn = reference_network_metrics(edges, screen.edges, regulators, meta["node_names"])
    params = BASE["evaluation"] | {"n_particles": 200, "references": ["test"], "top_k_genes": [20]}
    ate = evaluation.ate_table(
        {"model": nodes.predict_ate(bundle, model_input, params)}, model_input, params
    )
    return grn, ate.to_dict(orient="index")


def _assert_recovers_grn_and_effects(grn: dict, ate: dict) -> None:
    """True edges rank above non-edges; held-out effects beat "no effect" (the control mean)."""
    assert grn["n_positive"] > 0
    assert grn["auprc"] >= 3 * grn["random_baseline"]
    assert (
        ate["model"]["r2_delta_vs_control_top20de_pooled_testcells"]
        > ate["control_mean"]["r2_delta_vs_control_top20de_pooled_testcells"] + 0.1
    )
    assert ate["model"]["pearson_delta_vs_control_top20de_pooled_testcells"] > 0.4


def test_small_synthetic_screen_recovers_planted_edges_and_effects():
    sizes = {
        "n_cells_per_group": 50,
        "n_genes": 60,
        "n_regulators": 4,
        "n_targets_per_regulator": 3,
    }
    model = {
        "n_latent": 8,
        "decoder_hidden": 64,
        "basal_encoder_hidden": 64,
        "embedding_encoder_hidden": 64,
        "embedding_encoder_layers": 2,
    }
    # small data: what matters is the number of optimiser steps (batch 32 → 5 per epoch)
    training = {"max_epochs": 60, "batch_size": 32, "learning_rate": 1e-2}
    grn, ate = _fit_and_score(sizes, model, training)
    _assert_recovers_grn_and_effects(grn, ate)


@pytest.mark.slow
def test_synthetic_screen_recovers_planted_edges_and_effects():
    model = {
        "n_latent": 16,
        "decoder_hidden": 128,
        "basal_encoder_hidden": 128,
        "embedding_encoder_hidden": 128,
        "embedding_encoder_layers": 2,
    }
    training = {"max_epochs": 100, "batch_size": 32, "learning_rate": 3e-3}
    grn, ate = _fit_and_score({}, model, training)
    _assert_recovers_grn_and_effects(grn, ate)
    assert (
        ate["model"]["r2_delta_vs_control_allgenes_pooled_testcells"]
        > ate["control_mean"]["r2_delta_vs_control_allgenes_pooled_testcells"]
    )
