"""Run real pipelines on a throw-away copy of the project (its conf, fresh data folders).

Registered for the whole suite by tests/conftest.py (`pytest_plugins`), so every test
session shares one project copy: pipelines run once and build on each other, as for a user.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from genevae.datasets.fetch import fetch_all
from tests.conftest import PROJECT_ROOT, SHARED_DATA

DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def empty_project(root: Path) -> Path:
    """``root`` as a project: pyproject, the repository's conf (an empty conf/local), data layers.

    The package itself is installed (editable) in the venv, so ``src`` stays empty.
    """
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder with the repository's conf and the raw data fetched from the mirror.

    Shared by the whole test session so that pipelines can build on each other's outputs
    (data_processing first, then the models), as they do for a user.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    root = empty_project(tmp_path_factory.mktemp("project"))
    fetch_all(raw_dir=root / "data" / "01_raw", mirror=SHARED_DATA, progress=False)
    previous = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI",)}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    cwd = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(cwd)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def run_pipeline(project_copy: Path) -> Callable[..., dict[str, Any]]:
    """``run_pipeline("vega", params={...}, **session_run_kwargs)`` in the ``test`` env."""

    def run(
        name: str, params: dict[str, Any] | None = None, env: str = "test", **run_kwargs: Any
    ) -> dict[str, Any]:
        bootstrap_project(project_copy)
        try:
            with KedroSession.create(
                project_path=project_copy, env=env, runtime_params=params or {}
            ) as session:
                return session.run(pipeline_names=[name], **run_kwargs)
        finally:
            # kedro-mlflow re-enters its run before every node; in one process several
            # sessions would otherwise leave it on MLflow's active-run stack.
            while mlflow.active_run() is not None:
                mlflow.end_run()

    return run


@pytest.fixture(scope="session")
def processed_project(project_copy: Path, run_pipeline: Callable[..., dict[str, Any]]) -> Path:
    """The project copy after one ``data_processing`` run (what every model pipeline reads)."""
    run_pipeline("data_processing")
    return project_copy


def latest_version(path: Path) -> Path:
    """The newest version's file inside a versioned dataset folder."""
    versions = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    return versions[-1] / path.name


def mlflow_run(project: Path, run_name: str) -> str:
    """Id of the newest MLflow run of that name in the test store."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["genevae-test"],
        filter_string=f"tags.mlflow.runName = '{run_name}'",
        order_by=["start_time DESC"],
    )
    assert len(runs) >= 1, f"no MLflow run named {run_name!r}"
    return str(runs.iloc[0]["run_id"])
