"""Evidence columns: agreement of calls, random-mask empirical p, stability over replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.analysis.evidence import (
    annotate_evidence,
    calls_agree,
    empirical_control_p,
    replicate_summary,
    top_k_overlap,
)
from genevae.errors import GenevaeInputError


def _hand_table() -> pd.DataFrame:
    """Five modules whose three calls are known by construction."""
    return pd.DataFrame(
        {
            "module": ["IFN", "TCR", "BCR", "MYC", "UNANNOTATED_0"],
            "ln_bf": [6.0, -5.0, 4.0, 0.5, 9.0],
            "n_genes": [20, 20, 40, 20, 300],
            "is_significant": [True, True, True, False, True],
            # IFN: all up; TCR: score calls up (opposite); BCR: score no call; MYC: none call
            "module_score_ln_bf": [5.0, 4.0, 1.0, 0.2, np.nan],
        }
    )


def test_agreement_flag_is_true_only_where_every_method_that_ran_makes_the_same_call():
    gsea = pd.DataFrame(
        {"module": ["IFN", "TCR", "MYC"], "fdr": [0.001, 0.5, 0.9], "nes": [2.1, -0.4, 0.3]}
    )
    table = annotate_evidence(_hand_table(), gsea=gsea, ln_bf_threshold=3.0).set_index("module")
    assert table["vega_call"].tolist() == [1, -1, 1, 0, 1]
    assert table["module_score_call"].tolist()[:4] == [1, 1, 0, 0]
    assert np.isnan(table.loc["UNANNOTATED_0", "module_score_call"])
    assert table.loc[["IFN", "TCR", "MYC"], "gsea_call"].tolist() == [1, 0, 0]
    assert np.isnan(table.loc["BCR", "gsea_call"])  # GSEA did not test BCR
    assert table["calls_agree"].tolist() == [True, False, False, True, True]


def test_calls_agree_leaves_out_methods_that_did_not_run():
    reference = np.array([1.0, -1.0, 0.0, np.nan])
    other = np.array([np.nan, -1.0, 1.0, 1.0])
    assert calls_agree(reference, other).tolist() == [True, True, False, False]


def test_empirical_p_counts_size_matched_random_modules_at_least_as_strong():
    random_ln_bf = np.array([1.0, 2.0, -7.0, 3.0, 10.0])
    random_sizes = np.array([20, 22, 24, 30, 100])
    p, n_matched = empirical_control_p(
        np.array([6.0, -2.0, 5.0]), np.array([20, 20, 500]), random_ln_bf, random_sizes, 1.25
    )
    # sizes 16–25 match the first three random modules; |−7| ≥ 6 → p = (1 + 1) / (1 + 3)
    assert n_matched.tolist() == [3, 3, 0]
    assert p[0] == pytest.approx(2 / 4) and p[1] == pytest.approx(3 / 4)
    assert np.isnan(p[2])
    with pytest.raises(GenevaeInputError, match="size_tolerance"):
        empirical_control_p(np.ones(1), np.ones(1), np.ones(1), np.ones(1), 0.5)


def test_a_module_above_all_its_random_twins_passes_the_control_and_a_null_one_does_not():
    rng = np.random.default_rng(0)
    random_modules = pd.DataFrame(
        {"n_genes": rng.integers(15, 26, size=200), "ln_bf": rng.normal(0, 1.5, size=200)}
    )
    table = annotate_evidence(
        _hand_table(), random_modules=random_modules, size_tolerance=1.25, alpha=0.05
    ).set_index("module")
    assert table.loc["IFN", "control_empirical_p"] < 0.01 and table.loc["IFN", "control_pass"]
    assert table.loc["MYC", "control_empirical_p"] > 0.5 and not table.loc["MYC", "control_pass"]
    assert not table.loc["UNANNOTATED_0", "control_pass"]  # no random module of its size


def test_top_k_overlap_is_one_for_identical_replicates_and_zero_for_disjoint_ones():
    same = np.tile(np.array([[5.0], [4.0], [-3.0], [0.1]]), (1, 3))
    assert top_k_overlap(same, k=2) == 1.0
    disjoint = np.array([[5.0, 0.0], [4.0, 0.1], [0.0, 6.0], [0.2, -7.0]])
    assert top_k_overlap(disjoint, k=2) == 0.0
    assert top_k_overlap(np.array([[5.0, 5.0], [4.0, 0.1], [0.0, 6.0]]), k=2) == 0.5
    assert np.isnan(top_k_overlap(same[:, :1], k=2))


def test_replicate_summary_gives_sd_zero_for_identical_seeds_and_the_sample_sd_otherwise():
    rows = []
    for replicate, shift in ((0, 0.0), (1, 0.0), (2, 0.0)):
        for module, value in (("A", 4.0), ("B", -1.0)):
            rows.append(("c1", replicate, module, value + shift))
    for replicate, value in ((0, 1.0), (1, 3.0)):
        rows.append(("c2", replicate, "A", value))
    long = pd.DataFrame(rows, columns=["comparison", "replicate", "module", "ln_bf"])
    per_module, overlap = replicate_summary(long, k=1)
    assert per_module.shape == (3, 4)
    c1 = per_module[per_module["comparison"] == "c1"].set_index("module")
    assert c1["ln_bf_sd"].tolist() == [0.0, 0.0] and c1["ln_bf_mean"].tolist() == [4.0, -1.0]
    c2 = per_module[per_module["comparison"] == "c2"].iloc[0]
    assert c2["ln_bf_mean"] == 2.0 and c2["ln_bf_sd"] == pytest.approx(np.sqrt(2.0))
    assert overlap["n_replicates"].tolist() == [3, 2]
    assert overlap["top_k_overlap"].tolist() == [1.0, 1.0]
