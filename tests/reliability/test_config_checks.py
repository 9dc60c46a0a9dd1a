"""A real ``kedro run`` with a bad configuration: one message, exit status 2, nothing written.

One table of cases (issue #13's list). Each case is one ``kedro run`` subprocess on a
throw-away copy of the project (its conf, empty data layers) whose registered Kang raw file
is a small synthetic stand-in with Kang's obs columns and labels plus a numeric ``cluster``
column; a case changes the configuration with ``conf/local/datasets.yml``, ``--params`` or by
removing a file. Every bad case must stop before any node runs: the ``data/`` tree stays
byte-identical and MLflow records no run.
"""

from __future__ import annotations

import hashlib
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tests.project import empty_project

KEDRO = Path(sys.executable).parent / "kedro"
RAW = "data/01_raw"
KANG = f"{RAW}/kang2018_pbmc_ifnb_scgen_valid.h5ad"
GMTS = ("msigdb_c2cp_reactome_674_symbols_vega.gmt", "msigdb_hallmark_v7x_symbols_vega.gmt")
VERSION = "2026-01-01T00.00.00.000Z"
CHEAP_NODE = "vega.kang.select_gene_module_mask"  # reads two small masks, writes to memory


@dataclass(frozen=True)
class Case:
    """``expected``: a line of the message; empty: the configuration must pass."""

    id: str
    expected: str = ""
    datasets_yml: str = ""
    params: str = ""
    remove: str = ""
    run: tuple[str, ...] = ("--pipelines", "vega")  # vega reads processed data, not the raw file


CASES = [
    Case(
        "typo_in_a_nested_section",
        "`vega.trainng` is not a known parameter; did you mean `vega.training`?",
        params="vega.trainng.max_epochs=5",
    ),
    Case(
        "typo_in_a_dataset_section_leaf",
        "`vega.kang.training.max_epoch` is not a known parameter; "
        "did you mean `vega.kang.training.max_epochs`?",
        params="vega.kang.training.max_epoch=2",
    ),
    Case(
        "unknown_obs_column",
        "`datasets.kang.obs.condition` = 'conditon' is not an obs column of "
        f"{KANG}; use one of: cell_type, cluster, condition.",
        datasets_yml="datasets: {kang: {obs: {condition: conditon}}}",
    ),
    Case(
        "unknown_group_label",
        "`datasets.kang.comparisons[0].group1` = 'stimmulated' is not a label of obs column "
        "'condition'; use one of: control, stimulated.",
        datasets_yml=(
            "datasets: {kang: {comparisons: [{groupby: condition, group1: stimmulated}], "
            "gsea_comparison: null}}"
        ),
    ),
    Case(
        "gsea_contrast_not_among_the_comparisons",
        "`datasets.kang.gsea_comparison` = 'innate' is none of the dataset's comparisons",
        datasets_yml="datasets: {kang: {gsea_comparison: innate}}",
    ),
    Case(
        "missing_gmt_file",
        f"`gene_sets.hallmark.file` = '{RAW}/{GMTS[1]}': no such file",
        remove=f"{RAW}/{GMTS[1]}",
    ),
    Case(
        "missing_raw_file",
        f"`datasets.kang.file` = '{KANG}': no such file",
        remove=KANG,
        run=("--pipelines", "data_processing", "--namespaces", "data_processing.kang"),
    ),
    Case(
        "numeric_label_passes",
        datasets_yml=(
            "datasets: {kang: {comparisons: [{groupby: cluster, group1: 1, group2: 0}], "
            "gsea_comparison: 'cluster:1_vs_0'}}"
        ),
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def _write_kang_stand_in(path: Path) -> None:
    n = 40
    obs = pd.DataFrame(
        {
            "condition": np.repeat(["control", "stimulated"], n // 2),
            "cell_type": np.tile(["CD14+Mono", "FCGR3A+Mono", "Dendritic", "B"], n // 4),
            "cluster": pd.Categorical(np.tile([0, 1, 2, 3], n // 4)),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    ad.AnnData(np.ones((n, 4), dtype=np.float32), obs=obs).write_h5ad(path)


def _write_masks(data: Path) -> None:
    """Versioned gene-module masks, so the one cheap node of a passing case can run."""
    mask = pd.DataFrame({"SET": [1.0, 0.0]}, index=pd.Index(["G1", "G2"], name="gene"))
    for collection in ("reactome", "hallmark"):
        name = f"gene_module_mask_{collection}.parquet"
        folder = data / "04_feature" / "kang" / name / VERSION
        folder.mkdir(parents=True)
        mask.to_parquet(folder / name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    empty_project(tmp_path)
    _write_kang_stand_in(tmp_path / KANG)
    for gmt in GMTS:
        (tmp_path / RAW / gmt).write_text("SET\tna\tG1\tG2\n")
    _write_masks(tmp_path / "data")
    return tmp_path


def _mlflow_runs(project: Path) -> int:
    database = project / "mlflow.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        return (
            connection.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
        )


def _kedro_run(project: Path, case: Case) -> tuple[subprocess.CompletedProcess, float, float]:
    """The run, its wall-clock seconds and the CPU seconds it used."""
    command = [str(KEDRO), "run", *case.run, "--env", "test"]
    if case.params:
        command += ["--params", case.params]
    if not case.expected:
        command += ["--nodes", CHEAP_NODE]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return run, time.perf_counter() - started, cpu


# In the default suite (issue #13's acceptance table): one `kedro run` per case, ~5 s of CPU
# each (kedro and mlflow start-up), about a minute in all on two free cores.
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_configuration_stops_the_run_before_any_node(project: Path, case: Case) -> None:
    if case.datasets_yml:
        (project / "conf" / "local" / "datasets.yml").write_text(case.datasets_yml + "\n")
    if case.remove:
        (project / case.remove).unlink()
    before = _snapshot(project / "data")
    run, wall, cpu = _kedro_run(project, case)
    output = run.stdout + run.stderr
    if not case.expected:
        assert run.returncode == 0, output[-3000:]
        assert "The configuration has" not in output
        return
    assert run.returncode == 2, output[-3000:]
    message = output[output.index("Error: The configuration has 1 problem") :].splitlines()
    assert message[1] == f"  - {case.expected}" or message[1].startswith(f"  - {case.expected}")
    assert message[2] == "(run again with --verbose for the traceback)"
    assert "Traceback" not in output and "Running node" not in output
    assert "closed because of an error" not in output  # no MLflow run was opened to close
    assert _snapshot(project / "data") == before
    assert _mlflow_runs(project) == 0
    assert cpu < 15, f"the check took {cpu:.1f} s of CPU ({wall:.1f} s wall)"


@pytest.mark.slow
def test_verbose_shows_the_traceback(project: Path) -> None:
    run = subprocess.run(
        [str(KEDRO), "run", "--pipelines", "vega", "--env", "test", "--verbose"]
        + ["--params", "vega.trainng.max_epochs=5"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "GenevaeConfigError" in run.stderr
