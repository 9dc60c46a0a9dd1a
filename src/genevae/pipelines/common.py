"""Adapters shared by the model pipelines: AnnData → batches, training, run bookkeeping.

Like the node modules, this module imports torch, Lightning and anndata inside the functions
that use them, so that building the pipelines (``kedro run`` start-up) does not load them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError

if TYPE_CHECKING:
    from anndata import AnnData

    from genevae.models.base import GenerativeModel
    from genevae.training import TensorData

logger = logging.getLogger(__name__)


def _matrix(adata: AnnData, layer: str | None) -> np.ndarray | sp.spmatrix:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise GenevaeInputError(
            f"AnnData has no layer {layer!r} (layers: {list(adata.layers)}); "
            "run data_processing to create it or change the layer parameter."
        )
    return adata.layers[layer]


def check_parameters(section: str, params: dict[str, Any], target: Any) -> dict[str, Any]:
    """``params`` unchanged if every key is an argument of ``target``, else a clear error.

    Catches typos in a parameters file (``hiden: 800``) before any expensive work, naming
    the section and listing the valid keys.
    """
    accepted = set(inspect.signature(target).parameters) - {"self", "mask"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise GenevaeInputError(
            f"Unknown parameter(s) {unknown} in {section}; valid ones are {sorted(accepted)}."
        )
    return params


def seed_model_init(training_params: dict[str, Any]) -> None:
    """Seed torch & co. before a model is built, so its initial weights follow the seed too."""
    import lightning as L

    from genevae.training import TrainingSettings

    L.seed_everything(TrainingSettings.from_params(training_params).seed, verbose=False)


def align_genes(adata: AnnData, gene_names: Sequence[str], missing: str = "error") -> AnnData:
    """``adata`` with columns in the trained gene order (matched by name).

    ``missing="error"`` names the absent genes; ``"zero"`` fills them with zeros (in X and every
    layer), for data measured on a slightly different gene panel.
    """
    import anndata as ad

    absent = pd.Index(gene_names).difference(adata.var_names)
    if len(absent) == 0:
        return adata[:, list(gene_names)]
    if missing != "zero":
        raise GenevaeInputError(
            f"{len(absent)} of the model's {len(gene_names)} genes are missing from the data, "
            f"e.g. {list(absent[:10])}; use data with these genes, or set missing genes to "
            "'zero' to fill them with zeros."
        )
    logger.warning("Filling %d missing genes with zeros: %s", len(absent), list(absent[:10]))
    filler = ad.AnnData(
        X=sp.csr_matrix((adata.n_obs, len(absent)), dtype=np.float32),
        obs=adata.obs[[]],
        var=pd.DataFrame(index=absent),
        layers={
            key: sp.csr_matrix((adata.n_obs, len(absent)), dtype=np.float32) for key in adata.layers
        },
    )
    combined = ad.concat([adata, filler], axis=1, merge="first")
    combined.obs = adata.obs
    return combined[:, list(gene_names)]


def one_hot_covariates(obs: pd.DataFrame, keys: Sequence[str]) -> np.ndarray | None:
    """One-hot encode categorical ``obs`` columns (concatenated), or ``None`` without keys."""
    if not keys:
        return None
    missing = [key for key in keys if key not in obs.columns]
    if missing:
        raise GenevaeInputError(
            f"Covariate column(s) {missing} are not in obs (columns: {list(obs.columns)})."
        )
    frames = [pd.get_dummies(obs[key].astype(str), prefix=key, dtype=np.float32) for key in keys]
    return pd.concat(frames, axis=1).to_numpy()


def expression_data(
    adata: AnnData,
    *,
    layer: str | None = None,
    counts_layer: str | None = None,
    covariate_keys: Sequence[str] = (),
) -> TensorData:
    """Batch arrays for expression models: ``x``, optional ``counts``/``library``/``covariates``."""
    from genevae.training import TensorData

    arrays: dict[str, Any] = {"x": _matrix(adata, layer)}
    if counts_layer is not None:
        counts = _matrix(adata, counts_layer)
        arrays["counts"] = counts
        arrays["library"] = np.asarray(counts.sum(axis=1)).reshape(-1, 1).astype(np.float32)
    covariates = one_hot_covariates(adata.obs, covariate_keys)
    if covariates is not None:
        arrays["covariates"] = covariates
    return TensorData(arrays)


def train_validation_split(
    n_rows: int, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of row indices; ``validation_fraction=0`` gives no validation rows."""
    if not 0 <= validation_fraction < 1:
        raise GenevaeInputError(
            f"validation_fraction must be in [0, 1), got {validation_fraction}."
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = int(round(n_rows * validation_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit_model(
    model: GenerativeModel,
    data: TensorData,
    training_params: dict[str, Any],
    *,
    validation_fraction: float,
    gene_names: Sequence[str],
    metadata: dict[str, Any] | None = None,
    log_to_mlflow: bool = True,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Train on a seeded random split (seed from the training parameters).

    ``log_to_mlflow=False`` keeps a side training (a control model) out of the run's
    metrics and tags.
    """
    from genevae.training import TrainingSettings

    seed = TrainingSettings.from_params(training_params).seed
    train_index, validation_index = train_validation_split(len(data), validation_fraction, seed)
    return fit_model_on_split(
        model,
        data,
        training_params,
        train_index=train_index,
        validation_index=validation_index,
        gene_names=gene_names,
        metadata=metadata,
        log_to_mlflow=log_to_mlflow,
    )


def obs_split_indices(
    obs: pd.DataFrame,
    column: str,
    *,
    train_label: str = "train",
    validation_label: str = "validation",
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices from a split column (e.g. data_processing's ``split``).

    Reusing the split written upstream keeps validation samples out of the scaler fit and
    makes runs comparable; every row must carry one of the two labels.
    """
    if column not in obs.columns:
        raise GenevaeInputError(
            f"obs has no split column {column!r} (columns: {list(obs.columns)}); run "
            "data_processing to write it, or set the split column parameter to null for a "
            "random split."
        )
    labels = obs[column].astype(str).to_numpy()
    unknown = sorted(set(labels) - {train_label, validation_label})
    if unknown:
        raise GenevaeInputError(
            f"obs column {column!r} has label(s) {unknown}; expected only {train_label!r} and "
            f"{validation_label!r}."
        )
    return np.flatnonzero(labels == train_label), np.flatnonzero(labels == validation_label)


def fit_model_on_split(
    model: GenerativeModel,
    data: TensorData,
    training_params: dict[str, Any],
    *,
    train_index: np.ndarray,
    validation_index: np.ndarray,
    gene_names: Sequence[str],
    metadata: dict[str, Any] | None = None,
    log_to_mlflow: bool = True,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Train on explicit train/validation rows, tag the MLflow run, return bundle + history."""
    from genevae.training import TrainingSettings, train_model

    if len(train_index) == 0:
        raise GenevaeInputError("The training split is empty; assign some rows to training.")
    settings = TrainingSettings.from_params(training_params)
    val_data = data.subset(validation_index) if len(validation_index) else None
    result = train_model(
        model, data.subset(train_index), val_data, settings, log_to_mlflow=log_to_mlflow
    )
    run_info = {
        "device": result.device,
        "device_name": result.device_name,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "weights_epoch": result.weights_epoch,
        "n_train": len(train_index),
        "n_validation": len(validation_index),
    }
    if log_to_mlflow:
        _tag_mlflow_run(run_info)
    bundle = ModelBundle(
        model=result.model,
        gene_names=list(gene_names),
        metadata={**(metadata or {}), **run_info, "training": training_params},
    )
    return bundle, result.history


def _tag_mlflow_run(tags: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags({f"genevae.{key}": str(value) for key, value in tags.items()})


def final_metrics(history: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Last-epoch and best-epoch values of every term, and the best epoch itself.

    Keys are ``final_<split>_<term>``, ``best_<split>_<term>`` and ``best_epoch`` (the epoch
    the history's ``best`` column marks: the weights kept with ``restore_best_weights``), each
    ``{"value", "step"}``, the format kedro-mlflow's ``MlflowMetricsHistoryDataset`` logs.
    """
    if history.empty:
        return {}
    last_epoch = int(history["epoch"].max())
    metrics = _epoch_values(history, last_epoch, "final")
    if "best" in history.columns and history["best"].any():
        best_epoch = int(history.loc[history["best"], "epoch"].iloc[0])
        metrics |= _epoch_values(history, best_epoch, "best")
        metrics["best_epoch"] = {"value": float(best_epoch), "step": best_epoch}
    return metrics


def _epoch_values(history: pd.DataFrame, epoch: int, prefix: str) -> dict[str, dict[str, float]]:
    rows = history[history["epoch"] == epoch]
    return {
        f"{prefix}_{row.split}_{row.term}": {"value": float(row.value), "step": epoch}
        for row in rows.itertuples()
    }
