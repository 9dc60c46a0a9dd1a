"""Perturb-seq sources and CausalBench filters, on hand-made tables and the Adamson subset."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing.perturbseq_sources import (
    REPLOGLE_K562_ESSENTIAL,
    REPLOGLE_RPE1,
    apply_cell_filters,
    filter_cells_by_knockdown,
    filter_perturbations_by_cell_count,
    read_replogle_singlecell,
    read_replogle_summary_stats,
    standardise_perturbation_labels,
    strong_perturbations,
    subset_perturbations,
)
from genevae.preprocessing.synthetic import make_perturbseq_from_grn

ADAMSON_CONTROL = "62(mod)_pBA581"
ADAMSON_TARGETS = ["BHLHE40", "EP300", "SNAI1", "SPI1", "ZNF326"]


@pytest.fixture(scope="module")
def adamson(shared_data) -> ad.AnnData:
    return ad.read_h5ad(shared_data / "perturbseq" / "adamson2016_pilot_upr_360x1000.h5ad")


@pytest.fixture(scope="module")
def adamson_clean(adamson) -> ad.AnnData:
    return standardise_perturbation_labels(adamson, "perturbation", "guide_gene", ADAMSON_CONTROL)


def _summary_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "genetic perturbation": [
                "1_AAMP_P1P2_ENSG00000127837",
                "2_BBBB_P1_ENSG1",
                "3_CCCC_P1_ENSG2",
                "4_DDDD_P1_ENSG3",
                "5_EEEE_P2_ENSG4",
            ],
            "Number of DEGs (anderson-darling)": [51, 50, 300, 300, 300],
            "percent knockdown": [-0.9, -0.9, -0.3, -0.29, -0.8],
            "number of cells (filtered)": [200, 200, 200, 200, 25],
        }
    )


def test_source_constants_point_at_causalbench_figshare():
    assert REPLOGLE_K562_ESSENTIAL.url.endswith("/35773219")
    assert REPLOGLE_RPE1.url.endswith("/35775606")
    assert REPLOGLE_K562_ESSENTIAL.summary_stats_sheet == "TabB_K562_day6_summary_stat"
    assert REPLOGLE_RPE1.summary_stats_sheet == "TabC_RPE1_summary_statistic"


def test_strong_perturbations_thresholds_match_causalbench():
    # >50 DEGs (50 fails), knockdown <= -0.3 (-0.29 fails), >25 cells (25 fails)
    assert strong_perturbations(_summary_table()) == ["AAMP", "CCCC"]
    assert strong_perturbations(_summary_table(), min_degs=49, min_cells=24) == [
        "AAMP",
        "BBBB",
        "CCCC",
        "EEEE",
    ]


def test_strong_perturbations_names_missing_column():
    table = _summary_table().drop(columns="percent knockdown")
    with pytest.raises(GenevaeInputError, match=r"\['percent knockdown'\]"):
        strong_perturbations(table)


def test_summary_stats_sheet_round_trip(tmp_path):
    pytest.importorskip("openpyxl")
    path = tmp_path / "table_s2.xlsx"
    _summary_table().to_excel(path, sheet_name="TabB_K562_day6_summary_stat", index=False)
    table = read_replogle_summary_stats(path, "TabB_K562_day6_summary_stat")
    assert strong_perturbations(table) == ["AAMP", "CCCC"]


def test_read_replogle_singlecell_uses_symbols(tmp_path):
    var = pd.DataFrame(
        {"gene_name": ["AAMP", "TP53", "TP53"]},
        index=pd.Index(["ENSG1", "ENSG2", "ENSG3"], name="gene_id"),
    )
    obs = pd.DataFrame(
        {"gene": ["AAMP", "non-targeting"], "UMI_count": [10.0, 12.0]}, index=["c1", "c2"]
    )
    path = tmp_path / "replogle.h5ad"
    ad.AnnData(X=sp.csr_matrix(np.ones((2, 3), dtype=np.float32)), obs=obs, var=var).write_h5ad(
        path
    )
    adata = read_replogle_singlecell(path)
    assert list(adata.var_names) == ["AAMP", "TP53", "TP53-1"]
    assert list(adata.var["ensembl_id"]) == ["ENSG1", "ENSG2", "ENSG3"]
    ad.AnnData(X=np.ones((2, 3)), obs=obs.rename(columns={"gene": "target"}), var=var).write_h5ad(
        path
    )
    with pytest.raises(GenevaeInputError, match="obs column 'gene'"):
        read_replogle_singlecell(path)


def _knockdown_adata() -> ad.AnnData:
    target = np.concatenate([np.arange(10.0), [0.0, 1.0, 5.0], [9.0, 9.0]])
    other = np.ones(15)
    labels = ["non-targeting"] * 10 + ["TGT"] * 3 + ["UNMEASURED"] * 2
    return ad.AnnData(
        X=np.column_stack([target, other]).astype(np.float32),
        obs=pd.DataFrame({"gene": labels}, index=[f"c{i}" for i in range(15)]),
        var=pd.DataFrame(index=["TGT", "OTHER"]),
    )


def test_filter_cells_by_knockdown_keeps_cells_below_control_percentile():
    kept = filter_cells_by_knockdown(_knockdown_adata(), percentile=10)
    # control 10th percentile of 0..9 is 0.9: only the TGT cell at 0 passes
    assert kept.obs["gene"].value_counts().to_dict() == {
        "non-targeting": 10,
        "TGT": 1,
        "UNMEASURED": 2,
    }
    with pytest.raises(GenevaeInputError, match="percentile=120"):
        filter_cells_by_knockdown(_knockdown_adata(), percentile=120)


def _knockdown_loop(adata: ad.AnnData, percentile: float) -> np.ndarray:
    """The filter's definition, one dense column and one label mask per perturbation."""
    labels = adata.obs["gene"].astype(str).to_numpy()
    controls = labels == "non-targeting"
    keep = np.ones(adata.n_obs, dtype=bool)
    for gene in set(labels[~controls]) & set(adata.var_names):
        column = np.asarray(adata[:, gene].X.todense()).ravel()
        cells = labels == gene
        keep[cells] = column[cells] <= np.percentile(column[controls], percentile)
    return keep


@pytest.mark.parametrize("percentile", [10.0, 50.0])
def test_filter_cells_by_knockdown_equals_the_per_gene_loop_on_a_sparse_screen(percentile):
    screen = make_perturbseq_from_grn(
        n_cells_per_group=25,
        n_genes=80,
        n_regulators=6,
        n_targets_per_regulator=3,
        library_scale=0.3,
        chunk_cells=40,
        seed=4,
    ).adata
    order = np.random.default_rng(0).permutation(screen.n_obs)  # groups interleaved
    adata = ad.AnnData(X=screen.X[order], obs=screen.obs.iloc[order], var=screen.var)
    adata.obs["gene"] = adata.obs["guide_gene"].astype(str)
    adata.obs.loc[adata.obs["gene"] == "REG5", "gene"] = "NOT_MEASURED"
    kept = filter_cells_by_knockdown(adata, percentile=percentile)
    expected = _knockdown_loop(adata, percentile)
    assert 0 < expected.sum() < adata.n_obs
    assert list(kept.obs_names) == list(adata.obs_names[expected])


def test_filter_perturbations_by_cell_count_is_strict_and_keeps_controls():
    adata = _knockdown_adata()
    kept = filter_perturbations_by_cell_count(adata, min_cells=2, require_measured_target=False)
    assert set(kept.obs["gene"]) == {"non-targeting", "TGT"}  # 2 cells is not > 2
    kept = filter_perturbations_by_cell_count(adata, min_cells=1)
    assert set(kept.obs["gene"]) == {"non-targeting", "TGT"}  # UNMEASURED is not in var
    kept = filter_perturbations_by_cell_count(adata, min_cells=1, require_measured_target=False)
    assert set(kept.obs["gene"]) == {"non-targeting", "TGT", "UNMEASURED"}


@pytest.mark.shared_data
def test_standardise_adamson_labels(adamson, adamson_clean):
    counts = adamson_clean.obs["gene"].value_counts().to_dict()
    assert counts == {gene: 60 for gene in [*ADAMSON_TARGETS, "non-targeting"]}
    parsed = standardise_perturbation_labels(adamson, "perturbation", None, ADAMSON_CONTROL)
    assert (parsed.obs["gene"] == adamson_clean.obs["gene"]).all()
    assert "gene" not in adamson.obs.columns  # the input is not modified


@pytest.mark.shared_data
def test_standardise_errors_name_the_column(adamson):
    with pytest.raises(GenevaeInputError, match="control_label='control' never occurs"):
        standardise_perturbation_labels(adamson, "perturbation", "guide_gene", "control")
    with pytest.raises(GenevaeInputError, match="target_gene_key='sgRNA'"):
        standardise_perturbation_labels(adamson, "perturbation", "sgRNA", ADAMSON_CONTROL)


@pytest.mark.shared_data
def test_causalbench_filters_on_adamson(adamson_clean):
    knocked = filter_cells_by_knockdown(adamson_clean)
    sizes = knocked.obs["gene"].value_counts()
    assert sizes["non-targeting"] == 60
    assert all(0 < sizes[g] <= 60 for g in ADAMSON_TARGETS)
    controls = adamson_clean[adamson_clean.obs["gene"] == "non-targeting", "SPI1"].X.toarray()
    spi1 = knocked[knocked.obs["gene"] == "SPI1", "SPI1"].X.toarray()
    assert (spi1 <= np.percentile(controls, 10)).all()
    kept = filter_perturbations_by_cell_count(adamson_clean, min_cells=59)
    assert kept.n_obs == 360
    with pytest.raises(GenevaeInputError, match="min_cells=60 cells"):
        filter_perturbations_by_cell_count(adamson_clean, min_cells=60)
    subset = subset_perturbations(adamson_clean, ["SPI1", "EP300"])
    assert set(subset.obs["gene"]) == {"SPI1", "EP300", "non-targeting"}


AUTHORS_FILTERS = {
    "strong_perturbations": {"min_degs": 50, "max_knockdown": -0.3, "min_cells": 25},
    "knockdown_percentile": 10.0,
    "min_cells_per_perturbation": 100,
}


@pytest.mark.shared_data
def test_cell_filters_with_the_authors_defaults_and_the_demo_threshold(adamson_clean):
    with pytest.raises(GenevaeInputError, match="min_cells=100 cells"):
        apply_cell_filters(adamson_clean, AUTHORS_FILTERS)  # 60 cells per perturbation
    demo = AUTHORS_FILTERS | {"min_cells_per_perturbation": 50}
    kept = apply_cell_filters(adamson_clean, demo)
    pd.testing.assert_series_equal(
        kept.obs["gene"].value_counts(),
        filter_cells_by_knockdown(adamson_clean).obs["gene"].value_counts(),
    )
    assert set(kept.obs["gene"]) == {*ADAMSON_TARGETS, "non-targeting"}
    summary = pd.DataFrame(
        {
            "genetic perturbation": ["1_SPI1_P1", "2_EP300_P1", "3_SNAI1_P1"],
            "Number of DEGs (anderson-darling)": [100, 10, 100],
            "percent knockdown": [-0.9, -0.9, -0.1],
            "number of cells (filtered)": [60, 60, 60],
        }
    )
    strong = apply_cell_filters(adamson_clean, demo, summary_stats=summary)
    assert set(strong.obs["gene"]) == {"SPI1", "non-targeting"}
    off = {key: None for key in AUTHORS_FILTERS}
    assert apply_cell_filters(adamson_clean, off, summary_stats=summary).n_obs == 360


def test_cell_filters_say_when_nothing_is_left():
    adata = _knockdown_adata()
    adata.X[10:13, 0] = 50.0  # TGT never knocked down
    adata = adata[adata.obs["gene"] != "UNMEASURED"].copy()
    with pytest.raises(GenevaeInputError, match="raise percentile"):
        apply_cell_filters(adata, {"knockdown_percentile": 10.0})
    with pytest.raises(GenevaeInputError, match="strong-perturbation filter"):
        strong_perturbations(_summary_table(), min_degs=1000)


STRONG_ONLY = {
    "strong_perturbations": {"min_degs": 50, "max_knockdown": -0.3, "min_cells": 25},
    "knockdown_percentile": None,
    "min_cells_per_perturbation": None,
}


def _screen() -> ad.AnnData:
    """Five perturbations of 4 cells (ZZZZ is absent from the summary table) and 8 controls."""
    labels = ["non-targeting"] * 8 + [g for g in ("AAMP", "BBBB", "CCCC", "DDDD", "ZZZZ")
                                       for _ in range(4)]  # fmt: skip
    return ad.AnnData(
        X=np.ones((len(labels), 2), dtype=np.float32),
        obs=pd.DataFrame({"gene": labels}, index=[f"c{i}" for i in range(len(labels))]),
    )


def test_strong_perturbation_filter_keeps_the_strong_ones_and_logs_the_rest(caplog):
    caplog.set_level("INFO", logger="genevae.preprocessing.perturbseq_sources")
    kept = apply_cell_filters(_screen(), STRONG_ONLY, summary_stats=_summary_table())
    # AAMP: 51 DEGs, −0.9, 200 cells; CCCC: knockdown exactly −0.3. BBBB has 50 DEGs (not > 50),
    # DDDD −0.29, and ZZZZ is not in the table.
    assert kept.obs["gene"].value_counts().to_dict() == {
        "non-targeting": 8,
        "AAMP": 4,
        "CCCC": 4,
    }
    assert "kept 2 of 5 perturbations; dropped BBBB, DDDD, ZZZZ" in caplog.text


def test_strong_perturbation_filter_without_a_summary_table_is_logged_as_not_applied(caplog):
    kept = apply_cell_filters(_screen(), STRONG_ONLY)
    assert kept.n_obs == 28
    warning = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "Strong-perturbation filter NOT applied" in warning[0].getMessage()
    off = STRONG_ONLY | {"strong_perturbations": None}
    assert apply_cell_filters(_screen(), off, summary_stats=_summary_table()).n_obs == 28


def test_a_summary_table_of_another_screen_is_named():
    other = _summary_table().assign(
        **{"genetic perturbation": lambda t: t["genetic perturbation"].str.replace("_", "_X", n=1)}
    )
    with pytest.raises(GenevaeInputError, match="check that the table is this screen's"):
        apply_cell_filters(_screen(), STRONG_ONLY, summary_stats=other)
