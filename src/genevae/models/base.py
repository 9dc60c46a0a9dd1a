"""The contract every genevae model follows, so one training path serves them all."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class GenerativeModel(nn.Module):
    """Base class: a model built from a JSON-serialisable config with `loss` and `encode`.

    Subclasses call ``super().__init__(config)`` with the keyword arguments they were built
    with, so that ``type(model)(**model.config)`` rebuilds the same architecture and a saved
    model can be restored from safetensors + JSON without unpickling code.
    """

    model_type: str = "base"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return ``{"loss": scalar to minimise, <term>: scalar, ...}`` for one batch."""
        raise NotImplementedError

    def encode(self, batch: Batch) -> torch.Tensor:
        """Return the latent means (cells × latent dimensions) for a batch."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called at the start of each training epoch (e.g. KL warm-up)."""

    @property
    def warmup_epochs(self) -> int:
        """Leading epochs whose loss is not comparable with later ones (e.g. a KL warm-up).

        Training never picks one of them as the best epoch: a loss with a smaller KL weight is
        lower without the model being better.
        """
        return 0

    def after_optimizer_step(self) -> None:
        """Hook called after every optimiser step (e.g. projecting weights)."""
