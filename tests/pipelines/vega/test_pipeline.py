"""vega end to end (tiny settings) after data_processing, with its MLflow run."""

from __future__ import annotations

import html

import anndata as ad
import mlflow
import numpy as np
import pandas as pd

from genevae.datasets.fetch import sha256_of
from tests.evidence_checks import assert_page_shows_evidence
from tests.project import latest_version as _latest
from tests.project import mlflow_run


def test_vega_pipeline_writes_outputs_and_mlflow_run(processed_project, run_pipeline):
    run_pipeline("vega")
    data = processed_project / "data"

    activities = ad.read_h5ad(
        _latest(data / "07_model_output" / "kang" / "vega_module_activities.h5ad")
    )
    modules = activities.uns["vega_module_names"]
    assert activities.obsm["X_vega"].shape == (activities.n_obs, len(modules))
    weights = pd.read_parquet(
        _latest(data / "07_model_output" / "kang" / "vega_decoder_weights.parquet")
    )
    mask = pd.read_parquet(
        _latest(data / "04_feature" / "kang" / "gene_module_mask_reactome.parquet")
    )
    assert (weights.to_numpy()[mask.to_numpy() == 0] == 0).all()
    assert (weights.to_numpy() >= 0).all()
    table = pd.read_parquet(
        _latest(data / "08_reporting" / "kang" / "vega_differential_activity.parquet")
    )
    assert set(table["module"]) == set(modules)
    assert np.isfinite(table["ln_bf"]).all()

    evidence = pd.read_parquet(
        _latest(data / "08_reporting" / "kang" / "vega_differential_evidence.parquet")
    )
    assert len(evidence) == len(table) and np.isfinite(evidence["module_score_ln_bf"]).any()
    assert {"calls_agree", "control_empirical_p", "ln_bf_bayes_factor_seed_sd"} <= set(evidence)
    assert evidence["gsea_fdr"].notna().any()  # the GSEA comparison's rows
    heldout = pd.read_parquet(
        _latest(data / "08_reporting" / "kang" / "vega_heldout_reconstruction.parquet")
    )
    assert heldout["kind"].tolist() == ["real", "random_mask", "random_mask"]
    page = html.unescape(_latest(data / "08_reporting" / "kang" / "vega_report.html").read_text())
    assert_page_shows_evidence(
        page.split('<h2 id="evidence">')[1].split("<h2 ")[0], data / "08_reporting" / "kang"
    )

    run_id = mlflow_run(processed_project, "vega.kang")  # one run per pipeline × dataset
    history = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
    assert len(history) == 3  # the control models' trainings stay out of the run
    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    evidence_metrics = {"heldout_reconstruction_random_mask", "heldout_reconstruction_real"} | {
        f"condition_stimulated_vs_control.{name}"
        for name in (
            "n_significant_passing_control",
            "n_significant_agreeing",
            "top10_overlap_bayes_factor_seed",
        )
    }
    assert {f"vega.kang.evidence.{name}" for name in evidence_metrics} <= set(metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"vega.kang.report", "vega.kang.training_curves"} <= artifacts
    assert "vega.kang.model" not in artifacts  # stored once, in data/06_models; the run says where
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    assert "06_models" in tags["data_path.output.vega.kang.model"]
    parent = mlflow.MlflowClient().get_run(tags["mlflow.parentRunId"]).data.tags
    assert parent["runner"] == "SequentialRunner"
    assert parent["kedro_command"] == "kedro run --pipelines vega --env test"
    assert tags["dataset"] == "kang" and tags["raw.kang.raw.sha256"] == sha256_of(
        processed_project / tags["raw.kang.raw.path"]
    )
