"""The closing summary of a run: short, with the headline, the report and both web UIs."""

from __future__ import annotations

import pandas as pd

from genevae.reporting.summary import format_duration, run_summary, top_modules_headline


def _bf_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "comparison": ["stim"] * 4 + ["other"],
            "module": ["REACTOME_IFN", "REACTOME_TCR", "REACTOME_BCR", "REACTOME_NULL", "X"],
            "ln_bf": [27.631, -12.0, 3.0, 0.1, 5.0],
        }
    )


def test_headline_lists_top_modules_and_marks_saturated_ones():
    lines = top_modules_headline(_bf_table(), n=2, cap=27.631)
    assert lines[0] == "Top modules by |ln BF|, stim:"
    assert lines[1].split() == ["IFN", "ln", "BF", "+27.6", "(saturated)"]
    assert lines[2].split() == ["TCR", "ln", "BF", "-12.0"]
    assert lines[3] == "(1 more comparison(s) in the report)"


def test_summary_is_about_ten_lines_with_report_and_ui_hints():
    text = run_summary(
        pipelines=["vega"],
        seconds=95.4,
        headlines=top_modules_headline(_bf_table(), cap=27.631),
        reports=["data/08_reporting/vega_report.html/v/vega_report.html"],
        mlflow_run_url="http://127.0.0.1:5000/#/experiments/1/runs/abc",
        viz_url="http://127.0.0.1:4141/?pid=vega",
    )
    lines = text.splitlines()
    assert 8 <= len(lines) <= 14
    assert "vega finished in 1 min 35 s" in lines[1]
    assert any("Report: data/08_reporting/vega_report.html" in line for line in lines)
    assert any("make mlflow-ui" in line and "runs/abc" in line for line in lines)
    assert any("make viz" in line for line in lines)


def test_durations_read_naturally():
    assert format_duration(4.24) == "4.2 s"
    assert format_duration(3725) == "62 min 5 s"
