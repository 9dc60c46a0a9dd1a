"""Evidence nodes on synthetic data with planted differential modules (trains 4 small models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.pipelines.vega import nodes
from genevae.preprocessing.genesets import build_gene_module_mask
from genevae.preprocessing.synthetic import make_module_dataset

COMPARISON = "condition:stimulated_vs_control"


def _params() -> dict:
    return {
        "model": {"hidden": 64},
        "training": {
            "max_epochs": 15,
            "learning_rate": 3e-3,
            "batch_size": 64,
            "seed": 0,
            "progress_bar": False,
            "checkpoint_dir": None,
        },
        "validation_fraction": 0.2,
        "analysis": {
            "seed": 0,
            "cell_type_key": "cell_type",
            "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
            "bayes_factor": {
                "n_seeds": 2,
                "n_samples": 1000,
                "n_pairs": 2000,
                "ln_bf_threshold": 3.0,
                "mean_diff_threshold": 0.0,
            },
        },
        "control": {
            "n_random_masks": 2,
            "seed": 0,
            "size_tolerance": 2.0,
            "alpha": 0.05,
            "n_training_seeds": 2,
            "top_k": 5,
            "gsea_fdr_threshold": 0.05,
        },
    }


@pytest.fixture(scope="module")
def evidence():
    data = make_module_dataset(
        n_cells=600, n_genes=300, n_modules=40, n_differential=2, genes_per_module=(10, 20)
    )
    built = build_gene_module_mask(list(data.adata.var_names), data.gene_sets)
    mask = pd.DataFrame(built.mask, index=data.adata.var_names, columns=built.module_names)
    params = _params()
    bundle, _, _ = nodes.train_vega(data.adata, mask, params)
    bf = nodes.differential_activity_tables(bundle, data.adata, params["analysis"])
    bf_replicates = nodes.bayes_factor_replicates(bundle, data.adata, params["analysis"])
    control, heldout = nodes.random_mask_control(data.adata, mask, bundle, params)
    no_gsea = pd.DataFrame(columns=["comparison", "module", "fdr", "nes"])
    table, stability, metrics = nodes.differential_evidence(
        bf, bf_replicates, control, heldout, no_gsea, params
    )
    return data, table.set_index("module"), stability, heldout, control, metrics


@pytest.mark.slow
def test_planted_modules_beat_their_random_twins_and_null_modules_do_not(evidence):
    data, table, *_ = evidence
    planted = table.loc[data.differential_modules]
    assert planted["is_significant"].all() and planted["control_pass"].all()
    assert (planted["control_empirical_p"] < 0.05).all()
    assert (planted["control_n_matched"] >= 20).all()
    null = table[table.index.str.startswith("MODULE_") & ~table.index.isin(planted.index)]
    assert (null["control_empirical_p"] > 0.05).mean() >= 0.9
    assert null["control_empirical_p"].median() > 0.3


@pytest.mark.slow
def test_module_score_column_recovers_the_planted_modules_and_agrees_with_vega(evidence):
    data, table, *_ = evidence
    planted = table.loc[data.differential_modules]
    assert (planted["module_score_ln_bf"] > 3).all() and planted["module_score_significant"].all()
    assert planted["calls_agree"].all() and (planted["vega_call"] == 1).all()
    assert np.isnan(table.loc["UNANNOTATED_0", "module_score_ln_bf"])


@pytest.mark.slow
def test_real_mask_reconstructs_held_out_cells_better_and_stability_is_reported(evidence):
    data, table, stability, heldout, control, metrics = evidence
    by_kind = heldout.groupby("kind")["validation_reconstruction"]
    assert by_kind.max()["real"] < by_kind.min()["random_mask"]
    assert set(control["kind"]) == {"random_mask", "training_seed"}
    assert not control["module"].str.startswith("UNANNOTATED").any()
    assert set(stability["kind"]) == {"bayes_factor_seed", "training_seed"}
    assert stability["n_replicates"].tolist() == [2, 2]
    assert (table["ln_bf_bayes_factor_seed_sd"] >= 0).all()
    assert metrics["heldout_reconstruction_real"]["value"] == pytest.approx(
        heldout.loc[heldout["kind"] == "real", "validation_reconstruction"].item()
    )
    key = f"{COMPARISON.replace(':', '_')}.n_significant_passing_control"
    assert metrics[key]["value"] >= 2
