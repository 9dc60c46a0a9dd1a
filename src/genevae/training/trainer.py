"""The single training entry point used by the tybalt, vega and gpo_vae pipelines."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar

from genevae.datasets.fetch import resolve_data_path
from genevae.errors import GenevaeInputError
from genevae.models.base import GenerativeModel
from genevae.training.batches import InMemoryBatches, TensorData
from genevae.training.module import GenerativeTrainingModule

logger = logging.getLogger(__name__)
# Lightning 2.6 calls a pytree API that torch 2.13 deprecates, on every fit: nothing to act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides how a model is trained; built from the ``training`` parameters.

    ``accelerator``/``devices``/``strategy`` are passed to Lightning unchanged, so a GPU or
    several GPUs with ``strategy: ddp_spawn`` is a configuration change, not a code change.
    """

    max_epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    loss_reduction: str = "mean"
    seed: int = 0
    early_stopping_patience: int | None = None
    early_stopping_monitor: str = "val/loss"
    restore_best_weights: bool = True
    gradient_clip_val: float | None = None
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse wrong types and ranges here, before any data is batched or a model trained."""
        for name, (valid, expected) in _CHECKS.items():
            value = getattr(self, name)
            if not valid(value):
                raise GenevaeInputError(
                    f"training parameter {name}={value!r} ({type(value).__name__}) is invalid: "
                    f"expected {expected}. Fix it in the training section of the parameters."
                )
        if self.resume and self.checkpoint_dir is None:
            raise GenevaeInputError(
                "training parameter resume=true needs checkpoint_dir, the folder holding the "
                "checkpoints of the run to continue; set it, or set resume to false."
            )
        if self.checkpoint_dir is not None:
            try:
                resolve_data_path(self.checkpoint_dir, Path.cwd())
            except GenevaeInputError as exc:
                raise GenevaeInputError(f"training parameter checkpoint_dir: {exc}") from exc

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainingSettings:
        """Build from a parameters dict, naming any unknown key (typos fail loudly)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise GenevaeInputError(
                f"Unknown training parameter(s) {unknown}; valid ones are {sorted(known)}."
            )
        return cls(**params)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (_is_int, "an integer"),
    "learning_rate": (lambda v: _is_real(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "adam_eps": (lambda v: _is_real(v) and v > 0, "a number > 0"),
    "loss_reduction": (lambda v: v in ("mean", "sum"), "'mean' or 'sum'"),
    "early_stopping_patience": (
        lambda v: v is None or (_is_int(v) and v >= 0),
        "null or an integer >= 0",
    ),
    "gradient_clip_val": (lambda v: v is None or (_is_real(v) and v > 0), "null or a number > 0"),
    "checkpoint_dir": (lambda v: v is None or isinstance(v, str), "null or a folder path"),
    "resume": (lambda v: isinstance(v, bool), "true or false"),
    "restore_best_weights": (lambda v: isinstance(v, bool), "true or false"),
    "deterministic": (lambda v: isinstance(v, bool), "true or false"),
    "progress_bar": (lambda v: isinstance(v, bool), "true or false"),
}
"""Valid values of the TrainingSettings fields that Lightning or Adam would reject late."""


@dataclass
class TrainingResult:
    """The trained model, its per-epoch history and where it ran.

    ``best_epoch`` is the epoch with the lowest monitored loss (``None`` when no epoch after the
    model's warm-up had one); ``weights_epoch`` is the epoch whose weights ``model`` holds: the
    best one when ``restore_best_weights`` restored it, else the last one. The history's
    boolean column ``best`` marks the best epoch's rows.
    """

    model: GenerativeModel
    history: pd.DataFrame
    epochs_run: int
    device: str
    device_name: str
    best_checkpoint: str | None
    best_epoch: int | None
    weights_epoch: int | None


class EpochHistory(Callback):
    """Collects per-epoch metrics into a long table and forwards them to MLflow.

    Rows are appended to ``spool`` (JSON lines), not kept in memory: with
    ``strategy: ddp_spawn`` the training runs in worker processes, and the spool is how rank 0's
    history reaches the process that called :func:`train_model`. For the same reason the
    MLflow run is captured when the callback is built and metrics are logged to it by id.
    """

    def __init__(self, spool: Path, log_to_mlflow: bool = True) -> None:
        self.spool = spool
        self.mlflow_run = _active_mlflow_run() if log_to_mlflow else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
        epoch = trainer.current_epoch
        with self.spool.open("a") as spool:
            for key, value in metrics.items():
                split, term = key.split("/", 1)
                row = {"epoch": epoch, "split": split, "term": term, "value": value}
                spool.write(json.dumps(row) + "\n")
        if self.mlflow_run is not None:
            _log_epoch_to_mlflow(self.mlflow_run, metrics, epoch)

    def table(self) -> pd.DataFrame:
        columns = ["epoch", "split", "term", "value"]
        if not self.spool.exists():
            return pd.DataFrame(columns=columns)
        return pd.read_json(self.spool, lines=True, dtype=False).reindex(columns=columns)


class BestWeights(Callback):
    """Tracks the epoch with the lowest ``monitor`` value and, if ``restore``, reloads its weights.

    The weights are copied in memory on each improvement, so this needs no ``checkpoint_dir``;
    the copy is part of the callback's checkpoint state, so a resumed run still returns the best
    epoch from before the interruption. The weights go back into the model at the end of
    ``fit``, which under ``ddp_spawn`` is inside each worker, before Lightning sends rank 0's
    weights to the caller; the chosen epoch reaches the caller through ``record`` (JSON), like
    the history spool. Epochs before ``first_epoch`` (a KL warm-up) are never chosen.
    """

    def __init__(self, monitor: str, record: Path, *, first_epoch: int, restore: bool) -> None:
        self.monitor = monitor
        self.record = record
        self.first_epoch = first_epoch
        self.restore = restore
        self.best_epoch: int | None = None
        self.best_value = math.inf
        self.weights: dict[str, torch.Tensor] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor.startswith("val/") and not trainer.sanity_checking:
            self._update(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.monitor.startswith("val/"):
            self._update(trainer, pl_module)

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor not in trainer.callback_metrics:
            raise GenevaeInputError(
                f"training parameter early_stopping_monitor={self.monitor!r} is not a logged "
                f"metric (logged: {sorted(trainer.callback_metrics)}); pick one of those."
            )
        value = float(trainer.callback_metrics[self.monitor])
        epoch = trainer.current_epoch
        if epoch < self.first_epoch or not math.isfinite(value) or value >= self.best_value:
            return
        self.best_epoch, self.best_value = epoch, value
        if self.restore:
            state = pl_module.model.state_dict()
            self.weights = {key: tensor.detach().clone() for key, tensor in state.items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restore and self.weights:
            pl_module.model.load_state_dict(self.weights)
        if trainer.is_global_zero:
            self.record.write_text(json.dumps({"best_epoch": self.best_epoch}))

    def state_dict(self) -> dict[str, Any]:
        weights = {key: tensor.cpu() for key, tensor in self.weights.items()}
        return {"best_epoch": self.best_epoch, "best_value": self.best_value, "weights": weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_epoch = state_dict["best_epoch"]
        self.best_value = state_dict["best_value"]
        self.weights = dict(state_dict["weights"])


def _read_best_epoch(record: Path) -> int | None:
    """The epoch :class:`BestWeights` chose (``None`` if it chose none or training did not end)."""
    return json.loads(record.read_text())["best_epoch"] if record.exists() else None


class EpochSeeding(Callback):
    """Derives each epoch's randomness from ``(seed, epoch)``: the shuffle and torch's RNG.

    Sampling noise and dropout then do not depend on how many epochs ran in this process,
    so a run resumed from a checkpoint is bit-identical to an uninterrupted one (on CPU).
    """

    def __init__(self, batches: InMemoryBatches, seed: int) -> None:
        self.batches = batches
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        self.batches.set_epoch(epoch)
        torch.manual_seed(hash((self.seed, epoch)) % 2**63)


def _active_mlflow_run() -> tuple[str, str] | None:
    """(tracking URI, run id) of the active MLflow run, if any."""
    import mlflow

    run = mlflow.active_run()
    return None if run is None else (mlflow.get_tracking_uri(), run.info.run_id)


def _log_epoch_to_mlflow(run: tuple[str, str], metrics: dict[str, float], epoch: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    tracking_uri, run_id = run
    timestamp = int(time.time() * 1000)
    batch = [Metric(k.replace("/", "_"), v, timestamp, epoch) for k, v in metrics.items()]
    MlflowClient(tracking_uri).log_batch(run_id, metrics=batch)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


class EpochProgressBar(RichProgressBar):
    """Lightning's bar counts epochs from 0 ("Epoch 19/19" after 20 epochs); genevae's log
    line ("Trained vega for 20 epochs") counts from 1, and so does this bar ("Epoch 20/20")."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"


def _monitor(settings: TrainingSettings, has_validation: bool) -> str:
    """The metric early stopping and the best epoch follow: ``train/`` without validation."""
    monitor = settings.early_stopping_monitor
    return monitor if has_validation else monitor.replace("val/", "train/")


def _callbacks(settings: TrainingSettings, has_validation: bool) -> list[Callback]:
    callbacks: list[Callback] = [EpochProgressBar()] if settings.progress_bar else []
    if settings.early_stopping_patience is not None:
        monitor = _monitor(settings, has_validation)
        callbacks.append(EarlyStopping(monitor=monitor, patience=settings.early_stopping_patience))
    if settings.checkpoint_dir is not None:
        callbacks.extend(_checkpoints(settings, has_validation))
    return callbacks


def _checkpoints(settings: TrainingSettings, has_validation: bool) -> list[ModelCheckpoint]:
    """Every epoch without validation; else the best epoch and ``last.ckpt`` after every epoch.

    A second callback writes ``last.ckpt``: Lightning's ``save_last`` only saves when the
    monitored checkpoint does, so ``resume`` would restart from the best epoch instead.
    """
    folder = settings.checkpoint_dir
    # A resume after a kill between an epoch's file and last.ckpt trains that epoch again:
    # its file is replaced, not joined by an "epoch0002-v1.ckpt".
    name = {
        "filename": "epoch{epoch:04d}",
        "auto_insert_metric_name": False,
        "enable_version_counter": False,
    }
    if not has_validation:
        return [ModelCheckpoint(folder, **name, save_last=True, save_top_k=-1, every_n_epochs=1)]
    return [
        ModelCheckpoint(folder, **name, monitor=settings.early_stopping_monitor, save_top_k=1),
        ModelCheckpoint(folder, filename="last", save_top_k=1, enable_version_counter=False),
    ]


def _resume_path(settings: TrainingSettings) -> str | None:
    if not settings.resume or settings.checkpoint_dir is None:
        return None
    last = Path(settings.checkpoint_dir) / "last.ckpt"
    if last.exists():
        logger.info("Resuming training from %s", last)
        return str(last)
    logger.info("resume requested but no checkpoint in %s; starting fresh", settings.checkpoint_dir)
    return None


def train_model(
    model: GenerativeModel,
    train_data: TensorData,
    val_data: TensorData | None,
    settings: TrainingSettings,
    *,
    log_to_mlflow: bool = True,
) -> TrainingResult:
    """Train ``model`` in place with Lightning and return it with its per-epoch history.

    With ``restore_best_weights`` (the default) ``model`` ends with the weights of its best
    epoch (lowest ``early_stopping_monitor``), not of its last one.
    """
    L.seed_everything(settings.seed, workers=True, verbose=False)
    module = GenerativeTrainingModule(
        model,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        adam_eps=settings.adam_eps,
        loss_reduction=settings.loss_reduction,
    )
    has_validation = val_data is not None and len(val_data) > 0
    with tempfile.TemporaryDirectory(prefix="genevae-history-") as spool_dir:
        history = EpochHistory(Path(spool_dir) / "history.jsonl", log_to_mlflow=log_to_mlflow)
        best = BestWeights(
            _monitor(settings, has_validation),
            Path(spool_dir) / "best.json",
            first_epoch=model.warmup_epochs,
            restore=settings.restore_best_weights,
        )
        trainer = _fit(module, train_data, val_data, settings, [history, best])
        table = history.table()
        best_epoch = _read_best_epoch(best.record)
    table["best"] = table["epoch"] == best_epoch
    device = trainer.strategy.root_device
    model.eval()
    restored = settings.restore_best_weights and best_epoch is not None
    weights_epoch = best_epoch if restored else _last_epoch(table)
    _log_summary(model, table, device, weights_epoch)
    return TrainingResult(
        model=model,
        history=table,
        epochs_run=max(trainer.current_epoch, _epochs_in(table)),
        device=device.type,
        device_name=_device_name(device),
        best_checkpoint=_best_checkpoint(trainer),
        best_epoch=best_epoch,
        weights_epoch=weights_epoch,
    )


def _fit(
    module: GenerativeTrainingModule,
    train_data: TensorData,
    val_data: TensorData | None,
    settings: TrainingSettings,
    recorders: list[Callback],
) -> L.Trainer:
    """Build the Lightning trainer for ``settings`` and fit ``module``; return the trainer.

    ``recorders`` (history, best weights) run before the checkpoint callback, so a checkpoint
    holds their state after the epoch it saves.
    """
    has_validation = val_data is not None and len(val_data) > 0
    train_batches = InMemoryBatches(train_data, settings.batch_size, seed=settings.seed)
    val_batches = (
        InMemoryBatches(val_data, settings.batch_size, shuffle=False) if has_validation else None
    )
    trainer = L.Trainer(
        max_epochs=settings.max_epochs,
        accelerator=settings.accelerator,
        devices=settings.devices,
        strategy=settings.strategy,
        precision=settings.precision,
        deterministic=settings.deterministic,
        gradient_clip_val=settings.gradient_clip_val,
        callbacks=[
            *recorders,
            EpochSeeding(train_batches, settings.seed),
            *_callbacks(settings, has_validation),
        ],
        enable_checkpointing=settings.checkpoint_dir is not None,
        enable_progress_bar=settings.progress_bar,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
        default_root_dir=settings.checkpoint_dir,
    )
    # weights_only: a checkpoint is data; never run code from a (possibly planted) .ckpt file
    trainer.fit(
        module, train_batches, val_batches, ckpt_path=_resume_path(settings), weights_only=True
    )
    return trainer


def _log_summary(
    model: GenerativeModel, history: pd.DataFrame, device: torch.device, weights_epoch: int | None
) -> None:
    """One line per training: model, epochs, device, the last epoch's losses, kept weights.

    Epochs are counted from 1 here, as on the progress bar ("Epoch 20/20"); the history
    table and MLflow steps count from 0.
    """
    last = history[(history["term"] == "loss") & (history["epoch"] == history["epoch"].max())]
    losses = ", ".join(f"{row.split} loss {row.value:.4g}" for row in last.itertuples())
    logger.info(
        "Trained %s for %d epochs on %s%s; kept the weights of epoch %s",
        model.model_type,
        _epochs_in(history),
        _device_name(device),
        f" (last epoch: {losses})" if losses else "",
        "–" if weights_epoch is None else weights_epoch + 1,
    )


def _last_epoch(history: pd.DataFrame) -> int | None:
    return int(history["epoch"].max()) if len(history) else None


def _epochs_in(history: pd.DataFrame) -> int:
    """Epochs recorded in ``history``; under ddp_spawn the caller's trainer does not count them."""
    return int(history["epoch"].max()) + 1 if len(history) else 0


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    return getattr(callback, "best_model_path", None) or None
