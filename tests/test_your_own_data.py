"""docs/your_own_data.md, executed: a new scRNA-seq dataset registered with one YAML block runs
beside Kang in one ``kedro run``, with separate versions and MLflow runs tagged with sha256."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from genevae.datasets.fetch import fetch_all, sha256_of
from tests.conftest import PROJECT_ROOT, SHARED_DATA
from tests.project import empty_project

GUIDE = PROJECT_ROOT / "docs" / "your_own_data.md"
WALKTHROUGH = "## Walk-through"


def _blocks(language: str) -> list[str]:
    """Fenced ``language`` blocks of the walk-through section, in order."""
    text = GUIDE.read_text()
    section = text[text.index(WALKTHROUGH) :].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project copy with the guide's file made and its YAML block in conf/local."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    root = empty_project(tmp_path_factory.mktemp("user_project"))
    fetch_all(raw_dir=root / "data" / "01_raw", mirror=SHARED_DATA, progress=False)
    (script,) = _blocks("python")
    subprocess.run([sys.executable, "-c", script], cwd=root, check=True)
    (registry,) = _blocks("yaml")
    assert registry.startswith("# conf/local/datasets.yml")
    (root / "conf" / "local" / "datasets.yml").write_text(registry)
    return root


def _side_by_side_command(root: Path) -> list[str]:
    """The guide's run beside Kang, in the test settings instead of the demo ones."""
    command = next(line for line in _blocks("bash")[0].splitlines() if "vega.kang" in line)
    args = shlex.split(command.replace("--env demo", "--env test"))
    assert args[0] == "kedro"
    return [str(Path(sys.executable).with_name("kedro")), *args[1:]]


def test_registered_dataset_runs_beside_kang_with_its_own_versions_and_runs(user_project):
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{user_project / 'mlflow.db'}"}
    result = subprocess.run(
        _side_by_side_command(user_project),
        cwd=user_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    data = user_project / "data"
    for dataset in ("pbmc68k", "kang"):
        for versioned in (
            data / "03_primary" / dataset / "processed.h5ad",
            data / "08_reporting" / dataset / "vega_differential_activity.parquet",
            data / "06_models" / dataset / "vega_model",
        ):
            assert len([p for p in versioned.iterdir() if not p.name.startswith(".")]) == 1

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["genevae-test"])
    by_name = runs.set_index("tags.mlflow.runName")
    for dataset, raw in (
        ("pbmc68k", "data/01_raw/pbmc68k_reduced_counts.h5ad"),
        ("kang", "data/01_raw/kang2018_pbmc_ifnb_scgen_valid.h5ad"),
    ):
        for pipeline in ("data_processing", "vega"):
            run = by_name.loc[f"{pipeline}.{dataset}"]
            assert run[f"tags.raw.{dataset}.raw.path"] == raw
            assert run[f"tags.raw.{dataset}.raw.sha256"] == sha256_of(user_project / raw)
            assert run["tags.dataset"] == dataset
