from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genevae.errors import GenevaeInputError
from genevae.training import InMemoryBatches, TensorData, TrainingSettings, encode, train_model
from genevae.training.module import NonFiniteLossError
from tests.training.toy import ToyAutoencoder, low_rank_data


def _data(n: int = 256) -> TensorData:
    return TensorData({"x": low_rank_data(n).numpy()})


def _settings(**overrides) -> TrainingSettings:
    base = dict(max_epochs=15, batch_size=32, learning_rate=0.05, progress_bar=False, seed=3)
    return TrainingSettings(**{**base, **overrides})


def test_training_reduces_loss_and_records_every_term_per_epoch():
    data = _data()
    result = train_model(
        ToyAutoencoder(), data.subset(np.arange(200)), data.subset(np.arange(200, 256)), _settings()
    )
    history = result.history
    train_loss = history.query("split == 'train' and term == 'loss'").sort_values("epoch")["value"]
    assert len(train_loss) == 15
    assert train_loss.iloc[-1] < 0.1 * train_loss.iloc[0]
    assert set(history["term"]) == {"loss", "reconstruction"}
    assert set(history["split"]) == {"train", "val"}
    assert result.device == "cpu" and result.epochs_run == 15


def test_after_optimizer_step_hook_runs_once_per_batch():
    model = ToyAutoencoder()
    train_model(model, _data(64), None, _settings(max_epochs=2, batch_size=16))
    assert model.projections == 2 * 4


def test_same_seed_gives_bit_identical_latents():
    data = _data()
    latents = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ToyAutoencoder()
        train_model(model, data, None, _settings(max_epochs=3))
        latents.append(encode(model, data))
    np.testing.assert_array_equal(latents[0], latents[1])


def test_non_finite_loss_names_epoch_and_term(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"Epoch 2: train loss term 'loss'"):
        train_model(
            ToyAutoencoder(poison_epoch=2),
            _data(64),
            None,
            _settings(max_epochs=5, checkpoint_dir=str(tmp_path)),
        )
    assert (tmp_path / "last.ckpt").exists()


def test_resume_continues_from_last_checkpoint(tmp_path):
    data = _data(64)
    train_model(ToyAutoencoder(), data, None, _settings(max_epochs=2, checkpoint_dir=str(tmp_path)))
    result = train_model(
        ToyAutoencoder(),
        data,
        None,
        _settings(max_epochs=4, checkpoint_dir=str(tmp_path), resume=True),
    )
    assert sorted(result.history["epoch"].unique()) == [2, 3]


def test_unknown_training_parameter_is_named():
    with pytest.raises(GenevaeInputError, match="learning_rte"):
        TrainingSettings.from_params({"learning_rte": 0.1})


def test_batches_cover_every_row_once_and_densify_sparse_rows():
    dense = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = TensorData({"x": sp.csr_matrix(dense), "y": dense[:, :1]})
    batches = list(InMemoryBatches(data, 4, seed=1))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]
    rows = torch.cat([b["x"] for b in batches]).numpy()
    np.testing.assert_array_equal(np.sort(rows[:, 0]), dense[:, 0])
    for batch in batches:
        np.testing.assert_array_equal(batch["x"][:, :1].numpy(), batch["y"].numpy())


def test_tensor_data_rejects_nan_and_ragged_arrays():
    with pytest.raises(GenevaeInputError, match="'x' contains NaN"):
        TensorData({"x": np.array([[np.nan]])})
    with pytest.raises(GenevaeInputError, match="different numbers of rows"):
        TensorData({"x": np.zeros((3, 1)), "y": np.zeros((2, 1))})


def test_a_trailing_single_row_joins_the_previous_batch():
    data = TensorData({"x": np.zeros((9, 1), dtype=np.float32)})
    assert [len(b["x"]) for b in InMemoryBatches(data, 4)] == [4, 5]
    assert [len(b["x"]) for b in InMemoryBatches(data, 4, drop_last=True)] == [4, 4]
    assert [len(b["x"]) for b in InMemoryBatches(data.subset(np.arange(1)), 4)] == [1]


def test_ddp_spawn_on_two_cpu_processes_keeps_history_weights_and_mlflow_metrics(tmp_path):
    """The workers train; the caller gets rank 0's history, the trained weights and metrics."""
    import mlflow

    data = _data()
    model = ToyAutoencoder()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    settings = _settings(max_epochs=4, accelerator="cpu", devices=2, strategy="ddp_spawn")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        result = train_model(
            model, data.subset(np.arange(200)), data.subset(np.arange(200, 256)), settings
        )
    history = result.history
    assert result.epochs_run == 4
    assert sorted(history["epoch"].unique()) == [0, 1, 2, 3]
    assert set(history["split"]) == {"train", "val"}
    train_loss = history.query("split == 'train' and term == 'loss'").sort_values("epoch")["value"]
    assert train_loss.iloc[-1] < train_loss.iloc[0]
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    logged = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in logged] == [0, 1, 2, 3]
