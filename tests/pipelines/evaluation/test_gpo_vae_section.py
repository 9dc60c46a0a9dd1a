"""The report's GPO-VAE part shows every variant beside every baseline, with Systema metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.nodes import gpo_vae_results

PARAMS = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "conf/base/parameters_evaluation.yml").read_text()
)["evaluation"]["gpo_vae"]
BASELINES = ["control_mean", "pooled_training_mean", "training_mean", "linear_model"]


def test_gpo_vae_part_marks_baselines_and_headlines_systema_metrics():
    predictors = [*PARAMS["variants"], *BASELINES, "split_half_ceiling"]
    columns = [
        "pearson_delta_vs_control_top20de_testcells",
        "pearson_delta_vs_perturbed_centroid_top20de_testcells",
        "pearson_delta_vs_perturbed_centroid_top20de_allcells",
        "centroid_accuracy_testcells",
    ]
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.uniform(size=(len(predictors), 4)), index=predictors, columns=columns)
    table.index.name = "predictor"
    part = gpo_vae_results(Loaded(table, "gpo_vae_comparison", None, None), PARAMS)
    metrics = part.metrics
    assert set(metrics["method"]) == set(predictors)
    baseline_rows = metrics[metrics["is_baseline"]]
    assert set(baseline_rows["method"]) == {*BASELINES, "split_half_ceiling"}
    headline = set(metrics.loc[metrics["headline"], "metric"])
    assert {
        "pearson_delta_vs_perturbed_centroid_top20de_testcells",
        "centroid_accuracy_testcells",
    } <= headline
    subsets = metrics.set_index("metric")["subset"]
    assert (
        subsets["pearson_delta_vs_perturbed_centroid_top20de_allcells"] == "all-cells reference"
    ).all()
    assert (subsets["centroid_accuracy_testcells"] == "test cells").all()
