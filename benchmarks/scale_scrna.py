"""The ``scrna`` kind of the scale benchmark: single cells → data_processing → VEGA.

Each size is a synthetic scRNA dataset with planted gene modules (stimulated cells up-regulate
a known subset), its raw counts in ``X`` and its modules registered as a GMT gene-set
collection; the run is ``data_processing`` + ``vega`` for it, with 1 training epoch.
Full ladder: 1/8, 1/2 and all of the issue's 200,000 cells × 20,000 genes (5,000 HVG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.scale import Kind, Ladder, write_gmt
from genevae.preprocessing.synthetic import make_module_dataset

FULL_CELLS = 200_000
LADDERS = {
    "full": Ladder(
        cells=(FULL_CELLS // 8, FULL_CELLS // 2, FULL_CELLS),
        epochs=1,
        sizes={"n_genes": 20_000, "n_top_genes": 5_000, "n_modules": 600},
    ),
    "toy": Ladder(
        cells=(300, 600), epochs=1, sizes={"n_genes": 120, "n_top_genes": 100, "n_modules": 8}
    ),
}


def register(root: Path, name: str, n_cells: int, ladder: Ladder) -> dict[str, Any]:
    """Write the synthetic cells (raw counts in X) and their module GMT; return the registry."""
    sizes = ladder.sizes
    synthetic = make_module_dataset(
        n_cells=n_cells, n_genes=sizes["n_genes"], n_modules=sizes["n_modules"], seed=0
    )
    raw = root / "data" / "01_raw"
    adata = synthetic.adata
    adata.X = adata.layers.pop("counts")  # raw counts, as a user's file holds them
    adata.write_h5ad(raw / f"{name}.h5ad")
    write_gmt(raw / f"{name}.gmt", synthetic.gene_sets)
    entry = {
        "kind": "scrna",
        "file": f"data/01_raw/{name}.h5ad",
        "obs": {"condition": "condition", "cell_type": "cell_type", "batch": None},
        "gene_sets": [name],
        "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
        "gsea_comparison": None,
        "data_processing": {"scrna": {"min_genes": 10, "n_top_genes": sizes["n_top_genes"]}},
        "vega": {
            "gene_module_collection": name,
            "analysis": {"plot_modules": list(synthetic.gene_sets)[:2]},
        },
    }
    return {"datasets": {name: entry}, "gene_sets": {name: {"file": f"data/01_raw/{name}.gmt"}}}


def params(name: str, ladder: Ladder) -> dict[str, Any]:
    return {f"vega.{name}.training.max_epochs": ladder.epochs}


KIND = Kind(
    name="scrna",
    ladders=LADDERS,
    register=register,
    pipelines=("data_processing", "vega"),
    params=params,
)
