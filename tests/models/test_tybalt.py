"""Tybalt learns type-separating, interpretable latent nodes; loss, β schedule and I/O as specified."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_model, save_file, save_model

from genevae.analysis.latent import high_weight_genes, knn_label_accuracy
from genevae.errors import GenevaeInputError
from genevae.models.tybalt import Tybalt
from genevae.preprocessing.synthetic_bulk import make_tcga_like
from tests.conftest import requires_shared_data

N_GENES, LATENT = 200, 10


def _train(
    model: Tybalt, x: torch.Tensor, epochs: int, lr: float = 5e-3, batch_size: int = 50
) -> list[float]:
    """Minimal Adam loop on ``model.loss``; returns the mean training loss of each epoch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    epoch_losses = []
    for epoch in range(epochs):
        model.train()
        model.on_epoch_start(epoch)
        order = torch.randperm(len(x))
        losses = []
        for start in range(0, len(x), batch_size):
            terms = model.loss({"x": x[order[start : start + batch_size]]})
            optimiser.zero_grad()
            terms["loss"].backward()
            optimiser.step()
            losses.append(terms["loss"].item())
        epoch_losses.append(float(np.mean(losses)))
    model.eval()
    return epoch_losses


def _encode(model: Tybalt, x: torch.Tensor, index: pd.Index) -> pd.DataFrame:
    with torch.no_grad():
        return pd.DataFrame(model.encode({"x": x}).numpy(), index=index)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    expression, labels = make_tcga_like(n_samples=500, n_genes=N_GENES, n_types=5, seed=0)
    x = torch.tensor(expression.to_numpy(), dtype=torch.float32)
    model = Tybalt(n_genes=N_GENES, latent_dim=LATENT)
    losses = _train(model, x, epochs=25)
    return model, expression, labels, x, losses


def test_training_loss_falls(trained):
    losses = trained[4]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] - 3.0
    assert np.mean(losses[-3:]) < np.mean(losses[5:8])  # still improving after β reached 1


def test_latent_means_separate_cancer_types(trained):
    model, expression, labels, x, _ = trained
    latent = _encode(model, x, expression.index)
    assert latent.shape == (500, LATENT)
    assert (latent.to_numpy() >= 0).all()  # ReLU on the mean branch
    assert knn_label_accuracy(latent, labels, k=5, seed=0) > 0.9  # chance is 0.2


def test_decoder_high_weight_genes_are_planted_programs(trained):
    model, expression, *_ = trained
    weights = pd.DataFrame(model.decoder_weights(), index=expression.columns)
    assert weights.shape == (N_GENES, LATENT)
    # Column k is node k's effect on each gene's logit: logit x̂(e_k) − logit x̂(0).
    with torch.no_grad():
        codes = torch.cat([torch.zeros(1, LATENT), torch.eye(LATENT)])
        effects = torch.logit(model.decode(codes).double())
    np.testing.assert_allclose((effects[1:] - effects[0]).T.numpy(), weights.to_numpy(), atol=1e-4)

    programs = expression.attrs["type_programs"]
    positive = high_weight_genes(weights).query("tail == 'positive'")
    program_of = {gene: name for name, genes in programs.items() for gene in genes}
    assert positive["gene"].isin(program_of).all()
    # Each node's positive genes come from one cancer type's program, and several types get a node.
    node_types = positive.assign(program=positive["gene"].map(program_of)).groupby("node")[
        "program"
    ]
    assert (node_types.nunique() == 1).all()
    assert node_types.first().nunique() >= 3


@pytest.mark.parametrize(
    ("kl_warmup", "kappa", "expected"),
    [
        ("paper", 1.0, 1),
        ("paper", 0.5, 2),
        ("paper", 0.3, 4),
        ("paper", 0.0, 0),
        ("original", 1.0, 0),
    ],
)
def test_warmup_epochs_are_those_before_beta_reaches_its_final_value(kl_warmup, kappa, expected):
    model = Tybalt(n_genes=4, latent_dim=2, kl_warmup=kl_warmup, kappa=kappa)
    assert model.warmup_epochs == expected
    final = model.kl_weight(10**6)
    assert [model.kl_weight(e) == final for e in range(expected + 2)] == [False] * expected + [
        True
    ] * 2


def test_generate_samples_prior_into_unit_interval(trained):
    model = trained[0]
    samples = model.generate(64, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (64, N_GENES)
    assert samples.min() >= 0 and samples.max() <= 1
    again = model.generate(64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples, again)
    assert not samples.requires_grad


def test_decode_of_encoding_reconstructs_better_than_gene_means(trained):
    model, expression, _, x, _ = trained
    with torch.no_grad():
        reconstruction = model.decode(model.encode({"x": x}))
    model_error = (reconstruction - x).abs().mean()
    mean_error = (x.mean(0, keepdim=True) - x).abs().mean()
    assert model_error < 0.9 * mean_error


@pytest.mark.parametrize(
    ("mode", "kappa", "expected"),
    [
        ("paper", 1.0, [0.0, 1.0, 1.0, 1.0]),
        ("paper", 0.25, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]),
        ("original", 1.0, [0.0, 0.0, 0.0, 0.0]),
        ("original", 0.01, [0.0, 0.0, 0.0]),
    ],
)
def test_beta_schedule(mode, kappa, expected):
    model = Tybalt(n_genes=8, latent_dim=2, kl_warmup=mode, kappa=kappa)
    x = torch.rand(6, 8)
    seen = []
    for epoch in range(len(expected)):
        model.on_epoch_start(epoch)
        seen.append(model.loss({"x": x})["beta"].item())
    assert seen == pytest.approx(expected)


def test_original_warmup_trains_without_kl():
    torch.manual_seed(0)
    model = Tybalt(n_genes=8, latent_dim=2, kl_warmup="original")
    model.on_epoch_start(10)
    terms = model.loss({"x": torch.rand(6, 8)})
    assert terms["kl"] > 0
    torch.testing.assert_close(terms["loss"], terms["reconstruction"])


def test_loss_is_reconstruction_plus_beta_kl():
    torch.manual_seed(0)
    model = Tybalt(n_genes=8, latent_dim=3, kappa=0.5)
    model.on_epoch_start(1)
    terms = model.loss({"x": torch.rand(5, 8)})
    assert set(terms) == {"loss", "reconstruction", "kl", "beta"}
    assert all(value.ndim == 0 for value in terms.values())
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + 0.5 * terms["kl"])


def _constant_model(
    logvar_activation: str, mean_shift: float, logvar_shift: float, decoder_bias: float
) -> Tybalt:
    """A model whose encoder ignores x (zero kernels, eval-mode BatchNorm) and decoder is constant."""
    model = Tybalt(n_genes=4, latent_dim=3, logvar_activation=logvar_activation)
    with torch.no_grad():
        model.encoder[0].weight.zero_()
        model.encoder[1].bias[:3].fill_(mean_shift)
        model.encoder[1].bias[3:].fill_(logvar_shift)
        model.decoder.weight.zero_()
        model.decoder.bias.fill_(decoder_bias)
    model.on_epoch_start(1)
    return model.eval()


def test_kl_matches_closed_form_and_logvar_activation():
    x = torch.full((2, 4), 0.5)
    # mean 0.5, logvar -1: ReLU clips log σ² to 0; linear keeps it.
    relu_terms = _constant_model("relu", 0.5, -1.0, 0.0).loss({"x": x})
    linear_terms = _constant_model("linear", 0.5, -1.0, 0.0).loss({"x": x})
    kl_per_node = lambda mean, logvar: -0.5 * (1 + logvar - mean**2 - math.exp(logvar))  # noqa: E731
    assert relu_terms["kl"].item() == pytest.approx(3 * kl_per_node(0.5, 0.0), rel=1e-5)
    assert linear_terms["kl"].item() == pytest.approx(3 * kl_per_node(0.5, -1.0), rel=1e-5)


def test_reconstruction_is_summed_bce_with_keras_clipping():
    x = torch.tensor([[0.0, 1.0, 0.25, 0.75]])
    p = 1 / (1 + math.exp(-0.3))
    expected = -sum(v * math.log(p) + (1 - v) * math.log(1 - p) for v in x[0].tolist())
    terms = _constant_model("relu", 0.0, 0.0, 0.3).loss({"x": x})
    assert terms["reconstruction"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)
    # A saturated decoder is clipped at 1 - 1e-7, as Keras does, instead of giving log(0).
    saturated = _constant_model("relu", 0.0, 0.0, 40.0).loss({"x": torch.zeros(1, 4)})
    assert saturated["reconstruction"].item() == pytest.approx(-4 * math.log(1e-7), rel=1e-4)


def test_config_rebuilds_model_and_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Tybalt(n_genes=12, latent_dim=4, logvar_activation="linear", kappa=0.1)
    model.on_epoch_start(3)
    assert model.config == {
        "n_genes": 12,
        "latent_dim": 4,
        "logvar_activation": "linear",
        "kl_warmup": "paper",
        "kappa": 0.1,
    }
    save_model(model, str(tmp_path / "model.safetensors"))
    restored = Tybalt(**model.config)
    load_model(restored, str(tmp_path / "model.safetensors"), strict=True)
    x = torch.rand(7, 12)
    model.eval()
    restored.eval()
    torch.testing.assert_close(restored.encode({"x": x}), model.encode({"x": x}))
    assert restored.beta.item() == pytest.approx(0.3)
    assert Tybalt.model_type == "tybalt"


def test_glorot_uniform_init_and_keras_batchnorm():
    model = Tybalt(n_genes=300, latent_dim=20)
    bound = math.sqrt(6 / (300 + 20))
    for kernel in model.encoder[0].weight.split(20):  # the means' and the log-variances' branch
        assert kernel.abs().max() <= bound
        assert kernel.abs().max() > 0.9 * bound
    assert (model.decoder.bias == 0).all()
    norm = model.encoder[1]
    assert norm.momentum == pytest.approx(0.01)
    assert norm.eps == pytest.approx(1e-3)


def _two_branch_weights(seed: int, n_genes: int, latent: int) -> list[torch.Tensor]:
    """The weights genevae drew before the joint encoder: two glorot Dense layers, then the decoder."""
    torch.manual_seed(seed)
    weights = []
    for n_in, n_out in ((n_genes, latent), (n_genes, latent), (latent, n_genes)):
        layer = torch.nn.Linear(n_in, n_out)
        torch.nn.init.xavier_uniform_(layer.weight)
        weights.append(layer.weight.detach())
    return weights


def _two_branch_loss(model: Tybalt, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The loss as written before (two Dense → BatchNorm branches, clamp then torch's BCE)."""
    dense, norm = model.encoder
    branches = []
    for rows in (slice(0, LATENT), slice(LATENT, 2 * LATENT)):
        hidden = torch.nn.functional.linear(x, dense.weight[rows], dense.bias[rows])
        branches.append(
            torch.nn.functional.batch_norm(
                hidden, None, None, norm.weight[rows], norm.bias[rows], True, 0.0, norm.eps
            )
        )
    mean, logvar = torch.relu(branches[0]), torch.relu(branches[1])
    z = mean + torch.exp(0.5 * logvar) * noise
    bound = math.log((1 - 1e-7) / 1e-7)
    logits = model.decoder(z).clamp(-bound, bound)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)
    return (bce.sum(1) + model.beta * kl).mean()


def test_joint_encoder_keeps_the_two_branch_init_loss_and_gradients():
    expected = _two_branch_weights(3, N_GENES, LATENT)
    torch.manual_seed(3)
    model = Tybalt(n_genes=N_GENES, latent_dim=LATENT)
    torch.testing.assert_close(model.encoder[0].weight, torch.cat(expected[:2]), rtol=0, atol=0)
    torch.testing.assert_close(model.decoder.weight, expected[2], rtol=0, atol=0)
    with torch.no_grad():  # decoder logits beyond the clamp bound, so the clamp's gradient counts
        model.decoder.bias[:20] = 30.0
        model.decoder.bias[20:40] = -30.0
    model.on_epoch_start(1)
    x = torch.rand(16, N_GENES)
    x[:, :5] = 0.0
    torch.manual_seed(7)
    loss = model.loss({"x": x})["loss"]
    grads = torch.autograd.grad(loss, list(model.parameters()))
    noise = torch.randn(16, LATENT, generator=torch.Generator().manual_seed(7))
    reference = _two_branch_loss(model, x, noise)
    expected_grads = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
    for grad, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)
    assert grads[-1][:20].abs().max() == 0  # clamped logits pass no gradient


def test_weights_saved_with_two_branches_still_load(tmp_path):
    torch.manual_seed(0)
    model = Tybalt(n_genes=12, latent_dim=4).eval()
    model.encoder[1].running_mean.uniform_()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    old = {key: value for key, value in state.items() if not key.startswith("encoder.")}
    for branch, rows in (("mean_branch", slice(0, 4)), ("logvar_branch", slice(4, 8))):
        for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
            old[f"{branch}.{key}"] = state[f"encoder.{key}"][rows].clone()
        old[f"{branch}.1.num_batches_tracked"] = state["encoder.1.num_batches_tracked"].clone()
    save_file(old, str(tmp_path / "old.safetensors"))
    restored = Tybalt(n_genes=12, latent_dim=4)
    load_model(restored, str(tmp_path / "old.safetensors"), strict=True)
    x = torch.rand(5, 12)
    torch.testing.assert_close(restored.eval().encode({"x": x}), model.encode({"x": x}))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"logvar_activation": "softplus"}, "logvar_activation"),
        ({"kl_warmup": "intended"}, "kl_warmup"),
        ({"kappa": -1.0}, "kappa"),
        ({"latent_dim": 0}, "latent_dim"),
    ],
)
def test_bad_config_is_refused(config, message):
    with pytest.raises(GenevaeInputError, match=message):
        Tybalt(n_genes=10, **{"latent_dim": 2, **config})


def test_bad_batches_are_refused():
    model = Tybalt(n_genes=10, latent_dim=2)
    with pytest.raises(GenevaeInputError, match="n_genes=10"):
        model.loss({"x": torch.rand(4, 11)})
    with pytest.raises(GenevaeInputError, match=r"outside \[0, 1\].*min-max"):
        model.loss({"x": torch.rand(4, 10) * 3})
    with pytest.raises(GenevaeInputError, match="need key 'x'"):
        model.encode({"counts": torch.rand(4, 10)})


@requires_shared_data
def test_published_architecture_fits_real_tcga_brca(shared_data):
    """The 5,000-gene, 100-node model trains on real TCGA-BRCA in Tybalt's gene space."""
    from genevae.preprocessing.tcga import read_expression_matrix, read_gene_list

    bulk = shared_data / "bulk"
    expression = read_expression_matrix(
        bulk / "tcga_brca_rnaseqv2_tcgabiolinks_dataBRCA.tsv.gz", log2_transform=True
    )
    genes = read_gene_list(bulk / "tybalt_5000_mad_genes.txt")
    expression = expression.reindex(columns=genes).dropna(axis=1)
    low, high = expression.min(), expression.max()
    scaled = ((expression - low) / (high - low).where(high > low, 1.0)).to_numpy()
    x = torch.tensor(scaled, dtype=torch.float32)

    torch.manual_seed(0)
    model = Tybalt(n_genes=x.shape[1])  # published defaults: latent 100, ReLU log-variance
    assert x.shape[1] > 4900
    losses = _train(model, x, epochs=30, lr=5e-4, batch_size=10)
    assert losses[-1] < 0.99 * losses[0]
    assert model.generate(3).shape == (3, x.shape[1])
