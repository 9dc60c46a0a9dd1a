from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genevae.errors import GenevaeInputError
from genevae.training import InMemoryBatches, TensorData, TrainingSettings, encode, train_model
from genevae.training.module import NonFiniteLossError
from tests.training.toy import DriftingModel, ToyAutoencoder, constant_rows, low_rank_data


def _data(n: int = 256, store=lambda x: x) -> TensorData:
    return TensorData({"x": store(low_rank_data(n).numpy())})


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path_factory):
    """Puts a matrix where a path reads it: as is, or as X of an .h5ad opened backed."""
    if request.param == "memory":
        yield lambda matrix: matrix
        return
    import anndata as ad

    opened = []

    def on_disk(matrix):
        path = tmp_path_factory.mktemp("backed") / "x.h5ad"
        ad.AnnData(X=matrix).write_h5ad(path)
        opened.append(ad.read_h5ad(path, backed="r"))
        return opened[-1].X

    yield on_disk
    for adata in opened:
        adata.file.close()


def _settings(**overrides) -> TrainingSettings:
    base = dict(max_epochs=15, batch_size=32, learning_rate=0.05, progress_bar=False, seed=3)
    return TrainingSettings(**{**base, **overrides})


def test_training_reduces_loss_and_records_every_term_per_epoch(store):
    data = _data(store=store)
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


def test_training_ends_with_one_summary_line(caplog):
    data = _data(64)
    with caplog.at_level("INFO", logger="genevae.training.trainer"):
        result = train_model(ToyAutoencoder(), data, data, _settings(max_epochs=2))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Trained")]
    last = result.history.query("epoch == 1 and term == 'loss'").set_index("split")["value"]
    assert line.startswith(f"Trained {ToyAutoencoder.model_type} for 2 epochs on ")
    assert f"train loss {last['train']:.4g}" in line and f"val loss {last['val']:.4g}" in line


def test_after_optimizer_step_hook_runs_once_per_batch():
    model = ToyAutoencoder()
    train_model(model, _data(64), None, _settings(max_epochs=2, batch_size=16))
    assert model.projections == 2 * 4


def test_same_seed_gives_bit_identical_latents(store):
    data = _data(store=store)
    latents = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ToyAutoencoder()
        train_model(model, data, None, _settings(max_epochs=3))
        latents.append(encode(model, data))
    np.testing.assert_array_equal(latents[0], latents[1])


@pytest.mark.parametrize("sparse", [False, True])
def test_training_from_disk_is_bit_identical_to_training_in_memory(store, sparse):
    matrix = low_rank_data(256).numpy()
    matrix = sp.csr_matrix(np.where(matrix > 0, matrix, 0)) if sparse else matrix
    results = []
    for matrix_store in (lambda x: x, store):
        data = TensorData({"x": matrix_store(matrix)})
        torch.manual_seed(0)
        model = ToyAutoencoder()
        train_model(
            model,
            data.subset(np.arange(200)),
            data.subset(np.arange(200, 256)),
            _settings(max_epochs=2),
        )
        results.append(encode(model, data, batch_size=100))
    np.testing.assert_array_equal(results[1], results[0])


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


def test_batches_cover_every_row_once_and_densify_sparse_rows(store):
    dense = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = TensorData({"x": store(sp.csr_matrix(dense)), "y": dense[:, :1]})
    batches = list(InMemoryBatches(data, 4, seed=1))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]
    rows = torch.cat([b["x"] for b in batches]).numpy()
    np.testing.assert_array_equal(np.sort(rows[:, 0]), dense[:, 0])
    for batch in batches:
        np.testing.assert_array_equal(batch["x"][:, :1].numpy(), batch["y"].numpy())


def test_tensor_data_rejects_nan_and_ragged_arrays(store):
    with pytest.raises(GenevaeInputError, match="'x' .*contains NaN"):
        TensorData({"x": store(np.array([[1.0], [np.nan]]))})
    with pytest.raises(GenevaeInputError, match="'x' .*contains NaN"):
        TensorData({"x": store(sp.csr_matrix(np.array([[1.0], [np.nan]])))})
    with pytest.raises(GenevaeInputError, match="different numbers of rows"):
        TensorData({"x": store(np.zeros((3, 1))), "y": np.zeros((2, 1))})


def test_a_trailing_single_row_joins_the_previous_batch(store):
    data = TensorData({"x": store(np.zeros((9, 1), dtype=np.float32))})
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
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:  # an explicit experiment: other tests may leave another store's experiment active
        experiment = mlflow.MlflowClient().create_experiment("ddp")
        with mlflow.start_run(experiment_id=experiment) as run:
            result = train_model(  # 201 training rows and 1 validation row: uneven shards
                model, data.subset(np.arange(201)), data.subset(np.arange(201, 202)), settings
            )
        logged = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    history = result.history
    assert result.epochs_run == 4
    assert sorted(history["epoch"].unique()) == [0, 1, 2, 3]
    assert set(history["split"]) == {"train", "val"}
    train_loss = history.query("split == 'train' and term == 'loss'").sort_values("epoch")["value"]
    assert train_loss.iloc[-1] < train_loss.iloc[0]
    assert np.isfinite(history["value"]).all()
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert [m.step for m in logged] == [0, 1, 2, 3]


@pytest.mark.parametrize(("n_rows", "world"), [(1, 2), (11, 2), (12, 2), (7, 3)])
def test_ddp_shards_have_equal_sizes_and_cover_every_row(monkeypatch, n_rows, world):
    from torch import distributed

    data = TensorData({"x": np.arange(n_rows, dtype=np.float32)[:, None]})
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "get_world_size", lambda: world)
    shards = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "get_rank", lambda rank=rank: rank)
        shards.append(torch.cat([b["x"][:, 0] for b in InMemoryBatches(data, 4, seed=1)]))
    assert len({len(shard) for shard in shards}) == 1
    assert set(torch.cat(shards).tolist()) == set(range(n_rows))


def _batches(data, batch_size, epoch, **kwargs):
    batches = InMemoryBatches(data, batch_size, **kwargs)
    batches.set_epoch(epoch)
    return list(batches)


@pytest.mark.parametrize("shuffle", [True, False])
def test_subset_batches_equal_batches_of_copied_rows(shuffle, store):
    """A view's batches are bit-identical to those of rows copied out (what subset did)."""
    rng = np.random.default_rng(0)
    counts = sp.random(101, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
    arrays = {"x": counts, "library": rng.random((101, 1)), "labels": rng.integers(0, 3, 101)}
    data = TensorData(arrays | {"x": store(counts), "library": store(arrays["library"])})
    for index in (np.sort(rng.permutation(101)[:81]), rng.permutation(101)[:41], np.arange(9)):
        copied = TensorData({key: value[index] for key, value in arrays.items()})
        for epoch in (0, 3):
            expected = _batches(copied, 8, epoch, shuffle=shuffle, seed=5)
            got = _batches(data.subset(index), 8, epoch, shuffle=shuffle, seed=5)
            assert [len(b["x"]) for b in got] == [len(b["x"]) for b in expected]
            for mine, theirs in zip(got, expected, strict=True):
                for key in arrays:
                    assert torch.equal(mine[key], theirs[key])
            if len(index) % 8 == 1:  # the trailing single row joins the previous batch
                assert len(got[-1]["x"]) == 9


def test_subset_copies_no_rows_and_splits_share_one_matrix():
    counts = sp.random(50, 20, density=0.3, format="csr", dtype=np.float32, random_state=2)
    data = TensorData({"x": counts})
    train, validation = data.subset(np.arange(40)), data.subset(np.arange(40, 50))
    assert len(train) == 40 and len(validation) == 10
    for view in (train, validation):
        source = InMemoryBatches(view, 8).sources["x"]
        assert np.shares_memory(source.data, counts.data)
        assert np.shares_memory(source.indices, counts.indices)
    nested = train.subset(np.array([3, 1]))
    np.testing.assert_array_equal(nested.rows, [3, 1])
    np.testing.assert_array_equal(nested.array("x").toarray(), counts[[3, 1]].toarray())
    boolean = data.subset(np.arange(50) % 2 == 0)
    np.testing.assert_array_equal(boolean.rows, np.arange(0, 50, 2))


def test_a_dtype_conversion_is_shared_by_the_splits():
    data = TensorData({"x": np.arange(20, dtype=np.float64).reshape(10, 2)})
    train, validation = data.subset(np.arange(8)), data.subset(np.arange(8, 10))
    assert train.arrays["x"] is validation.arrays["x"]
    assert train.arrays["x"].dtype == np.float32


def test_tensor_data_rejects_rows_out_of_range():
    with pytest.raises(GenevaeInputError, match="rows must index the 3 rows"):
        TensorData({"x": np.zeros((3, 1))}, rows=np.array([0, 3]))
    with pytest.raises(GenevaeInputError, match="integer row indices"):
        TensorData({"x": np.zeros((3, 1))}, rows=np.array([0.5]))


def test_progress_bar_counts_epochs_from_one_like_the_log():
    from types import SimpleNamespace

    from genevae.training.trainer import EpochProgressBar

    bar = EpochProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=20)
    assert bar._get_train_description(19).strip() == "Epoch 20/20"


def _drifting_run(**overrides):
    """Train DriftingModel (validation loss falls, then rises) with one batch per epoch."""
    model = DriftingModel()
    train, validation = (
        TensorData({"x": constant_rows(10.0)}),
        TensorData({"x": constant_rows(3.0)}),
    )
    settings = _settings(**{"max_epochs": 12, "batch_size": 16, "learning_rate": 0.5, **overrides})
    return model, train_model(model, train, validation, settings)


def _val_loss(history):
    return history.query("split == 'val' and term == 'loss'").set_index("epoch")["value"]


def test_training_returns_the_weights_of_the_best_validation_epoch():
    model, result = _drifting_run()
    val_loss = _val_loss(result.history)
    k = int(val_loss.idxmin())
    assert 0 < k < 11  # the scenario: falls until epoch k, then rises every epoch
    assert (val_loss.diff().loc[1:k] < 0).all() and (val_loss.diff().loc[k + 1 :] > 0).all()
    assert result.best_epoch == result.weights_epoch == k
    assert torch.equal(model.w, model.snapshots[k]["w"])
    assert not torch.equal(model.w, model.snapshots[k + 1]["w"])
    assert result.history.loc[result.history["best"], "epoch"].unique().tolist() == [k]


def test_restore_best_weights_false_keeps_the_last_epoch():
    model, result = _drifting_run(restore_best_weights=False)
    longer, _ = _drifting_run(restore_best_weights=False, max_epochs=13)
    assert result.weights_epoch == 11
    assert result.best_epoch == int(_val_loss(result.history).idxmin()) < 11
    assert torch.equal(model.w, longer.snapshots[11]["w"])


def test_early_stopping_returns_the_best_epoch_not_the_last():
    model, result = _drifting_run(early_stopping_patience=2)
    k = result.best_epoch
    assert result.epochs_run == k + 3  # stopped two epochs after the best
    assert torch.equal(model.w, model.snapshots[k]["w"])


def test_resumed_run_restores_a_best_epoch_from_before_the_interruption(tmp_path):
    uninterrupted, full = _drifting_run()
    assert full.best_epoch < 8
    _drifting_run(max_epochs=8, checkpoint_dir=str(tmp_path))
    model, resumed = _drifting_run(checkpoint_dir=str(tmp_path), resume=True)
    assert sorted(resumed.history["epoch"].unique()) == list(range(8, 12))
    assert resumed.best_epoch == full.best_epoch
    assert torch.equal(model.w, uninterrupted.w)


def test_no_epoch_of_a_kl_warm_up_is_chosen_as_best():
    class WarmingUp(DriftingModel):
        warmup_epochs = 20  # longer than the run: no epoch qualifies, the last weights stay

    model = WarmingUp()
    train, validation = (
        TensorData({"x": constant_rows(10.0)}),
        TensorData({"x": constant_rows(3.0)}),
    )
    result = train_model(model, train, validation, _settings(max_epochs=4, batch_size=16))
    assert result.best_epoch is None and result.weights_epoch == 3
    assert not result.history["best"].any()


@pytest.mark.slow
def test_ddp_spawn_returns_the_best_epoch_weights_to_the_caller():
    """Workers restore before Lightning ships rank 0's weights; the epoch comes back too."""
    single, expected = _drifting_run()
    model, result = _drifting_run(accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert result.best_epoch == expected.best_epoch
    assert torch.equal(model.w, single.w)


def test_a_monitor_that_is_not_logged_is_named_with_the_logged_ones():
    with pytest.raises(GenevaeInputError, match=r"early_stopping_monitor='val/los'.*'val/loss'"):
        _drifting_run(max_epochs=1, early_stopping_monitor="val/los")
