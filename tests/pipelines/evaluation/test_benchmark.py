"""Ground-truth benchmarks with real (tiny) VEGA and GPO-VAE fits on planted synthetic data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from genevae.pipelines.evaluation import benchmark
from tests.pipelines.evaluation.test_generalisation import VEGA_PARAMS


def test_planted_module_benchmark_scores_three_methods_per_size():
    params = {
        "enabled": True,
        "sizes": [120],
        "n_replicates": 1,
        "seed": 0,
        "dataset": {
            "n_genes": 80,
            "n_modules": 6,
            "n_differential": 2,
            "genes_per_module": [6, 12],
            "effect": 1.0,
            "n_cell_types": 2,
        },  # fmt: skip
        "training": {"max_epochs": 2},
        "model": {"hidden": 16},
        "bayes_factor": {"mode": "vanilla", "n_samples": 100, "n_pairs": 200},
        "module_score": {"ctrl_size": 10, "n_bins": 10, "test": "welch"},
        "gsea": {"permutation_num": 20, "min_size": 3, "max_size": 1000},
        "section": {},
    }
    results = benchmark.planted_module_benchmark(VEGA_PARAMS, params)
    assert sorted(results["method"]) == ["gsea", "module_score", "vega"]
    assert results[["auroc", "auprc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (results["prevalence"] == 2 / 6).all()
    # module scores see a planted effect of 1.0 in 60 stimulated cells
    assert results.set_index("method").loc["module_score", "auroc"] == 1.0
    part = benchmark.benchmark_part(results, pd.DataFrame(columns=benchmark.GRN_COLUMNS), params)
    assert part.available and set(part.metrics["metric"]) == {"auroc", "auprc"}
    assert set(part.metrics["model"]) == {"vega"}


def test_planted_grn_benchmark_scores_gpo_vae_beside_effect_sizes():
    gpo_params = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "conf/base/parameters_gpo_vae.yml").read_text()
    )["gpo_vae"]
    base = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "conf/base/parameters_evaluation.yml").read_text()
    )["evaluation"]["benchmark"]
    settings = base | {"grn": base["grn"] | {"sizes": [30], "n_replicates": 1,
                                              "training": {"max_epochs": 2}}}  # fmt: skip
    results = benchmark.planted_grn_benchmark(gpo_params, settings)
    assert list(results.columns) == benchmark.GRN_COLUMNS
    assert sorted(results["method"]) == ["effect_size", "gpo_vae"]
    assert results[["auroc", "auprc"]].apply(lambda c: c.between(0, 1)).all().all()
    # the planted effects are large: raw effect sizes already rank true edges first
    assert results.set_index("method").loc["effect_size", "auroc"] > 0.9
    part = benchmark.benchmark_part(pd.DataFrame(columns=["n_cells"]), results, settings)
    assert set(part.metrics["model"]) == {"gpo_vae"}
    assert "GRN edges" in part.blocks[0].title
    off = settings | {"grn": settings["grn"] | {"enabled": False}}
    assert benchmark.planted_grn_benchmark(gpo_params, off).empty
