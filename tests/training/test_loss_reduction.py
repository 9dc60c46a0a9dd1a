"""``loss_reduction: sum`` (VEGA's configured path): objective, gradient, logs and Adam updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from genevae.models.vega import VEGA
from genevae.training import TensorData, TrainingSettings, train_model
from genevae.training.module import GenerativeTrainingModule
from tests.conftest import PROJECT_ROOT

N_CELLS, N_GENES, N_MODULES = 64, 20, 4


def _vega(seed: int = 0) -> VEGA:
    torch.manual_seed(seed)
    mask = (np.random.default_rng(seed).random((N_GENES, N_MODULES)) < 0.4).astype(np.float32)
    return VEGA(n_genes=N_GENES, n_modules=N_MODULES, hidden=16, mask=mask)


def _cells(n: int = N_CELLS) -> np.ndarray:
    return np.random.default_rng(1).random((n, N_GENES), dtype=np.float32) * 3


def _objective_and_gradient(reduction: str, batch: dict[str, torch.Tensor]):
    model = _vega()
    module = GenerativeTrainingModule(model, learning_rate=1e-3, loss_reduction=reduction)
    torch.manual_seed(7)  # the same dropout masks and posterior noise for both reductions
    objective = module._common_step(batch, "train")
    objective.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    logged_total, cells = module._epoch_totals["train"][1:]
    return objective, gradients, float(logged_total[0] / cells)


def test_sum_objective_and_gradient_are_batch_size_times_the_mean_but_logs_stay_per_cell():
    batch = {"x": torch.as_tensor(_cells(48))}
    mean, mean_gradients, mean_logged = _objective_and_gradient("mean", batch)
    total, sum_gradients, sum_logged = _objective_and_gradient("sum", batch)
    torch.testing.assert_close(total, 48 * mean)
    expected = torch.cat([48 * g.ravel() for g in mean_gradients.values()])
    got = torch.cat([g.ravel() for g in sum_gradients.values()])
    assert torch.linalg.norm(got - expected) <= 1e-5 * torch.linalg.norm(expected)  # rounding
    assert sum_logged == pytest.approx(mean_logged, rel=1e-6)
    assert mean_logged == pytest.approx(float(mean), rel=1e-6)  # the per-cell loss


def _vega_training() -> dict:
    """VEGA's configured training section, shortened to two epochs in memory."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_vega.yml").read_text())
    training = params["vega"]["training"]
    drop = {"checkpoint_dir", "resume", "max_epochs", "early_stopping_patience"}
    return {k: v for k, v in training.items() if k not in drop} | {
        "max_epochs": 2,
        "progress_bar": False,
        "batch_size": 16,
        "accelerator": "cpu",
        "devices": 1,
    }


def _train(training: dict) -> dict[str, torch.Tensor]:
    model = _vega()
    data = TensorData({"x": _cells()})  # 64 cells: four full batches of 16
    train_model(model, data, None, TrainingSettings(**training), log_to_mlflow=False)
    return model.state_dict()


def test_vega_config_sums_and_that_equals_mean_with_weight_decay_and_eps_over_batch_size():
    """Adam is scale-free, so ``sum`` only weakens coupled weight decay (and ε) B times."""
    configured = _vega_training()
    assert configured["loss_reduction"] == "sum" and configured["weight_decay"] > 0
    batch_size = configured["batch_size"]
    summed = _train(configured)
    as_mean = configured | {
        "loss_reduction": "mean",
        "weight_decay": configured["weight_decay"] / batch_size,
        "adam_eps": 1e-8 / batch_size,
    }
    equivalent = _train(as_mean)
    plain_mean = _train(configured | {"loss_reduction": "mean"})
    for name, value in summed.items():
        torch.testing.assert_close(equivalent[name], value, rtol=1e-4, atol=1e-6)
    differs = [
        not torch.allclose(plain_mean[k], v, rtol=1e-4, atol=1e-6) for k, v in summed.items()
    ]
    assert any(differs)  # same weight decay with mean: a different trajectory
