"""Hyper-parameter sweeps as Optuna studies, one MLflow run per trial under one parent run.

``python -m genevae.sweep tybalt --n-trials N --n-workers W [--dataset NAME] [--storage URL]
[--study-name NAME]``

The sweep trains on one registered dataset (``--dataset``, default ``tcga``) with its parameter
section (``tybalt.tcga``): the search space, sampler, objective and default storage are its
``sweep`` parameters (``tybalt.sweep`` in ``conf/base/parameters_<model>.yml``). The command creates (or joins) the study, starts W local
worker processes that split the N trials between them, and waits. Each worker loads the
processed data through the Kedro catalog and trains with the pipeline's own node, so a trial
is exactly a pipeline training run with a few parameters changed.

Storage is an Optuna RDB URL (``sqlite:///…``, ``postgresql://…``) or ``journal:<file>`` (an
Optuna journal file, for a shared file system), from ``--storage``, else the environment
variable ``GENEVAE_SWEEP_STORAGE`` (for URLs with a password), else the parameters. Anyone who
runs the same command with the same storage and study name joins the study, on this machine or
another one; the study remembers its MLflow parent run (user attribute
``mlflow_parent_run_id``) so every trial nests under it when the machines share an MLflow
tracking server. Run the command from the project root, as ``kedro run``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna
import pandas as pd

from genevae.errors import GenevaeInputError
from genevae.registry import flatten

logger = logging.getLogger(__name__)

PARENT_RUN_ATTR = "mlflow_parent_run_id"
# Storage URL when --storage is not given (keeps database passwords out of argv and `ps`).
STORAGE_ENV = "GENEVAE_SWEEP_STORAGE"
SAMPLERS = ("tpe", "random", "grid")
OBJECTIVES = ("loss", "elbo", "reconstruction")
_JOURNAL_PREFIX = "journal:"
_SQLITE_PREFIX = "sqlite:///"
# Trials share no checkpoint folder and print no progress bars (many run at once).
_TRIAL_TRAINING_OVERRIDES = {"checkpoint_dir": None, "progress_bar": False}


class WorkerFailure(RuntimeError):
    """A worker process exited with an error (its traceback is in its own output)."""


@dataclass(frozen=True)
class SweepTarget:
    """What a model's sweep trains on and how.

    ``dataset`` is the catalog entry to train on (``{dataset}`` is the registered dataset the
    sweep runs on, ``--dataset``), ``train`` maps (data, model parameters) to
    the training history, and ``sections`` are the parameter sections logged with each trial.
    """

    dataset: str
    train: Callable[[Any, dict[str, Any]], pd.DataFrame]
    sections: tuple[str, ...] = ("model", "training", "validation")


def _train_tybalt(adata: Any, params: dict[str, Any]) -> pd.DataFrame:
    from genevae.pipelines.tybalt.nodes import train_tybalt

    _, history, _ = train_tybalt(adata, params["model"], params["training"], params["validation"])
    return history


TARGETS = {"tybalt": SweepTarget(dataset="{dataset}.processed", train=_train_tybalt)}


@dataclass(frozen=True)
class SweepSettings:
    """The ``<model>.sweep`` parameters, with command-line overrides applied."""

    study_name: str
    storage: str
    sampler: str
    seed: int | None
    objective: str
    space: dict[str, list]

    @classmethod
    def from_params(
        cls,
        params: dict[str, Any],
        *,
        project_path: Path,
        storage: str | None = None,
        study_name: str | None = None,
    ) -> SweepSettings:
        """Validate the parameters; relative storage paths resolve against the project."""
        sampler, objective = params.get("sampler", "tpe"), params.get("objective", "loss")
        if sampler not in SAMPLERS:
            raise GenevaeInputError(f"sweep.sampler={sampler!r} is not one of {SAMPLERS}.")
        if objective not in OBJECTIVES:
            raise GenevaeInputError(f"sweep.objective={objective!r} is not one of {OBJECTIVES}.")
        return cls(
            study_name=study_name or params["study_name"],
            storage=resolve_storage_url(storage or params["storage"], project_path),
            sampler=sampler,
            seed=params.get("seed"),
            objective=objective,
            space=search_space(params["grid"]),
        )


def search_space(grid: dict[str, Any], prefix: str = "") -> dict[str, list]:
    """Nested ``{section: {key: [values]}}`` → ``{"section.key": [values]}`` (Optuna names)."""
    space: dict[str, list] = {}
    for key, value in grid.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            space.update(search_space(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple) and len(value) > 0:
            space[name] = list(value)
        else:
            raise GenevaeInputError(
                f"sweep.grid.{name} must be a non-empty list of values; got {value!r}."
            )
    if not space and not prefix:
        raise GenevaeInputError("sweep.grid is empty; list at least one parameter to search.")
    return space


def trial_parameters(base: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the model parameters with the trial's ``"section.key"`` values set."""
    params = copy.deepcopy(base)
    for name, value in choice.items():
        *sections, key = name.split(".")
        node = params
        for section in sections:
            if not isinstance(node.get(section), dict):
                raise GenevaeInputError(
                    f"sweep.grid names {name!r}, but the model parameters have no section "
                    f"{section!r}; use a path such as training.learning_rate."
                )
            node = node[section]
        node[key] = value
    params["training"] = {**params["training"], **_TRIAL_TRAINING_OVERRIDES}
    return params


def resolve_storage_url(url: str, project_path: Path) -> str:
    """Make relative sqlite and journal paths absolute, so every worker opens the same file."""
    for prefix in (_SQLITE_PREFIX, _JOURNAL_PREFIX):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :])
            if url.startswith(_SQLITE_PREFIX) and str(path) in ("", ":memory:"):
                raise GenevaeInputError(
                    f"storage {url!r} is not shared between processes; use a sqlite file."
                )
            if not path.is_absolute():
                path = project_path / path
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"{prefix}{path}"
    return url


def open_storage(url: str) -> str | optuna.storages.BaseStorage:
    """An Optuna storage: a journal file for ``journal:<file>``, else the URL itself."""
    if url.startswith(_JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len(_JOURNAL_PREFIX) :]))
    return url


def redacted(url: str) -> str:
    """The storage URL without its password, for logs and MLflow."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def make_sampler(settings: SweepSettings, worker_index: int) -> optuna.samplers.BaseSampler:
    """The configured sampler; local workers get different seeds so they explore differently."""
    seed = None if settings.seed is None else settings.seed + worker_index
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(settings.space, seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def split_trials(n_trials: int, n_workers: int) -> list[int]:
    """Trials per worker, as even as possible, without idle workers."""
    if n_trials < 1 or n_workers < 1:
        raise GenevaeInputError(
            f"--n-trials and --n-workers must be >= 1; got {n_trials} and {n_workers}."
        )
    n_workers = min(n_workers, n_trials)
    return [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]


def final_validation_objective(history: pd.DataFrame, objective: str) -> float:
    """The last epoch's validation ``loss``, ``reconstruction`` or ``elbo`` (reconstruction + KL).

    ``loss`` is what was optimised, so it carries that epoch's warm-up β and favours small κ
    and few epochs; ``elbo`` weighs the KL fully and compares all settings on one scale.
    """
    validation = history[history["split"] == "val"]
    if validation.empty:
        raise GenevaeInputError(
            "The trial has no validation history; a sweep needs validation samples (set "
            "validation.split_column or validation.fraction)."
        )
    last = validation[validation["epoch"] == validation["epoch"].max()]
    terms = last.set_index("term")["value"]
    if objective == "elbo":
        return float(terms["reconstruction"] + terms["kl"])
    return float(terms[objective])


@contextmanager
def kedro_context(project_path: Path, env: str | None) -> Iterator[Any]:
    """A loaded Kedro context (config, catalog; kedro-mlflow has set up MLflow)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        yield session.load_context()


def _experiment_id(context: Any) -> str:
    import mlflow

    name = context.mlflow.tracking.experiment.name
    return mlflow.get_experiment_by_name(name).experiment_id


def objective_function(
    target: SweepTarget,
    data: Any,
    base_params: dict[str, Any],
    settings: SweepSettings,
    *,
    parent_run_id: str,
    tags: dict[str, str],
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: suggest, train in a nested MLflow run, return the final loss.

    Trials start their run with ``parent_run_id`` rather than by resuming the parent: a
    resumed parent would be marked finished by the first trial to end while others still run.
    """
    import mlflow

    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id

    def objective(trial: optuna.Trial) -> float:
        choice = {
            name: trial.suggest_categorical(name, values) for name, values in settings.space.items()
        }
        params = trial_parameters(base_params, choice)
        run_tags = {
            **tags,
            "optuna.study_name": settings.study_name,
            "optuna.trial": str(trial.number),
        }
        with mlflow.start_run(
            run_name=f"trial-{trial.number}",
            parent_run_id=parent_run_id,
            experiment_id=experiment_id,
            tags=run_tags,
        ) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            mlflow.log_params(flatten({key: params[key] for key in target.sections}))
            history = target.train(data, params)
            value = final_validation_objective(history, settings.objective)
            mlflow.log_metric(f"objective_val_{settings.objective}", value)
        return value

    return objective


def run_worker(args: argparse.Namespace) -> None:
    """Load the study and the data, then run this worker's share of the trials."""
    from genevae.training.module import NonFiniteLossError

    target = TARGETS[args.model]
    with kedro_context(args.project_path, args.env) as context:
        params = dataset_params(context.params, args)
        settings = _settings(args, params)
        entry = target.dataset.format(dataset=args.dataset)
        data, version = load_catalog_entry(context, entry)
        tags = {f"data_version.input.{entry}": str(version), "dataset": args.dataset}
        study = optuna.load_study(
            study_name=settings.study_name,
            storage=open_storage(settings.storage),
            sampler=make_sampler(settings, args.worker_index),
        )
        objective = objective_function(
            target, data, params, settings, parent_run_id=args.parent_run_id, tags=tags
        )
        study.optimize(objective, n_trials=args.n_trials, catch=(NonFiniteLossError,))


def load_catalog_entry(context: Any, name: str) -> tuple[Any, str | None]:
    """Load one catalog entry and the version read (``None`` when unversioned).

    Only this entry is built: ``context.catalog`` would first import every registered
    pipeline to validate the whole catalog, which costs each worker seconds.
    """
    from kedro.io import AbstractVersionedDataset, DataCatalog

    catalog = DataCatalog.from_config(context.config_loader["catalog"])
    dataset = catalog.get(name)  # resolves the dataset factories ("{dataset}.processed")
    if dataset is None:
        raise GenevaeInputError(
            f"The catalog has no entry {name!r}; register the dataset in conf/*/datasets.yml."
        )
    version = (
        dataset.resolve_load_version() if isinstance(dataset, AbstractVersionedDataset) else None
    )
    return dataset.load(), version


def dataset_params(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The model's effective parameters for the dataset (``tybalt.tcga``: defaults + registry)."""
    section = params.get(args.model, {})
    if args.dataset not in section:
        raise GenevaeInputError(
            f"No {args.model}.{args.dataset} parameters: {args.dataset!r} is not a registered "
            f"dataset of {args.model}'s kind (conf/*/datasets.yml)."
        )
    return section[args.dataset]


def _settings(args: argparse.Namespace, params: dict[str, Any]) -> SweepSettings:
    if "sweep" not in params:
        raise GenevaeInputError(
            f"parameters_{args.model}.yml has no {args.model}.sweep section; add the grid there."
        )
    return SweepSettings.from_params(
        params["sweep"],
        project_path=args.project_path,
        storage=args.storage or os.environ.get(STORAGE_ENV),
        study_name=args.study_name,
    )


def run_sweep(args: argparse.Namespace) -> optuna.Study:
    """Create or join the study, run the local workers, and summarise on the parent run."""
    import mlflow

    with kedro_context(args.project_path, args.env) as context:
        settings = _settings(args, dataset_params(context.params, args))
        study = optuna.create_study(
            study_name=settings.study_name,
            storage=open_storage(settings.storage),
            direction="minimize",
            load_if_exists=True,
        )
        client = mlflow.MlflowClient()
        parent_run_id, created = _parent_run(client, study, _experiment_id(context), settings, args)
        logger.info(
            "Sweep %r in %s: %d trial(s) on %d worker(s), MLflow parent run %s",
            settings.study_name,
            redacted(settings.storage),
            args.n_trials,
            min(args.n_workers, args.n_trials),
            parent_run_id,
        )
        status = "FAILED"  # also when interrupted
        try:
            failed = _run_workers(args, settings, parent_run_id)
            status = "FAILED" if failed else "FINISHED"
        finally:
            _summarise(client, study, parent_run_id, end_status=status if created else None)
    if failed:
        raise WorkerFailure(f"{failed} sweep worker(s) failed; see their output above.")
    return study


def _parent_run(
    client: Any,
    study: optuna.Study,
    experiment_id: str,
    settings: SweepSettings,
    args: argparse.Namespace,
) -> tuple[str, bool]:
    """The study's MLflow parent run: the one it already has, or a new one."""
    from mlflow.exceptions import MlflowException

    existing = study.user_attrs.get(PARENT_RUN_ATTR)
    if existing:
        try:
            client.get_run(existing)
            return existing, False
        except MlflowException:
            logger.warning(
                "Parent run %s of study %r is not in this MLflow store; starting a local one.",
                existing,
                settings.study_name,
            )
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{args.model}-{settings.study_name}",
        tags={
            "optuna.study_name": settings.study_name,
            "optuna.storage": redacted(settings.storage),
        },
    )
    client.log_batch(
        run.info.run_id,
        params=[
            _param(key, value)
            for key, value in {
                "model": args.model,
                "sampler": settings.sampler,
                "objective": settings.objective,
                **{f"grid.{name}": values for name, values in settings.space.items()},
            }.items()
        ],
    )
    if not existing:
        study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    return run.info.run_id, True


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, str(value))


def _run_workers(args: argparse.Namespace, settings: SweepSettings, parent_run_id: str) -> int:
    """Start one process per share of trials, wait for all; returns how many failed."""
    shares = split_trials(args.n_trials, args.n_workers)
    env = {**os.environ, STORAGE_ENV: settings.storage}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(shares))))
    processes = [
        subprocess.Popen(
            _worker_command(args, settings, parent_run_id, index, share),
            env=env,
            cwd=args.project_path,  # relative catalog paths are relative to the project
        )
        for index, share in enumerate(shares)
    ]
    try:
        return sum(process.wait() != 0 for process in processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()


def _worker_command(
    args: argparse.Namespace, settings: SweepSettings, parent_run_id: str, index: int, share: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "genevae.sweep",
        args.model,
        "--n-trials",
        str(share),
        "--study-name",
        settings.study_name,
        "--project-path",
        str(args.project_path),
        "--worker-index",
        str(index),
        "--parent-run-id",
        parent_run_id,
        "--dataset",
        args.dataset,
    ]
    return command + (["--env", args.env] if args.env else [])


def _summarise(
    client: Any, study: optuna.Study, parent_run_id: str, *, end_status: str | None
) -> None:
    """Log trial counts and the best trial so far to the parent run; end it with a status."""
    states = pd.Series([trial.state.name for trial in study.trials]).value_counts()
    client.log_batch(
        parent_run_id,
        metrics=[_metric(f"n_{state.lower()}", count) for state, count in states.items()],
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        client.log_metric(parent_run_id, "best_value", best.value)
        client.set_tag(parent_run_id, "best_trial", best.number)
        for name, value in best.params.items():
            client.set_tag(parent_run_id, f"best.{name}", value)
        logger.info("Best trial %d: %.4f with %s", best.number, best.value, best.params)
    if end_status is not None:
        client.set_terminated(parent_run_id, status=end_status)


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m genevae.sweep",
        description="Hyper-parameter sweep of a genevae model (an Optuna study, MLflow runs).",
    )
    parser.add_argument("model", choices=sorted(TARGETS), help="model whose grid to search")
    parser.add_argument("--n-trials", type=int, required=True, help="trials to run here")
    parser.add_argument("--n-workers", type=int, default=1, help="local worker processes")
    parser.add_argument(
        "--storage",
        help=f"Optuna storage URL or journal:<file> (default: ${STORAGE_ENV}, else the "
        "<model>.sweep.storage parameter)",
    )
    parser.add_argument("--study-name", help="study to create or join (default: params)")
    parser.add_argument("--dataset", default="tcga", help="registered dataset to train on")
    parser.add_argument("--env", help="Kedro configuration environment (e.g. test)")
    parser.add_argument("--project-path", type=Path, default=Path.cwd(), help="Kedro project")
    # Set by the coordinating process for its workers.
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent-run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n_trials < 1 or args.n_workers < 1:
        parser.error("--n-trials and --n-workers must be at least 1")
    if (args.worker_index is None) != (args.parent_run_id is None):
        parser.error("--worker-index and --parent-run-id go together (worker processes only)")
    args.project_path = args.project_path.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = parse_args(argv)
    try:
        if args.worker_index is not None:
            run_worker(args)
            return 0
        study = run_sweep(args)
    except (GenevaeInputError, WorkerFailure) as error:
        print(f"genevae.sweep: error: {error}", file=sys.stderr)
        return 1
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        print(f"best trial {study.best_trial.number}: {study.best_value:.4f} {study.best_params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
