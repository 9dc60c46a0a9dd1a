"""AnnDataDataset: exact round trips, versioning, atomic saves and clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import fsspec
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from genevae.datasets._io import DatasetInputError
from genevae.datasets.anndata_dataset import AnnDataDataset
from genevae.errors import GenevaeInputError


def _make_adata(sparse: bool, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.0, size=(30, 12)).astype(np.float32)
    x = sp.csr_matrix(counts) if sparse else counts
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(rng.choice(["control", "stimulated"], 30)),
            "library": counts.sum(axis=1),
        },
        index=[f"cell{i}" for i in range(30)],
    )
    var = pd.DataFrame(
        {"gene_symbol": [f"G{j}" for j in range(12)]}, index=[f"g{j}" for j in range(12)]
    )
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.obsm["X_vega"] = rng.normal(size=(30, 3))
    adata.uns["gene_modules"] = {
        "names": np.array(["HALLMARK_A", "HALLMARK_B"]),
        "params": {"k": 2},
    }
    return adata


def _assert_same(left: ad.AnnData, right: ad.AnnData) -> None:
    assert type(left.X) is type(right.X)
    dense = (lambda m: m.toarray()) if sp.issparse(left.X) else np.asarray
    np.testing.assert_array_equal(dense(left.X), dense(right.X))
    assert left.X.dtype == right.X.dtype
    pd.testing.assert_frame_equal(left.obs, right.obs)
    pd.testing.assert_frame_equal(left.var, right.var)
    assert isinstance(right.obs["condition"].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(left.layers["counts"].toarray(), right.layers["counts"].toarray())
    np.testing.assert_array_equal(left.obsm["X_vega"], right.obsm["X_vega"])
    np.testing.assert_array_equal(
        left.uns["gene_modules"]["names"], right.uns["gene_modules"]["names"]
    )
    assert right.uns["gene_modules"]["params"]["k"] == 2


@pytest.mark.parametrize("sparse", [True, False])
def test_round_trip_is_exact(tmp_path: Path, sparse: bool) -> None:
    dataset = AnnDataDataset(filepath=str(tmp_path / "adata.h5ad"))
    original = _make_adata(sparse)
    dataset.save(original)
    _assert_same(original, dataset.load())


def test_save_args_compression_and_backed_load(tmp_path: Path) -> None:
    path = tmp_path / "adata.h5ad"
    AnnDataDataset(filepath=str(path), save_args={"compression": "gzip"}).save(_make_adata(False))
    backed = AnnDataDataset(filepath=str(path), load_args={"backed": "r"}).load()
    try:
        assert backed.isbacked
        assert backed.file["X"].compression == "gzip"
        np.testing.assert_array_equal(backed.X[:], _make_adata(False).X)
    finally:
        backed.file.close()


def test_versioned_saves_create_timestamp_folders_and_pinned_load(tmp_path: Path) -> None:
    filepath = str(tmp_path / "adata.h5ad")
    first, second = _make_adata(True, seed=1), _make_adata(True, seed=2)
    AnnDataDataset(filepath=filepath, version=Version(None, "2026-01-01T00.00.00.000Z")).save(first)
    AnnDataDataset(filepath=filepath, version=Version(None, "2026-01-02T00.00.00.000Z")).save(
        second
    )

    folders = sorted(p.name for p in (tmp_path / "adata.h5ad").iterdir())
    assert folders == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    assert (tmp_path / "adata.h5ad" / folders[0] / "adata.h5ad").is_file()

    latest = AnnDataDataset(filepath=filepath, version=Version(None, None)).load()
    _assert_same(second, latest)
    pinned = AnnDataDataset(filepath=filepath, version=Version(folders[0], None)).load()
    _assert_same(first, pinned)


def _versioned_catalog(filepath: Path) -> DataCatalog:
    entry = {"type": "genevae.datasets.anndata_dataset.AnnDataDataset", "versioned": True}
    return DataCatalog.from_config({"adata": {**entry, "filepath": str(filepath)}})


def test_versioned_true_in_catalog_writes_one_timestamp_folder_per_run(tmp_path: Path) -> None:
    first, second = _make_adata(True, seed=1), _make_adata(True, seed=2)
    _versioned_catalog(tmp_path / "adata.h5ad").save("adata", first)  # run 1
    time.sleep(0.01)  # timestamps have millisecond resolution
    _versioned_catalog(tmp_path / "adata.h5ad").save("adata", second)  # run 2

    folders = sorted((tmp_path / "adata.h5ad").iterdir())
    assert len(folders) == 2
    assert all((folder / "adata.h5ad").is_file() for folder in folders)
    catalog = _versioned_catalog(tmp_path / "adata.h5ad")
    _assert_same(second, catalog.load("adata"))
    _assert_same(first, catalog.load("adata", version=folders[0].name))


def test_exists_and_describe(tmp_path: Path) -> None:
    dataset = AnnDataDataset(filepath=str(tmp_path / "a.h5ad"), load_args={"backed": "r"})
    assert not dataset.exists()
    versioned = AnnDataDataset(filepath=str(tmp_path / "b.h5ad"), version=Version(None, None))
    assert not versioned.exists()
    dataset.save(_make_adata(True))
    assert dataset.exists()
    description = str(dataset)
    assert "a.h5ad" in description and "backed" in description and "file" in description


def _fail_midway(self: ad.AnnData, filename: Path, **kwargs: object) -> None:
    Path(filename).write_bytes(b"\x89HDF\r\n\x1a\n partial")
    raise OSError("disk full")


def test_failed_save_keeps_previous_file_and_leaves_no_stray(tmp_path, monkeypatch) -> None:
    path = tmp_path / "adata.h5ad"
    dataset = AnnDataDataset(filepath=str(path))
    original = _make_adata(True, seed=1)
    dataset.save(original)
    monkeypatch.setattr(ad.AnnData, "write_h5ad", _fail_midway)

    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(_make_adata(True, seed=2))

    assert [p.name for p in tmp_path.iterdir()] == ["adata.h5ad"]
    _assert_same(original, dataset.load())


def test_failed_versioned_save_keeps_previous_version(tmp_path, monkeypatch) -> None:
    filepath = str(tmp_path / "adata.h5ad")
    original = _make_adata(True, seed=1)
    AnnDataDataset(filepath=filepath, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        original
    )
    monkeypatch.setattr(ad.AnnData, "write_h5ad", _fail_midway)

    failing = AnnDataDataset(filepath=filepath, version=Version(None, "2026-01-02T00.00.00.000Z"))
    with pytest.raises(DatasetError, match="disk full"):
        failing.save(_make_adata(True, seed=2))

    assert [p.name for p in (tmp_path / "adata.h5ad").iterdir()] == ["2026-01-01T00.00.00.000Z"]
    _assert_same(original, AnnDataDataset(filepath=filepath, version=Version(None, None)).load())


def test_truncated_file_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "adata.h5ad"
    dataset = AnnDataDataset(filepath=str(path))
    dataset.save(_make_adata(True))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(GenevaeInputError, match=r"adata\.h5ad.*truncated, corrupt") as info:
        dataset.load()
    assert isinstance(info.value, DatasetError)
    assert "truncated file" in str(info.value)


def test_missing_file_and_wrong_type_errors(tmp_path: Path) -> None:
    dataset = AnnDataDataset(filepath=str(tmp_path / "absent.h5ad"))
    with pytest.raises(DatasetInputError, match=r"absent\.h5ad' does not exist"):
        dataset.load()
    with pytest.raises(DatasetInputError, match="can only save AnnData objects, got DataFrame"):
        dataset.save(pd.DataFrame({"a": [1]}))


@pytest.mark.parametrize(("budget_gb", "backed"), [(1e-9, True), (1.0, False)])
def test_memory_budget_opens_larger_files_backed(tmp_path: Path, budget_gb, backed) -> None:
    path = tmp_path / "a.h5ad"
    AnnDataDataset(filepath=str(path)).save(_make_adata(True))
    adata = AnnDataDataset(filepath=str(path), load_args={"memory_budget_gb": budget_gb}).load()
    try:
        assert adata.isbacked is backed
        np.testing.assert_array_equal(adata.X[:].toarray(), _make_adata(True).X.toarray())
    finally:
        if adata.isbacked:
            adata.file.close()


def test_remote_protocol_round_trip_and_backed_refused() -> None:
    filepath = "memory:///genevae-test/adata.h5ad"
    original = _make_adata(True)
    AnnDataDataset(filepath=filepath).save(original)
    try:
        _assert_same(original, AnnDataDataset(filepath=filepath).load())
        assert fsspec.filesystem("memory").ls("/genevae-test", detail=False) == [
            "/genevae-test/adata.h5ad"
        ]
        with pytest.raises(DatasetInputError, match="needs a local file.*'memory' protocol"):
            AnnDataDataset(filepath=filepath, load_args={"backed": "r"}).load()
    finally:
        fsspec.filesystem("memory").rm("/genevae-test", recursive=True)


@pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")
def test_real_files_load_and_round_trip(tmp_path: Path, shared_data: Path) -> None:
    adamson = AnnDataDataset(
        filepath=str(shared_data / "perturbseq" / "adamson2016_pilot_upr_360x1000.h5ad")
    )
    assert adamson.load().obs["perturbation"].value_counts().eq(60).all()

    kang = AnnDataDataset(
        filepath=str(shared_data / "scrna" / "kang2018_pbmc_ifnb_scgen_valid.h5ad")
    ).load()
    assert kang.shape == (1975, 6998)
    copy = AnnDataDataset(filepath=str(tmp_path / "kang.h5ad"), version=Version(None, None))
    copy.save(kang)
    reloaded = copy.load()
    assert (reloaded.X != kang.X).nnz == 0
    pd.testing.assert_frame_equal(reloaded.obs, kang.obs)
    np.testing.assert_array_equal(reloaded.obsm["X_umap"], kang.obsm["X_umap"])
