"""The report node: every saved section → one HTML page, a cross-model table and MLflow metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from genevae.pipelines.evaluation.adapters import current_run, mlflow_metric_name, producing_run
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.reporting import markdown_table, render_report
from genevae.reporting.sections import METRIC_COLUMNS, ReportSection

OVERVIEW_INDEX = ["model", "family", "metric", "subset"]


def model_comparison(metrics: pd.DataFrame) -> pd.DataFrame:
    """Headline scores: one row per model/metric/subset, the model's own ``score`` and one
    column per baseline (PCA, chance, gene mean, GSEA, module scores, training mean, noise
    ceiling, the paper's value…); ``pca<k>`` baselines share one ``pca`` column."""
    headline = metrics[metrics["headline"].astype(bool)]
    if headline.empty:
        return pd.DataFrame(columns=[*OVERVIEW_INDEX, "score"])
    column = np.where(
        headline["is_baseline"].astype(bool),
        headline["method"].astype(str).str.replace(r"^pca\d+$", "pca", regex=True),
        "score",
    )
    wide = headline.assign(column=column).pivot_table(
        index=OVERVIEW_INDEX, columns="column", values="value", aggfunc="first", sort=False
    )
    baselines = [c for c in dict.fromkeys(column) if c != "score"]
    return wide.reindex(columns=["score", *baselines]).reset_index().rename_axis(columns=None)


def _run_inputs(run: dict[str, str] | None, ui_url: str, known: set[str]) -> list[dict[str, Any]]:
    """Versioned catalog inputs the lineage hook tagged on this run (not its own outputs and
    not those a section already lists), with the runs that wrote them."""
    if run is None:
        return []
    import mlflow

    tags = mlflow.MlflowClient().get_run(run["run_id"]).data.tags
    prefix = "data_version.input."
    rows = []
    for key, version in sorted(tags.items()):
        source = key.removeprefix(prefix)
        if key.startswith(prefix) and not source.startswith("evaluation") and source not in known:
            found = producing_run(source, version, ui_url)
            rows.append({"dataset": source, "version": version} | found)
    return [{k: v for k, v in row.items() if k != "params"} for row in rows]


def _mlflow_metrics(metrics: pd.DataFrame) -> dict[str, dict[str, float]]:
    headline = metrics[metrics["headline"].astype(bool)]
    return {
        mlflow_metric_name(row.model, row.family, row.metric, row.subset, row.method): {
            "value": float(row.value),
            "step": 0,
        }
        for row in headline.itertuples()
        if row.value is not None and np.isfinite(float(row.value))
    }


def build_report(
    report_params: dict[str, Any], evaluation_params: dict[str, Any], *saved: Loaded | None
) -> tuple[str, pd.DataFrame, pd.DataFrame, str, dict[str, dict[str, float]]]:
    """HTML report, all scores (long), the cross-model overview (table and markdown), MLflow
    metrics.

    ``saved`` are the sections as last saved (a model's section from an earlier run is used
    when this run did not evaluate it; a section never saved is skipped).
    """
    sections = [ReportSection.from_dict(item.data) for item in saved if item is not None]
    frames = [s.metrics for s in sections if not s.metrics.empty]
    metrics = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)
    )
    overview = model_comparison(metrics)
    run = current_run(report_params["mlflow_ui_url"])
    known = {row["dataset"] for section in sections for row in section.lineage}
    html = render_report(
        report_params["title"],
        sections,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        comparison=overview if not overview.empty else None,
        parameters=evaluation_params,
        run=run,
        intro=report_params["intro"],
        extra_lineage=_run_inputs(run, report_params["mlflow_ui_url"], known),
    )
    return html, metrics, overview, markdown_table(overview), _mlflow_metrics(metrics)
