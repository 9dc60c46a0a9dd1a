"""Kedro project settings."""

import logging
import os
import warnings

from genevae.config import GenevaeConfigLoader
from genevae.hooks import (
    DataLineageHook,
    DatasetRunCloser,
    DatasetRunHook,
    DatasetRuns,
    RunContextHook,
)
from genevae.validation_hook import ConfigValidationHook

# System metrics (CPU/GPU utilisation and memory) are logged with every MLflow run, by one
# monitor that RunContextHook starts; set MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false to turn
# it off. MLflow's own switch stays off: kedro-mlflow re-enters the run before every node and
# MLflow would start one more monitor (and print two lines) each time.
SYSTEM_METRICS = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").lower() == "true"
os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"
os.environ.setdefault("DO_NOT_TRACK", "1")
# OpenMP threads that wait for work sleep instead of spinning. On a machine shared with other
# jobs, spinning threads steal the cores their peers wait for: a training step measured 15-20x
# slower under load with libgomp's default (docs/performance.md). It must be
# set before torch is imported, which the pipelines do lazily, inside nodes. Export
# OMP_WAIT_POLICY=ACTIVE to get the default back on a dedicated machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Kedro 1.7 and kedro-mlflow 2.0 call OmegaConf's deprecated register_new_resolver on every
# run; nothing in this project or its configuration can act on the warning.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
# Dataset names are namespaced on purpose ("kang.processed", "vega.kang.model": one registry
# entry, its pipelines and outputs); Kedro's advice against dots in names does not apply.
warnings.filterwarnings("ignore", message=r"One or more dataset names contain '\.' characters")


class _DropPredictTypeHintWarning(logging.Filter):
    """kedro-mlflow's KedroPipelineModel.predict has no type hints, so MLflow 3 warns (with raw
    ANSI colour codes) whenever kedro-mlflow is imported: on every kedro command. genevae logs
    no pyfunc model and nothing here can act on it. MLflow raises it under its own
    ``simplefilter("once")``, which beats any warnings filter, so it is dropped where Kedro
    turns warnings into log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Add type hints to the `predict` method" not in record.getMessage()


logging.getLogger("py.warnings").addFilter(_DropPredictTypeHintWarning())

_DATASET_RUNS = DatasetRuns()  # one MLflow run per pipeline × dataset (genevae.hooks)
HOOKS = (
    ConfigValidationHook(),  # checks the configuration before any node runs (tryfirst)
    DataLineageHook(_DATASET_RUNS),
    DatasetRunHook(_DATASET_RUNS),
    DatasetRunCloser(_DATASET_RUNS),
    RunContextHook(system_metrics=SYSTEM_METRICS),
)

# The dataset registry (conf/*/datasets.yml) and conf/local layered under every env
# (genevae.config).
CONFIG_LOADER_CLASS = GenevaeConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (demo, test, local) override single nested keys instead of whole sections.
    "merge_strategy": {
        "parameters": "soft",
        "catalog": "soft",
        "mlflow": "soft",
        "datasets": "soft",
    },
    "config_patterns": {
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "datasets": ["datasets*", "datasets*/**"],
    },
}
