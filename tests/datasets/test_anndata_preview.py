"""AnnDataDataset.preview: the obs table kedro-viz shows when a user clicks an .h5ad dataset."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from kedro.io.core import Version

from genevae.datasets._io import DatasetInputError
from genevae.datasets.anndata_dataset import AnnDataDataset
from tests.conftest import requires_shared_data


def _cells(n_obs: int = 8) -> ad.AnnData:
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(["control", "stimulated"] * (n_obs // 2)),
            "n_genes": np.arange(n_obs) * 10,
        },
        index=[f"cell{i}" for i in range(n_obs)],
    )
    return ad.AnnData(X=np.ones((n_obs, 3), dtype=np.float32), obs=obs)


def test_preview_is_the_head_of_obs_with_cell_names(tmp_path: Path) -> None:
    dataset = AnnDataDataset(filepath=str(tmp_path / "cells.h5ad"))
    dataset.save(_cells())

    preview = dataset.preview(nrows=3)

    assert preview["columns"] == ["obs_name", "condition", "n_genes"]
    assert preview["index"] == [0, 1, 2]
    assert preview["data"] == [
        ["cell0", "control", 0],
        ["cell1", "stimulated", 10],
        ["cell2", "control", 20],
    ]
    json.dumps(preview)  # kedro-viz sends it as JSON


def test_preview_type_is_a_kedro_viz_table() -> None:
    # kedro-viz picks the renderer from the return annotation's name.
    annotation = inspect.signature(AnnDataDataset.preview).return_annotation
    assert getattr(annotation, "__name__", annotation) == "TablePreview"


def test_preview_reads_the_latest_version_and_caps_at_n_obs(tmp_path: Path) -> None:
    path = str(tmp_path / "cells.h5ad")
    AnnDataDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(_cells(4))
    AnnDataDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(_cells(6))

    preview = AnnDataDataset(filepath=path, version=Version(None, None)).preview(nrows=100)

    assert len(preview["data"]) == 6


def test_preview_of_a_missing_file_names_it(tmp_path: Path) -> None:
    dataset = AnnDataDataset(filepath=str(tmp_path / "absent.h5ad"))
    with pytest.raises(DatasetInputError, match="absent.h5ad' does not exist"):
        dataset.preview()


@requires_shared_data
def test_preview_of_a_legacy_h5ad(shared_data: Path) -> None:
    # The Kang file was written by anndata < 0.7 (obs as a record array).
    dataset = AnnDataDataset(
        filepath=str(shared_data / "scrna/kang2018_pbmc_ifnb_scgen_valid.h5ad")
    )

    preview = dataset.preview(nrows=2)

    assert {"obs_name", "condition", "cell_type"} <= set(preview["columns"])
    assert len(preview["data"]) == 2
