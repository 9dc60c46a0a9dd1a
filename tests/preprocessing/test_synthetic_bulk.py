"""The synthetic TCGA-like generator plants type-specific programs in zero-one expression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic_bulk import (
    TCGA_LIKE_TYPES,
    _fixed_point_text,
    cohort_sizes,
    make_tcga_like,
    write_tcga_like_cohorts,
)


def test_layout_range_and_labels():
    expression, labels = make_tcga_like(n_samples=120, n_genes=60, n_types=3, seed=2)
    assert expression.shape == (120, 60)
    assert expression.index.equals(labels.index)
    assert expression.min().min() == 0.0 and expression.max().max() == 1.0
    assert labels.value_counts().to_dict() == {"BRCA": 40, "GBM": 40, "LUAD": 40}


def test_programs_are_up_in_their_own_type_only():
    expression, labels = make_tcga_like(seed=0)
    programs = expression.attrs["type_programs"]
    assert len(programs) == 5 and all(len(genes) == 20 for genes in programs.values())
    for cancer_type, genes in programs.items():
        means = expression[genes].mean(axis=1).groupby(labels).mean()
        assert means.idxmax() == cancer_type
        assert means[cancer_type] > means.drop(cancer_type).max() + 0.2


def test_seed_reproduces_and_changes_data():
    first, _ = make_tcga_like(n_samples=50, n_genes=40, seed=3)
    again, _ = make_tcga_like(n_samples=50, n_genes=40, seed=3)
    other, _ = make_tcga_like(n_samples=50, n_genes=40, seed=4)
    assert first.equals(again)
    assert not first.equals(other)


def test_refuses_impossible_sizes():
    with pytest.raises(GenevaeInputError, match="n_types"):
        make_tcga_like(n_types=1)
    with pytest.raises(GenevaeInputError, match="n_genes >= 10"):
        make_tcga_like(n_genes=8, n_types=5)


def test_cohort_files_read_back_as_tcga_with_planted_programs(tmp_path):
    from genevae.pipelines.data_processing.nodes import combine_tcga_cohorts
    from genevae.preprocessing.tcga import read_expression_matrix

    paths = write_tcga_like_cohorts(
        tmp_path, n_samples=70, n_genes=80, n_types=7, normal_fraction=0.2, seed=5
    )
    assert list(paths) == ["BRCA", "GBM", "LUAD", "SKCM", "OV", "KIRC", "PRAD"]
    cohorts = {name: read_expression_matrix(path) for name, path in paths.items()}
    expression, samples = combine_tcga_cohorts(**cohorts)
    assert expression.shape == (70, 80)
    assert samples["cancer_type"].value_counts().to_dict() == dict.fromkeys(paths, 10)
    assert samples["sample_type"].value_counts().to_dict() == {
        "Primary Solid Tumor": 56,
        "Solid Tissue Normal": 14,
    }
    assert expression.to_numpy().min() >= 0.0  # log2(x + 1) scale, as Xena's HiSeqV2
    programs = pd.read_csv(tmp_path / "type_programs.tsv", sep="\t").groupby("type")["gene"]
    tumour = samples["is_tumour"]
    for cancer_type, genes in programs:
        means = expression.loc[:, list(genes)].mean(axis=1)
        by_type = means[tumour].groupby(samples["cancer_type"][tumour]).mean()
        assert by_type.idxmax() == cancer_type
        assert by_type[cancer_type] > by_type.drop(cancer_type).max() + 1.0  # planted 2-4 log2
        own = samples["cancer_type"] == cancer_type
        normal_mean, tumour_mean = means[own & ~tumour].mean(), means[own & tumour].mean()
        assert by_type.drop(cancer_type).max() < normal_mean < tumour_mean  # half the program


def test_fixed_point_text_reads_back_within_rounding():
    values = np.array([[0.0, 6.254, 12.5], [99.999, -1.0, 3.14159]], dtype=np.float32)
    text = _fixed_point_text(values)
    parsed = np.array([[float(x) for x in row.tobytes().decode().split("\t")[:-1]] for row in text])
    assert np.allclose(parsed, [[0.0, 6.25, 12.5], [99.99, 0.0, 3.14]], atol=5e-3)


def test_all_33_tcga_studies_are_types():
    assert len(TCGA_LIKE_TYPES) == 33 and len(set(TCGA_LIKE_TYPES)) == 33
    assert cohort_sizes(10_000, 33).sum() == 10_000
    assert set(cohort_sizes(10_000, 33)) == {303, 304}
    with pytest.raises(GenevaeInputError, match="normal_fraction"):
        write_tcga_like_cohorts("unused", normal_fraction=1.0)
