"""gpo_vae end to end on the Adamson subset (tiny settings) after data_processing."""

from __future__ import annotations

import html
import re

import anndata as ad
import mlflow
import numpy as np
import pandas as pd

from genevae.pipelines.gpo_vae.pipeline import VARIANTS
from genevae.reporting.html import format_number
from tests.project import latest_version as _latest
from tests.project import mlflow_run


def test_gpo_vae_pipeline_writes_outputs_and_mlflow_run(processed_project, run_pipeline):
    run_pipeline("gpo_vae")
    data = processed_project / "data"

    model_input = ad.read_h5ad(
        _latest(data / "05_model_input" / "adamson" / "gpo_vae_model_input.h5ad")
    )
    nodes = list(model_input.uns["gpo_vae"]["node_names"])
    n_perturbed = int(model_input.uns["gpo_vae"]["n_perturbed"])
    perturbed = sorted(set(model_input.obs["perturbation"]) - {"non-targeting"})
    assert nodes[:n_perturbed] == perturbed
    assert model_input.obsm["dosage"].shape == (model_input.n_obs, len(nodes))
    assert (model_input.obsm["dosage"].sum(axis=1) <= 1).all()
    assert model_input.layers["counterfactual"].shape == model_input.shape
    assert set(model_input.obs["split"]) == {"train", "validation", "test"}

    for namespace in VARIANTS:
        ate = pd.read_parquet(
            _latest(
                data / "07_model_output" / "adamson" / f"gpo_vae_{namespace}_predicted_ate.parquet"
            )
        )
        assert list(ate.index) == perturbed and ate.shape[1] == model_input.n_vars
        assert np.isfinite(ate.to_numpy()).all()
        edges = pd.read_parquet(
            _latest(data / "07_model_output" / "adamson" / f"gpo_vae_{namespace}_grn_edges.parquet")
        )
        assert list(edges.columns[:3]) == ["regulator", "target", "probability"]
        assert len(edges) == len(nodes) * (len(nodes) - 1)
        assert edges["probability"].between(0, 1).all()
        for figure in ("grn_heatmap", "training_curves", "top_edges"):
            assert any(
                (data / "08_reporting" / "adamson" / f"gpo_vae_{namespace}_{figure}.png").iterdir()
            )

    comparison = pd.read_parquet(
        _latest(data / "08_reporting" / "adamson" / "gpo_vae_comparison.parquet")
    )
    baselines = [
        "control_mean",
        "pooled_training_mean",
        "training_mean",
        "linear_model",
        "split_half_ceiling",
    ]
    assert list(comparison.index) == list(VARIANTS.values()) + baselines
    for column in (
        "pearson_delta_vs_control_top20de_pooled_testcells",
        "r2_delta_vs_control_allgenes_pooled_allcells",
        "jaccard_top50de_testcells",
        "pearson_delta_vs_perturbed_centroid_top20de_testcells",
        "centroid_accuracy_testcells",
        "test_iwelbo",
        "grn_true_positives_top10",
        "reference_auprc",
    ):
        assert column in comparison.columns
    assert np.isfinite(comparison.loc[list(VARIANTS.values()), "test_iwelbo"]).all()
    report = html.unescape(
        _latest(data / "08_reporting" / "adamson" / "gpo_vae_report.html").read_text()
    )
    systema = report.split("Paper and Systema metrics, held-out cells")[1].split("All metrics")[0]
    for predictor, accuracy in comparison["centroid_accuracy_testcells"].items():
        row = re.search(rf"<td>{predictor}</td>((?:\s*<td>[^<]*</td>)+)", systema)
        assert row is not None, predictor
        assert f"<td>{format_number(accuracy)}</td>" in row.group(1), predictor

    run_id = mlflow_run(processed_project, "gpo_vae.adamson")
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run_id, "gpo_vae.adamson.full.train_loss")
    assert [m.step for m in history] == [0, 1]
    assert client.get_metric_history(run_id, "gpo_vae.adamson.no_grn.val_loss")
    metrics = client.get_run(run_id).data.metrics
    assert "gpo_vae.adamson.comparison.gpo_vae.centroid_accuracy_testcells" in metrics
    for namespace in VARIANTS:  # each variant logs the epoch whose weights it kept
        val_loss = client.get_metric_history(run_id, f"gpo_vae.adamson.{namespace}.val_loss")
        best = min(val_loss, key=lambda metric: (metric.value, metric.step)).step
        assert metrics[f"gpo_vae.adamson.{namespace}.best_epoch"] == best
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"gpo_vae.adamson.comparison", "gpo_vae.adamson.report"} <= artifacts
    assert "gpo_vae.adamson.full.model" not in artifacts  # stored once, in data/06_models
