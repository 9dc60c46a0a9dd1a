"""Tybalt (Way & Greene, PSB 2018): a one-hidden-layer VAE of zero-one scaled bulk RNA-seq.

The encoder has two parallel branches straight from the genes, each Dense → BatchNorm → activation:
one gives the latent means (ReLU, so means are non-negative), the other the log-variances (ReLU in
the original, so σ ≥ 1). The decoder is a single Dense layer with a sigmoid, and its kernel is the
gene × node weight matrix used for interpretation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genevae.errors import GenevaeInputError
from genevae.models.base import Batch, GenerativeModel

LOGVAR_ACTIVATIONS = ("relu", "linear")
KL_WARMUP_MODES = ("paper", "original")
# Keras clips probabilities to [1e-7, 1 - 1e-7] before the cross-entropy; clamping the logits
# at the matching bound gives the same loss (and zero gradient past it) without log(0).
_BCE_EPSILON = 1e-7
_LOGIT_BOUND = math.log((1.0 - _BCE_EPSILON) / _BCE_EPSILON)
# Keras BatchNormalization defaults (momentum 0.99 on the running average = 0.01 in torch).
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


def _glorot_dense(n_in: int, n_out: int) -> nn.Linear:
    """A Dense layer initialised like Keras (glorot-uniform kernel, zero bias)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _encoder_branch(n_genes: int, latent_dim: int) -> nn.Sequential:
    """Dense → BatchNorm (Keras defaults); the activation is applied by the caller."""
    return nn.Sequential(
        _glorot_dense(n_genes, latent_dim),
        nn.BatchNorm1d(latent_dim, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    )


class Tybalt(GenerativeModel):
    """Tybalt VAE with the published architecture and a choice of KL warm-up behaviour.

    Args:
        n_genes: number of input genes (5,000 top-MAD genes in the paper).
        latent_dim: number of latent nodes (100 in the paper).
        logvar_activation: ``"relu"`` (original code: log σ² ≥ 0, so every sample is drawn with
            σ ≥ 1) or ``"linear"`` (the usual VAE parameterisation).
        kl_warmup: ``"paper"`` uses the Sønderby et al. warm-up the paper describes,
            β_e = min(1, e·κ) for 0-based epoch e, so β is 0 in the first epoch and reaches 1
            after 1/κ epochs. ``"original"`` reproduces what the Keras code actually trained:
            the loss read β with ``K.get_value`` once when the graph was built (β = 0), so the
            callback's later updates never reached the loss and the KL term was always
            multiplied by 0 (an autoencoder with sampling noise). The logged ``"beta"`` is the
            β that enters the loss, i.e. always 0 in this mode.
        kappa: warm-up increment per epoch (1.0 for the published model).

    Batches need ``"x"``: zero-one scaled expression (samples × ``n_genes``).
    """

    model_type = "tybalt"

    def __init__(
        self,
        n_genes: int = 5000,
        latent_dim: int = 100,
        logvar_activation: str = "relu",
        kl_warmup: str = "paper",
        kappa: float = 1.0,
    ) -> None:
        _check_config(n_genes, latent_dim, logvar_activation, kl_warmup, kappa)
        super().__init__(
            {
                "n_genes": n_genes,
                "latent_dim": latent_dim,
                "logvar_activation": logvar_activation,
                "kl_warmup": kl_warmup,
                "kappa": kappa,
            }
        )
        self.n_genes = n_genes
        self.latent_dim = latent_dim
        self.mean_branch = _encoder_branch(n_genes, latent_dim)
        self.logvar_branch = _encoder_branch(n_genes, latent_dim)
        self.decoder = _glorot_dense(latent_dim, n_genes)
        # β is state (saved with the weights) so a restored model reports the loss it trained on.
        self.register_buffer("beta", torch.zeros(()))

    def kl_weight(self, epoch: int) -> float:
        """β that enters the loss during 0-based ``epoch`` (see ``kl_warmup``)."""
        if self.config["kl_warmup"] == "original":
            return 0.0
        return min(1.0, epoch * self.config["kappa"])

    def on_epoch_start(self, epoch: int) -> None:
        """Set β for this epoch (the KL warm-up)."""
        self.beta.fill_(self.kl_weight(epoch))

    @property
    def warmup_epochs(self) -> int:
        """Epochs before β reaches its final value (1, or 0 with κ = 0 or ``original``)."""
        if self.config["kl_warmup"] == "original" or self.config["kappa"] == 0:
            return 0
        epoch = max(0, math.floor(1 / self.config["kappa"]) - 1)
        while self.kl_weight(epoch) < 1:
            epoch += 1
        return epoch

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = F.relu(self.mean_branch(x))
        logvar = self.logvar_branch(x)
        if self.config["logvar_activation"] == "relu":
            logvar = F.relu(logvar)
        return mean, logvar

    def _expression(self, batch: Batch) -> torch.Tensor:
        if "x" not in batch:
            raise GenevaeInputError(
                f"Tybalt batches need key 'x' (zero-one scaled expression); got keys {sorted(batch)}."
            )
        x = batch["x"]
        if x.ndim != 2 or x.shape[1] != self.n_genes:
            raise GenevaeInputError(
                f"batch['x'] has shape {tuple(x.shape)} but the model was built with "
                f"n_genes={self.n_genes}; set the Tybalt parameter n_genes to the number of genes."
            )
        return x

    def encode(self, batch: Batch) -> torch.Tensor:
        """Latent means (samples × latent_dim): the encodings Tybalt reports.

        BatchNorm uses batch statistics in train mode; call ``model.eval()`` first for the
        running averages, as Keras' ``predict`` did.
        """
        return self._posterior(self._expression(batch))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Expected zero-one expression (samples × genes) for latent codes ``z``."""
        return torch.sigmoid(self.decoder(z))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Batch mean of summed-over-genes BCE + β·KL(q(z|x) ‖ N(0, I))."""
        x = self._expression(batch)
        if bool((x < 0).any() or (x > 1).any()):
            raise GenevaeInputError(
                "batch['x'] has values outside [0, 1]; Tybalt expects expression min-max scaled "
                "per gene to [0, 1] (preprocessing scaling='minmax')."
            )
        mean, logvar = self._posterior(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        logits = self.decoder(z).clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)
        total = reconstruction + self.beta * kl
        return {
            "loss": total.mean(),
            "reconstruction": reconstruction.mean(),
            "kl": kl.mean(),
            "beta": self.beta.detach().clone(),
        }

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the N(0, I) prior: synthetic zero-one expression profiles."""
        device = self.decoder.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(z)

    def decoder_weights(self) -> np.ndarray:
        """Decoder kernel as genes × latent nodes: the weights used to interpret each node."""
        return self.decoder.weight.detach().cpu().numpy().copy()


def _check_config(
    n_genes: int, latent_dim: int, logvar_activation: str, kl_warmup: str, kappa: float
) -> None:
    if n_genes < 1 or latent_dim < 1:
        raise GenevaeInputError(
            f"Tybalt needs n_genes >= 1 and latent_dim >= 1; got n_genes={n_genes}, "
            f"latent_dim={latent_dim}."
        )
    if logvar_activation not in LOGVAR_ACTIVATIONS:
        raise GenevaeInputError(
            f"Tybalt parameter logvar_activation={logvar_activation!r} is not one of "
            f"{LOGVAR_ACTIVATIONS}."
        )
    if kl_warmup not in KL_WARMUP_MODES:
        raise GenevaeInputError(
            f"Tybalt parameter kl_warmup={kl_warmup!r} is not one of {KL_WARMUP_MODES}."
        )
    if kappa < 0:
        raise GenevaeInputError(f"Tybalt parameter kappa must be >= 0; got {kappa}.")
