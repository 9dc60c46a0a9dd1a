"""The small-data study (benchmarks/vega_small_data.py): its ranking rule and a toy run."""

from __future__ import annotations

import argparse

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from benchmarks import vega_small_data as study
from tests.conftest import requires_shared_data


def _table(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["module", "ln_bf", "effect_size"])
    return table.assign(mean_diff=2 * table["effect_size"])


def test_ranking_orders_by_ln_bf_breaks_ties_by_effect_size_and_skips_extra_nodes():
    table = _table(
        [
            ("UNANNOTATED_0", 9.0, 5.0),
            ("REACTOME_CELL_CYCLE", 27.6, 0.5),
            (study.IFN_MODULE, 27.6, 2.0),
            ("REACTOME_APOPTOSIS", -30.0, -4.0),
            ("REACTOME_INTERFERON_SIGNALING", 4.0, 3.0),
        ]
    )
    result = study.ranking(table)
    assert result["first_module"] == study.IFN_MODULE
    assert result["ifn_rank"] == 1 and result["ifn_ln_bf"] == 27.6
    assert result["ifn_rank_by_effect_size"] == 2  # behind INTERFERON_SIGNALING's 3.0
    assert result["top5"][-1] == "REACTOME_APOPTOSIS"
    assert result["n_modules"] == 4 and result["extra_node_ln_bf"] == [9.0]


def test_ranking_flags_a_non_interferon_first_module_and_a_missing_ifn_module():
    result = study.ranking(
        _table([("REACTOME_CELL_CYCLE", 3.0, 1.0), ("REACTOME_ISG15", 2.0, 1.0)])
    )
    assert not result["interferon_family_first"]
    assert result["ifn_rank"] is None and result["ifn_ln_bf"] is None


def test_module_score_sampler_is_the_mean_log_expression_of_the_module_genes():
    cells = ad.AnnData(np.array([[1.0, 3.0, 8.0], [0.0, 2.0, 4.0]], dtype=np.float32))
    mask = pd.DataFrame([[1, 0], [1, 0], [0, 1]], columns=["A", "B"])
    scores = study.module_score_sampler(cells, mask)(np.array([1, 0, 1]))
    np.testing.assert_allclose(scores, [[1.0, 4.0], [2.0, 8.0], [1.0, 4.0]])


def test_vega_parameters_apply_dotted_overrides_and_never_checkpoint():
    params = study.vega_parameters(study.PAPER, max_epochs=7)
    assert params["model"]["dropout"] == 0.5 and params["training"]["learning_rate"] == 1e-4
    assert params["training"]["max_epochs"] == 7 and params["training"]["checkpoint_dir"] is None
    assert "add_nodes" not in params


@requires_shared_data
@pytest.mark.slow
def test_toy_study_ranks_the_ifn_module_for_vega_and_the_module_score():
    result = study.run("toy")
    (row,) = result["kang_subsets"]
    assert row["ifn_module_genes"] >= 5
    for estimator in study.ESTIMATORS:  # the interferon response dominates Kang
        assert row["module_score"][estimator]["ifn_rank"] == 1
        ranks = result["summary"][f"defaults, {estimator}"]["ifn_ranks"]
        assert ranks == [row["defaults"][estimator]["ifn_rank"]]
    assert row["defaults"]["epochs"] == study.SIZES["toy"].max_epochs
    methods = {entry["method"] for entry in result["planted_modules"]}
    assert methods == {"vega", "module_score", "gsea"}


def test_markdown_table_lists_rank_ln_bf_first_module_and_seed_ranks_per_estimator():
    entry = {
        "ifn_rank": 2,
        "ifn_ln_bf": 6.811,
        "first_module": "REACTOME_INTERFERON_SIGNALING",
        "ifn_rank_over_bf_seeds": [2, 3],
    }
    missing = {
        "ifn_rank": None,
        "ifn_ln_bf": None,
        "first_module": "REACTOME_APOPTOSIS",
        "ifn_rank_over_bf_seeds": [None, None],
    }
    by_estimator = {"analytic": entry, "sampling": missing}
    rows = [
        {"n_cells": 300, "n_genes": 250, "seed": 0}
        | {"defaults": by_estimator, "module_score": by_estimator}
    ]
    lines = study.markdown_table(rows, ["defaults"]).splitlines()
    assert lines[0] == (
        "| cells × genes (seed) | defaults, analytic | module_score, analytic"
        " | defaults, sampling | module_score, sampling |"
    )
    assert lines[2].startswith(
        "| 300 × 250 (0) | 2 (6.81); INTERFERON_SIGNALING; seeds 2, 3 | 2 (6.81); "
    )
    assert lines[2].endswith("| None (–); APOPTOSIS; seeds None, None |")


def test_parse_override_reads_the_value_as_yaml_and_refuses_a_missing_equals_sign():
    assert study.parse_override("model.z_dropout=0.0") == ("model.z_dropout", 0.0)
    assert study.parse_override("training.early_stopping_patience=null") == (
        "training.early_stopping_patience",
        None,
    )
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        study.parse_override("model.dropout")
