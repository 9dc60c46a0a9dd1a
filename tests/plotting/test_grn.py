"""GRN figures: heat map cells match the edge table; top-edge panels per regulator."""

from __future__ import annotations

import numpy as np
import pytest

from genevae.analysis.grn import grn_edge_table, top_edges_per_regulator
from genevae.errors import GenevaeInputError
from genevae.plotting.grn import edge_matrix, grn_heatmap, top_edges_plot

NODES = ["A", "B", "C", "X"]
PROBABILITIES = np.array(
    [[0.0, 0.9, 0.2, 0.7], [0.4, 0.0, 0.8, 0.1], [0.1, 0.3, 0.0, 0.6], [0.5, 0.5, 0.5, 0.0]]
)


def _edges():
    return grn_edge_table(PROBABILITIES, NODES, n_perturbed=3)


def test_edge_matrix_restores_the_block_with_blank_self_loops():
    matrix = edge_matrix(_edges(), NODES[:3], NODES[:3])
    assert list(matrix.index) == NODES[:3] and list(matrix.columns) == NODES[:3]
    expected = PROBABILITIES[:3, :3].copy()
    np.fill_diagonal(expected, np.nan)
    np.testing.assert_allclose(matrix.to_numpy(), expected)


def test_grn_heatmap_draws_the_requested_block_with_values():
    figure = grn_heatmap(_edges(), NODES[:3], NODES[:3], title="G°")
    ax = figure.axes[0]
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 3) and image.mask[0, 0] and image[0, 1] == pytest.approx(0.9)
    assert [t.get_text() for t in ax.get_yticklabels()] == NODES[:3]
    assert len(ax.texts) == 6 and ax.get_title() == "G°"
    assert figure.axes[1].get_ylabel() == "edge probability"  # the colour bar


def test_top_edges_plot_one_panel_per_regulator_in_rank_order():
    top = top_edges_per_regulator(_edges(), n_top=2)
    figure = top_edges_plot(top, title="top targets")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == NODES
    first = visible[0]
    positions = dict(
        zip([t.get_text() for t in first.get_yticklabels()], first.get_yticks(), strict=True)
    )
    assert positions["B"] > positions["X"]  # the best target (B, 0.9) is drawn at the top
    widths = sorted(bar.get_width() for bar in first.patches)
    assert widths == pytest.approx([0.7, 0.9])


def test_grn_figures_refuse_bad_tables():
    with pytest.raises(GenevaeInputError, match=r"lacks columns \['probability'\]"):
        grn_heatmap(_edges().drop(columns="probability"))
    with pytest.raises(GenevaeInputError, match="top_edges is empty"):
        top_edges_plot(_edges().iloc[:0])
    with pytest.raises(GenevaeInputError, match="at least one regulator"):
        grn_heatmap(_edges(), regulators=[])
