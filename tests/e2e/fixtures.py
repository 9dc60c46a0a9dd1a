"""Fixtures of the browser tests and the notebook tests (a plugin: see tests/conftest.py).

They build on the suite's single project copy (tests/project.py), so a model pipeline that
an earlier test already ran there is not run again (`pipeline_outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.pipeline import Pipeline

from tests.conftest import PROJECT_ROOT
from tests.e2e.browser import (
    Server,
    ServerCommand,
    find_chromium,
    free_port,
    seed_local_storage,
    serve,
)

ARTIFACTS = PROJECT_ROOT / "tests" / "e2e" / "artifacts"
VIZ_SETTINGS = json.dumps({"showFeatureHints": False})  # kedro-viz's localStorage "KedroViz"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of headless Chromium; the test is skipped when none is installed."""
    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """tests/e2e/artifacts/: screenshots and server logs to look at after a run (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def pipeline_outputs(
    processed_project: Path, run_pipeline: Callable[..., dict[str, Any]]
) -> Callable[[str], Path]:
    """``pipeline_outputs("vega")`` runs that pipeline (tiny test settings) once per session.

    Returns the project copy. A pipeline that is not registered yet, or has no nodes yet,
    skips the test that asked for it.
    """
    done: set[str] = set()

    def ensure(name: str) -> Path:
        if name not in done:
            if not _pipeline_has_nodes(name):
                pytest.skip(f"pipeline {name!r} has no nodes yet")
            if not _outputs_exist(processed_project, name):
                run_pipeline(name)
            done.add(name)
        return processed_project

    return ensure


@pytest.fixture(scope="session")
def ui_servers(
    vega_project: Path, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """kedro-viz and the MLflow UI on the vega project copy, started together.

    The commands are those of ``make viz`` and ``make mlflow-ui`` (free ports; one MLflow
    worker to keep the two cores free). kedro-viz's ``profile`` is a browser profile where
    its feature-hint tour is switched off, as a user does once in its settings (kedro-viz
    12.5 has no server-side setting; docs/web-uis.md).
    """
    viz_port, mlflow_port = free_port(), free_port()
    profile = tmp_path_factory.mktemp("chromium-viz")
    if (browser := find_chromium()) is not None:
        seed_local_storage(browser, profile, viz_port, {"KedroViz": VIZ_SETTINGS})
    bin_dir = Path(sys.executable).parent
    kedro_viz = ServerCommand(
        [
            str(bin_dir / "kedro"),
            "viz",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(viz_port),
            "--no-browser",
        ],
        cwd=vega_project,
        port=viz_port,
        ready_path="/api/main",
        log=artifacts_dir / "kedro_viz.log",
    )
    mlflow_ui = ServerCommand(
        [
            str(bin_dir / "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            "sqlite:///mlflow.db",
            "--workers",
            "1",
        ],
        cwd=vega_project,
        port=mlflow_port,
        ready_path="/health",
        log=artifacts_dir / "mlflow_ui.log",
    )
    with serve(kedro_viz, mlflow_ui) as (viz, mlflow):
        yield {"kedro_viz": dataclasses.replace(viz, profile=profile), "mlflow_ui": mlflow}


@pytest.fixture(scope="session")
def vega_project(pipeline_outputs: Callable[[str], Path]) -> Path:
    """The project copy after data_processing and vega (with its MLflow run)."""
    return pipeline_outputs("vega")


def all_pipelines() -> dict[str, Pipeline]:
    """Every registered pipeline (a session run loads only the pipelines it ran)."""
    from kedro.framework.project import pipelines

    pipelines.set_requested(None)
    return dict(pipelines.items())


def _outputs_exist(project: Path, name: str) -> bool:
    """Whether an earlier test already ran ``name`` here (all its saved outputs exist)."""
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        catalog = session.load_context().catalog
        saved = [
            catalog.get(output)
            for output in all_pipelines()[name].outputs()
            if not _in_memory_or_mlflow(catalog.get(output))
        ]
    return bool(saved) and all(dataset.exists() for dataset in saved)


def _in_memory_or_mlflow(dataset: Any) -> bool:
    """Undeclared outputs (``catalog.get`` gives None, e.g. a report's headline) stay in memory."""
    kind = type(dataset).__name__ if dataset is not None else "MemoryDataset"
    return kind == "MemoryDataset" or kind.startswith("Mlflow")


def _pipeline_has_nodes(name: str) -> bool:
    pipelines = all_pipelines()
    return name in pipelines and bool(pipelines[name].nodes)
