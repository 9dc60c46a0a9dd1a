"""A tiny linear autoencoder that follows the GenerativeModel contract, for stack tests."""

from __future__ import annotations

import torch
from torch import nn

from genevae.models.base import Batch, GenerativeModel


class ToyAutoencoder(GenerativeModel):
    model_type = "toy"

    def __init__(self, n_genes: int = 8, latent_dim: int = 2, poison_epoch: int | None = None):
        super().__init__(
            {"n_genes": n_genes, "latent_dim": latent_dim, "poison_epoch": poison_epoch}
        )
        self.encoder = nn.Linear(n_genes, latent_dim)
        self.decoder = nn.Linear(latent_dim, n_genes)
        self.epoch = 0
        self.projections = 0

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.encoder(batch["x"])

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        recon = ((self.decoder(self.encode(batch)) - batch["x"]) ** 2).sum(1).mean()
        if self.config["poison_epoch"] is not None and self.epoch >= self.config["poison_epoch"]:
            recon = recon * float("nan")
        return {"loss": recon, "reconstruction": recon}

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def after_optimizer_step(self) -> None:
        self.projections += 1


def low_rank_data(n: int = 256, n_genes: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(n, 2, generator=generator)
    loadings = torch.randn(2, n_genes, generator=generator)
    return factors @ loadings + 0.01 * torch.randn(n, n_genes, generator=generator)


class DriftingModel(GenerativeModel):
    """A point ``w`` pulled towards the rows of ``x``: the loss is the mean of ‖w − x‖².

    Trained on rows at 10 and validated on rows at 3, ``w`` walks from 0 past 3 towards 10, so
    the validation loss falls and then rises: a deliberate, exactly known overfit. The
    weights at the end of each epoch are kept in ``snapshots`` (read at the next epoch start).
    """

    model_type = "toy_drifting"

    def __init__(self, n_dims: int = 2) -> None:
        super().__init__({"n_dims": n_dims})
        self.w = nn.Parameter(torch.zeros(n_dims))
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.w.expand(len(batch["x"]), -1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        distance = ((self.w - batch["x"]) ** 2).sum(1).mean()
        return {"loss": distance}

    def on_epoch_start(self, epoch: int) -> None:
        if epoch > 0:
            self.snapshots[epoch - 1] = {k: v.clone() for k, v in self.state_dict().items()}


def constant_rows(value: float, n: int = 16, n_dims: int = 2) -> torch.Tensor:
    return torch.full((n, n_dims), value)
