"""The ``scrna`` kind of the scale benchmark: single cells → data_processing → VEGA.

Each size is a synthetic scRNA dataset with planted gene modules (stimulated cells up-regulate
a known subset), written in chunks by ``write_module_dataset_h5ad`` (raw NB counts in ``X``,
about 7% nonzero, Reactome-like module sizes 5–500) with its modules registered as a GMT
gene-set collection; the run is ``data_processing`` + ``vega`` for it, with 1 training epoch.
Full ladder: 1/8, 1/2 and all of the issue's 200,000 cells × 20,000 genes (5,000 HVG, 1,000
modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.scale import Kind, Ladder, write_gmt
from genevae.preprocessing.synthetic import write_module_dataset_h5ad

FULL_CELLS = 200_000
LADDERS = {
    "full": Ladder(
        cells=(FULL_CELLS // 8, FULL_CELLS // 2, FULL_CELLS),
        epochs=1,
        sizes={
            "n_genes": 20_000,
            "n_top_genes": 5_000,
            "n_modules": 1_000,
            "genes_per_module": (5, 500),
            "min_genes": 200,
        },
    ),
    "toy": Ladder(
        cells=(300, 600),
        epochs=1,
        sizes={
            "n_genes": 400,
            "n_top_genes": 200,
            "n_modules": 20,
            "genes_per_module": (5, 40),
            "min_genes": 10,
        },
    ),
}


def register(root: Path, name: str, n_cells: int, ladder: Ladder) -> dict[str, Any]:
    """Write the synthetic cells (raw counts in X) and their module GMT; return the registry."""
    sizes = ladder.sizes
    raw = root / "data" / "01_raw"
    synthetic = write_module_dataset_h5ad(
        raw / f"{name}.h5ad",
        n_cells,
        sizes["n_genes"],
        sizes["n_modules"],
        n_differential=4,
        genes_per_module=sizes["genes_per_module"],
        seed=0,
    )
    write_gmt(raw / f"{name}.gmt", synthetic.gene_sets)
    entry = {
        "kind": "scrna",
        "file": f"data/01_raw/{name}.h5ad",
        "obs": {"condition": "condition", "cell_type": "cell_type", "batch": None},
        "gene_sets": [name],
        "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
        "gsea_comparison": None,
        "data_processing": {
            "scrna": {"min_genes": sizes["min_genes"], "n_top_genes": sizes["n_top_genes"]}
        },
        "vega": {
            "gene_module_collection": name,
            "analysis": {"plot_modules": list(synthetic.gene_sets)[:2]},
        },
    }
    return {
        "datasets": {name: entry},
        "gene_sets": {name: {"file": f"data/01_raw/{name}.gmt"}},
        "facts": {
            "nnz": synthetic.nnz,
            "density": synthetic.density,
            # float32 values + int32 indices + int64 indptr: the raw CSR in memory
            "sparse_bytes": synthetic.nnz * 8 + (n_cells + 1) * 8,
        },
    }


def params(name: str, ladder: Ladder) -> dict[str, Any]:
    return {f"vega.{name}.training.max_epochs": ladder.epochs}


KIND = Kind(
    name="scrna",
    ladders=LADDERS,
    register=register,
    pipelines=("data_processing", "vega"),
    params=params,
)
