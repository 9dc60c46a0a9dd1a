"""VEGA generalisation nodes with real (tiny) VEGA fits on synthetic cells."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation import generalisation
from genevae.pipelines.evaluation.adapters import merged_vega_params
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.vega.nodes import train_vega
from genevae.preprocessing.genesets import build_gene_module_mask
from genevae.preprocessing.synthetic import make_module_dataset

VEGA_PARAMS = {
    "gene_module_collection": "synthetic",
    "validation_fraction": 0.2,
    "covariate_keys": [],
    "model": {
        "hidden": 16,
        "n_hidden_layers": 1,
        "dropout": 0.1,
        "z_dropout": 0.1,
        "positive_decoder": True,
        "encode_covariates": False,
        "likelihood": "gaussian",
        "beta": 1.0e-4,
    },
    "training": {
        "max_epochs": 2,
        "batch_size": 64,
        "learning_rate": 1.0e-3,
        "seed": 0,
        "checkpoint_dir": None,
        "progress_bar": False,
    },
}
GENERALISATION = {
    "enabled": True,
    "cell_type_key": "cell_type",
    "condition_key": "condition",
    "stimulated": "stimulated",
    "control": "control",
    "cell_types": ["type_0"],
    "settings_from": "parameters",
    "seed": 0,
    "training": {},
    "model": {},
    "max_cell_epochs": None,
    "comparison": {
        "n_resamples": 2,
        "n_cells": 50,
        "top_k": 3,
        "r2_kind": "pearson_squared",
        "exclude_prefix": "UNANNOTATED",
        "bayes_factor": {"mode": "vanilla", "n_samples": 100, "n_pairs": 200},
    },
    "technical": {
        "enabled": True,
        "study_key": None,
        "studies": None,
        "stratify_keys": ["cell_type", "condition"],
        "min_cells": 10,
    },
}


@pytest.fixture(scope="module")
def synthetic():
    data = make_module_dataset(
        n_cells=160, n_genes=80, n_modules=6, n_differential=2, genes_per_module=(6, 12),
        n_cell_types=2, seed=0,
    )  # fmt: skip
    built = build_gene_module_mask(data.adata.var_names, data.gene_sets, add_nodes=1)
    mask = pd.DataFrame(built.mask, index=data.adata.var_names, columns=built.module_names)
    return data.adata, mask


def test_biological_experiment_retrains_a_full_model_without_a_vega_model(synthetic):
    adata, mask = synthetic
    table = generalisation.biological_experiment(adata, mask, None, VEGA_PARAMS, GENERALISATION)
    assert list(table.columns) == generalisation.BIOLOGICAL_COLUMNS
    assert len(table) == 2 and (table["cell_type"] == "type_0").all()
    assert table["top_k_overlap"].between(0, 1).all()
    assert table["full_model"].iloc[0].startswith("retrained")
    assert "max_epochs 2" in table["settings"].iloc[0]


def test_biological_experiment_reuses_the_vega_model_with_its_own_settings(synthetic):
    adata, mask = synthetic
    trained = merged_vega_params(VEGA_PARAMS)
    bundle, _, _ = train_vega(adata, mask, trained)
    loaded = Loaded(bundle, "vega.kang.model", "2026-01-01T00.00.00.000Z", None)
    other_env = copy.deepcopy(VEGA_PARAMS)
    other_env["training"]["max_epochs"] = 500  # the environment's vega params differ
    params = GENERALISATION | {"settings_from": "model"}
    table = generalisation.biological_experiment(adata, mask, loaded, other_env, params)
    assert table["full_model"].iloc[0] == "vega.kang.model 2026-01-01T00.00.00.000Z"
    assert "max_epochs 2" in table["settings"].iloc[0]
    overridden = params | {"training": {"max_epochs": 1}}
    plan = generalisation.fit_plan(adata, mask, loaded, other_env, overridden)
    assert plan.full_model is None and plan.params["training"]["max_epochs"] == 1


def test_technical_experiment_scores_each_cell_type_of_the_second_half(synthetic):
    adata, mask = synthetic
    table = generalisation.technical_experiment(adata, mask, None, VEGA_PARAMS, GENERALISATION)
    assert list(table.columns) == generalisation.TECHNICAL_COLUMNS
    assert sorted(table["cell_type"].unique()) == ["type_0", "type_1"]
    part = generalisation.generalisation_parts(
        generalisation.biological_experiment(adata, mask, None, VEGA_PARAMS, GENERALISATION),
        table,
        GENERALISATION,
    )
    assert part.available
    titles = [block.title for block in part.blocks]
    assert any("Biological" in t for t in titles) and any("Technical" in t for t in titles)
    overall = part.metrics[part.metrics["subset"] == "mean over cell types"]
    assert set(overall["metric"]) == {
        "top3_overlap_held_out_vs_full",
        "top3_overlap_out_vs_in_sample",
    }


def test_disabled_experiments_return_empty_tables_and_an_absent_part(synthetic):
    adata, mask = synthetic
    off = GENERALISATION | {"enabled": False}
    biological = generalisation.biological_experiment(adata, mask, None, VEGA_PARAMS, off)
    technical = generalisation.technical_experiment(adata, mask, None, VEGA_PARAMS, off)
    assert biological.empty and technical.empty
    assert not generalisation.generalisation_parts(biological, technical, off).available


def test_epoch_budget_caps_epochs_times_cells_and_keeps_small_data_as_trained():
    assert generalisation.budgeted_epochs(20, 1_943, 8_000_000) == 20
    assert generalisation.budgeted_epochs(400, 20_000, 8_000_000) == 400
    assert generalisation.budgeted_epochs(400, 200_000, 8_000_000) == 40
    assert generalisation.budgeted_epochs(5, 10**9, 8_000_000) == 1
    assert generalisation.budgeted_epochs(300, 10**6, None) == 300
    with pytest.raises(GenevaeInputError, match="max_cell_epochs"):
        generalisation.budgeted_epochs(5, 100, 0)


def test_a_binding_budget_retrains_the_full_model_with_the_same_epochs(synthetic):
    adata, mask = synthetic  # 160 cells, the model trained 2 epochs: 320 cells seen
    bundle, _, _ = train_vega(adata, mask, merged_vega_params(VEGA_PARAMS))
    loaded = Loaded(bundle, "vega.kang.model", "2026-01-01T00.00.00.000Z", None)
    params = GENERALISATION | {"settings_from": "model"}
    loose = generalisation.fit_plan(adata, mask, loaded, VEGA_PARAMS, params)
    assert loose.full_model is not None and loose.params["training"]["max_epochs"] == 2
    tight = generalisation.fit_plan(
        adata, mask, loaded, VEGA_PARAMS, params | {"max_cell_epochs": 200}
    )
    assert tight.full_model is None and tight.params["training"]["max_epochs"] == 1
