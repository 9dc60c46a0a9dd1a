"""GPO-VAE: a perturbation VAE whose latent effects run through a learned gene×gene GRN.

Lineage SAMS-VAE → CRADLE-VAE → GPO-VAE (Baek et al., Bioinformatics 2025); the maths is in
``reference/models.md`` §3.1–3.4. In plain PyTorch (``torch.distributions``, no pyro).

Generative model, for a cell with dosage d ∈ {0,1}^T over T GRN nodes (controls: d = 0):
    z_basal ~ N(0, I_L);   E ~ N(0, 1)^{T×T};   M ~ Bernoulli(mask_prior)^{T×T};
    qc_E ~ N(0, 1)^{1×L} (the artifact embedding);
    x ~ NB(mean = library · softmax(f([z_basal ‖ d(E⊙M) ‖ qc·qc_E])), concentration exp(θ_g)).
Row t of E⊙M is the effect of perturbing node t on all T nodes. ``f`` is a residual LeakyReLU
MLP; good-quality cells (qc = 0) are decoded with a zero artifact offset (``p_x_good``).

Guide: q(M) relaxed-Bernoulli straight-through on a T×T logits matrix; q(E_t | M_t) a Gaussian
residual MLP on [M_t ‖ onehot(t)]; q(qc_E) the same MLP type on ones(1×L); and the correlated
basal encoder q(z_basal | log-standardised x ‖ d(E⊙M) ‖ qc·qc_E).

Loss (``loss``) = −ELBO + β·counterfactual KL + GRN-aligned loss + sparsity penalty:
    reconstruction  α·(1−qc)·log p_good(x) + (1−α)·qc·log p_bad(x), α = ``alpha`` or the
                    batch fraction of QC-failing cells (class balancing). When α is unset and
                    the batch holds only one QC class, that class gets weight 1 (the original
                    code gives it 0, which trains nothing on such batches);
    kl_local        log q(z_basal) − log p(z_basal);
    kl_global       log q − log p of E, M and qc_E ("plated" globals), reweighted per cell by
                    ``perturbation_weight`` (E, M rows of the cell's perturbation) and
                    ``qc_weight`` (qc_E, failing cells), so the mini-batch mean estimates the
                    full-data ELBO divided by the number of cells;
    counterfactual  β·KL(q(z | cf_x, d, (1−qc)·qc_E) ‖ q(z | x, d, (1−qc)·qc_E)) over cells with
                    ``has_cf``. As the original, it is *summed* over those cells (so it grows
                    with batch size) unless ``counterfactual_reduction="mean"``. The original
                    code's divergence omits the 1/σ₂² factor on the squared mean difference;
                    ``counterfactual_kl="exact"`` (default) is the closed-form Gaussian KL,
                    ``"original_code"`` reproduces the authors' expression;
    grn_alignment   gloss_coeff · mean|d·S − (ΔX − fc_criteria)| with the K-hop accumulation
                    S = A + A²/T + … + A^{K+1}/T^K of the mask *logits* A;
    sparsity        penalty_coeff · Σ σ(A) / T².
Both global-variable passes of the counterfactual share one draw of E, M, qc_E (the original
draws them twice); this lowers variance without changing the expectation's target.

Ablations: ``grn_alignment=False`` (CRADLE-like: no GRN-aligned loss, ``delta_x`` not needed);
``artifact_latent=False`` (SAMS-like: no qc_E, no counterfactual loss, every cell good).

Batch keys (dicts of float tensors, one row per cell):
    "counts"               cells × G raw counts (the likelihood target and the encoder input);
    "library"              cells × 1 library size (row sum of counts);
    "dosage"               cells × T one-hot perturbation over the GRN nodes (perturbed genes
                           first, then extra genes, whose columns are always 0); controls 0;
    "perturbation_weight"  cells × 1, 1 / (number of training cells with this cell's
                           perturbation, or of controls);
    "delta_x"              cells × T, |x − matched control| on log-normalised node genes
                           (only with ``grn_alignment``);
    "qc"                   cells × 1, 1 if the cell fails QC (only with ``artifact_latent``);
    "qc_weight"            cells × 1, qc / (number of QC-failing training cells): the plate
                           weight of qc_E (only with ``artifact_latent``);
    "cf_x"                 cells × G counterfactual counts (median of failing cells of the same
                           perturbation; zeros if none) (only with ``artifact_latent``);
    "has_cf"               cells × 1, 1 where ``cf_x`` exists (only with ``artifact_latent``).
:func:`plated_weights` computes ``perturbation_weight`` and ``qc_weight`` from training cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.distributions import NegativeBinomial, Normal, kl_divergence
from torch.nn import functional as F

from genevae.errors import GenevaeInputError
from genevae.models.base import Batch, GenerativeModel
from genevae.models.vega import add_negative_binomial_count_terms

CounterfactualKL = Literal["exact", "original_code"]
Reduction = Literal["sum", "mean"]
_VAR_EPS = 1e-4  # Gaussian heads: variance = exp(head) + 1e-4, as the original
_MEAN_EPS = 1e-4  # NB mean offset, as the original
_UNIFORM_EPS = 1e-6


class ResidualMLP(nn.Module):
    """Linear(n_in→h)+LeakyReLU, then ``n_layers − 1`` residual blocks h + LeakyReLU(Linear(h)).

    ``forward(*parts)`` takes the input as blocks whose widths add up to ``n_in``; the first
    layer is applied block by block and summed, which equals the layer on the concatenation
    but lets a per-cell block (e.g. the expression) broadcast over particles without copies.
    """

    def __init__(self, n_in: int, n_hidden: int, n_layers: int) -> None:
        super().__init__()
        self.first = nn.Linear(n_in, n_hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.LeakyReLU())
            for _ in range(n_layers - 1)
        )

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        widths = [part.shape[-1] for part in parts]
        if sum(widths) != self.first.in_features:
            raise GenevaeInputError(
                f"Input blocks of widths {widths} do not add up to {self.first.in_features}."
            )
        weights = torch.split(self.first.weight, widths, dim=1)
        hidden = self.first.bias
        for part, weight in zip(parts, weights, strict=True):
            hidden = hidden + F.linear(part, weight)
        hidden = F.leaky_relu(hidden)
        for block in self.blocks:
            hidden = hidden + block(hidden)
        return hidden


class GaussianMLP(nn.Module):
    """Residual MLP with mean and log-variance heads: N(mean, exp(log_var) + 1e-4)."""

    def __init__(self, n_in: int, n_out: int, n_hidden: int, n_layers: int) -> None:
        super().__init__()
        self.trunk = ResidualMLP(n_in, n_hidden, n_layers)
        self.mean = nn.Linear(n_hidden, n_out)
        self.log_var = nn.Linear(n_hidden, n_out)

    def forward(self, *parts: torch.Tensor) -> Normal:
        hidden = self.trunk(*parts)
        variance = torch.exp(self.log_var(hidden)) + _VAR_EPS
        return Normal(self.mean(hidden), variance.sqrt(), validate_args=False)


@dataclass(frozen=True)
class GlobalLatents:
    """Draws of the global variables, one per particle (leading dimension K)."""

    mask: torch.Tensor  # K × T × T, hard 0/1 values carrying straight-through gradients
    embedding: torch.Tensor  # K × T × T
    q_embedding: Normal
    artifact: torch.Tensor | None  # K × 1 × L
    q_artifact: Normal | None


def _noise(
    sampler: Any, shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """``sampler`` (torch.randn / torch.rand) on the generator's device, moved next to ``like``."""
    device = generator.device if generator is not None else like.device
    return sampler(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _rsample(dist: Normal, generator: torch.Generator | None) -> torch.Tensor:
    """Reparameterised draw loc + scale·ε, reproducible with an optional generator."""
    return dist.loc + dist.scale * _noise(torch.randn, dist.loc.shape, dist.loc, generator)


def _standard_normal_log_prob(value: torch.Tensor) -> torch.Tensor:
    """log N(value | 0, 1), elementwise (the prior of z_basal, E and qc_E)."""
    return -0.5 * value**2 - 0.5 * math.log(2 * math.pi)


class _SoftmaxNegativeBinomial(torch.autograd.Function):
    """Σ over genes of θ·logσ(−l) + x·logσ(l), l = log(library·softmax(logits) + 1e-4) − log θ.

    The particle-dependent part of the NB log-likelihood, straight from the decoder's logits,
    with the derivatives written out: with μ = library·softmax(logits) + 1e-4,
    ∂/∂μ = θ(x − μ)/(μ(μ + θ)) and ∂/∂log θ = −θ(softplus(l) + (x − μ)/(μ + θ)). Autograd
    through softmax, log, logsigmoid and the products makes about twice as many passes over
    particles × cells × genes (and as many temporaries); the sums over genes and over
    particles × cells are matrix products here (einsum), which write no temporary.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        library: torch.Tensor,
        counts: torch.Tensor,
        log_concentration: torch.Tensor,
    ) -> torch.Tensor:
        proportions = torch.softmax(logits, dim=-1)
        mean = torch.addcmul(proportions.new_tensor(_MEAN_EPS), proportions, library)
        log_ratio = torch.log(mean).sub_(log_concentration)
        softplus = F.softplus(log_ratio)  # −logσ(−l)
        # logσ(l) as softplus with β = −1: one pass, no buffer (torch's logsigmoid writes two)
        log_sigmoid = F.softplus(log_ratio, beta=-1.0)
        concentration = torch.exp(log_concentration)
        ctx.save_for_backward(proportions, mean, softplus, library, counts, concentration)
        return torch.einsum("...cg,cg->...c", log_sigmoid, counts) - torch.einsum(
            "...cg,g->...c", softplus, concentration
        )

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, Any]:
        proportions, mean, softplus, library, counts, concentration = ctx.saved_tensors
        residual = torch.sub(counts, mean).div_(mean + concentration)  # (x − μ)/(μ + θ)
        grad_log_concentration = None
        if ctx.needs_input_grad[3]:
            weighted = torch.einsum("...c,...cg->g", grad, softplus) + torch.einsum(
                "...c,...cg->g", grad, residual
            )
            grad_log_concentration = -concentration * weighted
        # ∂/∂proportions = library·θ(x − μ)/(μ(μ + θ))·grad, then softmax's backward
        grad_p = residual.mul_(concentration).div_(mean).mul_(grad.unsqueeze(-1) * library)
        # softmax's own backward kernel (what autograd runs): p·(grad − Σ grad·p) in one pass
        grad_logits = torch._softmax_backward_data(grad_p, proportions, -1, proportions.dtype)
        return grad_logits, None, None, grad_log_concentration


def _negative_binomial_log_likelihood(
    counts: torch.Tensor,
    library: torch.Tensor,
    logits: torch.Tensor,
    log_concentration: torch.Tensor,
) -> torch.Tensor:
    """Σ over genes of log NB(counts | mean + 1e-4, concentration θ = exp(log_concentration)),
    mean = library · softmax(logits).

    Equals ``NegativeBinomial(total_count=θ, logits=log(mean + 1e-4) − log θ).log_prob(counts)
    .sum(-1)`` in value and gradient, but torch broadcasts θ to particles × cells × genes, so the
    particle-independent lgamma(x + θ) − lgamma(θ) − lgamma(x + 1) (and its digamma backward)
    would run once per particle. Here it runs once per nonzero count (it is 0 at x = 0; on the
    CPU, :func:`~genevae.models.vega.add_negative_binomial_count_terms`), and only the
    μ-dependent part (:class:`_SoftmaxNegativeBinomial`) is computed per particle.
    counts: cells × genes; library: cells × 1; logits: (particles ×) cells × genes;
    log_concentration: genes. θ > 0 is assumed (torch's special case θ = x = 0 needs θ to
    underflow).
    """
    per_particle = _SoftmaxNegativeBinomial.apply(logits, library, counts, log_concentration)
    concentration = torch.exp(log_concentration)
    per_cell = torch.zeros(counts.shape[0], dtype=concentration.dtype, device=counts.device)
    return per_particle + add_negative_binomial_count_terms(per_cell, counts, concentration)


def _bernoulli_log_prob(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(value | logits), differentiable in both (value may carry ST gradients)."""
    return value * F.logsigmoid(logits) + (1.0 - value) * F.logsigmoid(-logits)


def relaxed_bernoulli_straight_through(
    logits: torch.Tensor,
    n_particles: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hard 0/1 samples (K × logits.shape) whose gradient is that of the relaxed sample.

    Relaxed Bernoulli (binary Gumbel-softmax): s = σ((logits + log u − log(1−u)) / τ); the
    forward value is round(s), the backward pass uses ds (straight-through estimator).
    """
    shape = torch.Size((n_particles, *logits.shape))
    uniform = _noise(torch.rand, shape, logits, generator).clamp(_UNIFORM_EPS, 1 - _UNIFORM_EPS)
    soft = torch.sigmoid((logits + torch.log(uniform) - torch.log1p(-uniform)) / temperature)
    hard = (soft > 0.5).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly 0/1 forward, ∂soft backward


def k_hop_accumulation(logits: torch.Tensor, hop: int) -> torch.Tensor:
    """S = A + A²/T + A³/T² + … + A^{hop+1}/T^{hop}: direct plus damped indirect effects."""
    n_nodes = logits.shape[0]
    total, power = logits, logits
    for _ in range(hop):
        power = power @ logits / n_nodes
        total = total + power
    return total


def grn_alignment_loss(
    logits: torch.Tensor,
    dosage: torch.Tensor,
    delta_x: torch.Tensor,
    *,
    hop: int,
    fc_criteria: float,
) -> torch.Tensor:
    """mean|d·S − (ΔX − c)|: pushes logits up where the observed |Δexpr| exceeds c, else down.

    Unweighted (the caller multiplies by ``gloss_coeff``). Control rows (d = 0) predict 0 and
    so carry no gradient.
    """
    accumulated = k_hop_accumulation(logits, hop)
    return (dosage @ accumulated - (delta_x - fc_criteria)).abs().mean()


def plated_weights(
    dosage: torch.Tensor | np.ndarray, qc: torch.Tensor | np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Plate weights for the batch keys ``perturbation_weight`` and ``qc_weight`` (cells × 1).

    Pass the training cells: ``perturbation_weight`` = 1 / (number of cells with the same
    dosage row, controls being one group); ``qc_weight`` = qc / (number of failing cells).
    """
    dosage = torch.as_tensor(np.asarray(dosage) if not torch.is_tensor(dosage) else dosage)
    if dosage.ndim != 2 or dosage.shape[0] == 0:
        raise GenevaeInputError(
            f"dosage must be a non-empty cells × nodes matrix, got shape {tuple(dosage.shape)}"
        )
    _, inverse, counts = torch.unique(dosage, dim=0, return_inverse=True, return_counts=True)
    weights = {"perturbation_weight": (1.0 / counts[inverse].float()).unsqueeze(1)}
    if qc is not None:
        flags = torch.as_tensor(np.asarray(qc) if not torch.is_tensor(qc) else qc).float()
        flags = flags.reshape(-1, 1)
        n_failing = flags.sum()
        weights["qc_weight"] = flags / n_failing if n_failing > 0 else torch.zeros_like(flags)
    return weights


def log_standardization(
    counts: torch.Tensor | np.ndarray | sp.spmatrix,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene mean and SD of log1p(counts) over the given (training) cells."""
    if sp.issparse(counts):
        logged = sp.csr_matrix(counts, dtype=np.float64)
        logged.data = np.log1p(logged.data)
        mean = np.asarray(logged.mean(axis=0)).ravel()
        second = np.asarray(logged.multiply(logged).mean(axis=0)).ravel()
        sd = np.sqrt(np.maximum(second - mean**2, 0.0))
        return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(sd, dtype=torch.float32)
    values = counts if torch.is_tensor(counts) else torch.as_tensor(np.asarray(counts))
    logged = torch.log1p(values.double())
    return logged.mean(0).float(), logged.std(0, unbiased=False).float()


class GPOVAE(GenerativeModel):
    """GPO-VAE (see the module docstring for the model, loss and batch keys).

    Config (defaults = the authors' Adamson configuration, spec §3.4):
        n_genes (G), n_nodes (T = perturbed + extra GRN genes), n_latent (L) 100;
        mask_prior 0.3 (prior edge probability), mask_init 0.0 (initial q(M) logits);
        decoder_hidden 400, decoder_layers 1 (the decoder has ``decoder_layers + 1`` hidden
        layers, as the original passes ``decoder_n_layers + 1``); basal_encoder_hidden 400,
        basal_encoder_layers 1; embedding_encoder_hidden 400, embedding_encoder_layers 4 (the
        qc_E guide uses the same sizes); n_particles 5 (Monte-Carlo samples per step);
        beta 0.1 (counterfactual KL weight); grn_alignment True, hop 5, gloss_coeff 100,
        fc_criteria 0.4 (c; K562 0.8, RPE1 0.5); penalty_coeff 1 (the configs' ``penaly_coeff``);
        artifact_latent True; alpha None (reconstruction balance; None = batch failing
        fraction); temperature 1.0 (relaxed Bernoulli); counterfactual_kl "exact" |
        "original_code"; counterfactual_reduction "sum" (original) | "mean".

    The encoder input is (log1p(counts) − mean) / sd with per-gene training statistics: call
    :meth:`set_standardization` (e.g. with :func:`log_standardization`) before training. They
    are buffers, so they are saved with the weights.
    """

    model_type = "gpo_vae"

    def __init__(
        self,
        *,
        n_genes: int,
        n_nodes: int,
        n_latent: int = 100,
        mask_prior: float = 0.3,
        mask_init: float = 0.0,
        decoder_hidden: int = 400,
        decoder_layers: int = 1,
        basal_encoder_hidden: int = 400,
        basal_encoder_layers: int = 1,
        embedding_encoder_hidden: int = 400,
        embedding_encoder_layers: int = 4,
        n_particles: int = 5,
        beta: float = 0.1,
        grn_alignment: bool = True,
        hop: int = 5,
        gloss_coeff: float = 100.0,
        fc_criteria: float = 0.4,
        penalty_coeff: float = 1.0,
        artifact_latent: bool = True,
        alpha: float | None = None,
        temperature: float = 1.0,
        counterfactual_kl: CounterfactualKL = "exact",
        counterfactual_reduction: Reduction = "sum",
    ) -> None:
        config = dict(locals())
        for key in ("self", "__class__"):
            config.pop(key, None)
        super().__init__(config)
        _validate_config(config)
        self.n_genes, self.n_nodes, self.n_latent = n_genes, n_nodes, n_latent
        self.artifact_latent = artifact_latent
        self.prior_mask_logit = math.log(mask_prior) - math.log1p(-mask_prior)
        artifact_width = n_latent if artifact_latent else 0

        self.mask_logits = nn.Parameter(torch.full((n_nodes, n_nodes), float(mask_init)))
        self.embedding_encoder = GaussianMLP(
            2 * n_nodes, n_nodes, embedding_encoder_hidden, embedding_encoder_layers
        )
        self.register_buffer("node_one_hot", torch.eye(n_nodes), persistent=False)
        self.artifact_encoder = (
            GaussianMLP(n_latent, n_latent, embedding_encoder_hidden, embedding_encoder_layers)
            if artifact_latent
            else None
        )
        self.register_buffer("artifact_input", torch.ones(1, n_latent), persistent=False)
        self.basal_encoder = GaussianMLP(
            n_genes + n_nodes + artifact_width, n_latent, basal_encoder_hidden, basal_encoder_layers
        )
        self.decoder = ResidualMLP(
            n_latent + n_nodes + artifact_width, decoder_hidden, decoder_layers + 1
        )
        self.decoder_output = nn.Linear(decoder_hidden, n_genes)
        self.log_concentration = nn.Parameter(torch.zeros(n_genes))
        self.register_buffer("gene_log_mean", torch.zeros(n_genes))
        self.register_buffer("gene_log_sd", torch.ones(n_genes))

    # ----------------------------------------------------------------- set-up and readouts
    def set_standardization(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        """Store per-gene mean/SD of log1p(counts) on training cells (SD 0 is treated as 1)."""
        mean, sd = torch.as_tensor(mean).float().ravel(), torch.as_tensor(sd).float().ravel()
        if mean.shape != (self.n_genes,) or sd.shape != (self.n_genes,):
            raise GenevaeInputError(
                f"set_standardization needs mean and sd of length n_genes={self.n_genes}, got "
                f"{tuple(mean.shape)} and {tuple(sd.shape)}; compute them on the model's genes."
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(sd).all()):
            raise GenevaeInputError("set_standardization: mean and sd must be finite.")
        self.gene_log_mean.copy_(mean)
        self.gene_log_sd.copy_(torch.where(sd > 0, sd, torch.ones_like(sd)))

    def _logits(self) -> torch.Tensor:
        """q(M) logits with NaN/inf replaced by 0, as the original guide does."""
        return torch.nan_to_num(self.mask_logits, nan=0.0, posinf=0.0, neginf=0.0)

    def grn_probabilities(self) -> torch.Tensor:
        """σ(q(M) logits), T × T: row = regulator (perturbed node), column = target."""
        return torch.sigmoid(self._logits()).detach()

    # ----------------------------------------------------------------------- the guide
    def sample_global_latents(
        self, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalLatents:
        """Draw M, E | M and qc_E from the guide, one draw per particle."""
        mask = relaxed_bernoulli_straight_through(
            self._logits(), n_particles, self.config["temperature"], generator
        )
        return self._globals_given_mask(mask, generator, use_means=False)

    def mean_global_latents(self) -> GlobalLatents:
        """Deterministic globals: the mask mode (p > 0.5) and the guide means of E and qc_E."""
        mask = (self._logits() > 0).to(self.mask_logits.dtype).unsqueeze(0)
        return self._globals_given_mask(mask, None, use_means=True)

    def _globals_given_mask(
        self, mask: torch.Tensor, generator: torch.Generator | None, use_means: bool
    ) -> GlobalLatents:
        q_embedding = self.embedding_encoder(mask, self.node_one_hot)
        embedding = q_embedding.loc if use_means else _rsample(q_embedding, generator)
        artifact, q_artifact = None, None
        if self.artifact_encoder is not None:
            q_artifact = self.artifact_encoder(self.artifact_input.expand(mask.shape[0], -1, -1))
            artifact = q_artifact.loc if use_means else _rsample(q_artifact, generator)
        return GlobalLatents(mask, embedding, q_embedding, artifact, q_artifact)

    def _perturbation_offset(self, dosage: torch.Tensor, latents: GlobalLatents) -> torch.Tensor:
        """d·(E⊙M): K × cells × T."""
        return torch.matmul(dosage, latents.embedding * latents.mask)

    def _artifact_offset(
        self, flags: torch.Tensor | None, latents: GlobalLatents
    ) -> torch.Tensor | None:
        """qc·qc_E: K × cells × L (None without the artifact latent)."""
        if latents.artifact is None:
            return None
        return torch.matmul(flags, latents.artifact)

    def _basal_posterior(
        self, counts: torch.Tensor, offset: torch.Tensor, artifact_offset: torch.Tensor | None
    ) -> Normal:
        """q(z_basal | log-standardised x ‖ d(E⊙M) ‖ qc·qc_E), K × cells × L."""
        standardized = (torch.log1p(counts) - self.gene_log_mean) / self.gene_log_sd
        if artifact_offset is None:
            return self.basal_encoder(standardized, offset)
        return self.basal_encoder(standardized, offset, artifact_offset)

    # ------------------------------------------------------------------ the generative model
    def _decoder_logits(
        self, z: torch.Tensor, offset: torch.Tensor, artifact_offset: torch.Tensor | None
    ) -> torch.Tensor:
        """f([z ‖ d(E⊙M) ‖ artifact offset]): the logits of each gene's expected share."""
        parts = [z, offset] if artifact_offset is None else [z, offset, artifact_offset]
        return self.decoder_output(self.decoder(*parts))

    def _decode_proportions(
        self, z: torch.Tensor, offset: torch.Tensor, artifact_offset: torch.Tensor | None
    ) -> torch.Tensor:
        """softmax of :meth:`_decoder_logits`: expected share of each gene."""
        return torch.softmax(self._decoder_logits(z, offset, artifact_offset), dim=-1)

    def _count_distribution(self, mean: torch.Tensor) -> NegativeBinomial:
        """NB with the given mean (+1e-4) and per-gene concentration exp(θ)."""
        concentration = torch.exp(self.log_concentration)
        logits = torch.log(mean + _MEAN_EPS) - self.log_concentration
        return NegativeBinomial(total_count=concentration, logits=logits, validate_args=False)

    def _prior_predictive_means(
        self,
        dosage: torch.Tensor,
        n_particles: int,
        library_size: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Mean counts of p_x_good, K × P × G, with z_basal from the prior and guide globals."""
        dosage = dosage.to(self.mask_logits.device, self.mask_logits.dtype)
        if dosage.ndim != 2 or dosage.shape[1] != self.n_nodes:
            raise GenevaeInputError(
                f"dosage must be perturbations × n_nodes ({self.n_nodes}), got shape "
                f"{tuple(dosage.shape)}"
            )
        latents = self.sample_global_latents(n_particles, generator)
        offset = self._perturbation_offset(dosage, latents)
        z = _noise(
            torch.randn,
            torch.Size((n_particles, dosage.shape[0], self.n_latent)),
            offset,
            generator,
        )
        artifact = None if latents.artifact is None else torch.zeros_like(z)
        return library_size * self._decode_proportions(z, offset, artifact)

    @torch.no_grad()
    def predict_mean_expression(
        self,
        dosage: torch.Tensor,
        n_particles: int = 100,
        library_size: float = 1e4,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Expected counts per dosage row (P × G) of artifact-free cells, averaged over particles."""
        return self._prior_predictive_means(dosage, n_particles, library_size, generator).mean(0)

    @torch.no_grad()
    def sample_counts(
        self,
        dosage: torch.Tensor,
        n_particles: int = 100,
        library_size: float = 1e4,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """NB count draws from p_x_good, K × P × G (globals shared across rows per particle)."""
        mean = self._prior_predictive_means(dosage, n_particles, library_size, generator)
        distribution = self._count_distribution(mean)
        if generator is None:
            return distribution.sample()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [mean.device] if mean.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return distribution.sample()

    # ------------------------------------------------------------------------- the loss
    def _check_batch(self, batch: Batch, keys: list[str]) -> None:
        missing = [key for key in keys if key not in batch]
        if missing:
            raise GenevaeInputError(
                f"GPO-VAE batch is missing key(s) {missing}. Required here: {keys} (see the "
                "genevae.models.gpo_vae docstring; plated_weights() gives the weight keys). "
                "Keys 'qc', 'qc_weight', 'cf_x', 'has_cf' are needed with artifact_latent=True, "
                "'delta_x' with grn_alignment=True."
            )
        widths = {"counts": self.n_genes, "cf_x": self.n_genes, "dosage": self.n_nodes}
        widths |= {"delta_x": self.n_nodes, "library": 1, "qc": 1, "has_cf": 1}
        widths |= {"perturbation_weight": 1, "qc_weight": 1}
        n_cells = batch[keys[0]].shape[0]
        for key in keys:
            shape = tuple(batch[key].shape)
            if shape != (n_cells, widths[key]):
                raise GenevaeInputError(
                    f"GPO-VAE batch key '{key}' has shape {shape}, expected "
                    f"({n_cells}, {widths[key]}) (cells × {widths[key]})."
                )

    def _required_keys(self, *, for_loss: bool) -> list[str]:
        keys = ["counts", "dosage"]
        if self.artifact_latent:
            keys.append("qc")
        if for_loss:
            keys += ["library", "perturbation_weight"]
            if self.artifact_latent:
                keys += ["qc_weight", "cf_x", "has_cf"]
            if self.config["grn_alignment"]:
                keys.append("delta_x")
        return keys

    def _reconstruction_weights(self, qc: torch.Tensor | None) -> torch.Tensor | float:
        """α(1−qc) + (1−α)qc per cell (1 without the artifact latent or for one-class batches)."""
        if qc is None:
            return 1.0
        alpha = self.config["alpha"]
        if alpha is not None:
            return (alpha * (1.0 - qc) + (1.0 - alpha) * qc).squeeze(-1)
        alpha = qc.mean()  # stays on the device: no read-back per step
        weights = alpha * (1.0 - qc) + (1.0 - alpha) * qc
        one_class = (alpha == 0.0) | (alpha == 1.0)
        return torch.where(one_class, torch.ones_like(weights), weights).squeeze(-1)

    def _plated_log_ratio(self, batch: Batch, latents: GlobalLatents) -> torch.Tensor:
        """Σ plated (log p − log q) of E, M (and qc_E), reweighted per cell: K × cells."""
        logits, embedding, mask = self._logits(), latents.embedding, latents.mask
        embedding_terms = _standard_normal_log_prob(embedding) - latents.q_embedding.log_prob(
            embedding
        )
        prior_logits = torch.full_like(logits, self.prior_mask_logit)
        mask_terms = _bernoulli_log_prob(prior_logits, mask) - _bernoulli_log_prob(logits, mask)
        per_row = (embedding_terms + mask_terms).sum(-1)  # K × T
        cell_weights = (batch["dosage"] != 0).to(per_row.dtype) * batch["perturbation_weight"]
        total = per_row @ cell_weights.T
        if latents.artifact is not None:
            artifact = latents.artifact
            artifact_terms = _standard_normal_log_prob(artifact) - latents.q_artifact.log_prob(
                artifact
            )
            qc_weights = (batch["qc"] * batch["qc_weight"]).T  # 1 × cells
            total = total + artifact_terms.sum(-1) * qc_weights
        return total

    def _counterfactual_divergence(
        self, batch: Batch, offset: torch.Tensor, latents: GlobalLatents
    ) -> torch.Tensor:
        """Σ (or mean) over cells with a counterfactual of KL(q(z|cf_x) ‖ q_cf(z|x)), unweighted."""
        if not self.artifact_latent:
            return offset.new_zeros(())
        has_cf = batch["has_cf"].squeeze(-1) > 0
        if not bool(has_cf.any()):
            return offset.new_zeros(())
        flipped = self._artifact_offset(1.0 - batch["qc"][has_cf], latents)
        # index_select's backward is an index_add; a boolean index's is a (serial on the
        # CPU) accumulating index_put over particles × cells × nodes
        cf_offset = offset.index_select(1, has_cf.nonzero().squeeze(-1))
        q_source = self._basal_posterior(batch["cf_x"][has_cf], cf_offset, flipped)
        q_target = self._basal_posterior(batch["counts"][has_cf], cf_offset, flipped)
        if self.config["counterfactual_kl"] == "exact":
            divergence = kl_divergence(q_source, q_target)
        else:
            var_ratio = (q_source.scale / q_target.scale) ** 2
            squared = (q_source.loc - q_target.loc) ** 2
            divergence = 0.5 * (var_ratio - 1.0 - torch.log(var_ratio) + squared)
        total = divergence.sum(-1).mean(0).sum()
        if self.config["counterfactual_reduction"] == "mean":
            total = total / batch["counts"].shape[0]
        return total

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """−ELBO + β·counterfactual KL + GRN-aligned loss + sparsity, each term logged."""
        self._check_batch(batch, self._required_keys(for_loss=True))
        cfg = self.config
        qc = batch["qc"] if self.artifact_latent else None
        latents = self.sample_global_latents(cfg["n_particles"])
        offset = self._perturbation_offset(batch["dosage"], latents)
        artifact_offset = self._artifact_offset(qc, latents)
        q_z = self._basal_posterior(batch["counts"], offset, artifact_offset)
        z = q_z.rsample()
        log_likelihood = _negative_binomial_log_likelihood(
            batch["counts"],
            batch["library"],
            self._decoder_logits(z, offset, artifact_offset),
            self.log_concentration,
        )

        logits = self._logits()
        zero = logits.new_zeros(())
        terms = {
            "reconstruction": -(self._reconstruction_weights(qc) * log_likelihood).mean(),
            "kl_local": (q_z.log_prob(z) - _standard_normal_log_prob(z)).sum(-1).mean(),
            "kl_global": -self._plated_log_ratio(batch, latents).mean(),
            "counterfactual": cfg["beta"] * self._counterfactual_divergence(batch, offset, latents),
            "grn_alignment": cfg["gloss_coeff"]
            * grn_alignment_loss(
                logits,
                batch["dosage"],
                batch["delta_x"],
                hop=cfg["hop"],
                fc_criteria=cfg["fc_criteria"],
            )
            if cfg["grn_alignment"]
            else zero,
            "sparsity": cfg["penalty_coeff"] * torch.sigmoid(logits).sum() / self.n_nodes**2,
        }
        terms["loss"] = sum(terms.values())
        return terms

    # ------------------------------------------------------------------------ evaluation
    def encode(self, batch: Batch) -> torch.Tensor:
        """Basal latent means (cells × L) given the deterministic globals (mask mode, means)."""
        self._check_batch(batch, self._required_keys(for_loss=False))
        latents = self.mean_global_latents()
        offset = self._perturbation_offset(batch["dosage"], latents)
        artifact_offset = self._artifact_offset(batch.get("qc"), latents)
        return self._basal_posterior(batch["counts"], offset, artifact_offset).loc[0]

    @torch.no_grad()
    def iwelbo(
        self,
        batch: Batch,
        n_particles: int = 100,
        global_latents: GlobalLatents | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-cell importance-weighted bound on log p(x | globals), shape (cells,).

        Globals are drawn once per particle from the guide (pass ``global_latents`` from
        :meth:`sample_global_latents` to share them across batches; then its particle count is
        used) and are not scored against their priors; only z_basal is importance-weighted.
        The likelihood is the quality-appropriate one, (1−qc)·log p_good + qc·log p_bad.
        """
        keys = self._required_keys(for_loss=False) + ["library"]
        self._check_batch(batch, keys)
        latents = global_latents or self.sample_global_latents(n_particles, generator)
        n_draws = latents.mask.shape[0]
        offset = self._perturbation_offset(batch["dosage"], latents)
        artifact_offset = self._artifact_offset(batch.get("qc"), latents)
        q_z = self._basal_posterior(batch["counts"], offset, artifact_offset)
        z = _rsample(q_z, generator)
        logits = self._decoder_logits(z, offset, artifact_offset)
        log_weights = (
            _negative_binomial_log_likelihood(
                batch["counts"], batch["library"], logits, self.log_concentration
            )
            + _standard_normal_log_prob(z).sum(-1)
            - q_z.log_prob(z).sum(-1)
        )
        return torch.logsumexp(log_weights, dim=0) - math.log(n_draws)


def _validate_config(config: dict[str, Any]) -> None:
    """Raise GenevaeInputError naming the first bad GPO-VAE parameter."""
    positive_ints = (
        "n_genes",
        "n_nodes",
        "n_latent",
        "decoder_hidden",
        "basal_encoder_hidden",
        "embedding_encoder_hidden",
        "basal_encoder_layers",
        "embedding_encoder_layers",
        "n_particles",
    )
    for key in positive_ints:
        if not isinstance(config[key], int) or config[key] < 1:
            raise GenevaeInputError(f"GPO-VAE parameter {key} must be a positive integer.")
    if not isinstance(config["decoder_layers"], int) or config["decoder_layers"] < 0:
        raise GenevaeInputError("GPO-VAE parameter decoder_layers must be an integer >= 0.")
    if not isinstance(config["hop"], int) or config["hop"] < 0:
        raise GenevaeInputError("GPO-VAE parameter hop must be an integer >= 0.")
    if not 0.0 < config["mask_prior"] < 1.0:
        raise GenevaeInputError("GPO-VAE parameter mask_prior must lie strictly in (0, 1).")
    if config["temperature"] <= 0:
        raise GenevaeInputError("GPO-VAE parameter temperature must be positive.")
    if config["alpha"] is not None and not 0.0 <= config["alpha"] <= 1.0:
        raise GenevaeInputError("GPO-VAE parameter alpha must be None or lie in [0, 1].")
    for key in ("beta", "gloss_coeff", "penalty_coeff"):
        if config[key] < 0:
            raise GenevaeInputError(f"GPO-VAE parameter {key} must be >= 0.")
    if config["counterfactual_kl"] not in ("exact", "original_code"):
        raise GenevaeInputError(
            "GPO-VAE parameter counterfactual_kl must be 'exact' or 'original_code'."
        )
    if config["counterfactual_reduction"] not in ("sum", "mean"):
        raise GenevaeInputError(
            "GPO-VAE parameter counterfactual_reduction must be 'sum' or 'mean'."
        )
