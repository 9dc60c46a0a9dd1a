"""An optional-input dataset: the evaluation reads outputs of models that may not have run.

Kedro nodes cannot declare optional inputs, and ``kedro run --pipelines evaluation`` must not
fail because, say, Tybalt was never trained. :class:`OptionalDataset` wraps the model
pipeline's own catalog entry (a YAML anchor of the ``@saved`` entry, so paths are written
once) and loads ``None`` when that entry is not configured or has no saved version yet;
otherwise a :class:`Loaded` record with the data and the version it read, which the report
turns into provenance. Saving passes through, so report sections written by one run can be
read (or found missing) by the next.

Catalog example (``conf/base/catalog_vega.yml``: the two entries are Kedro transcodings of one
dataset, so kedro-viz draws one node with an edge into the evaluation)::

    "vega.{dataset}.model@saved": &vega_model
      type: genevae.datasets.model_bundle.ModelBundleDataset
      filepath: data/06_models/{dataset}/vega_model
      versioned: true

    "vega.{dataset}.model@optional":
      type: genevae.pipelines.evaluation.datasets.OptionalDataset
      source: "vega.{dataset}.model"
      dataset: *vega_model
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError


@dataclass(frozen=True)
class Loaded:
    """Data read from an optional source, with where it came from."""

    data: Any
    source: str
    version: str | None
    filepath: str | None


class OptionalDataset(AbstractDataset[Any, "Loaded | None"]):
    """Loads ``Loaded(data, source, version, filepath)``, or ``None`` if there is nothing."""

    def __init__(
        self,
        *,
        source: str,
        dataset: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Wrap the dataset described by ``dataset`` (a catalog entry dict) named ``source``.

        ``dataset=None`` (the source is not configured in this project) always loads None.
        """
        self._source = source
        self._dataset = None if dataset is None else AbstractDataset.from_config(source, dataset)
        self.metadata = metadata

    def load(self) -> Loaded | None:
        if self._dataset is None or not self._dataset.exists():
            self._logger.info("Optional input %s is absent; its section is skipped.", self._source)
            return None
        data = self._dataset.load()
        return Loaded(data, self._source, self._version(), self._filepath())

    def save(self, data: Any) -> None:
        if self._dataset is None:
            raise DatasetError(
                f"Cannot save to the optional dataset {self._source!r}: it is not configured."
            )
        self._dataset.save(data)

    def _exists(self) -> bool:
        return self._dataset is not None and self._dataset.exists()

    def _version(self) -> str | None:
        if isinstance(self._dataset, AbstractVersionedDataset):
            return self._dataset.resolve_load_version()
        return None

    def _filepath(self) -> str | None:
        if isinstance(self._dataset, AbstractVersionedDataset):
            return str(self._dataset._get_load_path())
        filepath = getattr(self._dataset, "_filepath", None)
        return None if filepath is None else str(PurePosixPath(filepath))

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "configured": self._dataset is not None}
