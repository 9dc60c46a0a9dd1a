"""A test-only GenerativeModel with a buffer and dropout, so bundle tests need no real model."""

from __future__ import annotations

import torch
from torch import nn

from genevae.models.base import Batch, GenerativeModel


class TinyModel(GenerativeModel):
    """Linear encoder + decoder with a registered buffer (tests that buffers are saved)."""

    model_type = "tiny_test"

    def __init__(self, n_genes: int = 5, n_latent: int = 2, dropout: float = 0.5) -> None:
        super().__init__({"n_genes": n_genes, "n_latent": n_latent, "dropout": dropout})
        self.encoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_genes, n_latent))
        self.decoder = nn.Linear(n_latent, n_genes)
        self.register_buffer("gene_scale", torch.ones(n_genes))

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.encoder(batch["x"] * self.gene_scale)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        reconstruction = ((self.decoder(self.encode(batch)) - batch["x"]) ** 2).mean()
        return {"loss": reconstruction, "reconstruction": reconstruction}


class OtherTinyModel(TinyModel):
    """A second registered type, for expected-type mismatch tests."""

    model_type = "other_tiny_test"
