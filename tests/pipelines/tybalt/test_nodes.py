"""Tybalt nodes on synthetic data with planted truth: split, encodings, palette, generation."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.models.tybalt import Tybalt
from genevae.pipelines.tybalt import nodes
from genevae.preprocessing.synthetic_bulk import make_tcga_like

TRAINING = {"max_epochs": 3, "batch_size": 50, "learning_rate": 5e-3, "progress_bar": False}


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    expression, labels = make_tcga_like(n_samples=120, n_genes=60, n_types=3, seed=1)
    obs = pd.DataFrame({"cancer_type": labels.astype(str)}, index=expression.index)
    obs["split"] = np.where(np.arange(len(obs)) % 10 == 0, "validation", "train")
    return ad.AnnData(
        expression.to_numpy(np.float32), obs=obs, var=pd.DataFrame(index=expression.columns)
    )


@pytest.fixture(scope="module")
def trained(adata):
    model_params = {"latent_dim": 4, "kl_warmup": "paper", "kappa": 1.0}
    return nodes.train_tybalt(adata, model_params, TRAINING, {"split_column": "split"})


def test_training_uses_the_data_split_and_reports_final_metrics(adata, trained):
    bundle, history, metrics = trained
    assert bundle.metadata["n_train"] == (adata.obs["split"] == "train").sum()
    assert bundle.metadata["n_validation"] == (adata.obs["split"] == "validation").sum()
    assert bundle.metadata["node_names"] == ["1", "2", "3", "4"]
    assert sorted(history["epoch"].unique()) == [0, 1, 2]
    assert {"final_train_loss", "final_val_loss", "final_val_kl"} <= set(metrics)
    beta = history[(history["split"] == "train") & (history["term"] == "beta")]["value"]
    assert beta.tolist() == [0.0, 1.0, 1.0]  # κ = 1: β = min(1, epoch·κ)


def test_the_bundle_holds_the_best_epoch_after_the_warm_up(trained):
    bundle, history, metrics = trained
    val_loss = history.query("split == 'val' and term == 'loss'").set_index("epoch")["value"]
    best = int(val_loss.loc[1:].idxmin())  # epoch 0 (β = 0) is not comparable
    assert bundle.metadata["best_epoch"] == bundle.metadata["weights_epoch"] == best
    assert metrics["best_epoch"] == {"value": float(best), "step": best}
    assert metrics["best_val_loss"]["value"] == val_loss[best]
    assert metrics["final_val_loss"]["value"] == val_loss[2]
    assert history.loc[history["best"], "epoch"].unique().tolist() == [best]


def test_random_split_when_no_split_column(adata):
    bundle, _, _ = nodes.train_tybalt(
        adata,
        {"latent_dim": 2},
        {**TRAINING, "max_epochs": 1},
        {"split_column": None, "fraction": 0.25},
    )
    assert (bundle.metadata["n_train"], bundle.metadata["n_validation"]) == (90, 30)


def test_unknown_split_labels_are_refused(adata):
    bad = adata.copy()
    bad.obs["split"] = bad.obs["split"].replace({"validation": "test"})
    with pytest.raises(GenevaeInputError, match=r"label\(s\) \['test'\]"):
        nodes.train_tybalt(bad, {"latent_dim": 2}, TRAINING, {"split_column": "split"})
    with pytest.raises(GenevaeInputError, match="no split column 'fold'"):
        nodes.train_tybalt(adata, {"latent_dim": 2}, TRAINING, {"split_column": "fold"})


def test_encodings_match_table_and_weights_are_decoder_kernel(adata, trained):
    bundle = trained[0]
    encoded, table = nodes.encode_samples(bundle, adata)
    assert table.shape == (adata.n_obs, 4)
    np.testing.assert_allclose(encoded.obsm["X_tybalt"], table.to_numpy(), rtol=1e-6)
    assert (table.to_numpy() >= 0).all()  # ReLU means
    assert list(table.index) == list(adata.obs_names)
    weights = nodes.decoder_weight_table(bundle)
    assert weights.shape == (adata.n_vars, 4)
    np.testing.assert_array_equal(weights.to_numpy(), bundle.model.decoder.weight.detach().numpy())


def test_high_weight_genes_are_the_two_tails():
    rng = np.random.default_rng(0)
    weights = pd.DataFrame(rng.normal(size=(500, 2)), columns=["1", "2"])
    weights.loc[7, "1"], weights.loc[9, "1"] = 10.0, -10.0
    table = nodes.high_weight_gene_table(
        weights, {"high_weight_sd": 2.5, "high_weight_centre": True}
    )
    node1 = table[table["node"] == "1"]
    assert {7, 9} <= set(node1["gene"])
    assert set(node1.loc[node1["gene"] == 7, "tail"]) == {"positive"}
    assert set(node1.loc[node1["gene"] == 9, "tail"]) == {"negative"}


def test_palette_keeps_the_na_study_and_needs_both_columns():
    table = pd.DataFrame(
        {"Hex Colors": ["#ED2891", "#000000"], "Study Abbreviation": ["BRCA", np.nan]}
    )
    assert nodes.cancer_type_palette(table) == {"BRCA": "#ED2891", "NA": "#000000"}
    with pytest.raises(GenevaeInputError, match="Study Abbreviation"):
        nodes.cancer_type_palette(table.drop(columns="Study Abbreviation"))


def test_tsne_perplexity_is_clamped_with_a_warning(caplog):
    assert nodes.tsne_perplexity(20, 500) == 20
    with caplog.at_level(logging.WARNING, logger="genevae.pipelines.tybalt.nodes"):
        assert nodes.tsne_perplexity(20, 12) == 11
    assert "perplexity 20" in caplog.text


@pytest.fixture()
def planted():
    """A small decoder and hand-set latent means for three groups of two samples."""
    torch.manual_seed(0)
    model = Tybalt(n_genes=6, latent_dim=3).eval()
    bundle = ModelBundle(
        model, gene_names=[f"g{i}" for i in range(6)], metadata={"node_names": ["1", "2", "3"]}
    )
    latent = np.array(
        [[1, 0, 0], [3, 0, 0], [0, 2, 0], [0, 4, 0], [0, 0, 1], [0, 0, 5]], dtype=np.float32
    )
    obs = pd.DataFrame(
        {"group": ["a", "a", "b", "b", "c", "c"], "tissue": ["t", "n", "t", "n", "t", "n"]},
        index=[f"s{i}" for i in range(6)],
    )
    encoded = ad.AnnData(np.zeros((6, 6), np.float32), obs=obs)
    encoded.obsm["X_tybalt"] = latent
    encoded.uns["tybalt_node_names"] = ["1", "2", "3"]
    return bundle, encoded, latent


def _decoded(model: Tybalt, z) -> np.ndarray:
    with torch.no_grad():
        return model.decode(torch.tensor(np.atleast_2d(z), dtype=torch.float32)).numpy()


def test_latent_arithmetic_decodes_a_minus_b_plus_c(planted):
    bundle, encoded, latent = planted
    specs = [
        {"name": "abc", "groupby": "group", "a": "a", "b": "b", "c": "c"},
        {"name": "pair", "groupby": ["group", "tissue"], "a": "a|t", "b": "b|n"},
    ]
    table = nodes.latent_arithmetic_profiles(bundle, encoded, {"arithmetic": specs})
    assert list(table.index) == ["abc", "pair"]
    expected = np.stack([[2, -3, 3], latent[0] - latent[3]])
    np.testing.assert_allclose(table.to_numpy(), _decoded(bundle.model, expected), rtol=1e-6)
    with pytest.raises(GenevaeInputError, match="label 'z' has no samples"):
        nodes.latent_arithmetic_profiles(
            bundle, encoded, {"arithmetic": [{**specs[0], "name": "x", "c": "z"}]}
        )


def test_interpolation_runs_between_samples_or_first_group_members(planted):
    bundle, encoded, latent = planted
    by_group = {"groupby": "group", "start_group": "b", "end_group": "c", "n_steps": 3}
    table = nodes.interpolation_profiles(bundle, encoded, by_group)
    assert table.index.get_level_values("start").unique().tolist() == ["s2"]
    assert table.index.get_level_values("end").unique().tolist() == ["s4"]
    midpoint = (latent[2] + latent[4]) / 2
    np.testing.assert_allclose(
        table.to_numpy(), _decoded(bundle.model, [latent[2], midpoint, latent[4]]), rtol=1e-6
    )
    by_id = nodes.interpolation_profiles(bundle, encoded, {**by_group, "start": "s1", "end": "s5"})
    np.testing.assert_allclose(by_id.iloc[[0, -1]], _decoded(bundle.model, latent[[1, 5]]))
    with pytest.raises(GenevaeInputError, match="sample 'nope'"):
        nodes.interpolation_profiles(bundle, encoded, {**by_group, "start": "nope"})
    with pytest.raises(GenevaeInputError, match="end_group='q' has no samples"):
        nodes.interpolation_profiles(bundle, encoded, {**by_group, "end_group": "q"})


def test_prior_samples_are_seeded_profiles_in_unit_interval(planted):
    bundle = planted[0]
    params = {"seed": 3, "n_prior_samples": 50}
    first = nodes.sample_from_prior(bundle, params)
    assert first.shape == (50, 6)
    assert ((first.to_numpy() > 0) & (first.to_numpy() < 1)).all()
    pd.testing.assert_frame_equal(first, nodes.sample_from_prior(bundle, params))
    assert not first.equals(nodes.sample_from_prior(bundle, {**params, "seed": 4}))


def test_latent_maps_fit_both_embeddings_on_a_subsample_above_max_cells(monkeypatch):
    from genevae.analysis import latent as latent_module

    rng = np.random.default_rng(0)
    encoded = ad.AnnData(
        np.zeros((60, 2), np.float32),
        obs=pd.DataFrame(
            {"cancer_type": np.repeat(["A", "B"], 30)}, index=[f"s{i}" for i in range(60)]
        ),
    )
    encoded.obsm[nodes.LATENT_KEY] = rng.normal(size=(60, 3))
    encoded.uns["tybalt_node_names"] = ["n1", "n2", "n3"]
    calls = []
    real_embed = latent_module.embed_2d

    def recording_embed(latent, **kwargs):
        calls.append((kwargs["method"], kwargs["max_cells"]))
        return real_embed(latent, **kwargs)

    monkeypatch.setattr(latent_module, "embed_2d", recording_embed)
    params = {"tsne_perplexity": 5, "color_by": ["cancer_type"], "embedding": {"max_cells": 40}}
    figures = nodes.latent_maps(encoded, params)
    assert sorted(calls) == [("tsne", 40), ("umap", 40)]
    assert set(figures) == {"tsne_by_cancer_type.png", "umap_by_cancer_type.png"}
