"""Perturb-seq preprocessing on the planted-GRN screen and on the Adamson 2016 pilot subset."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.preprocessing.perturbseq import (
    find_control_cells,
    hold_out_perturbations,
    log_normalise,
    perturbation_targets,
    select_genes,
    split_cells,
    top_de_genes,
)
from genevae.preprocessing.synthetic import make_perturbseq_from_grn
from tests.conftest import requires_shared_data

ADAMSON = "perturbseq/adamson2016_pilot_upr_360x1000.h5ad"
ADAMSON_CONTROL = "62(mod)_pBA581"


@pytest.fixture(scope="module")
def screen():
    return make_perturbseq_from_grn(n_cells_per_group=60, seed=2)


@pytest.fixture(scope="module")
def screen_log(screen) -> ad.AnnData:
    return log_normalise(screen.adata)


@pytest.fixture(scope="module")
def adamson_log(shared_data) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return log_normalise(ad.read_h5ad(shared_data / ADAMSON))


def test_find_control_cells(screen):
    mask = find_control_cells(screen.adata.obs, "perturbation", screen.control_label)
    assert mask.sum() == 60 and mask[:60].all()
    with pytest.raises(
        GenevaeInputError, match=r"control_label.*available labels: \['non-targeting'"
    ):
        find_control_cells(screen.adata.obs, "perturbation", "ctrl")
    with pytest.raises(GenevaeInputError, match="no column 'gene'.*perturbation_key"):
        find_control_cells(screen.adata.obs, "gene", "ctrl")


def test_log_normalise_keeps_counts_and_rejects_non_counts(screen, screen_log):
    counts = screen.adata.layers["counts"]
    np.testing.assert_array_equal(screen_log.layers["counts"].toarray(), counts)
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(screen_log.X.toarray(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(GenevaeInputError, match="not integer counts"):
        log_normalise(ad.AnnData(X=screen_log.X.toarray()))
    negative = ad.AnnData(X=-np.ones((3, 2), dtype=np.float32))
    with pytest.raises(GenevaeInputError, match="negative"):
        log_normalise(negative)


def test_select_genes_keeps_every_perturbed_gene(screen, screen_log):
    regulators = perturbation_targets(screen.adata.obs, "guide_gene", screen.control_label)
    assert regulators == [f"REG{r}" for r in range(8)]
    with pytest.warns(UserWarning, match="not measured.*NOT_A_GENE"):
        selected = select_genes(screen_log, 20, [*regulators, "NOT_A_GENE"])
    assert set(regulators) <= set(selected.var_names)
    assert selected.var["highly_variable"].sum() == 20
    assert selected.var["perturbed_gene"].sum() == 8
    assert list(selected.var_names) == [g for g in screen_log.var_names if g in selected.var_names]
    with pytest.raises(GenevaeInputError, match="log_normalise"):
        select_genes(screen.adata, 20, regulators)


def test_top_de_genes_recover_planted_targets(screen, screen_log):
    n_targets = 6
    de = top_de_genes(screen_log, "perturbation", screen.control_label, n_genes=n_targets + 1)
    assert list(de.columns) == [
        "perturbation",
        "rank",
        "gene",
        "score",
        "logfoldchange",
        "pval",
        "pval_adj",
    ]
    assert sorted(de["perturbation"].unique()) == [f"REG{r}" for r in range(8)]
    for regulator, rows in de.groupby("perturbation"):
        truth = {regulator, *screen.edges.loc[screen.edges["regulator"] == regulator, "target"]}
        assert len(truth & set(rows["gene"])) >= n_targets - 1
        own = rows[rows["gene"] == regulator]
        assert len(own) == 1 and own["logfoldchange"].iloc[0] < -2


def test_top_de_genes_rejects_counts_and_unknown_control(screen, screen_log):
    with pytest.raises(GenevaeInputError, match="log_normalise"):
        top_de_genes(screen.adata, "perturbation", screen.control_label)
    with pytest.raises(GenevaeInputError, match="available labels"):
        top_de_genes(screen_log, "perturbation", "non_targeting")


@requires_shared_data
def test_adamson_controls_targets_and_knockdown(adamson_log):
    obs = adamson_log.obs
    assert find_control_cells(obs, "perturbation", ADAMSON_CONTROL).sum() == 60
    with pytest.raises(GenevaeInputError, match=r"62\(mod\)_pBA581"):
        find_control_cells(obs, "perturbation", "non-targeting")
    targets = perturbation_targets(obs, "guide_gene", "non-targeting")
    assert targets == ["BHLHE40", "EP300", "SNAI1", "SPI1", "ZNF326"]
    selected = select_genes(adamson_log, 200, targets)
    assert set(targets) <= set(selected.var_names) and selected.n_vars <= 205
    de = top_de_genes(adamson_log, "perturbation", ADAMSON_CONTROL, n_genes=20)
    assert de.groupby("perturbation").size().to_dict() == {
        label: 20 for label in obs["perturbation"].unique() if label != ADAMSON_CONTROL
    }
    znf326 = de[de["perturbation"] == "ZNF326_pDS262"].iloc[0]
    assert znf326["gene"] == "ZNF326" and znf326["logfoldchange"] < -1  # CRISPRi knockdown


def test_split_cells_fractions_and_reproducibility(screen):
    obs = screen.adata.obs
    split = split_cells(obs, seed=0)
    assert split.index.equals(obs.index)
    counts = split.value_counts()
    n = len(obs)
    assert counts["test"] == pytest.approx(0.20 * n, abs=1)
    assert counts["validation"] == pytest.approx(0.16 * n, abs=2)
    assert split.equals(split_cells(obs, seed=0))
    assert not split.equals(split_cells(obs, seed=1))
    assert (pd.crosstab(obs["perturbation"], split) > 0).all().all()
    with pytest.raises(GenevaeInputError, match="fractions"):
        split_cells(obs, fractions=(0.5, 0.5, 0.5))


def test_hold_out_perturbations(screen):
    obs = screen.adata.obs
    split = hold_out_perturbations(obs, ["REG1", "REG2"], split=split_cells(obs))
    held = obs["perturbation"].isin(["REG1", "REG2"]).to_numpy()
    assert (split[held] == "test").all()
    assert set(split[~held]) == {"train", "validation", "test"}
    assert (
        hold_out_perturbations(obs, ["REG3"])[~(obs["perturbation"] == "REG3")] == "train"
    ).all()
    with pytest.raises(GenevaeInputError, match=r"\['REG99'\] are not in obs"):
        hold_out_perturbations(obs, ["REG99"])
