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

    def __init__(self, runs: DatasetRuns | None = None) -> None:
        self._catalog: Any = None
        self._runs = runs

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
        if not version:
            return
        tag = f"data_version.input.{_untranscoded(dataset_name)}"
        if self._runs is None:
            mlflow.set_tag(tag, version)
        else:  # inputs load before the node starts: tag the run it will log into
            self._runs.pending_tags[tag] = version

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        if dataset is None or not _active_run():
            return
        import mlflow

        path = _saved_path(dataset)
        dataset_name = _untranscoded(dataset_name)
        if isinstance(dataset, AbstractVersionedDataset):
            mlflow.set_tag(f"data_version.output.{dataset_name}", dataset.resolve_save_version())
        if path is None or not path.exists() or not _is_artifact(dataset, path):
            return
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=dataset_name)
        else:
            mlflow.log_artifact(str(path), artifact_path=dataset_name)


def _untranscoded(dataset_name: str) -> str:
    """``vega.kang.model`` for ``vega.kang.model@saved``: one dataset, however it is loaded."""
    return dataset_name.split("@", 1)[0]


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


class DatasetRuns:
    """One MLflow run per pipeline × dataset, nested in the ``kedro run``'s run.

    A node of ``vega.kang`` (its namespace) runs inside the child run ``vega.kang``, whose tags
    name the dataset, its kind and its raw file(s) with their sha256; the params the node
    reads, the metrics it logs and the outputs it saves go there. Nodes outside a dataset's
    namespace (evaluation) log into the parent run. kedro-mlflow re-activates the parent before
    every node, so the child is closed before that (:class:`DatasetRunCloser`, tryfirst) and
    resumed after it (:class:`DatasetRunHook`, trylast); outputs are saved after a node's
    ``after_node_run``, so the child stays open until the next node starts.
    """

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the children of an earlier ``kedro run`` (sessions may share a process)."""
        self.run_ids: dict[str, str] = {}
        self.open_key: str | None = None
        self.pending_tags: dict[str, str] = {}

    def enter(self, key: str | None, params: dict[str, Any]) -> None:
        """Resume (or start) the child run of ``key``; then tag the inputs read for the node."""
        import mlflow

        if key is not None:
            run = mlflow.start_run(
                run_id=self.run_ids.get(key), run_name=key, nested=True, log_system_metrics=False
            )
            if key not in self.run_ids:
                self.run_ids[key] = run.info.run_id
                mlflow.set_tags(self._tags(key))
            self.open_key = key
            mlflow.log_params(_flat_params(params))
        if self.pending_tags:
            mlflow.set_tags(self.pending_tags)
            self.pending_tags = {}

    def leave(self, status: str = "FINISHED") -> None:
        """Close the open child run, if any, leaving the parent active."""
        if self.open_key is None or not _active_run():
            self.open_key = None
            return
        import mlflow

        if mlflow.active_run().info.run_id == self.run_ids[self.open_key]:
            mlflow.end_run(status)
        self.open_key = None

    def _tags(self, key: str) -> dict[str, str]:
        from genevae.config import current_registry
        from genevae.registry import dataset_raw_files

        pipeline, dataset = key.split(".")
        registry = current_registry()
        entry = registry.datasets[dataset]
        tags = {"dataset": dataset, "dataset_kind": entry["kind"], "pipeline": pipeline}
        for name, path in dataset_raw_files(registry, dataset).items():
            tags[f"raw.{name}.path"] = path
            tags[f"raw.{name}.sha256"] = self._sha256(path)
        return tags

    def _sha256(self, path: str) -> str:
        from genevae.datasets.fetch import sha256_of

        if path not in self._digests:
            self._digests[path] = sha256_of(Path(path)) if Path(path).is_file() else "missing"
        return self._digests[path]


class DatasetRunHook:
    """Enters the node's pipeline × dataset run after kedro-mlflow re-activated its own."""

    def __init__(self, runs: DatasetRuns) -> None:
        self._runs = runs

    @hook_impl(trylast=True)
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        if not _active_run():
            return
        params = {k[len("params:") :]: v for k, v in inputs.items() if k.startswith("params:")}
        self._runs.enter(_dataset_run_key(node.namespace), params)


class DatasetRunCloser:
    """Leaves the open pipeline × dataset run before kedro-mlflow touches its own run."""

    def __init__(self, runs: DatasetRuns) -> None:
        self._runs = runs

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        self._runs.reset()

    @hook_impl(tryfirst=True)
    def before_node_run(self) -> None:
        self._runs.leave()

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._runs.leave()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        self._runs.leave("FAILED")


def _dataset_run_key(namespace: str | None) -> str | None:
    """``vega.kang`` for a node of ``vega.kang`` or ``gpo_vae.adamson.full``, else None."""
    from genevae.config import current_registry

    parts = (namespace or "").split(".")
    if len(parts) < 2 or parts[0] not in _DATASET_PIPELINES:
        return None
    return f"{parts[0]}.{parts[1]}" if parts[1] in current_registry().datasets else None


_DATASET_PIPELINES = ("data_processing", "vega", "tybalt", "gpo_vae")


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flat_params(value, f"{name}.")
        else:
            flat[name] = str(value)[:500]
    return flat
