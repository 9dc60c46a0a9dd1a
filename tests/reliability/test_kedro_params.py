"""A real ``kedro run --params`` with a misspelled training key fails clearly, before training.

The raw Kang file is absent: a run of the model on processed data does not need it.

The project is a throw-away copy of this one (its conf, empty data layers) whose processed
single-cell data and gene-module masks are small synthetic stand-ins written at the versioned
catalog paths, so the vega pipeline can start without running data_processing first.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from kedro.io.core import Version

from genevae.datasets.anndata_dataset import AnnDataDataset
from tests.conftest import PROJECT_ROOT
from tests.project import empty_project
from tests.reliability.tiny import tiny_mask, tiny_modules

VERSION = "2026-01-01T00.00.00.000Z"
KEDRO = Path(os.environ.get("VIRTUAL_ENV", PROJECT_ROOT / ".venv")) / "bin" / "kedro"


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    empty_project(tmp_path)
    synthetic = tiny_modules()
    processed = tmp_path / "data" / "03_primary" / "kang" / "processed.h5ad"
    AnnDataDataset(filepath=str(processed), version=Version(None, VERSION)).save(synthetic.adata)
    mask = tiny_mask(synthetic).rename_axis("gene")
    for collection in ("reactome", "hallmark"):
        name = f"gene_module_mask_{collection}.parquet"
        folder = tmp_path / "data" / "04_feature" / "kang" / name / VERSION
        folder.mkdir(parents=True)
        mask.to_parquet(folder / name)
    return tmp_path


@pytest.mark.slow  # a real `kedro run` subprocess: ~15 s of CPU (kedro, mlflow and torch imports)
def test_misspelled_training_parameter_fails_the_run_before_training(project: Path) -> None:
    before = _snapshot(project / "data")
    run = subprocess.run(
        [
            str(KEDRO),
            "run",
            "--pipelines",
            "vega",
            "--to-nodes",
            "vega.kang.train_vega",  # the training branch only: no raw gene sets needed for GSEA
            "--env",
            "test",
            "--params",
            "vega.training.max_epoch=2",
        ],
        cwd=project,
        env={**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-3000:]  # refused by the configuration checks
    assert (
        "`vega.training.max_epoch` is not a known parameter; "
        "did you mean `vega.training.max_epochs`?" in output
    )
    assert "Trainer.fit" not in output and "Epoch 0" not in output
    assert _snapshot(project / "data") == before
