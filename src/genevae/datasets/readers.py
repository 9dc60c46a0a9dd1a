"""Read-only Kedro datasets for raw text formats parsed by ``genevae.preprocessing``.

They keep file reading in the catalog (nodes do no I/O) while the parsing, validation and
error messages stay in the pure preprocessing functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from genevae.preprocessing.genesets import read_gmt, read_grn_edges
from genevae.preprocessing.tcga import read_expression_matrix, read_gene_list


class _ReadOnlyFileDataset(AbstractDataset[None, Any]):
    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def save(self, data: Any) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only ({self._filepath}).")

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "load_args": self._load_args}


class GeneSetsDataset(_ReadOnlyFileDataset):
    """Gene sets as ``{module name: [genes]}`` from a GMT file or a TF → target edge table.

    The dataset registry (``conf/base/datasets.yml``) creates these entries; for the demo,
    ``gene_sets.reactome`` and ``grn_references.chipatlas_k562.regulons`` are:

    ```yaml
    gene_sets.reactome:
      type: genevae.datasets.readers.GeneSetsDataset
      filepath: data/01_raw/msigdb_c2cp_reactome_674_symbols_vega.gmt
    grn_references.chipatlas_k562.regulons:
      type: genevae.datasets.readers.GeneSetsDataset
      filepath: data/01_raw/chipatlas_K562_ChipSeq_causalbench.csv.gz
      load_args: {source_col: source, target_col: target}
    ```
    """

    def load(self) -> dict[str, list[str]]:
        if self._filepath.suffix == ".gmt":
            return read_gmt(self._filepath)
        return read_grn_edges(self._filepath, **self._load_args)


class ExpressionMatrixDataset(_ReadOnlyFileDataset):
    """A Xena ``HiSeqV2``-style genes × samples matrix, loaded as samples × genes.

    ``load_args`` go to `genevae.preprocessing.tcga.read_expression_matrix`
    (e.g. ``log2_transform: true`` for raw RSEM counts).
    """

    def load(self) -> pd.DataFrame:
        return read_expression_matrix(self._filepath, **self._load_args)


class GeneListDataset(_ReadOnlyFileDataset):
    """One gene symbol per line (e.g. Tybalt's 5,000 top-MAD genes), loaded as a list."""

    def load(self) -> list[str]:
        return read_gene_list(self._filepath)
