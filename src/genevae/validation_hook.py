"""The Kedro hook that checks a run's configuration before any node runs.

It runs first among the ``before_pipeline_run`` hooks (``tryfirst``), so a bad
configuration stops the run before kedro-mlflow opens an MLflow run and before any dataset
is saved. What is checked is what the pipeline about to run uses: the parameter sections its
nodes read, and the registered datasets its nodes' namespaces or parameters name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.framework.hooks import hook_impl

from genevae.validation import REGISTRY_SECTIONS, validate_run


class ConfigValidationHook:
    """Validates parameters, the dataset registry, input files and obs labels up front."""

    def __init__(self) -> None:
        self._context: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        params = self._context.params
        registered = set(params.get("datasets") or {})
        sections, datasets = used_by(pipeline, registered, set(params))
        validate_run(
            params,
            base_defaults(self._context.config_loader),
            sections,
            datasets,
            Path(run_params["project_path"]),
            loaded=pipeline.inputs(),
        )


def base_defaults(config_loader: Any) -> dict[str, Any]:
    """The parameters of the base environment alone: the schema every run is checked against."""
    loader = OmegaConfigLoader(
        conf_source=str(config_loader.conf_source),
        base_env=config_loader.base_env,
        default_run_env=config_loader.base_env,
        config_patterns=config_loader.config_patterns,
    )
    defaults = dict(loader["parameters"])
    return {key: value for key, value in defaults.items() if key not in REGISTRY_SECTIONS}


def used_by(pipeline: Any, registered: set[str], sections: set[str]) -> tuple[set[str], set[str]]:
    """Top-level parameter sections and registered datasets that ``pipeline``'s nodes use.

    ``params:vega.kang.training`` uses section ``vega`` and dataset ``kang``; a node in
    namespace ``vega.kang`` uses dataset ``kang``; a node reading ``parameters`` uses all.
    """
    used: set[str] = set()
    datasets: set[str] = set()
    for node in pipeline.nodes:
        for name in node.inputs:
            if name == "parameters":
                used |= sections
            elif name.startswith("params:"):
                parts = name.removeprefix("params:").split(".")
                used.add(parts[0])
                datasets |= registered & set(parts[1:2])
        datasets |= registered & set((node.namespace or "").split("."))
    return used, datasets
