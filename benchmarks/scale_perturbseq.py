"""The scale benchmark's Perturb-seq kind: data_processing → gpo_vae through ``kedro run``.

Each size is a synthetic CRISPRi screen with a planted GRN (``make_perturbseq_from_grn``,
drawn in chunks into a CSR matrix), written as raw counts and registered in a throw-away
project copy as a ``perturbseq`` dataset whose reference network is the planted one (so the
GRN metrics and the regulon mask run as for a real screen). A ladder step scales cells and
perturbations together (fixed cells per perturbation, controls a fixed fraction), as real
screens grow: the issue's full size is 100,000 cells × 5,000 genes × 500 perturbations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genevae.preprocessing.synthetic import make_perturbseq_from_grn


@dataclass(frozen=True)
class Screen:
    """One ladder's screens: ``perturbations[i]`` groups of ``cells_per_perturbation`` cells."""

    perturbations: tuple[int, ...]
    cells_per_perturbation: int
    control_fraction: float
    n_genes: int
    n_targets_per_regulator: int
    library_scale: float
    epochs: int
    min_cells_per_perturbation: int
    n_top_genes: int

    def n_controls(self, n_perturbations: int) -> int:
        perturbed = n_perturbations * self.cells_per_perturbation
        return round(perturbed * self.control_fraction / (1.0 - self.control_fraction))

    def n_cells(self, n_perturbations: int) -> int:
        return n_perturbations * self.cells_per_perturbation + self.n_controls(n_perturbations)


# full: 1/8, 1/2 and all of 500 perturbations × 180 cells + 10% controls (12,410 / 50,000 /
# 100,000 cells); library_scale 0.1 gives ~15% nonzero counts (shallow CRISPRi screens).
LADDERS = {
    "full": Screen((62, 250, 500), 180, 0.1, 5_000, 4, 0.1, 1, 100, 1_000),
    "toy": Screen((4, 8), 30, 0.2, 120, 3, 1.0, 1, 10, 80),
}
CHUNK_CELLS = 4_096


def register(root: Path, name: str, n_perturbations: int, screen: Screen) -> dict[str, Any]:
    """Write the screen's counts and planted edges; the dataset's registry entry and reference."""
    synthetic = make_perturbseq_from_grn(
        n_cells_per_group=screen.cells_per_perturbation,
        n_genes=screen.n_genes,
        n_regulators=n_perturbations,
        n_targets_per_regulator=screen.n_targets_per_regulator,
        n_control_cells=screen.n_controls(n_perturbations),
        library_scale=screen.library_scale,
        chunk_cells=CHUNK_CELLS,
        seed=0,
    )
    adata = synthetic.adata
    del adata.layers["counts"]  # raw counts in X, as a user's file holds them
    raw = root / "data" / "01_raw"
    adata.write_h5ad(raw / f"{name}.h5ad")
    edges = synthetic.edges.rename(columns={"regulator": "source"})
    edges.to_csv(raw / f"{name}_grn.csv", index=False)
    entry = {
        "kind": "perturbseq",
        "file": f"data/01_raw/{name}.h5ad",
        "obs": {"perturbation": "perturbation", "target_gene": "guide_gene"},
        "control_label": synthetic.control_label,
        "grn_reference": f"{name}_grn",
        "data_processing": {
            "perturbseq": {
                "n_top_genes": screen.n_top_genes,
                "cell_filters": {"min_cells_per_perturbation": screen.min_cells_per_perturbation},
            }
        },
    }
    reference = {
        "file": f"data/01_raw/{name}_grn.csv",
        "source_col": "source",
        "target_col": "target",
    }
    return {
        "datasets": {name: entry},
        "grn_references": {f"{name}_grn": reference},
        "matrix_bytes": int(adata.X.data.nbytes + adata.X.indices.nbytes + adata.X.indptr.nbytes),
        "n_cells": adata.n_obs,
    }


def write_registry(root: Path, config: dict[str, Any]) -> None:
    registry = {key: config[key] for key in ("datasets", "grn_references")}
    (root / "conf" / "local" / "datasets.yml").write_text(yaml.safe_dump(registry))


def kedro_arguments(name: str, epochs: int) -> list[str]:
    """``kedro run`` arguments: data_processing and every gpo_vae variant of dataset ``name``."""
    return [
        "run",
        "--pipelines",
        "data_processing,gpo_vae",
        "--namespaces",
        f"data_processing.{name},gpo_vae.{name}",
        "--params",
        f"gpo_vae.{name}.training.max_epochs={epochs},gpo_vae.{name}.training.progress_bar=false",
    ]
