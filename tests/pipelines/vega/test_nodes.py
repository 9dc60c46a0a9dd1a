"""Fast checks of the vega nodes' parameter handling (no training)."""

from __future__ import annotations

import pandas as pd
import pytest

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
