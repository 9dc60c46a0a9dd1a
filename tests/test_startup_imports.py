"""``kedro run`` start-up stays light: building the pipelines imports no heavy library.

Kedro imports every pipeline module (and the classes of the catalog's datasets) before the
first node runs, so a top-level ``import torch`` in any of them costs every run seconds (see
benchmarks/startup.py). Node modules import such libraries inside the functions that use
them (see ``genevae.pipelines``); this test catches a top-level import creeping back in. It
runs in a fresh interpreter, because this test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

HEAVY_MODULES = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "scanpy",
    "matplotlib",
    "anndata",
    "sklearn",
    "gseapy",
    "ot",
    "safetensors",
    "umap",
)

_SCRIPT = """
import json, sys
from kedro.framework.startup import bootstrap_project

bootstrap_project(sys.argv[1])
from kedro.framework.project import pipelines

names = sorted(pipelines)  # runs register_pipelines(): imports every pipeline module
import genevae.datasets.anndata_dataset, genevae.datasets.model_bundle, genevae.datasets.readers

heavy = [name for name in sys.argv[2:] if name in sys.modules]
print(json.dumps({"pipelines": names, "heavy": heavy}))
"""


def test_building_the_pipelines_imports_no_heavy_library() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(PROJECT_ROOT), *HEAVY_MODULES],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"data_processing", "tybalt", "vega", "gpo_vae", "evaluation"} <= set(
        result["pipelines"]
    )
    assert result["heavy"] == [], (
        f"building the pipelines imported {result['heavy']}; import them inside the node that "
        "uses them (run `python -X importtime -c ...` to see which module pulled them in)"
    )
