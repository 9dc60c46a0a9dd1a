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
        "shortfall": {"reference": "module_score", "tolerance": 0.05},
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
    vega_auroc = results.set_index("method").loc["vega", "auroc"]
    shortfall = next(b.table for b in part.blocks if "against the module_score" in b.title)
    assert shortfall["vega AUROC"].tolist() == [vega_auroc]


def _recovery(auroc: dict[str, list[float]]) -> pd.DataFrame:
    """Two replicates at 100, 300 and 1,000 cells with the given per-size mean AUROC."""
    rows = [
        (n, r, method, value + (0.01 if r else -0.01), 0.5, 1 / 6)
        for method, values in auroc.items()
        for n, value in zip((100, 300, 1000), values, strict=True)
        for r in (0, 1)
    ]
    return pd.DataFrame(rows, columns=benchmark.GRN_COLUMNS)


SETTINGS = {
    "dataset": {"n_modules": 30, "n_differential": 5, "effect": 0.06},
    "shortfall": {"reference": "module_score", "tolerance": 0.05},
}


def test_the_report_states_where_vega_falls_short_of_the_module_score_and_by_how_much():
    results = _recovery(
        {"vega": [0.55, 0.60, 0.52], "module_score": [0.86, 0.97, 0.98], "gsea": [0.8, 0.9, 0.98]}
    )
    part = benchmark.benchmark_part(results, pd.DataFrame(), SETTINGS)
    assert (
        "Where vega falls short: its AUROC is not within 0.05 of the module_score baseline's at "
        "3 of 3 sizes (planted effect 0.06) — 100 cells: 0.55 against 0.86 (short by 0.31); "
        "300 cells: 0.60 against 0.97 (short by 0.37); 1000 cells: 0.52 against 0.98 (short by "
        "0.46). The gap does not narrow with more cells (0.31 at 100, 0.46 at 1000)."
    ) in part.summary
    assert "dropout" in part.summary  # the measured reason, docs/pipelines/vega.md
    table = next(b.table for b in part.blocks if "against the module_score" in b.title)
    assert table["shortfall"].round(2).tolist() == [0.31, 0.37, 0.46]
    assert table["within 0.05"].tolist() == [False, False, False]


def test_the_report_says_so_when_vega_is_within_the_tolerance_at_every_size():
    results = _recovery(
        {"vega": [0.84, 0.95, 0.99], "module_score": [0.86, 0.97, 0.98], "gsea": [0.8, 0.9, 0.98]}
    )
    summary = benchmark.benchmark_part(results, pd.DataFrame(), SETTINGS).summary
    assert (
        "vega's AUROC is within 0.05 of the module_score baseline's at every size "
        "(100, 300, 1000 cells; planted effect 0.06)." in summary
    )
    assert "falls short" not in summary


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
