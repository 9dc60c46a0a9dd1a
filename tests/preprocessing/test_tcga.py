"""TCGA bulk preprocessing: reading Xena-style matrices, labels, gene selection, scaling, split."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.preprocessing.tcga import (
    apply_minmax_scaler,
    combine_cohorts,
    fit_minmax_scaler,
    gene_deviation,
    labels_from_phenotype,
    parse_tcga_barcodes,
    read_cancer_type_colors,
    read_expression_matrix,
    read_gene_list,
    select_genes_by_deviation,
    split_samples,
)
from tests.conftest import requires_shared_data

BRCA = "bulk/tcga_brca_rnaseqv2_tcgabiolinks_dataBRCA.tsv.gz"
READ = "bulk/tcga_read_rnaseqv2_tcgabiolinks_dataREAD_df.tsv.gz"


@pytest.fixture(scope="module")
def brca(shared_data):
    return read_expression_matrix(shared_data / BRCA, log2_transform=True)


@pytest.fixture(scope="module")
def cohorts(shared_data, brca):
    read = read_expression_matrix(shared_data / READ, log2_transform=True)
    return combine_cohorts({"BRCA": brca, "READ": read})


def _write_matrix(path, text: str):
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


def test_reads_symbol_entrez_ids_drops_unnamed_and_resolves_duplicates(tmp_path):
    path = _write_matrix(
        tmp_path / "m.tsv.gz",
        "gene_id\tTCGA-A7-A13D-01A-13R-A12P-07\tTCGA-BH-A0DK-11A-13R-A089-07\n"
        "?|100133144\t1\t2\n"
        "TP53|7157\t3\t7\n"
        "DUP|1\t1\t1\n"
        "DUP|2\t3\t5\n"
        "GAPDH|2597\t\t15\n",
    )
    dropped = read_expression_matrix(path)
    assert dropped.index.tolist() == ["TCGA-A7-A13D-01", "TCGA-BH-A0DK-11"]
    assert dropped.columns.tolist() == ["TP53", "GAPDH"]
    assert dropped.loc["TCGA-A7-A13D-01", "GAPDH"] == 0.0  # NaN filled as Tybalt did
    assert read_expression_matrix(path, duplicate_symbols="first")["DUP"].tolist() == [1.0, 1.0]
    assert read_expression_matrix(path, duplicate_symbols="mean")["DUP"].tolist() == [2.0, 3.0]
    logged = read_expression_matrix(path, log2_transform=True)
    assert logged.loc["TCGA-BH-A0DK-11", "GAPDH"] == pytest.approx(4.0)


def test_rejects_missing_file_bad_option_and_negative_counts(tmp_path):
    with pytest.raises(GenevaeInputError, match="does not exist"):
        read_expression_matrix(tmp_path / "absent.tsv")
    path = _write_matrix(tmp_path / "m.tsv.gz", "gene_id\tS1\tS2\nA|1\t-1\t2\nB|2\t1\t1\n")
    with pytest.raises(GenevaeInputError, match="log2_transform=False"):
        read_expression_matrix(path, log2_transform=True, truncate_barcodes=False)
    dup = _write_matrix(tmp_path / "d.tsv.gz", "gene_id\tS1\nA|1\t1\nA|2\t2\n")
    with pytest.raises(GenevaeInputError, match="duplicate_symbols"):
        read_expression_matrix(dup, duplicate_symbols="max")


@requires_shared_data
def test_real_brca_matrix(brca):
    assert brca.shape == (10, 20500)  # 20,530 rows − 29 unnamed − both SLC35E2 copies
    assert "SLC35E2" not in brca.columns
    assert not brca.columns.duplicated().any()
    assert brca.to_numpy().min() >= 0.0
    assert 10 < brca.to_numpy().max() < 25  # log2 of RSEM counts


@requires_shared_data
def test_barcode_sample_types_on_real_brca(brca):
    table = parse_tcga_barcodes(brca.index)
    assert table["sample_type_code"].value_counts().to_dict() == {"01": 5, "11": 5}
    assert table.loc["TCGA-A7-A13D-01", "sample_type"] == "Primary Solid Tumor"
    assert table["is_tumour"].sum() == 5


def test_barcode_parser_rejects_non_tcga_ids():
    with pytest.raises(GenevaeInputError, match="not TCGA barcodes"):
        parse_tcga_barcodes(["TCGA-A7-A13D-01", "sample_7"])


@requires_shared_data
def test_combine_cohorts_labels_by_study(cohorts):
    combined, labels = cohorts
    assert combined.shape == (12, 20500)
    assert labels.value_counts().to_dict() == {"BRCA": 10, "READ": 2}
    assert labels.index.equals(combined.index)


def test_labels_from_phenotype_table():
    phenotype = pd.DataFrame(
        {"sample": ["TCGA-A7-A13D-01", "TCGA-DY-A1DE-01"], "acronym": ["BRCA", "READ"]}
    )
    labels = labels_from_phenotype(
        ["TCGA-DY-A1DE-01A-11R-A155-07", "TCGA-A7-A13D-01"], phenotype, label_col="acronym"
    )
    assert labels.tolist() == ["READ", "BRCA"]
    with pytest.raises(GenevaeInputError, match="TCGA-ZZ-ZZZZ-01"):
        labels_from_phenotype(["TCGA-ZZ-ZZZZ-01"], phenotype, label_col="acronym")
    assert labels_from_phenotype(
        ["TCGA-ZZ-ZZZZ-01"], phenotype, label_col="acronym", allow_missing=True
    ).tolist() == ["unknown"]
    with pytest.raises(GenevaeInputError, match="no column 'cancer_type'"):
        labels_from_phenotype(["TCGA-A7-A13D-01"], phenotype)


def test_deviation_methods_match_their_definitions():
    df = pd.DataFrame({"a": [0.0, 0.0, 0.0, 10.0], "b": [0.0, 1.0, 2.0, 3.0]})
    median = gene_deviation(df, "median")
    mean = gene_deviation(df, "mean")
    assert median.tolist() == pytest.approx([0.0, 1.0])
    assert mean.tolist() == pytest.approx([3.75, 1.0])
    # the outlier-driven gene wins under mean AD (Tybalt's code) but not under median AD
    assert select_genes_by_deviation(df, 1, "mean").columns.tolist() == ["a"]
    assert select_genes_by_deviation(df, 1, "median").columns.tolist() == ["b"]
    with pytest.raises(GenevaeInputError, match="k=3"):
        select_genes_by_deviation(df, 3)


@requires_shared_data
def test_top_deviation_genes_overlap_tybalt_list(shared_data, cohorts):
    combined, _ = cohorts
    tybalt_genes = read_gene_list(shared_data / "bulk/tybalt_5000_mad_genes.txt")
    assert len(tybalt_genes) == 5000 and tybalt_genes[:2] == ["RPS4Y1", "XIST"]
    assert set(tybalt_genes) <= set(combined.columns)
    chance = 5000 / combined.shape[1]
    for method in ("median", "mean"):
        selected = select_genes_by_deviation(combined, 5000, method)
        overlap = len(set(selected.columns) & set(tybalt_genes)) / 5000
        assert overlap > 2 * chance


@requires_shared_data
def test_cancer_type_colors(shared_data):
    colours = read_cancer_type_colors(shared_data / "bulk/tybalt_tcga_colors.tsv")
    assert len(colours) == 34  # 33 studies plus the literal "NA" entry
    assert colours["BRCA"] == "#ED2891"
    assert colours["NA"] == "#000000"


def test_minmax_scaler_fits_train_only_and_clips():
    train = pd.DataFrame({"g1": [0.0, 2.0, 4.0], "g2": [5.0, 5.0, 5.0]})
    scaler = fit_minmax_scaler(train)
    assert scaler.columns.tolist() == ["gene", "min", "max"]
    scaled_train = apply_minmax_scaler(train, scaler)
    assert scaled_train["g1"].tolist() == [0.0, 0.5, 1.0]
    assert scaled_train["g2"].tolist() == [0.0, 0.0, 0.0]  # constant gene → 0
    new = pd.DataFrame({"g2": [7.0], "g1": [8.0], "extra": [1.0]})
    scaled_new = apply_minmax_scaler(new, scaler)
    assert scaled_new.columns.tolist() == ["g1", "g2"]
    assert scaled_new.iloc[0].tolist() == [1.0, 1.0]  # clipped to [0, 1]
    with pytest.raises(GenevaeInputError, match="g1"):
        apply_minmax_scaler(new.drop(columns="g1"), scaler)


@requires_shared_data
def test_scaled_real_data_lies_in_unit_interval(cohorts):
    combined, labels = cohorts
    split = split_samples(labels, val_fraction=0.2, seed=1)
    train = combined.loc[split == "train"]
    scaled = apply_minmax_scaler(combined, fit_minmax_scaler(train))
    assert scaled.to_numpy().min() >= 0.0 and scaled.to_numpy().max() <= 1.0
    assert np.allclose(apply_minmax_scaler(train, fit_minmax_scaler(train)).max().max(), 1.0)


def test_split_samples_is_stratified_and_reproducible():
    labels = pd.Series(["A"] * 50 + ["B"] * 20 + ["C"], index=[f"s{i}" for i in range(71)])
    split = split_samples(labels, val_fraction=0.1, seed=0)
    assert split.index.equals(labels.index)
    validation = labels[split == "validation"]
    assert validation.value_counts().to_dict() == {"A": 5, "B": 2}
    assert split.equals(split_samples(labels, val_fraction=0.1, seed=0))
    assert not split.equals(split_samples(labels, val_fraction=0.1, seed=1))
    unstratified = split_samples(labels, val_fraction=0.1, seed=0, stratify=False)
    assert (unstratified == "validation").sum() == 7
    with pytest.raises(GenevaeInputError, match="val_fraction"):
        split_samples(labels, val_fraction=1.5)
    with pytest.raises(GenevaeInputError, match="1 samples have no label"):
        split_samples(labels.where(labels != "C"))


@pytest.mark.parametrize("method", ["median", "mean"])
def test_gene_deviation_in_gene_blocks_equals_the_whole_matrix_formula(method):
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 1.5, (41, 2_600))  # three blocks of 1,024 genes, the last partial
    centre = np.median(values, axis=0) if method == "median" else values.mean(axis=0)
    spread = np.abs(values - centre)
    expected = np.median(spread, axis=0) if method == "median" else spread.mean(axis=0)
    result = gene_deviation(pd.DataFrame(values), method)
    np.testing.assert_array_equal(result.to_numpy(), expected)
