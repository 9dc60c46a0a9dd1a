"""Kedro hooks that make every MLflow run traceable, light and ending with an answer.

kedro-mlflow starts one MLflow run per ``kedro run`` and logs the parameters; these hooks add
what it does not: the version of every versioned dataset a run read or wrote (tags), the
report files and figures (artifacts; models stay in ``data/06_models`` and are referenced by
path), tags a reader can use (the data set, the full command), one system-metrics monitor
per run, and a short summary printed when the run ends.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

from genevae.reporting.summary import format_duration, run_summary

logger = logging.getLogger(__name__)

_ARTIFACT_TYPES = ("MatplotlibDataset", "FigureFolderDataset", "HTMLReportDataset", "TextDataset")
_ARTIFACT_LAYERS = ("08_reporting",)
MLFLOW_UI = "http://127.0.0.1:5000"
KEDRO_VIZ = "http://127.0.0.1:4141"


def _active_run() -> bool:
    import mlflow

    return mlflow.active_run() is not None


def _active_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


class DataLineageHook:
    """Tags the MLflow run with dataset versions; logs report files and figures as artifacts.

    Models and model outputs (``06_models``, ``07_model_output``) are large and already
    versioned on disk, so the run records where they are (``data_path.output.<name>``)
    instead of a second copy: a demo run stays under 10 MB.
    """

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

        path = saved_path(dataset)
        dataset_name = _untranscoded(dataset_name)
        if isinstance(dataset, AbstractVersionedDataset):
            mlflow.set_tag(f"data_version.output.{dataset_name}", dataset.resolve_save_version())
        if path is None or not path.exists():
            return
        if not _is_artifact(dataset, path):
            mlflow.set_tag(f"data_path.output.{dataset_name}", str(path))
        elif path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=dataset_name)
        else:
            mlflow.log_artifact(str(path), artifact_path=dataset_name)


def _untranscoded(dataset_name: str) -> str:
    """``vega.kang.model`` for ``vega.kang.model@saved``: one dataset, however it is loaded."""
    return dataset_name.split("@", 1)[0]


def saved_path(dataset: Any) -> Path | None:
    """Where ``dataset`` wrote its last save (the versioned file), or ``None`` if not local."""
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


def kedro_command(run_params: dict[str, Any]) -> str:
    """The ``kedro run`` command line that reproduces a run (``--env`` and ``--params`` too)."""
    options: list[str] = []

    def add(flag: str, value: Any) -> None:
        if value:
            options.extend([flag, value if isinstance(value, str) else ",".join(map(str, value))])

    add("--pipelines", [p for p in run_params.get("pipeline_names") or [] if p != "__default__"])
    add("--env", run_params.get("env") if run_params.get("env") != "local" else None)
    add(
        "--params",
        [f"{k}={v}" for k, v in _flat_params(run_params.get("runtime_params") or {}).items()],
    )
    add("--tags", run_params.get("tags"))
    add("--nodes", run_params.get("node_names"))
    add("--from-nodes", run_params.get("from_nodes"))
    add("--to-nodes", run_params.get("to_nodes"))
    add("--from-inputs", run_params.get("from_inputs"))
    add("--to-outputs", run_params.get("to_outputs"))
    add("--namespaces", run_params.get("namespaces"))
    versions = run_params.get("load_versions") or {}
    add("--load-versions", [f"{name}:{version}" for name, version in versions.items()])
    runner = _runner_name(str(run_params.get("runner")))
    add("--runner", runner if runner != "SequentialRunner" else None)
    return shlex.join(["kedro", "run", *options])


def _runner_name(runner: str) -> str:
    """``<kedro.runner.parallel_runner.ParallelRunner object at 0x…>`` → ``ParallelRunner``;
    no runner (``"None"``) is Kedro's default, the SequentialRunner."""
    match = re.search(r"(\w+Runner)", runner)
    return match.group(1) if match else "SequentialRunner"


class RunContextHook:
    """Meaningful run tags, one system-metrics monitor per run, and the closing summary.

    kedro-mlflow re-enters the run before every node; with MLflow's own system-metrics switch
    each re-entry starts another monitor (two log lines and one more sampling thread per
    node). ``settings.py`` therefore turns MLflow's switch off and this hook runs a single
    monitor for the whole run when ``system_metrics`` is on.
    """

    def __init__(self, system_metrics: bool = True) -> None:
        self._system_metrics = system_metrics
        self._monitor: Any = None
        self._run: dict[str, str] | None = None
        self._started = 0.0
        self._headlines: list[str] = []
        self._reports: list[Path] = []
        self._report_runs: list[str | None] = []
        self._catalog: Any = None
        self._n_nodes = self._n_done = 0
        self._node_started = 0.0

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        self._started = time.monotonic()
        self._headlines, self._reports, self._report_runs, self._run = [], [], [], None
        self._n_nodes, self._n_done = len(pipeline.nodes), 0
        if not _active_run():
            return
        import mlflow

        run = mlflow.active_run()
        self._run = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}
        tags = {
            "runner": _runner_name(str(run_params.get("runner"))),
            "kedro_command": kedro_command(run_params),
        }
        mlflow.set_tags(tags)
        if self._system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(run.info.run_id)
            self._monitor.start()

    @hook_impl
    def before_node_run(self) -> None:
        self._node_started = time.monotonic()

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        """One progress line per node (Kedro's own five or more lines stay at DEBUG)."""
        self._n_done += 1
        width = len(str(self._n_nodes))
        logger.info(
            "[%*d/%d] %s %s",
            width,
            self._n_done,
            self._n_nodes,
            node.name,
            format_duration(time.monotonic() - self._node_started),
        )
        for name, value in outputs.items():
            if name.rsplit(".", 1)[-1].endswith("headline") and isinstance(value, list):
                self._headlines += [str(line) for line in value]
                self._report_runs.append(_active_run_id())

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        if type(dataset).__name__ == "HTMLReportDataset" and (path := saved_path(dataset)):
            self._reports.append(path)

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run (it prints nothing after)
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._stop_monitor()
        print(self.summary(run_params), flush=True)

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        self._stop_monitor()

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def summary(self, run_params: dict[str, Any]) -> str:
        """The closing summary of the run (see :func:`genevae.reporting.summary.run_summary`)."""
        pipelines = list(run_params.get("pipeline_names") or ["__default__"])
        run_url = None
        if self._run is not None:  # the report's (pipeline × dataset) run if there is one
            run_id = self._report_runs[0] if len(set(self._report_runs)) == 1 else None
            run_url = (
                f"{MLFLOW_UI}/#/experiments/{self._run['experiment_id']}/runs/"
                f"{run_id or self._run['run_id']}?workflowType=machine_learning"
            )
        root = Path(run_params.get("project_path") or ".")
        return run_summary(
            pipelines=pipelines,
            seconds=time.monotonic() - self._started,
            headlines=self._headlines,
            reports=[_relative(path, root) for path in self._reports],
            mlflow_run_url=run_url,
            viz_url=f"{KEDRO_VIZ}/?pid={pipelines[0]}" if len(pipelines) == 1 else KEDRO_VIZ,
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


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
    from genevae.registry import MODEL_PIPELINE

    parts = (namespace or "").split(".")
    if len(parts) < 2 or parts[0] not in ("data_processing", *MODEL_PIPELINE.values()):
        return None
    return f"{parts[0]}.{parts[1]}" if parts[1] in current_registry().datasets else None


def _flat_params(params: dict[str, Any]) -> dict[str, str]:
    """Dotted keys and text values of at most 500 characters (MLflow's limits)."""
    from genevae.registry import flatten

    return {key: str(value)[:500] for key, value in flatten(params).items()}
