"""The MLflow UI after a short vega training run: the run, its per-epoch loss and its figures.

Screenshots go to tests/e2e/artifacts/mlflow_*.png.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from genevae.ui import mlflow_runs_url
from tests.e2e.browser import Server, browse, browse_until


@pytest.fixture(scope="module")
def mlflow_ui(ui_servers: dict[str, Server]) -> Server:
    return ui_servers["mlflow_ui"]


def _test_setting(project: Path, file: str, *keys: str) -> Any:
    value = yaml.safe_load((project / "conf" / "test" / file).read_text())
    for key in keys:
        value = value[key]
    return value


def _latest_run(server: Server, experiment_name: str, run_name: str) -> dict[str, Any]:
    experiments = server.post("/api/2.0/mlflow/experiments/search", {"max_results": 100})
    experiment = next(e for e in experiments["experiments"] if e["name"] == experiment_name)
    runs = server.post(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [experiment["experiment_id"]],
            "filter": f"tags.`mlflow.runName` = '{run_name}'",
            "order_by": ["attributes.start_time DESC"],
            "max_results": 1,
        },
    )
    return runs["runs"][0]


@pytest.mark.browser
def test_training_run_with_epoch_metrics_and_figures(
    mlflow_ui: Server, chromium: str, artifacts_dir: Path, vega_project: Path, tmp_path: Path
) -> None:
    experiment = _test_setting(vega_project, "mlflow.yml", "tracking", "experiment", "name")
    max_epochs = _test_setting(
        vega_project, "parameters_vega.yml", "vega", "training", "max_epochs"
    )
    run = _latest_run(mlflow_ui, experiment, "vega.kang")  # the pipeline × dataset run
    run_id, experiment_id = run["info"]["run_id"], run["info"]["experiment_id"]
    assert run["info"]["status"] == "FINISHED"

    query = urllib.parse.urlencode({"run_id": run_id, "metric_key": "train_loss"})
    history = mlflow_ui.get(f"/api/2.0/mlflow/metrics/get-history?{query}")["metrics"]
    assert [point["step"] for point in history] == list(range(max_epochs))

    query = urllib.parse.urlencode({"run_id": run_id, "path": "vega.kang.training_curves"})
    files = mlflow_ui.get(f"/api/2.0/mlflow/artifacts/list?{query}")["files"]
    figure = next(f["path"] for f in files if f["path"].endswith(".png"))
    query = urllib.parse.urlencode({"path": figure, "run_uuid": run_id})
    with urllib.request.urlopen(f"{mlflow_ui.url}/get-artifact?{query}", timeout=30) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"

    run_page = f"{mlflow_ui.url}/#/experiments/{experiment_id}/runs/{run_id}"
    # One browser profile for the three pages: the first fills the cache with the UI bundles.
    page = partial(browse, chromium, profile=tmp_path / "chromium", window=(1600, 1200))
    dom = page(run_page, screenshot=artifacts_dir / "mlflow_run.png")
    assert "Finished" in dom and "train_loss" in dom
    dom = page(f"{run_page}/artifacts/{figure}", screenshot=artifacts_dir / "mlflow_figure.png")
    assert f'<img alt="{figure}"' in dom
    dom = browse_until(
        chromium,
        f"{run_page}/model-metrics",
        lambda html: html.count('class="main-svg"') >= 3,  # plotly charts drawn
        profile=tmp_path / "chromium",
        window=(1600, 1200),
        screenshot=artifacts_dir / "mlflow_metrics.png",
        virtual_time_ms=60000,  # the chart library is loaded lazily
    )
    assert "train_loss" in dom and dom.count('class="main-svg"') >= 3


@pytest.mark.browser
def test_printed_url_opens_the_projects_runs_table(
    mlflow_ui: Server, chromium: str, artifacts_dir: Path, vega_project: Path, tmp_path: Path
) -> None:
    """``make mlflow-ui`` prints this URL (genevae.ui): the runs table, not the GenAI pages."""
    experiment = _test_setting(vega_project, "mlflow.yml", "tracking", "experiment", "name")
    url = mlflow_runs_url(mlflow_ui.url, experiment)
    experiment_id = _latest_run(mlflow_ui, experiment, "vega.kang")["info"]["experiment_id"]
    assert url == (
        f"{mlflow_ui.url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )
    dom = browse_until(
        chromium,
        url,
        lambda html: ">vega<" in html,
        profile=tmp_path / "chromium",
        window=(1600, 1000),
        screenshot=artifacts_dir / "mlflow_runs_table.png",
        virtual_time_ms=30000,
    )
    assert ">vega<" in dom  # the kedro run's run; its vega.kang child is folded under it
    assert "Run Name" in dom
