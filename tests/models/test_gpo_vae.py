"""GPO-VAE: loss terms, ablation switches, straight-through masks, GRN alignment, evaluation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import NegativeBinomial, Normal

from genevae.errors import GenevaeInputError
from genevae.models.gpo_vae import (
    _MEAN_EPS,
    GPOVAE,
    GlobalLatents,
    _negative_binomial_log_likelihood,
    grn_alignment_loss,
    k_hop_accumulation,
    log_standardization,
    plated_weights,
    relaxed_bernoulli_straight_through,
)

N_CELLS, N_GENES, N_NODES, N_LATENT = 60, 30, 4, 6
TERMS = {"reconstruction", "kl_local", "kl_global", "counterfactual", "grn_alignment", "sparsity"}
SMALL = {
    "n_latent": N_LATENT,
    "decoder_hidden": 32,
    "basal_encoder_hidden": 32,
    "embedding_encoder_hidden": 32,
    "embedding_encoder_layers": 2,
}


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors run far faster on one thread (and do not fight other tests for cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _one_hot(labels: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Dosage rows: label −1 is a control (all zeros)."""
    dosage = torch.zeros(len(labels), n_nodes)
    perturbed = labels >= 0
    dosage[perturbed, labels[perturbed]] = 1.0
    return dosage


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Cells in 5 groups (control + 4 perturbations); perturbation t doubles genes 5t..5t+4."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(-1, N_NODES).repeat_interleave(N_CELLS // (N_NODES + 1))
    dosage = _one_hot(labels, N_NODES)
    rate = torch.full((N_CELLS, N_GENES), 4.0)
    for t in range(N_NODES):
        rate[labels == t, 5 * t : 5 * t + 5] *= 3.0
    counts = torch.poisson(rate, generator=generator)
    qc = (torch.rand(N_CELLS, 1, generator=generator) < 0.3).float()
    has_cf = (torch.rand(N_CELLS, 1, generator=generator) < 0.5).float()
    cf_x = torch.poisson(rate * 0.5, generator=generator) * has_cf
    delta_x = dosage * 0.8 + 0.1 * torch.rand(N_CELLS, N_NODES, generator=generator)
    return {
        "counts": counts,
        "library": counts.sum(1, keepdim=True),
        "dosage": dosage,
        "delta_x": delta_x,
        "qc": qc,
        "cf_x": cf_x,
        "has_cf": has_cf,
        **plated_weights(dosage, qc),
    }


def make_model(seed: int = 0, **overrides) -> GPOVAE:
    torch.manual_seed(seed)
    model = GPOVAE(n_genes=N_GENES, n_nodes=N_NODES, **(SMALL | overrides))
    model.set_standardization(*log_standardization(make_batch()["counts"]))
    return model


def test_loss_terms_are_finite_and_sum_to_loss():
    terms = make_model().loss(make_batch())
    assert set(terms) == TERMS | {"loss"}
    for name, value in terms.items():
        assert value.ndim == 0 and torch.isfinite(value), name
    assert torch.isclose(terms["loss"], sum(terms[name] for name in TERMS))
    assert terms["counterfactual"] > 0 and terms["grn_alignment"] > 0
    # σ(0) = 0.5 everywhere at initialisation: Σσ / T² = 0.5
    assert terms["sparsity"].item() == pytest.approx(0.5)


def test_loss_falls_during_training():
    model, batch = make_model(), make_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(100):
        loss = model.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-10:]) < np.mean(history[:10]) - 2.0


def test_artifact_ablation_drops_artifact_terms_and_keys():
    model = make_model(artifact_latent=False)
    assert model.artifact_encoder is None
    batch = {
        k: v for k, v in make_batch().items() if k not in {"qc", "qc_weight", "cf_x", "has_cf"}
    }
    terms = model.loss(batch)
    assert terms["counterfactual"].item() == 0.0
    assert torch.isfinite(terms["loss"])
    decoder_input = model.decoder.first.in_features
    assert decoder_input == N_LATENT + N_NODES  # no artifact offset
    assert model.encode(batch).shape == (N_CELLS, N_LATENT)


def _loss_and_logit_gradient(model: GPOVAE, batch: dict[str, torch.Tensor]):
    torch.manual_seed(11)  # the same particles for both models
    terms = model.loss(batch)
    terms["loss"].backward()
    return terms, model.mask_logits.grad.clone()


def test_grn_ablation_needs_no_delta_x_and_removes_only_the_grn_term():
    """Same weights and draws: the ablated loss and logit gradient are the full ones minus GRN."""
    full_model, ablated_model = make_model(), make_model(grn_alignment=False)
    ablated_model.load_state_dict(full_model.state_dict())
    batch = make_batch()
    full, full_gradient = _loss_and_logit_gradient(full_model, batch)
    no_delta_x = {k: v for k, v in batch.items() if k != "delta_x"}
    ablated, ablated_gradient = _loss_and_logit_gradient(ablated_model, no_delta_x)
    torch.testing.assert_close(ablated["loss"], full["loss"] - full["grn_alignment"])
    logits = full_model.mask_logits.detach().clone().requires_grad_(True)
    grn = full_model.config["gloss_coeff"] * grn_alignment_loss(
        logits, batch["dosage"], batch["delta_x"], hop=5, fc_criteria=0.4
    )
    grn.backward()
    assert logits.grad.abs().sum() > 0
    torch.testing.assert_close(ablated_gradient, full_gradient - logits.grad)
    with pytest.raises(GenevaeInputError, match="delta_x"):
        full_model.loss(no_delta_x)


def test_reconstruction_is_class_balanced_with_alpha():
    batch = make_batch()
    model = make_model()
    weights = model._reconstruction_weights(batch["qc"])
    alpha = batch["qc"].mean()
    failing = batch["qc"].squeeze(1) > 0
    torch.testing.assert_close(weights[failing], (1 - alpha).expand(int(failing.sum())))
    torch.testing.assert_close(weights[~failing], alpha.expand(int((~failing).sum())))
    # good and bad cells carry the same total weight
    torch.testing.assert_close(weights[failing].sum(), weights[~failing].sum())
    for one_class in (torch.zeros(5, 1), torch.ones(5, 1)):  # weight 1 for every cell
        assert torch.equal(model._reconstruction_weights(one_class), torch.ones(5))


def test_straight_through_mask_is_binary_and_passes_gradient_to_logits():
    logits = torch.zeros(N_NODES, N_NODES, requires_grad=True)
    mask = relaxed_bernoulli_straight_through(logits, n_particles=50)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    (mask * torch.arange(1, N_NODES**2 + 1).reshape(N_NODES, N_NODES)).sum().backward()
    assert logits.grad is not None and torch.all(logits.grad != 0)
    # large logits give (almost) always-on edges
    on = relaxed_bernoulli_straight_through(torch.full((3, 3), 8.0), n_particles=200)
    assert on.mean().item() > 0.99


def test_model_mask_gradient_reaches_logits_through_the_elbo():
    model = make_model(grn_alignment=False, penalty_coeff=0.0)
    terms = model.loss(make_batch())
    (terms["reconstruction"] + terms["kl_global"]).backward()
    assert model.mask_logits.grad is not None
    assert model.mask_logits.grad.abs().sum() > 0


def test_grn_alignment_recovers_planted_sign_pattern():
    """Train only the GRN-aligned loss: logits turn positive exactly where ΔX > c."""
    edges = torch.tensor(
        [[0, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float32
    )
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(-1, 4).repeat_interleave(20)
    dosage = _one_hot(labels, 4)
    delta_x = dosage @ edges + 0.2 * torch.rand(len(labels), 4, generator=generator)
    logits = torch.zeros(4, 4, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(300):
        loss = grn_alignment_loss(logits, dosage, delta_x, hop=5, fc_criteria=0.4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close((logits.detach() > 0).float(), edges)


def test_k_hop_accumulation_matches_the_series():
    a = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    expected = a + a @ a / 2 + a @ a @ a / 4
    torch.testing.assert_close(k_hop_accumulation(a, 2), expected)
    torch.testing.assert_close(k_hop_accumulation(a, 0), a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nb_log_likelihood_matches_torch_in_value_and_gradient(dtype, seed):
    """Shared lgamma terms and the hand-written softmax-NB backward change nothing but speed."""
    generator = torch.Generator().manual_seed(seed)
    n_particles, n_cells, n_genes = 5, 8, 40

    def uniform(*shape: int, low: float, high: float) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.float64).uniform_(low, high, generator=generator)

    # counts from 0 (first genes all zero) to ~1e5; libraries 10 to 2e5, so means from far
    # below the 1e-4 offset to ~1e5; θ from 0.02 to 55
    counts = torch.poisson(uniform(n_cells, n_genes, low=-3, high=11).exp(), generator=generator)
    counts[:, :5] = 0.0
    library = uniform(n_cells, 1, low=2.3, high=12.2).exp()
    logits = uniform(n_particles, n_cells, n_genes, low=-12, high=6)
    log_concentration = uniform(n_genes, low=-4, high=4)
    weights = torch.randn(n_particles, n_cells, generator=generator, dtype=torch.float64)

    def reference(logits: torch.Tensor, log_concentration: torch.Tensor) -> torch.Tensor:
        mean = library * torch.softmax(logits, dim=-1)
        nb_logits = torch.log(mean + _MEAN_EPS) - log_concentration
        nb = NegativeBinomial(log_concentration.exp(), logits=nb_logits, validate_args=False)
        return nb.log_prob(counts).sum(-1)

    def value_and_gradients(function, dtype):
        inputs = (logits.to(dtype).requires_grad_(), log_concentration.to(dtype).requires_grad_())
        value = function(*inputs)
        grads = torch.autograd.grad((weights.to(dtype) * value).sum(), inputs)
        return [result.double() for result in (value, *grads)]

    expected = value_and_gradients(reference, torch.float64)
    actual = value_and_gradients(
        lambda h, log_theta: _negative_binomial_log_likelihood(
            counts.to(dtype), library.to(dtype), h, log_theta
        ),
        dtype,
    )
    assert actual[0].shape == (n_particles, n_cells)
    for got, want in zip(actual, expected, strict=True):
        if dtype == torch.float64:
            torch.testing.assert_close(got, want)
        else:  # float32 rounding, as torch's own float32 evaluation has (1e-7 of the largest)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_nb_log_likelihood_uses_the_sampling_distribution_of_the_model():
    model = make_model()
    with torch.no_grad():
        model.log_concentration.uniform_(-2.0, 2.0)
    batch = make_batch()
    logits = torch.randn(3, N_CELLS, N_GENES) * 3.0
    mean = batch["library"] * torch.softmax(logits, dim=-1)
    expected = model._count_distribution(mean).log_prob(batch["counts"]).sum(-1)
    actual = _negative_binomial_log_likelihood(
        batch["counts"], batch["library"], logits, model.log_concentration
    )
    torch.testing.assert_close(actual, expected)


def test_counterfactual_is_zero_when_counterfactual_equals_observation():
    batch = make_batch()
    batch["cf_x"] = batch["counts"].clone()
    batch["has_cf"] = torch.ones(N_CELLS, 1)
    model = make_model()
    for form in ("exact", "original_code"):
        model.config["counterfactual_kl"] = form
        assert model.loss(batch)["counterfactual"].abs().item() < 1e-5


def test_counterfactual_sum_is_batch_size_times_mean():
    batch = make_batch()
    summed_model = make_model(seed=3)
    mean_model = make_model(seed=3, counterfactual_reduction="mean")
    torch.manual_seed(1)
    total = summed_model.loss(batch)["counterfactual"]
    torch.manual_seed(1)
    mean = mean_model.loss(batch)["counterfactual"]
    torch.testing.assert_close(total, mean * N_CELLS)


def test_plated_weights_count_training_cells():
    dosage = _one_hot(torch.tensor([-1, -1, 0, 0, 0, 1]), 3)
    weights = plated_weights(dosage, torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0]))
    expected = torch.tensor([1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1.0]).unsqueeze(1)
    torch.testing.assert_close(weights["perturbation_weight"], expected)
    torch.testing.assert_close(
        weights["qc_weight"], torch.tensor([0.0, 1 / 3, 1 / 3, 0.0, 0.0, 1 / 3]).unsqueeze(1)
    )


def test_prior_predictions_sum_to_library_and_are_reproducible():
    model = make_model().eval()
    dosage = torch.cat([torch.zeros(1, N_NODES), torch.eye(N_NODES)])
    means = model.predict_mean_expression(dosage, n_particles=7, library_size=1e4)
    assert means.shape == (N_NODES + 1, N_GENES)
    torch.testing.assert_close(means.sum(1), torch.full((N_NODES + 1,), 1e4))
    first = model.sample_counts(dosage, 3, generator=torch.Generator().manual_seed(5))
    second = model.sample_counts(dosage, 3, generator=torch.Generator().manual_seed(5))
    assert first.shape == (3, N_NODES + 1, N_GENES)
    torch.testing.assert_close(first, second)
    assert torch.all(first == first.round()) and torch.all(first >= 0)


def test_encode_is_deterministic_and_iwelbo_tightens_with_particles():
    model, batch = make_model().eval(), make_batch()
    torch.testing.assert_close(model.encode(batch), model.encode(batch))
    assert model.encode(batch).shape == (N_CELLS, N_LATENT)
    latents = model.sample_global_latents(200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        many = model.iwelbo(
            batch, global_latents=latents, generator=torch.Generator().manual_seed(1)
        )
        single = torch.stack(
            [
                model.iwelbo(batch, n_particles=1, generator=torch.Generator().manual_seed(s))
                for s in range(20)
            ]
        ).mean(0)
    assert many.shape == (N_CELLS,) and torch.isfinite(many).all()
    assert many.mean() > single.mean()


def test_grn_probabilities_and_config_round_trip():
    model = make_model(mask_init=2.0, fc_criteria=0.7)
    with torch.no_grad():
        model.mask_logits[0, 1] = float("nan")  # the guide reads NaN logits as 0
    probabilities = model.grn_probabilities()
    expected = torch.full((N_NODES, N_NODES), 1 / (1 + math.exp(-2.0)))
    expected[0, 1] = 0.5
    torch.testing.assert_close(probabilities, expected)
    rebuilt = type(model)(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    batch = make_batch()
    torch.testing.assert_close(rebuilt.encode(batch), model.encode(batch))
    losses = []
    for candidate in (model, rebuilt):
        torch.manual_seed(4)
        losses.append(candidate.loss(batch))
    for term, value in losses[0].items():  # fc_criteria 0.7 reaches the GRN term of both
        torch.testing.assert_close(losses[1][term], value, equal_nan=True)


def test_missing_or_misshapen_batch_keys_are_named():
    model, batch = make_model(), make_batch()
    del batch["qc_weight"]
    with pytest.raises(GenevaeInputError, match="qc_weight"):
        model.loss(batch)
    batch = make_batch()
    batch["dosage"] = batch["dosage"][:, :2]
    with pytest.raises(GenevaeInputError, match="'dosage' has shape"):
        model.loss(batch)


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"mask_prior": 1.5}, "mask_prior"),
        ({"counterfactual_kl": "approx"}, "counterfactual_kl"),
        ({"n_latent": 0}, "n_latent"),
        ({"alpha": 2.0}, "alpha"),
    ],
)
def test_bad_config_is_rejected(overrides, parameter):
    with pytest.raises(GenevaeInputError, match=parameter):
        GPOVAE(n_genes=N_GENES, n_nodes=N_NODES, **overrides)


def test_set_standardization_checks_length_and_guards_zero_sd():
    model = make_model()
    with pytest.raises(GenevaeInputError, match="n_genes"):
        model.set_standardization(torch.zeros(3), torch.ones(3))
    model.set_standardization(torch.zeros(N_GENES), torch.zeros(N_GENES))
    assert torch.all(model.gene_log_sd == 1.0)


def _screen_batches():
    """Synthetic CRISPRi screen → GPO-VAE inputs (nodes: regulators, then their targets)."""
    from genevae.preprocessing.synthetic import make_perturbseq_from_grn

    screen = make_perturbseq_from_grn(seed=0)
    counts = np.asarray(screen.adata.layers["counts"], dtype=np.float32)
    labels = screen.adata.obs["perturbation"].astype(str).to_numpy()
    genes = list(screen.adata.var_names)
    regulators = [gene for gene in genes if gene.startswith("REG")]
    nodes = regulators + sorted(set(screen.edges["target"]))
    dosage = np.zeros((len(labels), len(nodes)), np.float32)
    for cell, label in enumerate(labels):
        if label != screen.control_label:
            dosage[cell, nodes.index(label)] = 1.0
    log_norm = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)[
        :, [genes.index(n) for n in nodes]
    ]
    control_mean = log_norm[labels == screen.control_label].mean(0)
    delta_x = np.abs(log_norm - control_mean) * dosage.any(1, keepdims=True)
    split = np.where(np.random.default_rng(0).random(len(labels)) < 0.8, "train", "test")
    train = split == "train"
    batch = {
        "counts": torch.tensor(counts[train]),
        "dosage": torch.tensor(dosage[train]),
        "delta_x": torch.tensor(delta_x[train], dtype=torch.float32),
        "qc": torch.zeros(int(train.sum()), 1),
        "has_cf": torch.zeros(int(train.sum()), 1),
    }
    batch |= {
        "library": batch["counts"].sum(1, keepdim=True),
        "cf_x": torch.zeros_like(batch["counts"]),
    }
    batch |= plated_weights(batch["dosage"], batch["qc"])
    truth = np.zeros((len(nodes), len(nodes)))
    for regulator, target in zip(screen.edges["regulator"], screen.edges["target"], strict=True):
        truth[nodes.index(regulator), nodes.index(target)] = 1.0
    return screen, counts, labels, split, batch, nodes, regulators, truth


@pytest.mark.slow
def test_synthetic_screen_recovers_grn_and_predicts_held_out_effects():
    from sklearn.metrics import roc_auc_score

    from genevae.analysis.perturbation import evaluate_perturbation_prediction

    screen, counts, labels, split, batch, nodes, regulators, truth = _screen_batches()
    torch.manual_seed(0)
    model = GPOVAE(
        n_genes=counts.shape[1],
        n_nodes=len(nodes),
        **(
            SMALL
            | {
                "n_latent": 10,
                "decoder_hidden": 64,
                "basal_encoder_hidden": 64,
                "embedding_encoder_hidden": 64,
            }
        ),
    )
    model.set_standardization(*log_standardization(batch["counts"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(800):
        rows = torch.randperm(len(batch["counts"]), generator=generator)[:256]
        loss = model.loss({key: value[rows] for key, value in batch.items()})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    probabilities = model.grn_probabilities().numpy()[: len(regulators)]
    off_diagonal = ~np.eye(len(nodes), dtype=bool)[: len(regulators)]
    auroc = roc_auc_score(truth[: len(regulators)][off_diagonal], probabilities[off_diagonal])
    assert auroc > 0.9

    dosage = pd.DataFrame(np.eye(len(nodes))[: len(regulators)], index=regulators, columns=nodes)
    report = evaluate_perturbation_prediction(
        model,
        counts,
        labels,
        screen.control_label,
        split,
        dosage,
        gene_names=list(screen.adata.var_names),
        n_particles=300,
    )
    assert report.loc["model", "pearson_delta_vs_control_top20de_pooled"] > 0.5
    assert (
        report.loc["model", "pearson_delta_vs_control_allgenes_pooled"]
        > 0.8 * report.loc["training_mean", "pearson_delta_vs_control_allgenes_pooled"]
    )


def _log_normal(x: float, mean: float = 0.0, sd: float = 1.0) -> float:
    return -0.5 * math.log(2 * math.pi) - math.log(sd) - (x - mean) ** 2 / (2 * sd**2)


def _log_bernoulli(value: float, probability: float) -> float:
    return math.log(probability if value else 1 - probability)


def test_plated_kl_matches_a_hand_computed_two_node_case():
    """Per cell: its perturbation's rows of E, M once per perturbation group, qc_E once per
    failing cell; over the training cells the weights add up to one full copy of each."""
    model = GPOVAE(n_genes=3, n_nodes=2, n_latent=1, mask_prior=0.3, **{
        k: 8 for k in ("decoder_hidden", "basal_encoder_hidden", "embedding_encoder_hidden")
    })  # fmt: skip
    logits = [[0.0, 1.0], [-1.0, 2.0]]
    with torch.no_grad():
        model.mask_logits.copy_(torch.tensor(logits))
    mask, embedding = [[1.0, 0.0], [1.0, 1.0]], [[0.5, -1.0], [2.0, 0.0]]
    loc, scale = [[0.0, 0.0], [1.0, 0.0]], [[1.0, 2.0], [1.0, 0.5]]
    latents = GlobalLatents(
        mask=torch.tensor([mask]),
        embedding=torch.tensor([embedding]),
        q_embedding=Normal(torch.tensor([loc]), torch.tensor([scale])),
        artifact=torch.tensor([[[0.3]]]),
        q_artifact=Normal(torch.tensor([[[0.1]]]), torch.tensor([[[0.5]]])),
    )
    sigmoid = lambda value: 1 / (1 + math.exp(-value))  # noqa: E731
    rows = [
        sum(
            _log_normal(embedding[t][j]) - _log_normal(embedding[t][j], loc[t][j], scale[t][j])
            + _log_bernoulli(mask[t][j], 0.3) - _log_bernoulli(mask[t][j], sigmoid(logits[t][j]))
            for j in range(2)
        )
        for t in range(2)
    ]  # fmt: skip
    artifact = _log_normal(0.3) - _log_normal(0.3, 0.1, 0.5)
    # cells: control failing QC; two of perturbation 0 (one failing); one of perturbation 1
    dosage = _one_hot(torch.tensor([-1, 0, 0, 1]), 2)
    qc = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    batch = {"dosage": dosage, "qc": qc, **plated_weights(dosage, qc)}
    expected = [artifact / 2, rows[0] / 2, rows[0] / 2 + artifact / 2, rows[1]]
    per_cell = model._plated_log_ratio(batch, latents)
    torch.testing.assert_close(per_cell, torch.tensor([expected]), rtol=1e-5, atol=1e-5)
    assert per_cell.sum().item() == pytest.approx(rows[0] + rows[1] + artifact, rel=1e-5)


def test_loss_reports_minus_the_batch_mean_of_the_plated_log_ratio():
    model, batch = make_model(), make_batch()
    latents = model.sample_global_latents(model.config["n_particles"])
    model.sample_global_latents = lambda n_particles, generator=None: latents
    expected = -model._plated_log_ratio(batch, latents).mean()
    torch.testing.assert_close(model.loss(batch)["kl_global"], expected)


def test_iwelbo_is_below_the_exact_log_likelihood_and_reaches_it_with_particles():
    """With a decoder that ignores its input, log p(x) = Σ log NB(x | library · softmax(b)) is
    exact; the bound is below it for few particles and converges to it as they grow."""
    model, batch = make_model(artifact_latent=False, seed=2).eval(), make_batch()
    with torch.no_grad():
        model.decoder_output.weight.zero_()
        model.decoder_output.bias.copy_(torch.linspace(-1, 1, N_GENES))
        model.log_concentration.copy_(torch.linspace(0, 2, N_GENES))
        mean = batch["library"] * torch.softmax(model.decoder_output.bias, 0) + _MEAN_EPS
        concentration = model.log_concentration.exp()
        exact = NegativeBinomial(concentration, probs=mean / (mean + concentration))
        log_px = exact.log_prob(batch["counts"]).sum(1)
    batch = {k: v for k, v in batch.items() if k in ("counts", "dosage", "library")}

    def mean_gap(n_particles: int, n_seeds: int) -> torch.Tensor:
        """log p(x) − IWELBO per cell, averaged over seeds (the bound holds in expectation)."""
        bounds = [
            model.iwelbo(batch, n_particles, generator=torch.Generator().manual_seed(seed))
            for seed in range(n_seeds)
        ]
        return log_px - torch.stack(bounds).mean(0)

    single, ten, many = mean_gap(1, 200), mean_gap(10, 30), mean_gap(3000, 1)
    assert (single > 0).all() and single.mean() > 0.2  # ELBO gap: q(z_basal | x) ≠ the prior
    assert 0 < ten.mean() < 0.5 * single.mean()
    assert many.mean().abs() < 0.01 and many.abs().max() < 0.2
