"""HTML report: sections survive JSON, the page has the expected chapters, tables and links."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from genevae.errors import GenevaeInputError
from genevae.reporting import (
    FigureBlock,
    ReportSection,
    TableBlock,
    markdown_table,
    render_report,
    table_to_html,
)
from genevae.reporting.sections import METRIC_COLUMNS


def _figure() -> Figure:
    figure = Figure(figsize=(3, 2))
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], label="line")
    ax.set_xlabel("x")
    return figure


def _metrics() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ["vega", "vega", False, "latent", "silhouette", "cell_type", 0.41, True],
            ["vega", "pca50", True, "latent", "silhouette", "cell_type", 0.18, True],
            ["vega", "vega", False, "modules", "n_significant", "modules", np.nan, False],
        ],
        columns=list(METRIC_COLUMNS),
    )


def _section() -> ReportSection:
    return ReportSection(
        key="vega",
        title="VEGA <on> Kang",
        summary="First paragraph.\n\nSecond paragraph.",
        notes=["Kang has no batch column."],
        blocks=[
            TableBlock("Latent quality", pd.DataFrame({"metric": ["silhouette"], "vega": [0.41]})),
            FigureBlock.from_figure("Silhouette", _figure(), "bars"),
        ],
        metrics=_metrics(),
        lineage=[
            {
                "dataset": "vega.kang.model",
                "version": "2026-01-01T00.00.00.000Z",
                "run_id": "abc123",
                "run_name": "vega.kang",
                "run_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc123",
            }
        ],
        computed_at="2026-01-01 00:00 UTC",
    )


def test_sections_round_trip_through_json_with_types_restored():
    section = _section()
    restored = ReportSection.from_dict(json.loads(json.dumps(section.to_dict())))
    assert restored.title == section.title
    assert [type(b).__name__ for b in restored.blocks] == ["TableBlock", "FigureBlock"]
    assert restored.blocks[1].png_base64 == section.blocks[1].png_base64
    assert restored.metrics["headline"].dtype == bool
    assert np.isnan(restored.metrics["value"].iloc[2])
    pd.testing.assert_frame_equal(restored.blocks[0].table, section.blocks[0].table)


def test_section_refuses_a_metrics_table_without_the_shared_columns():
    with pytest.raises(GenevaeInputError, match="lacks columns"):
        ReportSection("x", "X", metrics=pd.DataFrame({"value": [1.0]}))


def test_report_has_overview_sections_figures_provenance_and_parameters():
    missing = ReportSection("tybalt", "Tybalt", summary="Run the tybalt pipeline.", available=False)
    html = render_report(
        "genevae evaluation report",
        [_section(), missing],
        generated_at="2026-01-01 00:00 UTC",
        comparison=pd.DataFrame({"model": ["vega"], "vega": [0.41], "pca50": [0.18]}),
        parameters={"evaluation": {"seed": 0}},
        run={"run_id": "run42", "url": "http://127.0.0.1:5000/#/experiments/1/runs/run42"},
        extra_lineage=[{"dataset": "kang.processed", "version": "v1"}],
    )
    assert html.startswith("<!DOCTYPE html>")
    for anchor in ('id="overview"', 'id="vega"', 'id="tybalt"', 'id="provenance"'):
        assert anchor in html
    assert "VEGA &lt;on&gt; Kang" in html  # escaped
    assert "<p>Second paragraph.</p>" in html
    assert 'class="missing">Run the tybalt pipeline.' in html
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)) == 1
    assert 'href="http://127.0.0.1:5000/#/experiments/1/runs/abc123"' in html
    assert "kang.processed" in html and "this evaluation run" in html
    assert "run42" in html and "evaluation:\n  seed: 0" in html
    assert "<td>0.41</td>" in html and "<td>0.18</td>" in html


def test_collapsed_tables_fold_into_details():
    section = ReportSection(
        "x", "X", blocks=[TableBlock("Parameters", pd.DataFrame({"p": ["a", "b"]}), collapsed=True)]
    )
    html = render_report("r", [section], generated_at="now")
    assert "<details><summary>show 2 rows</summary>" in html
    restored = ReportSection.from_dict(json.loads(json.dumps(section.to_dict())))
    assert restored.blocks[0].collapsed


def test_tables_format_numbers_and_say_how_many_rows_are_hidden():
    table = pd.DataFrame({"name": list("abcde"), "value": [1.23456, np.nan, 3, 1e-9, None]})
    html = table_to_html(table, max_rows=3)
    assert "<td>1.23</td>" in html and "<td>–</td>" in html and "<td>3</td>" in html
    assert "2 more rows" in html


def test_markdown_table_is_github_flavoured():
    text = markdown_table(pd.DataFrame({"metric": ["a|b"], "value": [0.123456], "n": [1200]}))
    assert text.splitlines() == [
        "| metric | value | n |",
        "| --- | ---: | ---: |",
        "| a\\|b | 0.123 | 1,200 |",
    ]
