"""One LightningModule for every genevae model: the model supplies ``loss``, this does the rest."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from genevae.models.base import Batch, GenerativeModel


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or infinity; the message names the epoch and the loss term."""


class GenerativeTrainingModule(L.LightningModule):
    """Adam on ``model.loss``, logging each loss term per epoch for train and validation.

    Models return per-cell averages; ``loss_reduction="sum"`` optimises the batch sum instead
    (what VEGA's original code did). With Adam the two differ only through the relative
    strength of coupled weight decay, which is then ``batch_size`` times weaker. Logged values
    are always per-cell averages, so curves compare across settings.

    The terms are summed on the device during an epoch and logged once at its end (last
    training batch; validation epoch end): Lightning's ``self.log`` costs about a
    millisecond per call, a quarter of a small model's step when called per term and batch.
    """

    def __init__(
        self,
        model: GenerativeModel,
        *,
        learning_rate: float,
        weight_decay: float = 0.0,
        adam_eps: float = 1e-8,
        loss_reduction: str = "mean",
    ) -> None:
        super().__init__()
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        self.model = model
        self.loss_reduction = loss_reduction
        self._epoch_totals: dict[str, tuple[list[str], torch.Tensor, int]] = {}
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.adam_eps = adam_eps

    def _common_step(self, batch: Batch, split: str) -> torch.Tensor:
        terms = self.model.loss(batch)
        n_cells = next(iter(batch.values())).shape[0]
        self._accumulate(split, terms, n_cells)
        if self.loss_reduction == "sum":
            return terms["loss"] * n_cells
        return terms["loss"]

    def _accumulate(self, split: str, terms: dict[str, torch.Tensor], n_cells: int) -> None:
        """Add this batch's cell-weighted terms to the epoch totals, on the model's device.

        On CPU every batch is checked for NaN/inf (free there); on an accelerator the check
        waits for the epoch's end (:meth:`_log_epoch`), since reading a value back each step
        would stall the device. A NaN or inf stays in the totals, so it is still reported
        with its epoch and term.
        """
        values = torch.stack([value.detach().reshape(()).double() for value in terms.values()])
        names, total, cells = self._epoch_totals.get(split, (list(terms), 0.0, 0))
        self._epoch_totals[split] = (names, total + values * n_cells, cells + n_cells)
        if values.device.type == "cpu":
            self._raise_if_non_finite(split, names, values)

    def _raise_if_non_finite(self, split: str, names: list[str], values: torch.Tensor) -> None:
        finite = torch.isfinite(values).tolist()  # one device sync
        if all(finite):
            return
        name, value = next(
            (name, value)
            for name, value, ok in zip(names, values.tolist(), finite, strict=True)
            if not ok
        )
        raise NonFiniteLossError(
            f"Epoch {self.current_epoch}: {split} loss term '{name}' is {value}. "
            "Lower the learning rate or check the input for extreme values; the last "
            "good checkpoint is kept."
        )

    def _log_epoch(self, split: str) -> None:
        """Log each term's per-cell average over the epoch (weighted like Lightning's mean)."""
        if split not in self._epoch_totals:
            return
        names, total, cells = self._epoch_totals.pop(split)
        self._raise_if_non_finite(split, names, total)
        for name, value in zip(names, (total / cells).tolist(), strict=True):
            self.log(
                f"{split}/{name}",
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=cells,
                sync_dist=True,  # averaged over devices under ddp; a no-op on one device
            )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._common_step(batch, "train")
        if self.trainer.is_last_batch:
            self._log_epoch("train")
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._epoch_totals.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")  # only if the last batch was not recognised (monitors see it)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to checkpoint NaN/inf weights, so the last checkpoint on disk stays resumable.

        A step with a finite loss can still leave non-finite weights (e.g. a too-large learning
        rate on the last batch of an epoch); the loss check would only catch it an epoch later.
        """
        bad = [
            name
            for name, value in checkpoint["state_dict"].items()
            if value.is_floating_point() and not torch.isfinite(value).all()
        ]
        if bad:
            raise NonFiniteLossError(
                f"Epoch {self.current_epoch}: parameter(s) {bad[:3]} became NaN or infinite "
                "after an optimiser step, so this epoch was not checkpointed; the last good "
                "checkpoint is kept. Lower the learning rate or clip gradients."
            )

    def on_train_epoch_start(self) -> None:
        self._epoch_totals.pop("train", None)
        self.model.on_epoch_start(self.current_epoch)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.model.after_optimizer_step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with the fused kernel: one pass over the parameters instead of about ten.

        On CPU the default per-tensor Adam allocates several parameter-sized temporaries per
        step and was slower than VEGA's forward and backward pass together; the fused update
        is the same algorithm (results differ only by floating-point rounding).
        """
        return torch.optim.Adam(
            self.model.parameters(),
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
            eps=self.adam_eps,
            fused=True,
        )
