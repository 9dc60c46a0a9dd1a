"""latent_sampler encodes each distinct cell once for models with ``inference``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from genevae.analysis.bayes_factor import latent_sampler


class _GaussianModel(torch.nn.Module):
    """Posterior N(x W, exp(x V)) per cell, with the VEGA-style sample_latent."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.mean = torch.nn.Parameter(torch.randn(5, 3, generator=generator))
        self.logvar = torch.nn.Parameter(0.1 * torch.randn(5, 3, generator=generator))
        self.rows_encoded = 0

    def inference(self, batch):
        self.rows_encoded += batch["x"].shape[0]
        return batch["x"] @ self.mean, batch["x"] @ self.logvar

    def sample_latent(self, batch, generator=None):
        mean, logvar = self.inference(batch)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise


def _per_draw(model, x, indices, seed, chunk_size):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return np.concatenate(
            [
                model.sample_latent(
                    {"x": torch.as_tensor(x[indices[s : s + chunk_size]].toarray())}, generator
                ).numpy()
                for s in range(0, len(indices), chunk_size)
            ]
        )


def test_repeated_cells_are_encoded_once_and_draws_match_sample_latent():
    x = sp.csr_matrix(np.random.default_rng(0).random((8, 5), dtype=np.float32))
    indices = np.random.default_rng(1).integers(0, 4, size=50)  # 4 distinct cells, 50 draws
    model = _GaussianModel()
    draws = latent_sampler(model, x, chunk_size=16, seed=3)(indices)
    assert model.rows_encoded == len(np.unique(indices))
    np.testing.assert_allclose(draws, _per_draw(model, x, indices, 3, 16), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(draws[indices == indices[0]][0], draws[indices == indices[0]][1])
