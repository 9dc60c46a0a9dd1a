"""The evidence behind VEGA's calls, as the model report and the evaluation report show it:
one verdict per top module, from the real control p, baseline calls and seed spread."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from genevae.analysis.evidence import annotate_evidence
from genevae.reporting.evidence import evidence_report, module_verdict, top_evidence
from genevae.reporting.model_reports import vega_report

COMPARISON = "condition:stimulated_vs_control"
# module: ln BF, module-score ln BF, GSEA NES, GSEA FDR, ln BF mean and SD over BF seeds
MODULES = {
    "IFN_ALPHA_BETA": (8.2, 6.0, 2.1, 0.001, 8.0, 0.3),  # backed
    "TRYPTOPHAN": (9.0, 1.0, 1.9, 0.004, 8.9, 0.2),  # control passes, module score no call
    "CYTOKINE": (5.5, 0.5, 1.5, 0.2, 4.0, 1.5),  # random modules reach it, unstable
    "RIBOSOME": (-7.0, -4.5, -1.8, 0.01, -7.1, 0.2),  # backed, down
    "MISSED": (1.0, 5.0, 2.0, 0.001, 1.1, 0.4),  # both baselines call it, VEGA does not
    "NULL_A": (0.3, 0.2, 0.1, 0.9, 0.2, 0.3),
    "NULL_B": (-0.5, -0.1, -0.2, 0.8, -0.4, 0.2),
}


def _evidence() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    values = pd.DataFrame.from_dict(
        MODULES,
        orient="index",
        columns=["ln_bf", "module_score_ln_bf", "nes", "fdr", "seed_mean", "seed_sd"],
    ).rename_axis("module")
    bf = values.reset_index()[["module", "ln_bf", "module_score_ln_bf"]].assign(
        comparison=COMPARISON, n_genes=20, is_significant=lambda t: t["ln_bf"].abs() > 3
    )
    random_modules = pd.DataFrame(  # 40 random modules below |ln BF| 2, two at 6
        {"n_genes": 20, "ln_bf": np.r_[np.linspace(-2, 2, 40), 6.0, -6.0]}
    )
    evidence = annotate_evidence(
        bf, gsea=values.reset_index()[["module", "fdr", "nes"]], random_modules=random_modules
    )
    evidence["ln_bf_bayes_factor_seed_mean"] = evidence["module"].map(values["seed_mean"])
    evidence["ln_bf_bayes_factor_seed_sd"] = evidence["module"].map(values["seed_sd"])
    stability = pd.DataFrame(
        {
            "comparison": [COMPARISON],
            "n_replicates": [3],
            "k": [5],
            "top_k_overlap": [0.8667],
            "kind": ["bayes_factor_seed"],
        }
    )
    heldout = pd.DataFrame(
        {
            "model": ["real", "random_mask_0", "random_mask_1"],
            "kind": ["real", "random_mask", "random_mask"],
            "replicate": [0, 0, 1],
            "validation_reconstruction": [0.41, 0.45, 0.47],
        }
    )
    return evidence, stability, heldout


def test_each_top_module_gets_the_verdict_its_control_and_baselines_support():
    evidence, _, _ = _evidence()
    table = top_evidence(evidence).set_index("module")
    assert list(table.index) == ["TRYPTOPHAN", "IFN_ALPHA_BETA", "RIBOSOME", "CYTOKINE"]
    p_top = 1 / 43  # exceeds every one of its 42 size-matched random modules
    assert table.loc["IFN_ALPHA_BETA", "control p"] == pytest.approx(p_top, abs=5e-4)
    assert table.loc["IFN_ALPHA_BETA", "verdict"] == (
        f"backed: beats its size-matched random modules (p = {p_top:.3f}); "
        "module score agrees, GSEA agrees"
    )
    assert table.loc["RIBOSOME", "verdict"].startswith("backed:")
    assert table.loc["TRYPTOPHAN", "verdict"] == (
        f"partly backed: beats its size-matched random modules (p = {p_top:.3f}); "
        "module score makes no call, GSEA agrees"
    )
    assert table.loc["CYTOKINE", "verdict"] == (
        f"not backed: random modules of its size score as high (p = {3 / 43:.2f}); "
        "module score makes no call, GSEA makes no call; "
        "unstable over Bayes-factor seeds (ln BF 4.0 ± 1.5)"
    )
    assert table.loc["CYTOKINE", "ln BF over BF seeds (mean ± SD)"] == "4.00 ± 1.50"
    assert not table.loc["CYTOKINE", "passes control"]


def test_a_missing_control_backs_nothing_and_a_baseline_that_did_not_run_is_named():
    row = {"ln_bf": 6.0, "vega_call": 1.0, "module_score_call": 1.0, "gsea_call": np.nan}
    row |= {"control_empirical_p": np.nan, "control_pass": False}
    assert module_verdict(row) == (
        "partly backed: no random-mask control; module score agrees, GSEA not run"
    )
    row |= {"module_score_call": -1.0}
    assert module_verdict(row).startswith("not backed: no random-mask control; module score calls")


def test_summary_counts_backed_calls_stability_misses_and_heldout_reconstruction():
    summary, blocks = evidence_report(*_evidence())
    assert (
        f"{COMPARISON}: 4 of 7 modules significant; 3 beat their size-matched random modules; "
        "2 of these also have every baseline's call." in summary
    )
    assert "Top-5 overlap over 3 Bayes-factor seeds: 0.87." in summary
    assert "Called by the module score and GSEA but not by VEGA: 1 module(s) (MISSED)." in summary
    assert "real mask 0.4100, random masks 0.4600 ± 0.0141" in summary
    assert "better than 2 of 2 random masks" in summary
    assert [block.title for block in blocks] == [
        f"Evidence for the top significant modules, {COMPARISON}"
    ]


def test_vega_report_html_shows_the_evidence_table_verdicts_and_headline():
    evidence, stability, heldout = _evidence()
    bf = evidence[["comparison", "module", "ln_bf", "n_genes", "is_significant"]].assign(
        mean_diff=evidence["ln_bf"]
    )
    page, headline = vega_report(
        bf, pd.DataFrame(columns=["module"]), None, {}, ln_bf_cap=27.6,
        evidence=(evidence, stability, heldout),
    )  # fmt: skip
    assert headline[-1] == (
        f"Evidence, {COMPARISON}: 2 of 4 significant modules beat the random-mask control and "
        "agree with every baseline"
    )
    text = html.unescape(page)
    assert '<h2 id="evidence">Evidence behind the calls</h2>' in page
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>(.*?)</tr>", text.split('id="evidence"')[1], re.S)
    cells = {module: re.findall(r"<td>(.*?)</td>", rest) for module, rest in rows}
    assert list(cells) == ["TRYPTOPHAN", "IFN_ALPHA_BETA", "RIBOSOME", "CYTOKINE"]
    assert cells["IFN_ALPHA_BETA"][:8] == [
        "8.2", "6", "2.1", "0.001", "yes", "0.0233", "yes", "8.00 ± 0.30"
    ]  # fmt: skip
    assert cells["RIBOSOME"][:4] == ["-7", "-4.5", "-1.8", "0.01"]
    assert cells["CYTOKINE"][-1].startswith("not backed: random modules of its size")
    assert "unstable over Bayes-factor seeds (ln BF 4.0 ± 1.5)" in text
    assert "partly backed: beats its size-matched random modules (p = 0.023)" in text
    assert "real mask 0.4100, random masks 0.4600" in text


def test_vega_report_without_evidence_says_so():
    page, _ = vega_report(
        pd.DataFrame(
            {"comparison": ["c"], "module": ["M"], "ln_bf": [1.0], "mean_diff": [0.1],
             "n_genes": [5], "is_significant": [False]}
        ),
        pd.DataFrame(columns=["module"]), None, {}, ln_bf_cap=27.6,
    )  # fmt: skip
    assert "No evidence table." in page


def test_a_comparison_without_significant_modules_gets_an_empty_table():
    evidence, stability, heldout = _evidence()
    evidence["is_significant"] = False
    summary, blocks = evidence_report(evidence, stability, heldout)
    assert f"{COMPARISON}: 0 of 7 modules significant" in summary
    assert blocks[0].table.empty and "verdict" in blocks[0].table.columns
