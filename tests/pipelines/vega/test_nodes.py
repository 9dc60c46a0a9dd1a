"""Fast checks of the vega nodes' parameter handling (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
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


def test_train_vega_on_a_backed_file_streams_and_matches_training_in_memory(tmp_path):
    """Opened backed, X stays on disk: every batch is read from the file, same weights."""
    import anndata as ad

    from genevae.pipelines.common import expression_data
    from genevae.training import encode

    adata, mask = _inputs()
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    backed = ad.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    try:
        streamed, _, _ = nodes.train_vega(backed, mask, _params())
        on_disk = expression_data(backed)
        assert isinstance(on_disk.arrays["x"], ad.abc.CSRDataset)
        latent = encode(streamed.model, on_disk, batch_size=25)
    finally:
        backed.file.close()
    in_memory, _, _ = nodes.train_vega(adata, mask, _params())
    for key, value in in_memory.model.state_dict().items():
        assert torch.equal(streamed.model.state_dict()[key], value), key
    expected = nodes.encode_module_activities(in_memory, adata).obsm["X_vega"]
    # Same weights (above); encoded in other batch sizes, so equal up to float rounding.
    np.testing.assert_allclose(latent, expected, rtol=1e-5, atol=1e-6)


def _bf_rows(comparison: str, ln_bf: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "comparison": comparison,
            "module": ["IFN", "TCR", "MYC"],
            "ln_bf": ln_bf,
            "mean_diff": ln_bf,
            "n_genes": [20, 20, 20],
            "is_significant": [abs(v) > 3 for v in ln_bf],
            "module_score_ln_bf": [5.0, 0.1, 0.1],
        }
    )


def test_differential_evidence_joins_gsea_seeds_and_control_per_comparison():
    bf = pd.concat([_bf_rows("all", [6.0, -4.0, 0.5]), _bf_rows("innate", [5.0, 1.0, 0.2])])
    seeds = pd.concat(
        [nodes._replicate_rows(bf, "bayes_factor_seed", seed) for seed in (1, 2)]
    )  # replicates identical to the reported seed-0 table: SD 0, top-k overlap 1
    random = nodes._replicate_rows(bf.assign(ln_bf=1.0), "random_mask", 0)
    heldout = pd.DataFrame(
        {
            "model": ["real", "random_mask_0"],
            "kind": ["real", "random_mask"],
            "replicate": [0, 0],
            "validation_reconstruction": [1.0, 2.0],
        }
    )
    gsea = pd.DataFrame({"comparison": "innate", "module": ["IFN"], "fdr": [0.01], "nes": [2.0]})
    params = {
        "analysis": {"seed": 0, "bayes_factor": {"ln_bf_threshold": 3.0}},
        "training": {"seed": 0},
        "control": {"size_tolerance": 1.0, "alpha": 0.3, "top_k": 2, "gsea_fdr_threshold": 0.05},
    }
    table, stability, metrics = nodes.differential_evidence(
        bf, seeds, random, heldout, gsea, params
    )
    table = table.set_index(["comparison", "module"])
    assert (table["ln_bf_bayes_factor_seed_sd"] == 0).all()
    assert stability["top_k_overlap"].tolist() == [1.0, 1.0]
    assert stability["n_replicates"].tolist() == [3, 3]
    assert table.loc[("innate", "IFN"), "gsea_call"] == 1
    assert np.isnan(table.loc[("all", "IFN"), "gsea_call"])
    # each module is compared with its comparison's three size-20 random modules (ln BF 1)
    assert table.loc[("all", "IFN"), "control_empirical_p"] == 0.25
    assert table.loc[("all", "MYC"), "control_empirical_p"] == 1.0
    assert table["control_pass"].tolist() == [True, True, False, True, False, False]
    assert table.loc[("all", "TCR"), "calls_agree"] == np.False_
    assert metrics["all.n_significant_passing_control"]["value"] == 2
    assert metrics["innate.n_significant_agreeing"]["value"] == 1
    assert metrics["heldout_reconstruction_random_mask"]["value"] == 2.0


def _analysis() -> dict:
    return {
        "seed": 0,
        "cell_type_key": "cell_type",
        "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
        "bayes_factor": {"n_samples": 100, "n_pairs": 200},
    }


def test_random_mask_control_trains_one_model_per_mask_and_scores_held_out_cells():
    adata, mask = _inputs()
    params = _params() | {
        "analysis": _analysis(),
        "control": {"n_random_masks": 1, "seed": 0, "n_training_seeds": 1},
    }
    bundle, _, _ = nodes.train_vega(adata, mask, params)
    replicates, heldout = nodes.random_mask_control(adata, mask, bundle, params)
    assert heldout["model"].tolist() == ["real", "random_mask_0"]
    assert (heldout["validation_reconstruction"] > 0).all()
    annotated = [m for m in mask.columns if not m.startswith("UNANNOTATED")]
    assert set(replicates["kind"]) == {"random_mask"} and len(replicates) == len(annotated)
    sizes = replicates.set_index("module")["n_genes"]
    expected = mask[annotated].sum(axis=0).astype(int)
    assert (sizes[annotated] == expected).all()  # the shuffled twins keep their sizes

    off = params | {
        "validation_fraction": 0.0,
        "control": params["control"] | {"n_random_masks": 0},
    }
    replicates, heldout = nodes.random_mask_control(adata, mask, bundle, off)
    assert replicates.empty and heldout.empty


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
