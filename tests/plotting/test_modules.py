"""Module figures are labelled Figures; the top-gene table lists only connected genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from genevae.analysis.modules import top_module_genes
from genevae.errors import GenevaeInputError
from genevae.plotting.modules import (
    gsea_vs_bayes_factor,
    module_scatter,
    module_violins,
    top_genes_per_module,
    volcano,
)


@pytest.fixture
def bf_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "module": ["IFN", "TCR", "BCR", "NULL"],
            "ln_bf": [8.0, -4.0, 3.5, 0.2],
            "mean_diff": [6.0, -5.0, 1.0, 0.1],
        }
    )


@pytest.fixture
def activities() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(60, 3)), columns=["IFN", "TCR", "BCR"])
    table["condition"] = pd.Categorical(["control", "stimulated"] * 30)
    table["n_counts"] = rng.integers(500, 5000, size=60)
    return table


@pytest.fixture
def weights() -> pd.DataFrame:
    return pd.DataFrame(
        {"IFN": [0.0, 2.0, 0.5, 1.0], "TCR": [0.3, 0.0, 0.0, 0.0]},
        index=["ISG15", "MX1", "CD3E", "IFI6"],
    )


def _texts(figure: Figure) -> set[str]:
    return {text.get_text() for ax in figure.axes for text in ax.texts}


def test_volcano_marks_and_labels_significant_modules(bf_table):
    figure = volcano(bf_table, 3.0, 3.0, n_labels=2)
    ax = figure.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() == "ln Bayes factor"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["not significant (2)", "significant (2)"]
    assert _texts(figure) == {"IFN", "TCR"}


def test_volcano_encodes_the_control_in_the_fill_and_the_agreement_in_the_marker(bf_table):
    evidence = bf_table.assign(
        control_pass=[True, False, True, False], calls_agree=[True, True, False, True]
    )
    ax = volcano(evidence, 3.0, 3.0).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "not significant (2)",
        "passes control, methods agree (1)",
        "fails control, methods agree (1)",
    ]
    filled, hollow = ax.collections[1], ax.collections[2]
    assert filled.get_offsets().tolist() == [[6.0, 8.0]]
    assert hollow.get_offsets().tolist() == [[-5.0, -4.0]]
    assert filled.get_facecolors()[0][3] > 0 and hollow.get_facecolors().size == 0


def test_gsea_comparison_splits_modules_by_which_method_calls_them():
    comparison = pd.DataFrame(
        {
            "module": ["A", "B", "C"],
            "fdr": [0.001, 0.5, 0.01],
            "neg_log10_fdr": [3.0, 0.3, 2.0],
            "abs_ln_bf": [6.0, 5.0, 1.0],
            "set_size": [10, 50, 200],
        }
    )
    ax = gsea_vs_bayes_factor(comparison).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["both (1)", "VEGA only (1)", "GSEA only (1)", "neither (0)"]
    assert "GSEA" in ax.get_ylabel() and "VEGA" in ax.get_xlabel()


def test_violins_one_panel_per_module_with_group_ticks(activities):
    figure = module_violins(activities, ["IFN", "TCR", "BCR", "IFN"], "condition")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 4
    assert [t.get_text() for t in visible[0].get_xticklabels()] == ["control", "stimulated"]
    with pytest.raises(GenevaeInputError, match=r"lacks columns \['cell_type'\]"):
        module_violins(activities, ["IFN"], "cell_type")


def test_scatter_uses_a_legend_for_categories_and_a_colourbar_for_numbers(activities):
    categorical = module_scatter(activities, "IFN", "TCR", "condition")
    assert categorical.axes[0].get_legend().get_title().get_text() == "condition"
    numeric = module_scatter(activities, "IFN", "TCR", "n_counts")
    assert len(numeric.axes) == 2  # plot + colourbar
    assert numeric.axes[0].get_xlabel() == "IFN activity"


def test_top_module_genes_ranks_connected_genes_only(weights):
    table = top_module_genes(weights, n=2)
    assert table.to_dict("list") == {
        "module": ["IFN", "IFN", "TCR"],
        "rank": [1, 2, 1],
        "gene": ["MX1", "IFI6", "ISG15"],
        "weight": [2.0, 1.0, 0.3],
    }
    signed = pd.DataFrame({"M": [-3.0, 1.0]}, index=["A", "B"])
    assert top_module_genes(signed, 1, by_absolute=True)["gene"].tolist() == ["A"]
    with pytest.raises(GenevaeInputError, match="n must be at least 1"):
        top_module_genes(weights, 0)


def test_top_genes_figure_has_bars_per_module(weights):
    figure = top_genes_per_module(weights, ["IFN", "TCR"], n=3)
    ifn = figure.axes[0]
    assert ifn.get_title() == "IFN" and len(ifn.patches) == 3
    assert [t.get_text() for t in ifn.get_yticklabels()] == ["CD3E", "IFI6", "MX1"]
    with pytest.raises(GenevaeInputError, match="BCR"):
        top_genes_per_module(weights, ["BCR"])


def _long_table(n_saturated: int, cap: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    table = pd.DataFrame(
        {
            "module": [
                f"REACTOME_A_VERY_LONG_PATHWAY_NAME_NUMBER_{i}_WITH_MANY_WORDS" for i in range(n)
            ],
            "ln_bf": rng.normal(0, 2, n),
            "mean_diff": rng.normal(0, 2, n),
        }
    )
    table.loc[: n_saturated - 1, "ln_bf"] = cap
    table.loc[: n_saturated - 1, "mean_diff"] = np.linspace(4, 9, n_saturated)
    return table


def _label_boxes(figure: Figure) -> list:
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_volcano_shows_saturated_modules_in_a_marked_band_with_a_note():
    cap = 27.631
    figure = volcano(_long_table(12, cap), ln_bf_cap=cap, n_labels=6)
    ax = figure.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "saturated (|ln BF| = 27.6) (12)" in legend
    saturated = next(c for c in ax.collections if c.get_label().startswith("saturated"))
    heights = saturated.get_offsets()[:, 1]
    assert len(set(np.round(heights, 6))) == 12  # spread over the band, not one line
    assert (heights > cap).all()
    assert any("12 modules at the cap" in t.get_text() for t in figure.texts)
    assert "+27.6 (cap)" in [t.get_text() for t in ax.get_yticklabels()]


def test_volcano_labels_are_whole_names_that_do_not_overlap():
    figure = volcano(_long_table(0, 27.631), n_labels=6)
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert len(labels) == 6
    assert not any("…" in label for label in labels)
    assert all(label.replace("_\n", "_").startswith("A_VERY_LONG") for label in labels)
    boxes = _label_boxes(figure)
    overlaps = [(i, j) for i in range(6) for j in range(i + 1, 6) if boxes[i].overlaps(boxes[j])]
    assert not overlaps


def test_gsea_scatter_legend_sits_outside_the_axes():
    comparison = pd.DataFrame(
        {
            "module": ["IFN", "TCR", "BCR"],
            "fdr": [0.001, 0.5, 0.01],
            "neg_log10_fdr": [3.0, 0.3, 2.0],
            "abs_ln_bf": [8.0, 4.0, 0.5],
            "set_size": [50, 20, 10],
        }
    )
    figure = gsea_vs_bayes_factor(comparison, n_labels=2)
    figure.canvas.draw()
    legend_box = figure.axes[0].get_legend().get_window_extent()
    assert legend_box.x0 >= figure.axes[0].get_window_extent().x1


def test_categorical_legends_use_natural_order():
    frame = pd.DataFrame(
        {"a": np.arange(6.0), "b": np.arange(6.0), "cluster": ["10", "2", "1", "0", "2", "10"]}
    )
    figure = module_scatter(frame, "a", "b", "cluster")
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["0", "1", "2", "10"]
