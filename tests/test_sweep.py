"""genevae.sweep without Kedro: search space, storage, trial shares, objective, nested runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
import yaml

from genevae.errors import GenevaeInputError
from genevae.sweep import (
    SweepSettings,
    SweepTarget,
    final_validation_objective,
    make_sampler,
    objective_function,
    open_storage,
    parse_args,
    redacted,
    resolve_storage_url,
    search_space,
    split_trials,
    trial_parameters,
)
from tests.conftest import PROJECT_ROOT

PAPER_GRID = {
    "training.learning_rate": [0.0005, 0.001, 0.0015, 0.002, 0.0025],
    "training.batch_size": [50, 100, 128, 200],
    "training.max_epochs": [10, 25, 50, 100],
    "model.kappa": [0.01, 0.05, 0.1, 1.0],
}


def _base_sweep_params() -> dict:
    path = PROJECT_ROOT / "conf" / "base" / "parameters_tybalt.yml"
    return yaml.safe_load(path.read_text())["tybalt"]


def test_configured_grid_is_the_papers_grid():
    params = _base_sweep_params()["sweep"]
    assert search_space(params["grid"]) == PAPER_GRID
    assert params["storage"] == "sqlite:///data/06_models/tybalt_sweep.db"


def test_search_space_refuses_empty_or_scalar_entries():
    with pytest.raises(GenevaeInputError, match=r"sweep.grid.training.batch_size must be"):
        search_space({"training": {"batch_size": 50}})
    with pytest.raises(GenevaeInputError, match="sweep.grid is empty"):
        search_space({})


def test_trial_parameters_set_nested_values_and_isolate_trials():
    base = _base_sweep_params()
    params = trial_parameters(base, {"training.learning_rate": 0.002, "model.kappa": 0.1})
    assert params["training"]["learning_rate"] == 0.002
    assert params["model"]["kappa"] == 0.1
    assert params["training"]["checkpoint_dir"] is None  # trials share no checkpoint folder
    assert base["training"]["learning_rate"] == 5e-4
    with pytest.raises(GenevaeInputError, match="no section 'optimiser'"):
        trial_parameters(base, {"optimiser.lr": 1.0})


def test_storage_urls_resolve_against_the_project(tmp_path):
    assert resolve_storage_url("sqlite:///sweep.db", tmp_path) == f"sqlite:///{tmp_path}/sweep.db"
    journal = resolve_storage_url("journal:logs/sweep.log", tmp_path)
    assert journal == f"journal:{tmp_path}/logs/sweep.log"
    assert (tmp_path / "logs").is_dir()
    url = "postgresql://me:secret@db:5432/optuna"
    assert resolve_storage_url(url, tmp_path) == url
    assert redacted(url) == "postgresql://me:***@db:5432/optuna"
    with pytest.raises(GenevaeInputError, match="not shared between processes"):
        resolve_storage_url("sqlite:///:memory:", tmp_path)


def test_journal_storage_holds_a_study(tmp_path):
    storage = open_storage(f"journal:{tmp_path / 'study.log'}")
    assert isinstance(storage, optuna.storages.JournalStorage)
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: 1.0, n_trials=1)
    again = optuna.load_study(
        study_name="s", storage=open_storage(f"journal:{tmp_path / 'study.log'}")
    )
    assert len(again.trials) == 1


def test_trials_are_split_evenly_without_idle_workers():
    assert split_trials(4, 2) == [2, 2]
    assert split_trials(5, 2) == [3, 2]
    assert split_trials(2, 8) == [1, 1]
    with pytest.raises(GenevaeInputError, match="must be >= 1"):
        split_trials(0, 2)


def _settings(tmp_path: Path, **sweep) -> SweepSettings:
    params = {**_base_sweep_params()["sweep"], **sweep}
    return SweepSettings.from_params(params, project_path=tmp_path)


def test_settings_refuse_unknown_sampler_or_objective(tmp_path):
    with pytest.raises(GenevaeInputError, match="sweep.sampler='cmaes'"):
        _settings(tmp_path, sampler="cmaes")
    with pytest.raises(GenevaeInputError, match="sweep.objective='auc'"):
        _settings(tmp_path, objective="auc")


def test_grid_sampler_walks_the_whole_grid(tmp_path):
    grid = {"training": {"batch_size": [50, 100]}, "model": {"kappa": [0.1, 1.0]}}
    settings = _settings(tmp_path, sampler="grid", grid=grid)
    study = optuna.create_study(sampler=make_sampler(settings, worker_index=0))
    study.optimize(
        lambda t: (
            t.suggest_categorical("training.batch_size", [50, 100])
            * t.suggest_categorical("model.kappa", [0.1, 1.0])
        ),
        n_trials=10,
    )
    assert sorted(tuple(t.params.values()) for t in study.trials) == [
        (50, 0.1),
        (50, 1.0),
        (100, 0.1),
        (100, 1.0),
    ]
    assert isinstance(make_sampler(_settings(tmp_path), 1), optuna.samplers.TPESampler)


def _history(val_terms: dict[str, float], epochs: int = 2) -> pd.DataFrame:
    rows = [
        {"epoch": epoch, "split": split, "term": term, "value": value * (epochs - epoch)}
        for epoch in range(epochs)
        for split in ("train", "val")
        for term, value in val_terms.items()
    ]
    return pd.DataFrame(rows)


def test_objective_reads_the_last_validation_epoch():
    history = _history({"loss": 10.0, "reconstruction": 8.0, "kl": 4.0})
    assert final_validation_objective(history, "loss") == 10.0
    assert final_validation_objective(history, "reconstruction") == 8.0
    assert final_validation_objective(history, "elbo") == 12.0
    with pytest.raises(GenevaeInputError, match="no validation history"):
        final_validation_objective(history[history["split"] == "train"], "loss")


def test_command_line_is_checked():
    args = parse_args(["tybalt", "--n-trials", "4", "--n-workers", "2"])
    assert (args.model, args.n_trials, args.n_workers, args.storage) == ("tybalt", 4, 2, None)
    for bad in (
        ["vega", "--n-trials", "1"],
        ["tybalt", "--n-trials", "0"],
        ["tybalt", "--n-trials", "1", "--worker-index", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.fixture()
def tmp_tracking(tmp_path):
    """A throw-away MLflow store; the previous tracking URI is restored afterwards."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(previous)


def test_each_trial_is_a_nested_mlflow_run_with_its_objective(tmp_path, tmp_tracking):
    """The objective with a stub trainer: one child run per trial under the parent."""
    experiment = mlflow.create_experiment("sweep-unit")
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment, run_name="parent").info.run_id
    seen = []

    def train(data, params):
        seen.append(params)
        lr = params["training"]["learning_rate"]
        return _history({"loss": 1000 * lr, "reconstruction": 1.0, "kl": 1.0})

    target = SweepTarget(dataset="unused", train=train)
    settings = _settings(tmp_path, sampler="random")
    objective = objective_function(
        target, None, _base_sweep_params(), settings, parent_run_id=parent, tags={"t": "1"}
    )
    study = optuna.create_study(sampler=make_sampler(settings, 0))
    study.optimize(objective, n_trials=3)

    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_id for r in children) == sorted(
        t.user_attrs["mlflow_run_id"] for t in study.trials
    )
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        lr = trial.params["training.learning_rate"]
        assert trial.value == pytest.approx(1000 * lr)
        assert run.data.metrics["objective_val_loss"] == pytest.approx(trial.value)
        assert float(run.data.params["training.learning_rate"]) == lr
        assert run.data.tags["optuna.trial"] == str(trial.number)
    assert all(p["training"]["progress_bar"] is False for p in seen)
