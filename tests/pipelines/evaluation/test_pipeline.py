"""evaluation end to end (conf/test) after data_processing and vega, with its MLflow run."""

from __future__ import annotations

from html import unescape

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.evidence_checks import assert_page_shows_evidence
from tests.project import latest_version, mlflow_run

# The experiments that retrain VEGA run in the slow test; the default one scores the model.
FAST = {"evaluation": {"generalisation": {"enabled": False}, "benchmark": {"enabled": False}}}
HALLMARK = {"vega": {"gene_module_collection": "hallmark"}}  # 50 modules: quick GSEA/scores


def _report(project) -> str:
    return latest_version(project / "data" / "08_reporting" / "evaluation_report.html").read_text()


@pytest.fixture(scope="module")
def evaluated(processed_project, run_pipeline):
    run_pipeline("vega", params=HALLMARK)
    run_pipeline("evaluation", params=FAST | HALLMARK)
    return processed_project


def test_report_scores_vega_beside_baselines_and_marks_models_not_run(evaluated):
    html = _report(evaluated)
    for anchor in ('id="overview"', 'id="vega"', 'id="tybalt"', 'id="gpo_vae"', 'id="provenance"'):
        assert anchor in html
    for text in ("Latent quality", "pca50", "gene_mean", "Agreement between methods", "gsea"):
        assert text in html
    assert html.count('src="data:image/png;base64,') >= 6
    if not (
        evaluated / "data" / "07_model_output" / "tcga" / "tybalt_encoded_samples.h5ad"
    ).exists():
        assert "Tybalt has not been run yet" in html
    assert "The generalisation experiments are disabled" in html
    assert "Evidence for the top significant modules" in html
    assert_page_shows_evidence(unescape(html), evaluated / "data" / "08_reporting" / "kang")
    vega_run = mlflow_run(evaluated, "vega.kang")
    assert f"/runs/{vega_run}" in html  # the model's version links to the run that trained it


def test_tables_hold_each_model_beside_its_baselines(evaluated):
    reporting = evaluated / "data" / "08_reporting"
    scores = pd.read_parquet(latest_version(reporting / "evaluation_scores.parquet"))
    vega = scores[scores["model"] == "vega"]
    latent = vega[(vega["family"] == "latent") & (vega["subset"] == "cell_type")]
    assert set(latent["method"]) == {"vega", "pca50", "chance"}
    assert latent["value"].between(-1, 1).all()
    assert {"spearman", "call_jaccard"} <= set(vega.loc[vega["family"] == "agreement", "metric"])
    comparison = pd.read_parquet(latest_version(reporting / "evaluation_model_comparison.parquet"))
    assert {"model", "metric", "score", "pca", "chance", "gsea"} <= set(comparison.columns)
    silhouette = comparison.set_index(["model", "metric", "subset"]).loc[
        ("vega", "silhouette", "cell_type")
    ]
    assert np.isfinite(silhouette[["score", "pca"]].astype(float)).all()
    markdown = latest_version(reporting / "evaluation_model_comparison.md").read_text()
    assert markdown.startswith("| model | family | metric | subset |")
    modules = pd.read_parquet(
        latest_version(reporting / "evaluation" / "vega_module_comparison.parquet")
    )
    assert {"ln_bf", "fdr", "score_fdr", "set_size"} <= set(modules.columns)
    assert len(modules) > 10


def test_evaluation_mlflow_run_has_report_metrics_and_input_versions(evaluated):
    run_id = mlflow_run(evaluated, "evaluation")
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert "data_version.input.vega.kang.model" in run.data.tags
    assert any(key.startswith("evaluation.vega.latent.silhouette") for key in run.data.metrics)
    assert "evaluation_report" in {a.path for a in client.list_artifacts(run_id)}


def test_one_namespace_refreshes_its_section_and_keeps_the_others(evaluated, run_pipeline):
    before = _report(evaluated)
    run_pipeline(
        "evaluation",
        params=FAST | HALLMARK,
        namespaces=["evaluation.tybalt", "evaluation.report"],
    )
    after = _report(evaluated)
    assert after != before
    assert "Agreement between methods" in after  # the VEGA section saved by the earlier run


@pytest.mark.slow
def test_generalisation_and_benchmark_run_on_kang_and_synthetic_data(evaluated, run_pipeline):
    run_pipeline("evaluation", params=HALLMARK)
    reporting = evaluated / "data" / "08_reporting" / "evaluation"
    biological = pd.read_parquet(latest_version(reporting / "generalisation_biological.parquet"))
    assert set(biological["cell_type"]) == {"CD14+Mono", "B"}
    assert biological["top_k_overlap"].between(0, 1).all()
    assert biological["full_model"].iloc[0].startswith("vega.kang.model")  # same settings: reused
    technical = pd.read_parquet(latest_version(reporting / "generalisation_technical.parquet"))
    assert technical["cell_type"].nunique() >= 3
    benchmark = pd.read_parquet(latest_version(reporting / "benchmark_planted_modules.parquet"))
    assert set(benchmark["method"]) == {"vega", "gsea", "module_score"}
    assert "paper mean 0.715" not in _report(evaluated)  # the figure is an image, not text
    assert "Biological generalisation" in _report(evaluated)
