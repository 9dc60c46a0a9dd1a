"""GPO-VAE's strong-perturbation filter through `kedro run`: a Perturb-seq entry's
``summary_stats`` table reaches the preprocess node, is tagged on the MLflow run, and only the
strong perturbations (and controls) stay in ``<dataset>.processed``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import mlflow
import pandas as pd
import pytest
import yaml

from tests.conftest import SHARED_DATA
from tests.project import empty_project, latest_version

ADAMSON = "adamson2016_pilot_upr_360x1000.h5ad"


def _summary_table(path: Path) -> None:
    """Replogle Table S2 columns: SPI1 and EP300 pass the authors' thresholds; BHLHE40 has too
    few DEGs, SNAI1 too weak a knockdown; ZNF326 is not listed."""
    pd.DataFrame(
        {
            "genetic perturbation": ["1_SPI1_P1", "2_EP300_P1", "3_BHLHE40_P1", "4_SNAI1_P1"],
            "Number of DEGs (anderson-darling)": [120, 80, 12, 300],
            "percent knockdown": [-0.85, -0.6, -0.9, -0.1],
            "number of cells (filtered)": [150, 140, 160, 170],
        }
    ).to_csv(path, index=False)


@pytest.mark.slow
@pytest.mark.shared_data
def test_summary_stats_entry_filters_the_screen_in_a_kedro_run(tmp_path):
    source = SHARED_DATA / "perturbseq" / ADAMSON
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    root = empty_project(tmp_path)
    shutil.copy(source, root / "data" / "01_raw" / ADAMSON)
    _summary_table(root / "data" / "01_raw" / "s2.csv")
    local = {"datasets": {"adamson": {"summary_stats": {"file": "data/01_raw/s2.csv"}}}}
    (root / "conf" / "local" / "datasets.yml").write_text(yaml.safe_dump(local))
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    kedro = str(Path(sys.executable).with_name("kedro"))
    command = [kedro, "run", "--env", "test", "--pipelines", "data_processing",
               "--nodes", "data_processing.adamson.preprocess"]  # fmt: skip
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "kept 2 of 5 perturbations; dropped BHLHE40, SNAI1, ZNF326" in " ".join(output.split())

    processed = ad.read_h5ad(
        latest_version(root / "data" / "03_primary" / "adamson" / "processed.h5ad")
    )
    assert set(processed.obs["gene"]) == {"SPI1", "EP300", "non-targeting"}
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=["genevae-test"]).set_index("tags.mlflow.runName")
    assert run.loc["data_processing.adamson", "tags.raw.adamson.summary_stats.path"] == (
        "data/01_raw/s2.csv"
    )
