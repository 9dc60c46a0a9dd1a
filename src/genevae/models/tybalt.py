"""Tybalt (Way & Greene, PSB 2018): a one-hidden-layer VAE of zero-one scaled bulk RNA-seq.

The encoder has two parallel branches straight from the genes, each Dense → BatchNorm → activation:
one gives the latent means (ReLU, so means are non-negative), the other the log-variances (ReLU in
the original, so σ ≥ 1). The decoder is a single Dense layer with a sigmoid, and its kernel is the
gene × node weight matrix used for interpretation.

Both branches read the same genes, so they are stored as one Dense(genes → 2 × latent) and one
BatchNorm over its 2 × latent outputs (rows ``:latent`` = means, ``latent:`` = log-variances):
the same maths (BatchNorm is per feature), one matrix product instead of two per pass.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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


def _encoder(n_genes: int, latent_dim: int) -> nn.Sequential:
    """Both branches' Dense → BatchNorm (Keras defaults) side by side; activations by the caller.

    Each branch's kernel is initialised as its own glorot Dense(genes → latent), means first,
    so the weights equal the two separate layers' for the same seed.
    """
    branches = [_glorot_dense(n_genes, latent_dim) for _ in range(2)]
    dense = torch.nn.utils.skip_init(nn.Linear, n_genes, 2 * latent_dim)  # draws no random numbers
    with torch.no_grad():
        dense.weight.copy_(torch.cat([branch.weight for branch in branches]))
        dense.bias.zero_()
    return nn.Sequential(dense, nn.BatchNorm1d(2 * latent_dim, eps=_BN_EPS, momentum=_BN_MOMENTUM))


def _merge_branch_state(
    module: nn.Module, state: dict[str, torch.Tensor], prefix: str, *_: Any
) -> None:
    """Load-state-dict pre-hook: weights saved with separate ``mean_branch``/``logvar_branch``
    (genevae before the joint encoder) are rewritten to the joint encoder's keys."""
    old = (f"{prefix}mean_branch.", f"{prefix}logvar_branch.")
    if f"{old[0]}0.weight" not in state:
        return
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        state[f"{prefix}encoder.{key}"] = torch.cat([state.pop(branch + key) for branch in old])
    tracked = [state.pop(f"{branch}1.num_batches_tracked", None) for branch in old]
    if tracked[0] is not None:
        state[f"{prefix}encoder.1.num_batches_tracked"] = tracked[0]


class _ClampedBCEWithLogits(torch.autograd.Function):
    """Σ over genes of BCE(σ(clamp(logits, ±bound)), x), with a hand-written backward.

    The same value as ``binary_cross_entropy_with_logits(logits.clamp(...), x).sum(1)``
    (softplus(l) − x·l, up to rounding) and the same gradient ((σ(l) − x) where the clamp
    is inactive, else 0), in about half the elementwise passes over samples × genes.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        clamped = logits.clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
        ctx.save_for_backward(logits, clamped, x)
        cross = torch.bmm(x.unsqueeze(1), clamped.unsqueeze(2)).reshape(-1)  # Σ x·l, no temporary
        return F.softplus(clamped).sum(1) - cross

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, clamped, x = ctx.saved_tensors
        grad_logits = torch.sigmoid(clamped).sub_(x).mul_(grad.unsqueeze(1))
        return grad_logits.masked_fill_(clamped != logits, 0.0), None


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
        self.encoder = _encoder(n_genes, latent_dim)
        self.register_load_state_dict_pre_hook(_merge_branch_state)
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
        mean, logvar = self.encoder(x).split(self.latent_dim, dim=1)
        mean = F.relu(mean)
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
        low, high = torch.aminmax(x) if x.numel() else (x.new_zeros(()), x.new_zeros(()))
        if low.item() < 0 or high.item() > 1:  # one pass over x instead of four
            raise GenevaeInputError(
                "batch['x'] has values outside [0, 1]; Tybalt expects expression min-max scaled "
                "per gene to [0, 1] (preprocessing scaling='minmax')."
            )
        mean, logvar = self._posterior(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        reconstruction = _ClampedBCEWithLogits.apply(self.decoder(z), x)
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
