"""Latent-space analyses recover planted truth: outlier genes, group means, clusters, dead nodes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.analysis.latent import (
    embed_2d,
    high_weight_genes,
    interpolate,
    knn_label_accuracy,
    latent_arithmetic,
    node_activity_summary,
    silhouette,
)
from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic_bulk import make_tcga_like


@pytest.fixture(scope="module")
def planted_weights():
    """1,000 genes × 4 nodes of N(node offset, 1) weights with 3 positive and 2 negative outliers each."""
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(1000)]
    offsets = np.array([0.0, 3.0, -2.0, 0.5])
    values = rng.normal(offsets, 1.0, size=(1000, 4)).clip(offsets - 2.4, offsets + 2.4)
    planted = {}
    for node in range(4):
        chosen = rng.choice(1000, size=5, replace=False)
        up, down = chosen[:3], chosen[3:]
        values[up, node] = offsets[node] + 8.0
        values[down, node] = offsets[node] - 8.0
        planted[f"node{node}"] = (
            {genes[i] for i in up},
            {genes[i] for i in down},
        )
    weights = pd.DataFrame(values, index=genes, columns=[f"node{n}" for n in range(4)])
    return weights, planted


def test_high_weight_genes_recovers_planted_outliers(planted_weights):
    weights, planted = planted_weights
    table = high_weight_genes(weights)
    assert list(table.columns) == ["node", "gene", "weight", "tail"]
    for node, (up, down) in planted.items():
        rows = table[table["node"] == node]
        assert set(rows.loc[rows["tail"] == "positive", "gene"]) == up
        assert set(rows.loc[rows["tail"] == "negative", "gene"]) == down
    np.testing.assert_allclose(
        table["weight"],
        [weights.loc[g, n] for g, n in zip(table["gene"], table["node"], strict=True)],
    )


def test_high_weight_genes_without_centring_uses_bare_sd(planted_weights):
    weights, planted = planted_weights
    uncentred = high_weight_genes(weights, centre=False)
    # node1 has mean ≈ 3 and SD ≈ 1.2, so the bare threshold +2.5·SD ≈ 3 takes about half of
    # its genes; node0 (mean ≈ 0) gives the same answer both ways.
    node1_positive = uncentred.query("node == 'node1' and tail == 'positive'")
    assert len(node1_positive) > 300
    centred = high_weight_genes(weights)
    assert uncentred.query("node == 'node0'").equals(centred.query("node == 'node0'"))
    hand = weights["node1"][weights["node1"] > 2.5 * weights["node1"].std()]
    assert set(node1_positive["gene"]) == set(hand.index)


def test_high_weight_genes_sorted_and_bad_input():
    weights = pd.DataFrame({"n": [0.0] * 20 + [5.0, -9.0, 7.0]}, index=[f"g{i}" for i in range(23)])
    table = high_weight_genes(weights, n_sd=1.5)
    assert table["gene"].tolist() == ["g21", "g22", "g20"]  # negative tail, then positive by |w|
    with pytest.raises(GenevaeInputError, match="n_sd"):
        high_weight_genes(weights, n_sd=0)
    with pytest.raises(GenevaeInputError, match="non-numeric"):
        high_weight_genes(weights.assign(name="x"))
    with pytest.raises(GenevaeInputError, match="NaN"):
        high_weight_genes(weights.assign(m=np.nan))


def test_latent_arithmetic_on_known_group_means():
    latent = pd.DataFrame(
        [[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [10.0, 10.0]],
        index=list("abcde"),
        columns=["n1", "n2"],
    )
    labels = pd.Series(["IMR", "IMR", "MES", "MES", "PRO"], index=list("abcde"))
    np.testing.assert_allclose(latent_arithmetic(latent, labels, "IMR", "MES"), [2.0, -3.0])
    np.testing.assert_allclose(latent_arithmetic(latent, labels, "IMR", "MES", "PRO"), [12.0, 7.0])
    # A Series is aligned by sample ID, not by position.
    shuffled = labels.iloc[::-1]
    np.testing.assert_allclose(latent_arithmetic(latent, shuffled, "IMR", "MES"), [2.0, -3.0])
    np.testing.assert_allclose(
        latent_arithmetic(latent, labels.tolist(), "MES", "IMR"), [-2.0, 3.0]
    )


def test_latent_arithmetic_refuses_unknown_or_misaligned_labels():
    latent = pd.DataFrame(np.ones((3, 2)), index=["s1", "s2", "s3"])
    labels = pd.Series(["A", "B", "B"], index=["s1", "s2", "s3"])
    with pytest.raises(GenevaeInputError, match=r"'C' has no samples.*\['A', 'B'\]"):
        latent_arithmetic(latent, labels, "A", "C")
    with pytest.raises(GenevaeInputError, match="lack 1 latent samples"):
        latent_arithmetic(latent, labels.iloc[:2], "A", "B")
    with pytest.raises(GenevaeInputError, match="2 entries but latent has 3"):
        latent_arithmetic(latent, ["A", "B"], "A", "B")


def test_interpolate_endpoints_and_steps():
    start, end = np.array([0.0, 1.0, 2.0]), np.array([4.0, 1.0, -2.0])
    path = interpolate(start, end, 5)
    assert path.shape == (5, 3)
    np.testing.assert_array_equal(path[0], start)
    np.testing.assert_array_equal(path[-1], end)
    np.testing.assert_allclose(path[2], [2.0, 1.0, 0.0])
    np.testing.assert_allclose(np.diff(path, axis=0), np.tile([1.0, 0.0, -1.0], (4, 1)))
    with pytest.raises(GenevaeInputError, match="n_steps"):
        interpolate(start, end, 1)
    with pytest.raises(GenevaeInputError, match="equal length"):
        interpolate(start, end[:2], 3)


def test_node_activity_summary_flags_dead_nodes():
    rng = np.random.default_rng(0)
    latent = pd.DataFrame(
        {
            "active": rng.uniform(0, 2, 100),
            "sparse": np.r_[np.zeros(90), np.ones(10)],
            "dead_zero": np.zeros(100),
            "dead_constant": np.full(100, 0.7),
        }
    )
    summary = node_activity_summary(latent)
    assert summary.index.name == "node"
    assert summary["dead"].to_dict() == {
        "active": False,
        "sparse": False,
        "dead_zero": True,
        "dead_constant": True,
    }
    assert summary.loc["sparse", "sum"] == pytest.approx(10.0)
    assert summary.loc["sparse", "fraction_nonzero"] == pytest.approx(0.1)
    assert summary.loc["dead_constant", "mean"] == pytest.approx(0.7)


@pytest.fixture(scope="module")
def tcga_like():
    return make_tcga_like(n_samples=300, n_genes=100, n_types=4, seed=1)


def test_knn_accuracy_high_for_true_labels_and_chance_for_shuffled(tcga_like):
    expression, labels = tcga_like
    assert knn_label_accuracy(expression, labels) > 0.95
    shuffled = pd.Series(
        np.random.default_rng(0).permutation(labels.to_numpy()), index=labels.index
    )
    assert knn_label_accuracy(expression, shuffled) < 0.4  # chance is 0.25
    with pytest.raises(GenevaeInputError, match="n_folds=5"):
        knn_label_accuracy(expression.iloc[:12], labels.iloc[:12])


def test_silhouette_separates_true_from_shuffled_labels(tcga_like):
    expression, labels = tcga_like
    shuffled = np.random.default_rng(0).permutation(labels.to_numpy())
    assert silhouette(expression, labels) > 0.1
    assert abs(silhouette(expression, shuffled)) < 0.05
    with pytest.raises(GenevaeInputError, match="two distinct labels"):
        silhouette(expression, ["BRCA"] * len(expression))


def _blobs(n_per: int = 40, centres=(0.0, 6.0, 12.0)) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    values = np.vstack([rng.normal(c, 1.0, (n_per, 8)) for c in centres])
    index = pd.Index([f"s{i}" for i in range(len(values))])
    labels = pd.Series(np.repeat([f"t{i}" for i in range(len(centres))], n_per), index=index)
    return pd.DataFrame(values, index=index), labels


def test_tsne_embedding_keeps_clusters_and_is_seeded():
    latent, labels = _blobs()
    coords = embed_2d(latent, method="tsne")
    assert list(coords.columns) == ["tsne_1", "tsne_2"]
    assert coords.index.equals(latent.index)
    assert knn_label_accuracy(coords, labels) == 1.0
    pd.testing.assert_frame_equal(coords, embed_2d(latent, method="tsne", seed=0))


def test_embed_2d_bad_input():
    latent, _ = _blobs(n_per=5)
    with pytest.raises(GenevaeInputError, match="perplexity"):
        embed_2d(latent, perplexity=20)
    with pytest.raises(GenevaeInputError, match="'pca' is not one of"):
        embed_2d(latent, method="pca")


@pytest.mark.slow
def test_umap_embedding_keeps_clusters():
    latent, labels = _blobs()
    coords = embed_2d(latent, method="umap")
    assert list(coords.columns) == ["umap_1", "umap_2"]
    assert knn_label_accuracy(coords, labels) == 1.0


def test_embedding_at_or_below_max_cells_is_the_full_fit():
    latent, _ = _blobs()
    full = embed_2d(latent, method="tsne")
    pd.testing.assert_frame_equal(embed_2d(latent, method="tsne", max_cells=len(latent)), full)
    with pytest.raises(GenevaeInputError, match="max_cells"):
        embed_2d(latent, method="tsne", max_cells=1)


def test_tsne_above_max_cells_fits_a_seeded_subsample_and_places_the_rest():
    latent, labels = _blobs()
    coords = embed_2d(latent, method="tsne", max_cells=len(latent) // 2)
    fitted = np.zeros(len(latent), dtype=bool)
    fitted[np.random.default_rng(0).choice(len(latent), len(latent) // 2, replace=False)] = True
    alone = embed_2d(latent[fitted], method="tsne")
    np.testing.assert_allclose(coords[fitted].to_numpy(), alone.to_numpy())
    assert coords.index.equals(latent.index)
    assert knn_label_accuracy(coords, labels) == 1.0  # placed cells land in their cluster
    pd.testing.assert_frame_equal(
        coords, embed_2d(latent, method="tsne", max_cells=len(latent) // 2)
    )


@pytest.mark.slow
def test_umap_above_max_cells_places_the_rest_with_its_transform():
    latent, labels = _blobs()
    coords = embed_2d(latent, method="umap", max_cells=len(latent) // 2)
    assert knn_label_accuracy(coords, labels) == 1.0
    small = embed_2d(latent, method="umap", max_cells=len(latent))
    pd.testing.assert_frame_equal(small, embed_2d(latent, method="umap"))
