"""latent_sampler encodes each distinct cell once, and sparse rows sparsely, where it can."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genevae.analysis.bayes_factor import differential_activity, latent_sampler
from genevae.models.vega import VEGA


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


def _scrna_like(n_cells: int, n_genes: int, density: float, seed: int = 0) -> sp.csr_matrix:
    """Log-normalised-looking sparse expression; the second half of the cells up-shifts 10 genes."""
    rng = np.random.default_rng(seed)
    detected = rng.random((n_cells, n_genes)) < density
    x = np.where(detected, np.log1p(10.0 * rng.random((n_cells, n_genes))), 0.0)
    x[n_cells // 2 :, :10] = 3.0
    return sp.csr_matrix(x, dtype=np.float32)


def _vega(n_genes: int, **kwargs) -> VEGA:
    torch.manual_seed(0)
    mask = np.random.default_rng(1).random((n_genes, 12)) < 0.1
    return VEGA(n_genes=n_genes, n_modules=12, hidden=32, mask=mask, **kwargs)


def _layouts_seen(model: VEGA, x, covariates=None) -> list[torch.layout]:
    """Layouts of ``batch["x"]`` that the model's ``inference`` receives while sampling."""
    seen, inference = [], model.inference

    def recording(batch):
        seen.append(batch["x"].layout)
        return inference(batch)

    model.inference = recording  # instance attribute shadows the method
    latent_sampler(model, x, covariates, chunk_size=64)(np.arange(x.shape[0]))
    return seen


def test_sparse_rows_give_the_same_bayes_factor_table_as_densified_rows():
    x = _scrna_like(400, 300, density=0.05)
    labels = np.repeat(["ctrl", "stim"], 200)
    model = _vega(300)
    with torch.no_grad():  # a sharp posterior: the Bayes factors reflect the encoder, not noise
        model.mean_head[0].weight.mul_(20.0)
        model.logvar_head[0].weight.zero_()
        model.logvar_head[0].bias.fill_(-6.0)
    assert set(_layouts_seen(model, x)) == {torch.sparse_csr}
    del model.inference
    run = lambda rows: differential_activity(  # noqa: E731
        latent_sampler(model, rows, chunk_size=64, seed=2), labels, "stim", "ctrl",
        n_samples=500, n_pairs=2000, seed=5,
    )  # fmt: skip
    sparse_table, dense_table = run(x), run(x.toarray())
    exact = ["module", "p_h1", "p_h2", "ln_bf", "is_significant"]
    pd.testing.assert_frame_equal(sparse_table[exact], dense_table[exact])
    np.testing.assert_allclose(sparse_table["mean_diff"], dense_table["mean_diff"], atol=1e-5)
    assert sparse_table["ln_bf"].abs().max() > 2  # the planted shift shows, not a null table
    pd.testing.assert_frame_equal(sparse_table, run(x))  # same seed, same table, bit for bit


@pytest.mark.parametrize(
    ("density", "encode_covariates", "layout"),
    [
        (0.05, False, torch.sparse_csr),  # scRNA-like: the sparse product is cheaper
        (0.3, False, torch.strided),  # too dense for the sparse product to pay off
        (0.05, True, torch.strided),  # covariates are concatenated to a dense input
    ],
)
def test_rows_stay_sparse_only_when_cheaper_and_the_encoder_accepts_them(
    density, encode_covariates, layout
):
    x = _scrna_like(128, 300, density=density)
    covariates = np.eye(2, dtype=np.float32)[np.arange(128) % 2] if encode_covariates else None
    model = _vega(
        300, n_covariates=2 if encode_covariates else 0, encode_covariates=encode_covariates
    )
    assert set(_layouts_seen(model, x, covariates)) == {layout}
