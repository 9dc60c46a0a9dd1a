"""GPO-VAE inputs: planted truth for OT matching, DE nodes, QC, counterfactuals and the bundle."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing.gpo_inputs import (
    build_gpo_inputs,
    counterfactual_targets,
    delta_x,
    dosage_matrix,
    extra_node_genes,
    log_normalise_counts,
    mad_thresholds,
    match_controls_ot,
    match_controls_per_split,
    perturbation_weights,
    qc_flags,
    qc_metrics,
    rank_genes_long,
)
from genevae.preprocessing.perturbseq import split_cells
from genevae.preprocessing.synthetic import make_perturbseq_from_grn


# ---------------------------------------------------------------- matching and ΔX
def _planted_pairs(rng: np.random.Generator, n: int = 40, n_genes: int = 20):
    perturbed = rng.normal(0.0, 10.0, size=(n, n_genes))
    order = rng.permutation(n)
    controls = perturbed[order] + rng.normal(0.0, 1e-3, size=(n, n_genes))
    truth = np.argsort(order)  # perturbed cell i sits at row truth[i] of controls
    return perturbed, controls, truth


def test_ot_matching_recovers_planted_pairs():
    perturbed, controls, truth = _planted_pairs(np.random.default_rng(0))
    np.testing.assert_array_equal(match_controls_ot(perturbed, controls), truth)


def test_ot_matching_with_extra_controls_still_finds_twins():
    rng = np.random.default_rng(1)
    perturbed, controls, truth = _planted_pairs(rng, n=20)
    decoys = rng.normal(50.0, 10.0, size=(30, controls.shape[1]))
    matched = match_controls_ot(perturbed, np.vstack([controls, decoys]))
    np.testing.assert_array_equal(matched, truth)


def test_ot_matching_rejects_mismatched_genes():
    with pytest.raises(GenevaeInputError, match="same genes"):
        match_controls_ot(np.zeros((3, 4)), np.zeros((3, 5)))


def test_matching_per_split_stays_within_split():
    rng = np.random.default_rng(2)
    x_a, c_a, truth_a = _planted_pairs(rng, n=15)
    x_b, c_b, truth_b = _planted_pairs(rng, n=15)
    features = np.vstack([x_a, c_a, x_b, c_b])
    labels = ["A"] * 15 + ["ctrl"] * 15 + ["B"] * 15 + ["ctrl"] * 15
    split = ["train"] * 30 + ["test"] * 30
    matched = match_controls_per_split(sp.csr_matrix(features), labels, split, "ctrl")
    np.testing.assert_array_equal(matched[:15], 15 + truth_a)
    np.testing.assert_array_equal(matched[30:45], 45 + truth_b)
    assert (matched[15:30] == -1).all() and (matched[45:] == -1).all()


def test_matching_interleaved_cells_equals_one_ot_per_split_and_label():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(90, 4))
    labels = rng.choice(["ctrl", "A", "B", "C"], size=90)
    split = rng.choice(["train", "test"], size=90)
    matched = match_controls_per_split(features, labels, split, "ctrl")
    for part in ("train", "test"):
        controls = np.flatnonzero((split == part) & (labels == "ctrl"))
        for label in ("A", "B", "C"):
            cells = np.flatnonzero((split == part) & (labels == label))
            local = match_controls_ot(features[cells], features[controls])
            np.testing.assert_array_equal(matched[cells], controls[local])
    assert (matched[labels == "ctrl"] == -1).all()


def test_matching_needs_controls_in_every_split():
    with pytest.raises(GenevaeInputError, match="split 'test' has perturbed cells but no"):
        match_controls_per_split(
            np.ones((3, 2)), ["ctrl", "A", "A"], ["train", "train", "test"], "ctrl"
        )


def test_delta_x_is_absolute_difference_with_zero_for_controls_and_nan():
    x = np.array([[1.0, 5.0], [3.0, 2.0], [np.nan, 0.0]])
    delta = delta_x(x, np.array([1, -1, 1]))
    np.testing.assert_allclose(delta, [[2.0, 3.0], [0.0, 0.0], [0.0, 2.0]])


# ---------------------------------------------------------------- DE nodes and dosage
@pytest.fixture
def crafted_de_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": ["A", "A", "A", "B", "C"],
            "names": ["X_DOWN_NS", "Y_UP", "B", "Z_DOWN_NS", "W_WEAK"],
            "logfoldchanges": [-4.0, 4.0, 5.0, -4.0, 1.0],
            "pvals_adj": [0.5, 0.001, 1e-5, 0.3, 1e-9],
            "scores": [3.0, 2.0, 9.0, -1.0, 5.0],
        }
    )


def test_extra_nodes_paper_mode(crafted_de_table):
    # A's best hit is B (perturbed, so no extra node); C has no strong hit and is skipped.
    de = crafted_de_table.iloc[[0, 1, 3, 4]]
    assert extra_node_genes(de, ["A", "B", "C"], 3.0) == ["Y_UP"]
    assert extra_node_genes(crafted_de_table, ["A", "B", "C"], 3.0) == []


def test_extra_nodes_precedence_bug_lets_non_significant_down_genes_through(crafted_de_table):
    de = crafted_de_table.iloc[[0, 1, 3, 4]]
    buggy = extra_node_genes(de, ["A", "B", "C"], 3.0, filter_mode="original_precedence_bug")
    assert buggy == ["X_DOWN_NS", "Z_DOWN_NS"]
    assert buggy != extra_node_genes(de, ["A", "B", "C"], 3.0, filter_mode="paper")


def test_extra_nodes_input_errors(crafted_de_table):
    with pytest.raises(GenevaeInputError, match="filter_mode='strict'"):
        extra_node_genes(crafted_de_table, ["A"], 3.0, filter_mode="strict")
    with pytest.raises(GenevaeInputError, match=r"de_table lacks column\(s\) \['scores'\]"):
        extra_node_genes(crafted_de_table.drop(columns="scores"), ["A"], 3.0)


def test_dosage_matrix_one_hot_over_nodes():
    labels = pd.Series(["B", "ctrl", "A", "B"])
    dosage = dosage_matrix(labels, ["A", "B", "EXTRA"], "ctrl")
    expected = [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]]
    np.testing.assert_array_equal(dosage, expected)
    assert dosage.dtype == np.float32
    with pytest.raises(GenevaeInputError, match=r"\['Q'\] are not in node_names"):
        dosage_matrix(pd.Series(["Q"]), ["A"], "ctrl")


# ---------------------------------------------------------------- QC and counterfactuals
def _qc_adata(seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    genes = ["MT-CO1", "RPS3", "RPL7", "HBA1", "HBG1"] + [f"G{i}" for i in range(60)]
    means = np.concatenate([[20.0, 30.0, 30.0, 2.0, 50.0], rng.uniform(0.5, 10.0, 60)])
    counts = rng.poisson(means, size=(300, len(genes))).astype(np.float32)
    counts[0] *= 0.2  # low library ...
    counts[0, 5:40] = 0  # ... and fewer detected genes
    counts[1, 0] = 400  # mitochondrial
    counts[2, 1:3] = 500  # ribosomal
    counts[3, 3] = 200  # haemoglobin (HBA); HBG1 is not matched by the default pattern
    counts[4, 4] = 1000
    return ad.AnnData(X=counts, var=pd.DataFrame(index=genes))


def test_qc_flags_find_planted_outliers():
    flags = qc_flags(_qc_adata())
    assert flags.loc["0", ["qc_total_counts", "qc_n_genes"]].tolist() == [1, 1]
    assert flags.loc["1", "qc_pct_counts_mt"] == 1
    assert flags.loc["2", "qc_pct_counts_ribo"] == 1
    assert flags.loc["3", "qc_pct_counts_hb"] == 1
    assert flags.loc["4", "qc_pct_counts_hb"] == 0
    assert flags.loc[["0", "1", "2", "3"], "total_qc"].eq(1).all()
    assert flags["total_qc"].iloc[5:].mean() < 0.2  # ~3 raw MADs flags a few % per metric


def test_qc_thresholds_are_raw_mad_and_reusable():
    metrics = pd.DataFrame(
        {
            "total_counts": [10.0, 12.0, 14.0, 100.0],
            "n_genes": [5.0, 5.0, 6.0, 7.0],
            "pct_counts_mt": [1.0, 2.0, 3.0, 4.0],
            "pct_counts_ribo": [0.0, 0.0, 0.0, 0.0],
            "pct_counts_hb": [0.0, 0.0, 0.0, 1.0],
        }
    )
    cut = mad_thresholds(metrics, n_mads=3)
    assert cut["total_counts"] == pytest.approx(13.0 - 3 * 2.0)
    assert cut["pct_counts_mt"] == pytest.approx(2.5 + 3 * 1.0)
    assert cut["pct_counts_hb"] == 0.0  # MAD 0: any haemoglobin count is an outlier, as upstream
    adata = _qc_adata()
    strict = qc_flags(adata, thresholds={**cut, "total_counts": 1e9})
    assert strict["qc_total_counts"].all()


def test_qc_doublets_and_hb_pattern():
    adata = _qc_adata()
    doublet = np.zeros(adata.n_obs, dtype=bool)
    doublet[10] = True
    flags = qc_flags(adata, predicted_doublet=doublet, hb_pattern=r"^HB[^(P)]")
    assert flags.loc["10", ["qc_predicted_doublet", "total_qc"]].tolist() == [1, 1]
    assert flags.loc["4", "qc_pct_counts_hb"] == 1
    pct = qc_metrics(adata.X, adata.var_names)["pct_counts_mt"]
    assert pct.iloc[1] == pytest.approx(100 * 400 / adata.X[1].sum())


def test_counterfactual_medians_exact_on_tiny_case():
    counts = np.array(
        [[0, 0, 0], [1, 10, 0], [3, 20, 5], [5, 60, 5], [7, 7, 7], [9, 9, 9], [100, 0, 0]],
        dtype=np.float32,
    )
    qc = np.array([0, 1, 1, 1, 0, 0, 1])
    labels = ["A", "A", "A", "A", "ctrl", "ctrl", "A"]
    split = ["train"] * 6 + ["test"]
    cf, has_cf = counterfactual_targets(counts, qc, labels, split, n_max=50, seed=0)
    dense = cf.toarray()
    np.testing.assert_array_equal(dense[:4], np.tile([3, 20, 5], (4, 1)))
    np.testing.assert_array_equal(dense[4:6], 0)
    np.testing.assert_array_equal(dense[6], [100, 0, 0])  # its own split only
    np.testing.assert_array_equal(has_cf, [1, 1, 1, 1, 0, 0, 1])


def test_counterfactual_median_modes_and_subsampling():
    counts = np.array([[0, 0], [2, 8], [4, 2], [1, 1]], dtype=np.float32)
    qc = np.array([0, 1, 1, 0])
    labels, split = ["A"] * 4, ["train"] * 4
    midpoint, _ = counterfactual_targets(counts, qc, labels, split)
    lower, _ = counterfactual_targets(counts, qc, labels, split, median="lower")
    np.testing.assert_array_equal(midpoint.toarray()[0], [3, 5])
    np.testing.assert_array_equal(lower.toarray()[0], [2, 2])
    one, _ = counterfactual_targets(counts, qc, labels, split, n_max=1, seed=3)
    for row in one.toarray():
        assert any(np.array_equal(row, counts[i]) for i in (1, 2))


def test_perturbation_weights():
    weights = perturbation_weights(["A", "A", "ctrl", "B", "ctrl", "ctrl"])
    assert weights.to_dict() == pytest.approx({"A": 0.5, "B": 1.0, "ctrl": 1 / 3})


def test_log_normalise_counts_uses_median_library():
    counts = np.array([[1.0, 3.0], [2.0, 2.0], [0.0, 0.0]])
    result = log_normalise_counts(counts).toarray()
    np.testing.assert_allclose(result[0], np.log1p([1.0, 3.0]))  # median library is 4
    np.testing.assert_allclose(result[2], [0.0, 0.0])


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def screen():
    data = make_perturbseq_from_grn(seed=0)
    data.adata.obs["split"] = split_cells(data.adata.obs, seed=0)
    return data


@pytest.fixture(scope="module")
def gpo(screen):
    return build_gpo_inputs(
        screen.adata, "perturbation", screen.control_label, lfc_threshold=1.0, seed=0
    )


def test_rank_genes_long_layout(screen):
    adata = screen.adata.copy()
    adata.X = log_normalise_counts(adata.X)
    table = rank_genes_long(adata, "perturbation", screen.control_label)
    assert set(table["group"]) == {f"REG{i}" for i in range(8)}
    assert len(table) == 8 * adata.n_vars
    top = table[table["group"] == "REG0"].nsmallest(6, "scores")["names"]
    assert "REG0" in set(top)  # the knocked-down gene itself ranks at the bottom
    with pytest.raises(GenevaeInputError, match="reference='nope'"):
        rank_genes_long(adata, "perturbation", "nope")


def test_build_gpo_inputs_end_to_end(screen, gpo):
    adata, n = screen.adata, screen.adata.n_obs
    regulators = [f"REG{i}" for i in range(8)]
    assert gpo.node_names[:8] == regulators and gpo.n_perturbed == 8
    extras = gpo.node_names[8:]
    assert extras == sorted(extras) and len(extras) >= 4
    assert set(extras) <= set(screen.edges["target"])  # every extra node is a planted target
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    control = labels == screen.control_label
    np.testing.assert_array_equal(gpo.dosage.sum(axis=1), (~control).astype(np.float32))
    assert gpo.delta_x.shape == gpo.dosage.shape == (n, len(gpo.node_names))
    matched = gpo.matched_control
    assert (matched[control] == -1).all()
    assert control[matched[~control]].all()
    assert (gpo.split[matched[~control]] == gpo.split[~control]).all()
    assert (gpo.delta_x[control] == 0).all()
    # a knocked-down regulator moves its own column far more than the other regulators'
    own = gpo.delta_x[labels == "REG0", 0].mean()
    other = gpo.delta_x[labels == "REG1", 0].mean()
    assert own > 2 * other
    np.testing.assert_allclose(gpo.library, np.asarray(adata.X.sum(axis=1)).ravel())
    assert gpo.cf_x.shape == adata.shape
    assert (gpo.has_cf == gpo.qc.groupby([gpo.split, labels])["total_qc"].transform("max")).all()
    train_a = (gpo.split == "train") & (labels == "REG0")
    assert gpo.perturbation_weight[train_a] == pytest.approx(1 / train_a.sum())


def test_build_gpo_inputs_bug_mode_and_node_matching(screen, gpo):
    """Bug mode admits a planted non-significant down gene as a node; matching on every node
    brings the matched controls closer on the extra nodes than matching on perturbed genes."""
    shell = screen.adata.copy()
    shell.X = log_normalise_counts(shell.X)
    de_table = rank_genes_long(shell, "perturbation", screen.control_label)
    planted = next(g for g in screen.adata.var_names if g not in gpo.node_names)
    noise = {"group": "REG0", "names": planted, "logfoldchanges": -5.0, "pvals_adj": 0.9}
    de_table = pd.concat([de_table, pd.DataFrame([noise | {"scores": 1e6}])], ignore_index=True)
    build = lambda **options: build_gpo_inputs(  # noqa: E731
        screen.adata, "perturbation", screen.control_label, lfc_threshold=1.0, seed=0,
        de_table=de_table, **options,
    )  # fmt: skip
    paper, buggy = build(), build(filter_mode="original_precedence_bug")
    assert planted not in paper.node_names and planted in buggy.node_names
    assert (buggy.dosage[:, buggy.node_names.index(planted)] == 0).all()  # extra: never dosed

    by_nodes = build(match_on="node_genes")
    perturbed = by_nodes.matched_control >= 0
    extra = slice(paper.n_perturbed, None)
    assert paper.n_perturbed == 8 and len(paper.node_names) > 8
    on_nodes = by_nodes.delta_x[perturbed, extra].mean()
    on_perturbed_genes = paper.delta_x[perturbed, extra].mean()
    assert on_nodes < 0.9 * on_perturbed_genes
    assert (by_nodes.split[by_nodes.matched_control[perturbed]] == by_nodes.split[perturbed]).all()


def test_build_gpo_inputs_input_errors(screen):
    adata = screen.adata
    with pytest.raises(GenevaeInputError, match="split_key='fold'"):
        build_gpo_inputs(adata, "perturbation", screen.control_label, split_key="fold")
    with pytest.raises(GenevaeInputError, match="control_label='ctrl' never occurs"):
        build_gpo_inputs(adata, "perturbation", "ctrl")
    renamed = adata.copy()
    renamed.var_names = ["X_" + g if g == "REG3" else g for g in renamed.var_names]
    with pytest.raises(GenevaeInputError, match=r"perturbed genes \['REG3'\] are not in"):
        build_gpo_inputs(renamed, "perturbation", screen.control_label)
    foreign = pd.DataFrame(
        {
            "group": ["REG0"],
            "names": ["NOPE"],
            "logfoldchanges": [5.0],
            "pvals_adj": [0.0],
            "scores": [9.0],
        }
    )
    with pytest.raises(GenevaeInputError, match=r"de_table names genes \['NOPE'\]"):
        build_gpo_inputs(adata, "perturbation", screen.control_label, de_table=foreign)
    negative = adata.copy()
    negative.X = negative.X - 1.0
    with pytest.raises(GenevaeInputError, match="negative values"):
        build_gpo_inputs(negative, "perturbation", screen.control_label)


@pytest.mark.shared_data
def test_build_gpo_inputs_on_adamson_subset(shared_data):
    adata = ad.read_h5ad(shared_data / "perturbseq" / "adamson2016_pilot_upr_360x1000.h5ad")
    adata.obs["split"] = split_cells(adata.obs, seed=0)
    inputs = build_gpo_inputs(
        adata,
        perturbation_key="perturbation",
        control_label="62(mod)_pBA581",
        target_gene_key="guide_gene",
        lfc_threshold=2.0,
    )
    assert inputs.node_names[:5] == ["BHLHE40", "EP300", "SNAI1", "SPI1", "ZNF326"]
    assert inputs.dosage.sum() == 300
    assert inputs.qc["total_qc"].between(0, 1).all()


def _planted_in_test_cells(adata: ad.AnnData, gene: str) -> ad.AnnData:
    """``adata`` with a 100-fold rise of ``gene`` in REG0's test cells and all test cells'
    counts times 4 (QC and normalisation shift if test cells are used)."""
    adata = adata.copy()
    counts = np.asarray(adata.X.toarray() if sp.issparse(adata.X) else adata.X).copy()
    test = (adata.obs["split"] == "test").to_numpy()
    planted = test & (adata.obs["perturbation"] == "REG0").to_numpy()
    column = adata.var_names.get_loc(gene)
    counts[planted, column] = 100.0 * counts[planted, column] + 50.0
    counts[test] *= 4.0
    adata.X = counts
    return adata


def test_test_cells_shape_no_node_qc_threshold_or_normalisation(screen):
    """Leakage: a DE signal and library shift planted only in test cells change nothing that
    training cells see; with the original's all-cells fit the same plant adds a node."""
    gene = "GENE_0100"
    kwargs = {"lfc_threshold": 2.0, "seed": 0}  # above the planted edges' |logFC|
    adata = screen.adata.copy()  # half the cells in test, so the plant is strong enough to leak
    adata.obs["split"] = split_cells(adata.obs, (0.4, 0.1, 0.5), seed=0)
    clean = build_gpo_inputs(adata, "perturbation", screen.control_label, **kwargs)
    assert gene not in clean.node_names
    planted = _planted_in_test_cells(adata, gene)
    leaky = build_gpo_inputs(
        planted, "perturbation", screen.control_label, fit_on="all_cells", **kwargs
    )
    assert gene in leaky.node_names
    honest = build_gpo_inputs(planted, "perturbation", screen.control_label, **kwargs)
    assert honest.node_names == clean.node_names
    train = clean.split == "train"
    pd.testing.assert_frame_equal(honest.qc[train], clean.qc[train])
    assert not leaky.qc[train].equals(clean.qc[train])
    np.testing.assert_allclose(honest.delta_x[train], clean.delta_x[train], rtol=1e-5)
    np.testing.assert_array_equal(honest.matched_control[train], clean.matched_control[train])


def test_fit_on_needs_training_cells(screen):
    with pytest.raises(GenevaeInputError, match="train_split"):
        build_gpo_inputs(screen.adata, "perturbation", screen.control_label, train_split="training")
    with pytest.raises(GenevaeInputError, match="fit_on='some'"):
        build_gpo_inputs(screen.adata, "perturbation", screen.control_label, fit_on="some")
