"""OptionalDataset: a model output that may not exist loads None, otherwise data + version."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DatasetError

from genevae.pipelines.evaluation.datasets import Loaded, OptionalDataset


def _parquet(tmp_path) -> dict:
    return {
        "type": "pandas.ParquetDataset",
        "filepath": str(tmp_path / "table.parquet"),
        "versioned": True,
    }


def test_absent_and_unconfigured_sources_load_none(tmp_path):
    assert OptionalDataset(source="tybalt.tcga.model", dataset=None).load() is None
    never_saved = OptionalDataset(source="table", dataset=_parquet(tmp_path))
    assert never_saved.load() is None
    assert not never_saved.exists()


def test_saved_versions_load_with_their_version_and_path(tmp_path):
    dataset = OptionalDataset(source="table", dataset=_parquet(tmp_path))
    dataset.save(pd.DataFrame({"a": [1, 2]}))
    loaded = OptionalDataset(source="table", dataset=_parquet(tmp_path)).load()
    assert isinstance(loaded, Loaded)
    assert loaded.source == "table"
    assert loaded.data["a"].tolist() == [1, 2]
    assert loaded.version is not None and loaded.version in loaded.filepath


def test_unversioned_sources_report_their_path(tmp_path):
    config = {"type": "json.JSONDataset", "filepath": str(tmp_path / "section.json")}
    OptionalDataset(source="section", dataset=config).save({"key": "vega"})
    loaded = OptionalDataset(source="section", dataset=config).load()
    assert loaded.data == {"key": "vega"}
    assert loaded.version is None and loaded.filepath.endswith("section.json")


def test_saving_to_an_unconfigured_source_is_refused():
    with pytest.raises(DatasetError, match="'gpo_vae.adamson.comparison': it is not configured"):
        OptionalDataset(source="gpo_vae.adamson.comparison", dataset=None).save({"x": 1})
