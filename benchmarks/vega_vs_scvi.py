"""Benchmark 2: VEGA (genevae) side by side with scvi-tools' LinearSCVI.

Both models get the same counts (CSR), genes, batch size, epochs, optimiser settings
(scvi's Adam defaults: lr 1e-3, weight decay 1e-6, eps 0.01), threads and process, and run
alternately: genevae, scvi, genevae, scvi, ... Sizes are matched: encoder 2 × 800 hidden,
675 latent variables, dropout 0.1 (scvi's default; VEGA's latent dropout off), negative
binomial likelihood on raw counts with the observed library size and a per-gene dispersion.
VEGA's decoder is masked by 674 Reactome-like modules plus one fully connected node;
LinearSCVI's is dense.

Reconstruction error is what scvi's ``get_reconstruction_error`` reports: −log p(x | z) summed
over genes for one posterior draw per cell, averaged over held-out cells; VEGA's is computed
the same way with its own NB log-likelihood.

Without scvi-tools installed (optional: ``pip install scvi-tools``) the result records that.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.common import bench_settings, check_scale, quiet, timed
from benchmarks.data import reactome_like_mask, sparse_counts
from genevae.models.vega import VEGA, negative_binomial_log_likelihood
from genevae.training import TensorData, train_model

NAME = "vega_vs_scvi"
TARGET_SPEEDUP = 3.0
LEARNING_RATE, WEIGHT_DECAY, ADAM_EPS = 1e-3, 1e-6, 0.01


@dataclass(frozen=True)
class Sizes:
    n_train: int
    n_held_out: int
    n_genes: int
    hidden: int
    n_modules: int
    batch_size: int
    epochs: int
    rounds: int


SIZES = {
    "full": Sizes(6000, 1000, 7000, 800, 675, 128, 1, 3),
    "toy": Sizes(96, 32, 60, 16, 8, 32, 1, 1),
}


def _library(counts: sp.csr_matrix) -> np.ndarray:
    return np.asarray(counts.sum(axis=1), dtype=np.float32).reshape(-1, 1)


def train_vega(sizes: Sizes, mask: np.ndarray, counts: sp.csr_matrix, seed: int) -> VEGA:
    torch.manual_seed(seed)
    model = VEGA(
        n_genes=sizes.n_genes,
        n_modules=sizes.n_modules,
        hidden=sizes.hidden,
        dropout=0.1,
        z_dropout=0.0,
        positive_decoder=False,
        likelihood="nb",
        mask=mask,
    )
    settings = bench_settings(
        max_epochs=sizes.epochs,
        batch_size=sizes.batch_size,
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        adam_eps=ADAM_EPS,
        seed=seed,
    )
    data = TensorData({"counts": counts, "library": _library(counts)})
    with quiet():
        train_model(model, data, None, settings, log_to_mlflow=False)
    return model


@torch.no_grad()
def vega_reconstruction_error(model: VEGA, counts: sp.csr_matrix, seed: int = 0) -> float:
    """Mean over cells of −log p(x | z), one posterior draw per cell (scvi's definition)."""
    model.eval()
    x = torch.from_numpy(counts.toarray())
    batch = {"counts": x}
    z = model.sample_latent(batch, generator=torch.Generator().manual_seed(seed))
    mean = x.sum(dim=1, keepdim=True) * model.decode(z)
    theta = torch.exp(model.log_inverse_dispersion)
    return float(-negative_binomial_log_likelihood(x, mean, theta).sum(dim=1).mean())


def _scvi_adata(counts: sp.csr_matrix) -> ad.AnnData:
    adata = ad.AnnData(X=counts)
    adata.var_names = [f"gene_{i}" for i in range(counts.shape[1])]
    adata.obs_names = [f"cell_{i}" for i in range(counts.shape[0])]
    return adata


def train_scvi(sizes: Sizes, counts: sp.csr_matrix, seed: int) -> Any:
    import scvi

    scvi.settings.seed = seed
    adata = _scvi_adata(counts)
    scvi.model.LinearSCVI.setup_anndata(adata)
    model = scvi.model.LinearSCVI(
        adata,
        n_hidden=sizes.hidden,
        n_latent=sizes.n_modules,
        n_layers=2,
        dropout_rate=0.1,
        gene_likelihood="nb",
        use_observed_lib_size=True,
    )
    with quiet():
        model.train(
            max_epochs=sizes.epochs,
            batch_size=sizes.batch_size,
            train_size=1.0,
            accelerator="cpu",
            devices=1,
            plan_kwargs={"lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "eps": ADAM_EPS},
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    return model


def scvi_reconstruction_error(model: Any, counts: sp.csr_matrix) -> float:
    with quiet():
        error = model.get_reconstruction_error(_scvi_adata(counts))
    return float(error["reconstruction_loss"])


def scvi_version() -> str | None:
    try:
        import scvi
    except ImportError:
        return None
    return scvi.__version__


def run(scale: str = "full") -> dict[str, Any]:
    """Alternate genevae and scvi training runs; per-epoch time ratio and reconstruction."""
    check_scale(scale)
    sizes = SIZES[scale]
    version = scvi_version()
    payload: dict[str, Any] = {"scale": scale, "sizes": sizes.__dict__, "scvi_version": version}
    rng = np.random.default_rng(0)
    mask = reactome_like_mask(sizes.n_genes, sizes.n_modules, rng)
    counts = sparse_counts(sizes.n_train + sizes.n_held_out, sizes.n_genes, 0.06, rng)
    train, held_out = counts[: sizes.n_train], counts[sizes.n_train :]

    genevae_seconds, scvi_seconds = [], []
    genevae_errors, scvi_errors = [], []
    for round_index in range(sizes.rounds):
        vega, seconds = timed(lambda seed=round_index: train_vega(sizes, mask, train, seed))
        genevae_seconds.append(seconds / sizes.epochs)
        genevae_errors.append(vega_reconstruction_error(vega, held_out))
        if version is None:
            continue
        linear_scvi, seconds = timed(lambda seed=round_index: train_scvi(sizes, train, seed))
        scvi_seconds.append(seconds / sizes.epochs)
        scvi_errors.append(scvi_reconstruction_error(linear_scvi, held_out))

    payload |= {
        "method": (
            "wall time of each library's whole train call ÷ epochs (set-up included, under 1 s "
            "for both), runs alternating genevae/scvi, same process and threads; "
            "reconstruction = mean over held-out cells of −log p(x|z) (NB, one posterior "
            "draw), lower is better"
        ),
        "genevae_epoch_seconds": genevae_seconds,
        "genevae_reconstruction_error": genevae_errors,
        "target_speedup": TARGET_SPEEDUP,
    }
    if version is None:
        payload["scvi_available"] = False
        payload["note"] = "scvi-tools is not installed: pip install scvi-tools to compare."
        return payload
    speedups = [s / g for s, g in zip(scvi_seconds, genevae_seconds, strict=True)]
    genevae_error = statistics.fmean(genevae_errors)
    scvi_error = statistics.fmean(scvi_errors)
    payload |= {
        "scvi_available": True,
        "scvi_epoch_seconds": scvi_seconds,
        "scvi_reconstruction_error": scvi_errors,
        "speedup_per_round": speedups,
        "speedup_median": statistics.median(speedups),
        "reconstruction_error_ratio_genevae_over_scvi": genevae_error / scvi_error,
        "meets_target": statistics.median(speedups) >= TARGET_SPEEDUP
        and genevae_error <= scvi_error,
    }
    return payload
