"""Artifact writes are atomic and versions are never overwritten, tested with real SIGKILLs.

A subprocess saves a ~160 MB AnnData through `AnnDataDataset`; the test kills it with SIGKILL
while the hidden staging file is being written, then checks that the previous file (or
version) is byte-for-byte intact, is what loads, and that the half-written data never sits at
a path the dataset reads.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from kedro.io import DatasetError
from kedro.io.core import Version

from genevae.datasets.anndata_dataset import AnnDataDataset
from genevae.datasets.model_bundle import ModelBundle, ModelBundleDataset
from genevae.errors import GenevaeInputError
from tests.conftest import PROJECT_ROOT
from tests.reliability.tiny import tiny_mask, tiny_modules, tiny_vega

OLD_VERSION = "2026-01-01T00.00.00.000Z"
NEW_VERSION = "2026-01-02T00.00.00.000Z"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _previous() -> AnnData:
    return AnnData(
        X=np.arange(12, dtype=np.float32).reshape(4, 3),
        obs=pd.DataFrame(index=[f"cell_{i}" for i in range(4)]),
    )


def _kill_during_save(filepath: Path, staging_folder: Path, *args: str) -> None:
    """Start a large save and SIGKILL it once its staging file holds at least 1 MB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.save_until_killed", str(filepath), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:
        staged = (
            list(staging_folder.glob(f".{filepath.name}.*.tmp")) if staging_folder.is_dir() else []
        )
        if staged and staged[0].stat().st_size > 1 << 20:
            break
        if process.poll() is not None:
            pytest.fail(f"save finished or failed before the kill: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the staging file never grew past 1 MB")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _assert_half_written_file_does_not_load(folder: Path, name: str) -> None:
    """What SIGKILL leaves is a hidden staging file, and it is refused if loaded by hand."""
    strays = list(folder.glob(f".{name}.*.tmp"))
    assert len(strays) == 1
    with pytest.raises(GenevaeInputError, match="truncated, corrupt or not AnnData"):
        AnnDataDataset(filepath=str(strays[0])).load()


def test_sigkill_during_overwrite_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "processed.h5ad"
    AnnDataDataset(filepath=str(target)).save(_previous())
    before = _sha256(target)

    _kill_during_save(target, tmp_path)

    assert _sha256(target) == before
    np.testing.assert_array_equal(AnnDataDataset(filepath=str(target)).load().X, _previous().X)
    _assert_half_written_file_does_not_load(tmp_path, target.name)


def test_sigkill_during_versioned_save_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "processed.h5ad"
    AnnDataDataset(filepath=str(target), version=Version(None, OLD_VERSION)).save(_previous())
    old_file = target / OLD_VERSION / target.name
    before = _sha256(old_file)

    _kill_during_save(target, target / NEW_VERSION, "--save-version", NEW_VERSION)

    assert _sha256(old_file) == before
    assert not (target / NEW_VERSION / target.name).exists()
    latest = AnnDataDataset(filepath=str(target), version=Version(None, None))
    assert latest.resolve_load_version() == OLD_VERSION
    np.testing.assert_array_equal(latest.load().X, _previous().X)
    _assert_half_written_file_does_not_load(target / NEW_VERSION, target.name)


def test_saving_the_same_h5ad_version_twice_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "processed.h5ad"
    dataset = AnnDataDataset(filepath=str(target), version=Version(None, OLD_VERSION))
    dataset.save(_previous())
    saved = target / OLD_VERSION / target.name
    before = _sha256(saved)

    other = _previous()
    other.X = other.X + 1.0
    again = AnnDataDataset(filepath=str(target), version=Version(None, OLD_VERSION))
    with pytest.raises(DatasetError, match="must not exist if versioning is enabled"):
        again.save(other)
    assert _sha256(saved) == before
    assert sorted(p.name for p in target.iterdir()) == [OLD_VERSION]


def test_saving_the_same_model_version_twice_is_refused(tmp_path: Path) -> None:
    synthetic = tiny_modules()
    mask = tiny_mask(synthetic)
    target = tmp_path / "vega_model"
    bundle = ModelBundle(tiny_vega(mask), list(mask.index), {"module_names": list(mask.columns)})
    ModelBundleDataset(filepath=str(target), version=Version(None, OLD_VERSION)).save(bundle)
    files = sorted((target / OLD_VERSION / target.name).iterdir())
    before = {p.name: _sha256(p) for p in files}

    retrained = ModelBundle(tiny_vega(mask, hidden=8), bundle.gene_names, bundle.metadata)
    again = ModelBundleDataset(filepath=str(target), version=Version(None, OLD_VERSION))
    with pytest.raises(DatasetError, match="must not exist if versioning is enabled"):
        again.save(retrained)
    assert {p.name: _sha256(p) for p in files} == before
