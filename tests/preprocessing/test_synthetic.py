"""The synthetic generators plant the truth they promise: differential modules and GRN edges."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing import synthetic
from genevae.preprocessing.gpo_inputs import log_normalise_counts
from genevae.preprocessing.synthetic import make_module_dataset, make_perturbseq_from_grn
from genevae.preprocessing.wilcoxon import rank_genes_vs_reference


@pytest.fixture(scope="module")
def modules():
    return make_module_dataset(seed=0)


@pytest.fixture(scope="module")
def screen():
    return make_perturbseq_from_grn(seed=0)


def _module_shift(data, genes: list[str]) -> float:
    x = np.asarray(data.adata[:, genes].X)
    stimulated = (data.adata.obs["condition"] == "stimulated").to_numpy()
    return float(x[stimulated].mean() - x[~stimulated].mean())


def test_module_dataset_layout(modules):
    adata = modules.adata
    assert adata.shape == (600, 300)
    assert adata.X.dtype == np.float32
    assert set(adata.obs["condition"].cat.categories) == {"control", "stimulated"}
    assert list(adata.obs["cell_type"].cat.categories) == ["type_0", "type_1", "type_2"]
    counts = adata.layers["counts"]
    np.testing.assert_array_equal(counts, np.round(counts))
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.X, expected, rtol=1e-5, atol=1e-5)
    assert adata.var_names[0] == "GENE_0000"
    assert list(modules.gene_sets)[:2] == ["MODULE_00", "MODULE_01"]
    assert modules.differential_modules == ["MODULE_00", "MODULE_01", "MODULE_02", "MODULE_03"]
    assert all(10 <= len(g) <= 30 for g in modules.gene_sets.values())


def test_differential_modules_go_up_and_null_modules_do_not(modules):
    shifts = {name: _module_shift(modules, g) for name, g in modules.gene_sets.items()}
    planted = [shifts[m] for m in modules.differential_modules]
    null = [s for m, s in shifts.items() if m not in modules.differential_modules]
    assert min(planted) > 1.0
    assert max(null) < 0.0  # only the compositional drift, never up
    assert max(abs(s) for s in null) < min(planted) / 2


def test_differential_modules_have_distinctive_cores(modules):
    differential = set(modules.differential_modules)
    null_genes = {g for m, gs in modules.gene_sets.items() if m not in differential for g in gs}
    for name in modules.differential_modules:
        core = set(modules.gene_sets[name]) - null_genes
        others = {g for m in differential - {name} for g in modules.gene_sets[m]}
        assert len(core) >= 0.8 * len(modules.gene_sets[name])
        assert not core & others


def test_module_dataset_is_reproducible():
    a, b = make_module_dataset(n_cells=50, seed=3), make_module_dataset(n_cells=50, seed=3)
    np.testing.assert_array_equal(a.adata.layers["counts"], b.adata.layers["counts"])
    assert a.gene_sets == b.gene_sets


def test_module_dataset_rejects_impossible_sizes():
    with pytest.raises(GenevaeInputError, match="n_genes=50"):
        make_module_dataset(n_genes=50, n_differential=4)
    with pytest.raises(GenevaeInputError, match="genes_per_module"):
        make_module_dataset(genes_per_module=(20, 10))


def test_perturbseq_layout(screen):
    adata = screen.adata
    assert adata.shape == (9 * 80, 200)
    assert screen.control_label == "non-targeting"
    assert list(adata.obs["perturbation"].cat.categories)[:2] == ["non-targeting", "REG0"]
    assert (adata.obs["perturbation"].value_counts() == 80).all()
    np.testing.assert_array_equal(adata.X, adata.layers["counts"])
    np.testing.assert_array_equal(adata.X, np.round(adata.X))
    assert list(screen.edges.columns) == ["regulator", "target", "weight"]
    assert len(screen.edges) == 8 * 6


def test_knockdown_lowers_regulator_and_moves_targets_by_edge_sign(screen):
    adata = screen.adata
    x = np.log1p(adata.X / adata.X.sum(axis=1, keepdims=True) * 1e4)
    labels = adata.obs["perturbation"].to_numpy()
    control_mean = x[labels == screen.control_label].mean(axis=0)
    for regulator, edges in screen.edges.groupby("regulator"):
        delta = x[labels == regulator].mean(axis=0) - control_mean
        reg_idx = adata.var_names.get_loc(regulator)
        target_idx = adata.var_names.get_indexer(edges["target"])
        others = np.setdiff1d(np.arange(adata.n_vars), [reg_idx, *target_idx])
        assert delta[reg_idx] < -2.0
        np.testing.assert_array_equal(np.sign(delta[target_idx]), -np.sign(edges["weight"]))
        assert np.abs(delta[target_idx]).mean() > 4 * np.abs(delta[others]).mean()


def test_perturbseq_rejects_bad_parameters():
    with pytest.raises(GenevaeInputError, match="knockdown"):
        make_perturbseq_from_grn(knockdown=1.5)
    with pytest.raises(GenevaeInputError, match="n_genes=20"):
        make_perturbseq_from_grn(n_genes=20)
    with pytest.raises(GenevaeInputError, match="n_control_cells=0"):
        make_perturbseq_from_grn(n_control_cells=0)
    with pytest.raises(GenevaeInputError, match="chunk_cells=0"):
        make_perturbseq_from_grn(chunk_cells=0)


SPARSE_SCREEN = {
    "n_cells_per_group": 60,
    "n_genes": 400,
    "n_regulators": 10,
    "n_targets_per_regulator": 4,
    "n_control_cells": 150,
    "library_scale": 0.3,
    "seed": 5,
}


def test_chunked_screen_is_sparse_drawn_block_by_block_and_reproducible(monkeypatch):
    blocks = []
    draw = synthetic._screen_counts
    monkeypatch.setattr(
        synthetic,
        "_screen_counts",
        lambda rng, log_mean, *a: blocks.append(log_mean.shape) or draw(rng, log_mean, *a),
    )
    screen = make_perturbseq_from_grn(**SPARSE_SCREEN, chunk_cells=128).adata
    assert sp.isspmatrix_csr(screen.X) and screen.layers["counts"] is screen.X
    assert screen.shape == (10 * 60 + 150, 400)
    assert screen.obs["perturbation"].value_counts()["non-targeting"] == 150
    assert max(rows for rows, _ in blocks) == 128  # never all cells × genes at once
    assert sum(rows for rows, _ in blocks) == screen.n_obs
    assert 0.05 < screen.X.nnz / np.prod(screen.shape) < 0.6
    np.testing.assert_array_equal(screen.X.data, np.round(screen.X.data))
    again = make_perturbseq_from_grn(**SPARSE_SCREEN, chunk_cells=128).adata
    assert (screen.X != again.X).nnz == 0


def test_chunked_screen_planted_grn_is_recovered_by_the_de_test():
    screen = make_perturbseq_from_grn(**SPARSE_SCREEN, chunk_cells=100)
    log_x = log_normalise_counts(screen.adata.X)
    labels = screen.adata.obs["perturbation"].astype(str).to_numpy()
    table = rank_genes_vs_reference(
        log_x, labels, screen.control_label, screen.adata.var_names, n_genes=5, rank_by_abs=True
    )
    top = table.groupby("group")["names"].apply(set)
    found = [
        target in top[regulator]
        for regulator, target in screen.edges[["regulator", "target"]].itertuples(index=False)
    ]
    assert np.mean(found) >= 0.9
    signs = table.merge(screen.edges, left_on=["group", "names"], right_on=["regulator", "target"])
    assert (np.sign(signs["scores"]) == -np.sign(signs["weight"])).mean() >= 0.95
