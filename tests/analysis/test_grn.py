"""GRN scoring: edge tables, CausalBench statistics and reference-network metrics on planted truth."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from genevae.analysis.grn import (
    causalbench_statistical_eval,
    effect_size_grn,
    grn_edge_table,
    read_reference_edges,
    reference_network_metrics,
    top_edges_per_regulator,
)
from genevae.errors import GenevaeInputError
from genevae.preprocessing.gpo_inputs import log_normalise_counts
from genevae.preprocessing.synthetic import make_perturbseq_from_grn


def test_edge_table_drops_self_loops_sorts_and_flags_block():
    probabilities = np.array([[0.9, 0.2, 0.7], [0.4, 0.1, 0.8], [0.3, 0.6, 0.5]])
    table = grn_edge_table(probabilities, ["A", "B", "X"], n_perturbed=2)
    assert len(table) == 6
    assert table["probability"].is_monotonic_decreasing
    assert (table["regulator"] != table["target"]).all()
    assert table.iloc[0].to_dict() == {
        "regulator": "B",
        "target": "X",
        "probability": 0.8,
        "in_perturbed_block": False,
    }
    block = table[table["in_perturbed_block"]]
    assert set(zip(block["regulator"], block["target"], strict=True)) == {("A", "B"), ("B", "A")}


def test_edge_table_input_errors():
    with pytest.raises(GenevaeInputError, match=r"expected \(3, 3\)"):
        grn_edge_table(np.zeros((2, 2)), ["A", "B", "C"], 1)
    with pytest.raises(GenevaeInputError, match="in \\[0, 1\\]"):
        grn_edge_table(np.full((2, 2), 3.0), ["A", "B"], 1)
    with pytest.raises(GenevaeInputError, match="n_perturbed=5"):
        grn_edge_table(np.zeros((2, 2)), ["A", "B"], 5)


# ---------------------------------------------------------------- reference metrics
def _planted_scores(seed: int, informative: bool):
    rng = np.random.default_rng(seed)
    regulators = [f"R{i}" for i in range(30)]
    targets = [f"T{j}" for j in range(200)]
    pairs = pd.DataFrame(
        [(r, t) for r in regulators for t in targets], columns=["regulator", "target"]
    )
    truth = rng.random(len(pairs)) < 0.1
    if informative:
        scores = np.where(
            truth, rng.uniform(0.55, 1.0, len(pairs)), rng.uniform(0.0, 0.6, len(pairs))
        )
    else:
        scores = rng.random(len(pairs))
    edges = pairs.assign(probability=scores)
    reference = set(zip(pairs["regulator"][truth], pairs["target"][truth], strict=True))
    return edges, reference, regulators, targets


def test_reference_metrics_planted_edges_beat_baseline():
    edges, reference, regulators, targets = _planted_scores(0, informative=True)
    metrics = reference_network_metrics(edges, reference, regulators, targets)
    assert metrics["n_pairs"] == 6000
    assert metrics["random_baseline"] == pytest.approx(len(reference) / 6000)
    assert metrics["auprc"] > 5 * metrics["random_baseline"]
    assert metrics["auroc"] > 0.95
    assert metrics["recall"] > 0.85 and metrics["precision"] > 3 * metrics["random_baseline"]


def test_reference_metrics_random_scores_sit_at_baseline():
    edges, reference, regulators, targets = _planted_scores(1, informative=False)
    metrics = reference_network_metrics(
        edges, pd.DataFrame(sorted(reference), columns=["regulator", "target"]), regulators, targets
    )
    assert metrics["auprc"] == pytest.approx(metrics["random_baseline"], abs=0.02)
    assert metrics["auroc"] == pytest.approx(0.5, abs=0.05)


def test_reference_metrics_exact_on_tiny_case():
    edges = pd.DataFrame(
        {
            "regulator": ["A", "A", "B", "B", "Z"],
            "target": ["B", "C", "A", "C", "A"],
            "probability": [0.9, 0.6, 0.2, 0.7, 0.99],
        }
    )
    reference = {("A", "B"), ("B", "A"), ("Q", "A")}  # Z and Q are outside the candidates
    metrics = reference_network_metrics(edges, reference, ["A", "B"], ["A", "B", "C"])
    assert metrics["n_pairs"] == 4 and metrics["n_positive"] == 2 and metrics["n_predicted"] == 3
    assert metrics["precision"] == pytest.approx(1 / 3)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["random_baseline"] == pytest.approx(0.5)


# ---------------------------------------------------------------- CausalBench statistics
def _planted_expression(seed: int = 0):
    """A shifts B strongly; B, C and D do nothing; E is a measured non-perturbed gene."""
    rng = np.random.default_rng(seed)
    genes = ["A", "B", "C", "D", "E"]
    labels = np.repeat(["ctrl", "A", "B", "C", "D"], 150)
    expression = pd.DataFrame(rng.normal(0.0, 1.0, size=(labels.size, 5)), columns=genes)
    expression.loc[labels == "A", "B"] += 3.0
    return expression, labels


def test_causalbench_eval_counts_planted_effect_as_true_positive():
    expression, labels = _planted_expression()
    edges = pd.DataFrame(
        {
            "regulator": ["A", "A", "C", "E"],
            "target": ["B", "C", "D", "A"],
            "probability": [0.9, 0.8, 0.7, 0.95],
        }
    )
    result = causalbench_statistical_eval(edges, expression, labels, "ctrl", n_negative=5, seed=0)
    assert result["n_edges"] == 3  # E is not perturbed, so E → A is not testable
    assert result["true_positives"] >= 1 and result["false_positives"] <= 2
    top1 = causalbench_statistical_eval(edges, expression, labels, "ctrl", top_k=1, n_negative=0)
    assert (top1["n_edges"], top1["true_positives"]) == (1, 1)
    assert top1["mean_wasserstein"] == pytest.approx(3.0, abs=0.4)
    null = causalbench_statistical_eval(
        edges.iloc[[1, 2]], expression, labels, "ctrl", n_negative=0
    )
    assert null["mean_wasserstein"] < 0.3
    assert np.isnan(null["false_omission_rate"])


def test_causalbench_eval_negatives_exclude_predicted_edges():
    expression, labels = _planted_expression()
    edges = pd.DataFrame({"regulator": ["A"], "target": ["B"], "probability": [0.9]})
    # 4 perturbed genes → 12 ordered pairs, minus the predicted A → B leaves 11 negatives
    result = causalbench_statistical_eval(edges, expression, labels, "ctrl", n_negative=500)
    assert result["n_negative_tested"] == 11
    assert result["false_omission_rate"] <= 0.3
    measured = causalbench_statistical_eval(
        edges, expression, labels, "ctrl", n_negative=500, targets="measured"
    )
    assert measured["n_negative_tested"] == 4 * 5 - 4 - 1


def test_causalbench_eval_input_errors():
    expression, labels = _planted_expression()
    edges = pd.DataFrame({"regulator": ["A"], "target": ["B"], "probability": [0.9]})
    with pytest.raises(GenevaeInputError, match="control_label='none'"):
        causalbench_statistical_eval(edges, expression, labels, "none")
    with pytest.raises(GenevaeInputError, match="perturbation_labels has 3 entries"):
        causalbench_statistical_eval(edges, expression, labels[:3], "ctrl")
    with pytest.raises(GenevaeInputError, match=r"edges lacks column\(s\) \['probability'\]"):
        causalbench_statistical_eval(edges.drop(columns="probability"), expression, labels, "ctrl")


def test_causalbench_eval_on_synthetic_screen_finds_true_edges():
    screen = make_perturbseq_from_grn(seed=0)
    adata = screen.adata.copy()
    adata.X = log_normalise_counts(adata.X)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    true_edges = screen.edges.assign(probability=1.0)
    truth = causalbench_statistical_eval(
        true_edges, adata, labels, screen.control_label, n_negative=100, targets="measured"
    )
    assert truth["true_positives"] >= 0.9 * len(true_edges)
    assert truth["false_omission_rate"] < 0.2
    assert truth["mean_wasserstein"] > 3 * truth["negative_mean_wasserstein"]


def test_causalbench_eval_of_sparse_anndata_equals_the_dense_frame():
    screen = make_perturbseq_from_grn(seed=1, library_scale=0.3, chunk_cells=100)
    adata = screen.adata.copy()
    adata.X = log_normalise_counts(adata.X)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    edges = screen.edges.assign(probability=np.linspace(1.0, 0.5, len(screen.edges)))
    arguments = {"top_k": 20, "seed": 3, "targets": "measured"}
    control = screen.control_label
    sparse_result = causalbench_statistical_eval(edges, adata, labels, control, **arguments)
    dense_result = causalbench_statistical_eval(edges, adata.to_df(), labels, control, **arguments)
    assert sparse_result == dense_result
    assert sparse_result["true_positives"] > 0


# ---------------------------------------------------------------- ChIP-Atlas reference
CHIPATLAS = "grn/chipatlas_K562_ChipSeq_causalbench.csv.gz"


@pytest.fixture(scope="module")
def chipatlas(shared_data) -> pd.DataFrame:
    return read_reference_edges(shared_data / CHIPATLAS)


@pytest.mark.shared_data
def test_read_chipatlas_reference(shared_data, chipatlas):
    edges = chipatlas
    assert len(edges) == 892_990
    assert list(edges.columns) == ["regulator", "target"]
    assert edges["regulator"].nunique() == 173
    assert not edges.duplicated().any()
    for regulator in ("SPI1", "EP300"):
        assert (edges["regulator"] == regulator).sum() > 100
    with pytest.raises(GenevaeInputError, match=r"lacks column\(s\) \['tf'\]"):
        read_reference_edges(shared_data / CHIPATLAS, source_col="tf")


@pytest.mark.shared_data
def test_chipatlas_reference_on_adamson_genes(shared_data, chipatlas):
    genes = list(
        ad.read_h5ad(shared_data / "perturbseq" / "adamson2016_pilot_upr_360x1000.h5ad").var_names
    )
    regulators = ["SPI1", "EP300"]
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        [(r, t) for r in regulators for t in genes], columns=["regulator", "target"]
    ).assign(probability=lambda df: rng.random(len(df)))
    metrics = reference_network_metrics(scores, chipatlas, regulators, genes)
    # SOURCES.md counts 1,458 SPI1/EP300 edges into these genes; 2 are self-loops, not scored
    assert metrics["n_positive"] == 1456
    assert metrics["auprc"] == pytest.approx(metrics["random_baseline"], abs=0.05)


def test_top_edges_per_regulator_ranks_within_regulator():
    probabilities = np.array([[0.0, 0.9, 0.2], [0.4, 0.0, 0.8], [0.1, 0.3, 0.0]])
    edges = grn_edge_table(probabilities, ["A", "B", "C"], n_perturbed=3)
    top = top_edges_per_regulator(edges, n_top=1)
    assert list(zip(top["regulator"], top["target"], top["rank"], strict=True)) == [
        ("A", "B", 1),
        ("B", "C", 1),
        ("C", "B", 1),
    ]
    assert len(top_edges_per_regulator(edges, n_top=5)) == 6
    with pytest.raises(GenevaeInputError, match="n_top=0"):
        top_edges_per_regulator(edges, n_top=0)


def test_effect_size_grn_ranks_by_absolute_effect():
    ate = pd.DataFrame(
        [[-2.0, -4.0, 1.0, 0.0], [0.5, 0.0, 0.0, 2.0]],
        index=["A", "B"],
        columns=["A", "B", "X", "other"],
    )
    edges = effect_size_grn(ate, ["A", "B", "X"], n_perturbed=2)
    lookup = edges.set_index(["regulator", "target"])["probability"]
    assert lookup[("A", "B")] == 1.0 and lookup[("A", "X")] == 0.25
    assert lookup[("B", "A")] == 0.125 and lookup[("X", "A")] == 0.0
    assert edges["in_perturbed_block"].sum() == 2
    with pytest.raises(GenevaeInputError, match=r"lacks node gene\(s\) \['Y'\]"):
        effect_size_grn(ate, ["A", "B", "Y"], n_perturbed=2)
