"""Kedro datasets and raw-data fetching.

- `genevae.datasets.anndata_dataset.AnnDataDataset`: versioned, atomic ``.h5ad`` I/O.
- `genevae.datasets.model_bundle`: models as safetensors + JSON (`ModelBundleDataset`).
- `genevae.datasets.fetch`: registry of raw inputs with checksums; ``python -m
  genevae.datasets.fetch``.

Submodules are imported explicitly so that fetching data does not import torch or anndata.
"""
