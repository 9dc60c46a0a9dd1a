"""The ``perturbseq`` kind of the scale benchmark: a CRISPRi screen → data_processing → GPO-VAE.

Each size is a synthetic screen with a planted GRN (``make_perturbseq_from_grn`` drawn in
chunks into a CSR matrix, raw counts in ``X``), registered as a ``perturbseq`` dataset whose
reference network is the planted one, so the regulon mask and the GRN metrics run as for a
real screen. A size sets the cells; the perturbations grow with them (180 cells per
perturbation, 10% controls), as real screens grow: the full ladder is 1/8, 1/2 and all of the
issue's 100,000 cells × 5,000 genes × 500 perturbations (62, 250 and 500 perturbations;
12,400, 50,000 and 100,000 cells). ``library_scale`` 0.1 gives about 15% nonzero counts.

The run is ``data_processing`` + the model input + one GPO-VAE variant, ``full`` (trained for
1 epoch), with its ATE, test IWELBO, GRN table and figures (``kedro run --to-outputs`` of
that variant's outputs). The ablations (``no_grn``, ``no_artifact``) repeat the same nodes
with other model options, and the comparison with the baselines and the report need all
three: on two shared cores three trainings per size do not fit one session's ladder, so
they are left out (``VARIANTS`` lists them; ``ALL_VARIANTS`` runs everything). The
evaluation's Monte-Carlo sizes are cut (ATE: 100 particles instead of 2,500; test
IWELBO: 10 instead of 100): both are linear in perturbations or test cells, and the
authors' sizes would make those nodes the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.scale import Kind, Ladder
from genevae.preprocessing.synthetic import make_perturbseq_from_grn

FULL_CELLS = 100_000
CHUNK_CELLS = 4_096
SCREEN = {
    "cells_per_perturbation": 180,
    "control_fraction": 0.1,
    "n_genes": 5_000,
    "n_targets_per_regulator": 4,
    "library_scale": 0.1,
    "min_cells_per_perturbation": 100,
    "n_top_genes": 1_000,
}
LADDERS = {
    "full": Ladder(cells=(FULL_CELLS // 8, FULL_CELLS // 2, FULL_CELLS), epochs=1, sizes=SCREEN),
    "toy": Ladder(
        cells=(150, 300),
        epochs=1,
        sizes=SCREEN
        | {
            "cells_per_perturbation": 30,
            "control_fraction": 0.2,
            "n_genes": 120,
            "n_targets_per_regulator": 3,
            "library_scale": 1.0,
            "min_cells_per_perturbation": 10,
            "n_top_genes": 80,
        },
    ),
}
EVALUATION = {"n_particles": 100, "iwelbo_particles": 10}


def screen_design(n_cells: int, sizes: dict[str, Any]) -> tuple[int, int]:
    """(perturbations, control cells) of a screen of about ``n_cells`` cells."""
    per_group = sizes["cells_per_perturbation"]
    n_perturbations = max(2, int(n_cells * (1 - sizes["control_fraction"]) // per_group))
    return n_perturbations, max(2, n_cells - n_perturbations * per_group)


def register(root: Path, name: str, n_cells: int, ladder: Ladder) -> dict[str, Any]:
    """Write the screen (raw counts in X) and its planted edges; return the registry blocks."""
    sizes = ladder.sizes
    n_perturbations, n_controls = screen_design(n_cells, sizes)
    synthetic = make_perturbseq_from_grn(
        n_cells_per_group=sizes["cells_per_perturbation"],
        n_genes=sizes["n_genes"],
        n_regulators=n_perturbations,
        n_targets_per_regulator=sizes["n_targets_per_regulator"],
        n_control_cells=n_controls,
        library_scale=sizes["library_scale"],
        chunk_cells=CHUNK_CELLS,
        seed=0,
    )
    adata = synthetic.adata
    del adata.layers["counts"]  # X holds the same matrix: raw counts, as a user's file
    raw = root / "data" / "01_raw"
    adata.write_h5ad(raw / f"{name}.h5ad")
    reference = f"grn_{name}"  # node build_mask_grn_<name>: labelled alike at every size
    synthetic.edges.rename(columns={"regulator": "source"}).to_csv(
        raw / f"{reference}.csv", index=False
    )
    entry = {
        "kind": "perturbseq",
        "file": f"data/01_raw/{name}.h5ad",
        "obs": {"perturbation": "perturbation", "target_gene": "guide_gene"},
        "control_label": synthetic.control_label,
        "grn_reference": reference,
        "data_processing": {
            "perturbseq": {
                "n_top_genes": sizes["n_top_genes"],
                "cell_filters": {"min_cells_per_perturbation": sizes["min_cells_per_perturbation"]},
            }
        },
    }
    matrix = adata.X
    return {
        "datasets": {name: entry},
        "grn_references": {
            reference: {
                "file": f"data/01_raw/{reference}.csv",
                "source_col": "source",
                "target_col": "target",
            }
        },
        "facts": {
            "n_perturbations": n_perturbations,
            "n_cells_written": adata.n_obs,
            "nonzero_fraction": matrix.nnz / (adata.n_obs * adata.n_vars),
            "sparse_matrix_bytes": matrix.data.nbytes
            + matrix.indices.nbytes
            + matrix.indptr.nbytes,
        },
    }


def params(name: str, ladder: Ladder) -> dict[str, Any]:
    section = f"gpo_vae.{name}"
    return {
        f"{section}.training.max_epochs": ladder.epochs,
        f"{section}.training.progress_bar": "false",
        **{f"{section}.evaluation.{key}": value for key, value in EVALUATION.items()},
    }


VARIANT_OUTPUTS = (
    "predicted_ate",
    "test_iwelbo",
    "grn_heatmap",
    "top_edges_plot",
    "training_curves",
)
ALL_VARIANTS = False  # True: every variant, the comparison and the report (3 trainings)


@dataclass(frozen=True)
class PerturbseqKind(Kind):
    """The kind's command runs only the ``full`` variant unless ``ALL_VARIANTS``."""

    def command(self, name: str, ladder: Ladder) -> list[str]:
        command = super().command(name, ladder)
        if ALL_VARIANTS:
            return command
        at = command.index("--namespaces")
        outputs = ",".join(f"gpo_vae.{name}.full.{output}" for output in VARIANT_OUTPUTS)
        return [*command[:at], "--to-outputs", outputs, *command[at + 2 :]]


KIND = PerturbseqKind(
    name="perturbseq",
    ladders=LADDERS,
    register=register,
    pipelines=("data_processing", "gpo_vae"),
    params=params,
)
