"""MaskedLinear keeps masked weights at exactly zero; FullyConnectedBlock shapes and covariates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from genevae.errors import GenevaeInputError
from genevae.models.layers import SPARSE_MAX_DENSITY, FullyConnectedBlock, MaskedLinear, mlp


def _random_mask(n_out: int = 30, n_in: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n_out, n_in, generator=generator) < 0.3).float()


def test_masked_weights_are_zero_at_init_and_within_uniform_bound():
    torch.manual_seed(0)
    mask = _random_mask()
    layer = MaskedLinear(mask)
    assert torch.all(layer.weight[mask == 0] == 0)
    bound = 1 / np.sqrt(mask.shape[1])
    assert layer.weight.abs().max() <= bound
    assert layer.weight[mask == 1].abs().min() > 0
    assert (layer.in_features, layer.out_features) == (8, 30)


def test_gradient_is_zero_at_masked_entries():
    mask = _random_mask()
    layer = MaskedLinear(mask)
    layer(torch.randn(16, 8)).pow(2).sum().backward()
    assert torch.all(layer.weight.grad[mask == 0] == 0)
    assert layer.weight.grad[mask == 1].abs().sum() > 0


@pytest.mark.parametrize("optimiser", [torch.optim.Adam, torch.optim.AdamW])
def test_masked_weights_stay_exactly_zero_under_adam_with_weight_decay(optimiser):
    torch.manual_seed(1)
    mask = _random_mask()
    layer = MaskedLinear(mask)
    optimizer = optimiser(layer.parameters(), lr=1e-2, weight_decay=5e-4)
    x, y = torch.randn(64, 8), torch.randn(64, 30)
    for _ in range(200):
        optimizer.zero_grad()
        (layer(x) - y).pow(2).mean().backward()
        optimizer.step()
    assert torch.all(layer.weight[mask == 0] == 0)


def test_clamp_non_negative_projects_every_weight():
    layer = MaskedLinear(torch.ones(5, 4))
    with torch.no_grad():
        layer.weight.fill_(-1.0)
    layer.clamp_non_negative()
    assert torch.all(layer.weight >= 0)


def test_forward_equals_dense_linear_with_masked_weight():
    mask = _random_mask()
    layer = MaskedLinear(mask)
    x = torch.randn(4, 8)
    expected = x @ (layer.weight * mask).T + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_mask_is_a_state_dict_buffer_and_accepts_numpy_and_sparse():
    mask = _random_mask().numpy()
    layer = MaskedLinear(sp.csr_matrix(mask))
    assert "mask" in layer.state_dict()
    restored = MaskedLinear(np.ones_like(mask))
    restored.load_state_dict(layer.state_dict())
    torch.testing.assert_close(restored.mask, torch.as_tensor(mask))


@pytest.mark.parametrize(
    ("mask", "message"),
    [(np.ones(5), "2-D"), (np.full((3, 2), 0.5), "only 0 and 1")],
)
def test_bad_masks_are_refused(mask, message):
    with pytest.raises(GenevaeInputError, match=message):
        MaskedLinear(mask)


def _dense_and_sparse(mask: torch.Tensor) -> tuple[MaskedLinear, MaskedLinear]:
    """Two layers with the same weights, one per implementation."""
    dense = MaskedLinear(mask, implementation="dense")
    sparse = MaskedLinear(mask, implementation="sparse")
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def test_sparse_product_equals_dense_in_output_and_every_gradient():
    torch.manual_seed(2)
    dense, sparse = _dense_and_sparse(_random_mask(300, 40, seed=3))
    x = torch.randn(3, 7, 40)  # leading dimensions are kept
    outputs, input_grads = [], []
    for layer in (dense, sparse):
        inputs = x.clone().requires_grad_(True)
        out = layer(inputs)
        (out * torch.linspace(-1, 2, out.numel()).reshape(out.shape)).sum().backward()
        outputs.append(out)
        input_grads.append(inputs.grad)
    assert outputs[1].shape == (3, 7, 300)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(input_grads[1], input_grads[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-5)
    assert torch.all(sparse.weight.grad[sparse.mask == 0] == 0)


def test_sparse_training_stays_masked_and_non_negative_like_dense():
    torch.manual_seed(4)
    mask = _random_mask(50, 10, seed=5)
    x, y = torch.randn(64, 10), torch.rand(64, 50)
    layers = _dense_and_sparse(mask)
    for layer in layers:
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=5e-4)
        for _ in range(50):
            optimizer.zero_grad()
            (layer(x) - y).pow(2).mean().backward()
            optimizer.step()
            layer.clamp_non_negative()
        assert torch.all(layer.weight[mask == 0] == 0)
        assert torch.all(layer.weight >= 0)
    torch.testing.assert_close(layers[1].weight, layers[0].weight, rtol=1e-4, atol=1e-5)


def test_auto_takes_the_sparse_product_on_cpu_for_sparse_masks_only():
    sparse_mask = torch.zeros(200, 100)
    sparse_mask[torch.arange(100), torch.arange(100)] = 1.0  # 0.5 % live
    assert MaskedLinear(sparse_mask).uses_sparse(torch.device("cpu"))
    assert not MaskedLinear(sparse_mask).uses_sparse(torch.device("cuda"))
    assert not MaskedLinear(torch.ones(20, 10)).uses_sparse(torch.device("cpu"))
    assert MaskedLinear(torch.ones(20, 10), implementation="sparse").uses_sparse(
        torch.device("cuda")
    )
    assert SPARSE_MAX_DENSITY < 0.25


def test_loading_a_state_dict_reindexes_the_live_weights():
    mask = _random_mask(30, 8, seed=6)
    trained = MaskedLinear(mask, implementation="sparse")
    placeholder = MaskedLinear(torch.ones(30, 8), implementation="sparse")
    placeholder.load_state_dict(trained.state_dict())
    assert set(placeholder.state_dict()) == {"mask", "weight", "bias"}
    x = torch.randn(5, 8)
    torch.testing.assert_close(placeholder(x), x @ trained.masked_weight().T + trained.bias)


def test_unknown_implementation_is_refused():
    with pytest.raises(GenevaeInputError, match="implementation"):
        MaskedLinear(torch.ones(2, 2), implementation="csr")


def test_fully_connected_block_layout_and_covariate_injection():
    block = FullyConnectedBlock([10, 16, 4], dropout=0.2, n_covariates=3)
    first = block.layers[0]
    assert isinstance(first[0], nn.Linear) and first[0].in_features == 13
    assert isinstance(first[1], nn.BatchNorm1d)
    assert first[1].momentum == 0.01 and first[1].eps == 1e-3
    assert isinstance(first[2], nn.ReLU) and isinstance(first[3], nn.Dropout)
    assert block.layers[1][0].in_features == 16 + 3
    out = block(torch.randn(6, 10), torch.eye(3)[[0, 1, 2, 0, 1, 2]])
    assert out.shape == (6, 4)
    with pytest.raises(GenevaeInputError, match="covariates"):
        block(torch.randn(6, 10))


def test_mlp_builds_scvi_style_sizes():
    block = mlp(20, 8, n_hidden=12, n_layers=2, dropout=0.0)
    sizes = [(layer[0].in_features, layer[0].out_features) for layer in block.layers]
    assert sizes == [(20, 12), (12, 8)]
    assert not any(isinstance(m, nn.Dropout) for m in block.modules())
    with pytest.raises(GenevaeInputError, match="n_layers"):
        mlp(2, 2, n_layers=0)
