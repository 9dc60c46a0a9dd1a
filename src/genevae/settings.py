"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from genevae.hooks import DataLineageHook

# System metrics (CPU/GPU utilisation and memory) are logged with every MLflow run that
# kedro-mlflow starts; users can turn this off by setting the variable to "false".
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

HOOKS = (DataLineageHook(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (demo, test, local) override single nested keys instead of whole sections.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "mlflow": "soft"},
    "config_patterns": {
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
