"""The evaluation's VEGA section carries the vega pipeline's evidence: verdicts and metrics."""

from __future__ import annotations

import pytest

from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.modules import evidence_part
from tests.reporting.test_evidence_report import COMPARISON, _evidence

PARAMS = {"model": "vega", "evidence": {"n_top": 2}, "module_activity": {"ln_bf_threshold": 3.0}}


def _loaded(table, name):
    return Loaded(table, f"vega.kang.{name}", "2026-12-08T00.00.00.000Z", None)


def test_evidence_part_scores_backed_calls_and_heldout_reconstruction_beside_random_masks():
    evidence, stability, heldout = _evidence()
    part = evidence_part(
        _loaded(evidence, "differential_evidence"),
        _loaded(stability, "evidence_stability"),
        _loaded(heldout, "heldout_reconstruction"),
        PARAMS,
    )
    metrics = part.metrics.set_index(["method", "metric"])["value"]
    assert metrics[("vega", "n_significant")] == 4
    assert metrics[("vega", "n_beating_control")] == 3
    assert metrics[("vega", "n_backed")] == 2
    assert metrics[("vega", "top5_overlap_bayes_factor_seed")] == pytest.approx(0.8667)
    assert metrics[("vega", "heldout_loss")] == pytest.approx(0.41)
    assert metrics[("random_mask", "heldout_loss")] == pytest.approx(0.46)
    headline = part.metrics[part.metrics["headline"]]
    assert set(headline["metric"]) == {"heldout_loss"}
    assert headline.set_index("method")["is_baseline"].to_dict() == {
        "vega": False,
        "random_mask": True,
    }
    (table,) = part.blocks
    assert list(table.table["module"]) == ["TRYPTOPHAN", "IFN_ALPHA_BETA"]  # n_top = 2
    assert f"{COMPARISON}: 4 of 7 modules significant" in part.summary
    assert "vega.kang.differential_evidence 2026-12-08T00.00.00.000Z" in part.notes[0]


def test_without_an_evidence_table_the_part_says_to_rerun_vega():
    part = evidence_part(None, None, None, PARAMS)
    assert part.available and not part.blocks
    assert part.notes == ["No evidence table yet: re-run the vega pipeline to write it."]
