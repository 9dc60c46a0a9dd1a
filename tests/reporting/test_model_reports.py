"""Per-model reports: self-contained pages whose headline, tables and figures come from the
pipeline's own outputs."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from genevae.reporting.model_reports import gpo_vae_report, tybalt_report, vega_report


def _png(title: str) -> bytes:
    figure = Figure(figsize=(2, 2))
    figure.subplots().set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _bf_table() -> pd.DataFrame:
    modules = [f"REACTOME_M{i}" for i in range(20)]
    ln_bf = np.linspace(-5, 10, 20)
    ln_bf[-3:] = 27.631
    return pd.DataFrame(
        {
            "comparison": "condition:stimulated_vs_control",
            "module": modules,
            "ln_bf": ln_bf,
            "mean_diff": np.linspace(-3, 9, 20),
            "n_genes": 10,
            "is_significant": np.abs(ln_bf) > 3,
        }
    )


def test_vega_report_is_self_contained_and_names_the_saturated_top_modules():
    gsea = pd.DataFrame(
        {
            "module": [f"REACTOME_M{i}" for i in range(20)],
            "fdr": np.linspace(0.5, 0.001, 20),
            "neg_log10_fdr": -np.log10(np.linspace(0.5, 0.001, 20)),
            "ln_bf": np.linspace(0, 10, 20),
            "abs_ln_bf": np.linspace(0, 10, 20),
            "set_size": 10,
        }
    )
    top_genes = pd.DataFrame({"module": ["REACTOME_M19"], "gene": ["ISG15"], "weight": [1.0]})
    figures = {
        "volcano": {"volcano_a.png": _png("v")},
        "gsea": _png("g"),
        "umap": {"umap_by_cell_type.png": _png("u")},
        "training": _png("t"),
    }
    page, headline = vega_report(_bf_table(), top_genes, gsea, figures, ln_bf_cap=27.631)

    assert headline[0] == "Top modules by |ln BF|, condition:stimulated_vs_control:"
    assert "M19" in headline[1] and "(saturated)" in headline[1]
    assert '<section id="headline">' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert "http" not in re.sub(r'href="#[^"]*"', "", page.split("<body>")[1])  # no remote files
    assert "3 at the ln BF cap" in page
    assert "Spearman ρ between VEGA |ln BF| and GSEA −log10 FDR over 20 modules: 1.00" in page
    assert "ISG15" in page


def test_vega_report_says_when_gsea_did_not_run():
    page, _ = vega_report(_bf_table(), pd.DataFrame(columns=["module"]), None, {}, ln_bf_cap=27.6)
    assert "GSEA was not run." in page


def test_tybalt_and_gpo_vae_reports_carry_their_tables_and_figures():
    activity = pd.DataFrame({"node": ["3", "1"], "std": [2.0, 1.0]})
    genes = pd.DataFrame({"node": ["3"], "gene": ["ESR1"], "weight": [0.9]})
    page, headline = tybalt_report(activity, genes, {"maps": {"umap.png": _png("m")}})
    assert headline == ["Tybalt: 2 latent nodes; most variable: 3, 1"]
    assert "ESR1" in page and page.count("data:image/png;base64,") == 1

    comparison = pd.DataFrame(
        {"auroc": [0.8, 0.5], "aupr": [0.3, 0.1]},
        index=pd.Index(["gpo_vae", "random"], name="predictor"),
    )
    edges = pd.DataFrame({"regulator": ["ATF4"], "target": ["DDIT3"], "weight": [0.7]})
    page, headline = gpo_vae_report(comparison, edges, {"heatmap": _png("h")})
    assert headline == ["GPO-VAE: 1 top regulatory edges; best auroc: gpo_vae (0.8)"]
    assert "DDIT3" in page and "random" in page


def test_gpo_vae_report_puts_every_baseline_beside_gpo_vae_on_the_systema_metrics():
    predictors = ["gpo_vae", "gpo_vae_no_grn", "gpo_vae_no_artifact", "control_mean"]
    predictors += ["pooled_training_mean", "training_mean", "linear_model", "split_half_ceiling"]
    centroid = [0.312, 0.301, 0.302, 0.388, np.nan, 0.072, 0.081, -0.308]
    comparison = pd.DataFrame(
        {
            "pearson_delta_vs_control_top20de_pooled_testcells": np.linspace(0.1, 0.8, 8),
            "pearson_delta_vs_perturbed_centroid_allgenes_testcells": centroid,
            "centroid_accuracy_testcells": [0.6, 0.58, 0.55, 0.5, 0.5, 0.6, 0.6, 0.65],
            "test_iwelbo": -2248.0,
        },
        index=pd.Index(predictors, name="predictor"),
    )
    page, headline = gpo_vae_report(comparison, pd.DataFrame(columns=["regulator"]), {})
    assert (
        "pearson_delta_vs_perturbed_centroid_allgenes_testcells: gpo_vae 0.312, "
        "best baseline control_mean 0.388" in headline
    )
    assert "centroid_accuracy_testcells: gpo_vae 0.600, best baseline training_mean 0.600" in (
        headline
    )  # the noise ceiling (0.65) is no baseline
    systema = page.split("Paper and Systema metrics, held-out cells")[1].split("All metrics")[0]
    for predictor, value in zip(predictors, centroid, strict=True):
        shown = "–" if np.isnan(value) else f"{value:.3g}"
        assert re.search(rf"<td>{predictor}</td>\s*<td>[^<]*</td>\s*<td>{shown}</td>", systema)
    assert "test_iwelbo" not in systema and "test_iwelbo" in page
