"""Batched, gradient-free evaluation of trained models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genevae.models.base import Batch, GenerativeModel
from genevae.training.batches import InMemoryBatches, TensorData


@torch.no_grad()
def map_batches(
    model: GenerativeModel,
    data: TensorData,
    fn: Callable[[Batch], torch.Tensor],
    batch_size: int = 1024,
) -> np.ndarray:
    """Apply ``fn`` to every batch in eval mode (dropout off) and stack the results in order."""
    was_training = model.training
    model.eval()
    try:
        batches = InMemoryBatches(data, batch_size, shuffle=False)
        return np.concatenate([fn(batch).cpu().numpy() for batch in batches], axis=0)
    finally:
        model.train(was_training)


def encode(model: GenerativeModel, data: TensorData, batch_size: int = 1024) -> np.ndarray:
    """Latent means for every row of ``data``."""
    return map_batches(model, data, model.encode, batch_size)
