"""GPO-VAE's comparison table on a synthetic CRISPRi screen with a planted GRN, over seeds.

    python -m benchmarks.gpo_vae_synthetic_screen --seeds 0 1 2

The screen is the evaluation benchmark's (``evaluation.benchmark.grn``: 60 genes, 4
regulators with 3 targets each, here 150 cells per group) with the gpo_vae pipeline's own
nodes and base parameters plus that benchmark's small-model/training overrides: model input,
the three variants, and ``compare_predictors`` with the planted edges as the reference
network. The screen is fixed (seed 0); the training seed varies, as for the Adamson runs.
Writes ``benchmarks/results/gpo_vae_synthetic_screen.json`` (per-seed tables and mean ± SD).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmarks.common import write_result
from genevae.pipelines.gpo_vae import nodes
from genevae.pipelines.gpo_vae.pipeline import VARIANTS
from genevae.preprocessing.gpo_inputs import log_normalise_counts
from genevae.preprocessing.perturbseq import split_cells
from genevae.preprocessing.synthetic import make_perturbseq_from_grn

NAME = "gpo_vae_synthetic_screen"
CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
CELLS_PER_GROUP = 150


def _parameters() -> tuple[dict[str, Any], dict[str, Any]]:
    """gpo_vae parameters and the evaluation benchmark's planted-GRN settings (conf/base)."""
    gpo = yaml.safe_load((CONF / "parameters_gpo_vae.yml").read_text())["gpo_vae"]
    evaluation = yaml.safe_load((CONF / "parameters_evaluation.yml").read_text())["evaluation"]
    return gpo, evaluation["benchmark"]["grn"]


def comparison(seed: int) -> pd.DataFrame:
    """The comparison table (as ``gpo_vae.<dataset>.comparison``) of the three variants and
    the baselines for one training seed."""
    gpo, bench = _parameters()
    screen = make_perturbseq_from_grn(n_cells_per_group=CELLS_PER_GROUP, seed=0, **bench["screen"])
    adata = screen.adata
    adata.X = log_normalise_counts(adata.layers["counts"])
    adata.obs["split"] = split_cells(adata.obs, seed=0).astype("category")
    inputs = gpo["inputs"] | bench["inputs"] | {"control_label": screen.control_label}
    model_input = nodes.build_model_input(adata, inputs)
    training = gpo["training"] | bench["training"] | {"seed": seed, "checkpoint_dir": None}
    training |= {"progress_bar": False}
    evaluation = gpo["evaluation"] | {"n_particles": 500, "reference_targets": "nodes"}
    outputs: dict[str, Any] = {}
    for namespace, row in VARIANTS.items():
        bundle, _, _ = nodes.train_gpo_vae(
            model_input, gpo["model"] | bench["model"], training, gpo[namespace]["variant"]
        )
        outputs[f"{row}__ate"] = nodes.predict_ate(bundle, model_input, evaluation)
        outputs[f"{row}__iwelbo"] = nodes.iwelbo_on_test_cells(bundle, model_input, evaluation)
        outputs[f"{row}__edges"] = nodes.grn_edges(bundle)
    reference = screen.edges.rename(columns={"regulator": "source"})
    table, _ = nodes.compare_predictors(
        model_input, evaluation, reference_edges=reference, **outputs
    )
    return table


def run(seeds: list[int]) -> dict[str, Any]:
    tables = {seed: comparison(seed) for seed in seeds}
    stacked = pd.concat(tables, names=["seed"])
    summary = stacked.groupby(level="predictor", sort=False).agg(["mean", "std"])
    return {
        "seeds": seeds,
        "cells_per_group": CELLS_PER_GROUP,
        "per_seed": {str(s): t.to_dict(orient="index") for s, t in tables.items()},
        "mean": summary.xs("mean", axis=1, level=1).to_dict(orient="index"),
        "sd": summary.xs("std", axis=1, level=1).to_dict(orient="index"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    result = run(parser.parse_args().seeds)
    path = write_result(NAME, result)
    print(pd.DataFrame(result["mean"]).to_string(float_format="{:.3f}".format))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
