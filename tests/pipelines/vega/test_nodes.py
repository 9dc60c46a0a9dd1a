"""Fast checks of the vega nodes' parameter handling (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from genevae.errors import GenevaeInputError
from genevae.pipelines.vega import nodes
from genevae.preprocessing.genesets import build_gene_module_mask
from genevae.preprocessing.synthetic import make_module_dataset


def _params(**model) -> dict:
    return {
        "model": {"hidden": 16, **model},
        "training": {"max_epochs": 1, "progress_bar": False},
        "validation_fraction": 0.2,
    }


def _inputs():
    synthetic = make_module_dataset(
        n_cells=60, n_genes=60, n_modules=4, n_differential=1, genes_per_module=(5, 10)
    )
    mask = build_gene_module_mask(list(synthetic.adata.var_names), synthetic.gene_sets)
    return synthetic.adata, pd.DataFrame(
        mask.mask, index=synthetic.adata.var_names, columns=mask.module_names
    )


def test_a_misspelled_model_parameter_is_named_before_training():
    adata, mask = _inputs()
    with pytest.raises(GenevaeInputError, match=r"\['hiden'\] in vega.model.*'hidden'"):
        nodes.train_vega(adata, mask, _params(hiden=800))


def test_a_one_epoch_model_trains_and_encodes_every_cell():
    adata, mask = _inputs()
    bundle, history, metrics = nodes.train_vega(adata, mask, _params())
    activities = nodes.encode_module_activities(bundle, adata)
    assert activities.obsm["X_vega"].shape == (adata.n_obs, mask.shape[1])
    assert "final_train_loss" in metrics and set(history["split"]) == {"train", "val"}


def test_each_bayes_factor_comparison_logs_its_size_and_strongest_module(caplog):
    adata, mask = _inputs()
    bundle, _, _ = nodes.train_vega(adata, mask, _params())
    analysis = {
        "seed": 0,
        "cell_type_key": "cell_type",
        "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
        "bayes_factor": {"n_samples": 100, "n_pairs": 200},
    }
    with caplog.at_level("INFO", logger="genevae.pipelines.vega.nodes"):
        table = nodes.differential_activity_tables(bundle, adata, analysis)
    strongest = table.loc[table["ln_bf"].abs().idxmax(), "module"]
    [line] = [r.getMessage() for r in caplog.records if "Bayes factors" in r.getMessage()]
    assert line.startswith("Bayes factors condition:stimulated_vs_control: 60 cells")
    assert f"of {mask.shape[1]} modules significant; strongest {strongest}" in line


def test_train_vega_trains_on_views_of_the_loaded_matrix(monkeypatch):
    """The 80/20 split copies no cells: both splits index the AnnData's own CSR arrays."""
    import genevae.training

    adata, mask = _inputs()
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    seen = {}
    original = genevae.training.train_model

    def spy(model, train_data, val_data, settings, **kwargs):
        seen["train"], seen["validation"] = train_data, val_data
        return original(model, train_data, val_data, settings, **kwargs)

    monkeypatch.setattr(genevae.training, "train_model", spy)
    nodes.train_vega(adata, mask, _params())
    train, validation = seen["train"], seen["validation"]
    assert len(train) == 48 and len(validation) == 12
    assert not set(train.rows) & set(validation.rows)
    for split in (train, validation):
        assert np.shares_memory(split.arrays["x"].data, adata.X.data)
        assert np.shares_memory(split.arrays["x"].indices, adata.X.indices)


def test_without_named_modules_the_most_variable_ones_are_plotted():
    import anndata as ad

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(40, 4)) * np.array([0.1, 3.0, 1.0, 5.0])
    activities = ad.AnnData(
        X=np.zeros((40, 1), dtype=np.float32),
        obs=pd.DataFrame({"group": ["a", "b"] * 20}, index=[f"c{i}" for i in range(40)]),
    )
    activities.obsm["X_vega"] = latent
    activities.uns["vega_module_names"] = ["QUIET", "LOUD", "MIDDLE", "UNANNOTATED_0"]
    params = {"plot_modules": ["NOT_IN_THE_MASK"], "color_by": ["group"]}
    figures = nodes.activity_figures(activities, params)
    scatter = figures["module_scatter.png"].axes[0]
    assert (scatter.get_xlabel(), scatter.get_ylabel()) == ("LOUD activity", "MIDDLE activity")
