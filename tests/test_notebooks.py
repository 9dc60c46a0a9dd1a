"""The example notebooks run top to bottom against real pipeline outputs, so they cannot rot.

Each ``notebooks/<pipeline>.ipynb`` is executed in a fresh kernel of this virtualenv, from a
``notebooks/`` folder inside the test project copy (as a user would open it), after its
pipeline has run there with the test settings. A notebook whose pipeline has no nodes yet is
skipped. The pipeline runs are shared with the rest of the suite, so a notebook usually
only reads outputs that the pipeline tests already wrote. Notebook metadata
``{"genevae": {"slow": true}}`` would mark a long one ``slow``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def _case(path: Path) -> pytest.param:
    meta = nbformat.read(path, as_version=4).metadata.get("genevae", {})
    marks = [pytest.mark.slow] if meta.get("slow") else []
    return pytest.param(path, meta.get("pipeline", path.stem), marks=marks, id=path.stem)


@pytest.mark.parametrize("notebook,pipeline", [_case(path) for path in NOTEBOOKS])
def test_notebook_runs_on_pipeline_outputs(
    notebook: Path, pipeline: str, pipeline_outputs: Callable[[str], Path]
) -> None:
    project = pipeline_outputs(pipeline)
    workdir = project / "notebooks"
    workdir.mkdir(exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
    }
    env.pop("MPLBACKEND", None)  # keep the notebook's inline figures
    client.execute(env=env)  # raises CellExecutionError naming the failing cell

    figures = [
        output
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert figures, f"{notebook.name} drew no figure"
