"""The synthetic TCGA-like generator plants type-specific programs in zero-one expression."""

from __future__ import annotations

import pytest

from genevae.errors import GenevaeInputError
from genevae.preprocessing.synthetic_bulk import make_tcga_like


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
