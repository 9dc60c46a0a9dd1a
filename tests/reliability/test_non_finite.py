"""NaN/inf during real VEGA training: a clear error naming the epoch, good checkpoints kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from genevae.models.vega import VEGA
from genevae.training import TensorData, TrainingSettings, train_model
from genevae.training.module import NonFiniteLossError
from tests.reliability.tiny import tiny_mask, tiny_modules, tiny_vega

BATCHES_PER_EPOCH = 4  # 200 cells, batch size 50


class DivergesAtEndOfEpoch2(VEGA):
    """VEGA whose last optimiser step of epoch 2 leaves infinite weights (loss still finite)."""

    steps = 0

    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        self.steps += 1
        if self.steps == 3 * BATCHES_PER_EPOCH:
            with torch.no_grad():
                self.mean_head[0].weight.fill_(float("inf"))


def _settings(checkpoint_dir: Path, **overrides) -> TrainingSettings:
    base = dict(max_epochs=6, batch_size=50, checkpoint_dir=str(checkpoint_dir), progress_bar=False)
    return TrainingSettings(**{**base, **overrides})


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _finite(checkpoint: Path) -> bool:
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_huge_learning_rate_names_epoch_and_term_and_keeps_earlier_checkpoints(tmp_path):
    synthetic = tiny_modules()
    mask = tiny_mask(synthetic)
    data = TensorData({"x": synthetic.adata.X})
    train_model(tiny_vega(mask), data, None, _settings(tmp_path, max_epochs=2), log_to_mlflow=False)
    good = _digests(tmp_path)

    with pytest.raises(NonFiniteLossError, match=r"Epoch 0: train loss term 'loss' is nan"):
        train_model(
            tiny_vega(mask), data, None, _settings(tmp_path, learning_rate=1e6), log_to_mlflow=False
        )
    assert _digests(tmp_path) == good
    assert _finite(tmp_path / "last.ckpt")


def test_weights_that_turn_infinite_are_never_checkpointed(tmp_path):
    synthetic = tiny_modules()
    data = TensorData({"x": synthetic.adata.X})
    model = tiny_vega(tiny_mask(synthetic), model_class=DivergesAtEndOfEpoch2)

    with pytest.raises(NonFiniteLossError, match=r"Epoch 2: parameter\(s\) \['model\.mean_head"):
        train_model(model, data, None, _settings(tmp_path), log_to_mlflow=False)
    assert sorted(p.name for p in tmp_path.glob("epoch*.ckpt")) == [
        "epoch0000.ckpt",
        "epoch0001.ckpt",
    ]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1
    assert _finite(tmp_path / "last.ckpt")
