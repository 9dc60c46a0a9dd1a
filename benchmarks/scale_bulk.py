"""The ``bulk`` kind of the scale benchmark: TCGA-like cohorts → data_processing → Tybalt.

Each size is a synthetic bulk cohort set (``write_tcga_like_cohorts``): one Xena-style
genes × samples file per cancer type, 33 types with planted programs, TCGA barcodes with
tumour and normal samples. The run is ``data_processing`` + ``tybalt`` (a few epochs) for it,
then the evaluation section that makes sense for bulk data (``evaluation.tybalt``: latent
quality beside PCA and reconstruction of each group's mean). The throw-away project keeps only
this dataset in its registry, so the evaluation scores it (it scores the first bulk dataset).
Full ladder: 1/8, 1/2 and all of the issue's 10,000 samples × 20,000 genes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmarks.scale import Kind, Ladder
from genevae.preprocessing.synthetic_bulk import TCGA_LIKE_TYPES, write_tcga_like_cohorts

FULL_SAMPLES = 10_000
LADDERS = {
    "full": Ladder(
        cells=(FULL_SAMPLES // 8, FULL_SAMPLES // 2, FULL_SAMPLES),
        epochs=2,
        sizes={"n_genes": 20_000, "n_types": 33},
    ),
    "toy": Ladder(cells=(120, 240), epochs=1, sizes={"n_genes": 300, "n_types": 4}),
}
TUMOUR, NORMAL = "Primary Solid Tumor", "Solid Tissue Normal"


def _only_this_dataset(root: Path) -> None:
    """Drop the demo datasets from the copy's base registry (gene sets and networks stay)."""
    path = root / "conf" / "base" / "datasets.yml"
    registry = yaml.safe_load(path.read_text())
    registry["datasets"] = {}
    path.write_text(yaml.safe_dump(registry))


def _generation(types: tuple[str, ...]) -> dict[str, Any]:
    """Tybalt's latent arithmetic on the synthetic types (the default names TCGA's READ)."""
    first, second = types[:2]
    return {
        "arithmetic": [
            {
                "name": f"{second.lower()}_normal_estimate",
                "groupby": ["cancer_type", "sample_type"],
                "a": f"{second}|{TUMOUR}",
                "b": f"{first}|{TUMOUR}",
                "c": f"{first}|{NORMAL}",
            }
        ]
    }


def register(root: Path, name: str, n_samples: int, ladder: Ladder) -> dict[str, Any]:
    """Write one Xena-style file per cancer type; return the registry with this dataset only."""
    _only_this_dataset(root)
    sizes = ladder.sizes
    paths = write_tcga_like_cohorts(
        root / "data" / "01_raw" / name,
        n_samples=n_samples,
        n_genes=sizes["n_genes"],
        n_types=sizes["n_types"],
        seed=0,
    )
    entry = {
        "kind": "bulk",
        "cohorts": {cohort: str(path.relative_to(root)) for cohort, path in paths.items()},
        "load_args": {"log2_transform": False},  # written on the log2 scale, as Xena's HiSeqV2
        "tybalt": {"generation": _generation(TCGA_LIKE_TYPES[: sizes["n_types"]])},
    }
    return {"datasets": {name: entry}}


def params(name: str, ladder: Ladder) -> dict[str, Any]:
    return {
        f"tybalt.{name}.training.max_epochs": ladder.epochs,
        f"tybalt.{name}.training.progress_bar": False,
    }


def namespaces(name: str) -> list[str]:
    return [f"data_processing.{name}", f"tybalt.{name}", "evaluation.tybalt"]


KIND = Kind(
    name="bulk",
    ladders=LADDERS,
    register=register,
    pipelines=("data_processing", "tybalt", "evaluation"),
    params=params,
    namespaces=namespaces,
)
