"""The project's config loader: the dataset registry, and ``conf/local`` under every env.

Two things Kedro's ``OmegaConfigLoader`` does not do:

- **Datasets are configuration.** ``datasets.yml`` (base, then the run env) is read as the
  registry (:mod:`genevae.registry`); the catalog gains an entry for each registered raw file
  and the parameters gain each dataset's effective sections (``vega.kang`` …).
- **Settings compose.** ``conf/local`` is the user's layer and applies under every
  environment: ``--env demo`` reads base → demo → local, then ``--params``.

The most recently created loader is remembered, so the pipeline registry builds the pipelines
for the same conf folder and environment as the run (Kedro creates the loader first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from genevae.registry import Registry, dataset_parameters, raw_catalog_entries

LOCAL_ENV = "local"
_latest: OmegaConfigLoader | None = None


class GenevaeConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` with the dataset registry and ``conf/local`` always layered last."""

    def __init__(self, conf_source: str, *args: Any, **kwargs: Any) -> None:
        global _latest
        super().__init__(conf_source, *args, **kwargs)
        self._registry: Registry | None = None
        _latest = self

    def _read_raw_config(self, key: str) -> tuple[dict, dict, str, str, set]:
        base, env, base_path, env_path, processed = super()._read_raw_config(key)
        run_env = self.env or self.default_run_env
        local_path = Path(self._get_conf_env_path(LOCAL_ENV))
        if run_env in (self.base_env, LOCAL_ENV) or not local_path.is_dir():
            return base, env, base_path, env_path, processed
        local = self._read_dir_configs(
            str(local_path), [*self.config_patterns[key]], key, processed, key == "credentials"
        )
        return base, {**env, **local}, base_path, env_path, processed

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key == "parameters":
            return dataset_parameters(config, self.registry())
        if key == "catalog":
            return {**raw_catalog_entries(self.registry()), **config}
        return config

    def registry(self) -> Registry:
        """The merged dataset registry of this loader's conf folder and environment.

        Read once per loader: the parameters, the catalog, every pipeline and the per-node
        MLflow hook ask for it, and the files do not change during a run.
        """
        if self._registry is None:
            self._registry = Registry.from_config(super().__getitem__("datasets"))
        return self._registry


def current_registry() -> Registry:
    """The registry of the run being set up, else of ``./conf`` with the local env."""
    loader = _latest
    if loader is None:
        from kedro.framework.project import settings

        loader = GenevaeConfigLoader(
            str(Path.cwd() / settings.CONF_SOURCE), **settings.CONFIG_LOADER_ARGS
        )
    return loader.registry()
