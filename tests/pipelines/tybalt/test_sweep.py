"""`python -m genevae.sweep tybalt` on the processed TCGA subset: two workers, one study."""

from __future__ import annotations

import mlflow
import optuna

from genevae.sweep import PARENT_RUN_ATTR, main, open_storage


def test_two_workers_share_one_study_and_one_parent_run(processed_project, tmp_path):
    storage = f"journal:{tmp_path / 'tybalt_sweep.log'}"
    args = ["tybalt", "--n-trials", "4", "--n-workers", "2", "--storage", storage]
    args += ["--study-name", "tiny", "--env", "test", "--project-path", str(processed_project)]

    assert main(args) == 0

    study = optuna.load_study(study_name="tiny", storage=open_storage(storage))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert {t.params["training.max_epochs"] for t in study.trials} <= {1, 2}  # conf/test grid
    parent = study.user_attrs[PARENT_RUN_ATTR]

    mlflow.set_tracking_uri(f"sqlite:///{processed_project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    children = mlflow.search_runs(
        experiment_names=["genevae-test"],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
        output_format="list",
    )
    assert sorted(run.info.run_id for run in children) == sorted(
        t.user_attrs["mlflow_run_id"] for t in study.trials
    )
    for trial, run in zip(
        study.trials, sorted(children, key=lambda r: int(r.data.tags["optuna.trial"])), strict=True
    ):
        assert run.info.status == "FINISHED"
        assert run.data.metrics["objective_val_loss"] == trial.value
        epochs = len(client.get_metric_history(run.info.run_id, "train_loss"))
        assert epochs == trial.params["training.max_epochs"]
    summary = client.get_run(parent)
    assert summary.info.status == "FINISHED"
    assert summary.data.metrics["n_complete"] == 4
    assert summary.data.metrics["best_value"] == study.best_value
