"""Glue between trained model bundles, the training stack and MLflow for the evaluation nodes.

- :func:`reconstruct` / :func:`vega_posterior`: what a trained model makes of some cells;
- :func:`vega_trainer`: trains VEGA through the vega pipeline's own ``train_vega`` (one
  training code path), each fit in its own nested MLflow run;
- :func:`producing_run`: the MLflow run that wrote a dataset version (provenance links).

torch and the training stack are imported by the functions that run a model, so that the
pipeline modules importing this one stay light (``kedro run`` start-up).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.datasets.model_bundle import ModelBundle
from genevae.pipelines.common import expression_data
from genevae.pipelines.vega.nodes import train_vega
from genevae.preprocessing.genesets import gene_sets_from_mask

if TYPE_CHECKING:
    import torch
    from anndata import AnnData

    from genevae.analysis.generalisation import Encoder, Posterior, Trainer
    from genevae.training import TensorData

logger = logging.getLogger(__name__)

_IGNORED_TRAINING_KEYS = {
    "checkpoint_dir",
    "resume",
    "progress_bar",
    "accelerator",
    "devices",
    "strategy",
}
"""Training settings that do not change the fitted model (where and how it is run)."""


def bundle_data(bundle: ModelBundle, adata: AnnData) -> TensorData:
    """Batch arrays for a bundle: its genes in its order, counts and covariates as trained."""
    counts_layer = "counts" if bundle.model.config.get("likelihood") == "nb" else None
    return expression_data(
        adata[:, bundle.gene_names],
        counts_layer=counts_layer,
        covariate_keys=bundle.metadata.get("covariate_keys", []),
    )


def _decode(model: torch.nn.Module, z: torch.Tensor, batch: dict[str, torch.Tensor]):
    if "covariates" in batch:
        return model.decode(z, batch["covariates"])
    return model.decode(z)


def _on_data_scale(model: torch.nn.Module, decoded: np.ndarray, target_sum: float) -> np.ndarray:
    """Count models decode gene proportions: map them to log1p(proportion · target_sum)."""
    if model.config.get("likelihood") == "nb":
        return np.log1p(decoded * target_sum)
    return decoded


def reconstruct(bundle: ModelBundle, adata: AnnData, target_sum: float = 1e4) -> np.ndarray:
    """Decoded posterior means (cells × genes) on the scale of the model's input ``X``."""
    from genevae.training import map_batches

    model = bundle.model
    decoded = map_batches(
        model, bundle_data(bundle, adata), lambda batch: _decode(model, model.encode(batch), batch)
    )
    return _on_data_scale(model, decoded, target_sum)


def vega_posterior(bundle: ModelBundle, adata: AnnData, target_sum: float = 1e4) -> Posterior:
    """Posterior means, log-variances and mean reconstructions of VEGA (eval mode)."""
    import torch

    from genevae.analysis.generalisation import Posterior
    from genevae.training import map_batches

    model = bundle.model

    def moments(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mean, logvar = model.inference(batch)
        return torch.cat([mean, logvar, _decode(model, mean, batch)], dim=1)

    values = map_batches(model, bundle_data(bundle, adata), moments)
    k = len(bundle.metadata["module_names"])
    return Posterior(
        mean=values[:, :k],
        logvar=values[:, k : 2 * k],
        reconstruction=_on_data_scale(model, values[:, 2 * k :], target_sum),
        module_names=list(bundle.metadata["module_names"]),
    )


def gene_sets_of(bundle: ModelBundle, exclude_prefix: str | None = None) -> dict[str, list[str]]:
    """Module → genes, read from the model's own mask (what it was trained with)."""
    return gene_sets_from_mask(
        bundle.model.gene_module_mask.detach().cpu().numpy(),
        bundle.gene_names,
        bundle.metadata["module_names"],
        exclude_prefix,
    )


def merged_vega_params(
    vega_params: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The vega parameters with training/model overrides; no checkpoints, no progress bar."""
    params = copy.deepcopy(dict(vega_params))
    params["training"] = {
        **params["training"],
        **dict(training or {}),
        "checkpoint_dir": None,
        "resume": False,
        "progress_bar": False,
    }
    params["model"] = {**params["model"], **dict(model or {})}
    return params


def settings_of(bundle: ModelBundle) -> dict[str, Any]:
    """The vega parameters a bundle was trained with (model, training, split, covariates)."""
    derived = {"n_genes", "n_modules", "n_covariates"}
    metadata = bundle.metadata
    n_validation, n_train = metadata.get("n_validation", 0), metadata.get("n_train", 1)
    return {
        "model": {k: v for k, v in bundle.model.config.items() if k not in derived},
        "training": dict(metadata.get("training", {})),
        "validation_fraction": round(n_validation / (n_validation + n_train), 4),
        "covariate_keys": list(metadata.get("covariate_keys", [])),
    }


@contextmanager
def child_run(name: str) -> Iterator[None]:
    """A nested MLflow run for one fit (epoch curves and tags land there), if a run is active."""
    import mlflow

    if mlflow.active_run() is None:
        yield
        return
    with mlflow.start_run(run_name=name, nested=True):
        yield


def vega_trainer(
    mask: pd.DataFrame, params: Mapping[str, Any], *, run_prefix: str, target_sum: float = 1e4
) -> Trainer:
    """A :data:`Trainer` that fits VEGA with ``params`` (see :func:`merged_vega_params`)."""

    def train(adata: AnnData, seed: int, label: str) -> Encoder:
        fit_params = copy.deepcopy(dict(params))
        fit_params["training"]["seed"] = seed
        name = f"{run_prefix}.{label}"
        logger.info("Training VEGA %s on %d cells (seed %d)", name, adata.n_obs, seed)
        with child_run(name):
            bundle, _, _ = train_vega(adata, mask, fit_params)
        return lambda cells: vega_posterior(bundle, cells, target_sum)

    return train


def same_training(
    bundle: ModelBundle, params: Mapping[str, Any], adata: AnnData, mask: pd.DataFrame
) -> bool:
    """Was ``bundle`` trained with these settings, modules, genes and split on these cells?"""
    trained = {
        k: v
        for k, v in bundle.metadata.get("training", {}).items()
        if k not in _IGNORED_TRAINING_KEYS
    }
    wanted = {k: v for k, v in params["training"].items() if k not in _IGNORED_TRAINING_KEYS}
    config = {k: bundle.model.config.get(k) for k in params["model"]}
    n_validation = int(round(adata.n_obs * params["validation_fraction"]))
    return (
        trained == wanted
        and config == dict(params["model"])
        and list(bundle.gene_names) == list(adata.var_names)
        and list(bundle.metadata.get("module_names", [])) == list(mask.columns)
        and bundle.metadata.get("n_validation") == n_validation
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def mlflow_metric_name(*parts: str) -> str:
    """Dot-joined metric key with characters MLflow refuses replaced by '_'."""
    return _UNSAFE.sub("_", ".".join(str(p) for p in parts if p))


def producing_run(source: str, version: str | None, ui_url: str) -> dict[str, Any]:
    """The newest MLflow run tagged as having written ``source`` at ``version``.

    Returns run_id, run_name, experiment_id, run_url and the run's parameters (empty values
    when the tracking store has no such run or cannot be reached).
    """
    empty = {"run_id": None, "run_name": None, "experiment_id": None, "run_url": None}
    if not version:
        return empty | {"params": {}}
    try:
        import mlflow

        client = mlflow.MlflowClient()
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiments,
            filter_string=f"tags.`data_version.output.{source}` = '{version}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as error:  # provenance is best effort: the report must still be written
        logger.warning("Could not query MLflow for %s@%s: %s", source, version, error)
        return empty | {"params": {}}
    if not runs:
        return empty | {"params": {}}
    run = runs[0]
    experiment_id = run.info.experiment_id
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": experiment_id,
        "run_url": f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}",
        "params": dict(run.data.params),
    }


def current_run(ui_url: str) -> dict[str, str] | None:
    """The active MLflow run (the evaluation's own) as ``{"run_id", "url"}``, if any."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    experiment_id = run.info.experiment_id
    return {
        "run_id": run.info.run_id,
        "url": f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}",
    }


def tag_input_version(source: str, version: str | None) -> None:
    """Tag the active MLflow run with the version of an optional input (as the lineage hook)."""
    import mlflow

    if version and mlflow.active_run() is not None:
        mlflow.set_tag(f"data_version.input.{source}", version)
