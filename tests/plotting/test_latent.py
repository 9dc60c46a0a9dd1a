"""Latent-space figures: labelled axes, legends, palette colours and node selection."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from genevae.errors import GenevaeInputError
from genevae.plotting.latent import activation_distributions, embedding_scatter
from genevae.preprocessing.synthetic_bulk import make_tcga_like
from tests.conftest import requires_shared_data


@pytest.fixture(scope="module")
def coords_and_labels():
    rng = np.random.default_rng(0)
    labels = pd.Series(np.repeat(["BRCA", "GBM", "LUAD"], 20), index=[f"s{i}" for i in range(60)])
    coords = pd.DataFrame(
        rng.normal(size=(60, 2)), index=labels.index, columns=["tsne_1", "tsne_2"]
    )
    return coords, labels


def _legend_colours(ax) -> dict[str, str]:
    legend = ax.get_legend()
    return {
        text.get_text().split(" ")[0]: mcolors.to_hex(handle.get_facecolor()[0])
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def test_embedding_scatter_labels_axes_and_uses_palette(coords_and_labels):
    coords, labels = coords_and_labels
    fig = embedding_scatter(coords, labels, palette={"BRCA": "#ed2891"}, title="Tybalt t-SNE")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "tsne_1",
        "tsne_2",
        "Tybalt t-SNE",
    )
    assert ax.get_legend().get_title().get_text() == ""
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "BRCA (n=20)",
        "GBM (n=20)",
        "LUAD (n=20)",
    ]
    colours = _legend_colours(ax)
    assert colours["BRCA"] == "#ed2891"
    assert len(set(colours.values())) == 3  # unlisted labels get distinct fallback colours
    offsets = np.vstack([collection.get_offsets() for collection in ax.collections])
    assert offsets.shape == (60, 2)


def test_embedding_scatter_aligns_series_labels_by_sample(coords_and_labels):
    coords, labels = coords_and_labels
    fig = embedding_scatter(coords, labels.iloc[::-1])
    brca_points = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(brca_points, coords.loc[labels == "BRCA"].to_numpy())


def test_embedding_scatter_refuses_bad_input(coords_and_labels):
    coords, labels = coords_and_labels
    with pytest.raises(GenevaeInputError, match="at least two columns"):
        embedding_scatter(coords[["tsne_1"]], labels)
    with pytest.raises(GenevaeInputError, match="3 entries but coords has 60"):
        embedding_scatter(coords, ["BRCA"] * 3)
    with pytest.raises(GenevaeInputError, match="same sample IDs"):
        embedding_scatter(coords, labels.iloc[:10])


def test_activation_distributions_picks_most_variable_nodes():
    rng = np.random.default_rng(0)
    latent = pd.DataFrame(
        rng.normal(size=(200, 12)) * np.arange(1, 13), columns=[f"n{i}" for i in range(12)]
    )
    fig = activation_distributions(latent, nodes=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["node n11", "node n10", "node n9"]
    assert all(ax.get_xlabel() == "activation" and ax.get_ylabel() == "samples" for ax in visible)
    chosen = activation_distributions(latent, nodes=["n0", "n5"])
    assert [ax.get_title() for ax in chosen.axes if ax.get_visible()] == ["node n0", "node n5"]
    default = activation_distributions(latent)
    assert sum(ax.get_visible() for ax in default.axes) == 10
    with pytest.raises(GenevaeInputError, match=r"\['n99'\] are not latent columns"):
        activation_distributions(latent, nodes=["n99"])


@requires_shared_data
def test_embedding_scatter_with_real_tcga_colour_table(shared_data):
    from genevae.preprocessing.tcga import read_cancer_type_colors

    palette = read_cancer_type_colors(shared_data / "bulk" / "tybalt_tcga_colors.tsv")
    expression, labels = make_tcga_like(n_samples=100, n_genes=50, n_types=5, seed=0)
    fig = embedding_scatter(expression.iloc[:, :2], labels, palette=palette)
    assert fig.axes[0].get_legend().get_title().get_text() == "cancer_type"
    colours = _legend_colours(fig.axes[0])
    assert colours == {label: palette[label].lower() for label in sorted(labels.unique())}
