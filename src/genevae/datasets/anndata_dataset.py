"""Kedro dataset for AnnData ``.h5ad`` files: versioned, fsspec paths, atomic saves.

anndata and h5py are imported when a file is read or written, not when a catalog declares
the dataset, so that ``kedro run`` starts without them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro_datasets._typing import TablePreview

from genevae.datasets._io import DatasetInputError, FsspecVersionedDataset

if TYPE_CHECKING:
    from anndata import AnnData


class AnnDataDataset(FsspecVersionedDataset["AnnData", "AnnData"]):
    """Loads and saves an `AnnData` object as ``.h5ad`` with `anndata.read_h5ad`/`write_h5ad`.

    Saves are atomic: the file is written to a hidden temporary file in the same folder and
    renamed onto the target only when complete, so a crash mid-save leaves the previous file
    (or version) intact and no partial file behind. Remote paths (``s3://``, ``gcs://``, ...)
    are written to a local temporary file, uploaded beside the target and then moved.

    ``load_args`` go to `anndata.read_h5ad` (e.g. ``backed: r`` to keep ``X`` on disk; only
    for local files), except ``memory_budget_gb``: a local file whose stored ``X`` is larger
    opens backed, so training and encoding stream its rows from disk instead of loading it.
    ``save_args`` go to `AnnData.write_h5ad` (e.g. ``compression: gzip``).
    A truncated or corrupt file raises `DatasetInputError` (a `GenevaeInputError`) naming it.

    Example catalog entry (``conf/base/catalog_<pipeline>.yml``; a dataset factory, one file
    per registered dataset):

    ```yaml
    "{dataset}.intermediate":
      type: genevae.datasets.anndata_dataset.AnnDataDataset
      filepath: data/02_intermediate/{dataset}/intermediate.h5ad
      versioned: true
      save_args:
        compression: gzip
      load_args:
        backed: r   # optional: read X lazily from disk
        # or: memory_budget_gb: 8   (backed only when X takes more than 8 GB on disk)
    ```

    Python API:

    ```python
    from genevae.datasets.anndata_dataset import AnnDataDataset

    dataset = AnnDataDataset(filepath="data/02_intermediate/pbmc.h5ad")
    dataset.save(adata)
    reloaded = dataset.load()
    ```
    """

    def load(self) -> AnnData:
        """Read the (latest or pinned) version into memory, or backed if asked."""
        if self._load_args.get("backed") and not self.is_local:
            raise DatasetInputError(
                f"load_args backed={self._load_args['backed']!r} needs a local file, but "
                f"'{self._filepath}' uses the '{self._protocol}' protocol. Remove 'backed' from "
                f"load_args or copy the file to local disk."
            )
        load_path = self._load_path_str()
        load_args = dict(self._load_args)
        budget = load_args.pop("memory_budget_gb", None)
        with self._local_load_path(load_path) as local:
            if budget is not None and self.is_local and _stored_x_bytes(local) > budget * 1e9:
                load_args["backed"] = "r"
            return _read_h5ad(local, load_args, source=load_path)

    def save(self, data: AnnData) -> None:
        """Write ``data`` atomically to the (versioned) save path."""
        from anndata import AnnData

        if not isinstance(data, AnnData):
            raise DatasetInputError(
                f"AnnDataDataset '{self._filepath}' can only save AnnData objects, got "
                f"{type(data).__name__}. Return an AnnData from the node that produces it."
            )
        with self._atomic_save_path() as staging:
            data.write_h5ad(staging, **self._save_args)

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows of ``obs`` (cell/sample annotations), for kedro-viz.

        Only the ``obs`` table is read, not ``X`` or the layers, so clicking a large
        ``.h5ad`` in kedro-viz stays cheap. Files from anndata < 0.7 store ``obs`` as a
        record array; those are opened ``backed`` (``X`` stays on disk) instead.
        Set ``metadata: {kedro-viz: {preview_args: {nrows: 10}}}`` in the catalog to
        show more rows.
        """
        import anndata as ad
        import h5py
        from anndata.io import read_elem

        load_path = self._load_path_str()
        with self._local_load_path(load_path) as local:
            with h5py.File(local, "r") as file:
                obs = read_elem(file["obs"]) if isinstance(file["obs"], h5py.Group) else None
            if obs is None:
                backed = ad.read_h5ad(local, backed="r")
                obs = backed.obs
                backed.file.close()
        head = obs.head(nrows).copy()
        head.insert(0, "obs_name", head.index.astype(str), allow_duplicates=True)
        return json.loads(head.reset_index(drop=True).to_json(orient="split", date_format="iso"))


def _stored_x_bytes(path: Path) -> int:
    """Bytes of ``X`` as stored (all of a dense matrix; data, indices and indptr of a sparse one)."""
    import h5py

    with h5py.File(path, "r") as file:
        node = file["X"]
        parts = node.values() if isinstance(node, h5py.Group) else [node]
        return sum(part.size * part.dtype.itemsize for part in parts)


def _read_h5ad(path: Path, load_args: dict[str, Any], *, source: str) -> AnnData:
    """`anndata.read_h5ad` with h5py/anndata failures turned into an error naming ``source``.

    Files written by anndata < 0.7 (e.g. the Kang raw file) keep neighbour graphs in
    ``uns["neighbors"]``; anndata moves them to ``obsp`` while reading and says so with a
    FutureWarning per matrix. The move is the fix (files genevae writes have the new layout),
    so that note is not shown.
    """
    import anndata as ad

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"Moving element from \.uns\['neighbors'\]",
                category=FutureWarning,
            )
            return ad.read_h5ad(path, **load_args)
    except (OSError, KeyError, ValueError, TypeError) as exc:  # TypeError: HDF5 but not AnnData
        raise DatasetInputError(
            f"Could not read '{source}' as an .h5ad file ({type(exc).__name__}: {exc}). The file "
            f"is truncated, corrupt or not AnnData; delete it and re-create it (re-run the "
            f"pipeline step or re-fetch the raw data)."
        ) from exc
