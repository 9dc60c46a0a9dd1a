"""Kedro hooks that make every MLflow run traceable to its data and complete with artifacts.

kedro-mlflow starts one MLflow run per ``kedro run`` and logs the parameters; these hooks add
what it does not: the version of every versioned dataset a run read or wrote (as tags), and
the files of trained models, figures and report tables (as artifacts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

logger = logging.getLogger(__name__)

_ARTIFACT_TYPES = ("ModelBundleDataset", "MatplotlibDataset", "HTMLDataset", "TextDataset")
_ARTIFACT_LAYERS = ("08_reporting", "07_model_output", "06_models")


def _active_run() -> bool:
    import mlflow

    return mlflow.active_run() is not None


class DataLineageHook:
    """Tags the MLflow run with dataset versions and logs model/report files as artifacts."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    def _versioned(self, name: str) -> AbstractVersionedDataset | None:
        dataset = self._catalog.get(name) if self._catalog is not None else None
        return dataset if isinstance(dataset, AbstractVersionedDataset) else None

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        dataset = self._versioned(dataset_name)
        if dataset is None or not _active_run():
            return
        import mlflow

        version = dataset.resolve_load_version()
        if version:
            mlflow.set_tag(f"data_version.input.{dataset_name}", version)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        if dataset is None or not _active_run():
            return
        import mlflow

        path = _saved_path(dataset)
        if isinstance(dataset, AbstractVersionedDataset):
            mlflow.set_tag(f"data_version.output.{dataset_name}", dataset.resolve_save_version())
        if path is None or not path.exists() or not _is_artifact(dataset, path):
            return
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=dataset_name)
        else:
            mlflow.log_artifact(str(path), artifact_path=dataset_name)


def _saved_path(dataset: Any) -> Path | None:
    try:
        if isinstance(dataset, AbstractVersionedDataset):
            return Path(str(dataset._get_versioned_path(dataset.resolve_save_version())))
        filepath = getattr(dataset, "_filepath", None)
        return Path(str(filepath)) if filepath is not None else None
    except Exception:  # a dataset without a local path (memory, remote) has nothing to log
        return None


def _is_artifact(dataset: Any, path: Path) -> bool:
    if type(dataset).__name__ in _ARTIFACT_TYPES:
        return True
    return any(layer in path.parts for layer in _ARTIFACT_LAYERS)
