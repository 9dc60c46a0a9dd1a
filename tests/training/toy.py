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
